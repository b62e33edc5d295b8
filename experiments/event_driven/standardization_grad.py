"""Exact vs the authors' gradient through the weight standardisation, on one conv layer.

    python experiments/event_driven/standardization_grad.py

Prints cos(dW_exact, dW_authors), |dW_authors| / |dW_exact| and the mean ratio of the gain
gradients, for an upstream gradient G with and without a per-channel mean component.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from spikelight.layers.event_driven import StandardizeAuthorsFunction, standardize_weight  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    shape = (64, 32, 5, 5)
    w = torch.empty(shape)
    torch.nn.init.kaiming_uniform_(w, a=5**0.5)
    for label, gain_v, shift_v, offset in (("G = N(0,1) + 0.5, gain 0.3, shift 0.01", 0.3, 0.01, 0.5),
                                           ("G = N(0,1), gain 0.3, shift 0", 0.3, 0.0, 0.0)):
        gain, shift = torch.full((shape[0],), gain_v), torch.full((shape[0],), shift_v)
        G = torch.randn(shape) + offset
        grads = []
        for f in (standardize_weight, StandardizeAuthorsFunction.apply):
            leaves = [t.clone().requires_grad_(True) for t in (w, gain, shift)]
            (f(*leaves) * G).sum().backward()
            grads.append([leaf.grad for leaf in leaves])
        (dw_e, dg_e, _), (dw_a, dg_a, _) = grads
        cos = float((dw_e * dw_a).sum() / dw_e.norm() / dw_a.norm())
        print(f"{label}: cos(dW) {cos:.4f}, |dW_authors|/|dW_exact| {float(dw_a.norm() / dw_e.norm()):.3f}, "
              f"mean dgain_authors/dgain_exact {float((dg_a / dg_e).mean()):.3f}")


if __name__ == "__main__":
    main()
