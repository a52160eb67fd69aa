"""The report from hand-made run files: numbers, intervals and verdicts are what the files imply."""

import csv
import json
import math

import pytest

from lfm.study.report import write_report
from lfm.study.spec import load_study, study_steps, tuning_steps
from lfm.study.tuning import choose_strengths, same_as_paper

STUDY = {
    "name": "made",
    "seeds": [0, 1, 2],
    "baseline": "baseline",
    "methods": {"baseline": [], "lfm": [], "worse": []},
    "domains": [{"train": "synthetic_market", "cross": ["synthetic_duke"]}],
    "attack_overrides": ["attack=literature"],
    "claims": [
        {"text": "LFM helps", "question": "in_domain", "method": "lfm", "reference": "baseline"},
        {"text": "worse hurts", "question": "in_domain", "method": "worse", "reference": "baseline"},
        {"text": "LFM is robust", "question": "robustness", "method": "lfm", "reference": "baseline"},
        {"text": "LFM transfers", "question": "cross_domain", "method": "lfm", "reference": "baseline"},
    ],
}
IN_DOMAIN = {"baseline": [0.40, 0.42, 0.41], "lfm": [0.45, 0.46, 0.47], "worse": [0.30, 0.33, 0.31]}
IN_DOMAIN["lfm_tuned"] = [0.48, 0.49, 0.50]
CROSS = {"baseline": [0.10, 0.12, 0.11], "lfm": [0.13, 0.10, 0.12], "worse": [0.1, 0.1, 0.1]}
CROSS["lfm_tuned"] = CROSS["lfm"]
# lfm: the candidate p=0.25 wins its tuning; worse: its own strength wins
TUNING = {
    "tune/lfm/candidate0": 0.5,
    "tune/lfm/candidate1": 0.6,
    "tune/worse/candidate0": 0.3,
    "tune/worse/candidate1": 0.2,
}


def make_runs(tmp_path, study=STUDY):
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps(study))
    spec = load_study(str(path))
    runs = tmp_path / "out" / "runs"
    for step in tuning_steps(spec):
        (runs / step.key).mkdir(parents=True)
        (runs / step.key / "metrics.json").write_text(json.dumps({"val/mAP_best": TUNING[step.key]}))
    for step in study_steps(spec, same_as_paper(choose_strengths(spec, runs))):
        run_dir = runs / step.key
        run_dir.mkdir(parents=True)
        index = step.seed
        if step.kind == "train":
            value = IN_DOMAIN[step.method][index]
            (run_dir / "config.yaml").write_text(
                "data: {image_size: [64, 32], batch_size: 32}\nmodel: {backbone: resnet18, pretrained: false, "
                "optimizer: {name: sgd, lr: 0.05}, scheduler: {name: cosine}}\ntrainer: {max_epochs: 12, precision: 32-true}\n"
            )
        elif step.kind == "cross":
            value = CROSS[step.method][index]
        else:
            value = IN_DOMAIN[step.method][index]
            rows = [{"mode": "white-box", "method": "clean", "loss": "none", "eps": 0.0, "mAP": value, "rank1": value}]
            rows.append({"mode": "white-box", "method": "noise", "loss": "none", "eps": 8.0, "mAP": value - 0.001})
            rows[-1]["rank1"] = value
            rows += [
                {
                    "mode": "white-box",
                    "method": "ifgsm",
                    "loss": "sma",
                    "eps": eps,
                    "mAP": value / (1 + eps),
                    "rank1": value / (1 + eps),
                }
                for eps in (2.0, 8.0)
            ]
            (run_dir / "robustness.json").write_text(json.dumps({"rows": rows}))
        (run_dir / "metrics.json").write_text(json.dumps({"test/mAP": value, "test/rank1": value + 0.2}))
    return spec, tmp_path / "out"


