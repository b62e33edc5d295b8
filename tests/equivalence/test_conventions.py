"""``neuron.convention=lsnn_official | eprop`` against float64 transcriptions of the code they name.

The transcriptions below are written line by line from the public TensorFlow code (TF ops → torch ops,
nothing else changed; the TF line is quoted beside each one):

- IGITUGraz/LSNN-official ``lsnn/spiking_models.py``: ``SpikeFunction``, ``ALIF.__call__``, ``LIF.__call__``,
  ``LIF_dynamic`` (n_delay = 1, V0 = 1, dt = 1, no rewiring).
- IGITUGraz/eligibility_propagation ``Figure_3_and_S7_e_prop_tutorials/models.py``: ``EligALIF.__call__``,
  ``compute_z``, ``compute_eligibility_traces``, ``compute_loss_gradient``, ``LightLIF.__call__``.

Held: spikes equal, membrane (the codes' ``v``, our ``h``) and gradients within 1e-6 relative, for the
neuron alone, the recurrent layer (every CPU backend the convention runs on) and e-prop's gradients; the
plain LIF of each code (``neuron=lif neuron.convention=...``: :func:`spikelight.neurons.lif_neuron`) too.
The parameters map as the ALIF docstring says (``spikelight.neurons.alif``): tau = 1/(1 − exp(−1/τ_m)),
the e-prop code's β_e = β(1 − ρ) and n_ref = refractory + 1.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from spikelight.core.surrogate import FastSigmoid, Triangle
from spikelight.layers.recurrent import RecurrentSpikingLayer
from spikelight.learning.eprop import EProp
from spikelight.losses import ReadoutCrossEntropyLoss
from spikelight.models.lsnn import LSNN
from spikelight.neurons import ALIFNode, LIFNode, lif_neuron
from spikelight.readout import MembraneReadout

TAU_M, TAU_A, DAMPENING = 20.0, 30.0, 0.3
TAU_OURS = 1.0 / (1.0 - math.exp(-1.0 / TAU_M))


class _SpikeFunction(torch.autograd.Function):
    """Both codes' ``SpikeFunction``: ``z = v_scaled > 0``; ``dz/dv_scaled = dampening·max(1 − |v_scaled|, 0)``."""

    @staticmethod
    def forward(ctx, v_scaled, dampening):
        ctx.save_for_backward(v_scaled)
        ctx.dampening = dampening
        return (v_scaled > 0.0).to(v_scaled.dtype)  # z_ = tf.greater(v_scaled, 0.)

    @staticmethod
    def backward(ctx, dy):
        (v_scaled,) = ctx.saved_tensors
        return dy * (torch.clamp(1 - v_scaled.abs(), min=0) * ctx.dampening), None


def lsnn_official(inputs, w_in, w_rec, thr, beta, n_refractory, tau=TAU_M, tau_adaptation=TAU_A, dt=1.0):
    """LSNN-official's ALIF over a [B, T, n_in] input, batch-major as its ``tf.nn.dynamic_rnn``:
    returns (z, v) [B, T, n_rec]. ``beta`` [n_rec] (0 = LIF neurons, as the tutorial's mixture)."""
    B, T, _ = inputs.shape
    n_rec = w_in.shape[1]
    decay = torch.exp(torch.tensor(-dt / tau, dtype=inputs.dtype))  # self._decay = tf.exp(-dt / tau)
    decay_b = math.exp(-dt / tau_adaptation)  # self.decay_b = np.exp(-dt / tau_adaptation)
    W_rec = torch.where(torch.eye(n_rec, dtype=torch.bool), torch.zeros_like(w_rec), w_rec)  # disconnect autapse
    z = torch.zeros(B, n_rec, dtype=inputs.dtype)
    v = torch.zeros_like(z)
    b = torch.zeros_like(z)
    z_buffer = torch.zeros(B, n_rec, n_refractory, dtype=inputs.dtype)
    zs, vs = [], []
    for t in range(T):
        # i_future_buffer = state.i_future_buffer + einsum(inputs, W_in) + einsum(state.z, W_rec)   (n_delay = 1)
        i_future_buffer = inputs[:, t] @ w_in + z @ W_rec
        new_b = decay_b * b + (1.0 - decay_b) * z  # new_b = self.decay_b * state.b + (1. - self.decay_b) * state.z
        thr_t = thr + new_b * beta  # thr = self.thr + new_b * self.beta * self.V0
        # --- LIF_dynamic(v=state.v, z=state.z, z_buffer, i_future_buffer, decay, thr) ---
        i_t = i_future_buffer  # i_t = i_future_buffer[:, :, 0] + add_current
        I_reset = z * thr_t * dt  # I_reset = z * thr * self.dt
        new_v = decay * v + (1 - decay) * i_t - I_reset  # new_v = decay * v + (1 - decay) * i_t - I_reset
        v_scaled = (v - thr_t) / thr_t  # v_scaled = (v - thr) / thr
        new_z = _SpikeFunction.apply(v_scaled, DAMPENING)
        if n_refractory > 0:  # is_ref = tf.greater(tf.reduce_max(z_buffer[:, :, -n_refractory:], axis=2), 0)
            is_ref = z_buffer[:, :, -n_refractory:].max(dim=2).values > 0
            new_z = torch.where(is_ref, torch.zeros_like(new_z), new_z)
        new_z = new_z * 1 / dt
        # new_z_buffer = tf_roll(state.z_buffer, new_z, axis=2)
        z_buffer = torch.cat([z_buffer[:, :, 1:], new_z[:, :, None]], dim=2) if n_refractory else z_buffer
        v, z, b = new_v, new_z, new_b
        zs.append(z)
        vs.append(v)
    return torch.stack(zs, 1), torch.stack(vs, 1)


