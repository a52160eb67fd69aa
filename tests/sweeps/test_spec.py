"""Sweep files: every file in conf/sweep checks out offline; bad files stop with one line naming the problem."""

import math
from pathlib import Path

import pytest
from helpers import PROJECT_ROOT
from hydra import compose, initialize_config_dir

from lfm.errors import InputError
from lfm.study.spec import load_study
from lfm.sweeps.command import hydra_overrides, render_command
from lfm.sweeps.proposals import propose_runs
from lfm.sweeps.runner import run_sweep
from lfm.sweeps.runs import prepare_sweep, run_id
from lfm.sweeps.spec import load_sweep

SWEEP_FILES = sorted((PROJECT_ROOT / "conf" / "sweep").glob("*.yaml"))
CONF = PROJECT_ROOT / "conf"
COMMAND = """command:
  - ${env}
  - ${interpreter}
  - ${program}
  - experiment=lfm_resnet18_synthetic
  - ${args_no_hyphens}
"""


@pytest.fixture(autouse=True)
def from_project_root(monkeypatch):
    """Sweep files name their program relative to the project root, as `wandb agent` runs it."""
    monkeypatch.chdir(PROJECT_ROOT)


def write_sweep(tmp_path: Path, body: str, command: str = COMMAND) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"program: src/train.py\n{body}{command}")
    return path


def test_the_sweep_files_are_there():
    assert {path.stem for path in SWEEP_FILES} >= {"demo", "lfm_grid", "lfm_bayes", "regularizers"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.stem)
def test_every_sweep_file_validates_offline(path):
    sweep = prepare_sweep(path, count=5, bayes_as_random=True)
    spec, points = sweep.spec, sweep.points
    assert spec.metric == {"name": "val/mAP_best", "goal": "maximize"}
    assert points and all(list(point) == [parameter.key for parameter in spec.parameters] for point in points)


def test_demo_is_a_two_by_two_grid_of_mask_ratio_and_depth():
    sweep = prepare_sweep(PROJECT_ROOT / "conf/sweep/demo.yaml")
    points = sweep.points
    assert sweep.spec.method == "grid" and len(points) == 4
    assert {(point["model.lfm.mask_ratio"], point["model.lfm.after"]) for point in points} == {
        (0.25, "conv1"),
        (0.25, "layer1"),
        (0.5, "conv1"),
        (0.5, "layer1"),
    }


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def test_the_command_of_a_sampled_run_is_accepted_by_hydra():
    sweep = prepare_sweep(PROJECT_ROOT / "conf/sweep/lfm_bayes.yaml", count=3, seed=7, bayes_as_random=True)
    sampled = sweep.points[2]
    argv = render_command(sweep.spec, sampled, "/venv/bin/python")
    assert argv[-5:-3] == ["src/train.py", "experiment=lfm_resnet18_synthetic"]
    assert argv[-3:] == [
        f"model.lfm.p={sampled['model.lfm.p']}",
        f"model.lfm.mask_ratio={sampled['model.lfm.mask_ratio']}",
        f"model.lfm.area={sampled['model.lfm.area']}",
    ]
    cfg = compose_train(argv[argv.index("src/train.py") + 1 :])
    assert cfg.model.lfm.p == sampled["model.lfm.p"] and cfg.model.lfm.mask_ratio == sampled["model.lfm.mask_ratio"]
    assert list(cfg.model.lfm.area) == sampled["model.lfm.area"]


def test_a_swept_experiment_selects_the_experiment_config():
    sweep = prepare_sweep(PROJECT_ROOT / "conf/sweep/regularizers.yaml")
    assert len(sweep.points) == 18
    cfg = compose_train(hydra_overrides(sweep.spec, {"experiment": "dropblock_resnet18_synthetic", "seed": 2}))
    assert cfg.run_name == "dropblock_resnet18_synthetic" and cfg.seed == 2 and cfg.model.lfm is None


def test_random_search_is_seeded_in_bounds_and_resumable(tmp_path):
    path = write_sweep(
        tmp_path,
        """method: random
parameters:
  model.lfm.p: {distribution: uniform, min: 0.1, max: 0.9}
  model.lfm.mask_ratio: {distribution: log_uniform_values, min: 0.05, max: 0.8}
  seed: {min: 0, max: 1000}
  trainer.max_epochs: {distribution: q_uniform, min: 2, max: 20, q: 2}
  model.lfm.after: {values: [conv1, layer1], probabilities: [0.9, 0.1]}
""",
    )
    spec = load_sweep(path)
    five = propose_runs(spec, 5, seed=3)
    assert propose_runs(spec, 3, seed=3) == five[:3]
    assert propose_runs(spec, 5, seed=4) != five
    for point in five:
        assert 0.1 <= point["model.lfm.p"] <= 0.9 and 0.05 <= point["model.lfm.mask_ratio"] <= 0.8
        assert type(point["model.lfm.p"]) is float and type(point["seed"]) is int and 0 <= point["seed"] <= 1000
        assert point["trainer.max_epochs"] % 2 == 0 and point["model.lfm.after"] in ("conv1", "layer1")
    draws = propose_runs(spec, 200, seed=0)
    assert 0.8 < sum(point["model.lfm.after"] == "conv1" for point in draws) / 200 < 0.97
    assert 0.05 < min(point["model.lfm.mask_ratio"] for point in draws) < 0.08  # log-uniform favours small values
    assert math.isclose(
        sum(math.log(p["model.lfm.mask_ratio"]) for p in draws) / 200, (math.log(0.05) + math.log(0.8)) / 2, abs_tol=0.2
    )


