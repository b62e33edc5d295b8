"""The contract between models, readouts and losses."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["SpikeOutput"]


@dataclass
class SpikeOutput:
    """What every model returns.

    spikes:   [T, B, C] output-layer spikes.
    membrane: [T, B, C] output-layer potential before reset.
    hidden:   layer name → spikes [T, B, ...] for every spiking layer (output
              included), used for firing-rate statistics and monitors.
    """

    spikes: Tensor
    membrane: Tensor
    hidden: dict[str, Tensor] = field(default_factory=dict)
