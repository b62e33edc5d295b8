"""What a fused kernel needs to know about a neuron: its kind and constants.

A neuron that has a fused form returns one of these from ``_kernel_spec()``;
the kernels never look at the module itself, so a spec is the whole contract.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LIFSpec", "LeakySpec", "ALIFSpec", "DualExpSpec", "KernelSpec"]


@dataclass(frozen=True)
class LIFSpec:
    """IF / LIF (SpikingJelly forms), fire → hard or soft reset.

    tau:          membrane time constant in steps; ``None`` = IF (``h = v + x``).
    decay_input:  LIF only: ``h = v + (x - (v - v_reset))/tau`` if True,
                  else ``h = v - (v - v_reset)/tau + x``.
    v_reset:      hard reset value; ``None`` = soft reset (subtract threshold).
    strict:       fire on ``h > v_threshold`` instead of ``>=``.
    """

    tau: float | None
    decay_input: bool
    v_threshold: float
    v_reset: float | None
    detach_reset: bool
    strict: bool = False

    @property
    def leak(self) -> float:
        """dh_t/dv_{t-1}: ``1 - 1/tau`` (1 for IF)."""
        return 1.0 if self.tau is None else 1.0 - 1.0 / self.tau

    @property
    def input_gain(self) -> float:
        """dh_t/dx_t: ``1/tau`` with decay_input, else 1."""
        return 1.0 / self.tau if (self.tau is not None and self.decay_input) else 1.0


@dataclass(frozen=True)
class LeakySpec:
    """snnTorch ``Leaky``: ``U[t] = beta·U[t-1] + X[t] − θ·S[t-1]`` (subtract) or
    ``beta·(1 − S[t-1])·U[t-1] + X[t]`` (zero); ``S[t-1] = U[t-1] > θ`` carries no
    gradient; fires on ``U > θ`` (``strict``)."""

    beta: float
    v_threshold: float
    reset_zero: bool
    strict: bool = True


@dataclass(frozen=True)
class ALIFSpec:
    """Adaptive LIF (:class:`~spikelight.neurons.ALIFNode`): the LIF charge/reset of ``lif``
    plus the threshold ``A = v_th + β·a_{t-1}``, ``a_t = ρ·a_{t-1} + (1 − ρ)·s_t``.

    β is per neuron (a tensor the caller passes beside the spec); ``adaptive`` is
    False when every β is 0 (the threshold is then ``v_th`` exactly).
    rho:         adaptation decay per step, ``exp(−1/tau_adapt)``.
    refractory:  steps without spiking after a spike (0 = none).
    normalize:   fire on ``(h − A)/v_th`` (the surrogate sees the scaled value).
    """

    lif: LIFSpec
    rho: float
    refractory: int
    normalize: bool
    adaptive: bool


@dataclass(frozen=True)
class DualExpSpec:
    """Dual-exponential neuron (:class:`~spikelight.neurons.DualExpNode`): traces
    ``m = (m + x)(1 − θ_m)``, ``s = (s + x)(1 − θ_s)``, ``g = (g + x)(1 − θ_g)``,
    ``u = (m − s)·θ_s/(θ_s − θ_m)``, fire on ``u ≥ v_threshold`` (``>`` if ``strict``),
    a spike sets all three traces to 0 (``detach_reset``: that reset carries no gradient)."""

    theta_m: float
    theta_s: float
    theta_g: float
    v_threshold: float
    detach_reset: bool
    strict: bool = False

    @property
    def scale(self) -> float:
        """du/dm = −du/ds: ``θ_s/(θ_s − θ_m)``."""
        return self.theta_s / (self.theta_s - self.theta_m)


KernelSpec = LIFSpec | LeakySpec | ALIFSpec | DualExpSpec
