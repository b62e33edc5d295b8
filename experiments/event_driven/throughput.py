"""Training-step throughput (images/s) of the event-driven experiments on random data of the right shape.

Builds the LightningModule exactly as train.py does (Hydra config → encoder, model,
loss, optimizer with the gain/shift group), runs the data-driven gain init on one
batch (not timed), then times full training steps (direct encoding → forward with
label-spike injection → spike-count loss → event-driven backward → optimizer step)
on random normalised images [B, *in_shape] and labels. Warm-up steps are not timed.

    nice -n 10 python experiments/event_driven/throughput.py --experiment event_driven_mnist --batch 50
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import build_training_step, throughput_parser, time_steps  # noqa: E402


def main() -> None:
    args = throughput_parser("event_driven_mnist", batch=50, warmup=1).parse_args()
    import torch

    cfg, module, optimizer, x, y = build_training_step(args)
    t0 = time.perf_counter()
    module.model.data_init(module.encode(x))
    t_init = time.perf_counter() - t0

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = module.loss_fn(module.model(module.encode(x), labels=y), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    times, _ = time_steps(step, args.warmup, args.steps)
    n_params = sum(p.numel() for p in module.parameters())
    best, mean = min(times), sum(times) / len(times)
    malloc = " ".join(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_")) or "default malloc"
    print(f"{args.experiment} {' '.join(args.overrides)} T={cfg.T} batch={args.batch} threads={args.threads} "
          f"params={n_params / 1e6:.2f}M torch={torch.__version__} cpu={platform.processor() or platform.machine()} "
          f"({malloc})")
    print(f"init {t_init:.1f} s; step mean {mean * 1e3:.0f} ms (best {best * 1e3:.0f} ms) -> "
          f"{args.batch / mean:.1f} images/s (best {args.batch / best:.1f})")


if __name__ == "__main__":
    main()