def elig_alif(inputs, w_in, w_rec, thr, beta_e, n_refractory, tau=TAU_M, tau_adaptation=TAU_A, dt=1.0,
              stop_z_gradients=False):  # fmt: skip
    """The e-prop code's ``EligALIF`` over [B, T, n_in]: returns (z, v, b) [B, T, n_rec]."""
    B, T, _ = inputs.shape
    n_rec = w_in.shape[1]
    decay = torch.exp(torch.tensor(-dt / tau, dtype=inputs.dtype))  # self._decay = tf.exp(-dt / tau)
    decay_b = math.exp(-dt / tau_adaptation)  # self.decay_b = np.exp(-dt / tau_adaptation)
    w_rec_val = torch.where(torch.eye(n_rec, dtype=torch.bool), torch.zeros_like(w_rec), w_rec)

    def compute_z(v, b):
        adaptive_thr = thr + b * beta_e  # adaptive_thr = self.thr + b * self.beta
        v_scaled = (v - adaptive_thr) / thr  # v_scaled = (v - adaptive_thr) / self.thr
        return _SpikeFunction.apply(v_scaled, DAMPENING) * 1 / dt

    z = torch.zeros(B, n_rec, dtype=inputs.dtype)
    z_local, v, b, r = z.clone(), z.clone(), z.clone(), z.clone()
    zs, vs, bs = [], [], []
    for t in range(T):
        zz = z.detach() if stop_z_gradients else z  # if use_stop_gradient: z = tf.stop_gradient(z)
        new_b = decay_b * b + z_local  # new_b = self.decay_b * b + z_local
        i_t = inputs[:, t] @ w_in + zz @ w_rec_val  # i_t = tf.matmul(inputs, self.w_in_val) + tf.matmul(z, ...)
        I_reset = zz * thr * dt  # I_reset = z * self.thr * self.dt
        new_v = decay * v + i_t - I_reset  # new_v = decay * v + i_t - I_reset
        is_refractory = r > 0
        zeros_like_spikes = torch.zeros_like(z)
        new_z = torch.where(is_refractory, zeros_like_spikes, compute_z(new_v, new_b))
        new_z_local = torch.where(is_refractory, zeros_like_spikes, compute_z(new_v, new_b))
        new_r = r + n_refractory * new_z - 1  # new_r = r + self.n_refractory * new_z - 1
        new_r = torch.clamp(new_r, 0.0, float(n_refractory)).detach()
        v, b, z, z_local, r = new_v, new_b, new_z, new_z_local, new_r
        zs.append(z)
        vs.append(v)
        bs.append(b)
    return torch.stack(zs, 1), torch.stack(vs, 1), torch.stack(bs, 1)


def lsnn_official_lif(inputs, w_in, w_rec, thr, n_refractory, tau=TAU_M, dt=1.0):
    """LSNN-official's ``LIF`` cell (``LIF.__call__`` + ``LIF_dynamic`` with its own thr and decay) over
    [B, T, n_in]: returns (z, v) [B, T, n_rec]."""
    B, T, _ = inputs.shape
    n_rec = w_in.shape[1]
    decay = torch.exp(torch.tensor(-dt / tau, dtype=inputs.dtype))  # self._decay = tf.exp(-dt / tau)
    W_rec = torch.where(torch.eye(n_rec, dtype=torch.bool), torch.zeros_like(w_rec), w_rec)  # disconnect autapse
    z = torch.zeros(B, n_rec, dtype=inputs.dtype)
    v = torch.zeros_like(z)
    z_buffer = torch.zeros(B, n_rec, n_refractory, dtype=inputs.dtype)
    zs, vs = [], []
    for t in range(T):
        i_future_buffer = inputs[:, t] @ w_in + z @ W_rec  # state.i_future_buffer + einsum(...) + einsum(...)
        i_t = i_future_buffer  # i_t = i_future_buffer[:, :, 0] + add_current
        I_reset = z * thr * dt  # I_reset = z * thr * self.dt   (thr = self.thr)
        new_v = decay * v + (1 - decay) * i_t - I_reset  # new_v = decay * v + (1 - decay) * i_t - I_reset
        v_scaled = (v - thr) / thr  # v_scaled = (v - thr) / thr
        new_z = _SpikeFunction.apply(v_scaled, DAMPENING)
        if n_refractory > 0:
            is_ref = z_buffer[:, :, -n_refractory:].max(dim=2).values > 0
            new_z = torch.where(is_ref, torch.zeros_like(new_z), new_z)
        new_z = new_z * 1 / dt
        z_buffer = torch.cat([z_buffer[:, :, 1:], new_z[:, :, None]], dim=2) if n_refractory else z_buffer
        v, z = new_v, new_z
        zs.append(z)
        vs.append(v)
    return torch.stack(zs, 1), torch.stack(vs, 1)


