"""Helpers for the experiment scripts: run our train.py and read its per-epoch metrics, beside a library's
own training on the same Fashion-MNIST (the compare scripts); build a training step exactly as train.py
does and time it (the throughput scripts)."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
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


# --- the compare scripts: a library's own training and our train.py, side by side ---------------
def compare_parser(script: str, epochs: int) -> argparse.ArgumentParser:
    """The compare scripts' arguments: --epochs, --threads, --data, --out (``results/`` next to ``script``)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per library (both run in parallel)")
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--out", default=str(Path(script).resolve().parent / "results"))
    return ap


def prepare_compare(args: argparse.Namespace) -> Path:
    """Make ``--out`` and put Fashion-MNIST under ``--data``; returns the progress log (``<out>/progress.log``)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prepare_fashion_mnist(args.data)
    return out / "progress.log"


def fashion_mnist_loaders(data_root: str, batch: int, transform=None, sampler: Callable | None = None):
    """The baselines' Fashion-MNIST as the tutorials load it (``ToTensor`` unless ``transform``): the train
    loader drops the last partial batch and shuffles, or takes ``sampler(len(train set))``'s order; the test
    loader keeps the file's order. Returns (train loader, test loader)."""
    import torch
    import torchvision

    tfm = transform or torchvision.transforms.ToTensor()
    train = torchvision.datasets.FashionMNIST(data_root, train=True, transform=tfm, download=False)
    test = torchvision.datasets.FashionMNIST(data_root, train=False, transform=tfm, download=False)
    order = sampler(len(train)) if sampler is not None else None
    train_loader = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=order is None, sampler=order,
                                               drop_last=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=batch, shuffle=False, drop_last=False)
    return train_loader, test_loader


def spikingjelly_train_epoch(net, train_loader, optimizer, rate: Callable, train_batches: int | None = None) -> float:
    """One epoch of SpikingJelly's tutorial loop: MSE(firing rate ``rate(img)``, one-hot label), ``reset_net``
    after every batch; ``train_batches`` stops the epoch after that many. Returns its seconds."""
    import torch.nn.functional as F
    from spikingjelly.activation_based import functional

    t0 = time.perf_counter()
    net.train()
    for k, (img, label) in enumerate(train_loader):
        if train_batches is not None and k >= train_batches:
            break
        optimizer.zero_grad()
        loss = F.mse_loss(rate(img), F.one_hot(label, 10).float())
        loss.backward()
        optimizer.step()
        functional.reset_net(net)
    return time.perf_counter() - t0


def spikingjelly_test(net, test_loader, rate: Callable) -> tuple[float, float]:
    """SpikingJelly's tutorial test: the class of the highest firing rate ``rate(img)``, ``reset_net`` after
    every batch. Returns (accuracy, seconds)."""
    import torch
    from spikingjelly.activation_based import functional

    t0 = time.perf_counter()
    net.eval()
    correct = n = 0
    with torch.no_grad():
        for img, label in test_loader:
            correct += (rate(img).argmax(1) == label).sum().item()
            n += label.numel()
            functional.reset_net(net)
    return correct / n, time.perf_counter() - t0


def timed_spikelight(overrides: list[str], run_dir: Path, threads: int, data_root: str, log: Path) -> tuple[list, float]:
    """:func:`run_spikelight` and its seconds (the train.py process, start-up included)."""
    t0 = time.perf_counter()
    rows = run_spikelight(overrides, run_dir, threads, data_root, log)
    return rows, time.perf_counter() - t0


def side_by_side(baseline: Callable[..., list[dict]] | None, baseline_args: tuple, overrides: list[str],
                 run_dir: Path, args: argparse.Namespace, log: Path) -> tuple[list[dict], list[dict], float, float]:
    """``baseline(*baseline_args)`` (a library's own training; None: not run) and ``train.py overrides`` at
    once, in two processes of ``--threads`` torch threads each. Returns (baseline rows, our rows, our
    seconds, wall seconds)."""
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        theirs = pool.submit(baseline, *baseline_args) if baseline is not None else None
        ours = pool.submit(timed_spikelight, overrides, run_dir, args.threads, args.data, log)
        their_rows = theirs.result() if theirs is not None else []
        our_rows, our_s = ours.result()
    return their_rows, our_rows, our_s, time.perf_counter() - t0


def write_accuracy_csv(path: Path, our_rows: list[dict], their_rows: list[dict], columns: dict[str, tuple[str, str]]) -> None:
    """Per epoch: ``epoch, spikelight_test_acc`` and a column per ``columns`` entry (name -> (key of a
    baseline row, format)); blank where the baseline has no row for the epoch."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "spikelight_test_acc", *columns])
        for i, a in enumerate(our_rows):
            b = their_rows[i] if i < len(their_rows) else {}
            w.writerow([a["epoch"] + 1, f"{a['test_acc']:.4f}",
                        *(format(b[key], fmt) if b else "" for key, fmt in columns.values())])


def final_best(rows: list[dict]) -> str:
    """``final <last epoch's test accuracy> best <the best one>``."""
    return f"final {rows[-1]['test_acc']:.4f} best {max(r['test_acc'] for r in rows):.4f}"


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
