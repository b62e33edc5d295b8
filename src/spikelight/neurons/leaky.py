"""snnTorch's ``Leaky`` neuron: reset one step late, from the previous spike."""

from __future__ import annotations

from torch import Tensor

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.reference import leaky_charge
from spikelight.dynamics.spec import LeakySpec
from spikelight.neurons.base import BaseNode
from spikelight.neurons.if_lif import beta_from_tau, resolve_tau_beta

__all__ = ["LeakyNode"]

_RESETS = ("subtract", "zero")


class LeakyNode(BaseNode):
    """snnTorch ``snn.Leaky`` (tutorial 5), membrane ``U`` as state:

        subtract: U[t] = beta·U[t-1] + X[t] − S[t-1]·θ
        zero:     U[t] = beta·(1 − S[t-1])·U[t-1] + X[t]
        S[t] = Θ(U[t] − θ), firing on U > θ (snnTorch's strict comparison)

    ``S[t-1] = Θ(U[t-1] − θ)`` is recomputed from the state and carries no
    gradient (snnTorch detaches its reset). Unlike :class:`LIFNode` with a soft
    reset (``v = h − θ·s``, then decayed), the threshold is subtracted *after*
    the decay, one step late. ``membrane`` is ``U[t]`` (snnTorch's ``mem``).

    Args:
        beta: decay per step in (0, 1); or give ``tau`` (``beta = 1 − 1/tau``),
            not both; neither = ``beta=0.95`` (tutorial 5).
        v_threshold: θ.
        reset_mechanism: ``subtract`` or ``zero``.
        surrogate: spike surrogate (snnTorch's default is ATan, alpha=2).
        backend: ``auto | torch | fused | triton`` (see :class:`BaseNode`).
    """

    strict_threshold = True

    def __init__(
        self,
        beta: float | None = None,
        tau: float | None = None,
        v_threshold: float = 1.0,
        reset_mechanism: str = "subtract",
        surrogate: Surrogate | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(v_threshold=v_threshold, v_reset=None, surrogate=surrogate, detach_reset=True, backend=backend)
        if tau is None and beta is None:
            beta = 0.95
        tau = resolve_tau_beta("Leaky", tau, beta, default_tau=20.0)  # validates either form
        # exactly the beta given, not a round trip through tau
        self.beta = float(beta) if beta is not None else beta_from_tau(tau)
        if reset_mechanism not in _RESETS:
            raise ValueError(f"reset_mechanism must be one of {_RESETS}, got {reset_mechanism!r}")
        self.reset_mechanism = reset_mechanism

    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        return leaky_charge(x, v, self.beta, self.v_threshold, self.reset_mechanism == "zero")

    def reset(self, h: Tensor, spike: Tensor) -> Tensor:
        return h  # applied in the next charge, from this step's spike

    def _kernel_spec(self) -> LeakySpec | None:
        if not self._dynamics_of(LeakyNode):
            return None
        return LeakySpec(self.beta, self.v_threshold, self.reset_mechanism == "zero", self.strict_threshold)

    def extra_repr(self) -> str:
        backend = "" if self.backend == "auto" else f", backend={self.backend!r}"
        return (
            f"beta={self.beta}, v_threshold={self.v_threshold}, reset_mechanism={self.reset_mechanism!r}{backend}"
        )
