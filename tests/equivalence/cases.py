"""The neurons, surrogates and inputs the equivalence matrix runs (the one place they are defined).

Each factory is ``(surrogate, detach_reset, backend) -> neuron``; GAIN scales the random input so
that 5–70 % of the steps fire (both branches of every fire / reset are exercised).
"""

from __future__ import annotations

import torch

from spikelight.core.surrogate import (
    ATan,
    FastSigmoid,
    LeakyKReLU,
    PiecewiseQuadratic,
    Rectangle,
    Sigmoid,
    SoftSign,
    SpikeOperator,
    Surrogate,
    Triangle,
)
from spikelight.neurons import ALIFNode, DualExpNode, IFNode, LeakyNode, LIFNode


class Cubic(Surrogate):
    """A user's surrogate: only ``derivative`` written (no in-place or in-kernel form)."""

    def derivative(self, x):
        return 1.0 / (1.0 + (2.0 * x) ** 2) ** 1.5


class SteepATan(ATan):
    """A user's subclass of a built-in that changes its derivative: the parent's in-place and in-kernel forms
    must not be used for it."""

    def derivative(self, x):
        return 3.0 * super().derivative(3.0 * x)


SURROGATES = {
    "sigmoid": Sigmoid,
    "atan": ATan,
    "fast_sigmoid": FastSigmoid,
    "triangle": lambda: Triangle(alpha=1.5, dampening=0.3),
    "piecewise_quadratic": PiecewiseQuadratic,
    "soft_sign": SoftSign,
    "leaky_k_relu": lambda: LeakyKReLU(leak=0.1, k=1.0),
    "rectangle": lambda: Rectangle(alpha=0.8),
    "spike_operator": SpikeOperator,
    "user_cubic": Cubic,
    "steep_atan": SteepATan,
}
#: surrogates with no in-kernel form (the GPU kernels refuse them)
USER_SURROGATES = ("user_cubic", "steep_atan")


def _strict(node):
    """The neuron firing on h > v_th (snnTorch's comparison, a class attribute a user subclass may set)."""
    node.strict_threshold = True
    return node


# IF / LIF / ALIF: run alone (feed-forward) and inside a recurrent layer
STEPPED = {
    "lif_hard_decay_input": lambda s, d, b: LIFNode(tau=3.0, surrogate=s, detach_reset=d, backend=b),
    "lif_soft_decay_input": lambda s, d, b: LIFNode(tau=2.0, v_reset=None, surrogate=s, detach_reset=d, backend=b),
    "lif_no_decay_vreset": lambda s, d, b: LIFNode(
        tau=1.7, decay_input=False, v_reset=0.2, surrogate=s, detach_reset=d, backend=b
    ),
    "lif_soft_beta": lambda s, d, b: LIFNode(beta=0.9, v_reset=None, surrogate=s, detach_reset=d, backend=b),
    "lif_negative_vreset": lambda s, d, b: LIFNode(
        tau=5.0, v_reset=-0.3, v_threshold=0.8, surrogate=s, detach_reset=d, backend=b
    ),
    "lif_strict": lambda s, d, b: _strict(LIFNode(tau=3.0, surrogate=s, detach_reset=d, backend=b)),
    "if_hard": lambda s, d, b: IFNode(surrogate=s, detach_reset=d, backend=b),
    "if_soft": lambda s, d, b: IFNode(v_reset=None, surrogate=s, detach_reset=d, backend=b),
    "alif_hard": lambda s, d, b: ALIFNode(
        tau=3.0, tau_adapt=6.0, beta=0.6, adaptive_fraction=0.5, surrogate=s, detach_reset=d, backend=b
    ),
    "alif_soft_normalize": lambda s, d, b: ALIFNode(
        tau=4.0, tau_adapt=5.0, beta=0.8, normalize=True, decay_input=False, v_reset=None, v_threshold=0.7,
        surrogate=s, detach_reset=d, backend=b,
    ),  # fmt: skip
    "alif_refractory": lambda s, d, b: ALIFNode(
        tau=3.0, tau_adapt=8.0, beta=0.5, refractory=2, v_reset=0.1, surrogate=s, detach_reset=d, backend=b
    ),
    "alif_plain_normalize": lambda s, d, b: ALIFNode(
        tau=2.0, beta=0.0, normalize=True, v_threshold=1.3, surrogate=s, detach_reset=d, backend=b
    ),
    "alif_eprop": lambda s, d, b: ALIFNode(
        tau=4.0, tau_adapt=6.0, beta=0.7, adaptive_fraction=0.5, refractory=1, decay_input=False, v_reset=None,
        v_threshold=0.9, surrogate=s, detach_reset=d, backend=b, convention="eprop",
    ),  # fmt: skip
    "official_alif": lambda s, d, b: ALIFNode(
        tau=3.0, tau_adapt=7.0, beta=0.6, adaptive_fraction=0.5, refractory=1, v_reset=None, v_threshold=0.8,
        surrogate=s, detach_reset=d, backend=b, convention="lsnn_official",
    ),  # fmt: skip
    "official_alif_no_refractory": lambda s, d, b: ALIFNode(
        tau=2.5, tau_adapt=5.0, beta=0.9, v_reset=None, v_threshold=0.5, surrogate=s, detach_reset=d, backend=b,
        convention="lsnn_official",
    ),  # fmt: skip
}
# neurons with their own loop: alone only
ALONE = {
    "leaky_subtract": lambda s, d, b: LeakyNode(beta=0.9, surrogate=s, backend=b),
    "leaky_zero": lambda s, d, b: LeakyNode(beta=0.8, v_threshold=0.7, reset_mechanism="zero", surrogate=s, backend=b),
    "dual_exp": lambda s, d, b: DualExpNode(tau_m=5.0, tau_s=3.0, tau_grad=2.5, surrogate=s, detach_reset=d, backend=b),
}
NEURONS = {**STEPPED, **ALONE}

