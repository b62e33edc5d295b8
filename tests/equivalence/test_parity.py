"""Parity with the libraries our users come from, on the same random inputs.

IF / LIF against SpikingJelly 2.0, Leaky against snnTorch 1.0, encoders and
every loss that carries a library's name against that library: spikes
identical, membranes and gradients within 1e-5 (fp32). Neurons and surrogates
are built from the Hydra configs where defaults matter, so a changed default
in ``conf/`` fails here too.
"""

from __future__ import annotations

import itertools

import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from snntorch import spikegen
from snntorch import surrogate as snn_sg
from spikingjelly.activation_based import encoding as sj_encoding
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_sg

from spikelight.core import surrogate as sg
from spikelight.encoding import LatencyEncoder, PoissonEncoder
from spikelight.losses import CECountLoss, CEMembranePerStepLoss, CERateLoss, MSECountLoss, MSERateLoss
from spikelight.models import SpikeOutput
from spikelight.neurons import IFNode, LeakyNode, LIFNode

from ..conftest import compose_cfg

T, B, N = 12, 4, 24

# ours → SpikingJelly's, with non-default shape parameters so a mixed-up alpha shows
SURROGATES = {
    "sigmoid": (sg.Sigmoid(3.0), sj_sg.Sigmoid(alpha=3.0)),
    "atan": (sg.ATan(1.5), sj_sg.ATan(alpha=1.5)),
    "piecewise_quadratic": (sg.PiecewiseQuadratic(0.8), sj_sg.PiecewiseQuadratic(alpha=0.8)),
    "triangle": (sg.Triangle(alpha=0.8, dampening=0.8), sj_sg.PiecewiseQuadratic(alpha=0.8)),
    "soft_sign": (sg.SoftSign(1.5), sj_sg.SoftSign(alpha=1.5)),
    "leaky_k_relu": (sg.LeakyKReLU(leak=0.1, k=0.7), sj_sg.LeakyKReLU(leak=0.1, k=0.7)),
    "rectangle": (sg.Rectangle(0.7), sj_sg.Rect(alpha=0.7)),
}

# the configs' defaults → SpikingJelly's class defaults
CONFIG_DEFAULTS = {
    "sigmoid": sj_sg.Sigmoid(),
    "atan": sj_sg.ATan(),
    "piecewise_quadratic": sj_sg.PiecewiseQuadratic(),
    "soft_sign": sj_sg.SoftSign(),
    "leaky_k_relu": sj_sg.LeakyKReLU(),
    "rectangle": sj_sg.Rect(),
}


