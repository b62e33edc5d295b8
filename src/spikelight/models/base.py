"""What the model families share: the conv/fc layer spec keys and geometry, the layer-list parser,
input checks. (What a family tells the trainer is its ``traits``: :mod:`spikelight.core.contract`.)"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from spikelight.core.errors import ConfigError, ShapeError
from spikelight.layers.over_time import (  # noqa: F401  (lived here before the layered package; kept importable)
    NeuronFactory,
    OverTime,
    SequenceLayer,
    SharedDropout,
    apply_over_time,
    is_repeated,
    make_neuron,
)

__all__ = [
    "ConvFcSpec", "check_layer_geometry", "parse_layer_list", "check_in_shape", "check_input_shape", "check_features",
    "check_own_neurons",
]


@dataclass(frozen=True)
class ConvFcSpec:
    """The keys every conv/fc layer spec starts with (``model=conv``, ``model=event_driven``).
    Exactly one of ``conv`` (output channels) / ``fc`` (output features); kernel, stride,
    padding: conv geometry (padding defaults to kernel // 2, "same" for odd kernels).
    A family's spec adds its own keys, ``dropout`` and ``repeat`` among them."""

    conv: int | None = None
    fc: int | None = None
    kernel: int = 3
    stride: int = 1
    padding: int | None = None

    def geometry(self, shape: tuple[int, ...], i: int, pool: int | None) -> tuple[int, int, tuple[int, ...]]:
        """This layer (``model.layers[i]``) on one input sample of ``shape``, its spikes pooled by
        ``pool`` (or None): (its inputs, channels for conv or flattened features for fc; conv
        padding, 0 for fc; its output shape). One line for a conv after fc or a map pooled away."""
        if self.conv is None:
            return math.prod(shape), 0, (self.fc,)
        if len(shape) != 3:
            raise ConfigError(f"model.layers[{i}]: conv after fc; put every conv layer before the fc layers")
        c, h, w = shape
        pad = self.kernel // 2 if self.padding is None else self.padding
        h, w = ((d + 2 * pad - self.kernel) // self.stride + 1 for d in (h, w))
        if pool:
            h, w = h // pool, w // pool
        if h <= 0 or w <= 0:
            raise ShapeError(
                f"model.layers[{i}] shrinks the {list(shape)} input to {h}x{w}; "
                "use fewer pools / more padding, or a larger input"
            )
        return c, pad, (self.conv, h, w)


def check_layer_geometry(spec: Any, where: str) -> None:
    """The checks every conv/fc layer spec shares (its fields conv, fc, kernel, stride, repeat, dropout):
    one ConfigError line naming ``where``."""
    if (spec.conv is None) == (spec.fc is None):
        raise ConfigError(f"{where}: give exactly one of conv (channels) or fc (features)")
    width = spec.conv if spec.conv is not None else spec.fc
    if width <= 0 or spec.kernel <= 0 or spec.stride <= 0 or spec.repeat <= 0:
        raise ConfigError(f"{where}: conv/fc, kernel, stride and repeat must be positive")
    if not 0.0 <= spec.dropout < 1.0:
        raise ConfigError(f"{where}: dropout must be in [0, 1), got {spec.dropout}")


def parse_layer_list(
    layers: Sequence[Any], spec_cls: type, example: str, first_of_repeat: Mapping[str, Any],
    refused: Mapping[str, str] | None = None,
) -> list[Any]:
    """``model.layers`` entries (config dicts or ``spec_cls`` dataclasses) → specs with ``repeat`` unrolled;
    the copies before the last get ``first_of_repeat`` (no pooling / dropout), each is ``check``ed.
    ``refused``: key → one-line reason it is not a key of this family. Bad entries: one ConfigError line."""
    keys = [f.name for f in dataclasses.fields(spec_cls)]
    specs: list[Any] = []
    for i, entry in enumerate(layers):
        where = f"model.layers[{i}]"
        if isinstance(entry, spec_cls):
            spec = entry
        else:
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where} must be a mapping like {example}, got {entry!r}")
            for key, why in (refused or {}).items():
                if key in entry:
                    raise ConfigError(f"{where}: {why}")
            unknown = sorted(set(entry) - set(keys))
            if unknown:
                raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {keys}")
            spec = spec_cls(**entry)
        spec.check(where)
        last = dataclasses.replace(spec, repeat=1)
        specs.extend([dataclasses.replace(last, **first_of_repeat)] * (spec.repeat - 1) + [last])
    return specs


def check_in_shape(in_shape: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """``model.in_shape`` ([C, H, W] or [F]) as ints, and a positive ``num_classes``: one ConfigError line."""
    shape = tuple(int(s) for s in in_shape)
    if len(shape) not in (1, 3) or min(shape) <= 0:
        raise ConfigError(f"model.in_shape must be [C, H, W] or [F], got {list(shape)}")
    if num_classes <= 0:
        raise ConfigError(f"num_classes must be positive, got {num_classes}")
    return shape


def _without_time_axis(x_seq: Tensor, model: str, want: str) -> ShapeError:
    """The one line for a batch given without its time axis ([B, ...] where [T, B, ...] is expected)."""
    shape = tuple(x_seq.shape)
    return ShapeError(
        f"{model} expects time-major input [T, B, {want}], got {list(shape)}: a batch of {shape[0]} samples "
        f"without a time axis? Encode it (e.g. PoissonEncoder(T=...)(x) gives [T, {', '.join(map(str, shape))}]) "
        f"or add one step with x.unsqueeze(0)"
    )


def check_input_shape(x_seq: Tensor, in_shape: tuple[int, ...], model: str) -> None:
    """x_seq must be [T, B, *in_shape]; one ShapeError line naming the fix otherwise."""
    if x_seq.dim() != 2 + len(in_shape) or tuple(x_seq.shape[2:]) != in_shape:
        if tuple(x_seq.shape[1:]) == tuple(in_shape):
            raise _without_time_axis(x_seq, model, ", ".join(map(str, in_shape)))
        raise ShapeError(
            f"{model} expects input [T, B, {', '.join(map(str, in_shape))}], got {tuple(x_seq.shape)}; "
            f"set model.in_shape={list(x_seq.shape[2:])}"
        )


def check_own_neurons(neurons: Iterable[nn.Module], model: str) -> None:
    """Every layer has its own neuron (its state and settings): one line if one instance was shared."""
    neurons = list(neurons)
    if len({id(n) for n in neurons}) != len(neurons):
        raise TypeError(f"{model} needs a neuron factory (Hydra `_partial_: true`), not one shared instance")


def check_features(x_seq: Tensor, expected: int, model: str) -> Tensor:
    """Flatten [T, B, ...] to [T, B, F] and check F; raise one readable line if it is wrong."""
    per_sample = math.prod(x_seq.shape[1:])
    # [B, F] or an image batch [B, 1, H, W] (its channel would pass for a batch of 1)
    if per_sample == expected and (x_seq.dim() < 3 or (x_seq.dim() == 4 and x_seq.shape[1] == 1)):
        raise _without_time_axis(x_seq, model, f"{expected} features (any shape)")
    if x_seq.dim() < 3:
        raise ShapeError(f"{model} expects time-major input [T, B, ...], got shape {tuple(x_seq.shape)}")
    flat = x_seq.flatten(2)
    if flat.shape[-1] != expected:
        if per_sample == expected:
            raise _without_time_axis(x_seq, model, f"{expected} features (any shape)")
        raise ShapeError(
            f"{model} expects {expected} input features per step, got {flat.shape[-1]} "
            f"(input shape {tuple(x_seq.shape)}); set model.in_features={flat.shape[-1]}"
        )
    return flat
