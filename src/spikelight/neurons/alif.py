"""Adaptive LIF (ALIF): spike-frequency adaptation through an adaptive threshold (LSNN, Bellec et al.).

Equations (one step, the LIF of :class:`~spikelight.neurons.LIFNode` plus a threshold that rises
after spikes and decays back):

    h_t = LIF charge(x_t, v_{t-1})                 (tau, decay_input, leak toward v_reset)
    A_t = v_th + β_j · a_{t-1}                      (adaptive threshold)
    s_t = Θ(h_t − A_t)                              (0 during the refractory period)
    v_t = reset(h_t, s_t)                           (hard to v_reset, or soft: h_t − v_th·s_t)
    a_t = ρ·a_{t-1} + (1 − ρ)·s_t,  ρ = exp(−1/tau_adapt)

``a`` is a low-pass filtered spike train (a firing-rate estimate), so β is the
threshold increase at a sustained rate of one spike per step: β and tau_adapt
mean what they mean in LSNN-official (``b ← ρb + (1−ρ)z``, ``A = thr + β·b``).
With β = 0 (or ``adaptive_fraction=0``) the neuron *is* :class:`LIFNode`: same
charge, fire and reset, spike for spike.

Conversions (time step dt = 1; time constants in steps):
- LSNN-official ``v ← αv + (1−α)I − A·z_prev`` with α = exp(−1/τ_m): our charge with
  ``decay_input=True`` and ``tau = 1/(1 − exp(−1/τ_m))`` (20 ms → 20.50) is exactly
  ``αv + (1−α)I``. Differences that remain: LSNN-official fires from the previous
  step's potential and subtracts the adaptive threshold A one step late; we fire from
  this step's potential and subtract v_th (the e-prop code's choice).
- e-prop code (EligALIF: ``v_t = αv_{t−1} + I_t − v_th z_{t−1}``, ``b_t = ρb_{t−1} + z_{t−1}``,
  ``A = v_th + β_e·b``): ``β_e = β(1 − ρ)``; ``decay_input=False``.
- LSNN's pseudo-derivative 0.3·max(0, 1 − |(v − A)/v_th|): ``surrogate=triangle
  surrogate.alpha=1 surrogate.dampening=0.3 neuron.normalize=true`` (spike on
  ``(h − A)/v_th``).

State: :class:`ALIFState` ``(v, a, ref)``; ``ref`` counts the refractory steps left.

``backend`` (``auto | torch | fused | native | triton``, :mod:`spikelight.dynamics.dispatch`): the
fast paths run the sequence as the recurrent layer's autograd Function without W_rec
(:mod:`spikelight.dynamics.fused.recurrent`); ``torch`` the reference loop of :meth:`step`
(:mod:`spikelight.dynamics.reference`); spikes are identical.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.reference import adapt, adaptive_threshold, lif_charge, refractory_gate
from spikelight.dynamics.spec import ALIFSpec, LIFSpec
from spikelight.neurons.base import BaseNode
from spikelight.neurons.if_lif import resolve_tau_beta

__all__ = ["ALIFNode", "ALIFState"]


class ALIFState(NamedTuple):
    """ALIF state, each [B, ...]: membrane after reset, adaptation, refractory steps left."""

    v: Tensor
    a: Tensor
    ref: Tensor


class ALIFNode(BaseNode):
    """Adaptive LIF / SFA neuron (``neuron=sfa``, alias ``alif``). Equations: module docstring.

    Args:
        tau: membrane time constant in steps (> 1).
        tau_adapt: adaptation time constant in steps (> 0).
        beta: adaptation strength: threshold increase at a rate of one spike per step (>= 0).
        adaptive_fraction: fraction of neurons that adapt (the last ones along the feature
            axis; LSNN's 120 LIF + 100 ALIF is 100/220); the others have β = 0.
        refractory: steps after a spike during which the neuron cannot fire (0 = none).
        normalize: fire on ``(h − A)/v_th`` instead of ``h − A`` (LSNN / e-prop scaling of the
            surrogate's input).
        decay_input, v_threshold, v_reset, surrogate, detach_reset, backend: as :class:`LIFNode`
            (no Triton kernel: ``auto`` runs the fused plain-PyTorch form on every device).
    """

    State = ALIFState

    def __init__(
        self,
        tau: float = 20.0,
        tau_adapt: float = 200.0,
        beta: float = 1.8,
        adaptive_fraction: float = 1.0,
        refractory: int = 0,
        normalize: bool = False,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, backend)
        if not v_threshold > 0:
            raise ValueError(f"ALIF v_threshold must be > 0, got {v_threshold}")
        self.tau = resolve_tau_beta("ALIF", tau, None, default_tau=20.0)
        for name, val in (("tau_adapt", tau_adapt), ("beta", beta), ("adaptive_fraction", adaptive_fraction)):
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ValueError(f"ALIF {name} must be a number, got {val!r}")
        if not tau_adapt > 0:
            raise ValueError(f"ALIF tau_adapt must be > 0 (steps), got {tau_adapt}")
        if beta < 0:
            raise ValueError(f"ALIF beta (adaptation strength) must be >= 0, got {beta}")
        if not 0.0 <= adaptive_fraction <= 1.0:
            raise ValueError(f"ALIF adaptive_fraction must be in [0, 1], got {adaptive_fraction}")
        if isinstance(refractory, bool) or not isinstance(refractory, int) or refractory < 0:
            raise ValueError(f"ALIF refractory must be a whole number of steps >= 0, got {refractory!r}")
        self.tau_adapt = float(tau_adapt)
        self.beta = float(beta)
        self.adaptive_fraction = float(adaptive_fraction)
        self.refractory = refractory
        self.normalize = bool(normalize)
        self.decay_input = bool(decay_input)
        self._beta_cache: tuple | None = None  # (key, β per neuron): built once, not every step

    @property
    def rho(self) -> float:
        """Adaptation decay per step, exp(−1/tau_adapt)."""
        return math.exp(-1.0 / self.tau_adapt)

    def beta_per_neuron(self, n: int, like: Tensor) -> Tensor:
        """β for each of the ``n`` neurons of the last axis: 0 for the first (non-adaptive) ones."""
        key = (n, like.dtype, like.device, self.beta, self.adaptive_fraction)
        cached = self._beta_cache
        if cached is None or cached[0] != key:
            n_regular = round((1.0 - self.adaptive_fraction) * n)
            beta = torch.full((n,), self.beta, dtype=like.dtype, device=like.device)
            beta[:n_regular] = 0.0
            cached = self._beta_cache = (key, beta)
        return cached[1]

    def initial_state(self, x: Tensor) -> ALIFState:
        v0 = torch.full_like(x, 0.0 if self.v_reset is None else self.v_reset)
        return ALIFState(v0, torch.zeros_like(x), torch.zeros_like(x))

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        return lif_charge(x, v, self.tau, self.decay_input, self.v_reset)

    def threshold(self, state: ALIFState) -> Tensor:
        """Adaptive threshold A = v_th + β·a, [B, ...]."""
        return adaptive_threshold(state.a, self.beta_per_neuron(state.a.shape[-1], state.a), self.v_threshold)

    def step(self, x: Tensor, state: ALIFState) -> tuple[Tensor, ALIFState, Tensor]:
        h = self.charge(x, state.v)
        over = h - self.threshold(state)
        spike = self.surrogate(over / self.v_threshold if self.normalize else over)
        spike, ref = refractory_gate(spike, state.ref, self.refractory) if self.refractory else (spike, state.ref)
        return spike, ALIFState(self.reset(h, spike), adapt(state.a, spike, self.rho), ref), h

    # --- fused kernel ------------------------------------------------------------------
    def _kernel_spec(self) -> ALIFSpec | None:
        own = ("threshold", "beta_per_neuron", "rho")
        if not self._dynamics_of(ALIFNode) or any(getattr(type(self), n) is not getattr(ALIFNode, n) for n in own):
            return None
        lif = LIFSpec(self.tau, self.decay_input, self.v_threshold, self.v_reset, self.detach_reset)
        adaptive = self.beta > 0 and self.adaptive_fraction > 0
        return ALIFSpec(lif, self.rho, self.refractory, self.normalize, adaptive)

    def _kernel_inputs(self, x: Tensor) -> dict[str, Tensor]:
        return {"beta": self.beta_per_neuron(x.shape[-1], x)}

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, tau_adapt={self.tau_adapt}, beta={self.beta}, "
            f"adaptive_fraction={self.adaptive_fraction}, refractory={self.refractory}, "
            f"normalize={self.normalize}, decay_input={self.decay_input}, " + super().extra_repr()
        )
