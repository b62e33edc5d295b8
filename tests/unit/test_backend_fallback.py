"""``neuron.backend=auto`` never crashes a run because a Triton kernel fails (issue 20, part 3).

No GPU here: Triton is made to look available (``auto``'s order and ``why_not``) and its kernels to fail,
as a compile error (registers, shared memory) or a launch error would on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from spikelight.core.errors import BackendError
from spikelight.dynamics import dispatch
from spikelight.dynamics.fused import recurrent as rec_fn
from spikelight.layers.recurrent import RecurrentSpikingLayer
from spikelight.neurons import ALIFNode, LIFNode


@pytest.fixture
def failing_triton(monkeypatch):
    """Triton offered first (as on CUDA) and every Triton launch failing like a ptxas error."""
    from spikelight.dynamics.triton import neurons as tn
    from spikelight.dynamics.triton import recurrent as tr

    def boom(*args, **kwargs):
        raise RuntimeError("PTXASError: ptxas fatal : Entry function uses too much shared data")

    real_why_not = dispatch.why_not
    monkeypatch.setattr(dispatch, "_auto_order", lambda device: ("triton", "native", "fused"))
    monkeypatch.setattr(dispatch, "why_not", lambda b, *a, **k: None if b == "triton" else real_why_not(b, *a, **k))
    monkeypatch.setattr(tr, "recurrent_forward", boom)
    monkeypatch.setattr(tn.TritonNeuronFunction, "apply", boom)
    monkeypatch.setattr(dispatch, "_TRITON_PROBES", {})


def _run(layer, x):
    out = layer(x)
    (out.spikes.sum() + out.membrane.pow(2).mean()).backward()
    return out.spikes.detach(), layer.fc.weight.grad.clone()


@pytest.mark.parametrize("make", [lambda b: LIFNode(tau=2.0, backend=b), lambda b: ALIFNode(tau=3.0, backend=b)])
def test_auto_falls_back_with_one_warning_and_the_same_numbers(failing_triton, make):
    x = torch.rand(8, 3, 4) * 2
    torch.manual_seed(0)
    expected = _run(RecurrentSpikingLayer(4, 16, make("fused")), x)
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer(4, 16, make("auto"))
    with pytest.warns(RuntimeWarning, match="Triton kernels failed .*PTXASError.*another backend"):
        got = _run(layer, x)
    assert torch.equal(got[0], expected[0]) and torch.allclose(got[1], expected[1], rtol=1e-5)
    with warnings_as_errors():  # remembered: no second probe, no second warning
        _run(layer, x)


def test_a_neuron_alone_falls_back_too(failing_triton):
    x = torch.rand(6, 2, 5) * 3
    with pytest.warns(RuntimeWarning, match="LIFNode: the Triton kernels failed"):
        out = LIFNode(tau=2.0, backend="auto")(x)
    assert torch.equal(out.spikes, LIFNode(tau=2.0, backend="fused")(x).spikes)


def test_explicit_triton_fails_in_one_line(failing_triton):
    layer = RecurrentSpikingLayer(4, 8, lambda: LIFNode(tau=2.0, backend="triton"))
    with pytest.raises(BackendError, match=r"^neuron.backend=triton: LIFNode's Triton kernels failed \(RuntimeError: "
                       r"PTXASError.*\); use neuron.backend=auto or fused$"):  # fmt: skip
        layer(torch.rand(5, 2, 4))


def test_a_failure_after_the_probe_passed_still_falls_back(failing_triton, monkeypatch):
    """The real call can specialise differently from the probe: its failure is caught the same way."""
    monkeypatch.setattr(dispatch, "triton_works", lambda *a, **k: True)
    x = torch.rand(5, 2, 4)
    with pytest.warns(RuntimeWarning, match="Triton kernels failed"):
        out = RecurrentSpikingLayer(4, 8, lambda: LIFNode(tau=2.0, backend="auto"))(x)
    assert out.spikes.shape == (5, 2, 8)


@pytest.mark.parametrize("fallback", [True, False])
def test_the_recurrent_backward_falls_back_to_the_fused_one(monkeypatch, fallback):
    """A backward kernel that fails after its forward ran: under auto the fused backward (same saved tensors)."""
    def boom(*args, **kwargs):
        raise RuntimeError("CUDA error: too many resources requested for launch")

    monkeypatch.setattr(rec_fn, "_triton_backward", boom)
    spec = ALIFNode(tau=3.0, refractory=1)._kernel_spec()
    ff = (torch.rand(7, 2, 6) * 2).requires_grad_()
    v0, a0, ref0 = torch.zeros(2, 6), torch.zeros(2, 6), torch.zeros(2, 6)
    beta = torch.full((6,), 1.8)
    sur = ALIFNode().surrogate
    s, h, *_ = rec_fn.RecurrentFunction.apply(ff, None, v0, a0, ref0, None, beta, spec, sur, None, torch.float32,
                                              None, "fused")  # fmt: skip
    (expected,) = torch.autograd.grad(s.sum() + h.sum(), ff)
    s, h, *_ = rec_fn.RecurrentFunction.apply(ff, None, v0, a0, ref0, None, beta, spec, sur, None, torch.float32,
                                              None, "fused")  # fmt: skip
    s.grad_fn.backend, s.grad_fn.fallback = "triton", fallback  # as if the forward had run on the kernels
    if not fallback:
        with pytest.raises(BackendError, match="^neuron.backend=triton: the recurrent backward kernel failed"):
            torch.autograd.grad(s.sum() + h.sum(), ff)
        return
    with pytest.warns(RuntimeWarning, match="computes this backward fused"):
        (got,) = torch.autograd.grad(s.sum() + h.sum(), ff)
    assert torch.equal(got, expected)


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", RuntimeWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)
