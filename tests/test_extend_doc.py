"""docs/extend.md runs as written: its files (the module, the config file, the study file) are taken from the
page into a folder standing for the reader's (`/path/to/my_lab` in the page), and what the page documents is
done with them.

Fast (in process): the page's `export PYTHONPATH=...` makes the module importable; every documented
`src/train.py` command composes (with the reader's config folder) and passes the checks src/train.py makes
before any data work; the regularizer acts in a training forward pass and not in an evaluation one, beside LFM;
the printed model is the documented one; the batch transform transforms; the documented errors are the
errors; the study file loads, passes the dry run's checks and lists the documented steps. A page whose module
no longer matches its commands (a renamed class) fails these checks.
Slow: the documented commands for real at tiny size: a training run with the config file, the "is it on?"
snippet on its checkpoint, and the study (dry run, then run).
"""

import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from docs_check import extract_commands, read_markdown
from helpers import PROJECT_ROOT, TINY_SCALE, entry_point
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from lfm.data.augment import build_batch_transforms
from lfm.errors import InputError
from lfm.models.reid import ReIDModule
from lfm.runs.pipeline import check_config
from lfm.study.config_check import check_training_runs
from lfm.study.spec import load_study, study_steps, tuning_steps

DOC = PROJECT_ROOT / "docs" / "extend.md"
LAB = "/path/to/my_lab"  # the reader's folder, as the page writes it
MODULE = "my_methods"
FILE_LABEL = re.compile(rf"`{re.escape(LAB)}/([^`]+)`:\s*$")  # "Save this as `/path/to/my_lab/x.py`:"
PYTHON = ".venv/bin/python"
TINY = [f"data.synthetic.scale={TINY_SCALE}", "data.image_size=[64,32]", "data.val_ids=3", "debug=fast"]


@dataclass
class Tutorial:
    lab: Path  # where the page's files were written
    files: dict[str, Path]  # their names relative to the lab folder -> the written files
    environment: dict[str, str]  # the page's `export VAR=value` lines
    commands: list[list[str]]  # the page's `.venv/bin/python src/...` commands, as words
    python: list[str]  # the page's python blocks that are not files
    text: list[str]  # its text blocks (printed output, errors)

    def trainings(self) -> list[list[str]]:
        return [words for words in self.commands if words[1] == "src/train.py"]

    def studies(self) -> list[list[str]]:
        return [words for words in self.commands if words[1] == "src/study.py"]


def write_tutorial(page: str, folder: Path) -> Tutorial:
    """The page's files written under `folder` (a block whose preceding line names `/path/to/my_lab/<file>`:
    blocks naming the same file are joined in order), and its commands, with the folder for /path/to/my_lab."""
    path = folder / "extend.md"
    path.write_text(page)
    md = read_markdown(path)
    lab = folder / "my_lab"
    texts: dict[str, list[str]] = {}
    python, text = [], []
    for block in md.blocks:
        before = next((line for line in reversed(md.lines[: block.line - 2]) if line.strip()), "")
        label = FILE_LABEL.search(before)
        if label and block.lang in ("python", "yaml"):
            texts.setdefault(label.group(1), []).append(block.text.replace(LAB, str(lab)))
        elif block.lang == "python":
            python.append(block.text)
        elif block.lang == "text":
            text.append(block.text)
    files = {}
    for name, parts in texts.items():
        files[name] = lab / name
        files[name].parent.mkdir(parents=True, exist_ok=True)
        files[name].write_text("\n\n\n".join(parts) + "\n")  # as ruff format would join them
    environment, commands = {}, []
    for command in extract_commands(md):
        words = shlex.split(command.text.replace(LAB, str(lab)))
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            environment[name] = value
        elif words[0] == PYTHON and words[1].startswith("src/"):
            commands.append(words)
    return Tutorial(lab, files, environment, commands, python, text)


@contextlib.contextmanager
def reader_python_path(tutorial: Tutorial):
    """sys.path as the page's PYTHONPATH makes it (the module imported afresh, forgotten afterwards)."""
    folders = [folder for folder in tutorial.environment.get("PYTHONPATH", "").split(os.pathsep) if folder]
    saved = list(sys.path)
    sys.modules.pop(MODULE, None)
    sys.path[:0] = folders
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved
        sys.modules.pop(MODULE, None)


