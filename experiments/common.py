"""Helpers for the side-by-side experiment scripts: run our train.py, read its per-epoch metrics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_spikelight(overrides: list[str], run_dir: Path, threads: int, data_root: str, log: Path) -> list[dict]:
    """Run ``train.py overrides`` into run_dir; return [{epoch, test_acc}] from val/acc
    (the experiments validate on the test set, val_size=0, like the tutorials)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), SPIKELIGHT_DATA=data_root, WANDB_MODE="disabled")
    cmd = [sys.executable, "train.py", *overrides, "print_config=false", "test=false", f"hydra.run.dir={run_dir}"]
    with open(log, "a") as f:
        f.write("spikelight: " + " ".join(cmd[1:]) + "\n")
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(run_dir / "csv" / "metrics.csv") as f:
        return [{"epoch": int(r["epoch"]), "test_acc": float(r["val/acc"])} for r in csv.DictReader(f) if r.get("val/acc")]


def prepare_fashion_mnist(data_root: str) -> None:
    """Place Debian's Fashion-MNIST where torchvision (and so every library) reads it."""
    sys.path.insert(0, str(ROOT / "src"))
    from spikelight.data import FashionMNISTDataModule

    FashionMNISTDataModule(root=data_root).prepare_data()
