"""benchmarks/gpu_check.py at tiny sizes on the CPU, so the GPU check keeps working between GPU runs."""

import dataclasses
import importlib
import json

import pytest
import torch
from helpers import PROJECT_ROOT


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module (it imports its neighbour benchmarks/bench_training_loop.py)."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    return importlib.import_module("gpu_check")


def test_masking_check_passes_for_every_dtype_and_memory_format(gpu_check):
    rows = gpu_check.check_masking_op("cpu", gpu_check.QUICK)
    assert {(row["dtype"], row["memory format"]) for row in rows} == {
        (dtype, memory_format)
        for dtype in ("fp32", "bf16", "fp16")
        for memory_format in ("contiguous", "channels_last")
    }
    for row in rows:
        assert row["result"] == "ok", row
        assert abs(row["masked / expected"] - 1) <= gpu_check.MASKED_FRACTION_TOLERANCE


def _float_output(self, x):
    return super(type(self), self).forward(x).float()


def _gradient_through_mask(self, x):
    return x + (super(type(self), self).forward(x) - x).detach()


@pytest.mark.parametrize(
    ("forward", "failing_dtypes", "problem"),
    [(_float_output, {"bf16", "fp16"}, "output dtype"), (_gradient_through_mask, {"fp32", "bf16", "fp16"}, "gradient")],
)
def test_masking_check_catches_a_broken_op(gpu_check, monkeypatch, forward, failing_dtypes, problem):
    broken = type("BrokenMasking", (gpu_check.LocalFeatureMasking,), {"forward": forward})
    monkeypatch.setattr(gpu_check, "LocalFeatureMasking", broken)
    rows = gpu_check.check_masking_op("cpu", dataclasses.replace(gpu_check.QUICK, draws=1))
    failed = {row["dtype"] for row in rows if row["result"] == "FAIL"}
    assert failed == failing_dtypes
    assert all(problem in row["problems"] for row in rows if row["result"] == "FAIL")


OLD_TORCH = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) < (2, 14)


@pytest.mark.skipif(
    OLD_TORCH, reason="torch < 2.14 compiles LFM's out= write into a channels_last mask as several graphs (speed only)"
)
def test_graph_break_check_finds_one_graph(gpu_check):
    rows = gpu_check.check_graph_breaks("cpu", gpu_check.QUICK)
    assert [(row["graphs"], row["graph breaks"], row["result"]) for row in rows] == [(1, 0, "ok")] * 2


def test_a_failed_check_gives_a_non_zero_exit(gpu_check, monkeypatch, capsys):
    rows = [{"name": "good", "result": "ok"}, {"name": "bad", "result": "FAIL"}]
    monkeypatch.setattr(gpu_check, "parts", lambda device, quick, skip_compile, data_dir: {"part": lambda: rows})
    assert gpu_check.main(["--device", "cpu", "--quick"]) == 1
    assert "1 check(s) FAILED" in capsys.readouterr().out


def test_a_missed_speed_target_fails_outside_quick_mode(gpu_check):
    rows = [
        ("setting", "floor", 100.0, [100.0], 1.0, ""),
        ("", "src/train.py", 80.0, [80.0], 0.8, ">= 0.95: MISSED"),
        ("", "one epoch: 4.0 s; 60 epochs: 4.0 min", 0.0, [], 0.0, "<= 5 min: met"),
    ]
    assert [row["result"] for row in gpu_check.benchmark_rows(rows, quick=False)] == ["info", "FAIL", "ok"]
    assert [row["result"] for row in gpu_check.benchmark_rows(rows, quick=True)] == ["info"] * 3


def test_a_crashing_part_is_one_failed_row(gpu_check):
    def crash():
        raise SystemExit("src/train.py experiment=lfm_resnet50 failed")

    assert gpu_check.guarded(crash) == [
        {"error": "SystemExit: src/train.py experiment=lfm_resnet50 failed", "result": "FAIL"}
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_says_how_to_run_it(gpu_check, capsys):
    assert gpu_check.main([]) == 2
    assert "--device cpu --quick" in capsys.readouterr().err


def test_quick_cpu_run_passes_and_writes_its_tables(gpu_check, tmp_path):
    # --skip-compile: compiling even the tiny network takes about a minute on 2 CPU cores.
    status = gpu_check.main(["--device", "cpu", "--quick", "--skip-compile", "--json", str(tmp_path / "check.json")])
    report = json.loads((tmp_path / "check.json").read_text())
    failed = {
        title.split(" (")[0]
        for title, rows in report.items()
        if isinstance(rows, list)
        for row in rows
        if row.get("result") == "FAIL"
    }
    # torch < 2.14: the graph-break check finds the known extra graphs (test_graph_break_check_finds_one_graph)
    assert failed == ({next(title.split(" (")[0] for title in report if "graph" in title)} if OLD_TORCH else set())
    assert status == (1 if failed else 0)
    throughput = next(rows for title, rows in report.items() if title.startswith("training throughput"))
    assert [row["config"] for row in throughput] == ["fp32", "bf16-mixed", "bf16-mixed + channels_last"]
    for row in throughput:
        assert row["plain img/s"] > 0 and row["lightning img/s"] > 0 and row["result"] == "info", row
    pipelines = next(rows for title, rows in report.items() if title.startswith("data pipelines"))
    # one image size (floor, tensor, PIL), then the three loaders
    assert len(pipelines) == 6 and all(row["images/s"] > 0 for row in pipelines)
    floor, train_py, projection = next(rows for title, rows in report.items() if title.startswith("paper recipe"))
    assert floor["images/s"] > 0 and train_py["images/s"] > 0
    assert train_py["ratio"] == pytest.approx(train_py["images/s"] / floor["images/s"], rel=0.01)
    assert "src/train.py experiment=lfm_resnet50" in train_py["path"]
    assert "60 epochs of 259 images" in projection["path"] and projection["target"].startswith("<= 5 min")
    assert all(row["result"] == "info" for row in [*pipelines, floor, train_py, projection])
