"""Spiking neurons. Each is one pure charge function plus shared fire/reset."""

from spikelight.core.types import NeuronOutput, VState
from spikelight.neurons.alif import ALIFNode, ALIFState
from spikelight.neurons.base import BaseNode, reset_state
from spikelight.neurons.dual_exp import DualExpNode, DualExpState, dual_exp_update
from spikelight.neurons.if_lif import (
    IFNode,
    LIFNode,
    beta_from_tau,
    if_charge,
    lif_charge,
    resolve_tau_beta,
    tau_from_beta,
)
from spikelight.neurons.leaky import LeakyNode
from spikelight.neurons.lif_conventions import lif_neuron

__all__ = [
    "ALIFNode",
    "ALIFState",
    "BaseNode",
    "DualExpNode",
    "DualExpState",
    "dual_exp_update",
    "NeuronOutput",
    "VState",
    "IFNode",
    "LIFNode",
    "lif_neuron",
    "LeakyNode",
    "reset_state",
    "if_charge",
    "lif_charge",
    "beta_from_tau",
    "tau_from_beta",
    "resolve_tau_beta",
]
