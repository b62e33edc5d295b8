"""Event-driven layers: standardised synapses, the spiking block, pooling.

A block is ``synapse`` (linear or conv weights with per-output-channel standardisation) →
``neuron`` (a :class:`~spikelight.neurons.DualExpNode`, read for its constants) → ``post``
(pooling, dropout on the spikes). The synapse and the neurons run together in one
:class:`~spikelight.layers.event_driven.functions.EventSynapseFunction`, whose backward passes
gradients only at spike times.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikelight.core.errors import ConfigError
from spikelight.core.types import NeuronOutput
from spikelight.dynamics.spec import DualExpSpec
from spikelight.layers.event_driven.functions import (
    AUTHORS_INPUT_GRAD_DAMPING,
    GRAD_TYPES,
    AdjustedAvgPool2dFunction,
    Conv2dOp,
    EventConfig,
    EventSynapseFunction,
    GradStats,
    LinearOp,
    StandardizeAuthorsFunction,
    event_forward,
    standardize_weight,
)
from spikelight.layers.over_time import apply_over_time
from spikelight.neurons import DualExpNode

__all__ = [
    "STANDARDIZATION_GRADS",
    "EventSynapse",
    "EventLinear",
    "EventConv2d",
    "EventBlock",
    "AdjustedAvgPool2d",
]

STANDARDIZATION_GRADS = ("exact", "authors")


class EventSynapse(nn.Module):
    """Weights W [C_out, ...] with per-output-channel standardisation (gain, shift [C_out]).

    Ŵ = (W − μ_c)/√(σ²_c + 1e−5)·gain_c + shift_c (:func:`standardize_weight`). gain starts
    at 1 (the data-driven init rescales it), shift at 0; W has PyTorch's default init.
    ``standardization_grad``: ``exact`` (autograd through the standardisation) or ``authors``
    (their manual backward, :class:`StandardizeAuthorsFunction`, for fidelity).
    """

    op: LinearOp | Conv2dOp

    def __init__(self, weight_shape: tuple[int, ...], standardization_grad: str = "exact") -> None:
        super().__init__()
        if standardization_grad not in STANDARDIZATION_GRADS:
            raise ConfigError(
                f"standardization_grad must be one of {STANDARDIZATION_GRADS}, got {standardization_grad!r}"
            )
        self.weight = nn.Parameter(torch.empty(weight_shape))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear / nn.Conv2d default
        self.gain = nn.Parameter(torch.ones(weight_shape[0]))
        self.shift = nn.Parameter(torch.zeros(weight_shape[0]))
        self.standardization_grad = standardization_grad

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def weight_hat(self, gain_scale: float = 1.0) -> Tensor:
        """The standardised weight Ŵ (gain times ``gain_scale``, used by the data-driven init)."""
        gain = self.gain if gain_scale == 1.0 else self.gain * gain_scale
        if self.standardization_grad == "authors":
            return StandardizeAuthorsFunction.apply(self.weight, gain, self.shift)
        return standardize_weight(self.weight, gain, self.shift)

    def fan_out(self) -> float:
        raise NotImplementedError


class EventLinear(EventSynapse):
    """Fully connected synapse, Ŵ [out_features, in_features]; input [T, B, in_features]."""

    def __init__(self, in_features: int, out_features: int, standardization_grad: str = "exact") -> None:
        super().__init__((out_features, in_features), standardization_grad)
        self.op = LinearOp()

    def fan_out(self) -> float:
        return float(self.weight.shape[0])

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"in_features={i}, out_features={o}, standardization_grad={self.standardization_grad!r}"


class EventConv2d(EventSynapse):
    """Conv synapse (no bias), Ŵ [C_out, C_in, k, k]; input [T, B, C_in, H, W]."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0,
        standardization_grad: str = "exact",
    ) -> None:
        super().__init__((out_channels, in_channels, kernel, kernel), standardization_grad)
        self.op = Conv2dOp((stride, stride), (padding, padding))
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def fan_out(self) -> float:
        return self.weight.shape[0] * self.kernel**2 / self.stride**2

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return (
            f"{i}, {o}, kernel={k}, stride={self.stride}, padding={self.padding}, "
            f"standardization_grad={self.standardization_grad!r}"
        )


