"""Training-step throughput (images/s) of `experiment=conv_cifar10` on random CIFAR-shaped data.

Builds the LightningModule exactly as train.py does (Hydra config → encoder,
model, loss, optimizer), then times full training steps (encode → forward →
MSE on rate → backward → SGD step) on random images [B, 3, 32, 32] and labels.
Warm-up steps are not timed. Besides wall time it reports CPU time (all
threads of this process): on a machine shared with other jobs, images per
CPU-second is the number that does not depend on how busy the others are.

    nice -n 10 python experiments/conv/throughput.py --batch 32 --steps 5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="conv_cifar10")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. T=2")
    args = ap.parse_args()

    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from spikelight.cli import build_module

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}", *args.overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp"
    module = build_module(cfg).train()
    optimizer = module.configure_optimizers()["optimizer"]
    x = torch.randn(args.batch, *cfg.data.in_shape)  # normalised-image statistics
    y = torch.randint(0, cfg.num_classes, (args.batch,))

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = module.loss_fn(module(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    cpu0 = time.process_time()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / args.steps
    n_params = sum(p.numel() for p in module.parameters())
    best, mean = min(times), sum(times) / len(times)
    print(f"{args.experiment} {' '.join(args.overrides)} T={cfg.T} batch={args.batch} threads={args.threads} "
          f"params={n_params / 1e6:.2f}M torch={torch.__version__} cpu={platform.processor() or platform.machine()}")
    print(f"step mean {mean * 1e3:.0f} ms (best {best * 1e3:.0f} ms) -> {args.batch / mean:.1f} images/s "
          f"(best {args.batch / best:.1f}); CPU time {cpu * 1e3:.0f} ms/step -> {args.batch / cpu:.1f} images per CPU-s; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
