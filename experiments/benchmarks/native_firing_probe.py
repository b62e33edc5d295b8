"""The recurrent layer's C loops against its plain-PyTorch loops as the firing rate rises (CPU, 1 thread).

The C forward sums W_recᵀ rows over the neurons that spiked, so it gains most when
few fire and has no BLAS to fall back on when most do. This times one ALIF layer
(T=784, B=32, H=220, 100 adaptive neurons, forward + backward) at input levels
that give 0% to 100% firing, both loops on the same inputs.

    python experiments/benchmarks/native_firing_probe.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from spikelight.core.surrogate import ATan  # noqa: E402
from spikelight.dynamics.fused import recurrent as R  # noqa: E402
from spikelight.dynamics.spec import ALIFSpec, LIFSpec  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    T, B, H = 784, 32, 220
    spec = ALIFSpec(LIFSpec(20.0, True, 1.0, 0.0, False), 0.995, 0, False, True)
    beta = torch.zeros(H)
    beta[120:] = 1.8
    v0 = torch.zeros(B, H)
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(H, H, generator=gen) * 0.02
    noise = torch.randn(T, B, H, generator=gen) * 0.5
    for level in (0.0, 16.0, 24.0, 40.0, 80.0):
        ff, res = noise + level, {}
        for loops in ("native", "fused"):
            times = []
            for _ in range(5):
                f, wl = ff.clone().requires_grad_(), w.clone().requires_grad_()
                t0 = time.perf_counter()
                s, h, *_ = R.recurrent_multi_step(f, wl, spec, ATan(), v0, v0, v0, None, beta, backend=loops)
                (s.sum() + h.sum() * 0.01).backward()
                times.append(time.perf_counter() - t0)
            res[loops] = (sorted(times)[2] * 1e3, s.mean().item())
        print(f"firing {res['native'][1]:.3f}: C {res['native'][0]:.1f} ms, plain PyTorch {res['fused'][0]:.1f} ms")


if __name__ == "__main__":
    main()
