"""Single-layer fully connected spiking network (SpikingJelly ``lif_fc_mnist``)."""

from __future__ import annotations

from torch import Tensor, nn

from spikelight.core.contract import ModelTraits
from spikelight.core.types import SpikeOutput
from spikelight.layers.over_time import NeuronFactory, apply_over_time, make_neuron
from spikelight.models.base import check_features

__all__ = ["FCLIF"]


class FCLIF(nn.Module):
    """Flatten → Linear(in_features → num_classes) → spiking neuron.

    forward: x_seq [T, B, ...] (flattens to in_features) → SpikeOutput with
    spikes / membrane [T, B, num_classes]. The linear layer runs on all steps
    at once; only the neuron loops over time.
    """

    traits = ModelTraits()  # a plain spiking classifier (:mod:`spikelight.core.contract`)

    def __init__(
        self,
        neuron: NeuronFactory,
        in_features: int = 784,
        num_classes: int = 10,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.fc = nn.Linear(in_features, num_classes, bias=bias)
        self.neuron = make_neuron(neuron)

    def forward(self, x_seq: Tensor) -> SpikeOutput:
        x = check_features(x_seq, self.in_features, type(self).__name__)
        out = self.neuron(apply_over_time(self.fc, x))
        return SpikeOutput(out.spikes, out.membrane, {"neuron": out.spikes})