def light_lif(inputs, w_in, w_rec, thr, tau=TAU_M, dt=1.0):
    """The e-prop code's ``LightLIF.__call__`` over [B, T, n_in] (stop_z_gradients=False): (z, v) [B, T, n_rec]."""
    B, T, _ = inputs.shape
    n_rec = w_in.shape[1]
    decay = math.exp(-dt / tau)  # self._decay = tf.exp(-dt / self.tau)
    w_rec_val = torch.where(torch.eye(n_rec, dtype=torch.bool), torch.zeros_like(w_rec), w_rec)
    z = torch.zeros(B, n_rec, dtype=inputs.dtype)
    v = torch.zeros_like(z)
    zs, vs = [], []
    for t in range(T):
        i_t = inputs[:, t] @ w_in + z @ w_rec_val  # i_t = tf.matmul(inputs, self.w_in_val) + tf.matmul(z, ...)
        I_reset = z * thr * dt  # I_reset = z * self.thr * self.dt
        new_v = decay * v + (1 - decay) * i_t - I_reset  # new_v = decay * v + (1 - decay) * i_t - I_reset
        v_scaled = (new_v - thr) / thr  # v_scaled = (new_v - thr) / thr
        new_z = _SpikeFunction.apply(v_scaled, DAMPENING) * 1 / dt
        v, z = new_v, new_z
        zs.append(z)
        vs.append(v)
    return torch.stack(zs, 1), torch.stack(vs, 1)


def eprop_loss_gradient(learning_signal, z_pre, z_post, v_post, b_post, thr, beta_e, n_ref, decay_out, is_rec,
                        tau=TAU_M, tau_adaptation=TAU_A):  # fmt: skip
    """``EligALIF.compute_loss_gradient`` (with ``compute_eligibility_traces``): dE/dW [n_pre, n_post].
    Inputs batch-major [B, T, n] as the code's."""
    rho = math.exp(-1.0 / tau_adaptation)
    alpha = math.exp(-1.0 / tau)
    thr_post = thr + beta_e * b_post
    v_scaled = (v_post - thr_post) / thr  # v_scaled = (v_post - thr_post) / self.thr
    n_neurons = z_post.shape[2]
    # everything should be time major
    z_pre, v_scaled, z_post = z_pre.transpose(0, 1), v_scaled.transpose(0, 1), z_post.transpose(0, 1)
    psi_no_ref = DAMPENING / thr * torch.clamp(1.0 - v_scaled.abs(), min=0.0)
    count = [torch.zeros_like(z_post[0], dtype=torch.int64)]  # refractory_count_init
    for zp in z_post[:-1]:  # update_refractory: tf.where(z_post > 0, n_ref - 1, tf.maximum(0, count - 1))
        count.append(torch.where(zp > 0, torch.full_like(count[-1], n_ref - 1), torch.clamp(count[-1] - 1, min=0)))
    is_refractory = torch.stack(count) > 0
    psi = torch.where(is_refractory, torch.zeros_like(psi_no_ref), psi_no_ref)
    eps_v = [torch.ones(1, 1, n_neurons, dtype=z_pre.dtype) * z_pre[0][:, :, None]]  # epsilon_v_zero
    for zp in z_pre[1:]:  # update_epsilon_v = alpha * epsilon_v + z_pre[:, :, None]
        eps_v.append(alpha * eps_v[-1] + zp[:, :, None])
    epsilon_v = torch.stack(eps_v)
    eps_a = [torch.zeros_like(epsilon_v[0])]  # epsilon_a_zero
    for t in range(1, epsilon_v.shape[0]):  # (rho - beta * psi) * epsilon_a + psi * epsi, on psi[:-1], epsilon_v[:-1]
        eps_a.append((rho - beta_e * psi[t - 1][:, None, :]) * eps_a[-1] + psi[t - 1][:, None, :] * epsilon_v[t - 1])
    epsilon_a = torch.stack(eps_a)
    e_trace = psi[:, :, None, :] * (epsilon_v - beta_e * epsilon_a)  # [T, B, n_pre, n_post]
    if is_rec:
        e_trace = e_trace - torch.eye(n_neurons, dtype=e_trace.dtype)[None, None] * e_trace
    filtered, prev = [], torch.zeros_like(e_trace[0])  # filtered_e * decay_out + e * (1 - decay_out)
    for e in e_trace:
        prev = prev * decay_out + e * (1 - decay_out)
        filtered.append(prev)
    e_trace = torch.stack(filtered).transpose(0, 1)
    return torch.einsum("btj,btij->ij", learning_signal, e_trace)  # gradient = einsum('btj,btij->ij', L, e)


# ---------------------------------------------------------------------------------------------------------------


def _weights(n_in, n_rec, seed, scale_in=1.0):
    gen = torch.Generator().manual_seed(seed)
    w_in = torch.randn(n_in, n_rec, generator=gen, dtype=torch.float64) * scale_in / math.sqrt(n_in)
    w_rec = torch.randn(n_rec, n_rec, generator=gen, dtype=torch.float64) / math.sqrt(n_rec)
    x = torch.rand(3, 60, n_in, generator=gen, dtype=torch.float64)
    c_z = torch.randn(3, 60, n_rec, generator=gen, dtype=torch.float64)
    c_v = torch.randn(3, 60, n_rec, generator=gen, dtype=torch.float64)
    return w_in, w_rec, x, c_z, c_v


def _layer(neuron: ALIFNode, w_in, w_rec) -> RecurrentSpikingLayer:
    layer = RecurrentSpikingLayer(w_in.shape[0], w_in.shape[1], neuron).double()
    with torch.no_grad():
        layer.fc.weight.copy_(w_in.t())
        layer.rec.weight.copy_(w_rec.t())
    return layer


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def _grads_of(fn, *params):
    params = [p.detach().clone().requires_grad_(True) for p in params]
    loss = fn(*params)
    return torch.autograd.grad(loss, params)


