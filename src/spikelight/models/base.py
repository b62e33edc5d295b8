"""What the model families share: the layer-list parser, input checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from spikelight.core.errors import ConfigError, ShapeError

__all__ = ["check_layer_geometry", "parse_layer_list", "check_features"]

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
