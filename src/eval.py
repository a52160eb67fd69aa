"""Evaluate a checkpoint with Hydra config from conf/eval.yaml:  python src/eval.py ckpt_path=<file>."""

import hydra
from omegaconf import DictConfig

from lfm.runs.cli import run_task
from lfm.runs.pipeline import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
