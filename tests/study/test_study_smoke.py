"""The whole study at tiny sizes (one seed, two methods, LFM tuned over two strengths), two steps at once: the
tuning, steps, dependencies, resume, determinism, and the report's numbers."""

import json
import subprocess
from datetime import datetime

import pytest
from helpers import PROJECT_ROOT, TINY_SCALE, entry_point

from lfm.study.spec import load_study

TINY = [f"data.synthetic.scale={TINY_SCALE}", "data.image_size=[64,32]", "data.val_ids=3", "debug=fast"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    study_file = base / "smoke.yaml"
    study_file.write_text(
        json.dumps(
            {
                "name": "smoke",
                "seeds": [0],
                "baseline": "baseline",
                "methods": {
                    "baseline": ["experiment=baseline_resnet18_synthetic"],
                    "lfm_paper": ["experiment=lfm_resnet18_synthetic"],
                },
                "tuning": {"seed": 5, "candidates": {"lfm_paper": [["model.lfm.p=0.25"]]}},
                "domains": [
                    {"train": "synthetic_market", "cross": ["synthetic_duke"], "attacked": ["baseline", "lfm_paper"]}
                ],
                "train_overrides": [*TINY, f"paths.data_dir={base / 'data'}"],
                "eval_overrides": [f"paths.data_dir={base / 'data'}", "logger=csv"],
                "cross_overrides": [f"data.synthetic.scale={TINY_SCALE}", "data.num_workers=0"],
                "attack_overrides": [
                    "attack=literature",
                    "attack.methods=[noise,fgsm,pgd]",
                    "attack.losses=[sma]",
                    "attack.eps=[2,8]",
                    "attack.eps_by_method={pgd:[8]}",
                    "attack.steps=2",
                ],
                "claims": [
                    {
                        "text": "LFM improves in-domain re-ID",
                        "question": "in_domain",
                        "method": "lfm_paper",
                        "reference": "baseline",
                    }
                ],
            }
        )
    )
    out_dir = base / "out"
    command, env = entry_point("study.py", str(study_file), "--out", str(out_dir), "--jobs", "2")
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return study_file, out_dir, command, env


def read_csv(path):
    import csv

    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_every_step_ran_and_the_report_exists(study):
    _study_file, out_dir, _, _ = study
    state = json.loads((out_dir / "study_state.json").read_text())
    assert len(state["steps"]) == 6
    assert all(record["status"] == "finished" for record in state["steps"].values())
    report = (out_dir / "report.md").read_text()
    for heading in (
        "## Verdicts",
        "## In-domain",
        "## Cross-domain",
        "## Under white-box attack",
        "## Setup",
        "## Reproduce",
    ):
        assert heading in report
    assert "- Untested (one seed gives no interval): LFM improves in-domain re-ID (synthetic_market)." in report
    for figure in ("in_domain.png", "cross_domain.png", "robustness.png"):
        assert (out_dir / "figures" / figure).stat().st_size > 0


def test_two_steps_run_at_once_and_evaluations_wait_for_their_training(study):
    _, out_dir, _, _ = study
    steps = json.loads((out_dir / "study_state.json").read_text())["steps"]
    started = {key: datetime.fromisoformat(record["started"]) for key, record in steps.items()}
    ended = {key: datetime.fromisoformat(record["ended"]) for key, record in steps.items()}
    trainings = [key for key in steps if key.endswith("/train")]
    assert len(trainings) == 2
    assert max(started[key] for key in trainings) < min(ended[key] for key in trainings), "the trainings overlap"
    for key in steps:
        if not key.endswith("/train"):
            assert started[key] >= ended[key.rsplit("/", 1)[0] + "/train"], key
    assert all(record["where"]["executor"] == "local" and record["where"]["threads"] >= 1 for record in steps.values())


def test_the_tables_equal_the_runs_metrics_files(study):
    _, out_dir, _, _ = study
    summary = read_csv(out_dir / "tables" / "summary.csv")
    runs = out_dir / "runs" / "synthetic_market"

    def cell(question, method, metric, setting=None):
        return next(
            float(row["mean"])
            for row in summary
            if row["question"] == question
            and row["method"] == method
            and row["metric"] == metric
            and (setting is None or row["setting"] == setting)
        )

    for method in ("baseline", "lfm_paper"):
        trained = json.loads((runs / method / "seed0" / "train" / "metrics.json").read_text())
        assert cell("in_domain", method, "mAP") == pytest.approx(trained["test/mAP"], abs=1e-12)
        assert cell("in_domain", method, "rank1") == pytest.approx(trained["test/rank1"], abs=1e-12)
        cross = json.loads((runs / method / "seed0" / "cross_synthetic_duke" / "metrics.json").read_text())
        assert cell("cross_domain", method, "mAP") == pytest.approx(cross["test/mAP"], abs=1e-12)
        attacked = json.loads((runs / method / "seed0" / "attack" / "metrics.json").read_text())
        eps8 = attacked["attack/fgsm/sma/eps8/mAP"]
        assert cell("robustness", method, "mAP", "synthetic_market: fgsm/sma eps8") == pytest.approx(eps8, abs=1e-12)
    difference = next(
        float(row["diff_to_baseline"])
        for row in summary
        if row["question"] == "in_domain" and row["method"] == "lfm_paper" and row["metric"] == "mAP"
    )
    assert difference == pytest.approx(cell("in_domain", "lfm_paper", "mAP") - cell("in_domain", "baseline", "mAP"))
    claims = read_csv(out_dir / "tables" / "claims.csv")
    assert [row["verdict"] for row in claims] == ["untested (one seed)"]


def test_the_cross_domain_evaluation_reads_the_trained_image_size(study):
    _, out_dir, _, _ = study
    import yaml

    config = yaml.safe_load(
        (out_dir / "runs/synthetic_market/baseline/seed0/cross_synthetic_duke/config.yaml").read_text()
    )
    assert config["data"]["name"] == "synthetic_duke"
    assert config["data"]["image_size"] == [64, 32]


def test_running_again_skips_finished_steps_and_redoes_a_lost_one(study):
    _study_file, out_dir, command, env = study
    lost = out_dir / "runs/synthetic_market/lfm_paper/seed0/attack"
    (lost / "metrics.json").unlink()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("finished earlier, skipped") == 5
    assert "| 1 done, 0 failed, 0 left" in result.stdout
    assert (lost / "metrics.json").is_file()
    assert list((out_dir / "attempts").rglob("robustness.json")), "the unfinished attempt is kept aside"


def test_the_embedded_and_full_studies_are_valid():
    for name in ("embedded", "full"):
        spec = load_study(name)
        assert len(spec.seeds) >= 3
        assert {
            "baseline",
            "lfm_paper",
            "lfm_official",
            "dropout2d",
            "dropblock",
            "random_erasing",
            "lfm_random_erasing",
        } <= set(spec.methods)
