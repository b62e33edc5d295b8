"""Learning rules. BPTT through autograd is the default; e-prop learns online."""

from torch import nn

from spikelight.learning.eprop import EProp, EPropResult, reference_gradients

__all__ = ["BPTT", "EProp", "EPropResult", "reference_gradients"]


class BPTT(nn.Module):
    """Backpropagation through time with autograd (``learning=bptt``, the default): nothing to configure.

    Not an :class:`~spikelight.core.contract.OnlineLearningRule`: the trainer runs autograd."""
