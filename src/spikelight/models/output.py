"""The contract between models, readouts and losses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["SpikeOutput"]


@dataclass
class SpikeOutput:
    """What every model returns.

    spikes:   [T, B, C] output-layer spikes, or None when the output layer does not
              spike (LSNN's leaky readout neurons).
    membrane: [T, B, C] output-layer potential before reset; for a non-spiking
              readout layer its potential, i.e. the per-step class scores (logits).
    hidden:   neuron module path → spikes [T, B, ...] for every spiking layer
              (output included), used for firing-rate statistics and monitors.
    state:    the model's final recurrent state (pass it back to continue a
              sequence), or None for feed-forward models.
    """

    spikes: Tensor | None
    membrane: Tensor
    hidden: dict[str, Tensor] = field(default_factory=dict)
    state: Any = None
