"""The whole study at tiny sizes (one seed, two methods, LFM tuned over two strengths), two steps at once: the
tuning, steps, dependencies, resume, determinism, and the report's numbers."""

import json
import shutil
import subprocess
from datetime import datetime

import pytest
from helpers import PROJECT_ROOT, TINY_SCALE, entry_point

from lfm.study.spec import load_study, study_steps, tuning_steps
from lfm.study.tuning import choose_strengths, same_as_paper

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
    study_file, out_dir, _, _ = study
    spec = load_study(str(study_file))
    choices = choose_strengths(spec, out_dir / "runs")
    state = json.loads((out_dir / "study_state.json").read_text())
    steps = [*tuning_steps(spec), *study_steps(spec, same_as_paper(choices))]
    assert list(state["steps"]) == [step.key for step in steps]
    assert len(steps) in (8, 10)  # 2 tuning runs, then 2 methods x 3 steps (+ train and cross of lfm_paper_tuned)
    assert all(record["status"] == "finished" for record in state["steps"].values())
    report = (out_dir / "report.md").read_text()
    for heading in (
        "## Verdicts",
        "## Tuning",
        "## Learning curves",
        "## In-domain",
        "## Cross-domain",
        "## Under white-box attack",
        "## Setup",
        "## Reproduce",
    ):
        assert heading in report
    assert "- Untested (one seed gives no interval): LFM improves in-domain re-ID (synthetic_market)." in report
    assert " of 6 attacked mAPs are below their run's clean mAP" in report  # (fgsm at eps 2 and 8, pgd at 8) x 2
    assert "the noise control at eps 8 lowers mAP by" in report
    threads = json.loads((out_dir / "study_state.json").read_text())["steps"]["tune/lfm_paper/candidate0"]["where"]
    assert f"python src/study.py {study_file} --threads-per-job {threads['threads']}" in report
    for figure in ("in_domain.png", "cross_domain.png", "robustness.png", "learning_curves.png"):
        assert (out_dir / "figures" / figure).stat().st_size > 0


def test_two_steps_run_at_once_and_evaluations_wait_for_their_training(study):
    _, out_dir, _, _ = study
    steps = json.loads((out_dir / "study_state.json").read_text())["steps"]
    started = {key: datetime.fromisoformat(record["started"]) for key, record in steps.items()}
    ended = {key: datetime.fromisoformat(record["ended"]) for key, record in steps.items()}
    trainings = [key for key in steps if key.startswith("tune/")]
    assert len(trainings) == 2
    assert max(started[key] for key in trainings) < min(ended[key] for key in trainings), "the trainings overlap"
    last_tuning = max(ended[key] for key in trainings)
    for key in steps:
        if not key.startswith("tune/"):
            assert started[key] >= last_tuning, f"{key} started before the tuning ended"
        if not key.endswith("/train") and not key.startswith("tune/"):
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
    """Also what makes `make study` reproducible: a training and an attack run again give the same numbers."""
    _study_file, out_dir, command, env = study
    model = out_dir / "runs/synthetic_market/lfm_paper/seed0"
    before = {
        "train": json.loads((model / "train/metrics.json").read_text()),
        "curve": read_csv(model / "train/csv/metrics.csv"),
        "attack": json.loads((model / "attack/robustness.json").read_text())["rows"],
    }
    total = len(json.loads((out_dir / "study_state.json").read_text())["steps"])
    shutil.rmtree(model / "train")
    (model / "attack/metrics.json").unlink()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("finished earlier, skipped") == total - 2
    assert "| 2 done, 0 failed, 0 left" in result.stdout
    assert list((out_dir / "attempts").rglob("robustness.json")), "the unfinished attempt is kept aside"
    after = json.loads((model / "train/metrics.json").read_text())
    for key in ("test/mAP", "test/rank1", "test/mINP", "val/mAP_best"):
        assert after.get(key) == before["train"].get(key), key
    curve = read_csv(model / "train/csv/metrics.csv")
    assert len(curve) == len(before["curve"]) and any(row["val/mAP"] for row in curve)
    for row, earlier in zip(curve, before["curve"]):  # every logged value but the timings, epoch by epoch
        assert {k: v for k, v in row.items() if "second" not in k} == {
            k: v for k, v in earlier.items() if "second" not in k
        }
    assert json.loads((model / "attack/robustness.json").read_text())["rows"] == before["attack"]


def test_the_embedded_and_full_studies_are_valid():
    for name in ("embedded", "full"):
        spec = load_study(name)
        assert len(spec.seeds) >= 3
        assert {"baseline", "dropout2d", "dropblock", "random_erasing"} <= set(spec.methods)
    embedded = load_study("embedded")
    assert set(embedded.tuning.candidates) == {"lfm", "dropout2d", "dropblock", "random_erasing"}
    assert [domain.train for domain in embedded.domains] == ["synthetic_market", "synthetic_duke"]


def test_make_study_runs_the_embedded_study_as_one_thread_jobs():
    """The embedded study's numbers depend on the thread count; make study fixes it at 1 per job."""
    result = subprocess.run(["make", "-n", "study"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert "src/study.py embedded --jobs 2 --threads-per-job 1" in result.stdout
    full = subprocess.run(["make", "-n", "study", "STUDY=full"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert "--threads-per-job" not in full.stdout
