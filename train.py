"""Train a spiking network: ``python train.py [group=option ...] [key=value ...]``."""

import hydra
from omegaconf import DictConfig

from spikelight.cli import run_task, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(train, cfg)


if __name__ == "__main__":
    main()
