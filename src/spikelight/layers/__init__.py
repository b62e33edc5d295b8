"""Layers over time, built from neurons: stateless layers on time-major sequences and shared
dropout (:mod:`.over_time`), the recurrent spiking layer and the leaky readout (:mod:`.recurrent`),
the event-driven synapses and pools (:mod:`.event_driven`)."""

from spikelight.layers.over_time import OverTime, SequenceLayer, SharedDropout, apply_over_time, make_neuron
from spikelight.layers.recurrent import LeakyReadout, RecurrentSpikingLayer, RecurrentState

__all__ = [
    "OverTime", "SequenceLayer", "SharedDropout", "apply_over_time", "make_neuron",
    "LeakyReadout", "RecurrentSpikingLayer", "RecurrentState",
]  # fmt: skip
