"""src/eval.py with attack presets: the robustness table, its files, and the checks that make
it trustworthy (eps = 0 is clean, metrics fall with eps, iterative >= one-step, noise is weak)."""

import csv
import json
import re

import pytest
from helpers import TINY_SCALE, run_entry_point

from lfm.attacks.robustness import attack_grid, literature_steps, parse_attack_settings
from lfm.errors import InputError

TINY_REID = (
    "experiment=baseline_resnet18_synthetic",
    f"data.synthetic.scale={TINY_SCALE}",
    "data.image_size=[32,16]",
    "data.val_ids=0",
    "data.num_workers=0",
    "data.eval_batch_size=512",
    "trainer.max_epochs=5",
    "logger.wandb.mode=disabled",
)
# The literature preset with fewer radii and iterations, to stay fast on 2 CPU cores.
TINY_LITERATURE = (
    "attack=literature",
    "attack.eps=[0,4,16]",
    "attack.methods=[noise,fgsm,ifgsm]",
    "attack.steps=5",
    "attack.alpha=null",
)
# Tolerance for "does not rise with eps": a few queries changing rank on a tiny test split.
NOISE = 0.03


@pytest.fixture(scope="module")
def reid_checkpoint(tmp_path_factory):
    base = tmp_path_factory.mktemp("robust")
    run_dir = base / "run"
    result = run_entry_point("train.py", *TINY_REID, f"paths.data_dir={base / 'data'}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def literature_eval(reid_checkpoint, tmp_path_factory):
    eval_dir = tmp_path_factory.mktemp("eval") / "literature"
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={reid_checkpoint / 'checkpoints/last.ckpt'}",
        *TINY_LITERATURE,
        "logger.wandb.mode=disabled",
        f"hydra.run.dir={eval_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return eval_dir, result


def rows_by_attack(eval_dir) -> dict:
    rows = json.loads((eval_dir / "robustness.json").read_text())["rows"]
    return {(row["method"], row["loss"], row["eps"]): row for row in rows}


def test_eval_writes_and_prints_the_robustness_table(literature_eval):
    eval_dir, result = literature_eval
    for name in ("robustness.json", "robustness.csv", "robustness.png", "metrics.json"):
        assert (eval_dir / name).is_file(), name
    assert (eval_dir / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert "Robustness (literature, white-box" in result.stdout
    table = json.loads((eval_dir / "robustness.json").read_text())
    assert table["task"] == "reid" and table["eps_unit"] == "1/255" and table["preset"] == "literature"
    with (eval_dir / "robustness.csv").open() as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == len(table["rows"]) == 1 + 3 + 2 * 3 * 3  # clean, noise, 2 methods x 3 losses x 3 eps
    assert {row["mode"] for row in csv_rows} == {"white-box"}
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["attack/ifgsm/metric/eps16/mAP"] == rows_by_attack(eval_dir)[("ifgsm", "metric", 16.0)]["mAP"]


def test_eps_zero_equals_the_clean_metric_exactly(literature_eval):
    eval_dir, _ = literature_eval
    rows = rows_by_attack(eval_dir)
    clean = rows[("clean", "none", 0.0)]
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert clean["mAP"] == metrics["test/mAP"] and clean["rank1"] == metrics["test/rank1"]
    for (method, loss, eps), row in rows.items():
        if eps == 0:
            assert (row["mAP"], row["rank1"]) == (clean["mAP"], clean["rank1"]), (method, loss)


def test_metric_does_not_rise_with_eps_and_attacks_beat_noise(literature_eval):
    eval_dir, _ = literature_eval
    rows = rows_by_attack(eval_dir)
    clean = rows[("clean", "none", 0.0)]["mAP"]
    assert clean > 0.1, "the tiny model should have learned something before it is attacked"  # 0.12 at seed 0
    for method in ("fgsm", "ifgsm"):
        for loss in ("sma", "odfa", "metric"):
            curve = [rows[(method, loss, eps)]["mAP"] for eps in (0.0, 4.0, 16.0)]
            assert curve[1] <= curve[0] + NOISE and curve[2] <= curve[1] + NOISE, (method, loss, curve)
    for loss in ("sma", "odfa", "metric"):
        for eps in (4.0, 16.0):
            assert rows[("ifgsm", loss, eps)]["mAP"] <= rows[("fgsm", loss, eps)]["mAP"] + NOISE, (loss, eps)
    attacked = rows[("ifgsm", "metric", 16.0)]["mAP"]
    noise = rows[("noise", "none", 16.0)]["mAP"]
    assert clean - attacked > 0.3 * clean  # 37% on the tensor pipeline's tiny model at seed 0
    assert abs(clean - noise) < 0.25 * (clean - attacked)


def test_transfer_mode_is_labelled(reid_checkpoint, tmp_path):
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={reid_checkpoint / 'checkpoints/last.ckpt'}",
        "attack=literature",
        "attack.eps=[0,8]",
        "attack.methods=[fgsm]",
        "attack.losses=[metric]",
        f"attack.source_ckpt_path={reid_checkpoint / 'checkpoints/last.ckpt'}",
        "logger.wandb.mode=disabled",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads((tmp_path / "eval" / "robustness.json").read_text())
    assert {row["mode"] for row in table["rows"]} == {"transfer"}
    assert "Robustness (literature, transfer" in result.stdout


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("attack.eps=[0,-2]", "attack.eps"),
        pytest.param("attack.eps=[0,300]", "attack.eps", marks=pytest.mark.slow),
        pytest.param("attack.eps=abc", "attack.eps", marks=pytest.mark.slow),
        ("attack.methods=[bim]", "attack.methods"),
    ],
)
def test_bad_attack_settings_give_one_line(tmp_path, override, fragment):
    checkpoint = tmp_path / "some.ckpt"
    checkpoint.write_bytes(b"never read: the attack settings are checked first")
    result = run_entry_point(
        "eval.py", f"ckpt_path={checkpoint}", "attack=literature", override, f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("eps", [[-1], [256], "8", [True], [float("nan")], None])
def test_attack_eps_is_validated(eps):
    with pytest.raises(InputError, match="attack.eps"):
        parse_attack_settings({"eps": eps, "methods": ["fgsm"]})


def test_losses_must_fit_the_task():
    settings = parse_attack_settings({"eps": [0, 8], "methods": ["fgsm"], "losses": ["ce"]})
    assert settings.losses_for("classification") == ("ce",)
    with pytest.raises(InputError, match="attack.losses"):
        settings.losses_for("reid")
    assert parse_attack_settings({"eps": [0], "methods": ["fgsm"]}).losses_for("reid") == ("sma", "odfa", "metric")


def test_literature_iteration_count():
    assert [literature_steps(eps) for eps in (1, 2, 4, 5, 8, 16)] == [1, 2, 5, 6, 10, 20]


def test_eps_by_method_gives_a_method_its_own_radii():
    settings = parse_attack_settings(
        {"eps": [2, 4, 8], "methods": ["noise", "ifgsm", "pgd"], "eps_by_method": {"pgd": [8]}}
    )
    grid = attack_grid(settings, ("sma", "odfa"))
    assert [(method, loss, eps) for method, loss, eps in grid if method == "pgd"] == [
        ("pgd", "sma", 8.0),
        ("pgd", "odfa", 8.0),
    ]
    assert len([row for row in grid if row[0] == "ifgsm"]) == 6
    assert len([row for row in grid if row[0] == "noise"]) == 3


@pytest.mark.parametrize(
    ("eps_by_method", "fragment"),
    [({"mifgsm": [8]}, "attack.eps_by_method must map methods"), ({"pgd": [300]}, "attack.eps_by_method.pgd")],
)
def test_eps_by_method_is_validated(eps_by_method, fragment):
    with pytest.raises(InputError, match=re.escape(fragment)):
        parse_attack_settings({"eps": [2], "methods": ["pgd"], "eps_by_method": eps_by_method})
