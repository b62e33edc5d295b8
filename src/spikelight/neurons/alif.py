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

Conventions (``convention``; the parameters keep their meaning, only the order of fire /
reset / normalisation changes; every one runs on the reference loop and the fast paths):

- ``spikelight`` (default, SpikingJelly's order): the equations above; ``normalize`` chooses
  ``(h − A)/v_th`` or ``h − A``; the reset ``v_th·s_t`` is subtracted *before* the next leak,
  so the next step loses ``leak·v_th``.
- ``eprop`` (the e-prop code's ``EligALIF``, IGITUGraz/eligibility_propagation):
  ``v_t = α·v_{t−1} + I_t − v_th·z_{t−1}`` (the reset after the leak), ``b_t = ρ·b_{t−1} + z_{t−1}``,
  ``z_t = H((v_t − v_th − β_e·b_t)/v_th)`` (strictly greater). Here the soft reset subtracts
  ``v_th/leak`` from h, so the next charge loses exactly v_th; ``h`` is the code's ``v``.
  Requires a soft reset (``v_reset=None``); always normalised.
- ``lsnn_official`` (LSNN-official ``ALIF.__call__`` + ``LIF_dynamic``):
  ``b_t = ρ·b_{t−1} + (1−ρ)·z_{t−1}``, ``A_t = v_th + β·b_t``,
  ``v_t = decay·v_{t−1} + (1−decay)·I_t − A_t·z_{t−1}``, ``z_t = H((v_{t−1} − A_t)/A_t)``:
  the spike comes from the *previous* potential, the reset subtracts the *adaptive* threshold
  one step late, the surrogate sees the value normalised by A_t. ``h`` is the code's ``v_t``.
  Requires a soft reset; two spikes in a row are possible unless ``refractory >= 1``.

Conversions (time step dt = 1; time constants in steps; measured in
``tests/equivalence/test_conventions.py``, float64: spikes equal, gradients within 1e-6):

- membrane: both codes decay by ``α = exp(−1/τ_m)``; ours by ``1 − 1/tau``: ``tau = 1/(1 − exp(−1/τ_m))``
  (τ_m 20 ms → 20.504166). LSNN-official scales the input by ``(1 − α)``: ``decay_input=True``;
  the e-prop code does not: ``decay_input=False``.
- adaptation: LSNN-official's β and ρ are ours; the e-prop code's ``b`` sums spikes without
  ``(1 − ρ)``: its ``β_e = β·(1 − ρ)`` (``beta = β_e/(1 − exp(−1/τ_a))``).
- refractory: LSNN-official's ``n_refractory`` = ours; the e-prop code's ``n_ref`` = ours + 1
  (its counter ``r ← clip(r + n_ref·z − 1, 0, n_ref)`` blocks ``n_ref − 1`` steps).
- pseudo-derivative ``0.3·max(0, 1 − |v_scaled|)``: ``surrogate=triangle surrogate.alpha=1
  surrogate.dampening=0.3``.
- Norse 1.1 ``LSNNRecurrent`` (``functional/lsnn.py::lsnn_step``; threshold ``v − b``, b relaxing to v_th
  and jumping by β_n·z, Euler LIF, hard reset with a detached z) differs twice: its membrane integrates
  the *previous* step's synaptic current (input reaches v one step late, recurrent spikes two), and the
  adaptation jump uses ``z.detach()`` (no gradient through the adaptation); and its synaptic current is
  low-pass filtered (``tau_syn_inv`` 200 /s at dt 1 ms by default: 0.8 of it carried to the next step),
  which this neuron has not (``tau_syn_inv·dt = 1`` removes it). With those set equal it
  is this neuron (``spikelight`` convention) with ``tau = 1/(dt·tau_mem_inv)``, ``ρ = 1 − dt·tau_adapt_inv``,
  ``beta = β_n·ρ/(1 − ρ)``, ``v_reset=0``, ``detach_reset=True``, ``surrogate=fast_sigmoid alpha=1``
  (Norse's SuperSpike ignores its alpha): spikes equal, gradients within 1e-6 (test_conventions.py, whose
  transcription of Norse is held to Norse 1.1.0's own outputs, stored in ``tests/equivalence/data/``).
- Under the ``spikelight`` convention the LSNN-official / e-prop neurons are *not* reproduced
  when α < 1 (measured with τ_m = 20, 16 neurons, 3 sequences of 60 steps, seeds 0–3: the two disagree
  in 118–379 of 2,880 neuron-steps, where LSNN-official's fires 53–171 spikes; weight gradients differ by
  87–296%; test_conventions.py): choose the convention.

The plain LIF of each convention (``neuron=lif neuron.convention=...``: LSNN-official's ``LIF`` cell, the
e-prop code's ``LightLIF``) is this neuron with β = 0 (:func:`spikelight.neurons.lif_neuron`).

State: :class:`ALIFState` ``(v, a, ref, z)``; ``ref`` counts the refractory steps left, ``z`` is the
last spike (the reset of ``lsnn_official`` needs it; the others carry it along).

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
from spikelight.dynamics.reference import adapt, adaptive_threshold, lif_charge, official_fire_input, refractory_gate
from spikelight.dynamics.spec import ALIFSpec, LIFSpec, check_convention
from spikelight.neurons.base import BaseNode
from spikelight.neurons.if_lif import resolve_tau_beta

__all__ = ["ALIFNode", "ALIFState"]


class ALIFState(NamedTuple):
    """ALIF state, each [B, ...]: membrane after reset, adaptation, refractory steps left, last spike."""

    v: Tensor
    a: Tensor
    ref: Tensor
    z: Tensor


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
            surrogate's input); ``spikelight`` convention only (None = False there; the others
            normalise as their code: ``eprop`` by v_th, ``lsnn_official`` by A_t).
        convention: ``spikelight`` | ``eprop`` | ``lsnn_official`` (module docstring).
        decay_input, v_threshold, v_reset, surrogate, detach_reset, backend: as :class:`LIFNode`
            (``backend``: module docstring; ``auto`` picks the Triton kernels on CUDA, the C loops on the CPU).
    """

    State = ALIFState

    def __init__(
        self,
        tau: float = 20.0,
        tau_adapt: float = 200.0,
        beta: float = 1.8,
        adaptive_fraction: float = 1.0,
        refractory: int = 0,
        normalize: bool | None = None,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        backend: str = "auto",
        convention: str = "spikelight",
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, backend)
        self.convention = check_convention(convention, "ALIF")
        if convention != "spikelight":
            if v_reset is not None:
                raise ValueError(f"ALIF convention={convention} subtracts the threshold on a spike: set "
                                 f"neuron.v_reset=null (got {v_reset})")
            if normalize is False:
                raise ValueError(f"ALIF convention={convention} always normalises as its code: set "
                                 f"neuron.normalize=null (or true)")
            normalize = True
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
        self.normalize = bool(normalize)  # None = False (spikelight)
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
        return ALIFState(v0, torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x))

    def reset(self, h: Tensor, spike: Tensor) -> Tensor:
        """State after firing; ``eprop`` subtracts ``v_th/leak`` (its reset comes after the next leak)."""
        if self.convention != "eprop":
            return super().reset(h, spike)
        s = spike.detach() if self.detach_reset else spike
        return h - (self.v_threshold / (1.0 - 1.0 / self.tau)) * s

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        return lif_charge(x, v, self.tau, self.decay_input, self.v_reset)

    def threshold(self, state: ALIFState) -> Tensor:
        """Adaptive threshold A = v_th + β·a, [B, ...]."""
        return adaptive_threshold(state.a, self.beta_per_neuron(state.a.shape[-1], state.a), self.v_threshold)

    def step(self, x: Tensor, state: ALIFState) -> tuple[Tensor, ALIFState, Tensor]:
        if self.convention == "lsnn_official":
            return self._official_step(x, state)
        h = self.charge(x, state.v)
        over = h - self.threshold(state)
        strict = self.convention == "eprop"
        spike = self.surrogate(over / self.v_threshold if self.normalize else over, strict=strict)
        spike, ref = refractory_gate(spike, state.ref, self.refractory) if self.refractory else (spike, state.ref)
        return spike, ALIFState(self.reset(h, spike), adapt(state.a, spike, self.rho), ref, spike), h

    def _official_step(self, x: Tensor, state: ALIFState) -> tuple[Tensor, ALIFState, Tensor]:
        """LSNN-official: fire from v_{t−1} against A_t, then ``v_t = charge(v_{t−1}, I_t) − A_t·z_{t−1}``."""
        A = self.threshold(state)
        spike = self.surrogate(official_fire_input(state.v, A), strict=True)
        spike, ref = refractory_gate(spike, state.ref, self.refractory) if self.refractory else (spike, state.ref)
        z_prev = state.z.detach() if self.detach_reset else state.z
        h = self.charge(x, state.v) - A * z_prev
        return spike, ALIFState(h, adapt(state.a, spike, self.rho), ref, spike), h

    # --- fused kernel ------------------------------------------------------------------
    def _kernel_spec(self) -> ALIFSpec | None:
        own = ("threshold", "beta_per_neuron", "rho", "_official_step")
        if not self._dynamics_of(ALIFNode) or any(getattr(type(self), n) is not getattr(ALIFNode, n) for n in own):
            return None
        lif = LIFSpec(self.tau, self.decay_input, self.v_threshold, self.v_reset, self.detach_reset,
                      convention=self.convention)  # fmt: skip
        adaptive = self.beta > 0 and self.adaptive_fraction > 0
        return ALIFSpec(lif, self.rho, self.refractory, self.normalize, adaptive)

    def _kernel_inputs(self, x: Tensor) -> dict[str, Tensor]:
        return {"beta": self.beta_per_neuron(x.shape[-1], x)}

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, tau_adapt={self.tau_adapt}, beta={self.beta}, "
            f"adaptive_fraction={self.adaptive_fraction}, refractory={self.refractory}, "
            f"normalize={self.normalize}, decay_input={self.decay_input}, "
            + ("" if self.convention == "spikelight" else f"convention={self.convention!r}, ")
            + super().extra_repr()
        )
