"""The fused recurrent path (LSNN layer, ALIF) against the reference loop (``backend="torch"``).

Same weights, same random input and initial state → identical spikes, membrane and
final state; gradients of the input, W_in, W_rec and the initial state (v, a, z)
within 1e-5 relative in fp32 (``rtol=1e-5`` with an absolute floor of 1e-5 × the
largest gradient, as tests/test_kernels.py). LIF / IF / ALIF × hard and soft reset
× detach_reset × refractory × normalize × every surrogate × truncated BPTT on and
off, and through the whole LSNN model with and without the readout filter.
"""

from __future__ import annotations

import pytest
import torch

from spikelight.core.errors import ConfigError
from spikelight.core.surrogate import ATan, Sigmoid, Triangle
from spikelight.core.types import VState
from spikelight.dynamics.fused.recurrent import RecurrentFunction
from spikelight.dynamics.native import library as cpu_native
from spikelight.layers.recurrent import RecurrentState
from spikelight.models import LSNN, RecurrentSpikingLayer
from spikelight.monitor import Monitor
from spikelight.neurons import ALIFNode, ALIFState, IFNode, LeakyNode, LIFNode

from .conftest import compose_cfg
from .test_kernels import SURROGATES, ChargeOnly, OwnForward


def _strict(node):
    """The neuron firing on h > v_th (snnTorch's convention, a class attribute a user subclass may set)."""
    node.strict_threshold = True
    return node


# name -> factory(surrogate, detach_reset, backend); every reset form, refractory, normalize, adaptive or not
NEURONS = {
    "lif_hard": lambda s, d, b: LIFNode(tau=3.0, surrogate=s, detach_reset=d, backend=b),
    "lif_soft_beta": lambda s, d, b: LIFNode(beta=0.8, v_reset=None, surrogate=s, detach_reset=d, backend=b),
    "lif_vreset": lambda s, d, b: LIFNode(
        tau=2.5, decay_input=False, v_reset=-0.2, v_threshold=0.8, surrogate=s, detach_reset=d, backend=b
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
}
# input gain so that 5-70% of the steps fire (decay_input divides the input by tau)
GAIN = {"lif_hard": 3.0, "lif_strict": 3.0, "alif_hard": 3.5, "alif_refractory": 3.5, "alif_plain_normalize": 2.5}
T, B, F, H = 16, 3, 5, 12


def _inputs(seed: int, neuron: str, explicit_state: bool):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, B, F, generator=gen) * 0.8 + 0.5) * GAIN.get(neuron, 1.0)
    if not explicit_state:
        return x, None
    v = torch.randn(B, H, generator=gen) * 0.4
    z = (torch.rand(B, H, generator=gen) < 0.3).float()
    if neuron.startswith("alif"):
        a = torch.rand(B, H, generator=gen)
        ref = torch.randint(0, 3, (B, H), generator=gen).float()
        return x, RecurrentState(ALIFState(v, a, ref), z)
    return x, RecurrentState(VState(v), z)


def _leaves(state: RecurrentState | None) -> RecurrentState | None:
    """A copy of the state whose float fields (but the refractory count) require grad."""
    if state is None:
        return None
    ns = state.neuron
    fields = [f.clone().requires_grad_(name != "ref") for name, f in zip(ns._fields, ns)]
    return RecurrentState(type(ns)(*fields), state.spikes.clone().requires_grad_())


def _run_layer(neuron: str, sur: str, detach: bool, backend: str, x, state, tbptt):
    torch.manual_seed(0)  # the same weights for both backends
    layer = RecurrentSpikingLayer(F, H, lambda: NEURONS[neuron](SURROGATES[sur](), detach, backend), tbptt_steps=tbptt)
    with torch.no_grad():
        layer.rec.weight.mul_(2.0)  # a recurrence strong enough to change who fires
    x = x.clone().requires_grad_()
    state = _leaves(state)
    out = layer(x, state)
    gen = torch.Generator().manual_seed(1)
    loss = (out.spikes * torch.randn(out.spikes.shape, generator=gen)).sum()
    loss = loss + 0.3 * (out.membrane * torch.randn(out.membrane.shape, generator=gen)).sum()
    final = out.state.neuron
    loss = loss + (final.v * torch.randn(final.v.shape, generator=gen)).sum()
    if isinstance(final, ALIFState):
        loss = loss + (final.a * torch.randn(final.a.shape, generator=gen)).sum()
    loss = loss + (out.state.spikes * torch.randn(out.state.spikes.shape, generator=gen)).sum()
    loss.backward()
    grads = {"x": x.grad, "w_in": layer.fc.weight.grad, "w_rec": layer.rec.weight.grad}
    if state is not None:
        grads.update({"v0": state.neuron.v.grad, "z0": state.spikes.grad})
        if isinstance(state.neuron, ALIFState):
            grads["a0"] = state.neuron.a.grad
    return out, grads