def _layer_grads(layer: RecurrentSpikingLayer, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dL/dW_in, dL/dW_rec of our layer in the codes' layout ([n_in, n_rec], [n_rec, n_rec])."""
    g_in, g_rec = torch.autograd.grad(loss, [layer.fc.weight, layer.rec.weight])
    return g_in.t().double(), g_rec.t().double()


@pytest.mark.parametrize("backend", ["torch", "fused", "native", "auto"])
@pytest.mark.parametrize("n_ref", [0, 2])
def test_lsnn_official_recurrent_layer_equals_the_transcription(backend, n_ref):
    """One-line bugs caught: firing from h_t instead of v_{t−1}; resetting by v_th instead of A_t; normalising by
    v_th; ``>=`` instead of ``>``; the refractory count off by one; the reset's gradient through A_t dropped.
    (``native``: the C loops, fp32 only: the layer runs in fp32 against the float64 transcription.)"""
    thr = 0.05
    beta = torch.tensor([0.0] * 6 + [1.8] * 10, dtype=torch.float64)  # LIF + ALIF, as the tutorial's mixture
    w_in, w_rec, x, c_z, c_v = _weights(4, 16, seed=1, scale_in=0.6)
    z_ref, v_ref = lsnn_official(x, w_in, w_rec, thr, beta, n_ref)
    assert 0.02 < float(z_ref.mean()) < 0.4  # the comparison sees spikes, adaptation and resets

    neuron = ALIFNode(tau=TAU_OURS, tau_adapt=TAU_A, beta=1.8, adaptive_fraction=10 / 16, refractory=n_ref,
                      v_threshold=thr, v_reset=None, surrogate=Triangle(1.0, DAMPENING), backend=backend,
                      convention="lsnn_official")  # fmt: skip
    dtype = torch.float32 if backend == "native" else torch.float64
    layer = _layer(neuron, w_in, w_rec).to(dtype)
    out = layer(x.transpose(0, 1).to(dtype))
    assert type(out.membrane.grad_fn).__name__ == ("OfficialALIFFunctionBackward" if backend != "torch" else
                                                   "StackBackward0")  # fmt: skip
    z, v = out.spikes.transpose(0, 1), out.membrane.transpose(0, 1)
    assert torch.equal(z.double(), z_ref)
    assert _rel(v.double(), v_ref) < (1e-9 if dtype == torch.float64 else 1e-5)
    g_ref = _grads_of(lambda wi, wr: sum((c * o).sum() for c, o in zip((c_z, c_v), lsnn_official(x, wi, wr, thr, beta,
                                                                                                  n_ref))), w_in, w_rec)  # fmt: skip
    g = _layer_grads(layer, (c_z.to(dtype) * z).sum() + (c_v.to(dtype) * v).sum())
    for name, a, b in zip(("W_in", "W_rec"), g, g_ref):
        assert _rel(a, b) < (1e-6 if dtype == torch.float64 else 1e-4), f"{name}: {_rel(a, b):.2e}"


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_lsnn_official_neuron_alone_equals_the_transcription(backend):
    """The neuron without recurrence: LSNN-official with W_in = I and W_rec = 0; gradient to the input current."""
    thr, n = 0.05, 8
    gen = torch.Generator().manual_seed(3)
    current = (torch.rand(2, 50, n, generator=gen, dtype=torch.float64) * 0.2).requires_grad_(True)
    c = torch.randn(2, 50, n, generator=gen, dtype=torch.float64)
    beta = torch.full((n,), 1.8, dtype=torch.float64)
    z_ref, v_ref = lsnn_official(current, torch.eye(n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64),
                                 thr, beta, 1)  # fmt: skip
    assert 0.02 < float(z_ref.detach().mean()) < 0.5
    (g_ref,) = torch.autograd.grad((c * (z_ref + v_ref)).sum(), current)
    neuron = ALIFNode(tau=TAU_OURS, tau_adapt=TAU_A, beta=1.8, refractory=1, v_threshold=thr, v_reset=None,
                      surrogate=Triangle(1.0, DAMPENING), backend=backend, convention="lsnn_official")  # fmt: skip
    out = neuron(current.transpose(0, 1))
    z, v = out.spikes.transpose(0, 1), out.membrane.transpose(0, 1)
    assert torch.equal(z, z_ref)
    assert _rel(v, v_ref) < 1e-9
    (g,) = torch.autograd.grad((c * (z + v)).sum(), current)
    assert _rel(g, g_ref) < 1e-6


def _eprop_neuron(backend: str, n_ref: int, beta_e: float, thr: float, **kw) -> ALIFNode:
    rho = math.exp(-1.0 / TAU_A)
    return ALIFNode(tau=TAU_OURS, tau_adapt=TAU_A, beta=beta_e / (1.0 - rho), refractory=n_ref - 1, decay_input=False,
                    v_threshold=thr, v_reset=None, surrogate=Triangle(1.0, DAMPENING), backend=backend,
                    convention="eprop", **kw)  # fmt: skip


@pytest.mark.parametrize("backend", ["torch", "fused", "native"])
@pytest.mark.parametrize("n_ref", [1, 3])
def test_eprop_recurrent_layer_equals_elig_alif(backend, n_ref):
    """EligALIF with autodiff (BPTT through it): spikes, v and gradients. Bugs caught: the reset before the leak
    (the spikelight order), β_e not converted, n_ref not shifted by one, ``>=``."""
    if backend == "native":
        from spikelight.dynamics.native import library

        if not library.available():
            pytest.skip("no C compiler")
    thr, beta_e = 0.6, 0.07
    w_in, w_rec, x, c_z, c_v = _weights(4, 16, seed=2, scale_in=1.0)
    z_ref, v_ref, _ = elig_alif(x, w_in, w_rec, thr, beta_e, n_ref)
    assert 0.02 < float(z_ref.mean()) < 0.5
    dtype = torch.float32 if backend == "native" else torch.float64  # the C loops are fp32

    layer = _layer(_eprop_neuron(backend, n_ref, beta_e, thr), w_in, w_rec).to(dtype)
    out = layer(x.transpose(0, 1).to(dtype))
    z, v = out.spikes.transpose(0, 1).double(), out.membrane.transpose(0, 1).double()
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    assert torch.equal(z, z_ref)
    assert _rel(v, v_ref) < tol
    g_ref = _grads_of(lambda wi, wr: sum((c * o).sum() for c, o in zip((c_z, c_v), elig_alif(x, wi, wr, thr, beta_e,
                                                                                             n_ref)[:2])), w_in, w_rec)  # fmt: skip
    g = _layer_grads(layer, (c_z * z).sum() + (c_v * v).sum())
    for name, a, b in zip(("W_in", "W_rec"), g, g_ref):
        assert _rel(a, b) < (1e-6 if dtype == torch.float64 else 1e-4), f"{name}: {_rel(a, b):.2e}"


def test_eprop_gradients_equal_the_eprop_code():
    """learning=eprop with the eprop convention: dE/dW_in and dE/dW_rec equal the e-prop code's
    ``compute_loss_gradient`` fed with the same learning signal (symmetric feedback, CE of the readout's
    mean over the last 10 steps, leaky readout). Bugs caught: ε^a's update off by a step, ψ not 0 while
    refractory, the readout filter missing from the traces, the trace's input factor."""
    thr, beta_e, n_ref, n_in, H, C, T, B = 0.3, 0.07, 2, 4, 16, 3, 60, 3
    tau_out, window = 8.0, 10
    torch.manual_seed(0)
    model = LSNN(functools.partial(_eprop_neuron, "torch", n_ref, beta_e, thr), in_features=n_in, hidden=H,
                 num_classes=C, readout_tau=tau_out).double()  # fmt: skip
    w_in, w_rec, x, _, _ = _weights(n_in, H, seed=4, scale_in=0.3)
    with torch.no_grad():
        model.rec.fc.weight.copy_(w_in.t())
        model.rec.rec.weight.copy_(w_rec.t() * model.rec.rec_mask)
    y = torch.tensor([0, 2, 1])
    readout, loss = MembraneReadout(mode="mean", window=window), ReadoutCrossEntropyLoss()
    rule = EProp("symmetric")
    rule.attach(model, readout, loss, None)
    res = rule.gradients(model, x.transpose(0, 1), y, readout, loss)
    # the e-prop code's side: its own forward, its readout (exp_convolve, then W_out), its learning signal
    z, v, b = elig_alif(x, model.rec.fc.weight.t().detach(), model.rec.rec.weight.t().detach(), thr, beta_e, n_ref)
    assert 0.02 < float(z.mean()) < 0.4
    decay_out = math.exp(-1.0 / tau_out)
    filt, prev = [], torch.zeros(B, H, dtype=torch.float64)
    for t in range(T):
        prev = prev * decay_out + (1 - decay_out) * z[:, t]
        filt.append(prev)
    w_out, b_out = model.readout.fc.weight.detach(), model.readout.fc.bias.detach()
    logits = (torch.stack(filt, 1) @ w_out.t() + b_out).requires_grad_(True)
    (dlogits,) = torch.autograd.grad(F.cross_entropy(logits[:, T - window :].mean(1), y), logits)
    learning_signal = dlogits @ w_out  # L_j^t = Σ_k B_jk ∂E/∂y_k^t, B = W_outᵀ
    z_prev = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1)  # shift_by_one_time_step
    g_in = eprop_loss_gradient(learning_signal, x, z, v, b, thr, beta_e, n_ref, decay_out, is_rec=False)
    g_rec = eprop_loss_gradient(learning_signal, z_prev, z, v, b, thr, beta_e, n_ref, decay_out, is_rec=True)
    assert torch.equal(res.out.hidden["rec.neuron"].squeeze(0) * T, z.sum(1))  # the same spikes
    assert _rel(res.grads["w_in"], g_in.t()) < 1e-6
    assert _rel(res.grads["w_rec"], g_rec.t()) < 1e-6


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_eprop_neuron_alone_equals_elig_alif(backend):
    """The neuron without recurrence: EligALIF with W_in = I and W_rec = 0; gradient to the input current."""
    thr, beta_e, n_ref, n = 0.5, 0.05, 2, 8
    gen = torch.Generator().manual_seed(5)
    current = (torch.rand(2, 50, n, generator=gen, dtype=torch.float64) * 0.4).requires_grad_(True)
    c = torch.randn(2, 50, n, generator=gen, dtype=torch.float64)
    z_ref, v_ref, _ = elig_alif(current, torch.eye(n, dtype=torch.float64), torch.zeros(n, n, dtype=torch.float64),
                                thr, beta_e, n_ref)  # fmt: skip
    assert 0.02 < float(z_ref.detach().mean()) < 0.5
    (g_ref,) = torch.autograd.grad((c * (z_ref + v_ref)).sum(), current)
    out = _eprop_neuron(backend, n_ref, beta_e, thr)(current.transpose(0, 1))
    z, v = out.spikes.transpose(0, 1), out.membrane.transpose(0, 1)
    assert torch.equal(z, z_ref)
    assert _rel(v, v_ref) < 1e-9
    (g,) = torch.autograd.grad((c * (z + v)).sum(), current)
    assert _rel(g, g_ref) < 1e-6