def _inputs(quantised: bool, seed: int = 0) -> torch.Tensor:
    """Random input currents; quantised ones land exactly on the threshold often."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(T, B, N, generator=gen) * 3.0 - 0.5
    if quantised:
        x = torch.round(x * 4) / 4
    return x


def _grad(x: torch.Tensor, spikes: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-1, 1, N)
    return torch.autograd.grad((spikes * w).sum() + (v * v.flip(-1)).sum() * 0.3, x)[0]


def _assert_same(ours, ref, what: str):
    (s, v, g), (s_ref, v_ref, g_ref) = ours, ref
    assert s_ref.sum() > 20, f"{what}: too few spikes to compare"
    assert torch.equal(s, s_ref), f"{what}: {(s != s_ref).sum().item()} spikes differ"
    torch.testing.assert_close(v, v_ref, rtol=1e-5, atol=1e-6, msg=f"{what}: membrane")
    assert g_ref.abs().sum() > 0
    rel = ((g - g_ref).norm() / g_ref.norm()).item()
    assert rel < 1e-5, f"{what}: gradient relative error {rel:.2e}"


def _sj_run(sj_node, x: torch.Tensor):
    x = x.clone().requires_grad_()
    s = sj_node(x)
    v = sj_node.v_seq
    return s, v, _grad(x, s, v)


def _ours_run(node, x: torch.Tensor):
    node.record_states = True  # post-reset v per step, SpikingJelly's v_seq
    xr = x.clone().requires_grad_()
    out = node(xr)
    node.record_states = False
    v = out.states.v
    return out.spikes, v, _grad(xr, out.spikes, v)


NEURON_CASES = [
    *(("if", None, v_reset, detach) for v_reset, detach in itertools.product((0.0, None, -0.3), (False, True))),
    *(("lif", decay, v_reset, detach)
      for decay, v_reset, detach in itertools.product((True, False), (0.0, None, -0.3), (False, True))),
]


@pytest.mark.parametrize("kind,decay_input,v_reset,detach", NEURON_CASES)
@pytest.mark.parametrize("quantised", [False, True], ids=["continuous", "quantised"])
def test_if_lif_equal_spikingjelly(kind, decay_input, v_reset, detach, quantised):
    """Every reset mode × decay_input × detach_reset × every surrogate SpikingJelly has."""
    x = _inputs(quantised, seed=len(NEURON_CASES))
    for name, (ours_sg, sj_s) in SURROGATES.items():
        if kind == "if":
            ours = IFNode(v_reset=v_reset, surrogate=ours_sg, detach_reset=detach)
            ref = sj_neuron.IFNode(v_reset=v_reset, surrogate_function=sj_s, detach_reset=detach,
                                   step_mode="m", store_v_seq=True)
        else:
            ours = LIFNode(tau=3.0, decay_input=decay_input, v_reset=v_reset, surrogate=ours_sg, detach_reset=detach)
            ref = sj_neuron.LIFNode(tau=3.0, decay_input=decay_input, v_reset=v_reset, surrogate_function=sj_s,
                                    detach_reset=detach, step_mode="m", store_v_seq=True)
        _assert_same(_ours_run(ours, x), _sj_run(ref, x), f"{kind} {name}")


def test_quantised_inputs_hit_the_threshold_exactly():
    """The quantised case above is meaningful only if h == v_threshold happens."""
    out = IFNode(v_reset=0.0)(_inputs(True, seed=len(NEURON_CASES)))
    assert (out.membrane == 1.0).sum() > 10


@pytest.mark.parametrize("opt", sorted(CONFIG_DEFAULTS))
def test_surrogate_config_defaults_equal_spikingjelly_defaults(opt, tmp_path):
    cfg = compose_cfg("train", [f"surrogate={opt}"], tmp_path)
    ours = instantiate(cfg.surrogate)
    x = torch.linspace(-2, 2, 401, requires_grad=True)
    g = torch.autograd.grad(ours(x).sum(), x)[0]
    x2 = x.detach().clone().requires_grad_()
    g_ref = torch.autograd.grad(CONFIG_DEFAULTS[opt](x2).sum(), x2)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("neuron", ["lif", "if"])
def test_neuron_config_defaults_equal_spikingjelly_defaults(neuron, tmp_path):
    """`neuron=lif` / `neuron=if` as configured (tau, decay_input, reset, ATan alpha=2) = SJ's defaults + ATan()."""
    cfg = compose_cfg("train", [f"neuron={neuron}", "surrogate=atan"], tmp_path)
    ours = instantiate(cfg.neuron)()
    cls = sj_neuron.LIFNode if neuron == "lif" else sj_neuron.IFNode
    ref = cls(surrogate_function=sj_sg.ATan(), step_mode="m", store_v_seq=True)
    x = _inputs(False, seed=3)
    _assert_same(_ours_run(ours, x), _sj_run(ref, x), f"{neuron} config defaults")


def test_lif_beta_form_is_snntorch_leaky_charge(tmp_path):
    """`neuron=lif neuron.beta=0.9`: h = 0.9·v + x (snnTorch's form), not 0.9·v + 0.1·x."""
    cfg = compose_cfg("train", ["neuron=lif", "neuron.beta=0.9", "neuron.v_reset=null"], tmp_path)
    node = instantiate(cfg.neuron)()
    h = node(torch.full((3, 1, 1), 0.3)).membrane.flatten()
    torch.testing.assert_close(h, torch.tensor([0.3, 0.57, 0.813]))


# --- snnTorch ------------------------------------------------------------------------------------


def _snn_run(ref, x: torch.Tensor):
    x = x.clone().requires_grad_()
    mem, spk, mems = ref.init_leaky(), [], []
    for t in range(x.shape[0]):
        s, mem = ref(x[t], mem)
        spk.append(s)
        mems.append(mem)
    s, m = torch.stack(spk), torch.stack(mems)
    return s, m, _grad(x, s, m)


def _leaky_run(node, x: torch.Tensor):
    xr = x.clone().requires_grad_()
    out = node(xr)
    return out.spikes, out.membrane, _grad(xr, out.spikes, out.membrane)


SNN_SURROGATES = {
    "atan": (lambda: sg.ATan(2.0), lambda: snn_sg.atan()),
    "fast_sigmoid": (lambda: sg.FastSigmoid(10.0), lambda: snn_sg.fast_sigmoid(slope=10)),
    "sigmoid": (lambda: sg.Sigmoid(7.0), lambda: snn_sg.sigmoid(slope=7)),
}