def _close(a: torch.Tensor | None, b: torch.Tensor | None, what: str) -> None:
    assert (a is None) == (b is None), what
    if b is not None:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item(), msg=what)


def _fused(out) -> bool:
    return type(out.membrane.grad_fn).__name__ == "RecurrentFunctionBackward"


@pytest.fixture(params=["native", "script"], autouse=True)
def loops(request, monkeypatch) -> str:
    """Every test runs the fused path twice: on the C loops (the CPU default) and on the TorchScript ones."""
    if request.param == "script":
        monkeypatch.setattr(cpu_native, "available", lambda: False)
    elif not cpu_native.available():
        pytest.skip("no C compiler here: the C loops cannot be built (test_c_loops_build_where_a_compiler_is checks)")
    return request.param


def assert_same_values(a: torch.Tensor, b: torch.Tensor, loops: str, what: str = "") -> None:
    """Bit-identical on the TorchScript loops; on the C loops the recurrent sum rounds in another order."""
    if loops == "script":
        assert torch.equal(a, b), what
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * max(1.0, b.abs().max().item()), msg=what)


def assert_same_layer(ref, fast):
    (out_r, g_r), (out_f, g_f) = ref, fast
    assert not _fused(out_r) and _fused(out_f)
    loops = out_f.membrane.grad_fn.loops
    assert torch.equal(out_f.spikes, out_r.spikes)
    assert_same_values(out_f.membrane, out_r.membrane, loops, "h")
    for name, a, b in zip(out_r.state.neuron._fields, out_f.state.neuron, out_r.state.neuron):
        assert_same_values(a, b, loops, name)
    assert torch.equal(out_f.state.spikes, out_r.state.spikes)
    assert g_f.keys() == g_r.keys()
    for k in g_r:
        _close(g_f[k], g_r[k], k)


@pytest.mark.parametrize("tbptt", [None, 5], ids=["bptt", "tbptt5"])
@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detach_reset"])
@pytest.mark.parametrize("sur", ["atan", "triangle"])
@pytest.mark.parametrize("neuron", list(NEURONS))
def test_fused_layer_equals_reference(neuron, sur, detach, tbptt):
    x, state = _inputs(list(NEURONS).index(neuron) * 10 + detach, neuron, explicit_state=True)
    ref = _run_layer(neuron, sur, detach, "torch", x, state, tbptt)
    fast = _run_layer(neuron, sur, detach, "fused", x, state, tbptt)
    assert 0.05 < ref[0].spikes.mean() < 0.7  # both branches of fire and reset are exercised
    assert_same_layer(ref, fast)


@pytest.mark.parametrize("sur", list(SURROGATES))
@pytest.mark.parametrize("neuron", ["lif_hard", "alif_hard", "alif_soft_normalize"])
def test_fused_layer_every_surrogate_fresh_state(neuron, sur):
    x, _ = _inputs(7 + list(SURROGATES).index(sur), neuron, explicit_state=False)
    ref = _run_layer(neuron, sur, False, "torch", x, None, None)
    fast = _run_layer(neuron, sur, False, "fused", x, None, None)
    assert_same_layer(ref, fast)


def test_refractory_really_blocks_and_tbptt_really_truncates():
    # the cases above can only fail if these mechanisms act: check they do on the same inputs
    x, state = _inputs(3, "alif_refractory", explicit_state=True)
    out, _ = _run_layer("alif_refractory", "atan", False, "fused", x, state, None)
    s = out.spikes
    assert s.sum() > 10 and not (s[1:] * s[:-1]).any()  # never two spikes in a row with refractory=2
    full = _run_layer("alif_hard", "atan", False, "fused", *_inputs(4, "alif_hard", True), None)[1]
    cut = _run_layer("alif_hard", "atan", False, "fused", *_inputs(4, "alif_hard", True), 5)[1]
    assert not torch.allclose(full["w_rec"], cut["w_rec"]) and cut["v0"].abs().sum() > 0


