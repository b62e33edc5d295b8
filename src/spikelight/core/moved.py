"""Modules that moved when the package was layered (2026-12): their old dotted paths keep importing.

``import spikelight`` installs :class:`MovedModuleFinder`: ``from spikelight.surrogate import ATan``
(a user's script, an old notebook) gets today's :mod:`spikelight.core.surrogate` — the same module
object, so classes and isinstance checks are the same — with a ``DeprecationWarning`` naming the new
path. :data:`MODULES` is also what :mod:`spikelight.app.compat` maps a stored config's ``_target_``
strings with. Data and the finder only: no spikelight module is imported before it is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MODULES", "MovedModuleFinder", "install"]

#: old module path -> today's module path
MODULES: dict[str, str] = {
    "spikelight.surrogate": "spikelight.core.surrogate",
    "spikelight.errors": "spikelight.core.errors",
    "spikelight.models.output": "spikelight.core.types",
    "spikelight.kernels": "spikelight.dynamics.dispatch",
    "spikelight.kernels.spec": "spikelight.dynamics.spec",
    "spikelight.kernels.buffers": "spikelight.dynamics.buffers",
    "spikelight.kernels.recurrent": "spikelight.dynamics.fused.recurrent",
    "spikelight.kernels.recurrent_steps": "spikelight.dynamics.fused.steps",
    "spikelight.kernels.torch_fused": "spikelight.dynamics.fused.leaky",
    "spikelight.kernels.dual_exp_fused": "spikelight.dynamics.fused.dual_exp",
    "spikelight.kernels.cpu_native": "spikelight.dynamics.native.library",
    "spikelight.kernels.spike_linear": "spikelight.dynamics.native.spike_linear",
    "spikelight.kernels.triton_neurons": "spikelight.dynamics.triton.neurons",
    "spikelight.kernels.triton_recurrent": "spikelight.dynamics.triton.recurrent",
    "spikelight.event_driven": "spikelight.layers.event_driven",
    "spikelight.event_driven.functions": "spikelight.layers.event_driven.functions",
    "spikelight.event_driven.layers": "spikelight.layers.event_driven.synapses",
    "spikelight.event_driven.gradient_flow": "spikelight.train.gradient_flow",
    "spikelight.lit": "spikelight.train.module",
    "spikelight.callbacks": "spikelight.train.callbacks",
    "spikelight.faults": "spikelight.train.faults",
    "spikelight.loggers": "spikelight.train.loggers",
    "spikelight.visualize": "spikelight.train.figures",
    "spikelight.cli": "spikelight.app.cli",
    "spikelight.checks": "spikelight.app.checks",
    "spikelight.ckpt": "spikelight.app.ckpt",
    "spikelight.rundir": "spikelight.app.rundir",
    "spikelight.distributed": "spikelight.app.distributed",
    "spikelight.trust": "spikelight.app.trust",
    "spikelight.console": "spikelight.app.console",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as today's module (see the module docstring)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        if hasattr(module, "__path__") or not any(old.startswith(spec.name + ".") for old in MODULES):
            return module
        # an old package whose contents are now one module (spikelight.kernels): a package view of it, so
        # its old submodules (spikelight.kernels.spec, ...) import too
        view = types.ModuleType(spec.name, module.__doc__)
        view.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        view.__path__ = []
        return view

    def exec_module(self, module) -> None:
        """Nothing to run: the module is today's, already executed."""


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): before the path finder, which would otherwise load an
    old submodule of a package that moved whole (spikelight.event_driven.functions) a second time."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
