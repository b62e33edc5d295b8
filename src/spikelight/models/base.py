"""Helpers shared by model families."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from spikelight.errors import ShapeError
from spikelight.neurons import BaseNode

__all__ = ["NeuronFactory", "make_neuron", "check_features", "apply_over_time"]

NeuronFactory = Callable[[], BaseNode] | BaseNode


def make_neuron(neuron: NeuronFactory) -> BaseNode:
    """A fresh neuron from a factory (``functools.partial`` / Hydra ``_partial_``), or the instance itself."""
    node = neuron if isinstance(neuron, BaseNode) else neuron()
    if not isinstance(node, BaseNode):
        raise TypeError(f"neuron must build a spikelight BaseNode, got {type(node).__name__}")
    return node


def check_features(x_seq: Tensor, expected: int, model: str) -> Tensor:
    """Flatten [T, B, ...] to [T, B, F] and check F; raise one readable line if it is wrong."""
    if x_seq.dim() < 3:
        raise ShapeError(f"{model} expects time-major input [T, B, ...], got shape {tuple(x_seq.shape)}")
    flat = x_seq.flatten(2)
    if flat.shape[-1] != expected:
        raise ShapeError(
            f"{model} expects {expected} input features per step, got {flat.shape[-1]} "
            f"(input shape {tuple(x_seq.shape)}); set model.in_features={flat.shape[-1]}"
        )
    return flat


def apply_over_time(layer: nn.Module, x_seq: Tensor) -> Tensor:
    """Apply a stateless layer to every step of x_seq [T, B, ...] in one call.

    If the input repeats over time as a stride-0 view (``DirectEncoder``), the
    layer runs once and its output is expanded: identical values and gradients
    (expand's backward sums over T), T times less work.
    """
    T = x_seq.shape[0]
    if T > 1 and x_seq.stride(0) == 0:
        y = layer(x_seq[0])
        return y.unsqueeze(0).expand(T, *y.shape)
    return layer(x_seq)
