"""Training-step throughput (images/s) of the event-driven experiments on random data of the right shape.

Builds the LightningModule exactly as train.py does (Hydra config → encoder, model,
loss, optimizer with the gain/shift group), runs the data-driven gain init on one
batch (not timed), then times full training steps (direct encoding → forward with
label-spike injection → spike-count loss → event-driven backward → optimizer step)
on random normalised images [B, *in_shape] and labels. Warm-up steps are not timed.

    nice -n 10 python experiments/event_driven/throughput.py --experiment event_driven_mnist --batch 50
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
    ap.add_argument("--experiment", default="event_driven_mnist")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. T=4")
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

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
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
