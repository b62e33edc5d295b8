"""Convolutional (and fully connected) spiking networks built from a short list of layer specs.

One spec per spiking layer, e.g. SpikingJelly's ``conv_fashion_mnist`` network::

    layers:
      - {conv: 128, kernel: 3, norm: batch, maxpool: 2}
      - {conv: 128, kernel: 3, norm: batch, maxpool: 2}
      - {fc: 2048}
    # + the output layer fc(num_classes) -> neuron, added automatically

A layer is ``conv|fc → [norm] → neuron → [pool] → [dropout]``: the synapse
(and its norm) runs on all T·B samples at once (:func:`apply_over_time`), the
neuron loops over time, pooling and dropout act on the spikes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from spikelight.core.contract import ModelTraits
from spikelight.core.errors import ConfigError
from spikelight.core.types import SpikeOutput
from spikelight.layers.over_time import NeuronFactory, OverTime, SharedDropout, make_neuron
from spikelight.models import base
from spikelight.neurons import BaseNode

__all__ = ["ConvSNN", "LayerSpec", "SpikingBlock", "parse_layers"]

NORMS = (None, "batch")
DROPOUT_OVER_TIME = ("shared", "per_step")


@dataclass(frozen=True)
class LayerSpec(base.ConvFcSpec):
    """One spiking layer: the :class:`~spikelight.models.base.ConvFcSpec` keys (exactly one of
    ``conv`` / ``fc``; kernel, stride, padding) and

    norm: ``batch`` (BatchNorm2d / BatchNorm1d on the synaptic current) or None.
    maxpool / avgpool: pooling size (= stride) applied to the spikes, or None.
    dropout: probability applied to the (pooled) spikes, or 0.
    bias: synapse bias; None = the model's ``bias``.
    repeat: this layer this many times (pool and dropout only after the last one).
    """

    norm: str | None = None
    maxpool: int | None = None
    avgpool: int | None = None
    dropout: float = 0.0
    bias: bool | None = None
    repeat: int = 1

    def check(self, where: str) -> None:
        base.check_layer_geometry(self, where)
        if self.norm not in NORMS:
            raise ConfigError(f"{where}: norm must be one of {NORMS}, got {self.norm!r}")
        if self.maxpool is not None and self.avgpool is not None:
            raise ConfigError(f"{where}: give maxpool or avgpool, not both")
        if self.fc is not None and (self.maxpool or self.avgpool):
            raise ConfigError(f"{where}: pooling needs a conv layer, not fc")


def parse_layers(layers: Sequence[Mapping | LayerSpec]) -> list[LayerSpec]:
    """Layer specs from config dicts, ``repeat`` unrolled; one readable line for a bad entry."""
    return base.parse_layer_list(layers, LayerSpec, "{conv: 128, kernel: 3}",
                            {"maxpool": None, "avgpool": None, "dropout": 0.0})


class SpikingBlock(nn.Module):
    """``synapse`` (stateless, over T·B) → ``neuron`` (over time) → ``post`` (pool / dropout on spikes).

    forward: x_seq [T, B, ...] → (NeuronOutput of the neuron, spikes after ``post`` [T, B, ...]).
    """

    def __init__(self, synapse: OverTime, neuron: BaseNode, post: OverTime) -> None:
        super().__init__()
        self.synapse = synapse
        self.neuron = neuron
        self.post = post

    def forward(self, x_seq: Tensor):
        out = self.neuron(self.synapse(x_seq))
        return out, self.post(out.spikes)


class ConvSNN(nn.Module):
    """A stack of spiking conv / fc layers from ``layers`` plus a spiking output layer.

    Blocks are ``blocks.<i>`` (each with ``synapse``, ``neuron``, ``post``), the
    output layer last; ``SpikeOutput.hidden`` is keyed ``blocks.<i>.neuron``.
    A ``Flatten`` is inserted before the first fc layer.

    Args:
        neuron: neuron factory (Hydra ``_partial_``); every layer gets its own.
        layers: hidden layer specs (dicts with the :class:`LayerSpec` keys).
        in_shape: one input sample, ``[C, H, W]`` (or ``[F]`` for fc-only nets).
        num_classes: output neurons.
        bias: default synapse bias (SpikingJelly's conv nets use none).
        dropout_over_time: ``shared`` = one dropout mask per neuron for all T
            steps (SpikingJelly, event-driven nets); ``per_step`` = a new mask
            at every step.

    forward: x_seq [T, B, *in_shape] → SpikeOutput with spikes / membrane [T, B, num_classes].
    """

    traits = ModelTraits()  # a plain spiking classifier (:mod:`spikelight.core.contract`)

    def __init__(
        self,
        neuron: NeuronFactory,
        layers: Sequence[Mapping | LayerSpec],
        in_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        bias: bool = False,
        dropout_over_time: str = "shared",
    ) -> None:
        super().__init__()
        if dropout_over_time not in DROPOUT_OVER_TIME:
            raise ConfigError(f"model.dropout_over_time must be one of {DROPOUT_OVER_TIME}, got {dropout_over_time!r}")
        self.in_shape = base.check_in_shape(in_shape, num_classes)
        specs = [*parse_layers(layers), LayerSpec(fc=num_classes)]
        shape = self.in_shape
        blocks = []
        for i, spec in enumerate(specs):
            block, shape = self._block(spec, shape, neuron, bias, dropout_over_time, i)
            blocks.append(block)
        self.blocks = nn.ModuleList(blocks)
        base.check_own_neurons((b.neuron for b in self.blocks), "ConvSNN")

    @staticmethod
    def _block(
        spec: LayerSpec, shape: tuple[int, ...], neuron: NeuronFactory, bias: bool, dropout_mode: str, i: int
    ) -> tuple[SpikingBlock, tuple[int, ...]]:
        """Build block ``i`` for input ``shape`` (one sample); return it and its output shape."""
        use_bias = bias if spec.bias is None else spec.bias
        synapse, post = OverTime(), OverTime()
        pool = spec.maxpool or spec.avgpool
        inputs, pad, out_shape = spec.geometry(shape, i, pool)
        if spec.conv is not None:
            synapse.append(nn.Conv2d(inputs, spec.conv, spec.kernel, spec.stride, pad, bias=use_bias))
            if spec.norm == "batch":
                synapse.append(nn.BatchNorm2d(spec.conv))
            if pool:
                post.append(nn.MaxPool2d(pool) if spec.maxpool else nn.AvgPool2d(pool))
        else:
            if len(shape) == 3:
                synapse.append(nn.Flatten())
            synapse.append(nn.Linear(inputs, spec.fc, bias=use_bias))
            if spec.norm == "batch":
                synapse.append(nn.BatchNorm1d(spec.fc))
        if spec.dropout > 0:
            post.append(SharedDropout(spec.dropout) if dropout_mode == "shared" else nn.Dropout(spec.dropout))
        return SpikingBlock(synapse, make_neuron(neuron), post), out_shape

    def forward(self, x_seq: Tensor) -> SpikeOutput:
        base.check_input_shape(x_seq, self.in_shape, "ConvSNN")
        hidden: dict[str, Tensor] = {}
        x = x_seq
        for i, block in enumerate(self.blocks):
            out, x = block(x)
            hidden[f"blocks.{i}.neuron"] = out.spikes
        return SpikeOutput(out.spikes, out.membrane, hidden)