def test_random_search_over_a_small_space_stops_when_it_is_exhausted(tmp_path):
    path = write_sweep(tmp_path, "method: random\nparameters:\n  model.lfm.after: {values: [conv1, layer1]}\n")
    assert sorted(point["model.lfm.after"] for point in propose_runs(load_sweep(path), 10, seed=0)) == [
        "conv1",
        "layer1",
    ]


def test_run_ids_are_deterministic_readable_and_distinct():
    first = run_id({"model.lfm.mask_ratio": 0.25, "model.lfm.after": "conv1"}, ["a=1", "model.lfm.mask_ratio=0.25"])
    assert first == run_id(
        {"model.lfm.mask_ratio": 0.25, "model.lfm.after": "conv1"}, ["a=1", "model.lfm.mask_ratio=0.25"]
    )
    assert first.startswith("mask_ratio-0.25_after-conv1_")
    assert first != run_id(
        {"model.lfm.mask_ratio": 0.25, "model.lfm.after": "conv1"}, ["a=2", "model.lfm.mask_ratio=0.25"]
    )
    area = run_id({"model.lfm.area": [0.02, 0.4]}, ["model.lfm.area=[0.02, 0.4]"])
    assert " " not in area and "[" not in area and "," not in area


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("method: hyperband\nparameters:\n  seed: {values: [0]}\n", ("method must be one of", "hyperband")),
        ("method: grid\nparameters:\n  seed: {values: []}\n", ("parameters.seed.values", "non-empty")),
        (
            "method: random\nparameters:\n  model.lfm.p: {distribution: normal, min: 0, max: 1}\n",
            ("parameters.model.lfm.p.distribution", "normal"),
        ),
        (
            "method: random\nparameters:\n  model.lfm.p: {distribution: uniform, min: 0.9, max: 0.1}\n",
            ("parameters.model.lfm.p", "min (0.9) must be below max (0.1)"),
        ),
        (
            "method: random\nparameters:\n  model.lfm.p: {distribution: log_uniform_values, min: 0, max: 1}\n",
            ("log_uniform_values needs min > 0",),
        ),
        (
            "method: grid\nparameters:\n  model.lfm.ratio: {values: [0.1]}\n",
            ("parameters.model.lfm.ratio is not a key of the config", "experiment=lfm_resnet18_synthetic"),
        ),
        ("method: grid\nparameters:\n  model.lfm: {values: [null]}\n", ("parameters.model.lfm", "'null'")),
        (
            "method: grid\nparameters:\n  regularizer: {values: [dropout2d, dropconnect]}\n",
            ("Hydra rejects", "regularizer=dropconnect"),
        ),
        (
            "method: grid\nparameters:\n  model.lfm.p: {min: 0.1, max: 0.9}\n",
            ("method grid needs values", "model.lfm.p"),
        ),
        ("method: random\nparameters:\n  model.lfm.p: {values: [0.1, 0.5]}\n", ("has no end", "--count")),
        ("method: bayes\nparameters:\n  model.lfm.p: {values: [0.1]}\n", ("bayes needs metric",)),
        (
            "method: bayes\nmetric: {name: val/mAP_best, goal: maximize}\nparameters:\n  model.lfm.p: {values: [0.1]}\n",
            ("has no end", "--count"),
        ),
        (
            "method: grid\nmetric: {name: val/mAP_best, goal: up}\nparameters:\n  seed: {values: [0]}\n",
            ("metric.goal",),
        ),
        ("method: grid\nparamters:\n  seed: {values: [0]}\n", ("unknown top-level key", "paramters")),
        ("method: grid\nparameters:\n  model: {parameters: {lfm: {values: [1]}}}\n", ("nested parameters",)),
    ],
    ids=[
        "method",
        "empty-values",
        "distribution",
        "min-max",
        "log-min",
        "unknown-key",
        "null",
        "group-option",
        "grid-distribution",
        "random-count",
        "bayes-metric",
        "bayes-count",
        "goal",
        "typo",
        "nested",
    ],
)
def test_a_bad_sweep_file_is_refused_before_anything_runs(tmp_path, body, fragments):
    with pytest.raises(InputError) as error:
        prepare_sweep(write_sweep(tmp_path, body))
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "sweep.yaml") in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_key_that_a_swept_group_brings_can_be_swept(tmp_path):
    body = (
        "method: grid\nparameters:\n  regularizer: {values: [dropout2d]}\n  model.dropout2d.p: {values: [0.1, 0.2]}\n"
    )
    assert [point["model.dropout2d.p"] for point in prepare_sweep(write_sweep(tmp_path, body)).points] == [0.1, 0.2]
    missing = body.replace("model.dropout2d.p", "model.dropblock.p")
    with pytest.raises(InputError, match="parameters.model.dropblock.p is not a key"):
        prepare_sweep(write_sweep(tmp_path, missing))


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        ("", "command is missing"),
        ("command:\n  - ${env}\n  - ${interpreter}\n  - ${program}\n  - ${args}\n", "not ${args}"),
        ("command:\n  - ${env}\n  - ${program}\n  - experiment=lfm_resnet18_synthetic\n", "${args_no_hyphens}"),
    ],
)
def test_the_command_must_pass_hydra_overrides(tmp_path, command, fragment):
    with pytest.raises(InputError, match="command") as error:
        prepare_sweep(write_sweep(tmp_path, "method: grid\nparameters:\n  seed: {values: [0]}\n", command=command))
    assert fragment in str(error.value)


