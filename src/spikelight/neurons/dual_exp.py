"""Dual-exponential (current-based) neuron of event-driven backpropagation (Zhu et al., NeurIPS 2022).

Equations (one step, time constants in steps; θ_m = 1/τ_m, θ_s = 1/τ_s, θ_g = 1/τ_grad):

    m_t = (m_{t-1} + x_t)(1 − θ_m)          slow synaptic trace
    s_t = (s_{t-1} + x_t)(1 − θ_s)          fast synaptic trace
    g_t = (g_{t-1} + x_t)(1 − θ_g)          gradient trace (read only by the event-driven backward)
    u_t = (m_t − s_t) · θ_s / (θ_s − θ_m)    membrane potential
    o_t = Θ(u_t − ϑ)                        (fires on u ≥ ϑ)
    on a spike m, s and g are all set to 0  (reset to zero, which also erases the synaptic current)

So u_t = Σ_{t'} x_{t'} ε(t − t' + 1) over the inputs since the last spike, with the
dual-exponential kernel ε(k) = θ_s/(θ_s − θ_m)·[(1 − θ_m)^k − (1 − θ_s)^k] (ε(1) = θ_s).
This is the authors' forward (``layers/functions.py``; zhuyaoyu/SNN-event-driven-learning).

Used alone (``neuron=dual_exp`` in any model) it trains with surrogate-gradient BPTT like
every other neuron; ``model=event_driven`` runs the same update inside its event-driven
``autograd.Function`` (:mod:`spikelight.layers.event_driven`), which reads τ_m, τ_s, τ_grad
and ϑ from this module.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.reference import DualExpState, dual_exp_update
from spikelight.dynamics.spec import DualExpSpec
from spikelight.neurons.base import BaseNode

__all__ = ["DualExpNode", "DualExpState", "dual_exp_update"]


class DualExpNode(BaseNode):
    """Dual-exponential neuron (``neuron=dual_exp``). Equations: module docstring.

    Args:
        tau_m: slow (membrane) time constant in steps (> 1).
        tau_s: fast (synaptic) time constant in steps (> 1, ≠ tau_m).
        tau_grad: time constant of the exponential gradient kernel of the event-driven
            backward (``grad_type=exponential``; > 1). It does not change the forward.
        v_threshold: firing threshold ϑ (> 0; 1 in every published config).
        surrogate: surrogate spike function for BPTT use (the event-driven model ignores it).
        detach_reset: detach the spike used in the reset from the graph (BPTT use).
        backend: ``auto`` / ``fused`` (all T steps as one autograd Function, same spikes,
            :mod:`spikelight.dynamics.fused.dual_exp`) or ``torch`` (the reference loop).

    State: :class:`DualExpState` ``(m, s, g)``; ``membrane`` in outputs is u before reset.
    """

    State = DualExpState

    def __init__(
        self,
        tau_m: float = 5.0,
        tau_s: float = 3.0,
        tau_grad: float = 2.5,
        v_threshold: float = 1.0,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        backend: str = "auto",
    ) -> None:
        if not v_threshold > 0:
            raise ValueError(f"dual_exp v_threshold must be > 0, got {v_threshold}")
        super().__init__(v_threshold, 0.0, surrogate, detach_reset, backend)
        for name, val in (("tau_m", tau_m), ("tau_s", tau_s), ("tau_grad", tau_grad)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 1:
                raise ValueError(f"dual_exp {name} must be a number of steps > 1, got {val!r}")
        if tau_m == tau_s:
            raise ValueError(f"dual_exp needs tau_m != tau_s (the kernel divides by their difference), got {tau_m}")
        self.tau_m, self.tau_s, self.tau_grad = float(tau_m), float(tau_s), float(tau_grad)

    @property
    def thetas(self) -> tuple[float, float, float]:
        """(θ_m, θ_s, θ_g) = (1/τ_m, 1/τ_s, 1/τ_grad)."""
        return 1.0 / self.tau_m, 1.0 / self.tau_s, 1.0 / self.tau_grad

    def initial_state(self, x: Tensor) -> DualExpState:
        return DualExpState(torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x))

    def step(self, x: Tensor, state: DualExpState) -> tuple[Tensor, DualExpState, Tensor]:
        traces, u = dual_exp_update(x, state, *self.thetas)
        spike = self.fire(u)
        keep = 1.0 - (spike.detach() if self.detach_reset else spike)
        return spike, DualExpState(*(v * keep for v in traces)), u

    # --- fused kernel ------------------------------------------------------------------
    def _kernel_spec(self) -> DualExpSpec | None:
        if not self._dynamics_of(DualExpNode) or type(self).thetas is not DualExpNode.thetas:
            return None
        return DualExpSpec(*self.thetas, self.v_threshold, self.detach_reset, self.strict_threshold)

    def extra_repr(self) -> str:
        backend = "" if self.backend == "auto" else f", backend={self.backend!r}"
        return (
            f"tau_m={self.tau_m}, tau_s={self.tau_s}, tau_grad={self.tau_grad}, "
            f"v_threshold={self.v_threshold}, reset=all traces to 0, detach_reset={self.detach_reset}{backend}"
        )