def read(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_summary_and_claims_follow_from_the_files(tmp_path):
    spec, out_dir = make_runs(tmp_path)
    report = write_report(spec, out_dir, {"steps": {}}).read_text()
    summary = {
        (r["question"], r["setting"], r["method"], r["metric"]): r for r in read(out_dir / "tables" / "summary.csv")
    }
    lfm = summary[("in_domain", "synthetic_market", "lfm", "mAP")]
    assert float(lfm["mean"]) == pytest.approx(0.46)
    assert float(lfm["std"]) == pytest.approx(0.01)
    assert float(lfm["diff_to_baseline"]) == pytest.approx(0.05)
    half = 4.302653 * 0.01 / math.sqrt(3)  # differences 0.05, 0.04, 0.06
    assert float(lfm["diff_low"]) == pytest.approx(0.05 - half)
    assert float(summary[("in_domain", "synthetic_market", "lfm", "rank1")]["mean"]) == pytest.approx(0.66)
    robust = summary[("robustness", "synthetic_market: mean over attacks", "lfm", "mAP")]
    assert float(robust["mean"]) == pytest.approx(sum(v / 3 + v / 9 for v in IN_DOMAIN["lfm"]) / 2 / 3)
    assert ("robustness", "synthetic_market: ifgsm/sma eps8", "lfm", "mAP") in summary
    claims = {row["claim"]: row["verdict"] for row in read(out_dir / "tables" / "claims.csv")}
    assert claims == {
        "LFM helps": "held",
        "worse hurts": "contradicted",
        "LFM is robust": "held",
        "LFM transfers": "not shown",
    }
    assert (
        "- Held on this data: LFM helps (synthetic_market); LFM is robust (synthetic_market: mean over attacks)."
        in report
    )
    assert "| lfm | 3 | 0.4600 ± 0.0100 |" in report
    detectable = {row["claim"]: float(row["detectable"]) for row in read(out_dir / "tables" / "claims.csv")}
    assert all(value > 0 for value in detectable.values())
    assert (
        f"LFM transfers (synthetic_market -> synthetic_duke; a true difference of ±{detectable['LFM transfers']:.4f}"
        in report
    )
    assert "synthetic_market -> synthetic_duke" in report
    assert "ResNet18" in report or "resnet18" in report


def test_a_partly_finished_study_reports_what_finished(tmp_path):
    spec, out_dir = make_runs(tmp_path)
    for step in study_steps(spec):
        if step.seed == 2:
            (out_dir / "runs" / step.key / "metrics.json").unlink()
    report = write_report(spec, out_dir, {"steps": {}}).read_text()
    assert report.count(f"of {len(study_steps(spec))} steps finished") == 1
    summary = read(out_dir / "tables" / "summary.csv")
    assert {row["seeds"] for row in summary} == {"2"}


def test_the_noise_control_is_not_an_attack_and_the_sanity_line_counts_the_attacks(tmp_path):
    spec, out_dir = make_runs(tmp_path)
    report = write_report(spec, out_dir, {"steps": {}}).read_text()
    assert "(not below:" not in report
    settings = {row["setting"] for row in read(out_dir / "tables" / "summary.csv")}
    assert not [setting for setting in settings if "noise" in setting]
    assert (
        "- synthetic_market: 18 of 18 attacked mAPs are below their run's clean mAP; the noise control at eps 8 "
        "lowers mAP by 0.0010 on average" in report
    )


def test_claims_wider_than_the_target_say_how_many_seeds_would_narrow_them(tmp_path):
    spec, out_dir = make_runs(tmp_path)
    report = write_report(spec, out_dir, {"steps": {}}).read_text()
    claims = {row["claim"]: row for row in read(out_dir / "tables" / "claims.csv")}
    assert float(claims["LFM helps"]["half_width"]) == pytest.approx(4.302653 * 0.01 / math.sqrt(3))
    # differences 0.03, -0.02, 0.01: sd 0.02517; t(4) * sd / sqrt(5) = 0.0313 > 0.03 >= t(5) * sd / sqrt(6) = 0.0264
    assert float(claims["LFM transfers"]["seeds_for_precision"]) == 6
    assert "- LFM transfers (synthetic_market -> synthetic_duke): ±0.0625 with 3 seeds; about 6 seeds" in report
    assert "- LFM helps (" not in report.split("what would narrow it:")[1].split("##")[0]


def test_tuning_picks_by_validation_map_and_a_won_own_strength_reuses_the_runs(tmp_path):
    study = {
        **STUDY,
        "tuning": {"seed": 7, "candidates": {"lfm": [["model.lfm.p=0.25"]], "worse": [["x=1"]]}},
        "claims": [
            {"text": "tuned LFM helps", "question": "in_domain", "method": "lfm_tuned", "reference": "baseline"},
            {"text": "tuned worse hurts", "question": "in_domain", "method": "worse_tuned", "reference": "baseline"},
        ],
    }
    spec, out_dir = make_runs(tmp_path, study)
    report = write_report(spec, out_dir, {"steps": {}}).read_text()
    claims = {row["claim"]: row for row in read(out_dir / "tables" / "claims.csv")}
    assert claims["tuned LFM helps"]["method"] == "lfm_tuned"
    assert float(claims["tuned LFM helps"]["difference"]) == pytest.approx(0.08)
    assert claims["tuned worse hurts"]["method"] == "worse"  # its own strength won: the same runs
    assert float(claims["tuned worse hurts"]["difference"]) == pytest.approx(-0.0967, abs=1e-4)
    assert "| lfm | `model.lfm.p=0.25` | 0.6000 | **chosen** |" in report
    assert "- lfm: `model.lfm.p=0.25` won; `lfm_tuned` trains with it." in report
    assert "- worse: its own (paper) strength won; `worse_tuned` is the same runs as `worse`." in report
    assert "- `lfm_tuned` (seeds [0, 1, 2]): `model.lfm.p=0.25`" in report


def test_the_sanity_line_names_the_attacks_that_did_not_lower_map(tmp_path):
    spec, out_dir = make_runs(tmp_path)
    attack = out_dir / "runs" / "synthetic_market" / "lfm" / "seed1" / "attack" / "robustness.json"
    table = json.loads(attack.read_text())
    table["rows"][2]["mAP"] = table["rows"][0]["mAP"] + 0.01  # ifgsm/sma eps2 above the clean mAP
    attack.write_text(json.dumps(table))
    report = write_report(spec, out_dir, {"steps": {}}).read_text()
    assert "17 of 18 attacked mAPs are below their run's clean mAP (not below: ifgsm/sma eps2 in 1 run(s))" in report
