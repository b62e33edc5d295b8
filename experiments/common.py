"""Helpers for the experiment scripts: run our train.py and read its per-epoch metrics; build a training
step exactly as train.py does and time it (the throughput scripts)."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable
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


def throughput_parser(experiment: str, batch: int, warmup: int) -> argparse.ArgumentParser:
    """The throughput scripts' arguments: --experiment, --batch, --steps, --warmup, --threads, Hydra overrides."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default=experiment)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. T=4")
    return ap


def build_training_step(args: argparse.Namespace):
    """The LightningModule of ``experiment=args.experiment`` built as train.py builds it (Hydra config →
    encoder, model, loss, optimizer), in train mode, torch seeded and threaded; returns (cfg, module,
    optimizer, x, y) with random inputs [batch, *data.in_shape] (normalised-image statistics) and labels."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    sys.path.insert(0, str(ROOT / "src"))
    from spikelight.app.cli import build_module

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}", *args.overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp"
    module = build_module(cfg).train()
    optimizer = module.configure_optimizers()["optimizer"]
    x = torch.randn(args.batch, *cfg.data.in_shape)
    y = torch.randint(0, cfg.num_classes, (args.batch,))
    return cfg, module, optimizer, x, y


def time_steps(step: Callable[[], object], warmup: int, steps: int) -> tuple[list[float], float]:
    """Run ``step`` warmup times untimed, then ``steps`` times: (wall seconds of each, mean CPU s per step)."""
    for _ in range(warmup):
        step()
    times = []
    cpu0 = time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times, (time.process_time() - cpu0) / steps
