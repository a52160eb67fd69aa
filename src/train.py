"""Train a model with Hydra config from conf/train.yaml:  python src/train.py experiment=<name>."""

import hydra
from omegaconf import DictConfig

from lfm.runs.cli import run_task
from lfm.runs.pipeline import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(train, cfg)


if __name__ == "__main__":
    main()
