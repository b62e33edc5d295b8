"""``neuron=lif`` in each convention: SpikingJelly's LIF, LSNN-official's ``LIF``, the e-prop code's ``LightLIF``.

LSNN-official's ``LIF`` cell runs the same ``LIF_dynamic`` as its ``ALIF`` with the threshold held at ``thr``,
and the e-prop code's ``LightLIF`` is its ``EligALIF`` without adaptation nor refractory counter (spike on the
new potential, ``(v − thr)/thr > 0``; the reset ``thr·z_{t−1}`` after the leak). So in the ``lsnn_official``
and ``eprop`` conventions (:mod:`spikelight.neurons.alif`) the plain LIF *is* :class:`ALIFNode` with β = 0:
every backend, e-prop's eligibility traces and the float64 tests against those codes come with it
(``tests/equivalence/test_conventions.py``). In the ``spikelight`` convention it is :class:`LIFNode`, or
:class:`ALIFNode` with β = 0 when a refractory period is asked for (the same charge, fire and reset, spike for
spike).

Parameters keep :class:`LIFNode`'s meaning: ``tau`` or ``beta`` (snnTorch's decay per step, *not* the adaptation
strength of ``neuron=sfa``), ``decay_input`` (null: true with tau, false with beta; LSNN-official's and
LightLIF's ``(1 − decay)·I`` is true, EligALIF's ``I`` false), ``v_threshold``, ``v_reset`` (null = subtract the
threshold: the only reset of the two codes). Time constants map as in :mod:`spikelight.neurons.alif`:
``tau = 1/(1 − exp(−1/τ_m))``.
"""

from __future__ import annotations

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.spec import check_convention
from spikelight.neurons.alif import ALIFNode
from spikelight.neurons.if_lif import LIFNode

__all__ = ["lif_neuron"]


def lif_neuron(
    tau: float | None = None,
    decay_input: bool | None = None,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    surrogate: Surrogate | None = None,
    detach_reset: bool = False,
    beta: float | None = None,
    backend: str = "auto",
    convention: str = "spikelight",
    refractory: int = 0,
) -> LIFNode | ALIFNode:
    """The LIF neuron of ``convention`` (``spikelight`` | ``lsnn_official`` | ``eprop``; module docstring).

    Args:
        convention: order of fire / reset / normalisation, as :class:`ALIFNode`'s.
        refractory: steps after a spike without spiking (LSNN-official's ``n_refractory``; the e-prop code's
            LightLIF has none); > 0 runs as :class:`ALIFNode` with β = 0.
        Others as :class:`LIFNode`.
    """
    convention = check_convention(convention, "LIF")
    # LIFNode resolves tau / beta / decay_input and checks them, in one place for every convention
    lif = LIFNode(tau, decay_input, v_threshold, v_reset, surrogate, detach_reset, beta, backend)
    if convention == "spikelight" and not refractory:
        return lif
    if convention != "spikelight" and v_reset is not None:
        raise ValueError(f"LIF convention={convention} subtracts the threshold on a spike: set neuron.v_reset=null "
                         f"(got {v_reset})")  # fmt: skip
    return ALIFNode(tau=lif.tau, tau_adapt=1.0, beta=0.0, adaptive_fraction=0.0, refractory=refractory,
                    decay_input=lif.decay_input, v_threshold=lif.v_threshold, v_reset=lif.v_reset,
                    surrogate=lif.surrogate, detach_reset=lif.detach_reset, backend=lif.backend,
                    convention=convention)  # fmt: skip
