"""The types the layers speak: what a model returns (:class:`SpikeOutput`), what a neuron returns
(:class:`NeuronOutput`) and the single-variable neuron state (:class:`VState`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from torch import Tensor

__all__ = ["SpikeOutput", "NeuronOutput", "VState"]


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
    emitted_spikes: [T, B, C] the output spikes as the network emitted them when
              ``spikes`` were changed for training (event-driven label-spike
              injection); None = ``spikes`` are what it emitted. Readouts (accuracy,
              prediction) use these, losses use ``spikes``.
    """

    spikes: Tensor | None
    membrane: Tensor
    hidden: dict[str, Tensor] = field(default_factory=dict)
    state: Any = None
    emitted_spikes: Tensor | None = None

    def as_emitted(self) -> SpikeOutput:
        """This output with ``spikes`` as emitted (unchanged if nothing was injected)."""
        return self if self.emitted_spikes is None else replace(self, spikes=self.emitted_spikes, emitted_spikes=None)


class VState(NamedTuple):
    """State of a single-variable neuron: membrane after reset, [B, ...]."""

    v: Tensor


class NeuronOutput(NamedTuple):
    """Result of a multi-step call.

    spikes:   [T, B, ...] 0/1 in the input dtype.
    membrane: [T, B, ...] potential before reset (h), fp32 or wider.
    state:    the neuron's state NamedTuple after the last step (each field
              [B, ...]); pass it back in to continue the sequence.
    states:   the same NamedTuple with every field stacked over time
              ([T, B, ...]) when the neuron's ``record_states`` is set (a
              :class:`~spikelight.monitor.Monitor` asking for ``states``), else None.
    """

    spikes: Tensor
    membrane: Tensor
    state: Any
    states: Any = None

    @property
    def v(self) -> Tensor:
        """The membrane state after the last step (``state.v``)."""
        return self.state.v
