"""Integrate-and-fire and leaky integrate-and-fire neurons (SpikingJelly forms)."""

from __future__ import annotations

from torch import Tensor

from spikelight.neurons.base import BaseNode, fire_and_reset
from spikelight.surrogate import Surrogate

__all__ = ["IFNode", "LIFNode", "if_charge", "lif_charge", "lif_step", "tau_from_beta", "beta_from_tau"]


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


def lif_step(
    x: Tensor,
    v: Tensor,
    *,
    tau: float,
    decay_input: bool = True,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    surrogate: Surrogate,
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference LIF step. Returns ``(spike, v_next, h)``, shaped like x."""
    h = lif_charge(x, v, tau, decay_input, v_reset)
    spike, v_next = fire_and_reset(h, v_threshold, v_reset, surrogate, detach_reset)
    return spike, v_next, h


def beta_from_tau(tau: float) -> float:
    """snnTorch decay ``beta = 1 - 1/tau`` (exact for ``decay_input=False``)."""
    return 1.0 - 1.0 / tau


def tau_from_beta(beta: float) -> float:
    """SpikingJelly ``tau = 1 / (1 - beta)``."""
    return 1.0 / (1.0 - beta)


class IFNode(BaseNode):
    """Integrate-and-fire: ``h = v + x``. Args as :class:`BaseNode`."""

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        return if_charge(x, v)


class LIFNode(BaseNode):
    """Leaky integrate-and-fire with membrane time constant ``tau`` (steps).

    Give either ``tau`` (SpikingJelly, > 1) or ``beta`` (snnTorch decay per step,
    in (0, 1)); they are related by ``beta = 1 - 1/tau``. With
    ``decay_input=False`` and ``v_reset=0`` the charge is exactly snnTorch's
    ``h = beta·v + x``.

    Args:
        tau: membrane time constant in time steps (default 2).
        beta: alternative to tau.
        decay_input: scale the input by 1/tau as well as the leak.
        Others as :class:`BaseNode`.
    """

    def __init__(
        self,
        tau: float | None = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
        beta: float | None = None,
    ) -> None:
        super().__init__(v_threshold, v_reset, surrogate, detach_reset)
        if beta is not None:
            if not 0.0 < beta < 1.0:
                raise ValueError(f"LIF beta must be in (0, 1), got {beta}")
            tau = tau_from_beta(beta)
        if tau is None or not tau > 1.0:
            raise ValueError(f"LIF tau must be > 1 (time steps), got {tau}; for no leak use neuron=if")
        self.tau = float(tau)
        self.decay_input = bool(decay_input)

    @property
    def beta(self) -> float:
        return beta_from_tau(self.tau)

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        return lif_charge(x, v, self.tau, self.decay_input, self.v_reset)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, decay_input={self.decay_input}, " + super().extra_repr()
