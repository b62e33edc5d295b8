"""Every fast neuron path against the reference loop (``backend="torch"``).

Same random input → identical spikes, membrane and final state; gradients of
input and initial state within 1e-5 relative in fp32 (``rtol=1e-5`` with an
absolute floor of 1e-5 × the largest gradient: the fused backward sums the
same terms in another order). Every surrogate, hard and soft reset,
``detach_reset`` on and off, ``decay_input`` both ways, Leaky subtract/zero,
explicit initial state, gradients from each output alone and together.
The Triton kernels run under ``TRITON_INTERPRET=1`` in a subprocess (the
interpreter must be chosen before triton is imported).
"""

from __future__ import annotations

import os
import textwrap

import pytest
import torch

from spikelight.core.errors import ConfigError
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
from spikelight.monitor import Monitor
from spikelight.neurons import BaseNode, IFNode, LeakyNode, LIFNode

from .conftest import run_under_triton_interpreter

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
}

# neuron name -> factory(surrogate, detach_reset, backend)
NEURONS = {
    "lif_hard_decay_input": lambda s, d, b: LIFNode(tau=3.0, surrogate=s, detach_reset=d, backend=b),
    "lif_soft_decay_input": lambda s, d, b: LIFNode(tau=2.0, v_reset=None, surrogate=s, detach_reset=d, backend=b),
    "lif_hard_no_decay_vreset": lambda s, d, b: LIFNode(
        tau=1.7, decay_input=False, v_reset=0.2, surrogate=s, detach_reset=d, backend=b
    ),
    "lif_soft_beta": lambda s, d, b: LIFNode(beta=0.9, v_reset=None, surrogate=s, detach_reset=d, backend=b),
    "lif_hard_negative_vreset": lambda s, d, b: LIFNode(
        tau=5.0, v_reset=-0.3, v_threshold=0.8, surrogate=s, detach_reset=d, backend=b
    ),
    "if_hard": lambda s, d, b: IFNode(surrogate=s, detach_reset=d, backend=b),
    "if_soft": lambda s, d, b: IFNode(v_reset=None, surrogate=s, detach_reset=d, backend=b),
    "leaky_subtract": lambda s, d, b: LeakyNode(beta=0.9, surrogate=s, backend=b),
    "leaky_zero": lambda s, d, b: LeakyNode(beta=0.8, v_threshold=0.7, reset_mechanism="zero", surrogate=s, backend=b),
}
# input gain per neuron so that 5-50% of the steps fire (decay_input scales the input by 1/tau)
GAIN = {"lif_hard_decay_input": 3.0, "lif_soft_decay_input": 2.0, "lif_hard_negative_vreset": 4.0}


def _run(node: BaseNode, x: torch.Tensor, v0: torch.Tensor | None, use: tuple[str, ...], seed: int = 1):
    """Forward, a loss built from the outputs in ``use``, backward; return outputs and gradients."""
    x = x.clone().requires_grad_()
    v0 = None if v0 is None else v0.clone().requires_grad_()
    out = node(x, v0)
    gen = torch.Generator().manual_seed(seed)
    parts = {
        "spikes": lambda: (out.spikes * torch.randn(out.spikes.shape, generator=gen)).sum(),
        "membrane": lambda: (out.membrane * torch.randn(out.membrane.shape, generator=gen)).sum(),
        "state": lambda: (out.v * torch.randn(out.v.shape, generator=gen)).sum(),
    }
    sum(parts[k]() for k in use).backward()
    grads = (x.grad, None if v0 is None else v0.grad)
    return out, grads


def assert_same(ref, fast):
    (out_r, g_r), (out_f, g_f) = ref, fast
    assert out_f.spikes.dtype == out_r.spikes.dtype and out_f.membrane.dtype == out_r.membrane.dtype
    assert torch.equal(out_f.spikes, out_r.spikes)
    assert torch.equal(out_f.membrane, out_r.membrane)
    assert torch.equal(out_f.v, out_r.v)
    for a, b in zip(g_f, g_r):
        if b is None:
            assert a is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def _inputs(seed: int, T: int = 12, shape: tuple[int, ...] = (4, 40), state: bool = True, neuron: str = ""):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn((T, *shape), generator=gen) * 0.8 + 0.35) * GAIN.get(neuron, 1.0)
    v0 = torch.randn(shape, generator=gen) * 0.5 if state else None
    return x, v0


