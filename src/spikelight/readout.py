"""Readouts: a model's :class:`SpikeOutput` → class scores ``[B, C]`` (argmax = prediction)."""

from __future__ import annotations

from torch import Tensor, nn

from spikelight.models.output import SpikeOutput

__all__ = ["Readout", "RateReadout", "CountReadout", "MembraneReadout"]


class Readout(nn.Module):
    """Base readout."""

    def forward(self, out: SpikeOutput) -> Tensor:
        raise NotImplementedError


class RateReadout(Readout):
    """Firing rate of each output neuron: mean spikes over time, in [0, 1]."""

    def forward(self, out: SpikeOutput) -> Tensor:
        return out.spikes.mean(0)


class CountReadout(Readout):
    """Spike count of each output neuron over all steps."""

    def forward(self, out: SpikeOutput) -> Tensor:
        return out.spikes.sum(0)


class MembraneReadout(Readout):
    """Output membrane potential reduced over time: ``mean``, ``last`` or ``max``."""

    MODES = ("mean", "last", "max")

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"membrane readout mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, out: SpikeOutput) -> Tensor:
        m = out.membrane
        if self.mode == "mean":
            return m.mean(0)
        if self.mode == "last":
            return m[-1]
        return m.max(0).values

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
