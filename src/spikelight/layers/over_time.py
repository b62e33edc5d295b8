"""Running layers over time: stateless layers on time-major sequences, shared dropout, neuron factories.

x_seq is ``[T, B, ...]`` everywhere; a stateless layer runs once on the folded batch ``[T·B, ...]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from spikelight.neurons import BaseNode

__all__ = ["NeuronFactory", "make_neuron", "apply_over_time", "is_repeated", "OverTime", "SequenceLayer", "SharedDropout"]

NeuronFactory = Callable[[], BaseNode] | BaseNode


def make_neuron(neuron: NeuronFactory) -> BaseNode:
    """A fresh neuron from a factory (``functools.partial`` / Hydra ``_partial_``), or the instance itself."""
    node = neuron if isinstance(neuron, BaseNode) else neuron()
    if not isinstance(node, BaseNode):
        raise TypeError(f"neuron must build a spikelight BaseNode, got {type(node).__name__}")
    return node





def is_repeated(x_seq: Tensor) -> bool:
    """True if x_seq [T, B, ...] is one step repeated as a stride-0 view (``DirectEncoder``)."""
    return x_seq.dim() > 0 and x_seq.shape[0] > 1 and x_seq.stride(0) == 0


class SequenceLayer(nn.Module):
    """A layer that sees the whole sequence [T, B, ...] (not one sample per call).

    :func:`apply_over_time` passes it the sequence unchanged instead of
    folding time into the batch.
    """


class SharedDropout(SequenceLayer):
    """Dropout with one mask per neuron and sample, shared by all T steps.

    x_seq [T, B, ...] → same shape. A dropped neuron stays silent for the whole
    sample (SpikingJelly ``layer.Dropout`` in multi-step mode). Identity in eval mode.
    ``channelwise``: one mask per channel of a feature map [T, B, C, H, W] (all its
    positions dropped together, ``dropout2d`` over time; what the event-driven
    code of Zhu et al. 2022 does for conv layers); per neuron for [T, B, F].
    """

    def __init__(self, p: float = 0.5, channelwise: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.channelwise = bool(channelwise)

    def forward(self, x_seq: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x_seq
        like = x_seq[0]
        if self.channelwise and like.dim() > 2:
            like = like[(...,) + (slice(0, 1),) * (like.dim() - 2)]  # [B, C, 1, 1]
        mask = torch.empty_like(like).bernoulli_(1.0 - self.p).div_(1.0 - self.p)
        if is_repeated(x_seq):  # one step in, one step of work
            return (x_seq[0] * mask).unsqueeze(0).expand_as(x_seq)
        return x_seq * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}"


def _leaves(layer: nn.Module) -> Iterator[nn.Module]:
    """The modules a plain ``nn.Sequential`` chains, nested ones unrolled; any other module as is."""
    if type(layer) is nn.Sequential:
        for child in layer:
            yield from _leaves(child)
    else:
        yield layer


def _needs_every_step(layer: nn.Module) -> bool:
    """Would running this layer once on a repeated input differ from running it on all T·B samples?

    Training-mode BatchNorm updates its running statistics with the unbiased
    variance of T·B samples; per-step dropout draws a new mask at every step.
    """
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return layer.training and layer.track_running_stats
    if isinstance(layer, nn.modules.dropout._DropoutNd):
        return layer.training and layer.p > 0
    return False


def _fold(layer: nn.Module, x_seq: Tensor) -> Tensor:
    """layer on [T·B, ...], unfolded back to [T, B, ...]. ``nn.Linear`` maps the last
    dimension whatever the leading ones, so it gets [T, B, F] as is (hooks see time-major)."""
    if isinstance(layer, nn.Linear):
        return layer(x_seq)
    T, B = x_seq.shape[:2]
    return layer(x_seq.flatten(0, 1)).unflatten(0, (T, B))


def _apply_leaves(leaves: Iterable[nn.Module], x_seq: Tensor) -> Tensor:
    for leaf in leaves:
        if isinstance(leaf, SequenceLayer):
            x_seq = leaf(x_seq)
        elif is_repeated(x_seq) and not _needs_every_step(leaf):
            y = leaf(x_seq[0])
            x_seq = y.unsqueeze(0).expand(x_seq.shape[0], *y.shape)
        else:
            x_seq = _fold(leaf, x_seq)
    return x_seq


def apply_over_time(layer: nn.Module, x_seq: Tensor) -> Tensor:
    """Apply a stateless layer (or an ``nn.Sequential`` of them) to x_seq [T, B, ...].

    Each per-sample layer (conv, pooling, norm, flatten, ...) runs once on the
    time-folded batch [T·B, ...] and is unfolded to [T, B, ...]; a BatchNorm
    therefore normalises over T·B samples (SpikingJelly's ``SeqToANNContainer``).
    ``nn.Linear`` runs on [T, B, F] directly; a :class:`SequenceLayer` gets the
    sequence itself.

    If the input repeats over time as a stride-0 view (``DirectEncoder``), each
    layer runs on one step and its output is expanded: identical values and
    gradients (expand's backward sums over T), T times less work. The shortcut
    stops before the first layer for which one step is not the same as T
    (training-mode BatchNorm: its running variance counts T·B samples;
    per-step dropout), so it is exact, running statistics included.

    Containers other than a plain ``nn.Sequential`` are called as one layer.
    """
    return _apply_leaves(_leaves(layer), x_seq)


class OverTime(nn.Sequential, SequenceLayer):
    """An ``nn.Sequential`` of stateless layers that takes and returns sequences [T, B, ...]
    (:func:`apply_over_time`; SpikingJelly's ``SeqToANNContainer``).

    Forward hooks on the container (monitors) see time-major tensors; hooks on
    a conv / norm / pooling layer inside see the folded batch [T·B, ...].
    """

    def forward(self, x_seq: Tensor) -> Tensor:
        return _apply_leaves((leaf for child in self for leaf in _leaves(child)), x_seq)
