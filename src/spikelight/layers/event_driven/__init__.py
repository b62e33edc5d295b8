"""Event-driven backpropagation (Zhu et al., NeurIPS 2022): gradients only at spike times.

:mod:`~spikelight.layers.event_driven.functions` holds the time loops and ``autograd.Function`` s,
:mod:`~spikelight.layers.event_driven.synapses` the standardised synapses, blocks and pooling;
the network is :class:`spikelight.models.EventDrivenSNN` (``model=event_driven``).
"""

from spikelight.layers.event_driven.functions import (
    AUTHORS_INPUT_GRAD_DAMPING,
    GRAD_TYPES,
    AdjustedAvgPool2dFunction,
    Conv2dOp,
    EventConfig,
    EventForward,
    EventSynapseFunction,
    GradStats,
    LinearOp,
    StandardizeAuthorsFunction,
    event_backward,
    event_backward_reference,
    event_forward,
    exp_terms,
    inject_label_spikes,
    kernel_tables,
    standardize_weight,
)
from spikelight.layers.event_driven.synapses import (
    STANDARDIZATION_GRADS,
    AdjustedAvgPool2d,
    EventBlock,
    EventConv2d,
    EventLinear,
    EventSynapse,
)

__all__ = [
    "AUTHORS_INPUT_GRAD_DAMPING",
    "GRAD_TYPES",
    "STANDARDIZATION_GRADS",
    "AdjustedAvgPool2d",
    "AdjustedAvgPool2dFunction",
    "Conv2dOp",
    "EventBlock",
    "EventConfig",
    "EventConv2d",
    "EventForward",
    "EventLinear",
    "EventSynapse",
    "EventSynapseFunction",
    "GradStats",
    "LinearOp",
    "StandardizeAuthorsFunction",
    "event_backward",
    "event_backward_reference",
    "event_forward",
    "exp_terms",
    "inject_label_spikes",
    "kernel_tables",
    "standardize_weight",
]
