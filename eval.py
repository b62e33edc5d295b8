"""Evaluate a checkpoint: ``python eval.py ckpt_path=logs/.../checkpoints/last.ckpt [data=...]``."""

import sys

try:
    import hydra  # noqa: F401 - first: where .venv is not active, the line below names it

    from spikelight.app.cli import evaluate, hydra_script
except ModuleNotFoundError as err:  # usually: .venv not activated
    sys.exit(f"error: {err.name} is not installed for {sys.executable}; "
             "run `source .venv/bin/activate` first (`make install` creates .venv)")

if __name__ == "__main__":
    hydra_script(evaluate, "eval")
