import json

import pytest
from helpers import run_entry_point

from lfm.errors import InputError
from lfm.study.spec import load_study, study_steps, tuning_steps

VALID = {
    "name": "tiny",
    "seeds": [0, 1],
    "baseline": "baseline",
    "methods": {"baseline": ["experiment=baseline_resnet18_synthetic"], "lfm": ["experiment=lfm_resnet18_synthetic"]},
    "domains": [{"train": "synthetic_market", "cross": ["synthetic_duke"]}],
    "attack_overrides": ["attack=literature"],
    "claims": [{"text": "t", "question": "in_domain", "method": "lfm", "reference": "baseline"}],
}


def write(tmp_path, content) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_steps_cover_every_method_seed_and_test_set_in_seed_order(tmp_path):
    steps = study_steps(load_study(write(tmp_path, VALID)))
    assert [step.key for step in steps[:3]] == [
        "synthetic_market/baseline/seed0/train",
        "synthetic_market/baseline/seed0/cross_synthetic_duke",
        "synthetic_market/baseline/seed0/attack",
    ]
    assert len(steps) == 2 * 2 * 3
    assert [step.seed for step in steps] == [0] * 6 + [1] * 6


def test_no_attack_overrides_means_no_attack_step(tmp_path):
    steps = study_steps(load_study(write(tmp_path, {**VALID, "attack_overrides": []})))
    assert {step.kind for step in steps} == {"train", "cross"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [0, 0]}, "distinct integers"),
        ({"baseline": "nothing"}, "baseline='nothing' is not one of the methods"),
        ({"domains": [{"train": "market9"}]}, "domains[0].train='market9' is not a data config"),
        ({"domains": [{"train": "synthetic_market", "cross": ["duke9"]}]}, "domains[0].cross='duke9'"),
        ({"methods": {"baseline": "experiment=x"}}, "methods.baseline must be a list of Hydra overrides"),
        (
            {"claims": [{"text": "t", "question": "speed", "method": "lfm", "reference": "baseline"}]},
            "claims[0].question='speed'",
        ),
        (
            {"claims": [{"text": "t", "question": "in_domain", "method": "lfm9", "reference": "baseline"}]},
            "claims[0].method='lfm9'",
        ),
        (
            {"methods": {"baseline": {"overrides": [], "seed": [0]}}},
            "methods.baseline takes the keys overrides and seeds",
        ),
        ({"methods": {"baseline": {"overrides": [], "seeds": [1, 1]}}}, "methods.baseline.seeds must be"),
        ({"methods": {"baseline": [], "x_tuned": []}}, "methods.x_tuned: labels ending in _tuned"),
        ({"domains": [{"train": "synthetic_market", "methods": ["lfm9"]}]}, "domains[0].methods must be a list of"),
        (
            {"domains": [{"train": "synthetic_market", "methods": ["baseline"], "attacked": ["lfm"]}]},
            "domains[0].attacked must be a list of methods from ['baseline']",
        ),
        ({"tuning": {"candidates": {"lfm9": [["x=1"]]}}}, "tuning.candidates.lfm9: 'lfm9' is not one of the methods"),
        ({"tuning": {"candidates": {"lfm": []}}}, "tuning.candidates.lfm must be a list of override lists"),
        ({"tuning": {"candidates": {}}}, "tuning must be"),
        ({"tuning": {"candidates": {"lfm": ["x=1"]}}}, "tuning.candidates.lfm[0] must be a list of Hydra overrides"),
        ({"domains": [{"train": "synthetic_market", "seeds": []}]}, "domains[0].seeds must be a non-empty list"),
        ({"tuning": {"seed": "a", "candidates": {"lfm": [["x=1"]]}}}, "tuning.seed must be an integer"),
    ],
)
def test_bad_study_files_name_the_key(tmp_path, change, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study(write(tmp_path, {**VALID, **change}))


def test_missing_keys_and_unknown_names(tmp_path):
    with pytest.raises(InputError, match=r"missing key\(s\) \['domains'\]"):
        load_study(write(tmp_path, {key: value for key, value in VALID.items() if key != "domains"}))
    with pytest.raises(InputError, match="does not exist; pass one of .*embedded"):
        load_study("no_such_study")
    with pytest.raises(InputError, match="is not a valid YAML study file"):
        load_study(write(tmp_path, "seeds: [0, [1]"))


def test_the_command_line_reports_a_bad_study_file_in_one_line(tmp_path):
    result = run_entry_point("study.py", write(tmp_path, {**VALID, "seeds": "0"}))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: ") and "seeds must be a non-empty list" in result.stderr


def test_tuning_runs_first_and_a_tuned_method_trains_unless_its_own_strength_won(tmp_path):
    study = {
        **VALID,
        "methods": {**VALID["methods"], "dropout": {"overrides": ["experiment=x"], "seeds": [0]}},
        "tuning": {"seed": 9, "candidates": {"lfm": [["model.lfm.p=0.25"], ["model.lfm.p=0.1"]]}},
        "domains": [
            {"train": "synthetic_market", "cross": ["synthetic_duke"], "attacked": ["baseline", "lfm"]},
            {"train": "synthetic_duke", "methods": ["baseline", "lfm_tuned"], "seeds": [1]},
        ],
        "claims": [{"text": "t", "question": "in_domain", "method": "lfm_tuned", "reference": "baseline"}],
    }
    spec = load_study(write(tmp_path, study))
    assert [step.key for step in tuning_steps(spec)] == [f"tune/lfm/candidate{i}" for i in range(3)]
    assert {step.domain for step in tuning_steps(spec)} == {"synthetic_market"}
    assert spec.candidates("lfm") == ((), ("model.lfm.p=0.25",), ("model.lfm.p=0.1",))
    keys = [step.key for step in study_steps(spec)]
    assert "synthetic_market/lfm_tuned/seed1/cross_synthetic_duke" in keys
    assert "synthetic_market/lfm_tuned/seed0/attack" not in keys  # not in attacked
    assert "synthetic_market/dropout/seed1/train" not in keys  # dropout runs seed 0 only
    assert "synthetic_duke/lfm/seed0/train" not in keys  # the second domain trains baseline and lfm_tuned
    assert "synthetic_duke/lfm_tuned/seed1/train" in keys
    assert not [key for key in keys if key.startswith("synthetic_duke/") and "/seed0/" in key]  # its seeds: [1]
    same = [step.key for step in study_steps(spec, frozenset({"lfm_tuned"}))]
    assert not [key for key in same if "lfm_tuned" in key]