def compose_training(words: list[str]) -> DictConfig:
    """The config src/train.py composes from a command's words (`--config-dir X` as Hydra reads it: X joins
    the config search path)."""
    overrides, rest = [], iter(words[2:])
    for word in rest:
        if word in ("--config-dir", "-cd"):
            overrides.append(f"hydra.searchpath=[file://{next(rest)}]")
        else:
            assert not word.startswith("-"), f"no in-process equivalent for {word} in {words}"
            overrides.append(word)
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def check_trainings(tutorial: Tutorial, run_dir: Path) -> list[DictConfig]:
    """Every documented training command composes and passes src/train.py's checks; their configs."""
    configs = []
    for words in tutorial.trainings():
        cfg = compose_training(words)
        check_config(cfg, run_dir, cfg.get("task", "reid"))
        configs.append(cfg)
    return configs


def block_after(blocks: list[str], fragment: str) -> str:
    return next(block for block in blocks if fragment in block)


@pytest.fixture(scope="module")
def page() -> str:
    return DOC.read_text()


@pytest.fixture(scope="module")
def tutorial(page, tmp_path_factory) -> Tutorial:
    tutorial = write_tutorial(page, tmp_path_factory.mktemp("reader"))
    with reader_python_path(tutorial):
        yield tutorial


@pytest.fixture(scope="module")
def configs(tutorial, tmp_path_factory) -> list[DictConfig]:
    return check_trainings(tutorial, tmp_path_factory.mktemp("run"))


def test_the_page_holds_the_module_its_config_file_and_its_study(tutorial):
    assert sorted(tutorial.files) == ["conf/regularizer/feature_cutout.yaml", "my_methods.py", "my_study.yaml"]
    assert tutorial.environment == {"PYTHONPATH": str(tutorial.lab)}
    module = importlib.import_module(MODULE)
    assert Path(module.__file__) == tutorial.files["my_methods.py"]
    assert len(tutorial.trainings()) >= 6 and len(tutorial.studies()) == 2


def test_every_training_command_composes_and_passes_the_checks(tutorial, configs):
    regularizers = [cfg.model.regularizers.get("feature_cutout") for cfg in configs]
    assert sum(entry is not None for entry in regularizers) >= 5
    assert all(entry is None or entry["_target_"] == "my_methods.FeatureCutout" for entry in regularizers)
    first, second = configs[0], configs[1]
    assert first.model.lfm is not None and second.model.lfm is None, "next to LFM, then on the baseline"
    with_file = [cfg for words, cfg in zip(tutorial.trainings(), configs) if "--config-dir" in words]
    assert with_file and all(cfg.model.regularizers.feature_cutout.size == 0.5 for cfg in with_file)
    assert any(cfg.data.batch_transforms for cfg in configs)
    assert any("early_stopping" in cfg.callbacks for cfg in configs)
    assert any(OmegaConf.is_dict(cfg.model.backbone) for cfg in configs)


def test_the_regularizer_acts_in_training_only_beside_lfm(tutorial, configs):
    settings = OmegaConf.to_container(configs[0].model, resolve=True)
    net = ReIDModule(**settings, num_classes=4).net
    assert str(net.regularizers) == block_after(tutorial.text, "(feature_cutout): ModuleDict(")
    cutout = net.regularizers["feature_cutout"]["layer1"]
    cutout.p = 1.0
    seen = []
    cutout.register_forward_hook(lambda _module, inputs, output: seen.append((inputs[0], output)))
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 32)
    net.train()(images)
    assert len(seen) == 1
    features, output = seen[0]
    assert not torch.equal(features, output) and bool(((output == features) | (output == 0)).all())
    zeroed = (output == 0).all(dim=1) & (features != 0).any(dim=1)  # [B, h, w]: cut where there was a feature
    assert bool(zeroed.flatten(1).any(1).all()), "p=1: every sample loses a square"
    net.eval()(images)
    assert len(seen) == 1, "skipped in evaluation"


def test_the_batch_transform_acts_on_training_batches(configs):
    entries = next(cfg.data.batch_transforms for cfg in configs if cfg.data.batch_transforms)
    entries = {label: {**OmegaConf.to_container(entry), "p": 1.0} for label, entry in entries.items()}
    (transform,) = build_batch_transforms(entries).values()
    images = torch.rand(3, 3, 8, 4)
    grey = transform(images, torch.Generator().manual_seed(0))
    assert grey.shape == images.shape
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2]), "p=1: all grey"


