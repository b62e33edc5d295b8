"""Readouts: a model's :class:`SpikeOutput` → class scores ``[B, C]`` (argmax = prediction)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikelight.core.contract import OutputNeeds
from spikelight.core.types import SpikeOutput

__all__ = [
    "Readout",
    "RateReadout",
    "CountReadout",
    "TimeWeightedCountReadout",
    "MembraneReadout",
    "FirstSpikeReadout",
]


class Readout(nn.Module):
    """Base readout. ``needs`` (:class:`~spikelight.core.contract.OutputNeeds`, none when not
    declared): ``spikes``, it reads output spikes (models whose output layer does not spike,
    e.g. the LSNN, are refused when the run is built); ``membrane``, its scores depend on the
    output membrane of a spiking model, so ``loss=ce`` through it needs membrane gradients
    (refused for event-driven models, which have none)."""

    def forward(self, out: SpikeOutput) -> Tensor:
        raise NotImplementedError


class RateReadout(Readout):
    """Mean over time of the output layer: the firing rate of each output neuron (in [0, 1]);
    for a non-spiking readout layer (LSNN) the time-averaged readout potential, which is
    a linear readout of the hidden firing rates (the LSNN seed's ``--readout-type rate``)."""

    def forward(self, out: SpikeOutput) -> Tensor:
        return (out.membrane if out.spikes is None else out.spikes).mean(0)


class CountReadout(Readout):
    """Spike count of each output neuron over all steps.

    ``tie_break="membrane"`` (default) adds the mean output membrane squashed
    into (0, 0.5), below one spike, so equal counts (often all-silent outputs)
    are decided by the potential instead of by the lowest class index; the
    count still dominates. ``"none"`` is snnTorch's ``spk.sum(0).argmax()``,
    whose ties made its tutorial-5 network look collapsed
    (experiments/snntorch_tutorial5).
    """

    def __init__(self, tie_break: str = "membrane") -> None:
        super().__init__()
        if tie_break not in ("none", "membrane"):
            raise ValueError(f"count readout tie_break must be 'none' or 'membrane', got {tie_break!r}")
        self.tie_break = tie_break
        self.needs = OutputNeeds(spikes=True, membrane=tie_break == "membrane")

    def forward(self, out: SpikeOutput) -> Tensor:
        count = out.spikes.sum(0)
        if self.tie_break == "membrane":
            count = count + 0.5 * torch.sigmoid(out.membrane.mean(0))
        return count

    def extra_repr(self) -> str:
        return f"tie_break={self.tie_break!r}"


class TimeWeightedCountReadout(Readout):
    """Spike count with a small bonus for early spikes (event-driven BP, Zhu et al. 2022):

        score_j = Σ_t o_jt · (1 + early_bonus·(1 − t/T)),  t = 0..T−1

    ``early_bonus=0.1`` is the authors' ``1.1 − t/(10T)``: a spike at step 0 counts 1.1,
    one at the last step just above 1, so equal counts are decided by the earlier spikes.
    """

    needs = OutputNeeds(spikes=True)

    def __init__(self, early_bonus: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= early_bonus < 1.0:
            raise ValueError(f"readout.early_bonus must be in [0, 1), got {early_bonus}")
        self.early_bonus = float(early_bonus)

    def forward(self, out: SpikeOutput) -> Tensor:
        s = out.spikes
        T = s.shape[0]
        t = torch.arange(T, device=s.device, dtype=s.dtype).view(T, *([1] * (s.dim() - 1)))
        return (s * (1.0 + self.early_bonus * (1.0 - t / T))).sum(0)

    def extra_repr(self) -> str:
        return f"early_bonus={self.early_bonus}"


class FirstSpikeReadout(Readout):
    """Latency code: the output neuron that fires first wins.

    score = T − t_first (0 if it never fires); ties at the same step are
    decided by the spike count.
    """

    needs = OutputNeeds(spikes=True)

    def forward(self, out: SpikeOutput) -> Tensor:
        s = out.spikes
        T = s.shape[0]
        steps = torch.arange(T, 0, -1, device=s.device, dtype=s.dtype).view(T, *([1] * (s.dim() - 1)))
        first = (s * steps).max(0).values  # T - t_first for the earliest spike
        return first + s.sum(0) / (T + 1)


class MembraneReadout(Readout):
    """Output membrane potential (for LSNN: the readout neurons' potential) reduced over
    time: ``mean``, ``last`` or ``max``, over the whole sequence or its last ``window`` steps.

    ``mode=mean window=28`` is the LSNN paper's sMNIST readout (mean of the last 28 ms);
    ``mode=last`` the LSNN seed's ``--readout-type last``.
    """

    MODES = ("mean", "last", "max")
    needs = OutputNeeds(membrane=True)

    def __init__(self, mode: str = "mean", window: int | None = None) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"membrane readout mode must be one of {self.MODES}, got {mode!r}")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
            raise ValueError(f"readout.window must be a positive number of steps or null, got {window!r}")
        self.mode, self.window = mode, window

    def forward(self, out: SpikeOutput) -> Tensor:
        m = out.membrane if self.window is None else out.membrane[-self.window :]
        if self.mode == "mean":
            return m.mean(0)
        if self.mode == "last":
            return m[-1]
        return m.max(0).values

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, window={self.window}"
