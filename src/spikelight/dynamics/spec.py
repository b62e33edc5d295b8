"""What a fast path needs to know about a neuron: its kind and constants.

A neuron that has a fused form returns one of these records from ``_kernel_spec()``;
the backends never look at the module itself, so a spec is the whole contract.
:func:`step_args` derives, once per spec, the named constants an IF / LIF / ALIF step
reads (:class:`StepArgs`): the fused loops, the C argument struct and the Triton launches
take them by these names, so no backend recomputes a flag or a code from the spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

__all__ = [
    "CONVENTIONS", "check_convention", "LIFSpec", "LeakySpec", "ALIFSpec", "DualExpSpec", "KernelSpec", "StepArgs",
    "step_args",
]  # fmt: skip

#: the order of fire / reset / normalisation of an IF / LIF / ALIF step (``neuron.convention``):
#:   spikelight     charge → fire on h − A (``>=``; normalised by v_th if ``normalize``) → reset → leak (SpikingJelly)
#:   eprop          the e-prop code's EligALIF: the reset −v_th·z_{t−1} after the leak; fire on (h − A)/v_th > 0
#:   lsnn_official  LSNN-official's ALIF: fire from the *previous* potential on (v_{t−1} − A_t)/A_t > 0, then
#:                  v_t = charge(v_{t−1}, I_t) − A_t·z_{t−1} (the reset by the adaptive threshold, one step late)
CONVENTIONS = ("spikelight", "eprop", "lsnn_official")


def check_convention(convention: str, who: str) -> str:
    """Validate a ``neuron.convention`` value (one line naming the choices)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"{who} convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


@dataclass(frozen=True)
class LIFSpec:
    """IF / LIF (SpikingJelly forms), fire → hard or soft reset.

    tau:          membrane time constant in steps; ``None`` = IF (``h = v + x``).
    decay_input:  LIF only: ``h = v + (x - (v - v_reset))/tau`` if True,
                  else ``h = v - (v - v_reset)/tau + x``.
    v_reset:      hard reset value; ``None`` = soft reset (subtract threshold).
    strict:       fire on ``h > v_threshold`` instead of ``>=``.
    convention:   the order of fire / reset / normalisation (:data:`CONVENTIONS`; soft reset only
                  for ``eprop`` and ``lsnn_official``).
    """

    tau: float | None
    decay_input: bool
    v_threshold: float
    v_reset: float | None
    detach_reset: bool
    strict: bool = False
    convention: str = "spikelight"

    @property
    def leak(self) -> float:
        """dh_t/dv_{t-1}: ``1 - 1/tau`` (1 for IF)."""
        return 1.0 if self.tau is None else 1.0 - 1.0 / self.tau

    @property
    def input_gain(self) -> float:
        """dh_t/dx_t: ``1/tau`` with decay_input, else 1."""
        return 1.0 / self.tau if (self.tau is not None and self.decay_input) else 1.0

    @property
    def soft_reset(self) -> float:
        """What a soft reset subtracts from h_t: ``v_th``; ``v_th/leak`` in the ``eprop`` convention, whose
        reset ``−v_th·z_{t−1}`` comes after the next step's leak (``leak·(h − v_th/leak) = leak·h − v_th``)."""
        return self.v_threshold / self.leak if self.convention == "eprop" else self.v_threshold


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
    #: du/dm = −du/ds: ``θ_s/(θ_s − θ_m)`` (derived)
    scale: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", self.theta_s / (self.theta_s - self.theta_m))


KernelSpec = LIFSpec | LeakySpec | ALIFSpec | DualExpSpec


@dataclass(frozen=True)
class StepArgs:
    """The constants of one IF / LIF / ALIF step (feed-forward or recurrent), derived from a spec.

    charge:      0 = IF (``h = v + x``), 1 = LIF with decay_input (``h = v + (x − (v − v_rest))/tau``),
                 2 = LIF without (``h = v − (v − v_rest)/tau + x``).
    tau:         membrane time constant (1.0 for IF, unused).
    v_rest:      where the leak pulls: ``v_reset``, 0 for a soft reset; ``v_rest_zero``: it is 0.
    thr:         ``v_threshold``.
    hard:        hard reset to ``vr`` (= v_reset; 0 for soft); ``vr_add``: hard and v_reset ≠ 0.
    strict:      fire on ``h > thr`` (LIF only; snnTorch's comparison).
    detach:      the reset's spike carries no gradient.
    alif:        the adaptation variable ``a`` is carried; ``adaptive``: some β > 0 (the threshold moves).
    normalize:   fire on ``(h − A)/thr`` (ALIF); ``refractory``: steps without firing after a spike.
    rho, keep:   adaptation decay ``ρ`` and ``1 − ρ``.
    leak, gain:  ``dh_t/dv_{t−1}`` and ``dh_t/dx_t``.
    soft:        what a soft reset subtracts (``thr``; ``thr/leak`` in the ``eprop`` convention).
    official:    the ``lsnn_official`` convention (its own loops: :mod:`spikelight.dynamics.fused.official`).
    """

    charge: int
    tau: float
    v_rest: float
    v_rest_zero: bool
    thr: float
    hard: bool
    vr: float
    vr_add: bool
    strict: bool
    detach: bool
    alif: bool
    adaptive: bool
    normalize: bool
    refractory: int
    rho: float
    keep: float
    leak: float
    gain: float
    soft: float = 0.0
    official: bool = False

    @property
    def surrogate_scale(self) -> float:
        """``dh/dI · du/dh``: the factor on the surrogate's derivative in dL/dI (``gain/thr`` when normalised)."""
        return self.gain / self.thr if self.normalize else self.gain


@functools.lru_cache(maxsize=256)
def step_args(spec: LIFSpec | ALIFSpec) -> StepArgs:
    """The :class:`StepArgs` of an IF / LIF (:class:`LIFSpec`) or ALIF (:class:`ALIFSpec`) spec."""
    alif = isinstance(spec, ALIFSpec)
    lif = spec.lif if alif else spec
    hard = lif.v_reset is not None
    v_reset = lif.v_reset if hard else 0.0
    rho = spec.rho if alif else 0.0
    return StepArgs(
        charge=0 if lif.tau is None else 1 if lif.decay_input else 2,
        tau=1.0 if lif.tau is None else lif.tau,
        v_rest=v_reset,
        v_rest_zero=v_reset == 0.0,
        thr=lif.v_threshold,
        hard=hard,
        vr=v_reset,
        vr_add=hard and v_reset != 0.0,
        strict=lif.convention != "spikelight" or (not alif and lif.strict),
        detach=lif.detach_reset,
        alif=alif,
        adaptive=alif and spec.adaptive,
        normalize=alif and spec.normalize,
        refractory=spec.refractory if alif else 0,
        rho=rho,
        keep=1.0 - rho,
        leak=lif.leak,
        gain=lif.input_gain,
        soft=lif.soft_reset,
        official=lif.convention == "lsnn_official",
    )
