"""Edge cases of the fast neuron paths, beyond the matrix (tests/equivalence/test_matrix.py):
gradients from each output alone, fp64 / bf16 input, stride-0 input, a state continued
across calls, monitors, which backend ``auto`` picks and the one-line refusals.
"""

from __future__ import annotations

import os
import textwrap

import pytest
import torch

from spikelight.core.errors import ConfigError
from spikelight.core.surrogate import ATan, Surrogate
from spikelight.monitor import Monitor
from spikelight.neurons import BaseNode, IFNode, LeakyNode, LIFNode

from ..conftest import run_under_triton_interpreter
from .cases import GAIN, NEURONS, Cubic


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


@pytest.mark.parametrize("use", [("spikes",), ("membrane",), ("state",), ("spikes", "state")])
@pytest.mark.parametrize("neuron", ["lif_hard_decay_input", "lif_soft_beta", "leaky_zero", "leaky_subtract"])
@pytest.mark.parametrize("backend", ["fused", "native"])
def test_fused_gradient_from_each_output_and_fresh_state(neuron, use, backend):
    if backend == "native" and neuron.startswith("leaky"):
        backend = "fused"  # Leaky has no C loops
    x, _ = _inputs(7, T=9, shape=(3, 5, 7), state=False, neuron=neuron)
    make = NEURONS[neuron]
    ref = _run(make(ATan(), False, "torch"), x, None, use)
    fast = _run(make(ATan(), False, backend), x, None, use)
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


def _backend_of(out) -> str:
    node = out.membrane.grad_fn
    name = type(node).__name__
    if name == "RecurrentFunctionBackward":
        return node.backend
    return "fused" if name in ("LeakyFunctionBackward", "DualExpFunctionBackward") else "torch"


def test_auto_picks_native_then_fused_on_cpu_and_falls_back_for_user_neurons():
    x = torch.rand(5, 2, 3, requires_grad=True)
    for node, backend in ((IFNode(), "native"), (LIFNode(), "native"), (LeakyNode(), "fused")):
        assert _backend_of(node(x)) == backend, type(node).__name__
    assert _backend_of(LIFNode()(x.double())) == "fused"  # no C loops in fp64
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
    assert _backend_of(fast[0]) == "native"
    assert_same(ref, fast)


def test_backend_validation():
    with pytest.raises(ConfigError, match="neuron backend must be one of"):
        LIFNode(backend="cuda")
    if "TRITON_INTERPRET" not in os.environ:
        with pytest.raises(ConfigError, match="backend=triton: LIFNode needs a CUDA tensor"):
            LIFNode(backend="triton")(torch.rand(3, 2, 4))
    assert "backend='torch'" in repr(LIFNode(backend="torch")) and "backend" not in repr(LIFNode())


# --- Triton kernels under the interpreter ------------------------------------------------------

_TRITON_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from tests.equivalence.cases import NEURONS, SURROGATES
    from tests.equivalence.test_fast_paths import _inputs, _run
    failures = []
    # half-precision I/O of the element-wise kernels: the reference's spikes and fp32 membrane on the same input
    for dtype in (torch.bfloat16, torch.float16):
        x, v0 = _inputs(99, T=6, shape=(2, 300), neuron="lif_soft_decay_input")
        x = x.to(dtype)
        for n in ("lif_soft_decay_input", "leaky_subtract"):
            ref = _run(NEURONS[n](SURROGATES["atan"](), False, "torch"), x, v0, ("spikes",))
            fast = _run(NEURONS[n](SURROGATES["atan"](), False, "triton"), x, v0, ("spikes",))
            ok = ("Triton" in type(fast[0].membrane.grad_fn).__name__
                  and fast[0].spikes.dtype == dtype and fast[0].membrane.dtype == torch.float32
                  and torch.equal(fast[0].spikes, ref[0].spikes) and torch.equal(fast[0].membrane, ref[0].membrane)
                  and fast[1][0].dtype == dtype
                  and torch.allclose(fast[1][0].float(), ref[1][0].float(), rtol=2e-2, atol=2e-2))
            if not ok:
                failures.append(f"{n}/{dtype}")
    print(json.dumps({"cases": 4, "failures": failures}))
    """
)


def test_triton_half_precision_io_under_interpreter():
    result = run_under_triton_interpreter(_TRITON_SCRIPT)
    assert result["cases"] == 4 and result["failures"] == [], result["failures"]


@pytest.mark.parametrize("backend", ["auto", "fused", "torch"])
@pytest.mark.parametrize("neuron", list(NEURONS))
def test_no_neurons_in_the_last_axis_is_an_empty_output(neuron, backend):
    x = torch.zeros(3, 2, 0, requires_grad=True)
    out = NEURONS[neuron](ATan(), False, backend)(x)
    assert out.spikes.shape == out.membrane.shape == (3, 2, 0)
    out.membrane.sum().backward()
