"""Event-driven backpropagation (Zhu et al. 2022): the neuron, the backward at spike times against a
slow per-neuron reference, the gradient-sum invariance, pooling, standardisation, loss, readout,
the model's training hooks and the refusal of losses it cannot train."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from spikelight.core.errors import ConfigError
from spikelight.layers import event_driven as ed
from spikelight.losses import SpikeCountLoss
from spikelight.models import EventDrivenSNN, SpikeOutput
from spikelight.models.event_driven import parse_event_layers
from spikelight.neurons import DualExpNode
from spikelight.readout import TimeWeightedCountReadout

TAUS = (5.0, 3.0, 2.5)


def _cfg(grad_type="exponential", damping=1.0, taus=TAUS, thr=1.0):
    return ed.EventConfig.from_taus(*taus, thr, grad_type=grad_type, input_grad_damping=damping)


# --- neuron -------------------------------------------------------------------------------------
def test_dual_exp_neuron_is_the_kernel_sum_and_resets_everything():
    """u_t = Σ I_t'·ε(t − t' + 1) over the inputs since the last spike; a spike zeroes m, s and g;
    DualExpNode and the event-driven forward give the same spikes and membrane."""
    torch.manual_seed(0)
    T, n = 12, 200
    tau_m, tau_s, tau_g = 7.0, 4.0, 3.5
    tm, ts = 1 / tau_m, 1 / tau_s
    x = torch.rand(T, n, dtype=torch.float64) * 0.9
    node = DualExpNode(tau_m, tau_s, tau_g)
    res = node.multi_step(x)
    fwd = ed.event_forward(x, _cfg(taus=(tau_m, tau_s, tau_g)))
    assert torch.equal(res.spikes, fwd.spikes) and torch.allclose(res.membrane, fwd.membrane, atol=1e-12)

    def eps(k):
        return ts / (ts - tm) * ((1 - tm) ** k - (1 - ts) ** k)

    for j in range(n):
        last = -1
        for t in range(T):
            u = sum(float(x[tp, j]) * eps(t - tp + 1) for tp in range(last + 1, t + 1))
            assert math.isclose(u, float(res.membrane[t, j]), rel_tol=1e-9, abs_tol=1e-12)
            assert float(res.spikes[t, j]) == float(u >= 1.0)
            if u >= 1.0:
                last = t
    assert res.spikes.sum() > 50  # the test saw many resets
    # after a spike every trace is zero
    one = torch.tensor([[5.0]], dtype=torch.float64)
    spike, state = node.single_step(one)
    assert spike.item() == 1 and all(float(v) == 0 for v in state)


def test_dual_exp_trains_with_the_surrogate_elsewhere():
    """neuron=dual_exp in a BPTT model: spikes carry the surrogate's gradient back to the input."""
    x = (torch.rand(6, 3, 5) * 2).requires_grad_(True)
    DualExpNode().multi_step(x).spikes.sum().backward()
    assert x.grad.abs().sum() > 0


def test_dual_exp_refuses_bad_constants():
    with pytest.raises(ValueError, match="tau_m != tau_s"):
        DualExpNode(4.0, 4.0)
    with pytest.raises(ValueError, match="tau_grad"):
        DualExpNode(5.0, 3.0, 1.0)


def test_kernel_tables_match_the_published_shapes():
    """τm=7, τs=4: syn_a = .25, .40, .49, .52, .53, .51 (algorithm notes); 'original' gradient turns
    positive (reverses) from Δ=5 on; the exponential one is (1 − 1/3.5)^(Δ+1) and stays negative."""
    cfg = _cfg("original", taus=(7.0, 4.0, 3.5))
    syn_a, partial = ed.kernel_tables(cfg, 12, dtype=torch.float64)
    assert syn_a.shape == (13,) and syn_a[-1] == 0
    assert torch.allclose(syn_a[:6], torch.tensor([0.25, 0.40, 0.49, 0.52, 0.53, 0.51], dtype=torch.float64),
                          atol=0.006)  # the notes' two decimals
    assert (partial[:5] < 0).all() and (partial[5:12] > 0).all()
    _, partial_exp = ed.kernel_tables(_cfg("exponential", taus=(7.0, 4.0, 3.5)), 12, dtype=torch.float64)
    expect = -torch.tensor([(1 - 1 / 3.5) ** (d + 1) for d in range(12)], dtype=torch.float64)
    assert torch.allclose(partial_exp[:12], expect)


