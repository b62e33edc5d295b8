"""Record what chosen layers see and emit: spikes, membrane, inputs, gradients.

Hooks exist only while a :class:`Monitor` is attached (``with Monitor(...)`` or
until :meth:`Monitor.remove`); with no monitor there is no hook and no cost.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from torch import Tensor, nn

from spikelight.core.types import NeuronOutput
from spikelight.neurons import BaseNode

__all__ = ["Monitor", "select_layers"]

KEYS = ("input", "output", "spikes", "membrane", "states", "grad_output", "grad_input")


def _glob(pattern: str) -> re.Pattern:
    """Module-name glob: ``*`` stays inside one dotted segment, ``**`` crosses them."""
    rx = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^.]*").replace("\0", ".*")
    return re.compile(rx.replace(r"\?", "[^.]"))


def select_layers(
    model: nn.Module, names: Iterable[str] | None = None, types: Iterable[type | str] | None = None
) -> dict[str, nn.Module]:
    """Sub-modules of ``model`` whose name matches one of ``names`` (exact or glob:
    ``"layers.*.neuron"`` = every ``layers.<i>.neuron``, ``"**.surrogate"`` crosses levels) or whose class is / is named one of ``types``. Both None:
    every spiking neuron (:class:`BaseNode`)."""
    names, types = list(names or []), list(types or [])
    patterns = [_glob(n) for n in names]
    if not names and not types:
        types = [BaseNode]
    chosen = {}
    for name, mod in model.named_modules():
        if not name:
            continue
        by_name = any(p.fullmatch(name) for p in patterns)
        by_type = any(isinstance(mod, t) if isinstance(t, type) else type(mod).__name__ == t for t in types)
        if by_name or by_type:
            chosen[name] = mod
    missing = [n for n, p in zip(names, patterns) if not any(p.fullmatch(c) for c in chosen)]
    if missing:
        available = [n for n, _ in model.named_modules() if n]
        raise ValueError(f"monitor: no layer named {missing}; layers are {available}")
    return chosen


class Monitor:
    """Record tensors of selected layers on every forward (and backward) call.

    Args:
        model: the network.
        names / types: which layers (see :func:`select_layers`).
        record: any of ``input``, ``output``, ``spikes``, ``membrane``,
            ``states`` (every state variable of a neuron after each step, stored
            under its name: ``v``, ``a`` for the adaptation of ALIF, ...),
            ``grad_output`` (dL/d output, for neurons dL/d spikes) and
            ``grad_input`` (dL/d input; only if the input requires grad).
        to_cpu: store detached CPU copies (default) rather than device tensors.

    ``monitor[name][key]`` is a list with one tensor per call, time-major
    ``[T, B, ...]`` for multi-step layers; :meth:`steps` splits it into T
    per-step tensors.
    """

    def __init__(
        self,
        model: nn.Module,
        names: Iterable[str] | None = None,
        types: Iterable[type | str] | None = None,
        record: Sequence[str] = ("spikes", "membrane"),
        to_cpu: bool = True,
    ) -> None:
        bad = [k for k in record if k not in KEYS]
        if bad:
            raise ValueError(f"monitor: unknown record keys {bad}; choose from {KEYS}")
        self.record = tuple(record)
        self.to_cpu = to_cpu
        self.layers = select_layers(model, names, types)
        self.records: dict[str, dict[str, list[Tensor]]] = defaultdict(lambda: defaultdict(list))
        self._handles = [mod.register_forward_hook(self._hook(name)) for name, mod in self.layers.items()]
        # neurons stack their per-step state only while someone records it
        self._state_neurons = [m for m in self.layers.values() if isinstance(m, BaseNode)] if "states" in record else []
        for m in self._state_neurons:
            m.record_states = True

    def _store(self, name: str, key: str, t: Tensor) -> None:
        t = t.detach()
        self.records[name][key].append(t.cpu() if self.to_cpu else t.clone())

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output) -> None:
            x = args[0] if args else None
            if isinstance(output, NeuronOutput):
                out, membrane = output.spikes, output.membrane
            else:
                out, membrane = output, None
            rec = self.record
            if "input" in rec and isinstance(x, Tensor):
                self._store(name, "input", x)
            if "output" in rec and isinstance(out, Tensor):
                self._store(name, "output", out)
            if "spikes" in rec and isinstance(output, NeuronOutput):
                self._store(name, "spikes", out)
            if "membrane" in rec and membrane is not None:
                self._store(name, "membrane", membrane)
            if "states" in rec and isinstance(output, NeuronOutput) and output.states is not None:
                for key, value in output.states._asdict().items():
                    self._store(name, key, value)
            if "grad_output" in rec and isinstance(out, Tensor) and out.requires_grad:
                out.register_hook(lambda g: self._store(name, "grad_output", g))
            if "grad_input" in rec and isinstance(x, Tensor) and x.requires_grad:
                x.register_hook(lambda g: self._store(name, "grad_input", g))

        return hook

    def __getitem__(self, name: str) -> dict[str, list[Tensor]]:
        if name not in self.layers:
            raise KeyError(f"monitor: {name!r} is not monitored; monitored layers are {list(self.layers)}")
        return self.records[name]

    def steps(self, name: str, key: str, call: int = -1) -> list[Tensor]:
        """The ``call``-th record of ``key`` split into its T time steps."""
        return list(self[name][key][call].unbind(0))

    def clear(self) -> None:
        """Forget what was recorded; keep monitoring."""
        self.records.clear()

    def remove(self) -> None:
        """Remove every hook this monitor added."""
        for h in self._handles:
            h.remove()
        self._handles = []
        for m in self._state_neurons:
            m.record_states = False
        self._state_neurons = []

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
