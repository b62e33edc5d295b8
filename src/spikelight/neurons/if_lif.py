"""Integrate-and-fire and leaky integrate-and-fire neurons (SpikingJelly forms)."""

from __future__ import annotations

from torch import Tensor

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.reference import if_charge, lif_charge
from spikelight.dynamics.spec import LIFSpec
from spikelight.neurons.base import BaseNode

__all__ = ["IFNode", "LIFNode", "if_charge", "lif_charge", "tau_from_beta", "beta_from_tau", "resolve_tau_beta"]


def beta_from_tau(tau: float) -> float:
    """snnTorch decay ``beta = 1 - 1/tau`` (exact for ``decay_input=False``)."""
    return 1.0 - 1.0 / tau


def tau_from_beta(beta: float) -> float:
    """SpikingJelly ``tau = 1 / (1 - beta)``."""
    return 1.0 / (1.0 - beta)


def resolve_tau_beta(kind: str, tau: float | None, beta: float | None, default_tau: float) -> float:
    """The membrane time constant from ``tau`` or ``beta`` (exactly one, or neither = default).

    Both given is refused: which one should win is a guess a sweep would hide.
    """
    for name, val in (("tau", tau), ("beta", beta)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise ValueError(f"{kind} {name} must be a number, got {val!r}")
    if tau is not None and beta is not None:
        raise ValueError(
            f"{kind} neuron got both tau={tau} and beta={beta}; give one (beta = 1 - 1/tau), "
            "e.g. neuron.tau=null neuron.beta=0.95"
        )
    if beta is not None:
        if not 0.0 < beta < 1.0:
            raise ValueError(f"{kind} beta (decay per step) must be in (0, 1), got {beta}")
        return tau_from_beta(beta)
    tau = default_tau if tau is None else tau
    if not tau > 1.0:
        raise ValueError(f"{kind} tau must be > 1 (time steps), got {tau}; for no leak use neuron=if")
    return float(tau)


class IFNode(BaseNode):
    """Integrate-and-fire: ``h = v + x``. Args as :class:`BaseNode`."""

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        return if_charge(x, v)

    def _kernel_spec(self) -> LIFSpec | None:
        if not self._dynamics_of(IFNode):
            return None
        return LIFSpec(None, False, self.v_threshold, self.v_reset, self.detach_reset, self.strict_threshold)


class LIFNode(BaseNode):
    """Leaky integrate-and-fire with membrane time constant ``tau`` (steps).

    Give ``tau`` (SpikingJelly, > 1) or ``beta`` (snnTorch's decay per step, in
    (0, 1)), not both; ``beta = 1 - 1/tau``; neither = ``tau=2``.

    ``decay_input`` (default: follows the form you chose):
        ``tau`` given → True, SpikingJelly's ``h = v + (x - (v - v_reset))/tau``;
        ``beta`` given → False, snnTorch's ``h = beta·v + x`` (for ``v_reset=0``).
    Pass it explicitly to mix the forms.

    Args:
        tau: membrane time constant in time steps.
        beta: alternative to tau.
        decay_input: scale the input by 1/tau as well as the leak (see above).
        Others as :class:`BaseNode`.
    """

    def __init__(
        self,
        tau: float | None = None,
        decay_input: bool | None = None,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        beta: float | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate, detach_reset, backend)
        self.tau = resolve_tau_beta("LIF", tau, beta, default_tau=2.0)
        self.decay_input = (beta is None) if decay_input is None else bool(decay_input)

    @property
    def beta(self) -> float:
        return beta_from_tau(self.tau)

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        return lif_charge(x, v, self.tau, self.decay_input, self.v_reset)

    def _kernel_spec(self) -> LIFSpec | None:
        if not self._dynamics_of(LIFNode):
            return None
        return LIFSpec(
            self.tau, self.decay_input, self.v_threshold, self.v_reset, self.detach_reset, self.strict_threshold
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()