def _run_lsnn(neuron: str, backend: str, readout_tau, tbptt, x, y):
    torch.manual_seed(0)
    model = LSNN(lambda: NEURONS[neuron](ATan(), False, backend), in_features=F, hidden=H, num_classes=4,
                 readout_tau=readout_tau, tbptt_steps=tbptt)  # fmt: skip
    with torch.no_grad():
        model.rec.rec.weight.mul_(2.0)
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out.membrane[-6:].mean(0), y) + 0.1 * out.hidden["rec.neuron"].mean()
    loss.backward()
    return out, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("tbptt", [None, 6], ids=["bptt", "tbptt6"])
@pytest.mark.parametrize("readout_tau", [20.0, None], ids=["leaky_readout", "linear_readout"])
@pytest.mark.parametrize("neuron", ["lif_hard", "alif_hard", "alif_refractory"])
def test_lsnn_model_fused_equals_reference(neuron, readout_tau, tbptt, loops):
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(T, B, F, generator=gen) * 0.8 + 0.5) * GAIN.get(neuron, 1.0)
    y = torch.randint(0, 4, (B,), generator=gen)
    out_r, g_r = _run_lsnn(neuron, "torch", readout_tau, tbptt, x, y)
    out_f, g_f = _run_lsnn(neuron, "fused", readout_tau, tbptt, x, y)
    assert torch.equal(out_f.hidden["rec.neuron"], out_r.hidden["rec.neuron"])
    # the fused readout filter rounds like the loop; the C product with the spikes sums in another order
    assert_same_values(out_f.membrane, out_r.membrane, loops, "readout")
    assert_same_values(out_f.state.readout, out_r.state.readout, loops, "readout state")
    assert g_r["rec.rec.weight"].abs().sum() > 0
    for name in g_r:
        _close(g_f[name], g_r[name], name)


def test_fused_state_carries_over_between_calls():
    x, _ = _inputs(5, "alif_hard", explicit_state=False)
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer(F, H, lambda: NEURONS["alif_hard"](ATan(), False, "fused"))
    with torch.no_grad():
        full = layer(x)
        first = layer(x[:7])
        second = layer(x[7:], first.state)
    assert torch.equal(torch.cat([first.spikes, second.spikes]), full.spikes)
    for a, b in zip(second.state.neuron, full.state.neuron):
        assert torch.equal(a, b)


@pytest.mark.parametrize("neuron", ["alif_refractory", "lif_vreset"])
def test_monitor_records_the_same_states(neuron, loops):
    x, _ = _inputs(9, neuron, explicit_state=False)
    recs = {}
    for backend in ("torch", "fused"):
        torch.manual_seed(0)
        model = LSNN(lambda b=backend: NEURONS[neuron](ATan(), False, b), in_features=F, hidden=H)
        with Monitor(model, names=["rec.neuron"], record=("spikes", "membrane", "states")) as mon:
            model(x)
        recs[backend] = {k: v[0] for k, v in mon["rec.neuron"].items()}
        assert model.rec.neuron.record_states is False
    assert recs["fused"].keys() == recs["torch"].keys() and "v" in recs["fused"]
    for k in recs["torch"]:
        assert_same_values(recs["fused"][k], recs["torch"][k], loops, k)


# --- ALIF on its own (feed-forward): the same Function without W_rec ----------------------------