GAIN = {
    "lif_hard_decay_input": 3.0, "lif_soft_decay_input": 2.0, "lif_negative_vreset": 4.0, "lif_strict": 3.0,
    "alif_hard": 3.5, "alif_refractory": 3.5, "alif_plain_normalize": 2.5, "dual_exp": 2.5, "official_alif": 2.0,
    "official_alif_no_refractory": 2.0,
}  # fmt: skip


def family(name: str) -> str:
    """lif (IF and LIF), leaky, alif, official (the ALIF in the lsnn_official convention) or dual_exp."""
    return "lif" if name.startswith(("lif", "if")) else name.split("_")[0] if not name.startswith("dual") else "dual_exp"


def inputs(seed: int, shape: tuple[int, ...], neuron: str, dtype=torch.float32, quantised: bool = False) -> torch.Tensor:
    """Random input; ``quantised``: on a grid of 1/4, so that membranes land exactly on the threshold often
    (e.g. LIF tau=3 from rest: h = x/3 = 1 for x = 3)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 0.8 + 0.4) * GAIN.get(neuron, 1.0)
    return (torch.round(x * 4) / 4 if quantised else x).to(dtype)


def initial_state(node, like: torch.Tensor, seed: int):
    """A random explicit initial state of ``node``'s type for one step like ``like`` [B, ...]
    (float fields requiring grad, but a refractory count)."""
    gen = torch.Generator().manual_seed(seed)
    fresh = node.initial_state(like)
    fields = []
    for name, f in zip(fresh._fields, fresh):
        if name == "ref":
            fields.append(torch.randint(0, 3, f.shape, generator=gen).to(f.dtype))
        elif name == "a":
            fields.append(torch.rand(f.shape, generator=gen).to(f.dtype).requires_grad_())
        elif name == "z":  # a last spike: 0 or 1
            fields.append((torch.rand(f.shape, generator=gen) < 0.3).to(f.dtype).requires_grad_())
        else:
            fields.append((torch.randn(f.shape, generator=gen) * 0.4).to(f.dtype).requires_grad_())
    return type(fresh)(*fields)