@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detach_reset"])
@pytest.mark.parametrize("sur", list(SURROGATES))
@pytest.mark.parametrize("neuron", list(NEURONS))
def test_fused_equals_reference(neuron, sur, detach):
    x, v0 = _inputs(list(NEURONS).index(neuron) * 100 + list(SURROGATES).index(sur), neuron=neuron)
    make = NEURONS[neuron]
    ref = _run(make(SURROGATES[sur](), detach, "torch"), x, v0, ("spikes", "membrane", "state"))
    fast = _run(make(SURROGATES[sur](), detach, "fused"), x, v0, ("spikes", "membrane", "state"))
    assert 0.05 < ref[0].spikes.mean() < 0.7  # both branches of every reset are exercised
    assert _backend_of(ref[0]) == "torch" and _backend_of(fast[0]) == "fused"
    assert_same(ref, fast)


@pytest.mark.parametrize("use", [("spikes",), ("membrane",), ("state",), ("spikes", "state")])
@pytest.mark.parametrize("neuron", ["lif_hard_decay_input", "lif_soft_beta", "leaky_zero", "leaky_subtract"])
def test_fused_gradient_from_each_output_and_fresh_state(neuron, use):
    x, _ = _inputs(7, T=9, shape=(3, 5, 7), state=False, neuron=neuron)
    make = NEURONS[neuron]
    ref = _run(make(ATan(), False, "torch"), x, None, use)
    fast = _run(make(ATan(), False, "fused"), x, None, use)
    assert_same(ref, fast)


def test_fused_double_precision_and_half_input():
    x, v0 = _inputs(3)
    for dtype in (torch.float64, torch.bfloat16):
        xd = x.to(dtype)
        ref = _run(LIFNode(tau=2.5, backend="torch"), xd, v0, ("spikes", "membrane"))
        fast = _run(LIFNode(tau=2.5, backend="fused"), xd, v0, ("spikes", "membrane"))
        # spikes in the input dtype, membrane in fp32 (fp64 for fp64 input)
        assert fast[0].spikes.dtype == dtype and fast[0].membrane.dtype == torch.promote_types(dtype, torch.float32)
        assert_same(ref, fast)


def test_fused_stride0_input_and_state_continues():
    # DirectEncoder → Linear gives a [T, ...] view with time stride 0
    base = torch.randn(4, 30) + 0.6
    x = base.unsqueeze(0).expand(10, 4, 30)
    assert_same(
        _run(LIFNode(tau=2.0, backend="torch"), x, None, ("spikes",)),
        _run(LIFNode(tau=2.0, backend="fused"), x, None, ("spikes",)),
    )
    node = LIFNode(tau=3.0, v_reset=None, backend="fused")
    xs, _ = _inputs(11, T=10)
    full = node(xs)
    first = node(xs[:4])
    second = node(xs[4:], first.state)
    assert torch.equal(torch.cat([first.spikes, second.spikes]), full.spikes)
    assert torch.equal(second.v, full.v)


def test_fused_monitor_states_in_a_model():
    x, _ = _inputs(5)
    recs = {}
    for backend in ("torch", "fused"):
        model = torch.nn.ModuleDict({"neuron": LeakyNode(beta=0.9, backend=backend)})
        with Monitor(model, names=["neuron"], record=("spikes", "states")) as mon:
            model["neuron"](x)
        recs[backend] = (mon["neuron"]["v"][0], mon["neuron"]["spikes"][0])
        assert model["neuron"].record_states is False  # the monitor turned it off again
    assert torch.equal(recs["torch"][0], recs["fused"][0]) and torch.equal(recs["torch"][1], recs["fused"][1])


# --- which backend runs ------------------------------------------------------------------------


class ChargeOnly(BaseNode):
    """A user's neuron: its charge equation only."""

    def charge(self, x, v):
        return 0.5 * v + x


class MyLIF(LIFNode):
    def charge(self, x, v):  # changed dynamics: the LIF kernel must not be used
        return v + x * 0.3


class OwnForward(Surrogate):
    def forward(self, x, strict=False):
        return (x >= 0).to(x.dtype) + 0 * x


class Cubic(Surrogate):
    """A user's surrogate with a derivative only: the fused path evaluates it."""

    def derivative(self, x):
        return 1.0 / (1.0 + x.abs() ** 3)


