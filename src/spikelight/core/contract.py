"""The trainer–model contract: what the :class:`~spikelight.train.module.SpikingClassifier`,
the synaptic-operation counter and the learning rules may ask of a model, a readout, a loss,
a layer and a learning rule — declared, not probed.

**Models** map ``x_seq [T, B, ...]`` to a :class:`~spikelight.core.types.SpikeOutput`. A model
family declares its :class:`ModelTraits` once, as a class attribute::

    class LSNN(nn.Module):
        traits = ModelTraits(output_spikes=False, ann_every_step=True)

:func:`traits_of` reads them; a model that declares none (a user's plain ``nn.Module``) gets
the defaults, which describe an ordinary feed-forward spiking classifier. Optional hooks are
methods, recognised by shape (``isinstance`` against a runtime-checkable Protocol):

- :class:`DataDrivenInit`: ``data_init(x_seq)`` run once, on the first training batch, while
  the model's ``data_initialized`` buffer is false (it is checkpointed: a resumed run skips it);
- :class:`HasParamGroups`: ``param_groups()``, the optimiser groups (an ``lr_scale`` key
  multiplies that group's learning rate); parameters in no group get one more group.

**Readouts and losses** declare what they read of the output as :class:`OutputNeeds`
(attribute ``needs``; :func:`needs_of` reads it, defaults when absent): ``spikes`` (refused
for models whose output layer does not spike) and ``membrane`` (its value depends on the output
membrane: training through it needs membrane gradients, refused for models that pass gradients
only at spike times).

**A loss on the readout's scores** (``loss=ce``) is a :class:`ReadoutLoss`: the trainer composes
it with the run's readout, ``loss = loss.bind(readout)``. ``bind`` returns a new loss and leaves
the unbound one as it was, so one configured loss can be bound to several readouts; the bound
loss's ``needs`` are its readout's.

**Layers** that compute with weights outside an ``nn.Linear`` / ``nn.Conv2d`` forward
(recurrent weights, a readout applied before a filter) report their own synaptic operations:
:class:`CountsOps`.

**Learning rules**: autograd (BPTT) needs nothing. An :class:`OnlineLearningRule` (e-prop)
computes the gradients itself in the training step; the trainer switches to manual
optimisation and calls ``attach`` once, then per batch ``gradients`` → ``apply`` → (clip) →
``before_step`` → optimiser step → ``after_step``.

Before this module these were loose attributes the trainer read with ``getattr``
(``output_spikes``, ``membrane_grad``, ``takes_labels``, ``ann_every_step`` on models;
``needs_spikes``, ``needs_membrane_grad``, ``reads_membrane`` on losses and readouts). An object
that declares no ``traits`` / ``needs`` is still read through those names, here and only here,
so models and losses written against the old docstrings keep their behaviour.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

__all__ = [
    "ModelTraits",
    "traits_of",
    "DataDrivenInit",
    "HasParamGroups",
    "OutputNeeds",
    "needs_of",
    "ReadoutLoss",
    "CountsOps",
    "OnlineLearningRule",
]


# --- models ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelTraits:
    """What a model family is, as far as training and counting are concerned.

    output_spikes: the output layer spikes (``SpikeOutput.spikes`` is set). False (the LSNN's
        leaky readout neurons): readouts and losses that read spikes are refused at build time.
    membrane_grad: gradients reach the network through the output membrane. False (event-driven
        BP: only through spike times): losses that train through the membrane, and regularisers
        on hidden spikes, are refused at build time.
    takes_labels: the training forward takes ``labels=y`` (event-driven label-spike injection);
        evaluation calls ``model(x_seq)``.
    ann_every_step: the equivalent ANN also runs at every step (a sequence model, an RNN), for
        the synaptic-operation comparison (:class:`~spikelight.synops.SynOpCounter`).
    """

    output_spikes: bool = True
    membrane_grad: bool = True
    takes_labels: bool = False
    ann_every_step: bool = False


def _declared(obj: object, name: str, kind: type) -> Any:
    """``obj.<name>`` if it is a ``kind``; None if absent; one line if it is something else."""
    value = getattr(obj, name, None)
    if value is None or isinstance(value, kind):
        return value
    raise TypeError(f"{type(obj).__name__}.{name} must be a {kind.__module__}.{kind.__name__}, "
                    f"got {type(value).__name__}")


def _loose(obj: object, names: dict[str, str]) -> dict[str, bool]:
    """The pre-contract attributes ``obj`` sets (old name → field), as field values (either of
    two old names that map to one field sets it)."""
    values: dict[str, bool] = {}
    for old, field in names.items():
        if hasattr(obj, old):
            values[field] = values.get(field, False) or bool(getattr(obj, old))
    return values


_MODEL_ATTRIBUTES = {f.name: f.name for f in dataclasses.fields(ModelTraits)}


def traits_of(model: nn.Module) -> ModelTraits:
    """The model's declared ``traits``; for one that declares none, the pre-contract attributes
    it sets (see the module docstring), the defaults for the rest."""
    declared = _declared(model, "traits", ModelTraits)
    return declared if declared is not None else ModelTraits(**_loose(model, _MODEL_ATTRIBUTES))


@runtime_checkable
class DataDrivenInit(Protocol):
    """A model initialised from data: ``data_init(x_seq)`` (under ``no_grad``) runs on the first
    training batch while ``data_initialized`` (a bool buffer, checkpointed) is false; it sets the
    buffer and returns the factors it applied (printed)."""

    data_initialized: Tensor

    def data_init(self, x_seq: Tensor) -> Sequence[float]: ...


@runtime_checkable
class HasParamGroups(Protocol):
    """A model with its own optimiser groups: dicts with ``params`` and optionally ``lr_scale``
    (a factor on the optimiser's learning rate for that group)."""

    def param_groups(self) -> list[dict[str, Any]]: ...


# --- readouts and losses --------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputNeeds:
    """What a readout or a loss reads of a model's :class:`~spikelight.core.types.SpikeOutput`.

    spikes: it reads ``SpikeOutput.spikes`` (refused for models with ``output_spikes=False``).
    membrane: its value depends on the output membrane. For a loss, training through it needs
        gradients through the membrane (refused for models with ``membrane_grad=False``); for a
        readout, so does ``loss=ce`` through it (predicting with it is fine).
    """

    spikes: bool = False
    membrane: bool = False


_NEEDS_ATTRIBUTES = {"needs_spikes": "spikes", "needs_membrane_grad": "membrane", "reads_membrane": "membrane"}


def needs_of(part: nn.Module) -> OutputNeeds:
    """The readout's / loss's declared ``needs``; for one that declares none, the pre-contract
    attributes it sets, else nothing."""
    declared = _declared(part, "needs", OutputNeeds)
    return declared if declared is not None else OutputNeeds(**_loose(part, _NEEDS_ATTRIBUTES))


@runtime_checkable
class ReadoutLoss(Protocol):
    """A loss on the run's readout scores (``loss=ce``). ``bind(readout)`` returns a new loss
    computed through ``readout`` (the unbound one is unchanged); ``readout`` is the readout it
    is bound to, None until then."""

    @property
    def readout(self) -> nn.Module | None: ...

    def bind(self, readout: nn.Module) -> nn.Module: ...


# --- layers ---------------------------------------------------------------------------------------
@runtime_checkable
class CountsOps(Protocol):
    """A layer that reports its synaptic operations itself: called from a forward hook with the
    call's ``args`` and output, it returns the call's totals ``(sops, macs, ann_macs)``."""

    def count_ops(self, args: tuple, output: Any) -> tuple[float, float, float]: ...


# --- learning rules -------------------------------------------------------------------------------
@runtime_checkable
class OnlineLearningRule(Protocol):
    """A rule that computes the gradients itself in the training step (no autograd backward).

    attach: at build time, check the run is one it can train (one ``ConfigError`` line) and set up.
    gradients: one pass over a batch; returns an object with ``out`` (the SpikeOutput, for the
        metrics), ``loss`` and ``grads``.
    apply: write ``grads`` into the parameters' ``.grad``.
    before_step / after_step: around the optimiser step (``after_step`` gets the learning rate).
    """

    def attach(self, model: nn.Module, readout: nn.Module, loss: nn.Module, regularizer: nn.Module | None) -> None:
        ...

    def gradients(self, model: nn.Module, x_seq: Tensor, y: Tensor, readout: nn.Module, loss: nn.Module,
                  regularizer: nn.Module | None = None) -> Any: ...

    def apply(self, model: nn.Module, grads: Any) -> Any: ...

    def before_step(self, model: nn.Module) -> None: ...

    def after_step(self, model: nn.Module, lr: float) -> None: ...
