"""Edge cases of the recurrent layer's fast paths (LSNN) beyond the matrix (tests/equivalence/test_matrix.py):
the whole LSNN with its readout, a state carried across calls, monitors, thresholds hit exactly,
refractory and truncation acting, the backward in several time blocks, autocast and fp64, the
ops other devices use, e-prop's loop against the fused forward, and which backend runs.

Each test runs on both CPU backends of the layer: the C loops (``native``, the default) and the
plain-PyTorch loops (``fused``); values are bit-identical to the reference loop on ``fused``, and
within float rounding on ``native`` (the recurrent sum over spikes in another order).
"""

from __future__ import annotations

import pytest
import torch

from spikelight.core.errors import ConfigError
from spikelight.core.surrogate import ATan, Triangle
from spikelight.core.types import VState
from spikelight.dynamics import dispatch
from spikelight.dynamics.fused import recurrent as rec_fn
from spikelight.dynamics.fused.recurrent import RecurrentFunction
from spikelight.dynamics.native import library as native
from spikelight.layers.recurrent import RecurrentState
from spikelight.models import LSNN, RecurrentSpikingLayer
from spikelight.monitor import Monitor
from spikelight.neurons import ALIFNode, ALIFState, IFNode, LeakyNode, LIFNode

from ..conftest import compose_cfg
from .cases import GAIN, STEPPED, SURROGATES, _strict
from .test_fast_paths import ChargeOnly, OwnForward

NEURONS = STEPPED
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
        return x, RecurrentState(ALIFState(v, a, ref, z), z)
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


@pytest.fixture(params=["native", "fused"])
def backend(request) -> str:
    """Each test runs on the C loops (the CPU default) and on the plain-PyTorch ones."""
    if request.param == "native" and not native.available():
        pytest.fail("no C compiler: the C loops cannot be built here (the suite needs one, as CI has)")
    return request.param


def assert_same_values(a: torch.Tensor, b: torch.Tensor, backend: str, what: str = "") -> None:
    """Bit-identical on the plain-PyTorch loops; on the C loops the recurrent sum rounds in another order."""
    if backend == "fused":
        assert torch.equal(a, b), what
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * max(1.0, b.abs().max().item()), msg=what)


def assert_same_layer(ref, fast):
    (out_r, g_r), (out_f, g_f) = ref, fast
    assert not _fused(out_r) and _fused(out_f)
    loops = out_f.membrane.grad_fn.backend
    assert torch.equal(out_f.spikes, out_r.spikes)
    assert_same_values(out_f.membrane, out_r.membrane, loops, "h")
    for name, a, b in zip(out_r.state.neuron._fields, out_f.state.neuron, out_r.state.neuron):
        assert_same_values(a, b, loops, name)
    assert torch.equal(out_f.state.spikes, out_r.state.spikes)
    assert g_f.keys() == g_r.keys()
    for k in g_r:
        _close(g_f[k], g_r[k], k)


def test_refractory_really_blocks_and_tbptt_really_truncates():
    # the matrix's cases can only fail if these mechanisms act: check they do
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
@pytest.mark.parametrize("neuron", ["lif_hard_decay_input", "alif_hard", "alif_refractory"])
def test_lsnn_model_fused_equals_reference(neuron, readout_tau, tbptt, backend):
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(T, B, F, generator=gen) * 0.8 + 0.5) * GAIN.get(neuron, 1.0)
    y = torch.randint(0, 4, (B,), generator=gen)
    out_r, g_r = _run_lsnn(neuron, "torch", readout_tau, tbptt, x, y)
    out_f, g_f = _run_lsnn(neuron, backend, readout_tau, tbptt, x, y)
    assert torch.equal(out_f.hidden["rec.neuron"], out_r.hidden["rec.neuron"])
    # the fused readout filter rounds like the loop; the C product with the spikes sums in another order
    assert_same_values(out_f.membrane, out_r.membrane, backend, "readout")
    assert_same_values(out_f.state.readout, out_r.state.readout, backend, "readout state")
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


@pytest.mark.parametrize("neuron", ["alif_refractory", "alif_hard", "lif_no_decay_vreset"])
def test_monitor_records_the_same_states(neuron, backend):
    x, _ = _inputs(9, neuron, explicit_state=False)
    recs = {}
    for b in ("torch", backend):
        torch.manual_seed(0)
        model = LSNN(lambda b=b: NEURONS[neuron](ATan(), False, b), in_features=F, hidden=H)
        with Monitor(model, names=["rec.neuron"], record=("spikes", "membrane", "states")) as mon:
            model(x)
        recs[b] = {k: v[0] for k, v in mon["rec.neuron"].items()}
        assert model.rec.neuron.record_states is False
    assert recs[backend].keys() == recs["torch"].keys() and "v" in recs[backend]
    for k in recs["torch"]:
        assert_same_values(recs[backend][k], recs["torch"][k], backend, k)