def _backend_of(out) -> str:
    name = type(out.membrane.grad_fn).__name__
    return "fused" if ("LIFFunction" in name or "LeakyFunction" in name) else "torch"


def test_auto_picks_fused_on_cpu_and_falls_back_for_user_neurons():
    x = torch.rand(5, 2, 3, requires_grad=True)
    for node in (IFNode(), LIFNode(), LeakyNode()):
        assert _backend_of(node(x)) == "fused", type(node).__name__
    for node in (ChargeOnly(), MyLIF(), LIFNode(surrogate=OwnForward())):
        out = node(x)
        assert _backend_of(out) == "torch"
        out.spikes.sum().backward()  # and still trains
    with pytest.raises(ConfigError, match="backend=fused: ChargeOnly has no fused form"):
        ChargeOnly(backend="fused")(x)


def test_user_surrogate_with_derivative_runs_fused():
    x, v0 = _inputs(9)
    ref = _run(LIFNode(tau=2.0, surrogate=Cubic(), backend="torch"), x, v0, ("spikes",))
    fast = _run(LIFNode(tau=2.0, surrogate=Cubic(), backend="auto"), x, v0, ("spikes",))
    assert _backend_of(fast[0]) == "fused"
    assert_same(ref, fast)


def test_backend_validation():
    with pytest.raises(ConfigError, match="neuron backend must be one of"):
        LIFNode(backend="cuda")
    if "TRITON_INTERPRET" not in os.environ:
        with pytest.raises(ConfigError, match="backend=triton needs a CUDA tensor"):
            LIFNode(backend="triton")(torch.rand(3, 2, 4))
    assert "backend='torch'" in repr(LIFNode(backend="torch")) and "backend" not in repr(LIFNode())


# --- Triton kernels under the interpreter ------------------------------------------------------

_TRITON_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from tests.test_kernels import NEURONS, SURROGATES, _inputs, _run, assert_same
    cases = [(n, "atan", d) for n in NEURONS for d in (False, True)]
    cases += [("lif_hard_decay_input", s, False) for s in SURROGATES]
    cases += [("leaky_zero", s, False) for s in ("sigmoid", "fast_sigmoid", "rectangle", "spike_operator")]
    failures = []
    for i, (n, s, d) in enumerate(cases):
        # 600 neurons per step: two programs of 512, the second one masked
        x, v0 = _inputs(i, T=6, shape=(2, 300), neuron=n)
        try:
            ref = _run(NEURONS[n](SURROGATES[s](), d, "torch"), x, v0, ("spikes", "membrane", "state"))
            fast = _run(NEURONS[n](SURROGATES[s](), d, "triton"), x, v0, ("spikes", "membrane", "state"))
            assert "Triton" in type(fast[0].membrane.grad_fn).__name__
            assert_same(ref, fast)
        except AssertionError as e:
            failures.append(f"{n}/{s}/detach={d}: {e}")
    # half-precision I/O: same spikes as the reference on the same input; fp32 membrane
    for dtype in (torch.bfloat16, torch.float16):
        x, v0 = _inputs(99, T=6, shape=(2, 300), neuron="lif_soft_decay_input")
        x = x.to(dtype)
        for n in ("lif_soft_decay_input", "leaky_subtract"):
            ref = _run(NEURONS[n](SURROGATES["atan"](), False, "torch"), x, v0, ("spikes",))
            fast = _run(NEURONS[n](SURROGATES["atan"](), False, "triton"), x, v0, ("spikes",))
            ok = (fast[0].spikes.dtype == dtype and fast[0].membrane.dtype == torch.float32
                  and torch.equal(fast[0].spikes, ref[0].spikes) and torch.equal(fast[0].membrane, ref[0].membrane)
                  and fast[1][0].dtype == dtype
                  and torch.allclose(fast[1][0].float(), ref[1][0].float(), rtol=2e-2, atol=2e-2))
            if not ok:
                failures.append(f"{n}/{dtype}")
    print(json.dumps({"cases": len(cases) + 4, "failures": failures}))
    """
)


def test_triton_kernels_equal_reference_under_interpreter():
    result = run_under_triton_interpreter(_TRITON_SCRIPT)
    assert result["cases"] > 30 and result["failures"] == [], result["failures"]
