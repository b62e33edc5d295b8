"""Edge cases of the fused dual-exponential neuron (dynamics/fused/dual_exp.py) beyond the matrix
(tests/equivalence/test_matrix.py): gradients from each output alone (g included: nothing else
reads it), fresh state, monitors, a subclass that changes the dynamics, the threshold hit exactly.
"""

from __future__ import annotations

import pytest
import torch

from spikelight.core.errors import ConfigError
from spikelight.monitor import Monitor
from spikelight.neurons import DualExpNode, DualExpState

from .cases import SURROGATES


def _run(backend: str, sur: str, detach: bool, x: torch.Tensor, state: DualExpState | None, use=("s", "u", "m", "sT", "g")):
    node = DualExpNode(tau_m=5.0, tau_s=3.0, tau_grad=2.5, surrogate=SURROGATES[sur](), detach_reset=detach,
                       backend=backend)  # fmt: skip
    x = x.clone().requires_grad_()
    st = None if state is None else DualExpState(*(f.clone().requires_grad_() for f in state))
    out = node(x, st)
    gen = torch.Generator().manual_seed(3)
    r = lambda t: torch.randn(t.shape, generator=gen)  # noqa: E731
    terms = {"s": out.spikes, "u": out.membrane, "m": out.state.m, "sT": out.state.s, "g": out.state.g}
    sum((terms[k] * r(terms[k])).sum() for k in use).backward()
    grads = [x.grad] + ([] if st is None else [f.grad for f in st])
    return out, grads


def _inputs(seed: int, state: bool):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(14, 3, 25, generator=gen) * 1.2 + 0.9
    if not state:
        return x, None
    return x, DualExpState(*(torch.rand(3, 25, generator=gen) for _ in range(3)))


def assert_same(ref, fast):
    (out_r, g_r), (out_f, g_f) = ref, fast
    assert type(out_f.membrane.grad_fn).__name__ == "DualExpFunctionBackward"
    assert type(out_r.membrane.grad_fn).__name__ != "DualExpFunctionBackward"
    assert torch.equal(out_f.spikes, out_r.spikes)
    assert torch.equal(out_f.membrane, out_r.membrane)
    for a, b in zip(out_f.state, out_r.state):
        assert torch.equal(a, b)
    assert len(g_f) == len(g_r)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(b.abs().max().item(), 1e-12))


@pytest.mark.parametrize("use", [("s",), ("u",), ("m",), ("g",), ("s", "sT")])
@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detach_reset"])
def test_gradient_from_each_output_and_fresh_state(use, detach):
    x, _ = _inputs(11, state=False)
    assert_same(_run("torch", "atan", detach, x, None, use), _run("fused", "atan", detach, x, None, use))


def test_auto_fuses_dual_exp_and_monitors_see_the_loops_states():
    x, _ = _inputs(5, state=False)
    recs = {}
    for backend in ("torch", "auto"):
        node = DualExpNode(backend=backend)
        with Monitor(torch.nn.Sequential(node), record=("spikes", "membrane", "states")) as mon:
            out = node(x.requires_grad_())
        recs[backend] = mon["0"]
        assert (type(out.membrane.grad_fn).__name__ == "DualExpFunctionBackward") == (backend == "auto")
    for k in recs["torch"]:
        assert torch.equal(recs["auto"][k][0], recs["torch"][k][0]), k


def test_subclass_that_changes_the_dynamics_runs_the_loop():
    class Faster(DualExpNode):
        @property
        def thetas(self):
            return 0.5, 0.6, 0.4

    assert Faster()._kernel_spec() is None
    with pytest.raises(ConfigError, match="no fused form"):
        Faster(backend="fused")(torch.rand(3, 2, 4))
    with pytest.raises(ConfigError, match="no Triton kernel"):
        DualExpNode(backend="triton")(torch.rand(3, 2, 4))


def test_fires_at_exactly_the_threshold_like_the_reference():
    # u ≥ ϑ fires (the reference's surrogate convention): put ϑ exactly on a value u takes
    x = torch.rand(4, 2, 6) + 0.5
    u0 = DualExpNode(v_threshold=1e6, backend="torch")(x).membrane[0, 0, 0].item()
    spikes = {b: DualExpNode(v_threshold=u0, backend=b)(x).spikes for b in ("torch", "fused")}
    assert spikes["torch"][0, 0, 0] == 1 and torch.equal(spikes["fused"], spikes["torch"])