class EventBlock(nn.Module):
    """One event-driven spiking layer: ``synapse`` + ``neuron`` over time, then ``post`` on the spikes.

    forward(x [T, B, ...], labels [B] or None) → (spikes, membrane, emitted), each [T, B, ...]:
    ``spikes`` carries the event-driven gradient (with label spikes injected when labels are
    given), ``membrane`` is u before reset (no gradient), ``emitted`` the spikes before
    injection. :meth:`post_process` applies pooling / dropout.

    Args:
        synapse: :class:`EventLinear` or :class:`EventConv2d`.
        neuron: :class:`DualExpNode` (τ_m, τ_s, τ_grad, threshold).
        post: pooling / dropout layers on the spikes (an ``nn.Sequential``).
        grad_type, input_grad_damping: see :class:`EventConfig`.
    """

    def __init__(
        self, synapse: EventSynapse, neuron: DualExpNode, post: nn.Sequential, grad_type: str = "exponential",
        input_grad_damping: float = AUTHORS_INPUT_GRAD_DAMPING,
    ) -> None:
        super().__init__()
        if not isinstance(neuron, DualExpNode):
            raise ConfigError(
                f"event-driven layers need the dual-exponential neuron (neuron=dual_exp), got {type(neuron).__name__}"
            )
        if grad_type not in GRAD_TYPES:
            raise ConfigError(f"model.grad_type must be one of {GRAD_TYPES}, got {grad_type!r}")
        self.synapse, self.neuron, self.post = synapse, neuron, post
        self.grad_type = grad_type
        self.input_grad_damping = float(input_grad_damping)
        #: set by the gradient-flow callback: the backward adds its gradient sums here
        self.grad_stats: GradStats | None = None

    def config(self) -> EventConfig:
        n = self.neuron
        spec = DualExpSpec(*n.thetas, n.v_threshold, detach_reset=False)  # the neuron as the fast paths see it
        return EventConfig(spec, self.grad_type, self.input_grad_damping)

    def _input(self, x: Tensor) -> Tensor:
        return x.flatten(2) if isinstance(self.synapse, EventLinear) and x.dim() > 3 else x

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        x = self._input(x)
        outs = EventSynapseFunction.apply(x, self.synapse.weight_hat(), self.synapse.op, self.config(), labels,
                                          self.grad_stats)
        spikes, membrane = outs[0], outs[1]
        # through the neuron module, so monitors and forward hooks see this layer's spikes and membrane
        res = self.neuron(x, result=NeuronOutput(spikes, membrane, None))
        emitted = outs[2] if labels is not None else res.spikes
        return res.spikes, res.membrane, emitted

    def count_ops(self, args: tuple, out) -> tuple[float, float, float]:
        """Synaptic operations of one call on x [T, B, ...] (for :class:`~spikelight.synops.SynOpCounter`).

        Binary inputs: one accumulate per spike and synapse. Fractional inputs (after average
        pooling) cost one multiply-accumulate per non-zero input and synapse (an event-driven
        implementation touches only those); the analog first layer, repeated over time,
        costs dense MACs at every step. The equivalent ANN runs each layer once.
        """
        x = args[0]
        T, B = x.shape[:2]
        fan_out = self.synapse.fan_out()
        dense = float(x[0, 0].numel()) * fan_out  # MACs of one sample, one step
        ann = dense * B
        if bool(((x == 0) | (x == 1)).all()):
            return float(x.sum()) * fan_out, 0.0, ann
        if x.dim() > 0 and x.shape[0] > 1 and x.stride(0) == 0:
            return 0.0, dense * T * B, ann
        return 0.0, float((x != 0).sum()) * fan_out, ann

    @torch.no_grad()
    def spikes_only(self, x: Tensor, gain_scale: float = 1.0) -> Tensor:
        """Forward spikes [T, B, ...] with the gains times ``gain_scale`` (no autograd, no hooks)."""
        return self.gain_response(x)(gain_scale)

    @torch.no_grad()
    def gain_response(self, x: Tensor):
        """``scale -> spikes [T, B, ...]`` of this layer on input x with its gains times ``scale``.

        The synaptic current is linear in the gains (Ŵ = ŵ·gain + shift), so the synapse runs
        twice here and every scale after that costs only the neuron loop (the data-driven init
        tries ~10 scales per layer).
        """
        x = self._input(x)
        T, B = x.shape[:2]
        syn = self.synapse
        flat = x.reshape(T * B, *x.shape[2:])
        w_gain = syn.weight_hat() - syn.shift.view(-1, *([1] * (syn.weight.dim() - 1)))
        I_gain = syn.op(flat, w_gain).unflatten(0, (T, B))
        I_shift = syn.op(flat, syn.weight_hat() - w_gain).unflatten(0, (T, B)) if bool(syn.shift.any()) else None
        cfg = self.config()

        def spikes(scale: float) -> Tensor:
            in_I = I_gain * scale if I_shift is None else torch.add(I_shift, I_gain, alpha=scale)
            return event_forward(in_I, cfg).spikes

        return spikes

    def post_process(self, spikes: Tensor) -> Tensor:
        """``post`` (pooling / dropout) on spikes [T, B, ...], time folded into the batch."""
        return apply_over_time(self.post, spikes)


class AdjustedAvgPool2d(nn.Module):
    """Average pooling (kernel = stride = k) with the gradient-sum-keeping backward
    (:class:`AdjustedAvgPool2dFunction`); on [N, C, H, W]."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = int(kernel)

    def forward(self, x: Tensor) -> Tensor:
        return AdjustedAvgPool2dFunction.apply(x, (self.kernel, self.kernel))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"

