"""Encoders: analog input ``[B, ...]`` in [0, 1] → time-major sequence ``[T, B, ...]``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Encoder", "PoissonEncoder", "DirectEncoder", "LatencyEncoder"]


class Encoder(nn.Module):
    """Base encoder with ``T`` time steps (must be a positive integer)."""

    def __init__(self, T: int) -> None:
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
            raise ValueError(f"number of time steps T must be a positive integer, got {T!r}")
        self.T = T

    def extra_repr(self) -> str:
        return f"T={self.T}"


class PoissonEncoder(Encoder):
    """Bernoulli spikes with probability = intensity at every step (SpikingJelly PoissonEncoder).

    x: [B, ...] in [0, 1] → spikes [T, B, ...] in x's dtype.
    """

    def forward(self, x: Tensor) -> Tensor:
        # compare in place: no bool tensor and no float copy of T·B·F elements
        return torch.rand((self.T, *x.shape), device=x.device, dtype=x.dtype).lt_(x)


class DirectEncoder(Encoder):
    """Feed the analog input unchanged at every step: [B, ...] → [T, B, ...] (a view)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(0).expand(self.T, *x.shape)


class LatencyEncoder(Encoder):
    """One spike per input; brighter fires earlier.

    Spike time ``t = round((1 - x)·(T - 1))``; inputs below ``threshold`` never
    fire. Identical to snnTorch's ``spikegen.latency(x, num_steps=T, threshold=...,
    linear=True, normalize=True, clip=True)``. x: [B, ...] in [0, 1] → [T, B, ...].
    """

    def __init__(self, T: int, threshold: float = 0.01) -> None:
        super().__init__(T)
        self.threshold = float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        t_spike = torch.round((self.T - 1) * (1.0 - x.clamp(0, 1))).long()
        steps = torch.arange(self.T, device=x.device).view(self.T, *([1] * x.dim()))
        spikes = (steps == t_spike.unsqueeze(0)) & (x >= self.threshold).unsqueeze(0)
        return spikes.to(x.dtype)