@pytest.mark.parametrize("grad_type", ["exponential", "original"])
def test_fast_backward_is_the_authors_loop(grad_type):
    """The running-product backward equals the authors' table-lookup loop, also on arbitrary
    spike trains with Δu of any sign (injected label spikes, clamps)."""
    gen = torch.Generator().manual_seed(12)
    T, N = 9, 4000
    cfg = _cfg(grad_type, damping=0.85, taus=(7.0, 4.0, 3.5))
    spikes = _spike_input((T, N), 0.3, gen)
    du = torch.randn(T, N, generator=gen, dtype=torch.float64)
    dug = du if grad_type == "original" else torch.randn(T, N, generator=gen, dtype=torch.float64) * 2
    du[0, :50] = 0.0  # −1/0 → clamped
    G = torch.randn(T, N, generator=gen, dtype=torch.float64) * spikes
    syn_a, partial_a = ed.kernel_tables(cfg, T, dtype=torch.float64)
    ref_in, ref_w = ed.event_backward_reference(G, spikes, du, dug, syn_a, partial_a, cfg.max_dudt_inv)
    fast_in, fast_w = ed.event_backward(G, spikes, du, dug, cfg, in_scale=0.85)
    assert torch.allclose(fast_w, ref_w, rtol=1e-10, atol=1e-12) and ref_w.abs().sum() > 100
    assert torch.allclose(fast_in, 0.85 * ref_in, rtol=1e-10, atol=1e-6)


# --- a slow, obviously correct reference --------------------------------------------------------
def _slow_neuron_grads(cur, G, cfg):
    """Per neuron, spike by spike: the forward by the kernel sum, then for each output spike t_k
    (window (t_{k−1}, t_k]) dL/dI_t = G_{t_k}·clamp(−1/Δu_{t_k}, −4, 0)·ε(t_k − t + 1) (weights) and
    G_{t_k}·clamp(−1/Δu^g_{t_k})·(−κ(t_k − t)) (input spikes). cur: synaptic input I, G: [T, N] float64."""
    T, N = cur.shape
    tm, ts, tg = cfg.thetas

    def eps(k):
        return ts / (ts - tm) * ((1 - tm) ** k - (1 - ts) ** k)

    def kappa(d):  # delta_syn_a
        return (1 - tg) ** (d + 1) if cfg.grad_type == "exponential" else eps(d + 1) - eps(d)

    g_in, g_w = torch.zeros(T, N, dtype=cur.dtype), torch.zeros(T, N, dtype=cur.dtype)
    spikes = torch.zeros(T, N, dtype=cur.dtype)
    for j in range(N):
        start, u_prev = 0, 0.0
        for t in range(T):
            u = sum(float(cur[tp, j]) * eps(t - tp + 1) for tp in range(start, t + 1))
            g = sum(float(cur[tp, j]) * (1 - tg) ** (t - tp + 1) for tp in range(start, t + 1))
            du = u - u_prev
            if u < cfg.threshold:
                u_prev = u
                continue
            spikes[t, j] = 1.0
            dug = g if cfg.grad_type == "exponential" else du
            a_w = float(G[t, j]) * min(max(-1 / du, -4.0), 0.0)
            a_t = float(G[t, j]) * min(max(-1 / dug if dug != 0 else -math.inf, -cfg.max_dudt_inv), 0.0)
            for tp in range(start, t + 1):
                g_w[tp, j] = a_w * eps(t - tp + 1)
                g_in[tp, j] = -a_t * kappa(t - tp)
            start, u_prev = t + 1, 0.0
    return spikes, g_in, g_w


def _slow_layer(x, w_hat, op, cfg, G):
    """Reference layer: forward current by the op, per-neuron grads, then synapse grads by autograd
    of the op (dL/dŴ with grad_w_, dL/dx with grad_in_, ⊙ x and the damping)."""
    T, B = x.shape[:2]
    xf = x.detach().reshape(T * B, *x.shape[2:]).clone().requires_grad_(True)
    wf = w_hat.detach().clone().requires_grad_(True)
    cur = op(xf, wf)
    shape = cur.shape[1:]
    spikes, g_in, g_w = _slow_neuron_grads(cur.detach().reshape(T, -1), G.reshape(T, -1), cfg)
    (dw,) = torch.autograd.grad(cur, wf, g_w.reshape(T * B, *shape), retain_graph=True)
    (dx,) = torch.autograd.grad(cur, xf, g_in.reshape(T * B, *shape))
    dx = dx.reshape(x.shape) * x.detach() * cfg.input_grad_damping
    return spikes.reshape(T, B, *shape), dx, dw


