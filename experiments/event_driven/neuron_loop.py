"""Time the event-driven neuron loops alone: forward, the fast backward, the authors' backward loop.

    python experiments/event_driven/neuron_loop.py [--neurons 1254400] [--steps 5] [--threads 1]

Default size: the first conv layer of the Fashion-MNIST net for a batch of 50 (50·32·28·28
neurons), T=5. The fast backward (running products) and the authors' loop (table lookups,
``event_backward_reference``) compute the same gradients (tests/unit/test_event_driven.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--neurons", type=int, default=50 * 32 * 28 * 28)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

    from spikelight.layers.event_driven import functions as fn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = fn.EventConfig.from_taus(5.0, 3.0, 2.5, 1.0, grad_type="exponential", input_grad_damping=0.85)
    current = torch.randn(args.steps, args.neurons) * 0.8 + 0.3
    fwd = fn.event_forward(current, cfg)
    grad = torch.randn_like(current) * fwd.spikes
    syn_a, partial_a = fn.kernel_tables(cfg, args.steps)

    def best(f) -> float:
        f()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times) * 1e3

    t_fwd = best(lambda: fn.event_forward(current, cfg))
    t_fast = best(lambda: fn.event_backward(grad, fwd.spikes, fwd.delta_u, fwd.delta_u_g, cfg, 0.85))
    t_ref = best(lambda: fn.event_backward_reference(grad, fwd.spikes, fwd.delta_u, fwd.delta_u_g, syn_a, partial_a))
    malloc = " ".join(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_")) or "default malloc"
    print(f"N={args.neurons} T={args.steps} threads={args.threads} ({malloc}); best of {args.repeats}")
    print(f"forward {t_fwd:.0f} ms; backward {t_fast:.0f} ms (authors' loop {t_ref:.0f} ms, {t_ref / t_fast:.1f}x)")


if __name__ == "__main__":
    main()
