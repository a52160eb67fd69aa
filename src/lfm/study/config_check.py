"""Check a study's training runs against conf/train.yaml before any of them starts (`src/study.py --dry-run`):
each composes, and its model, feature regularizers, callbacks, loggers and trainer pass the checks src/train.py
makes before any data work (lfm.runs.pipeline.check_config), a user's `_target_` modules included."""

import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lfm.errors import InputError
from lfm.project import PROJECT_ROOT
from lfm.runs.pipeline import check_config
from lfm.study.runner import training_overrides
from lfm.study.spec import TRAIN, TUNED, Step, StudySpec, study_steps, tuning_steps


def distinct_training_runs(spec: StudySpec) -> list[Step]:
    """One training step per configuration: each tuning run, and each method's training per domain (its first
    seed; a tuned method trains with one of its tuning candidates, checked as the tuning run)."""
    trained = {}
    for step in study_steps(spec):
        if step.kind == TRAIN and not step.method.endswith(TUNED):
            trained.setdefault((step.domain, step.method), step)
    return [*tuning_steps(spec), *trained.values()]


def compose_training(spec: StudySpec, step: Step) -> DictConfig:
    overrides = [*training_overrides(spec, step), f"seed={step.seed}", f"run_name={step.method}"]
    try:
        return compose(config_name="train", overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        message = " ".join(str(error).split())
        raise InputError(f"{spec.path}: {step.key}: Hydra rejects its overrides: {message}") from None


def check_training_runs(spec: StudySpec) -> int:
    """Compose and check every distinct training run of the study; the number checked. An InputError names the
    study file, the step and the key."""
    steps = distinct_training_runs(spec)
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        with tempfile.TemporaryDirectory() as scratch:
            for step in steps:
                cfg = compose_training(spec, step)
                if cfg.model.get("pretrained") is True:
                    cfg.model.pretrained = False  # a check downloads nothing: the ImageNet weights come at the run
                try:
                    check_config(cfg, Path(scratch) / "run", cfg.get("task", "reid"))
                except InputError as error:
                    raise InputError(f"{spec.path}: {step.key}: {error}") from None
    return len(steps)
