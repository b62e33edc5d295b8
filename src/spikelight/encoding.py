"""Encoders: analog input ``[B, ...]`` → time-major sequence ``[T, B, ...]``.
Poisson and latency codes need intensities in [0, 1]; direct encoding takes any range."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikelight.core.errors import ConfigError, ShapeError

__all__ = [
    "Encoder",
    "PoissonEncoder",
    "DirectEncoder",
    "LatencyEncoder",
    "SequenceEncoder",
    "FramesEncoder",
    "ThresholdCrossingEncoder",
]


class Encoder(nn.Module):
    """Base encoder with ``T`` time steps (must be a positive integer).

    Encoders whose input is an intensity in [0, 1] (``needs_unit_range``)
    refuse anything else on their first batch, e.g. normalised images.
    """

    needs_unit_range = False

    def __init__(self, T: int) -> None:
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
            raise ValueError(f"number of time steps T must be a positive integer, got {T!r}")
        self.T = T
        self._range_checked = False

    def check_range(self, x: Tensor) -> None:
        """Raise one line if x leaves [0, 1]. Checked on the first batch only (one host sync): normalised
        data is negative wherever a pixel is dark, so the first batch shows it."""
        if self._range_checked or not self.needs_unit_range:
            return
        lo, hi = torch.aminmax(x.detach())
        if lo < 0 or hi > 1:
            raise ConfigError(
                f"{type(self).__name__} needs inputs in [0, 1], got values in [{lo.item():.3g}, {hi.item():.3g}] "
                "(normalised data?); use encoder=direct or data.normalize=false"
            )
        self._range_checked = True

    def extra_repr(self) -> str:
        return f"T={self.T}"


class PoissonEncoder(Encoder):
    """Bernoulli spikes with probability = intensity at every step (SpikingJelly PoissonEncoder).

    x: [B, ...] in [0, 1] → spikes [T, B, ...] in x's dtype.
    """

    needs_unit_range = True

    def forward(self, x: Tensor) -> Tensor:
        self.check_range(x)
        # compare in place: no bool tensor and no float copy of T·B·F elements
        return torch.rand((self.T, *x.shape), device=x.device, dtype=x.dtype).lt_(x)


class DirectEncoder(Encoder):
    """Feed the analog input unchanged at every step: [B, ...] → [T, B, ...] (a view).
    Any range (normalised images included): the first layer's synapse is the encoder."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 5:  # [B, T, C, H, W]: event frames already have their time axis
            raise ShapeError(f"encoder=direct repeats one image [B, C, H, W] T times, got {tuple(x.shape)}: event "
                             "frames [B, T, C, H, W] (data=nmnist|dvs_gesture) need encoder=frames")
        return x.unsqueeze(0).expand(self.T, *x.shape)


class LatencyEncoder(Encoder):
    """One spike per input; brighter fires earlier.

    Spike time ``t = round((1 - x)·(T - 1))``; inputs below ``threshold`` never
    fire. Identical to snnTorch's ``spikegen.latency(x, num_steps=T, threshold=...,
    linear=True, normalize=True, clip=True)``. x: [B, ...] in [0, 1] → [T, B, ...].
    """

    needs_unit_range = True

    def __init__(self, T: int, threshold: float = 0.01) -> None:
        super().__init__(T)
        self.threshold = float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        self.check_range(x)
        t_spike = torch.round((self.T - 1) * (1.0 - x.clamp(0, 1))).long()
        steps = torch.arange(self.T, device=x.device).view(self.T, *([1] * x.dim()))
        spikes = (steps == t_spike.unsqueeze(0)) & (x >= self.threshold).unsqueeze(0)
        return spikes.to(x.dtype)


def _check_sequence(x: Tensor, steps: int | None, who: str) -> None:
    if x.dim() != 3:
        raise ShapeError(
            f"{who} expects batch-first sequences [B, T, F] from a sequence dataset (data=smnist|sfmnist|psmnist|"
            f"sdigits|shd|ssc), got shape {tuple(x.shape)}"
        )
    if steps is not None and x.shape[1] != steps:
        raise ShapeError(
            f"{who} expects batch-first sequences [B, T={steps}, F], got shape {tuple(x.shape)}: "
            "DataLoaders yield batch-first; is this batch already time-major?"
        )