def _lif_layer_vs(transcription, neuron, w_in, w_rec, x, c_z, c_v, dtype):
    """Spikes equal, v within 1e-9 (1e-5 in fp32), gradients within 1e-6 (1e-4 in fp32)."""
    z_ref, v_ref = transcription(x, w_in, w_rec)
    assert 0.02 < float(z_ref.mean()) < 0.4  # the comparison sees spikes and resets
    layer = _layer(neuron, w_in, w_rec).to(dtype)
    out = layer(x.transpose(0, 1).to(dtype))
    z, v = out.spikes.transpose(0, 1), out.membrane.transpose(0, 1)
    assert torch.equal(z.double(), z_ref)
    assert _rel(v.double(), v_ref) < (1e-9 if dtype == torch.float64 else 1e-5)
    g_ref = _grads_of(lambda wi, wr: sum((c * o).sum() for c, o in zip((c_z, c_v), transcription(x, wi, wr))),
                      w_in, w_rec)  # fmt: skip
    g = _layer_grads(layer, (c_z.to(dtype) * z).sum() + (c_v.to(dtype) * v).sum())
    for name, a, b in zip(("W_in", "W_rec"), g, g_ref):
        assert _rel(a, b) < (1e-6 if dtype == torch.float64 else 1e-4), f"{name}: {_rel(a, b):.2e}"


