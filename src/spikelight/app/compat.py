"""Configs written by earlier versions: their ``_target_`` strings mapped to today's modules.

A checkpoint stores its run config (``hyper_parameters.config``), and ``eval.py`` /
``python -m spikelight.plot`` rebuild the model from it. Modules that moved keep working
through :data:`MOVED`: the old path on the left, where it lives now on the right — the moved
modules of :data:`spikelight.core.moved.MODULES` (which old imports in Python go through too) and
the classes that left their module (the layered package of 2026-12;
``tests/integration/test_legacy_checkpoints.py`` evaluates checkpoints written before it).
"""

from __future__ import annotations

from typing import Any

from spikelight.core.moved import MODULES

__all__ = ["MOVED", "upgrade_target", "upgrade_targets"]

MOVED: dict[str, str] = {
    **MODULES,
    "spikelight.models.lsnn.RecurrentSpikingLayer": "spikelight.layers.recurrent.RecurrentSpikingLayer",
    "spikelight.models.lsnn.LeakyReadout": "spikelight.layers.recurrent.LeakyReadout",
}
_LONGEST_FIRST = sorted(MOVED, key=len, reverse=True)


def upgrade_target(target: str) -> str:
    """Today's dotted path for a ``_target_`` written by an earlier version (unchanged if it did not move)."""
    for old in _LONGEST_FIRST:
        if target == old or target.startswith(old + "."):
            return MOVED[old] + target[len(old):]
    return target


def upgrade_targets(node: Any) -> Any:
    """A copy of a plain (JSON-like) config with every ``_target_`` upgraded."""
    if isinstance(node, dict):
        return {k: upgrade_target(v) if k == "_target_" and isinstance(v, str) else upgrade_targets(v)
                for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [upgrade_targets(v) for v in node]
    return node