def _slow_adjusted_pool_backward(grad_out, out, k):
    """Per window: each of its k² inputs gets grad_out / (k²·p), 0 where p = 0."""
    N, C, h, w = out.shape
    g = torch.zeros(N, C, h * k, w * k, dtype=grad_out.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(h):
                for j in range(w):
                    p = float(out[n, c, i, j])
                    if p > 0:
                        g[n, c, i * k:(i + 1) * k, j * k:(j + 1) * k] = float(grad_out[n, c, i, j]) / (k * k * p)
    return g


def _spike_input(shape, rate, gen):
    return (torch.rand(shape, generator=gen, dtype=torch.float64) < rate).to(torch.float64)


@pytest.mark.parametrize("grad_type", ["exponential", "original"])
def test_linear_backward_matches_the_slow_reference(grad_type):
    gen = torch.Generator().manual_seed(1)
    T, B, F_in, F_out = 6, 3, 20, 7
    cfg = _cfg(grad_type, damping=0.85)
    x = _spike_input((T, B, F_in), 0.4, gen).requires_grad_(True)
    w = (torch.randn(F_out, F_in, generator=gen, dtype=torch.float64) * 0.5 + 0.25).requires_grad_(True)
    G = torch.randn(T, B, F_out, generator=gen, dtype=torch.float64)
    spikes, _ = ed.EventSynapseFunction.apply(x, w, ed.LinearOp(), cfg, None, None)
    (spikes * G).sum().backward()
    ref_spikes, ref_dx, ref_dw = _slow_layer(x, w, ed.LinearOp(), cfg, G)
    assert spikes.sum() > 10 and torch.equal(spikes.detach(), ref_spikes)
    assert torch.allclose(w.grad, ref_dw, rtol=1e-9, atol=1e-10)
    assert torch.allclose(x.grad, ref_dx, rtol=1e-9, atol=1e-10)
    assert x.grad.abs().sum() > 0 and (x.grad[x == 0] == 0).all()  # only at input spikes


@pytest.mark.parametrize("grad_type", ["exponential", "original"])
def test_conv_pool_linear_backward_matches_the_slow_reference(grad_type):
    """conv (padding 1) → adjusted average pooling → linear, all gradients against the references."""
    gen = torch.Generator().manual_seed(2)
    T, B, C_in, C, H, k, F_out = 5, 2, 2, 3, 6, 2, 4
    cfg = _cfg(grad_type, damping=0.85)
    conv = ed.Conv2dOp(padding=(1, 1))
    x = _spike_input((T, B, C_in, H, H), 0.5, gen).requires_grad_(True)
    w1 = (torch.randn(C, C_in, 3, 3, generator=gen, dtype=torch.float64) * 0.4 + 0.2).requires_grad_(True)
    w2 = (torch.randn(F_out, C * (H // k) ** 2, generator=gen, dtype=torch.float64) * 0.5 + 0.5).requires_grad_(True)
    G = torch.randn(T, B, F_out, generator=gen, dtype=torch.float64)
    s1, _ = ed.EventSynapseFunction.apply(x, w1, conv, cfg, None, None)
    pooled = ed.AdjustedAvgPool2d(k)(s1.flatten(0, 1)).unflatten(0, (T, B))
    s2, _ = ed.EventSynapseFunction.apply(pooled.flatten(2), w2, ed.LinearOp(), cfg, None, None)
    (s2 * G).sum().backward()

    r1, _, _ = _slow_layer(x, w1, conv, cfg, torch.zeros(T, B, C, H, H, dtype=torch.float64))
    p_ref = F.avg_pool2d(r1.flatten(0, 1), k).unflatten(0, (T, B)).flatten(2)
    r2, d_pooled, dw2 = _slow_layer(p_ref, w2, ed.LinearOp(), cfg, G)
    d_s1 = _slow_adjusted_pool_backward(d_pooled.reshape(T * B, C, H // k, H // k),
                                        F.avg_pool2d(r1.flatten(0, 1), k), k).reshape(T, B, C, H, H)
    _, dx, dw1 = _slow_layer(x, w1, conv, cfg, d_s1)
    assert torch.equal(s1.detach(), r1) and torch.equal(s2.detach(), r2) and r1.sum() > 20 and r2.sum() > 5
    assert torch.allclose(w2.grad, dw2, rtol=1e-9, atol=1e-10)
    assert torch.allclose(w1.grad, dw1, rtol=1e-9, atol=1e-10) and w1.grad.abs().sum() > 0
    assert torch.allclose(x.grad, dx, rtol=1e-9, atol=1e-10) and x.grad.abs().sum() > 0


def test_repeated_input_runs_once_and_gives_the_same_gradients():
    """A direct-encoded (stride-0) input: the synapse runs once, the weight gradient is unchanged."""
    gen = torch.Generator().manual_seed(3)
    img = torch.randn(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    w = (torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64) + 0.3).requires_grad_(True)
    G = torch.randn(5, 2, 4, 8, 8, generator=gen, dtype=torch.float64)
    grads = []
    for x in (img.unsqueeze(0).expand(5, *img.shape), img.unsqueeze(0).repeat(5, 1, 1, 1, 1)):
        w.grad = None
        s, _ = ed.EventSynapseFunction.apply(x, w, ed.Conv2dOp(padding=(1, 1)), _cfg(), None, None)
        (s * G).sum().backward()
        grads.append((s.detach(), w.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0]) and grads[0][0].sum() > 10
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)


# --- the invariance --------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_gradient_sum_invariance(layer):
    """exponential, no damping: Σ dL/d input spikes = Σ dL/d output spikes (1e-6); the 0.85 damping
    scales it by 0.85. 'original' keeps the sum too (its shares are normalised by Δu), but with all
    inputs, weights and output gradients positive some of its input gradients are negative (the
    reverse gradient problem) where the exponential ones are all >= 0."""
    gen = torch.Generator().manual_seed(4)
    T, B = 8, 4
    if layer == "linear":
        op, x0, w = ed.LinearOp(), _spike_input((T, B, 30), 0.3, gen), torch.rand(10, 30, generator=gen,
                                                                                dtype=torch.float64) * 0.6
    else:
        op, x0 = ed.Conv2dOp(padding=(1, 1)), _spike_input((T, B, 3, 6, 6), 0.3, gen)
        w = torch.rand(5, 3, 3, 3, generator=gen, dtype=torch.float64) * 0.5
    G = torch.randn(T, B, *op(x0.flatten(0, 1), w).shape[1:], generator=gen, dtype=torch.float64)
    sums, signs = {}, {}
    for name, cfg in (("exp", _cfg()), ("damped", _cfg(damping=0.85)), ("original", _cfg("original"))):
        x = x0.clone().requires_grad_(True)
        stats = ed.GradStats()
        s, _ = ed.EventSynapseFunction.apply(x, w, op, cfg, None, stats)
        (s * G).sum().backward()
        assert s.sum() > 20 and math.isclose(float(stats.grad_out), float((G * s.detach()).sum()), rel_tol=1e-12)
        assert math.isclose(float(stats.grad_in), float(x.grad.sum()), rel_tol=1e-12)
        sums[name] = (float(x.grad.sum()), float(stats.grad_out))
        x = x0.clone().requires_grad_(True)
        s, _ = ed.EventSynapseFunction.apply(x, w * 0.3, op, cfg, None, None)  # weaker: longer windows
        s.sum().backward()  # dL/dt = +1 at every spike
        signs[name] = (float(x.grad.min()), float(x.grad.max()))
    g_in, g_out = sums["exp"]
    assert abs(g_in - g_out) < 1e-6 and abs(g_out) > 1
    assert abs(sums["damped"][0] - 0.85 * g_out) < 1e-6
    assert abs(sums["original"][0] - sums["original"][1]) < 1e-6
    assert signs["exp"][0] >= 0 and signs["exp"][1] > 0 and signs["original"][0] < 0


@pytest.mark.parametrize("pool", ["adjusted_avg", "avg", "max"])
def test_pooling_and_the_gradient_sum(pool):
    """Spikes o → pool → p; the next layer's input gradient is a·p (its ⊙x). Back through the pool and
    masked to the spikes (the layer below's ⊙o), the sum is kept by adjusted and max pooling; plain
    average pooling shrinks it (by the pooled fraction p)."""
    gen = torch.Generator().manual_seed(5)
    o = _spike_input((6, 3, 8, 8), 0.35, gen).requires_grad_(True)
    layer = {"adjusted_avg": ed.AdjustedAvgPool2d(2), "avg": torch.nn.AvgPool2d(2), "max": torch.nn.MaxPool2d(2)}[pool]
    p = layer(o)
    a = torch.randn(p.shape, generator=gen, dtype=torch.float64)
    (p * (a * p.detach())).sum().backward()  # dL/dp = a·p
    passed = float((o.grad * o.detach()).sum())
    received = float((a * p.detach()).sum())
    if pool == "avg":
        assert abs(passed - float((a * p.detach() ** 2).sum())) < 1e-9 and abs(passed - received) > 0.1
    else:
        assert abs(passed - received) < 1e-9 and abs(received) > 1


def test_adjusted_pool_gives_no_gradient_to_cropped_inputs():
    x = torch.ones(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    ed.AdjustedAvgPool2d(2)(x).sum().backward()
    assert x.grad.shape == (1, 1, 5, 5) and (x.grad[..., 4, :] == 0).all() and (x.grad[..., :4, :4] == 0.25).all()


def test_gradient_flow_is_conserved_through_a_network():
    """conv → adjusted pool → conv → adjusted pool → fc → fc, no damping, no label spikes: every layer
    passes on exactly the gradient sum it receives (GradStats as the gradient-flow callback reads them)."""
    torch.manual_seed(6)
    net = EventDrivenSNN(functools.partial(DualExpNode, *TAUS), [{"conv": 6, "pool": 2}, {"conv": 8, "pool": 2},
                         {"fc": 30}], in_shape=(1, 12, 12), input_grad_damping=1.0, label_spikes=False)
    net = net.double()
    x = torch.rand(5, 4, 1, 12, 12, dtype=torch.float64)
    net.data_init(x)
    for b in net.blocks:
        b.grad_stats = ed.GradStats()
    out = net(x, labels=torch.arange(4))
    (out.spikes * torch.randn_like(out.spikes)).sum().backward()
    st = [b.grad_stats for b in net.blocks]
    assert st[0].grad_in is None and all(s.grad_in is not None for s in st[1:])
    for below, above in zip(st, st[1:]):
        assert abs(float(above.grad_in) - float(below.grad_out)) < 1e-6 * max(1.0, abs(float(below.grad_out)))
    assert all(abs(float(s.grad_out)) > 0 for s in st)


# --- standardisation -------------------------------------------------------------------------
def test_standardization_and_the_authors_backward():
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    gain = torch.rand(4, generator=gen, dtype=torch.float64) + 0.5
    shift = torch.randn(4, generator=gen, dtype=torch.float64) * 0.1
    w_hat = ed.standardize_weight(w, gain, shift)
    flat = ((w_hat - shift.view(4, 1, 1, 1)) / gain.view(4, 1, 1, 1)).reshape(4, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(flat.var(1), torch.ones(4, dtype=torch.float64) / (1 + 1e-5 / w.reshape(4, -1).var(1)),
                          atol=1e-9)  # unbiased variance, eps 1e-5
    G = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    # the authors' bn_backward, line by line (layers/functions.py)
    C = 4
    mean, var = w.reshape(C, -1).mean(1).view(-1, 1, 1, 1), (w.reshape(C, -1).std(1) ** 2).view(-1, 1, 1, 1)
    std_inv = 1 / torch.sqrt(var + 1e-5)
    wh = (w - mean) * std_inv * gain.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)
    bn_b = G.reshape(C, -1).sum(1)
    bn_w = (G * wh).reshape(C, -1).sum(1)
    gw = G * gain.view(-1, 1, 1, 1)
    m = w.numel() // C
    grad_var = gw * (w - mean) / m * (-0.5) * std_inv**3
    grad_mean = -gw * std_inv
    theirs = gw * std_inv + grad_var * 2 * (w - mean) / m + grad_mean / m
    leaves = [t.clone().requires_grad_(True) for t in (w, gain, shift)]
    (ed.StandardizeAuthorsFunction.apply(*leaves) * G).sum().backward()
    assert torch.allclose(leaves[0].grad, theirs) and torch.allclose(leaves[1].grad, bn_w)
    assert torch.allclose(leaves[2].grad, bn_b)
    exact = [t.clone().requires_grad_(True) for t in (w, gain, shift)]
    (ed.standardize_weight(*exact) * G).sum().backward()
    assert torch.allclose(exact[2].grad, bn_b)  # the shift's gradient agrees
    assert not torch.allclose(exact[0].grad, theirs, atol=1e-3)  # the documented difference
    assert not torch.allclose(exact[1].grad, bn_w, atol=1e-3)


# --- output layer: label spikes, loss, readout, sign ------------------------------------------
def test_label_spike_injection():
    delta_u = torch.tensor([[[0.3, 0.0]], [[0.2, 0.01]], [[0.04, 0.0]]])  # [T=3, B=1, C=2]
    spikes = torch.zeros(3, 1, 2)
    assert ed.inject_label_spikes(spikes, delta_u, torch.tensor([0]))[:, 0, 0].tolist() == [0, 1, 0]  # last rise > 0.05
    # no rise at all: step 0, a spike only if Δu_0 ≠ 0
    assert ed.inject_label_spikes(spikes, delta_u, torch.tensor([1])).sum() == 0
    assert spikes.sum() == 0  # a copy


def test_spike_count_loss_gradient_is_the_one_sided_error():
    T = 5
    spikes = torch.zeros(T, 2, 3)
    spikes[:4, 0, 0] = 1  # label 0: 4 < 5 → δ = −1/5
    spikes[:, 0, 1] = 1  # other: 5 > 1 → δ = 4/5
    spikes[:, 1, 2] = 1  # label 2: 5 ≥ 5 → 0; others silent (0 < 1 → 0)
    spikes.requires_grad_(True)
    y = torch.tensor([0, 2])
    loss = SpikeCountLoss(5, 1)(SpikeOutput(spikes, torch.zeros_like(spikes)), y)
    loss.backward()
    delta = torch.tensor([[-0.2, 0.8, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(spikes.grad, delta.expand(T, 2, 3))
    assert math.isclose(loss.item(), 0.5 * T * float((delta**2).sum()), rel_tol=1e-6)
    mean = SpikeCountLoss(5, 1, reduction="mean")(SpikeOutput(spikes, spikes), y)
    assert math.isclose(mean.item(), loss.item() / 2, rel_tol=1e-6)


def test_time_weighted_readout_prefers_early_spikes():
    s = torch.zeros(4, 1, 3)
    s[0, 0, 0] = 1  # early
    s[3, 0, 1] = 1  # late
    s[1:3, 0, 2] = 1  # two spikes beat one
    scores = TimeWeightedCountReadout()(SpikeOutput(s, s))
    assert torch.allclose(scores[0], torch.tensor([1.1, 1.1 - 3 / 40, 2 * 1.1 - 3 / 40]))
    assert scores.argmax() == 2 and scores[0, 0] > scores[0, 1]


def _net(**kw):
    return EventDrivenSNN(functools.partial(DualExpNode, *TAUS), [{"conv": 4, "kernel": 3, "pool": 2}, {"fc": 16}],
                          in_shape=(1, 8, 8), num_classes=3, **kw)


def test_model_output_sign_labels_and_emitted_spikes():
    """Training forward: the label neuron gets its spike, ``emitted_spikes`` keep what fired; the gradient
    reaching the output layer is −dL/do (loss_reverse), +dL/do without it."""
    torch.manual_seed(8)
    x = torch.rand(5, 6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    grads = {}
    for reverse in (True, False):
        torch.manual_seed(9)
        net = _net(loss_reverse=reverse)
        net.data_init(x)
        net.blocks[-1].neuron.v_threshold = 1e9  # a silent output layer: all its spikes are injected
        seen, seen_grad = {}, {}
        net.blocks[-1].neuron.register_forward_hook(lambda m, a, out, seen=seen: seen.update(s=out.spikes))
        out = net(x, labels=y)
        seen["s"].register_hook(lambda g, seen_grad=seen_grad: seen_grad.update(inner=g))
        assert out.emitted_spikes is not None and out.emitted_spikes.sum() == 0
        injected = out.spikes.detach() - out.emitted_spikes
        label = torch.nn.functional.one_hot(y, 3).bool().expand_as(injected)
        assert injected.sum() >= 4 and (injected[~label] == 0).all() and (injected.sum(0) <= 1).all()
        assert torch.equal(out.as_emitted().spikes, out.emitted_spikes)
        (out.spikes * 2.0).sum().backward()
        grads[reverse] = seen_grad["inner"]
    assert torch.allclose(grads[True], -grads[False]) and (grads[False] == 2.0).all()
    net.eval()
    out = net(x, labels=y)
    assert out.emitted_spikes is None  # no injection outside training


def test_data_init_reaches_the_target_rate():
    torch.manual_seed(10)
    net = _net(avg_spike_init=0.5)
    x = torch.rand(6, 20, 1, 8, 8)
    assert not bool(net.data_initialized)
    factors = net.data_init(x)
    assert bool(net.data_initialized) and len(factors) == 3 and net.training
    target = 1.2 * 0.5 * (6 - 4) / 6
    h = x
    for block, s in zip(net.blocks, factors):
        spikes = block.spikes_only(h)
        late = float(spikes[4:].sum()) / spikes[0].numel()
        assert 0.05 < s < 500 and torch.allclose(block.synapse.gain, torch.full_like(block.synapse.gain, s))
        # the bisection ends where the late rate crosses the target (not quite monotone in the gain:
        # an earlier spike resets the neuron), unless the layer cannot reach it and stops at the bound
        if s < 495:
            assert abs(late - target) < 0.1 * target, (s, late, target)
        else:
            assert late < target
        h = block.post_process(spikes)


def test_data_init_flag_is_checkpointed():
    net = _net()
    net.data_init(torch.rand(5, 4, 1, 8, 8))
    fresh = _net()
    assert not bool(fresh.data_initialized)
    fresh.load_state_dict(net.state_dict())
    assert bool(fresh.data_initialized)  # a resumed run does not initialise again
    assert bool(_net(data_init=False).data_initialized)  # data_init=false: the classifier skips it


def test_param_groups_scale_the_gain_learning_rate(tmp_path):
    from spikelight.encoding import DirectEncoder
    from spikelight.train.module import SpikingClassifier

    net = _net(norm_grad=0.0)
    module = SpikingClassifier(net, DirectEncoder(5), TimeWeightedCountReadout(), SpikeCountLoss(),
                               functools.partial(torch.optim.SGD, lr=0.1, weight_decay=5e-4))
    opt = module.configure_optimizers()
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.0]
    gains = [b.synapse.gain.detach().clone() for b in net.blocks]
    weights = [b.synapse.weight.detach().clone() for b in net.blocks]
    out = module.model(module.encode(torch.rand(4, 1, 8, 8)), labels=torch.tensor([0, 1, 2, 0]))
    module.loss_fn(out, torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert all(torch.equal(g, b.synapse.gain) for g, b in zip(gains, net.blocks))  # frozen
    assert not all(torch.equal(w, b.synapse.weight) for w, b in zip(weights, net.blocks))


# --- refusals ----------------------------------------------------------------------------------
def test_losses_that_need_membrane_gradients_are_refused():
    from spikelight.encoding import DirectEncoder
    from spikelight.losses import CEMembranePerStepLoss, CERateLoss, FiringRateRegularizer, ReadoutCrossEntropyLoss
    from spikelight.readout import MembraneReadout, RateReadout
    from spikelight.train.module import SpikingClassifier

    opt = functools.partial(torch.optim.Adam, lr=1e-3)
    for readout, loss, match in (
        (TimeWeightedCountReadout(), CEMembranePerStepLoss(), "CEMembranePerStepLoss needs gradients through the output membrane"),
        (MembraneReadout(), ReadoutCrossEntropyLoss(), "loss=ce through readout=MembraneReadout"),
    ):
        with pytest.raises(ConfigError, match=match):
            SpikingClassifier(_net(), DirectEncoder(5), readout, loss, opt)
    with pytest.raises(ConfigError, match="regularizer"):
        SpikingClassifier(_net(), DirectEncoder(5), RateReadout(), SpikeCountLoss(), opt,
                          regularizer=FiringRateRegularizer())
    # what it can train is accepted: loss=ce through a spike readout, membrane readout for prediction only
    SpikingClassifier(_net(), DirectEncoder(5), RateReadout(), ReadoutCrossEntropyLoss(), opt)
    SpikingClassifier(_net(), DirectEncoder(5), MembraneReadout(), SpikeCountLoss(), opt)
    SpikingClassifier(_net(), DirectEncoder(5), TimeWeightedCountReadout(), CERateLoss(), opt)  # loss=tet


def test_layer_specs_refuse_conv_only_keys_and_bad_neurons():
    with pytest.raises(ConfigError, match="pool: k"):
        parse_event_layers([{"conv": 8, "maxpool": 2}])
    with pytest.raises(ConfigError, match="standardise"):
        parse_event_layers([{"conv": 8, "norm": "batch"}])
    assert len(parse_event_layers([{"conv": 8, "repeat": 3, "pool": 2}])) == 3
    from spikelight.neurons import LIFNode

    with pytest.raises(ConfigError, match="neuron=dual_exp"):
        EventDrivenSNN(LIFNode, [{"fc": 4}], in_shape=(10,))
    with pytest.raises(ConfigError, match="pooling"):
        _net(pooling="min")


def test_blocks_count_synaptic_operations():
    from spikelight.synops import SynOpCounter

    torch.manual_seed(11)
    net = _net()
    x = torch.rand(1, 2, 1, 8, 8).expand(5, 2, 1, 8, 8)
    net.data_init(x)
    net.eval()
    with SynOpCounter(net) as counter:
        out = net(x)
    c = counter.count
    hidden = net.blocks[0].post_process(out.hidden["blocks.0.neuron"])
    fc_in_events = float((hidden != 0).sum()) * 16  # pooled fractions: one MAC per non-zero input and target
    assert c.samples == 2 and c.sops == float(out.hidden["blocks.1.neuron"].detach().sum()) * 3
    assert math.isclose(c.macs, 5 * 2 * 64 * 4 * 9 + fc_in_events)


def test_event_block_types():
    blk = ed.EventBlock(ed.EventLinear(4, 3), DualExpNode(), torch.nn.Sequential())
    conv = ed.EventConv2d(1, 2, 3, padding=1)
    assert blk.config().thetas[0] == 1 / 5.0 and conv.weight.shape == (2, 1, 3, 3) and conv.gain.shape == (2,)


@pytest.mark.parametrize("mask", ["channel", "neuron"])
def test_dropout_mask_is_shared_over_time(mask):
    """One mask per sample and channel (the authors' dropout2d) or per neuron, the same at every step."""
    torch.manual_seed(0)
    net = EventDrivenSNN(functools.partial(DualExpNode), [{"conv": 6, "kernel": 3, "dropout": 0.5}],
                         in_shape=(1, 4, 4), num_classes=3, dropout_mask=mask).train()
    spikes = torch.ones(5, 3, 6, 4, 4)
    kept = net.blocks[0].post_process(spikes)
    assert set(kept.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-p)
    assert torch.equal(kept, kept[:1].expand_as(kept))  # the same mask at every step
    per_channel = (kept == kept[..., :1, :1]).all(-1).all(-1).all()
    assert bool(per_channel) == (mask == "channel")
    assert torch.equal(net.eval().blocks[0].post_process(spikes), spikes)  # no dropout in eval


def test_gain_bisection_compares_in_float32_as_the_authors():
    """The authors' initialize: ``torch.sum(outputs[t_start:]) / n_neuron > target`` with a float32 tensor and
    a Python float: on an exact float32 tie the comparison is False (float64 would say True)."""
    import math

    import torch

    from spikelight.layers.event_driven.functions import bisect_gain, late_spike_rate, target_init_spikes

    target = target_init_spikes(15, 1.0)  # 0.39999999999999997: 1.0 / 15 · 5 · 1.2 in float64
    assert target != 0.4 and torch.tensor(0.4) == torch.tensor(target, dtype=torch.float32)

    high, low = torch.zeros(15, 2, 5), torch.zeros(15, 2, 5)  # 10 neurons
    high[10:14, 0, 0] = 1.0  # 4 late spikes: 0.4 per neuron, computed in float32 = float32(0.4)
    low[10, 0, 0] = 1.0
    assert late_spike_rate(high, 10).dtype == torch.float32  # the model's rate: a float32 tensor, as theirs

    def rate(s: float) -> torch.Tensor:  # the late rate rises to exactly float32(0.4) at s >= 1
        return late_spike_rate(high if s >= 1.0 else low, 10)

    def authors(low=0.05, high=500.0):  # their loop, transcribed
        while high / low >= 1.01:
            mid = math.sqrt(high * low)
            if rate(mid) > target:
                high = mid
            else:
                low = mid
        return mid

    assert bisect_gain(rate, target=target) == authors() > 400  # never above the target: the gain runs up
    assert bisect_gain(lambda s: float(rate(s)), target=target) < 1.1  # a float64 rate would stop near 1