class SequenceEncoder(nn.Module):
    """Batch-first sequences [B, T, F] (a sequence DataModule) → time-major [T, B, F] (a view).

    ``steps`` (T) guards the layout: a time-major batch handed in by mistake is
    refused instead of silently read with B as T. SpikingClassifier sets it from
    the DataModule's ``seq_len`` when it is None.
    """

    def __init__(self, steps: int | None = None) -> None:
        super().__init__()
        self.steps = steps

    def out_features(self, in_features: int) -> int:
        """Inputs per step after encoding."""
        return in_features

    def forward(self, x: Tensor) -> Tensor:
        _check_sequence(x, self.steps, "encoder=sequence")
        return x.transpose(0, 1)

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


class FramesEncoder(SequenceEncoder):
    """Event frames, batch-first [B, T, C, H, W] (data=nmnist|dvs_gesture) → time-major [T, B, C, H, W]
    (a view). No re-encoding: each time bin's event counts are the input of that step.

    ``steps`` (T) guards the layout as in :class:`SequenceEncoder`; SpikingClassifier sets it from
    the DataModule's ``seq_len`` when it is None (and leaves it None when T varies per batch).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5:
            raise ShapeError(f"encoder=frames expects batch-first event frames [B, T, C, H, W] (data=nmnist|dvs_gesture), "
                             f"got shape {tuple(x.shape)}")
        if self.steps is not None and x.shape[1] != self.steps:
            raise ShapeError(f"encoder=frames expects [B, T={self.steps}, C, H, W], got shape {tuple(x.shape)}: "
                             "DataLoaders yield batch-first; is this batch already time-major?")
        return x.transpose(0, 1)


class ThresholdCrossingEncoder(nn.Module):
    """LSNN's sequential-MNIST input (Bellec et al. 2018; LSNN-official ``find_onset_offset``).

    A pixel sequence [B, T, 1] in [0, 1] → spikes [T + cue_steps, B, 2·(n−1) + 2]:
    for each of the n−1 thresholds ``linspace(0, 1, n)[:-1]`` an onset neuron fires at
    step t when ``p[t] < θ <= p[t+1]`` and an offset neuron when ``p[t] >= θ > p[t+1]``;
    one neuron fires while ``p[t] == 1``; a cue neuron fires at every one of the
    ``cue_steps`` steps appended after the image (the "answer now" signal).
    Defaults (40 thresholds, 56 cue steps): 80 inputs, 784 + 56 = 840 steps.
    The threshold-0 pair never fires (pixels are never below 0), as in the original.
    """

    def __init__(self, n_thresholds: int = 40, cue_steps: int = 56, steps: int | None = None) -> None:
        super().__init__()
        if n_thresholds < 2 or cue_steps < 0:
            raise ValueError(f"threshold crossing needs n_thresholds >= 2 and cue_steps >= 0, got {n_thresholds}, {cue_steps}")
        self.n_thresholds, self.cue_steps, self.steps = int(n_thresholds), int(cue_steps), steps
        self.register_buffer("thresholds", torch.linspace(0, 1, self.n_thresholds)[:-1], persistent=False)

    def out_features(self, in_features: int) -> int:
        if in_features != 1:
            raise ShapeError(f"encoder=threshold_crossing reads one pixel per step (data.order=pixel|permuted), got {in_features}")
        return 2 * (self.n_thresholds - 1) + 2

    def forward(self, x: Tensor) -> Tensor:
        _check_sequence(x, self.steps, "encoder=threshold_crossing")
        if x.shape[-1] != 1:
            raise ShapeError(
                f"encoder=threshold_crossing reads one pixel per step (data.order=pixel|permuted), got {x.shape[-1]} "
                "inputs per step"
            )
        p = x[..., 0]  # [B, T]
        below = p.unsqueeze(-1) < self.thresholds.to(p.dtype)  # [B, T, K]
        onset = torch.zeros_like(below)
        offset = torch.zeros_like(below)
        onset[:, :-1] = below[:, :-1] & ~below[:, 1:]
        offset[:, :-1] = ~below[:, :-1] & below[:, 1:]
        crossings = torch.stack((onset, offset), dim=-1).flatten(2)  # per threshold: onset, offset
        touch = (p == 1).unsqueeze(-1)
        spikes = torch.cat((crossings, touch, torch.zeros_like(touch)), dim=-1).to(x.dtype)
        cue = torch.zeros(p.shape[0], self.cue_steps, spikes.shape[-1], dtype=x.dtype, device=x.device)
        cue[..., -1] = 1.0
        return torch.cat((spikes, cue), dim=1).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"n_thresholds={self.n_thresholds}, cue_steps={self.cue_steps}, steps={self.steps}"
