"""What flushing subnormal floats to zero (``flush_denormal``, default true) does to a training step's time (1 thread
by default, as experiments/ trains; with ``--threads N`` the mode is set in PyTorch's intra-op pool too on Linux,
spikelight/app/denormals.py).

One process, the same weights and batch, the two modes alternating (order reversed every repetition):
``model=lstm`` and ``model=gru`` as ``experiments/lsnn`` trains them (110 / 128 units, 784 pixels one per
step, loss at the last step) and the LSNN's default (``model=lsnn neuron=sfa``, C path, full BPTT and the
default 50-step window), all on the first 256 training images of sequential Fashion-MNIST (Debian's
dataset-fashion-mnist; random sparse pixels when it is not installed, said in the output).

    python experiments/benchmarks/denormals.py [--reps 3] [--out experiments/benchmarks/RESULTS-denormals.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from spikelight.app.cli import build_module
from spikelight.app.denormals import flush_denormals

ROOT = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def batch(n: int = 256) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A data batch as data=sfmnist data.order=pixel gives it: [n, 784, 1] pixels in [0, 1], labels [n]."""
    if (FMNIST / "train-images-idx3-ubyte.gz").exists():
        import gzip

        import numpy as np

        with gzip.open(FMNIST / "train-images-idx3-ubyte.gz") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16)[: n * 784].reshape(n, 784)
        with gzip.open(FMNIST / "train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
        x = torch.from_numpy(x.copy()).float().div_(255.0)
        return x.unsqueeze(-1), torch.from_numpy(y.copy()).long(), "Fashion-MNIST (first 256 training images)"
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, 784, 1, generator=g) > 0.5).float() * torch.rand(n, 784, 1, generator=g)
    return x, torch.randint(0, 10, (n,), generator=g), "random sparse pixels (dataset-fashion-mnist not installed)"


def module(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=sfmnist", "data.order=pixel", "model.in_features=1", *overrides],
                      return_hydra_config=True)
    with open_dict(cfg):  # the config refers to the run folder Hydra would make; nothing is written there
        cfg.hydra.runtime.output_dir = "/tmp/spikelight-denormals"
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    torch.manual_seed(0)
    return build_module(cfg)


CASES = {
    "lstm (110 units, readout at the last step)": ["model=lstm", "model.hidden=110"],
    "gru (128 units, readout at the last step)": ["model=gru", "model.cell=gru"],
    "lsnn sfa, full BPTT (C path)": ["model=lsnn", "neuron=sfa", "model.tbptt_steps=null"],
    "lsnn sfa, 50-step window (default)": ["model=lsnn", "neuron=sfa"],
}


def step_seconds(mod, x: torch.Tensor, y: torch.Tensor) -> float:
    """Forward, loss and backward of one batch x [B, 784, 1] (a training step without the optimizer update,
    so every call sees the same weights)."""
    mod.zero_grad(set_to_none=True)
    t = time.perf_counter()
    mod.loss_fn(mod(x), y).backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "experiments/benchmarks/RESULTS-denormals.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y, data = batch()
    rows = []
    for name, overrides in CASES.items():
        mod = module(overrides)
        times: dict[bool, list[float]] = {False: [], True: []}
        for rep in range(args.reps + 1):  # the first pair warms up (buffers, libraries)
            for on in ((False, True) if rep % 2 == 0 else (True, False)):
                with flush_denormals(on):
                    s = step_seconds(mod, x, y)
                if rep:
                    times[on].append(s)
        off, on = statistics.median(times[False]), statistics.median(times[True])
        rows.append(f"| {name} | {off:.2f} | {on:.2f} | {off / on:.1f}x |")
        print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    text = "\n".join([
        "# Flushing subnormal floats: training-step time",
        "",
        f"`python experiments/benchmarks/denormals.py --reps {args.reps} --threads {args.threads}` — "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} thread(s), load {load:.1f} at the end; data: {data}, batch 256, "
        "784 steps. Median seconds of forward + loss + backward over the repetitions, same weights and batch, "
        "the two modes alternating.",
        "",
        "| model | IEEE (flush_denormal=false) s | flushed (default) s | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
