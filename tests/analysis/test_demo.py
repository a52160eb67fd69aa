"""The notebooks' demo outputs: made once, reused, resumable; a real results directory is used as is."""

import json

import pytest
from helpers import PROJECT_ROOT

from lfm.analysis import demo
from lfm.errors import InputError
from lfm.sweeps.runs import prepare_sweep


def test_a_results_directory_is_used_as_given(tmp_path):
    assert demo.results_dir(tmp_path) == tmp_path
    assert demo.results_dir(str(tmp_path)) == tmp_path


def test_a_missing_results_directory_is_named(tmp_path):
    with pytest.raises(InputError, match=r"RESULTS_DIR=.*/missing is not a directory.*None"):
        demo.results_dir(tmp_path / "missing")


def test_complete_demo_outputs_are_reused_without_running_anything(tmp_path):
    (tmp_path / demo.COMPLETE_FILE).write_text("{}")
    assert demo.ensure_demo_outputs(tmp_path) == tmp_path
    assert [path.name for path in tmp_path.iterdir()] == [demo.COMPLETE_FILE]


def test_the_demo_sweeps_compose_as_planned(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    lfm_grid, comparisons = (prepare_sweep(path) for path in demo.SWEEP_FILES)
    assert len(lfm_grid.points) == 8 and len(comparisons.points) == 4
    assert {(point["model.lfm.after"], point["model.lfm.mask_ratio"]) for point in lfm_grid.points} == {
        ("conv1", 0.25),
        ("conv1", 0.5),
        ("layer1", 0.25),
        ("layer1", 0.5),
    }
    assert {point["seed"] for point in lfm_grid.points} == {point["seed"] for point in comparisons.points} == {0, 1}
    picked = demo.ROBUSTNESS_MODELS["lfm"]
    assert {
        "model.lfm.after": picked["model.lfm.after"],
        "model.lfm.mask_ratio": picked["model.lfm.mask_ratio"],
        "seed": picked["seed"],
    } in lfm_grid.points


def test_find_run_matches_every_wanted_column():
    runs = [
        {"run_dir": "a", "regularizer": "lfm", "seed": 0},
        {"run_dir": "b", "regularizer": "none", "seed": 1},
        {"run_dir": "c", "regularizer": "none", "seed": 0},
    ]
    assert demo.find_run(runs, {"regularizer": "none", "seed": 0})["run_dir"] == "c"
    with pytest.raises(RuntimeError, match="no run with"):
        demo.find_run(runs, {"regularizer": "dropblock"})


def test_a_finished_eval_run_is_kept(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"test/mAP": 0.5}))
    demo.make_eval(tmp_path / "no.ckpt", tmp_path, tmp_path / "eval.log")
    assert not (tmp_path / "eval.log").exists()


def test_an_interrupted_eval_run_is_cleared_and_a_failure_names_its_log(tmp_path):
    run_dir = tmp_path / "robustness" / "lfm"
    run_dir.mkdir(parents=True)
    (run_dir / "partial.csv").write_text("left by an interrupted attempt")
    with pytest.raises(RuntimeError, match=r"src/eval.py .* failed \(exit 2\); see .*eval.log"):
        demo.make_eval(tmp_path / "missing.ckpt", run_dir, tmp_path / "eval.log")
    assert not (run_dir / "partial.csv").exists()
    assert (
        "ckpt_path=" in (tmp_path / "eval.log").read_text() and "does not exist" in (tmp_path / "eval.log").read_text()
    )
