"""Multi-layer fully connected spiking network (snnTorch tutorial 5)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from spikelight.core.contract import ModelTraits
from spikelight.core.types import SpikeOutput
from spikelight.layers.over_time import NeuronFactory, apply_over_time, make_neuron
from spikelight.models.base import check_features, check_own_neurons

__all__ = ["MLP"]


class MLP(nn.Module):
    """Flatten → [Linear → neuron] per layer: in_features → *hidden → num_classes.

    Every layer, the output one included, is Linear followed by its own neuron
    (built from the ``neuron`` factory): modules ``layers.<i>.fc`` and
    ``layers.<i>.neuron``; each neuron's spikes are in ``SpikeOutput.hidden``
    under its path (``layers.<i>.neuron``).

    forward: x_seq [T, B, ...] → SpikeOutput with spikes / membrane [T, B, num_classes].
    """

    traits = ModelTraits()  # a plain spiking classifier (:mod:`spikelight.core.contract`)

    def __init__(
        self,
        neuron: NeuronFactory,
        in_features: int = 784,
        hidden: Sequence[int] = (1000,),
        num_classes: int = 10,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if any(h <= 0 for h in hidden):
            raise ValueError(f"model.hidden sizes must be positive, got {list(hidden)}")
        self.in_features = in_features
        sizes = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(
            nn.ModuleDict({"fc": nn.Linear(a, b, bias=bias), "neuron": make_neuron(neuron)})
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        check_own_neurons((layer.neuron for layer in self.layers), "MLP")

    def forward(self, x_seq: Tensor) -> SpikeOutput:
        x = check_features(x_seq, self.in_features, type(self).__name__)
        hidden: dict[str, Tensor] = {}
        for i, layer in enumerate(self.layers):
            out = layer.neuron(apply_over_time(layer.fc, x))
            hidden[f"layers.{i}.neuron"] = out.spikes
            x = out.spikes
        return SpikeOutput(out.spikes, out.membrane, hidden)
