"""Notebook tables: runs joined with their robustness, seeds aggregated, best configurations."""

import json
import math
from pathlib import Path

import pytest

from lfm.analysis.tables import (
    best,
    best_per_regularizer,
    first_checkpoint,
    grid,
    load_robustness_runs,
    strongest_attack_metric,
    summarize_seeds,
    training_runs,
)
from lfm.errors import InputError


def write_training_run(
    run_dir: Path, *, seed: int, lfm: dict | None, test_map: float, dropblock: dict | None = None
) -> None:
    run_dir.mkdir(parents=True)
    config = {
        "task_name": "train",
        "task": "reid",
        "run_name": "demo",
        "seed": seed,
        "model": {"backbone": "resnet18", "lfm": lfm, "dropblock": dropblock},
    }
    (run_dir / "config.yaml").write_text(json.dumps(config))
    (run_dir / "metrics.json").write_text(json.dumps({"test/mAP": test_map, "seed": seed}))
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"")


def write_eval_run(run_dir: Path, checkpoint: Path, maps: dict[tuple[str, float], float]) -> None:
    """An src/eval.py attack run of `checkpoint`: maps {(method, eps): mAP} with loss `metric`."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(
        json.dumps({"task_name": "eval", "run_name": "eval", "seed": 0, "ckpt_path": str(checkpoint)})
    )
    rows = [{"mode": "white-box", "method": "clean", "loss": "none", "eps": 0.0, "mAP": 0.5, "rank1": 0.6}]
    rows += [
        {
            "mode": "white-box",
            "method": method,
            "loss": "none" if method == "noise" else "metric",
            "eps": eps,
            "mAP": value,
            "rank1": value,
        }
        for (method, eps), value in maps.items()
    ]
    metrics = {"test/mAP": 0.5}
    metrics.update({f"attack/{row['method']}/{row['loss']}/eps{row['eps']:g}/mAP": row["mAP"] for row in rows})
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "robustness.json").write_text(json.dumps({"checkpoint": str(checkpoint), "task": "reid", "rows": rows}))


LFM = {"after": "conv1", "p": 0.5, "mask_ratio": 0.5}


@pytest.fixture
def runs(tmp_path) -> Path:
    """Two LFM configurations x two seeds (one missing), a baseline, DropBlock, and an attack on one LFM run."""
    for seed, value in ((0, 0.20), (1, 0.40)):
        write_training_run(tmp_path / "sweep" / f"conv1_0.5_s{seed}", seed=seed, lfm=LFM, test_map=value)
    write_training_run(tmp_path / "sweep" / "layer1_0.5_s0", seed=0, lfm={**LFM, "after": "layer1"}, test_map=0.50)
    for seed, value in ((0, 0.10), (1, 0.20)):
        write_training_run(tmp_path / "sweep" / f"none_s{seed}", seed=seed, lfm=None, test_map=value)
    write_training_run(
        tmp_path / "sweep" / "dropblock_s0", seed=0, lfm=None, test_map=0.35, dropblock={"after": "conv1", "p": 0.05}
    )
    checkpoint = tmp_path / "sweep" / "conv1_0.5_s0" / "checkpoints" / "best.ckpt"
    write_eval_run(
        tmp_path / "robustness" / "lfm",
        checkpoint,
        {("noise", 8.0): 0.01, ("fgsm", 4.0): 0.3, ("fgsm", 8.0): 0.2, ("ifgsm", 8.0): 0.1, ("ifgsm", 0.0): 0.5},
    )
    return tmp_path


def test_training_runs_carry_the_attack_metrics_of_their_checkpoint(runs):
    rows = {row["run_dir"]: row for row in training_runs(runs)}
    assert set(rows) == {
        "sweep/conv1_0.5_s0",
        "sweep/conv1_0.5_s1",
        "sweep/layer1_0.5_s0",
        "sweep/none_s0",
        "sweep/none_s1",
        "sweep/dropblock_s0",
    }
    assert rows["sweep/conv1_0.5_s0"]["attack/ifgsm/metric/eps8/mAP"] == 0.1
    assert rows["sweep/conv1_0.5_s1"]["attack/ifgsm/metric/eps8/mAP"] == ""
    assert {row["regularizer"] for row in rows.values()} == {"lfm", "none", "dropblock"}


def test_seeds_are_aggregated_per_configuration(runs):
    rows = [row for row in training_runs(runs) if row["regularizer"] == "lfm"]
    summaries = {
        summary.settings["model.lfm.after"]: summary
        for summary in summarize_seeds(rows, "test/mAP", by=["model.lfm.after", "model.lfm.mask_ratio"])
    }
    conv1, layer1 = summaries["conv1"], summaries["layer1"]
    assert conv1.mean == pytest.approx(0.3) and conv1.std == pytest.approx(math.sqrt(0.02)) and conv1.seeds == (0, 1)
    assert layer1.mean == pytest.approx(0.5) and math.isnan(layer1.std) and layer1.n == 1
    assert best(list(summaries.values())) is layer1
    assert "model.lfm.after=layer1" in str(layer1) and "0.5000" in str(layer1)


def test_runs_without_the_metric_are_left_out(runs):
    rows = training_runs(runs)
    summaries = summarize_seeds(rows, "attack/ifgsm/metric/eps8/mAP", by=["model.lfm.after"])
    assert [(summary.settings, summary.mean, summary.n) for summary in summaries] == [
        ({"model.lfm.after": "conv1"}, 0.1, 1)
    ]
    with pytest.raises(InputError, match="no runs hold this metric"):
        best(summarize_seeds(rows, "test/rank1"))


def test_grid_lays_summaries_out_by_two_parameters_with_gaps(runs):
    rows = [row for row in training_runs(runs) if row["regularizer"] == "lfm"]
    rows.append({**rows[-1], "model.lfm.mask_ratio": 0.25, "run_dir": "extra", "test/mAP": 0.7})
    summaries = summarize_seeds(rows, "test/mAP", by=["model.lfm.after", "model.lfm.mask_ratio"])
    depths, ratios, cells = grid(summaries, "model.lfm.after", "model.lfm.mask_ratio")
    assert depths == ["conv1", "layer1"] and ratios == [0.25, 0.5]
    assert cells[0][0] is None and cells[0][1].mean == pytest.approx(0.3)
    assert cells[1][0].mean == pytest.approx(0.7) and cells[1][1].mean == pytest.approx(0.5)
    sparse = [summary for summary in summaries if summary.settings["model.lfm.after"] == "layer1"][:1]
    depths, ratios, cells = grid(sparse, "model.lfm.after", "model.lfm.mask_ratio", frame=summaries)
    assert depths == ["conv1", "layer1"] and ratios == [0.25, 0.5]
    assert sum(cell is not None for line in cells for cell in line) == 1
    with pytest.raises(InputError, match="no runs to lay out over model.lfm.after x model.lfm.mask_ratio"):
        grid([], "model.lfm.after", "model.lfm.mask_ratio")


def test_each_regularizer_is_compared_at_its_best_configuration(runs):
    comparison = {
        summary.settings["regularizer"]: summary for summary in best_per_regularizer(training_runs(runs), "test/mAP")
    }
    assert set(comparison) == {"lfm", "none", "dropblock"}
    assert comparison["lfm"].settings["model.lfm.after"] == "layer1" and comparison["lfm"].mean == pytest.approx(0.5)
    assert comparison["none"].mean == pytest.approx(0.15) and comparison["none"].n == 2
    assert comparison["dropblock"].mean == pytest.approx(0.35)


def test_strongest_attack_is_the_lowest_at_the_largest_eps_without_the_noise_control(runs):
    assert strongest_attack_metric(training_runs(runs)) == "attack/ifgsm/metric/eps8/mAP"
    assert strongest_attack_metric([{"test/mAP": 0.3}]) is None


def test_robustness_runs_give_curves_per_attack(runs):
    (run,) = load_robustness_runs(runs)
    assert run.label == "robustness/lfm" and run.task == "reid"
    assert run.checkpoint == runs / "sweep" / "conv1_0.5_s0" / "checkpoints" / "best.ckpt"
    assert run.attacks == [("noise", "none"), ("fgsm", "metric"), ("ifgsm", "metric")]
    assert run.curve("ifgsm", "metric", "mAP") == ([0.0, 8.0], [0.5, 0.1])
    assert run.curve("fgsm", "metric", "rank1") == ([4.0, 8.0], [0.3, 0.2])


def test_a_robustness_file_that_is_not_src_eval_output_is_named(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "robustness.json").write_text('{"rows": []}')
    with pytest.raises(InputError, match="run/robustness.json"):
        load_robustness_runs(tmp_path)


def test_first_checkpoint_is_the_first_training_run_in_path_order(runs, tmp_path_factory):
    assert first_checkpoint(runs) == runs / "sweep" / "conv1_0.5_s0" / "checkpoints" / "best.ckpt"
    with pytest.raises(InputError, match="no training run with a checkpoint"):
        first_checkpoint(tmp_path_factory.mktemp("empty"))