@pytest.mark.parametrize("backend", ["torch", "fused", "native", "auto"])
@pytest.mark.parametrize("n_ref", [0, 2])
def test_lif_lsnn_official_equals_its_lif_cell(backend, n_ref):
    """``neuron=lif neuron.convention=lsnn_official``: LSNN-official's ``LIF`` cell (``--model=LIF``). Bugs
    caught: the spikelight LIF's order (fire from h_t, reset before the leak), the refractory count."""
    if backend == "native":
        from spikelight.dynamics.native import library

        if not library.available():
            pytest.skip("no C compiler")
    thr = 0.05
    w_in, w_rec, x, c_z, c_v = _weights(4, 16, seed=6, scale_in=0.6)
    neuron = lif_neuron(tau=TAU_OURS, decay_input=True, v_threshold=thr, v_reset=None, refractory=n_ref,
                        surrogate=Triangle(1.0, DAMPENING), backend=backend, convention="lsnn_official")  # fmt: skip
    dtype = torch.float32 if backend == "native" else torch.float64
    _lif_layer_vs(lambda x, wi, wr: lsnn_official_lif(x, wi, wr, thr, n_ref), neuron, w_in, w_rec, x, c_z, c_v, dtype)


@pytest.mark.parametrize("backend", ["torch", "fused", "native"])
def test_lif_eprop_equals_light_lif(backend):
    """``neuron=lif neuron.convention=eprop``: the e-prop code's ``LightLIF`` (input scaled by 1 − decay,
    no refractory counter). Bugs caught: the reset before the leak, ``>=``, the input factor."""
    if backend == "native":
        from spikelight.dynamics.native import library

        if not library.available():
            pytest.skip("no C compiler")
    thr = 0.4
    w_in, w_rec, x, c_z, c_v = _weights(4, 16, seed=7, scale_in=8.0)
    neuron = lif_neuron(tau=TAU_OURS, decay_input=True, v_threshold=thr, v_reset=None,
                        surrogate=Triangle(1.0, DAMPENING), backend=backend, convention="eprop")  # fmt: skip
    dtype = torch.float32 if backend == "native" else torch.float64
    _lif_layer_vs(lambda x, wi, wr: light_lif(x, wi, wr, thr), neuron, w_in, w_rec, x, c_z, c_v, dtype)


def test_lif_neuron_builds_each_convention():
    """spikelight without refractory is SpikingJelly's LIFNode (as before); the others, or a refractory
    period, run as ALIFNode with β = 0; a hard reset in a subtracting convention is one line naming the fix."""
    assert type(lif_neuron(tau=2.0)) is LIFNode
    for convention in ("lsnn_official", "eprop"):
        node = lif_neuron(tau=20.0, v_reset=None, convention=convention)
        assert isinstance(node, ALIFNode) and node.convention == convention and node.beta == 0.0
        assert node._kernel_spec().adaptive is False
    gated = lif_neuron(beta=0.9, refractory=3, v_threshold=0.7, v_reset=0.1, detach_reset=True, backend="fused")
    assert (gated.refractory, gated.tau, gated.decay_input) == (3, pytest.approx(10.0), False)  # snnTorch's form
    assert (gated.v_threshold, gated.v_reset, gated.detach_reset, gated.backend) == (0.7, 0.1, True, "fused")
    assert lif_neuron(tau=5.0, refractory=1).decay_input is True  # SpikingJelly's form, as LIFNode's default
    with pytest.raises(ValueError, match=r"LIF convention=eprop subtracts the threshold on a spike: set neuron\.v_reset=null"):
        lif_neuron(convention="eprop")
    with pytest.raises(ValueError, match="LIF convention must be one of"):
        lif_neuron(convention="norse")


def test_lif_refractory_in_the_spikelight_convention_is_lifnode_plus_the_gate():
    """ALIFNode with β = 0 is LIFNode spike for spike; with a refractory period of 3 steps, no neuron fires within
    3 steps of its last spike, where the plain LIF (driven hard enough to fire at every step) does."""
    gen = torch.Generator().manual_seed(8)
    x = 4.0 + torch.rand(40, 3, 5, generator=gen, dtype=torch.float64)
    plain = LIFNode(tau=4.0, surrogate=Triangle(1.0, DAMPENING), backend="torch")(x).spikes
    same = lif_neuron(tau=4.0, refractory=0, surrogate=Triangle(1.0, DAMPENING), backend="torch")
    as_alif = ALIFNode(tau=4.0, beta=0.0, decay_input=True, surrogate=Triangle(1.0, DAMPENING), backend="torch")
    assert torch.equal(same(x).spikes, plain) and torch.equal(as_alif(x).spikes, plain)

    def closest_gap(z):  # the fewest steps between two spikes of one neuron
        t = torch.arange(z.shape[0], dtype=torch.float64)[:, None, None].expand_as(z)
        times = [t[:, b, n][z[:, b, n] > 0] for b in range(z.shape[1]) for n in range(z.shape[2])]
        return min(int(ts.diff().min()) for ts in times if len(ts) > 1)

    gated = lif_neuron(tau=4.0, refractory=3, surrogate=Triangle(1.0, DAMPENING), backend="torch")(x).spikes
    assert closest_gap(plain) <= 3 and closest_gap(gated) == 4