# --- which backend runs -------------------------------------------------------------------------


def _layer_backend(neuron) -> str:
    layer = RecurrentSpikingLayer(F, H, lambda: neuron)
    out = layer(torch.rand(4, 2, F))
    return out.membrane.grad_fn.backend if _fused(out) else "torch"


def test_auto_runs_lif_if_alif_in_c_and_falls_back_for_the_rest():
    for neuron in (LIFNode(), IFNode(), ALIFNode()):
        assert _layer_backend(neuron) == "native", type(neuron).__name__
    assert _layer_backend(LIFNode(backend="fused")) == "fused"
    for neuron in (LIFNode(backend="torch"), ALIFNode(backend="torch"), LeakyNode(), ChargeOnly(),
                   LIFNode(surrogate=OwnForward())):  # fmt: skip
        assert _layer_backend(neuron) == "torch", repr(neuron)


def test_explicit_backends_that_cannot_run_are_one_line():
    with pytest.raises(ConfigError, match="Leaky.*no fused recurrent form"):
        _layer_backend(LeakyNode(backend="fused"))
    with pytest.raises(ConfigError, match="backend=triton: LIFNode needs a CUDA tensor"):
        _layer_backend(LIFNode(backend="triton"))
    with pytest.raises(ConfigError, match="backend=triton: ALIFNode needs a CUDA tensor"):
        ALIFNode(backend="triton")(torch.rand(3, 2, 4))
    with pytest.raises(ConfigError, match="backend=native: LIFNode runs the C loops on fp32 CPU tensors"):
        LIFNode(backend="native")(torch.rand(3, 2, 4).double())
    with pytest.raises(ConfigError, match="backend=native: LeakyNode has no C loops"):
        LeakyNode(backend="native")(torch.rand(3, 2, 4))
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
    layer = RecurrentSpikingLayer(F, H, lambda: ALIFNode(tau=3.0, beta=0.6, backend="auto")).double()
    out = layer(x.double())
    assert _fused(out) and out.spikes.dtype == out.membrane.dtype == out.state.neuron.a.dtype == torch.float64


