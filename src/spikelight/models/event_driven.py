"""Event-driven backpropagation networks (Zhu et al., NeurIPS 2022), built from a list of layer specs.

The authors' MNIST network (15C5-P2-40C5-P2-FC300-FC10)::

    layers:
      - {conv: 15, kernel: 5, padding: 0, pool: 2}
      - {conv: 40, kernel: 5, padding: 0, pool: 2}
      - {fc: 300}
    # + the output layer fc(num_classes), added automatically

A layer is ``conv|fc (standardised weights, no bias) → dual-exponential neurons → [pool] →
[dropout]``; gradients flow only through spike times (:mod:`spikelight.layers.event_driven`).
The keys are those of ``model=conv`` where they mean the same (conv, fc, kernel, stride,
padding, dropout, repeat); ``pool: k`` is a pooling of size k whose kind is the model's
``pooling`` (``adjusted_avg`` as in every published config, ``avg``, ``max``).

Training-time parts the :class:`~spikelight.train.module.SpikingClassifier` drives
(:mod:`spikelight.core.contract`): the labels go into the forward (``traits.takes_labels``) for
label-spike injection at the output layer; gains are initialised from the first training batch
(:meth:`EventDrivenSNN.data_init`); the gain / shift parameters form their own optimiser group
with learning-rate factor ``norm_grad`` (:meth:`EventDrivenSNN.param_groups`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikelight.core.contract import ModelTraits
from spikelight.core.errors import ConfigError
from spikelight.core.types import SpikeOutput
from spikelight.layers.event_driven.functions import (
    AUTHORS_INPUT_GRAD_DAMPING,
    bisect_gain,
    late_spike_rate,
    target_init_spikes,
)
from spikelight.layers.event_driven.synapses import AdjustedAvgPool2d, EventBlock, EventConv2d, EventLinear
from spikelight.layers.over_time import NeuronFactory, SharedDropout, make_neuron
from spikelight.models import base

__all__ = ["EventDrivenSNN", "EventLayerSpec", "parse_event_layers", "POOLINGS", "DROPOUT_MASKS"]

POOLINGS = ("adjusted_avg", "avg", "max")
DROPOUT_MASKS = ("channel", "neuron")


@dataclass(frozen=True)
class EventLayerSpec(base.ConvFcSpec):
    """One event-driven layer: the :class:`~spikelight.models.base.ConvFcSpec` keys (exactly one of
    ``conv`` / ``fc``; kernel, stride, padding) and

    pool: pooling size (= stride) applied to the spikes, or None; its kind is the model's ``pooling``.
    dropout: probability applied to the (pooled) spikes, one mask per sample shared over time.
    repeat: this layer this many times (pool and dropout only after the last one).
    """

    pool: int | None = None
    dropout: float = 0.0
    repeat: int = 1

    def check(self, where: str) -> None:
        base.check_layer_geometry(self, where)
        if self.pool is not None and (self.fc is not None or self.pool <= 0):
            raise ConfigError(f"{where}: pool needs a conv layer and a positive size")


_CONV_ONLY = {
    "norm": "event-driven layers standardise their weights instead of a norm layer",
    "bias": "event-driven synapses have no bias (each channel has a learnt gain and shift)",
    "maxpool": "give the size with pool: k and the kind with model.pooling=max",
    "avgpool": "give the size with pool: k and the kind with model.pooling=adjusted_avg|avg",
}


def parse_event_layers(layers: Sequence[Mapping | EventLayerSpec]) -> list[EventLayerSpec]:
    """Layer specs from config dicts, ``repeat`` unrolled; one readable line for a bad entry."""
    refused = {key: f"no '{key}' in model=event_driven layers: {why}" for key, why in _CONV_ONLY.items()}
    return base.parse_layer_list(layers, EventLayerSpec, "{conv: 128, kernel: 3, pool: 2}",
                            {"pool": None, "dropout": 0.0}, refused)


class _CountToTimeGrad(torch.autograd.Function):
    """Identity forward; backward flips the sign: a count-based loss's dL/do becomes dL/dt of the
    output spikes (more spikes ≈ earlier spikes; the authors' ``loss_reverse``)."""

    @staticmethod
    def forward(ctx, spikes):  # type: ignore[override]
        return spikes.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return -grad


class EventDrivenSNN(nn.Module):
    """Spiking conv / fc network trained by event-driven backpropagation.

    Blocks are ``blocks.<i>`` (:class:`~spikelight.layers.event_driven.EventBlock`: ``synapse``,
    ``neuron``, ``post``), the output layer last; ``SpikeOutput.hidden`` is keyed
    ``blocks.<i>.neuron``.

    Args:
        neuron: factory of :class:`~spikelight.neurons.DualExpNode` (``neuron=dual_exp``).
        layers: hidden layer specs (dicts with the :class:`EventLayerSpec` keys).
        in_shape: one input sample, ``[C, H, W]`` (or ``[F]`` for fc-only nets).
        num_classes: output neurons.
        pooling: kind of every ``pool``: ``adjusted_avg`` (average pooling whose backward keeps
            the gradient sum; the paper), ``avg`` (plain; shrinks gradients), ``max``.
        grad_type: ``exponential`` (every published config) or ``original`` (see
            :class:`~spikelight.layers.event_driven.EventConfig`).
        input_grad_damping: factor on every layer's input gradient; the authors' code has a
            hidden 0.85 (the default here); 1.0 keeps the gradient sum exactly.
        standardization_grad: ``exact`` (autograd through the weight standardisation) or
            ``authors`` (their manual backward; it differs, see
            :class:`~spikelight.layers.event_driven.StandardizeAuthorsFunction`).
        norm_grad: learning-rate factor of the gains and shifts (their optimiser group);
            0 freezes them after the data-driven init (the CIFAR configs).
        data_init: rescale each layer's gains on the first training batch so that about
            ``avg_spike_init`` spikes per neuron fire (in the late steps, scaled; §1.4).
        avg_spike_init: the init's target (1 by default; 0.5 in the (F)MNIST configs, 1.2 CIFAR-100).
        label_spikes: inject a spike for the label neuron at the output layer in training.
        loss_reverse: turn the loss's gradient w.r.t. output spikes into the gradient w.r.t.
            their times with the opposite sign (more spikes ≈ earlier spikes), as the authors do.
        dropout_mask: ``channel`` (one mask per feature-map channel, shared over positions and
            time: the authors' ``dropout2d``) or ``neuron`` (one per neuron, shared over time).

    forward: x_seq [T, B, *in_shape] (and labels [B] in training) → SpikeOutput with spikes /
    membrane [T, B, num_classes]; ``emitted_spikes`` holds the spikes before label injection.
    """

    #: takes_labels: the SpikingClassifier passes the training labels into forward (label-spike
    #: injection); membrane_grad=False: gradients reach the network only through output spikes,
    #: so losses that need the membrane's are refused. Hooks: data_init, param_groups.
    traits = ModelTraits(takes_labels=True, membrane_grad=False)

    def __init__(
        self,
        neuron: NeuronFactory,
        layers: Sequence[Mapping | EventLayerSpec],
        in_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        pooling: str = "adjusted_avg",
        grad_type: str = "exponential",
        input_grad_damping: float = AUTHORS_INPUT_GRAD_DAMPING,
        standardization_grad: str = "exact",
        norm_grad: float = 1.0,
        data_init: bool = True,
        avg_spike_init: float = 1.0,
        label_spikes: bool = True,
        loss_reverse: bool = True,
        dropout_mask: str = "channel",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"model.pooling must be one of {POOLINGS}, got {pooling!r}")
        if dropout_mask not in DROPOUT_MASKS:
            raise ConfigError(f"model.dropout_mask must be one of {DROPOUT_MASKS}, got {dropout_mask!r}")
        if not norm_grad >= 0 or not avg_spike_init > 0 or not input_grad_damping >= 0:
            raise ConfigError("model.norm_grad and model.input_grad_damping must be >= 0, model.avg_spike_init > 0")
        self.in_shape, self.num_classes = base.check_in_shape(in_shape, num_classes), num_classes
        self.pooling, self.dropout_mask = pooling, dropout_mask
        self.norm_grad, self.data_init_enabled = float(norm_grad), bool(data_init)
        self.avg_spike_init = float(avg_spike_init)
        self.label_spikes, self.loss_reverse = bool(label_spikes), bool(loss_reverse)
        specs = [*parse_event_layers(layers), EventLayerSpec(fc=num_classes)]
        shape: tuple[int, ...] = self.in_shape
        blocks = []
        for i, spec in enumerate(specs):
            synapse, post, shape = self._layer(spec, shape, standardization_grad, i)
            blocks.append(EventBlock(synapse, make_neuron(neuron), post, grad_type, input_grad_damping))
        self.blocks = nn.ModuleList(blocks)
        base.check_own_neurons((b.neuron for b in self.blocks), "EventDrivenSNN")
        # saved in checkpoints, so a resumed run does not initialise again
        self.register_buffer("data_initialized", torch.tensor(not self.data_init_enabled))

    def _layer(
        self, spec: EventLayerSpec, shape: tuple[int, ...], std_grad: str, i: int
    ) -> tuple[EventConv2d | EventLinear, nn.Sequential, tuple[int, ...]]:
        """Synapse and post-processing of layer ``i`` for input ``shape``; and its output shape."""
        post = nn.Sequential()
        inputs, pad, out_shape = spec.geometry(shape, i, spec.pool)
        if spec.conv is not None:
            synapse: EventConv2d | EventLinear = EventConv2d(inputs, spec.conv, spec.kernel, spec.stride, pad, std_grad)
            if spec.pool:
                k = spec.pool
                post.append({"adjusted_avg": AdjustedAvgPool2d(k), "avg": nn.AvgPool2d(k), "max": nn.MaxPool2d(k)}[
                    self.pooling])
        else:
            synapse = EventLinear(inputs, spec.fc, std_grad)
        if spec.dropout > 0:
            post.append(SharedDropout(spec.dropout, channelwise=self.dropout_mask == "channel"))
        return synapse, post, out_shape

    # --- forward -------------------------------------------------------------------------
    def _check_input(self, x_seq: Tensor) -> None:
        base.check_input_shape(x_seq, self.in_shape, "EventDrivenSNN")

    def forward(self, x_seq: Tensor, labels: Tensor | None = None) -> SpikeOutput:
        self._check_input(x_seq)
        inject = labels is not None and self.training and self.label_spikes
        hidden: dict[str, Tensor] = {}
        x = x_seq
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            spikes, membrane, emitted = block(x, labels if inject and i == last else None)
            hidden[f"blocks.{i}.neuron"] = emitted
            if i < last:
                x = block.post_process(spikes)
        if self.loss_reverse:
            spikes = _CountToTimeGrad.apply(spikes)
        return SpikeOutput(spikes, membrane, hidden, emitted_spikes=emitted if inject else None)

    # --- training-time hooks the SpikingClassifier calls ------------------------------------
    @torch.no_grad()
    def data_init(self, x_seq: Tensor) -> list[float]:
        """Data-driven gain initialisation on one batch x_seq [T, B, ...] (the authors' ``initialize``).

        Layer by layer (in eval mode: no dropout), a factor s ∈ [0.05, 500] on the gains is found
        by geometric bisection so that the spikes per neuron in steps t ≥ ⌊2T/3⌋ reach
        ``1.2·avg_spike_init·(T − ⌊2T/3⌋)/T``; then gains ← gains·s and the layer's spikes (pooled)
        feed the next layer. Returns the factors; marks the model initialised.
        """
        self._check_input(x_seq)
        was_training = self.training
        self.eval()
        T = x_seq.shape[0]
        t_start = T * 2 // 3
        target = target_init_spikes(T, self.avg_spike_init)
        factors = []
        x = x_seq
        for block in self.blocks:
            response = block.gain_response(x)

            def late_rate(scale: float, response=response) -> Tensor:
                return late_spike_rate(response(scale), t_start)

            s = bisect_gain(late_rate, target=target)
            block.synapse.gain.mul_(s)
            factors.append(s)
            x = block.post_process(block.spikes_only(x))
        self.data_initialized.fill_(True)
        self.train(was_training)
        return factors

    def param_groups(self) -> list[dict]:
        """Optimiser groups: the weights, and the gains / shifts with learning-rate factor ``norm_grad``
        (``lr_scale``, applied by :meth:`SpikingClassifier.configure_optimizers`)."""
        weights = [b.synapse.weight for b in self.blocks]
        norms = [p for b in self.blocks for p in (b.synapse.gain, b.synapse.shift)]
        return [{"params": weights}, {"params": norms, "lr_scale": self.norm_grad}]

    def extra_repr(self) -> str:
        return (
            f"in_shape={list(self.in_shape)}, num_classes={self.num_classes}, pooling={self.pooling!r}, "
            f"norm_grad={self.norm_grad}, data_init={self.data_init_enabled}, avg_spike_init={self.avg_spike_init}, "
            f"label_spikes={self.label_spikes}, loss_reverse={self.loss_reverse}, dropout_mask={self.dropout_mask!r}"
        )