@pytest.mark.parametrize("seed", range(4))
def test_the_spikelight_order_is_not_lsnn_officials(seed):
    """Why the convention is a setting: with LSNN-official's parameters mapped as the ALIF docstring says, the
    spikelight order (fire from h_t, reset by v_th before the next leak) does not reproduce its spikes when the
    membrane leaks. Measured here (τ_m = 20, 16 neurons, 3 sequences of 60 steps, seeds 0–3, 2026-12-06): the two
    disagree in 118, 379, 141, 156 of 2,880 neuron-steps, where LSNN-official fires 53, 171, 70, 65 spikes and the
    spikelight order 73, 258, 85, 101 (a like amount: not a neuron that fires anywhere or never); the weight
    gradients differ by 87–296% (largest element, relative)."""
    thr = 0.05
    beta = torch.tensor([0.0] * 6 + [1.8] * 10, dtype=torch.float64)
    w_in, w_rec, x, c_z, _ = _weights(4, 16, seed=seed, scale_in=0.6)
    z_ref, _ = lsnn_official(x, w_in, w_rec, thr, beta, 0)
    neuron = ALIFNode(tau=TAU_OURS, tau_adapt=TAU_A, beta=1.8, adaptive_fraction=10 / 16, v_threshold=thr,
                      v_reset=None, normalize=True, surrogate=Triangle(1.0, DAMPENING), backend="torch")  # fmt: skip
    z = _layer(neuron, w_in, w_rec)(x.transpose(0, 1)).spikes.transpose(0, 1)
    assert int((z != z_ref).sum()) >= 100
    assert 50 <= int(z_ref.sum()) and 0.5 * z_ref.sum() <= z.sum() <= 2 * z_ref.sum()


def test_conventions_need_a_soft_reset_and_their_normalisation():
    with pytest.raises(ValueError, match="v_reset=null"):
        ALIFNode(convention="eprop", v_reset=0.0)
    with pytest.raises(ValueError, match="normalize=null"):
        ALIFNode(convention="lsnn_official", v_reset=None, normalize=False)
    with pytest.raises(ValueError, match="convention must be one of"):
        ALIFNode(convention="bellec")


@pytest.mark.parametrize("convention", ["eprop", "lsnn_official"])
def test_a_potential_exactly_at_the_threshold_does_not_spike(convention):
    """Both codes fire on ``tf.greater(v_scaled, 0.)``: v_scaled = 0 is no spike (spikelight fires on >=)."""
    neuron = ALIFNode(tau=2.0, beta=0.0, decay_input=False, v_threshold=0.5, v_reset=None, convention=convention)
    state = neuron.initial_state(torch.zeros(1, 4))
    if convention == "lsnn_official":  # fires from the previous potential: put it on the threshold
        state = state._replace(v=torch.full((1, 4), 0.5))
        x = torch.zeros(1, 4)
    else:  # h = v - v/tau + x = x from rest
        x = torch.full((1, 4), 0.5)
    spike, _ = neuron.single_step(x, state)
    assert spike.sum() == 0
    spike, _ = neuron.single_step(x + 1e-3, state._replace(v=state.v + 1e-3))
    assert spike.sum() == 4


# --- Norse 1.1 ``norse/torch/functional/lsnn.py::lsnn_step`` ------------------------------------------------------


