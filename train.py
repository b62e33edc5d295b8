"""Train a spiking network: ``python train.py [group=option ...] [key=value ...]``."""

import sys

try:
    import hydra  # noqa: F401 - first: where .venv is not active, the line below names it

    from spikelight.app.cli import hydra_script, train
except ModuleNotFoundError as err:  # usually: .venv not activated
    sys.exit(f"error: {err.name} is not installed for {sys.executable}; "
             "run `source .venv/bin/activate` first (`make install` creates .venv)")

if __name__ == "__main__":
    hydra_script(train, "train")