def test_runs_are_grouped_in_wandb_by_sweep_unless_wandb_is_off(tmp_path):
    grouped = prepare_sweep(PROJECT_ROOT / "conf/sweep/demo.yaml")
    assert grouped.run_overrides(Path("/r")) == ["hydra.run.dir=/r", "logger.wandb.group=demo"]
    csv_only = write_sweep(
        tmp_path,
        "method: grid\nparameters:\n  seed: {values: [0]}\n",
        command=COMMAND.replace("  - ${args_no_hyphens}", "  - logger=csv\n  - ${args_no_hyphens}"),
    )
    assert prepare_sweep(csv_only).run_overrides(Path("/r")) == ["hydra.run.dir=/r"]


@pytest.mark.parametrize("load", [load_sweep, load_study], ids=["sweep", "study"])
def test_a_sweep_or_study_file_that_is_not_yaml_stops_with_one_line_naming_the_line(tmp_path, load):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nmethod: grid\nparameters:\n  seed: {values: [0, 1}\n")
    with pytest.raises(InputError) as error:
        load(str(broken))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{broken} is not a valid YAML")
    assert message.endswith("(line 4, column 23: expected ',' or ']', but got '}')")


def test_overrides_after_the_sweep_file_reach_every_run_before_the_swept_values(tmp_path):
    sweep = prepare_sweep(PROJECT_ROOT / "conf/sweep/demo.yaml", overrides=("debug=fast", "data.val_ids=3"))
    argv = render_command(sweep.spec, sweep.points[0], "python")
    assert argv[-4:] == ["debug=fast", "data.val_ids=3", "model.lfm.mask_ratio=0.25", "model.lfm.after=conv1"]
    plain = prepare_sweep(PROJECT_ROOT / "conf/sweep/demo.yaml")
    assert run_id(sweep.points[0], hydra_overrides(sweep.spec, sweep.points[0])) != run_id(
        plain.points[0], hydra_overrides(plain.spec, plain.points[0])
    ), "other overrides, other runs"
    with pytest.raises(InputError, match="'fast' is not a Hydra override; after the sweep file give key=value"):
        prepare_sweep(PROJECT_ROOT / "conf/sweep/demo.yaml", overrides=("fast",))
    with pytest.raises(InputError, match="Hydra rejects the overrides .*data.bogus=1"):
        prepare_sweep(PROJECT_ROOT / "conf/sweep/demo.yaml", overrides=("data.bogus=1",))


def test_a_bayes_file_is_searched_through_optuna_unless_run_as_random():
    searched = prepare_sweep(PROJECT_ROOT / "conf/sweep/lfm_bayes.yaml", count=4)
    assert searched.searched and searched.points == [] and searched.size == 4
    assert prepare_sweep(PROJECT_ROOT / "conf/sweep/lfm_bayes.yaml").size == 30  # the file's run_cap
    as_random = prepare_sweep(PROJECT_ROOT / "conf/sweep/lfm_bayes.yaml", count=4, bayes_as_random=True)
    assert not as_random.searched and len(as_random.points) == 4
    with pytest.raises(InputError, match="--storage goes with a Bayesian search"):
        run_sweep(PROJECT_ROOT / "conf/sweep/demo.yaml", storage="search.db")
