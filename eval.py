"""Evaluate a checkpoint: ``python eval.py ckpt_path=logs/.../checkpoints/last.ckpt [data=...]``."""

import sys

try:
    import hydra
    from omegaconf import DictConfig

    from spikelight.app.cli import evaluate, preflight_or_exit, run_task
except ModuleNotFoundError as err:  # usually: .venv not activated
    sys.exit(f"error: {err.name} is not installed for {sys.executable}; "
             "run `source .venv/bin/activate` first (`make install` creates .venv)")


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_task(evaluate, cfg)


if __name__ == "__main__":
    sys.argv = preflight_or_exit(sys.argv, "eval")
    main()
