"""The results table: one row per run directory, parameters and metrics as columns."""

import csv
import json
from pathlib import Path

import pytest

from lfm.analysis.results import collect_runs, main, regularizer_label
from lfm.errors import InputError
from lfm.files import flatten

LFM = {"after": "conv1", "p": 0.5, "mask_ratio": 0.5, "area": [0.02, 0.4]}


def write_run(run_dir: Path, *, seed: int, lfm: dict | None, metrics: dict, cutout: dict | None = None) -> None:
    run_dir.mkdir(parents=True)
    config = {
        "task_name": "train",
        "run_name": "lfm_resnet18_synthetic",
        "seed": seed,
        "paths": {"output_dir": str(run_dir)},
        "model": {"backbone": "resnet18", "lfm": lfm, "dropout2d": None, "dropblock": None},
        "data": {"name": "synthetic_market", "image_size": [64, 32], "random_erasing": None, "cutout": cutout},
        "trainer": {"max_epochs": 3},
    }
    (run_dir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def runs(tmp_path) -> Path:
    write_run(
        tmp_path / "runs" / "a",
        seed=0,
        lfm=LFM,
        metrics={
            "test/rank1": 0.5,
            "test/mAP": 0.3,
            "val/mAP_best": 0.6,
            "seed": 0,
            "test/cmc": [0.5, 0.7],
            "test/ap": "standard",
            "train/lfm_masked_fraction/conv1": 0.05,
            "best_checkpoint": "x",
        },
    )
    write_run(
        tmp_path / "runs" / "b",
        seed=1,
        lfm={**LFM, "after": "layer1", "mask_ratio": 0.25},
        metrics={
            "test/rank1": 0.6,
            "test/mAP": 0.4,
            "val/mAP_best": 0.7,
            "seed": 1,
            "attack/ifgsm/sma/eps4/mAP": 0.1,
            "attack/ifgsm/sma/eps4/rank1": 0.2,
        },
    )
    write_run(
        tmp_path / "runs" / "c",
        seed=0,
        lfm=None,
        cutout={"p": 0.5, "size": 0.5},
        metrics={"test/rank1": 0.4, "test/mAP": 0.2, "val/mAP_best": 0.5, "seed": 0},
    )
    (tmp_path / "runs" / "unfinished").mkdir()
    (tmp_path / "runs" / "unfinished" / "config.yaml").write_text("seed: 3\n")
    return tmp_path


def test_one_row_per_finished_run_with_parameters_and_metrics(runs):
    rows = collect_runs(runs)
    assert [row["run_dir"] for row in rows] == ["runs/a", "runs/b", "runs/c"]
    first, second, third = rows
    assert list(first)[:5] == ["run_dir", "run_name", "task", "seed", "regularizer"]
    assert [row["seed"] for row in rows] == [0, 1, 0]
    assert [row["regularizer"] for row in rows] == ["lfm", "lfm", "cutout"]
    assert (first["model.lfm.after"], first["model.lfm.mask_ratio"]) == ("conv1", 0.5)
    assert (second["model.lfm.after"], second["model.lfm.mask_ratio"]) == ("layer1", 0.25)
    assert third["model.lfm.after"] == "" and third["data.cutout.p"] == 0.5
    assert first["model.lfm.area"] == "[0.02, 0.4]" and first["model.backbone"] == "resnet18"
    assert (first["test/rank1"], first["test/mAP"], first["val/mAP_best"]) == (0.5, 0.3, 0.6)
    assert first["train/lfm_masked_fraction/conv1"] == 0.05 and second["train/lfm_masked_fraction/conv1"] == ""


def test_robustness_metrics_become_columns_when_present(runs):
    rows = collect_runs(runs)
    assert rows[1]["attack/ifgsm/sma/eps4/mAP"] == 0.1 and rows[1]["attack/ifgsm/sma/eps4/rank1"] == 0.2
    assert rows[0]["attack/ifgsm/sma/eps4/mAP"] == ""


def test_nested_metrics_are_joined_with_slashes(tmp_path):
    write_run(tmp_path / "run", seed=0, lfm=None, metrics={"attack": {"pgd": {"eps8": {"mAP": 0.05}}}, "test/mAP": 0.3})
    assert collect_runs(tmp_path)[0]["attack/pgd/eps8/mAP"] == 0.05


def test_lists_strings_and_bookkeeping_are_not_columns(runs):
    columns = set(collect_runs(runs)[0])
    assert not columns & {"test/cmc", "test/ap", "best_checkpoint", "paths.output_dir"}
    metric_columns = [column for column in collect_runs(runs)[0] if "/" in column]
    assert metric_columns[:3] == ["test/rank1", "test/mAP", "val/mAP_best"]


def test_the_command_writes_the_csv_and_prints_the_table(runs, capsys):
    assert main([str(runs), "--out", str(runs / "table.csv")]) == 0
    with (runs / "table.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3 and table[1]["model.lfm.after"] == "layer1" and float(table[1]["test/mAP"]) == 0.4
    assert table[2]["model.lfm.after"] == "" and table[2]["regularizer"] == "cutout"
    printed = capsys.readouterr().out
    assert f"Results table: {runs / 'table.csv'}" in printed and "runs/b" in printed


def test_the_default_csv_lives_in_the_directory(runs):
    assert main([str(runs)]) == 0
    assert (runs / "results.csv").is_file()


def test_a_missing_directory_or_broken_metrics_file_is_named(tmp_path, capsys):
    assert main([str(tmp_path / "none")]) == 2
    assert str(tmp_path / "none") in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{not json")
    with pytest.raises(InputError, match="metrics.json"):
        collect_runs(tmp_path)


def test_a_users_regularizers_are_labelled_by_their_keys():
    config = flatten(
        {
            "model": {
                "lfm": {"p": 0.5},
                "regularizers": {"noise": {"_target_": "lab.Noise", "after": "conv1"}, "off": None},
            },
            "data": {"random_erasing": None, "batch_transforms": {"jitter": {"_target_": "lab.Jitter"}}},
        }
    )
    assert regularizer_label(config) == "lfm+noise+jitter"
    assert regularizer_label(flatten({"model": {"regularizers": {}}, "data": {"batch_transforms": {}}})) == "none"