@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detach_reset"])
@pytest.mark.parametrize("neuron", [n for n in NEURONS if n.startswith("alif")])
def test_fused_alif_neuron_equals_reference(neuron, detach):
    gen = torch.Generator().manual_seed(21)
    x = (torch.randn(10, 2, 3, 8, generator=gen) * 0.8 + 0.5) * GAIN.get(neuron, 1.0)
    state = ALIFState(torch.randn(2, 3, 8, generator=gen) * 0.3, torch.rand(2, 3, 8, generator=gen),
                      torch.randint(0, 3, (2, 3, 8), generator=gen).float())  # fmt: skip
    outs, grads = {}, {}
    for backend in ("torch", "fused"):
        node = NEURONS[neuron](Sigmoid(), detach, backend)
        xb = x.clone().requires_grad_()
        st = ALIFState(state.v.clone().requires_grad_(), state.a.clone().requires_grad_(), state.ref)
        out = node(xb, st)
        g = torch.Generator().manual_seed(2)
        loss = (out.spikes * torch.randn(out.spikes.shape, generator=g)).sum() + out.membrane.sum() * 0.2
        (loss + out.state.v.sum() + (out.state.a * 2).sum()).backward()
        outs[backend], grads[backend] = out, (xb.grad, st.v.grad, st.a.grad)
    assert type(outs["fused"].membrane.grad_fn).__name__ == "RecurrentFunctionBackward"
    assert 0.05 < outs["torch"].spikes.mean() < 0.7
    assert torch.equal(outs["fused"].spikes, outs["torch"].spikes)
    assert torch.equal(outs["fused"].membrane, outs["torch"].membrane)
    for a, b in zip(outs["fused"].state, outs["torch"].state):
        assert torch.equal(a, b)
    for a, b, what in zip(grads["fused"], grads["torch"], ("x", "v0", "a0")):
        _close(a, b, what)


# --- which backend runs -------------------------------------------------------------------------


def _layer_backend(neuron) -> str:
    layer = RecurrentSpikingLayer(F, H, lambda: neuron)
    out = layer(torch.rand(4, 2, F))
    return "fused" if _fused(out) else "torch"


def test_auto_fuses_lif_if_alif_and_falls_back_for_the_rest():
    for neuron in (LIFNode(), IFNode(), ALIFNode()):
        assert _layer_backend(neuron) == "fused", type(neuron).__name__
    for neuron in (LIFNode(backend="torch"), ALIFNode(backend="torch"), LeakyNode(), ChargeOnly(),
                   LIFNode(surrogate=OwnForward())):  # fmt: skip
        assert _layer_backend(neuron) == "torch", repr(neuron)


def test_explicit_backends_that_cannot_run_are_one_line():
    with pytest.raises(ConfigError, match="Leaky.*no fused recurrent form"):
        _layer_backend(LeakyNode(backend="fused"))
    with pytest.raises(ConfigError, match="recurrent Triton kernel needs a CUDA tensor"):
        _layer_backend(LIFNode(backend="triton"))
    with pytest.raises(ConfigError, match="backend=triton needs a CUDA tensor"):
        ALIFNode(backend="triton")(torch.rand(3, 2, 4))
    with pytest.raises(ConfigError, match="neuron backend must be one of"):
        ALIFNode(backend="cuda")


def test_subclass_that_changes_alif_dynamics_runs_the_loop():
    class HigherThreshold(ALIFNode):
        def threshold(self, state):
            return super().threshold(state) + 0.5

    assert HigherThreshold()._kernel_spec() is None and _layer_backend(HigherThreshold()) == "torch"


def test_double_precision_stays_double():
    x, state = _inputs(2, "alif_hard", explicit_state=False)
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer(F, H, lambda: ALIFNode(tau=3.0, beta=0.6, backend="fused")).double()
    out = layer(x.double())
    assert _fused(out) and out.spikes.dtype == out.membrane.dtype == out.state.neuron.a.dtype == torch.float64


def test_bf16_autocast_gives_the_reference_spikes():
    # under autocast F.linear(z, W_rec) runs in bf16 in the loop; the fused product must too
    x, _ = _inputs(13, "lif_hard", explicit_state=False)
    spikes = {}
    for backend in ("torch", "fused"):
        torch.manual_seed(0)
        layer = RecurrentSpikingLayer(F, H, lambda b=backend: LIFNode(tau=3.0, backend=b))
        with torch.no_grad():
            layer.rec.weight.mul_(2.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x * 3.0)
        out.spikes.sum().backward()
        spikes[backend] = out.spikes
    assert spikes["torch"].mean() > 0.05 and torch.equal(spikes["fused"], spikes["torch"])


