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

import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import build_training_step, throughput_parser, time_steps  # noqa: E402


def main() -> None:
    args = throughput_parser("conv_cifar10", batch=32, warmup=2).parse_args()
    import torch

    cfg, module, optimizer, x, y = build_training_step(args)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = module.loss_fn(module(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    times, cpu = time_steps(step, args.warmup, args.steps)
    n_params = sum(p.numel() for p in module.parameters())
    best, mean = min(times), sum(times) / len(times)
    print(f"{args.experiment} {' '.join(args.overrides)} T={cfg.T} batch={args.batch} threads={args.threads} "
          f"params={n_params / 1e6:.2f}M torch={torch.__version__} cpu={platform.processor() or platform.machine()}")
    print(f"step mean {mean * 1e3:.0f} ms (best {best * 1e3:.0f} ms) -> {args.batch / mean:.1f} images/s "
          f"(best {args.batch / best:.1f}); CPU time {cpu * 1e3:.0f} ms/step -> {args.batch / cpu:.1f} images per CPU-s; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
