"""Which ``_target_``s a config from outside the project may name.

``conf/`` is the user's own code and trusted. Two sources are not:

- ``_target_``s typed on the command line (``+callbacks.x._target_=...``, a
  ``{_target_: ...}`` value), often pasted from somewhere;
- the config stored inside a checkpoint: ``eval.py`` and ``python -m
  spikelight.app.plot`` rebuild the model from it, so a downloaded checkpoint could
  name any callable (``os.system``) even though its tensors load with
  ``weights_only=True``.

Both may only name spikelight and the parts of the libraries it configures
(:data:`TRUSTED`); anything else is refused in one line that says how to opt in:
``SPIKELIGHT_TRUSTED_TARGETS=mypackage,other.module.Class`` (dotted prefixes,
comma-separated; ``*`` trusts everything). Hydra's own blocklist of dangerous
targets still applies on top. This is defence in depth, not a sandbox: a trusted
class can still be handed odd arguments.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from spikelight.core.errors import UntrustedTargetError

__all__ = ["TRUSTED", "ENV", "is_trusted", "find_targets", "check_trusted"]

ENV = "SPIKELIGHT_TRUSTED_TARGETS"

# dotted prefixes: spikelight, and the parts of torch / Lightning / torchvision /
# torchmetrics / Hydra plugins that spikelight's configs build (layers, optimisers,
# schedulers, transforms, metrics, callbacks, loggers, strategies, sweepers, launchers).
# Not torch.hub / torch.utils.cpp_extension / torch.load and the like: they run code.
TRUSTED = (
    "spikelight",
    "torch.nn",
    "torch.optim",
    "torchvision.transforms",
    "torchmetrics",
    "lightning.pytorch.Trainer",
    "lightning.Trainer",
    "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers",
    "lightning.pytorch.strategies",
    "lightning.pytorch.plugins",
    "lightning.pytorch.accelerators",
    "lightning.pytorch.profilers",
    "lightning.fabric.plugins",
    "hydra_plugins",
    "hydra._internal.core_plugins",
    "optuna.samplers",
    "optuna.pruners",
)


def _under(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def _opted_in() -> list[str]:
    return [p.strip() for p in os.environ.get(ENV, "").split(",") if p.strip()]


def is_trusted(target: str) -> bool:
    """Is ``target`` (a dotted name) under :data:`TRUSTED` or a prefix in ``$SPIKELIGHT_TRUSTED_TARGETS``?"""
    extra = _opted_in()
    if "*" in extra:
        return True
    return any(_under(target, p) for p in (*TRUSTED, *extra))


def find_targets(node: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(key, _target_)`` in a nested mapping / list (plain or OmegaConf) or a
    Hydra sweep value (anything with a ``list`` of options)."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            where = f"{key}.{k}" if key else str(k)
            if k == "_target_" and isinstance(v, str):
                yield where, v
            else:
                yield from find_targets(v, where)
    elif isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
        for i, v in enumerate(node):
            yield from find_targets(v, f"{key}[{i}]")
    elif hasattr(node, "list") and isinstance(node.list, list):  # Hydra ChoiceSweep
        for v in node.list:
            yield from find_targets(v, key)


def check_trusted(node: Any, source: str, key: str = "") -> None:
    """Raise :class:`UntrustedTargetError` for the first untrusted ``_target_`` in ``node``.

    ``source`` says where the config came from (``the command line``, ``the config
    stored in x.ckpt``); ``key`` is the path of ``node`` in the whole config.
    """
    for where, target in find_targets(node, key):
        if not is_trusted(target):
            raise UntrustedTargetError(
                f"{where}={target} from {source} is outside spikelight and the libraries it configures; "
                f"if you trust it, allow it with {ENV}={target}"
            )