def test_bf16_autocast_gives_the_reference_spikes():  # auto runs the plain-PyTorch loops under autocast
    # under autocast F.linear(z, W_rec) runs in bf16 in the loop; the fused product must too
    x, _ = _inputs(13, "lif_hard_decay_input", explicit_state=False)
    spikes = {}
    for backend in ("torch", "auto"):
        torch.manual_seed(0)
        layer = RecurrentSpikingLayer(F, H, lambda b=backend: LIFNode(tau=3.0, backend=b))
        with torch.no_grad():
            layer.rec.weight.mul_(2.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # noqa
            out = layer(x * 3.0)
        out.spikes.sum().backward()
        spikes[backend] = out.spikes
    assert spikes["torch"].mean() > 0.05 and torch.equal(spikes["auto"], spikes["torch"])


def test_sfa_config_has_a_backend(tmp_path):
    from hydra.utils import instantiate

    for extra, want in (([], "auto"), (["neuron.backend=torch"], "torch")):
        cfg = compose_cfg("train", ["model=lsnn", "neuron=sfa", *extra], tmp_path)
        model = instantiate(cfg.model, in_features=F)
        assert model.rec.neuron.backend == want
        assert (_layer_backend(model.rec.neuron) == "native") == (want == "auto")


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
def test_fires_at_exactly_the_threshold_like_the_reference(neuron, backend):
    # h_0 = (3 - 0)/3 = 1.0 = v_th exactly: SpikingJelly's convention (and ours) fires on h >= v_th;
    # a strict-threshold neuron does not
    make = {"lif": lambda b: LIFNode(tau=3.0, backend=b), "alif": lambda b: ALIFNode(tau=3.0, beta=0.5, backend=b),
            "lif_strict": lambda b: _strict(LIFNode(tau=3.0, backend=b))}  # fmt: skip
    spikes = {}
    for b in ("torch", backend):
        layer = RecurrentSpikingLayer(2, 4, lambda b=b: make[neuron](b))
        with torch.no_grad():
            layer.fc.weight.zero_()[:, 0] = 1.0
            layer.rec.weight.zero_()
        out = layer(torch.tensor([3.0, 0.0]).expand(2, 1, 2))
        spikes[b] = out.spikes
        assert out.membrane[0].eq(1.0).all()
    assert spikes["torch"][0].eq(neuron != "lif_strict").all() and torch.equal(spikes[backend], spikes["torch"])


@pytest.mark.parametrize("neuron", ["alif_refractory", "alif_soft_normalize", "lif_no_decay_vreset"])
def test_mirror_ops_and_the_c_loops_compute_the_same(neuron, monkeypatch):
    # on the CPU the plain-PyTorch loops use ops that round like the reference there (addcdiv); other devices
    # run the reference's own ops ("mirror"); the C loops: all must give the same spikes and gradients
    x, state = _inputs(17, neuron, explicit_state=True)
    torch.manual_seed(0)
    node = NEURONS[neuron](ATan(), False, "fused")
    layer = RecurrentSpikingLayer(F, H, lambda: node, tbptt_steps=6)
    ff = layer.fc(x).detach()
    w = (layer.rec.weight * layer.rec_mask).detach()
    spec, alif = node._kernel_spec(), neuron.startswith("alif")
    results = []
    for backend, ops in (("fused", "cpu"), ("fused", "mirror"), ("native", "cpu")):
        monkeypatch.setattr(rec_fn, "exact_ops", lambda x, ops=ops: ops)
        ffl, wl, vl = ff.clone().requires_grad_(), w.clone().requires_grad_(), state.neuron.v.clone().requires_grad_()
        beta = node.beta_per_neuron(H, ff) if alif else None
        a0, ref0 = (state.neuron.a, state.neuron.ref) if alif else (None, None)
        s, h, v, a, ref = RecurrentFunction.apply(
            ffl, wl, vl, a0, ref0, state.spikes, beta, spec, node.surrogate, 6, torch.float32, None, backend
        )
        g = torch.Generator().manual_seed(3)
        ((s * torch.randn(s.shape, generator=g)).sum() + h.sum() * 0.1 + v.sum()).backward()
        results.append((s, h, v, ffl.grad, wl.grad, vl.grad))
    assert 0.05 < results[0][0].mean() < 0.7
    for backend, other in zip(("fused", "native"), results[1:]):
        assert torch.equal(other[0], results[0][0])
        for a, b in zip(other[1:3], results[0][1:3]):
            assert_same_values(a, b, backend)
        for a, b, what in zip(other[3:], results[0][3:], ("ff", "w", "v0")):
            _close(a, b, what)


@pytest.mark.parametrize("block", [1, 3])
@pytest.mark.parametrize(
    ("neuron", "tbptt"), [("alif_refractory", None), ("alif_soft_normalize", 5), ("lif_no_decay_vreset", 4), ("if_soft", None)]
)
def test_backward_in_several_time_blocks_equals_reference(monkeypatch, neuron, tbptt, block, backend):
    # at test sizes the backward's non-sequential work is one block of all T steps; at LSNN sizes
    # (B·H in the thousands, T=784) it is many blocks of a few steps: force that here
    import spikelight.dynamics.fused.recurrent as rec

    monkeypatch.setattr(rec, "_block_steps", lambda T, per_step: block)
    x, state = _inputs(31 + block, neuron, explicit_state=True)
    ref = _run_layer(neuron, "atan", False, "torch", x, state, tbptt)
    fast = _run_layer(neuron, "atan", False, backend, x, state, tbptt)
    assert 0.05 < ref[0].spikes.mean() < 0.7
    assert_same_layer(ref, fast)


@pytest.mark.parametrize("neuron", ["alif_refractory", "lif_hard_decay_input"])
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


def test_c_loops_run_by_default_on_cpu_fp32_only():
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer(F, H, lambda: ALIFNode(tau=3.0, beta=0.6))
    x = torch.rand(4, 2, F)
    assert layer(x.requires_grad_()).membrane.grad_fn.backend == "native"
    assert layer.double()(x.double().requires_grad_()).membrane.grad_fn.backend == "fused"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.float()(x.requires_grad_()).membrane.grad_fn.backend == "fused"
    with torch.no_grad():
        layer.rec.weight[0, 1] = float("nan")  # the C sums over spikes would not spread it as the product does
    assert layer(x.requires_grad_()).membrane.grad_fn.backend == "fused"


def test_explicit_triton_off_cuda_is_refused_and_auto_never_picks_it_on_the_cpu():
    node = LIFNode(tau=3.0)
    x = torch.rand(4, 2, H)
    assert dispatch.choose("auto", node._kernel_spec(), node.surrogate, x, "LIFNode", recurrent=True) == "native"
    assert dispatch.choose("fused", node._kernel_spec(), node.surrogate, x, "LIFNode", recurrent=True) == "fused"
    with pytest.raises(ConfigError, match="needs a CUDA tensor"):
        dispatch.choose("triton", node._kernel_spec(), node.surrogate, x, "LIFNode", recurrent=True, record=True)