def test_sfa_config_has_a_backend(tmp_path):
    from hydra.utils import instantiate

    for extra, want in (([], "auto"), (["neuron.backend=torch"], "torch")):
        cfg = compose_cfg("train", ["model=lsnn", "neuron=sfa", *extra], tmp_path)
        model = instantiate(cfg.model, in_features=F)
        assert model.rec.neuron.backend == want
        assert (_layer_backend(model.rec.neuron) == "fused") == (want == "auto")


def test_recurrent_function_saves_only_what_backward_needs():
    # h and the spikes are outputs; an adaptive ALIF adds u, a refractory one a bool mask; nothing else of [T, ...]
    x, state = _inputs(1, "alif_refractory", explicit_state=True)
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer(F, H, lambda: NEURONS["alif_refractory"](Triangle(), False, "fused"))
    out = layer(x.requires_grad_(), _leaves(state))
    saved = [t for t in out.membrane.grad_fn.saved_tensors if t is not None and t.dim() == 3]
    assert len(saved) == 4 and sum(t.dtype == torch.bool for t in saved) == 1
    assert isinstance(out.membrane.grad_fn, RecurrentFunction._backward_cls)


@pytest.mark.parametrize("neuron", ["lif", "alif", "lif_strict"])
def test_fires_at_exactly_the_threshold_like_the_reference(neuron):
    # h_0 = (3 - 0)/3 = 1.0 = v_th exactly: SpikingJelly's convention (and ours) fires on h >= v_th;
    # a strict-threshold neuron does not
    make = {"lif": lambda b: LIFNode(tau=3.0, backend=b), "alif": lambda b: ALIFNode(tau=3.0, beta=0.5, backend=b),
            "lif_strict": lambda b: _strict(LIFNode(tau=3.0, backend=b))}  # fmt: skip
    spikes = {}
    for backend in ("torch", "fused"):
        layer = RecurrentSpikingLayer(2, 4, lambda b=backend: make[neuron](b))
        with torch.no_grad():
            layer.fc.weight.zero_()[:, 0] = 1.0
            layer.rec.weight.zero_()
        out = layer(torch.tensor([3.0, 0.0]).expand(2, 1, 2))
        spikes[backend] = out.spikes
        assert out.membrane[0].eq(1.0).all()
    assert spikes["torch"][0].eq(neuron != "lif_strict").all() and torch.equal(spikes["fused"], spikes["torch"])


@pytest.mark.parametrize("neuron", ["alif_refractory", "alif_soft_normalize", "lif_vreset"])
def test_plain_python_loops_and_mirror_ops_compute_the_same(neuron, loops):
    # the loops run TorchScript-compiled on the CPU; uncompiled (no TorchScript) and with the ops other
    # devices use ("mirror": the reference's scalar arguments) they must give the same numbers
    from spikelight.dynamics.fused.recurrent import _exact_ops

    x, state = _inputs(17, neuron, explicit_state=True)
    torch.manual_seed(0)
    node = NEURONS[neuron](ATan(), False, "fused")
    layer = RecurrentSpikingLayer(F, H, lambda: node, tbptt_steps=6)
    ff = layer.fc(x).detach()
    w = (layer.rec.weight * layer.rec_mask).detach()
    spec, alif = node._kernel_spec(), neuron.startswith("alif")
    results = []
    runs = (("script", _exact_ops(x)), ("python", "cpu"), ("python", "mirror"), ("script", "mirror"), ("native", "cpu"))
    for impl, ops in runs if loops == "native" else runs[:-1]:
        ffl, wl, vl = ff.clone().requires_grad_(), w.clone().requires_grad_(), state.neuron.v.clone().requires_grad_()
        beta = node.beta_per_neuron(H, ff) if alif else None
        a0, ref0 = (state.neuron.a, state.neuron.ref) if alif else (None, None)
        s, h, v, a, ref = RecurrentFunction.apply(
            ffl, wl, vl, a0, ref0, state.spikes, beta, spec, node.surrogate, 6, ops, torch.float32, None, impl
        )
        g = torch.Generator().manual_seed(3)
        ((s * torch.randn(s.shape, generator=g)).sum() + h.sum() * 0.1 + v.sum()).backward()
        results.append((s, h, v, ffl.grad, wl.grad, vl.grad))
    assert 0.05 < results[0][0].mean() < 0.7
    for impl, other in zip([r[0] for r in runs[1:]], results[1:]):
        assert torch.equal(other[0], results[0][0])
        for a, b in zip(other[1:3], results[0][1:3]):
            assert_same_values(a, b, "native" if impl == "native" else "script")
        for a, b, what in zip(other[3:], results[0][3:], ("ff", "w", "v0")):
            _close(a, b, what)


