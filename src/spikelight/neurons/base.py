"""Spiking neuron base: charge → fire → reset, single- and multi-step.

A single-state neuron is defined by its charge equation alone,
``h_t = charge(x_t, v_{t-1})``. Fire and reset are shared (SpikingJelly conventions):

    s_t = Θ(h_t - v_threshold)                               (surrogate backward)
    v_t = h_t·(1 - s_t) + v_reset·s_t        if v_reset is a number (hard reset)
    v_t = h_t - v_threshold·s_t              if v_reset is None    (soft reset)

``detach_reset`` cuts the gradient through the ``s_t`` used in the reset.
``h`` is the membrane potential before reset ("membrane" in every output).

``multi_step`` below is the reference. Neurons with a fused form (IF, LIF,
Leaky: ``_kernel_spec()``) run it instead on the ``backend`` chosen
(:mod:`spikelight.dynamics.dispatch`: ``auto | torch | fused | native | triton``), with identical
spikes; a neuron that only writes ``charge`` always runs the reference loop.

State is a NamedTuple: ``VState(v)`` here; neurons with more variables (ALIF:
``(v, a, ...)``) define their own and override :meth:`BaseNode.initial_state`
and :meth:`BaseNode.step`. Neuron arithmetic runs in at least fp32 whatever
the input dtype (under bf16/fp16 autocast the Linear/conv outputs are half,
and half-precision membranes flip spikes near the threshold); spikes come back
in the input dtype, membranes in the compute dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from spikelight.core.errors import ShapeError
from spikelight.core.surrogate import ATan, Surrogate
from spikelight.core.types import NeuronOutput, VState
from spikelight.dynamics import dispatch
from spikelight.dynamics.reference import reset_state
from spikelight.dynamics.spec import KernelSpec

__all__ = ["NeuronOutput", "VState", "BaseNode", "reset_state"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


class BaseNode(nn.Module):
    """Base spiking neuron. Single-state subclasses implement only :meth:`charge`.

    ``forward(x_seq, state=None)`` is multi-step: ``x_seq`` is ``[T, B, ...]`` and
    the state starts fresh every call unless passed in (no ``reset_net`` to
    forget); it returns :class:`NeuronOutput`. :meth:`single_step` takes and
    returns explicit state. Neurons whose reset is not the standard one
    override :meth:`reset`; neurons with several state variables override
    :meth:`initial_state` and :meth:`step`.

    Args:
        v_threshold: firing threshold.
        v_reset: reset potential (hard reset); ``None`` = soft reset by
            subtracting ``v_threshold``.
        surrogate: surrogate spike function (default ``ATan(alpha=2)``).
        detach_reset: detach the spike used in the reset from the graph.
        backend: how ``multi_step`` runs: ``auto`` (fastest available),
            ``fused`` (plain-PyTorch fused kernel), ``triton`` (CUDA kernel) or
            ``torch`` (the reference loop); see :mod:`spikelight.dynamics.dispatch`.
    """

    #: fire on ``h > v_threshold`` (snnTorch) instead of ``h >= v_threshold`` (SpikingJelly)
    strict_threshold: bool = False
    State = VState

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if v_reset is not None and not v_reset < v_threshold:
            raise ValueError(
                f"v_reset ({v_reset}) must be below v_threshold ({v_threshold}); "
                "use v_reset=null for soft reset"
            )
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = surrogate if surrogate is not None else ATan()
        if not isinstance(self.surrogate, Surrogate):
            raise TypeError(
                f"surrogate must be a spikelight.core.surrogate.Surrogate, got {type(self.surrogate).__name__}"
            )
        self.detach_reset = bool(detach_reset)
        self.backend = dispatch.check_backend(backend)
        self.record_states = False

    # --- the one method a new single-state neuron writes --------------------------
    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        """Membrane update before firing: ``h_t = f(x_t, v_{t-1})``."""
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------
    def initial_state(self, x: Tensor) -> Any:
        """Resting state shaped like one step of input: ``v_reset`` (or 0 for soft reset)."""
        return VState(torch.full_like(x, 0.0 if self.v_reset is None else self.v_reset))

    def fire(self, h: Tensor) -> Tensor:
        """Spikes Θ(h − v_threshold) with the surrogate's gradient."""
        return self.surrogate(h - self.v_threshold, strict=self.strict_threshold)

    def reset(self, h: Tensor, spike: Tensor) -> Tensor:
        """State after firing (hard or soft reset, see module docstring)."""
        return reset_state(h, spike, self.v_threshold, self.v_reset, self.detach_reset)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any, Tensor]:
        """charge → fire → reset for one step. Returns ``(spike, next_state, h)``."""
        h = self.charge(x, state.v)
        spike = self.fire(h)
        return spike, VState(self.reset(h, spike)), h

    def _as_state(self, state: Any, x: Tensor) -> Any:
        if state is None:
            return self.initial_state(x)
        if isinstance(state, Tensor):  # a bare membrane for single-state neurons
            if self.State is not VState:
                raise TypeError(f"{type(self).__name__} state is a {self.State.__name__}, not a tensor")
            state = VState(state)
        dtype = _compute_dtype(x.dtype)
        return type(state)(*(s.to(dtype) if s.is_floating_point() else s for s in state))

    def single_step(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One step. x: [B, ...]; state: NamedTuple (or a membrane tensor), None = fresh.

        Returns ``(spike [B, ...] in x's dtype, next_state)``.
        """
        xc = x.to(_compute_dtype(x.dtype))
        spike, state, _ = self.step(xc, self._as_state(state, xc))
        return spike.to(x.dtype), state

    # --- fast paths --------------------------------------------------------------
    _DYNAMICS = ("charge", "fire", "reset", "step", "initial_state", "_as_state")

    def _dynamics_of(self, owner: type) -> bool:
        """True if this neuron's dynamics are ``owner``'s (no subclass changed them)."""
        cls = type(self)
        return all(getattr(cls, name) is getattr(owner, name) for name in self._DYNAMICS)

    def _kernel_spec(self) -> KernelSpec | None:
        """The fast paths' description of this neuron (:mod:`spikelight.dynamics.spec`), or None
        (reference loop only)."""
        return None

    def _kernel_inputs(self, x: Tensor) -> dict[str, Tensor]:
        """Tensors a fast path needs besides the spec and the state (ALIF: β per neuron); x: one step."""
        return {}

    def multi_step(self, x_seq: Tensor, state: Any = None) -> NeuronOutput:
        """Run all steps. x_seq: [T, B, ...]; state: initial state or None (fresh)."""
        if x_seq.dim() < 2:
            raise ShapeError(
                f"{type(self).__name__} expects time-major input [T, B, ...], got shape {tuple(x_seq.shape)}"
            )
        spec = self._kernel_spec()
        # a single-variable neuron's states come from h through its own fire / reset (with their gradient, as the
        # loop's); the others' from the backend's per-step record (values only)
        record = self.record_states and self.State is not VState
        backend = dispatch.choose(self.backend, spec, self.surrogate, x_seq, type(self).__name__, record=record)
        if backend != "torch" and x_seq.shape[0] > 0:
            x0 = x_seq[0].to(_compute_dtype(x_seq.dtype))
            state = self._as_state(state, x0)
            inputs = self._kernel_inputs(x0)
            s, h, final, states = dispatch.guarded(self.backend, backend, type(self).__name__, lambda b: dispatch.run_neuron(
                b, spec, self.surrogate, x_seq, tuple(state), record, **inputs))  # fmt: skip
            if self.record_states and states is None:
                states = (self.reset(h, self.fire(h)),)
            state_type = type(state)
            return NeuronOutput(s.to(x_seq.dtype), h, state_type(*final), None if states is None else state_type(*states))
        # the reference loop
        xc = x_seq.to(_compute_dtype(x_seq.dtype))
        state = self._as_state(state, xc[0])
        spikes, membrane, history = [], [], []
        for x in xc:
            spike, state, h = self.step(x, state)
            spikes.append(spike)
            membrane.append(h)
            if self.record_states:
                history.append(state)
        states = type(state)(*(torch.stack(v) for v in zip(*history))) if history else None
        return NeuronOutput(torch.stack(spikes).to(x_seq.dtype), torch.stack(membrane), state, states)

    def forward(self, x_seq: Tensor, state: Any = None, result: NeuronOutput | None = None) -> NeuronOutput:
        """Multi-step call (what models use, so monitor hooks see spikes and membrane).

        x_seq [T, B, ...] → NeuronOutput(spikes, membrane [T, B, ...], state).
        ``result``: a NeuronOutput already computed for ``x_seq`` by a layer that steps
        the neuron itself (a recurrent layer); it is returned as is, so forward hooks and
        monitors see every neuron's whole sequence the same way.
        """
        if result is not None:
            return result
        return self.multi_step(x_seq, state)

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"v_reset={self.v_reset}"
        backend = "" if self.backend == "auto" else f", backend={self.backend!r}"
        return f"v_threshold={self.v_threshold}, {reset}, detach_reset={self.detach_reset}{backend}"