def test_the_documented_errors_are_the_errors(tutorial, tmp_path, monkeypatch):
    errors = block_after(tutorial.text, "error:").splitlines()
    bad_value = [word.replace("p:0.5}", "p:2}") for word in tutorial.trainings()[0]]
    assert bad_value != tutorial.trainings()[0]
    with pytest.raises(InputError) as raised:
        check_trainings(Tutorial(**{**tutorial.__dict__, "commands": [bad_value]}), tmp_path / "run")
    assert f"error: {raised.value}" == errors[0]
    bad_after = [word.replace("after:layer1", "after:layer9") for word in tutorial.trainings()[0]]
    with pytest.raises(InputError, match=r"feature_cutout.after: unknown insertion point 'layer9'.*valid names"):
        check_trainings(Tutorial(**{**tutorial.__dict__, "commands": [bad_after]}), tmp_path / "run")
    monkeypatch.setattr(sys, "path", [folder for folder in sys.path if folder != str(tutorial.lab)])  # no PYTHONPATH
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    with pytest.raises(InputError) as raised:
        check_trainings(tutorial, tmp_path / "run")
    assert f"error: {raised.value}" == errors[1]


def test_the_study_file_passes_the_dry_run_and_lists_the_documented_steps(tutorial, page):
    (dry_run, run) = tutorial.studies()
    assert dry_run[2:] == [str(tutorial.files["my_study.yaml"]), "--dry-run"]
    assert run[2] == str(tutorial.files["my_study.yaml"])
    spec = load_study(dry_run[2])
    assert set(spec.methods) == {"baseline", "lfm", "feature_cutout", "lfm_tuned", "feature_cutout_tuned"}
    checked = check_training_runs(spec)
    assert checked == 7  # 4 tuning runs, 3 methods
    keys = [step.key for step in [*tuning_steps(spec), *study_steps(spec)]]
    shown = block_after(tutorial.text, "tune/").splitlines()
    assert keys[: len(shown)] == shown
    assert f"{len(keys)} steps in all; a last line says that its {checked} distinct training runs" in page


def test_a_page_whose_module_does_not_match_its_commands_fails(page, tmp_path):
    broken = page.replace("class FeatureCutout(", "class FeatureDropout(")
    assert broken != page
    tutorial = write_tutorial(broken, tmp_path)
    with reader_python_path(tutorial), pytest.raises(InputError, match="module my_methods has no FeatureCutout"):
        check_trainings(tutorial, tmp_path / "run")


# ----------------------------------------------------------------------------------------------
# The documented commands, for real, at tiny size


def run_documented(tutorial: Tutorial, words: list[str], *extra: str, timeout: int = 900):
    command, env = entry_point(words[1].removeprefix("src/"), *words[2:], *extra)
    env.update(tutorial.environment)
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_documented_commands_run(page, tmp_path):
    tutorial = write_tutorial(page, tmp_path)
    data_dir = f"paths.data_dir={tmp_path / 'data'}"
    # a training run with the config file, next to LFM; then the page's "is it on?" check on its checkpoint
    words = next(words for words in tutorial.trainings() if "--config-dir" in words)
    run_dir = tmp_path / "run"
    result = run_documented(tutorial, words, *TINY, data_dir, "logger=csv", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["regularizers"]["feature_cutout"]["_target_"] == "my_methods.FeatureCutout"
    snippet = block_after(tutorial.python, "load_from_checkpoint")
    snippet = re.sub(r'run_dir = "[^"]*"', f'run_dir = "{run_dir}"', snippet)
    printed = io.StringIO()
    with reader_python_path(tutorial), contextlib.redirect_stdout(printed):
        exec(compile(snippet, str(DOC), "exec"), {})
    assert printed.getvalue().strip() == block_after(tutorial.text, "(feature_cutout): ModuleDict(")

    # the study, one seed at tiny size: its dry run, then the run
    study = yaml.safe_load(tutorial.files["my_study.yaml"].read_text())
    study["seeds"] = [0]
    study["train_overrides"] += [*TINY, data_dir]
    study["eval_overrides"] += [data_dir]
    study["cross_overrides"] = [f"data.synthetic.scale={TINY_SCALE}", "data.num_workers=0"]
    study["attack_overrides"] += ["attack.steps=2"]
    tutorial.files["my_study.yaml"].write_text(json.dumps(study))
    dry_run, run = tutorial.studies()
    result = run_documented(tutorial, dry_run)
    assert result.returncode == 0, result.stderr[-3000:]
    spec = load_study(str(tutorial.files["my_study.yaml"]))
    assert result.stdout.split() == [step.key for step in [*tuning_steps(spec), *study_steps(spec)]]
    out_dir = tmp_path / "study"
    result = run_documented(tutorial, run, "--out", str(out_dir))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trained = yaml.safe_load((out_dir / "runs/synthetic_market/feature_cutout/seed0/train/config.yaml").read_text())
    assert trained["model"]["regularizers"]["feature_cutout"]["after"] == "layer1"
    assert "FeatureCutout improves in-domain re-ID" in (out_dir / "report.md").read_text()
    assert (out_dir / "runs/synthetic_market/lfm/seed0/attack/metrics.json").is_file()