@pytest.mark.parametrize("block", [1, 3])
@pytest.mark.parametrize(
    ("neuron", "tbptt"), [("alif_refractory", None), ("alif_soft_normalize", 5), ("lif_vreset", 4), ("if_soft", None)]
)
def test_backward_in_several_time_blocks_equals_reference(monkeypatch, neuron, tbptt, block):
    # at test sizes the backward's non-sequential work is one block of all T steps; at LSNN sizes
    # (B·H in the thousands, T=784) it is many blocks of a few steps: force that here
    import spikelight.dynamics.fused.recurrent as rec

    monkeypatch.setattr(rec, "_block_steps", lambda T, per_step, backward=False: block)
    x, state = _inputs(31 + block, neuron, explicit_state=True)
    ref = _run_layer(neuron, "atan", False, "torch", x, state, tbptt)
    fast = _run_layer(neuron, "atan", False, "fused", x, state, tbptt)
    assert 0.05 < ref[0].spikes.mean() < 0.7
    assert_same_layer(ref, fast)


@pytest.mark.parametrize("neuron", ["alif_refractory", "lif_hard"])
def test_eprop_steps_the_network_the_fused_forward_runs(neuron):
    # learning=eprop runs its own loop of neuron.step; validation and the logged rates run model(x),
    # which backend=auto fuses: both must see the same spikes and logits
    from spikelight.learning import EProp
    from spikelight.losses import ReadoutCrossEntropyLoss
    from spikelight.readout import RateReadout

    gen = torch.Generator().manual_seed(41)
    x = (torch.randn(T, B, F, generator=gen) * 0.8 + 0.5) * GAIN.get(neuron, 1.0)
    y = torch.randint(0, 4, (B,), generator=gen)
    torch.manual_seed(0)
    model = LSNN(lambda: NEURONS[neuron](ATan(), False, "auto"), in_features=F, hidden=H, num_classes=4)
    out = model(x)
    assert type(out.hidden["rec.neuron"].grad_fn).__name__ == "RecurrentFunctionBackward"
    readout, loss = RateReadout(), ReadoutCrossEntropyLoss().bind(RateReadout())
    rule = EProp("symmetric")
    rule.attach(model, readout, loss, None)
    result = rule.gradients(model, x, y, readout, loss, None)
    rate = out.hidden["rec.neuron"].sum(0, keepdim=True) / T
    assert rate.sum() > 0 and torch.equal(result.out.hidden["rec.neuron"], rate)
    torch.testing.assert_close(result.out.membrane, out.membrane, rtol=1e-5, atol=1e-6)
    assert result.grads["w_rec"].abs().sum() > 0


def test_c_loops_run_by_default_on_cpu_fp32_only(loops):
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer(F, H, lambda: ALIFNode(tau=3.0, beta=0.6))
    x = torch.rand(4, 2, F)
    assert layer(x.requires_grad_()).membrane.grad_fn.loops == loops
    assert layer.double()(x.double().requires_grad_()).membrane.grad_fn.loops == "script"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.float()(x.requires_grad_()).membrane.grad_fn.loops == "script"


def test_fused_backend_never_asks_for_triton_and_triton_not_with_a_monitor():
    from spikelight.dynamics.dispatch import recurrent_loops

    assert recurrent_loops("auto", None) == "auto" and recurrent_loops("fused", None) == "fused"
    assert recurrent_loops("triton", None) == "triton" and recurrent_loops("triton", []) == "fused"
    # on the CPU "fused" resolves like "auto" does (C loops where they apply, else TorchScript)
    torch.manual_seed(0)
    out = RecurrentSpikingLayer(F, H, lambda: LIFNode(tau=3.0, backend="fused"))(torch.rand(4, 2, F).requires_grad_())
    assert out.membrane.grad_fn.loops == ("native" if cpu_native.available() else "script")
