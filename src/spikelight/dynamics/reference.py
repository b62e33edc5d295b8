"""The reference dynamics: one pure function per equation of every built-in neuron.

This is the executable definition. The neuron modules (:mod:`spikelight.neurons`) step
with these functions in their reference loop (``neuron.backend=torch``), and every fast
path — the fused autograd Functions, the C loops, the Triton kernels — is held to that loop
by one equivalence matrix (``tests/equivalence/test_matrix.py``: same spikes, gradients
within 1e-5). Shapes: any; every argument of one step has the shape of one step of input
``[B, ...]`` (per-neuron parameters broadcast along the last axis).

Fire and reset follow SpikingJelly (the default ``spikelight`` convention; the ALIF's ``eprop`` and
``lsnn_official`` conventions are written in :mod:`spikelight.neurons.alif`):

    s_t = Θ(h_t − v_th)                       (spike when h_t >= v_th; snnTorch's Leaky: h_t > v_th)
    v_t = h_t·(1 − s_t) + v_reset·s_t          hard reset
    v_t = h_t − v_th·s_t                       soft reset (v_reset = None)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "if_charge",
    "lif_charge",
    "reset_state",
    "leaky_charge",
    "adaptive_threshold",
    "adapt",
    "official_fire_input",
    "refractory_gate",
    "DualExpState",
    "dual_exp_update",
]


def if_charge(x: Tensor, v: Tensor) -> Tensor:
    """IF: ``h = v + x``."""
    return v + x


def lif_charge(x: Tensor, v: Tensor, tau: float, decay_input: bool, v_reset: float | None) -> Tensor:
    """LIF (SpikingJelly): leak toward ``v_reset`` (0 for soft reset) with time constant tau.

    decay_input=True:  ``h = v + (x - (v - v_reset)) / tau``
    decay_input=False: ``h = v - (v - v_reset) / tau + x``
    """
    v_rest = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - v_rest)) / tau
    return v - (v - v_rest) / tau + x


def reset_state(h: Tensor, spike: Tensor, v_threshold: float, v_reset: float | None, detach_reset: bool) -> Tensor:
    """State after firing: hard reset to ``v_reset``, or soft (subtract threshold) if None."""
    s = spike.detach() if detach_reset else spike
    if v_reset is None:
        return h - v_threshold * s
    return h * (1.0 - s) + v_reset * s


def leaky_charge(x: Tensor, u: Tensor, beta: float, v_threshold: float, reset_zero: bool) -> Tensor:
    """snnTorch ``Leaky``: the reset of the previous step applied one step late, with no gradient.

    subtract: ``U[t] = beta·U[t-1] + X[t] − θ·S[t-1]``;  zero: ``U[t] = beta·(1 − S[t-1])·U[t-1] + X[t]``;
    ``S[t-1] = U[t-1] > θ`` (a comparison: no gradient, as snnTorch detaches its reset).
    """
    prev_spike = (u > v_threshold).to(u.dtype)
    if reset_zero:
        return beta * (1.0 - prev_spike) * u + x
    return beta * u + x - v_threshold * prev_spike


def adaptive_threshold(a: Tensor, beta: Tensor, v_threshold: float) -> Tensor:
    """ALIF threshold ``A = v_th + β·a`` (β per neuron, last axis)."""
    return v_threshold + beta * a


def adapt(a: Tensor, spike: Tensor, rho: float) -> Tensor:
    """ALIF adaptation ``a_t = ρ·a_{t-1} + (1 − ρ)·s_t``: a low-pass filtered spike train."""
    return rho * a + (1.0 - rho) * spike


def official_fire_input(v_prev: Tensor, threshold: Tensor) -> Tensor:
    """LSNN-official's surrogate input ``(v_{t-1} − A_t)/A_t``: the *previous* potential against this step's
    adaptive threshold, normalised by it (``LIF_dynamic``: ``v_scaled = (v - thr) / thr``)."""
    return (v_prev - threshold) / threshold


def refractory_gate(spike: Tensor, ref: Tensor, refractory: int) -> tuple[Tensor, Tensor]:
    """No spike while ``ref > 0`` (the product also zeroes the surrogate gradient); ``ref`` becomes
    ``refractory`` after a spike, else counts down to 0. Returns ``(spike, ref)``."""
    spike = spike * (ref <= 0).to(spike.dtype)
    ref = torch.where(spike > 0, torch.full_like(ref, refractory), (ref - 1).clamp_(min=0))
    return spike, ref


class DualExpState(NamedTuple):
    """Dual-exponential state, each [B, ...]: slow trace m, fast trace s, gradient trace g (after reset)."""

    m: Tensor
    s: Tensor
    g: Tensor


def dual_exp_update(
    x: Tensor, state: DualExpState, theta_m: float, theta_s: float, theta_g: float
) -> tuple[DualExpState, Tensor]:
    """Charge the three traces with input x [B, ...] and return ``(traces before reset, u)``:
    ``m = (m + x)(1 − θ_m)``, ``s = (s + x)(1 − θ_s)``, ``g = (g + x)(1 − θ_g)``, ``u = (m − s)·θ_s/(θ_s − θ_m)``
    (Zhu et al. 2022, the authors' ``layers/functions.py``). A spike then sets all three to 0."""
    m = (state.m + x) * (1.0 - theta_m)
    s = (state.s + x) * (1.0 - theta_s)
    g = (state.g + x) * (1.0 - theta_g)
    u = (m - s) * (theta_s / (theta_s - theta_m))
    return DualExpState(m, s, g), u
