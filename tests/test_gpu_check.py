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


@pytest.mark.skipif(
    tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) < (2, 14),
    reason="torch < 2.14 compiles LFM's out= write into a channels_last mask as several graphs (speed only)",
)
def test_graph_break_check_finds_one_graph(gpu_check):
    rows = gpu_check.check_graph_breaks("cpu", gpu_check.QUICK)
    assert [(row["graphs"], row["graph breaks"], row["result"]) for row in rows] == [(1, 0, "ok")] * 2


def test_a_failed_check_gives_a_non_zero_exit(gpu_check, monkeypatch, capsys):
    rows = [{"name": "good", "result": "ok"}, {"name": "bad", "result": "FAIL"}]
    monkeypatch.setattr(gpu_check, "parts", lambda device, quick, skip_compile: {"part": lambda: rows})
    assert gpu_check.main(["--device", "cpu", "--quick"]) == 1
    assert "1 check(s) FAILED" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu_says_how_to_run_it(gpu_check, capsys):
    assert gpu_check.main([]) == 2
    assert "--device cpu --quick" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_cpu_run_passes_and_writes_its_tables(gpu_check, tmp_path):
    # --skip-compile: compiling even the tiny network takes about a minute on 2 CPU cores.
    assert gpu_check.main(["--device", "cpu", "--quick", "--skip-compile", "--json", str(tmp_path / "check.json")]) == 0
    report = json.loads((tmp_path / "check.json").read_text())
    throughput = next(rows for title, rows in report.items() if title.startswith("training throughput"))
    assert [row["config"] for row in throughput] == ["fp32", "bf16-mixed", "bf16-mixed + channels_last"]
    for row in throughput:
        assert row["plain img/s"] > 0 and row["lightning img/s"] > 0 and row["result"] == "info", row