class _SuperSpike(torch.autograd.Function):
    """Norse's ``SuperSpike``: forward ``heaviside`` (``torch.gt(x, 0)``), backward ``dy/(|x| + 1)²``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.gt(x, torch.as_tensor(0.0)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (inp,) = ctx.saved_tensors
        return grad_output / (torch.abs(inp) + 1.0).pow(2)


def norse_lsnn(inputs, w_in, w_rec, tau_mem_inv, tau_adapt_inv, v_th, beta, dt, same_step_current=False,
               adaptation_gradient=False, tau_syn_inv=None):  # fmt: skip
    """``lsnn_step`` over [T, B, F] (as ``LSNNRecurrent`` runs it: b starting at v_th, no autapses),
    v_leak = v_reset = 0; ``tau_syn_inv`` None = 1/dt: the synaptic current does not outlive its step (Norse's
    default, 200 /s at dt = 1 ms, carries 0.8 of it to the next step: a synaptic filter our ALIF does not have,
    a third difference, set equal here). The two flags are the two places Norse's LSNN differs from
    Bellec's (and ours); both False is Norse as written:
    ``same_step_current``: the voltage integrates this step's jump (I_t) instead of the last step's (Norse:
    input reaches v one step late, recurrent spikes two); ``adaptation_gradient``: b jumps by β·z with z's
    gradient (Norse: z.detach())."""
    T, B, _ = inputs.shape
    H = w_in.shape[0]
    z = torch.zeros(B, H, dtype=inputs.dtype)
    v, i, b = torch.zeros_like(z), torch.zeros_like(z), torch.full_like(z, v_th)
    zs, vs = [], []
    for t in range(T):
        # (moved up when same_step_current) i_new = i_decayed + linear(input, W_in) + linear(state.z, W_rec)
        di = -dt * (1.0 / dt if tau_syn_inv is None else tau_syn_inv) * i  # di = -dt * p.tau_syn_inv * state.i
        i_decayed = i + di
        i_new = i_decayed + F.linear(inputs[t], w_in) + F.linear(z, w_rec)
        i_used = i_new if same_step_current else i
        dv = dt * tau_mem_inv * ((0.0 - v) + i_used)  # dv = dt * p.tau_mem_inv * ((p.v_leak - state.v) + state.i)
        v_decayed = v + dv
        db = dt * tau_adapt_inv * (v_th - b)  # db = dt * p.tau_adapt_inv * (p.v_th - state.b)
        b_decayed = b + db
        z_new = _SuperSpike.apply(v_decayed - b_decayed)  # threshold(v_decayed - b_decayed, "super", alpha)
        v_new = (1 - z_new.detach()) * v_decayed + z_new.detach() * 0.0  # reset with z_new.detach()
        b_new = b_decayed + (z_new if adaptation_gradient else z_new.detach()) * beta
        zs.append(z_new)
        vs.append(v_decayed)
        z, v, i, b = z_new, v_new, i_new, b_new
    return torch.stack(zs), torch.stack(vs)


def _norse_setup():
    dt, tau_mem_inv, tau_adapt_inv, v_th, beta_n = 1e-3, 1.0 / 5e-3, 1.0 / 40e-3, 0.4, 0.05
    gen = torch.Generator().manual_seed(5)
    H, F_in = 12, 3
    w_in = torch.randn(H, F_in, generator=gen, dtype=torch.float64)
    w_rec = torch.randn(H, H, generator=gen, dtype=torch.float64) * 0.5 * (1 - torch.eye(H, dtype=torch.float64))
    x = torch.rand(40, 2, F_in, generator=gen, dtype=torch.float64)
    rho = 1.0 - dt * tau_adapt_inv  # b - v_th decays by this per step
    neuron = ALIFNode(tau=1.0 / (dt * tau_mem_inv), tau_adapt=-1.0 / math.log(rho), beta=beta_n * rho / (1.0 - rho),
                      v_threshold=v_th, v_reset=0.0, detach_reset=True, surrogate=FastSigmoid(1.0))  # fmt: skip
    layer = RecurrentSpikingLayer(F_in, H, neuron).double()
    with torch.no_grad():
        layer.fc.weight.copy_(w_in)
        layer.rec.weight.copy_(w_rec)
    return layer, x, (w_in, w_rec, tau_mem_inv, tau_adapt_inv, v_th, beta_n, dt)


@pytest.mark.parametrize("synapse", ["instant", "norse_default"])
def test_the_norse_transcription_is_norse(synapse):
    """The transcription above, as written (both flags False), against Norse 1.1.0's own ``LSNNRecurrent`` run on
    the same inputs (``data/norse_1.1.0_lsnn.pt``, written by ``data/make_norse_lsnn.py``): spikes equal,
    gradients within 1e-9. Bugs caught: the current integrated in its own step, b without its decay toward v_th,
    the surrogate's scale, the synaptic decay."""
    from pathlib import Path

    ref = torch.load(Path(__file__).with_name("data") / "norse_1.1.0_lsnn.pt", weights_only=True)[synapse]
    _, x, args = _norse_setup()
    w_in, w_rec = (w.clone().requires_grad_(True) for w in args[:2])
    z, _ = norse_lsnn(x, w_in, w_rec, *args[2:], tau_syn_inv=float(ref["tau_syn_inv"]))
    assert 0.05 < float(z.detach().mean()) < 0.5
    assert torch.equal(z.detach(), ref["z"])
    c = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_in, g_rec = torch.autograd.grad((c * z).sum(), [w_in, w_rec])
    assert _rel(g_in, ref["g_in"]) < 1e-9
    assert _rel(g_rec * (1 - torch.eye(g_rec.shape[0], dtype=g_rec.dtype)), ref["g_rec"]) < 1e-9  # no autapses


def test_norse_lsnn_equals_ours_once_its_two_differences_are_set_equal():
    """Norse's LSNNRecurrent (v − b threshold, b relaxing to v_th and jumping by β_n z, Euler LIF, hard reset with
    a detached z) is our ALIF with β = β_n ρ/(1 − ρ), detach_reset and fast_sigmoid(1), once (1) its current reaches
    the membrane in the step it arrives and (2) the adaptation passes z's gradient. As written, it differs."""
    layer, x, args = _norse_setup()
    out = layer(x)
    z_n, v_n = norse_lsnn(x, *args, same_step_current=True, adaptation_gradient=True)
    assert 0.05 < float(z_n.mean()) < 0.5
    assert torch.equal(out.spikes, z_n)
    assert _rel(out.membrane, v_n) < 1e-9
    c = torch.randn(z_n.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_in, g_rec = torch.autograd.grad((c * out.spikes).sum(), [layer.fc.weight, layer.rec.weight])
    w_in, w_rec = (w.clone().requires_grad_(True) for w in args[:2])
    z_n, _ = norse_lsnn(x, w_in, w_rec, *args[2:], same_step_current=True, adaptation_gradient=True)
    gn_in, gn_rec = torch.autograd.grad((c * z_n).sum(), [w_in, w_rec])
    assert _rel(g_in, gn_in) < 1e-6
    assert _rel(g_rec, gn_rec * layer.rec_mask) < 1e-6
    # Norse as written: its membrane integrates the last step's current (and its adaptation has no gradient)
    z_norse, _ = norse_lsnn(x, *args)
    assert not torch.equal(out.spikes, z_norse)
