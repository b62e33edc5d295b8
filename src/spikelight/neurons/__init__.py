"""Spiking neurons. Each is one pure charge function plus shared fire/reset."""

from spikelight.neurons.base import BaseNode, NeuronOutput, fire_and_reset, reset_state
from spikelight.neurons.if_lif import (
    IFNode,
    LIFNode,
    beta_from_tau,
    if_charge,
    lif_charge,
    lif_step,
    tau_from_beta,
)
from spikelight.neurons.leaky import LeakyNode

__all__ = [
    "BaseNode",
    "NeuronOutput",
    "IFNode",
    "LIFNode",
    "LeakyNode",
    "fire_and_reset",
    "reset_state",
    "if_charge",
    "lif_charge",
    "lif_step",
    "beta_from_tau",
    "tau_from_beta",
]