@pytest.mark.parametrize("mechanism", ["subtract", "zero"])
@pytest.mark.parametrize("quantised", [False, True], ids=["continuous", "quantised"])
@pytest.mark.parametrize("surrogate", sorted(SNN_SURROGATES))
def test_leaky_equals_snntorch(mechanism, quantised, surrogate):
    x = _inputs(quantised, seed=7)
    ours_sg, snn_s = SNN_SURROGATES[surrogate]
    ours = LeakyNode(beta=0.5, reset_mechanism=mechanism, surrogate=ours_sg())
    ref = snn.Leaky(beta=0.5, reset_mechanism=mechanism, spike_grad=snn_s())
    _assert_same(_leaky_run(ours, x), _snn_run(ref, x), f"leaky {mechanism} {surrogate}")


def test_leaky_config_defaults_equal_snntorch_defaults(tmp_path):
    cfg = compose_cfg("train", ["neuron=leaky", "surrogate=atan"], tmp_path)
    ours = instantiate(cfg.neuron)()
    x = _inputs(True, seed=11)
    _assert_same(_leaky_run(ours, x), _snn_run(snn.Leaky(beta=0.95), x), "leaky config defaults")


def test_leaky_threshold_tie_is_silent_as_in_snntorch():
    """The issue's example: x = [1, 0, 0], beta 0.5 → no spike, membrane 1, .5, .25."""
    out = LeakyNode(beta=0.5)(torch.tensor([1.0, 0.0, 0.0]).view(3, 1))
    assert out.spikes.flatten().tolist() == [0, 0, 0]
    assert out.membrane.flatten().tolist() == [1.0, 0.5, 0.25]


# --- encoders ----------------------------------------------------------------------------------


def test_poisson_equals_spikingjelly_poisson_encoder():
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(5)
    ours = PoissonEncoder(T=6)(x)
    torch.manual_seed(5)
    enc = sj_encoding.PoissonEncoder()
    ref = torch.stack([enc(x) for _ in range(6)])
    assert ours.sum() > 1000 and torch.equal(ours, ref)


def test_latency_equals_snntorch_linear_normalised_latency():
    x = torch.rand(16, 100)
    x[0, :10] = 0.005  # below the threshold: silent in both
    ours = LatencyEncoder(T=9, threshold=0.01)(x)
    ref = spikegen.latency(x, num_steps=9, threshold=0.01, linear=True, normalize=True, clip=True)
    assert torch.equal(ours, ref)


# --- losses ------------------------------------------------------------------------------------


def _loss_case():
    gen = torch.Generator().manual_seed(2)
    spikes = (torch.rand(T, B, 10, generator=gen) > 0.6).float().requires_grad_()
    membrane = torch.randn(T, B, 10, generator=gen).requires_grad_()
    y = torch.randint(0, 10, (B,), generator=gen)
    return spikes, membrane, y


def _check_loss(ours_fn, ref_fn):
    spikes, membrane, y = _loss_case()
    loss = ours_fn(SpikeOutput(spikes, membrane), y)
    g = torch.autograd.grad(loss, [spikes, membrane], allow_unused=True)
    s2, m2 = spikes.detach().clone().requires_grad_(), membrane.detach().clone().requires_grad_()
    ref = ref_fn(s2, m2, y)
    g_ref = torch.autograd.grad(ref.sum(), [s2, m2], allow_unused=True)
    torch.testing.assert_close(loss, ref.reshape(()), rtol=1e-6, atol=0)
    for a, b in zip(g, g_ref):
        if b is None:
            assert a is None or a.abs().sum() == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rates", [(1.0, 0.0), (0.8, 0.2), (0.75, 0.3)])
def test_mse_count_equals_snntorch(rates):
    _check_loss(MSECountLoss(*rates), lambda s, m, y: SF.mse_count_loss(*rates)(s, y))


def test_mse_count_config_is_snntorch_tutorial(tmp_path):
    cfg = compose_cfg("train", ["loss=mse_count"], tmp_path)
    _check_loss(instantiate(cfg.loss), lambda s, m, y: SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)(s, y))


def test_ce_rate_and_ce_count_equal_snntorch():
    _check_loss(CERateLoss("mean"), lambda s, m, y: SF.ce_rate_loss()(s, y))
    _check_loss(CECountLoss(), lambda s, m, y: SF.ce_count_loss()(s, y))


def test_ce_membrane_per_step_sum_is_snntorch_tutorial5_loss():
    _check_loss(CEMembranePerStepLoss("sum"), lambda s, m, y: sum(F.cross_entropy(m[t], y) for t in range(T)))


def test_mse_rate_is_spikingjelly_tutorial_loss_and_honours_rate_off():
    _check_loss(MSERateLoss(), lambda s, m, y: F.mse_loss(s.mean(0), F.one_hot(y, 10).float()))
    target = lambda y: F.one_hot(y, 10).float() * 0.7 + 0.2  # noqa: E731 (on 0.9, off 0.2)
    _check_loss(MSERateLoss(0.9, 0.2), lambda s, m, y: F.mse_loss(s.mean(0), target(y)))
