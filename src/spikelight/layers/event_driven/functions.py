"""Event-driven backpropagation (Zhu et al., NeurIPS 2022): the forward and backward time loops.

Ported from the authors' code (zhuyaoyu/SNN-event-driven-learning, ``layers/functions.py``,
``layers/linear.py``, ``layers/conv.py``), which no longer runs on current PyTorch (its conv
backward called ATen ops removed in torch 1.11); here the synapse gradients use
``torch.nn.grad.conv2d_input`` / ``conv2d_weight``.

Forward (per neuron, :func:`event_forward`): the dual-exponential update
(:func:`spikelight.dynamics.reference.dual_exp_update`), fire on u ≥ ϑ, reset every trace to 0;
it saves Δu_t = u_t − u_{t−1} (u_{t−1} after reset), Δu^g_t (= g_t for ``exponential``, Δu_t for
``original``) and the spikes o_t.

Backward (per neuron, :func:`event_backward`), only at spike times: the incoming gradient
G = dL/do is masked to the spikes and read as dL/dt_k (the gradient of the spike's *time*).
Scanning t from T−1 down to 0, with t_k the next spike at or after t and Δ = t_k − t:

    a_w = G_{t_k} · clamp(−1/Δu_{t_k}, −4, 0)                 (∂t/∂u ≈ −1/(du/dt))
    a_t = G_{t_k} · clamp(−1/Δu^g_{t_k}, −max_dudt_inv, 0)
    dL/dI_t (for the weights)      = a_w · syn_a[Δ]           syn_a[Δ] = ε(Δ + 1)
    dL/dI_t (for the input spikes) = a_t · partial_a[Δ]       partial_a = −delta_syn_a

and 0 after a neuron's last spike (an input only moves the next output spike: the reset
erases it). A layer I = Ŵ·x then gives dL/dŴ = Σ_t (dL/dI_t)ᵀ x_t and
dL/dx_t = (dL/dI_t · Ŵ) ⊙ x_t: input gradients exist only where input spikes exist.

The gradient of one output spike is split over the input spikes of its window in shares that
sum to one, so Σ dL/dt_in = Σ dL/dt_out (the paper's invariance; tested). For ``exponential``,
Δu^g_{t_k} = Σ_t I_t (1−θ_g)^(t_k−t+1) is exactly the normaliser of the shares, which are all
positive; for ``original``, Σ_t I_t (ε(t_k−t+1) − ε(t_k−t)) = Δu_{t_k} normalises them too, but
the shares of old inputs are negative (the paper's "reverse gradient problem"). The authors'
0.85 damping (``input_grad_damping``) then shrinks the sum by 0.85 per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from spikelight.dynamics.fused.dual_exp import dual_exp_step_
from spikelight.dynamics.spec import DualExpSpec

__all__ = [
    "GRAD_TYPES",
    "AUTHORS_INPUT_GRAD_DAMPING",
    "EventConfig",
    "EventForward",
    "GradStats",
    "LinearOp",
    "Conv2dOp",
    "kernel_tables",
    "event_forward",
    "event_backward",
    "event_backward_reference",
    "exp_terms",
    "inject_label_spikes",
    "EventSynapseFunction",
    "AdjustedAvgPool2dFunction",
    "StandardizeAuthorsFunction",
    "standardize_weight",
    "target_init_spikes",
    "bisect_gain",
    "late_spike_rate",
]

GRAD_TYPES = ("exponential", "original")
#: The authors multiply every layer's input gradient by this hard-coded factor (linear.py, conv.py).
AUTHORS_INPUT_GRAD_DAMPING = 0.85
#: The authors' default clamp of −1/Δu^g (in effect no clamp).
MAX_DUDT_INV = 123456789.0
STD_EPS = 1e-5


@dataclass(frozen=True)
class EventConfig:
    """Constants of one event-driven layer.

    neuron: the dual-exponential neuron (:class:`~spikelight.dynamics.spec.DualExpSpec`: θ_m = 1/τ_m,
        θ_s = 1/τ_s, θ_g = 1/τ_grad, the threshold ϑ), as the neuron module describes it to every path.
    grad_type: ``exponential`` (kernel (1−1/τ_grad)^(Δ+1), every published config) or
        ``original`` (the derivative of the PSP kernel, ε(Δ+1) − ε(Δ); it turns negative
        for old inputs: the paper's "reverse gradient problem").
    input_grad_damping: factor on the input gradient passed to the layer below (the
        authors' hidden 0.85; 1.0 keeps the gradient sum exactly).
    max_dudt_inv: clamp of −1/Δu^g (the authors' 123456789, in effect none).
    """

    neuron: DualExpSpec
    grad_type: str = "exponential"
    input_grad_damping: float = AUTHORS_INPUT_GRAD_DAMPING
    max_dudt_inv: float = MAX_DUDT_INV

    def __post_init__(self) -> None:
        if self.grad_type not in GRAD_TYPES:
            raise ValueError(f"grad_type must be one of {GRAD_TYPES}, got {self.grad_type!r}")
        if not self.input_grad_damping >= 0:
            raise ValueError(f"input_grad_damping must be >= 0, got {self.input_grad_damping}")

    @classmethod
    def from_taus(cls, tau_m: float, tau_s: float, tau_grad: float, threshold: float = 1.0, **kwargs) -> EventConfig:
        """The config of a neuron given by its time constants (steps) and threshold."""
        return cls(DualExpSpec(1.0 / tau_m, 1.0 / tau_s, 1.0 / tau_grad, threshold, detach_reset=False), **kwargs)

    @property
    def thetas(self) -> tuple[float, float, float]:
        return self.neuron.theta_m, self.neuron.theta_s, self.neuron.theta_g

    @property
    def threshold(self) -> float:
        return self.neuron.v_threshold


def kernel_tables(cfg: EventConfig, T: int, device=None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """(syn_a, partial_a), each [T + 1] (index Δ = 0..T−1, zero pad at T).

    syn_a[Δ] = ε(Δ + 1); partial_a[Δ] = −(1 − θ_g)^(Δ+1) (``exponential``) or −(ε(Δ+1) − ε(Δ))
    (``original``). Computed in float64 as the authors' tables are (python floats).
    """
    theta_m, theta_s, theta_g = cfg.thetas

    def eps(k: int) -> float:
        return ((1 - theta_m) ** k - (1 - theta_s) ** k) * theta_s / (theta_s - theta_m)

    syn_a = [eps(d + 1) for d in range(T)] + [0.0]
    if cfg.grad_type == "exponential":
        delta = [(1 - theta_g) ** (d + 1) for d in range(T)] + [0.0]
    else:
        delta = [eps(d + 1) - eps(d) for d in range(T)] + [0.0]
    to = dict(device=device, dtype=dtype)
    return torch.tensor(syn_a, **to), -torch.tensor(delta, **to)


class EventForward(NamedTuple):
    """What :func:`event_forward` returns, each [T, B, ...]."""

    delta_u: Tensor  # Δu_t = u_t − u_{t−1} (after reset)
    delta_u_g: Tensor  # Δu^g_t: g_t (exponential) or Δu_t (original)
    spikes: Tensor  # o_t in {0, 1}
    membrane: Tensor  # u_t before reset


@torch.no_grad()
def event_forward(in_I: Tensor, cfg: EventConfig) -> EventForward:
    """The neuron forward over time on synaptic input in_I [T, B, ...] (no autograd).

    The neuron's step is the fused backend's in-place step
    (:func:`spikelight.dynamics.fused.dual_exp.dual_exp_step_`: no allocation per step, which
    dominates on CPU); held to :class:`~spikelight.neurons.DualExpNode` by the tests (same spikes,
    same membrane).
    """
    theta_m, theta_s, theta_g = cfg.thetas
    dtype = torch.promote_types(in_I.dtype, torch.float32)  # neuron arithmetic in >= fp32 (AMP)
    shape = in_I.shape
    exp_grad = cfg.grad_type == "exponential"
    delta_u, spikes, membrane = (torch.empty(shape, dtype=dtype, device=in_I.device) for _ in range(3))
    delta_u_g = torch.empty_like(delta_u) if exp_grad else delta_u  # 'original' reads Δu itself
    traces = [torch.zeros(shape[1:], dtype=dtype, device=in_I.device) for _ in range(3 if exp_grad else 2)]
    alphas = (1.0 - theta_m, 1.0 - theta_s, 1.0 - theta_g)[: len(traces)]
    u_last, silent = torch.zeros_like(traces[0]), torch.empty_like(traces[0])
    for t in range(shape[0]):
        # the neuron's step (a spike resets every trace to 0); g before its reset is Δu^g
        dual_exp_step_(traces, in_I[t], alphas, cfg.neuron.scale, cfg.threshold, cfg.neuron.strict, membrane[t],
                       spikes[t], silent,
                       pre=[None, None, delta_u_g[t]] if exp_grad else None)  # fmt: skip
        torch.sub(membrane[t], u_last, out=delta_u[t])
        torch.mul(membrane[t], silent, out=u_last)
    return EventForward(delta_u, delta_u_g, spikes, membrane)


@torch.no_grad()
def event_backward_reference(
    grad: Tensor, spikes: Tensor, delta_u: Tensor, delta_u_g: Tensor, syn_a: Tensor, partial_a: Tensor,
    max_dudt_inv: float = MAX_DUDT_INV,
) -> tuple[Tensor, Tensor]:
    """The authors' backward time loop (``neuron_backward_py``), line by line, with the tables.

    grad: dL/dt at the spikes [T, B, ...] (already masked by ``spikes``).
    Returns ``(grad_in_, grad_w_)`` [T, B, ...]: dL/dI_t for the input-spike gradient and for
    the weight gradient (module docstring). :func:`event_backward` is the fast equivalent.
    """
    T = grad.shape[0]
    grad_in_, grad_w_ = torch.empty_like(grad), torch.empty_like(grad)
    a_w = torch.zeros_like(grad[0])
    a_t = torch.zeros_like(grad[0])
    delta_t = torch.zeros(grad.shape[1:], dtype=torch.long, device=grad.device)
    spiked = torch.zeros_like(grad[0])
    for t in range(T - 1, -1, -1):
        out = spikes[t]
        keep = 1.0 - out
        spiked = spiked + (1.0 - spiked) * out
        partial_u = torch.clamp(-1.0 / delta_u[t], -4.0, 0.0)
        partial_u_t = torch.clamp(-1.0 / delta_u_g[t], -max_dudt_inv, 0.0)
        a_w = a_w * keep + grad[t] * partial_u * out
        a_t = a_t * keep + grad[t] * partial_u_t * out
        delta_t = (delta_t + 1) * keep.long()
        grad_in_[t] = a_t * partial_a[delta_t] * spiked
        grad_w_[t] = a_w * syn_a[delta_t] * spiked
    return grad_in_, grad_w_


def exp_terms(cfg: EventConfig) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The tables as sums of exponentials, table[Δ] = Σ_i coef_i · rate_i^Δ: (syn_a terms, partial_a terms).

    syn_a[Δ] = ε(Δ+1) = c·(a^(Δ+1) − b^(Δ+1)) with a = 1−θ_m, b = 1−θ_s, c = θ_s/(θ_s−θ_m);
    partial_a[Δ] = −r^(Δ+1), r = 1−θ_g (exponential) or −(ε(Δ+1) − ε(Δ)) = −c·(a−1)·a^Δ + c·(b−1)·b^Δ
    (original). The fast backward runs each term as a running product instead of a table lookup.
    """
    theta_m, theta_s, theta_g = cfg.thetas
    a, b, c = 1.0 - theta_m, 1.0 - theta_s, theta_s / (theta_s - theta_m)
    syn = [(c * a, a), (-c * b, b)]
    if cfg.grad_type == "exponential":
        r = 1.0 - theta_g
        return syn, [(-r, r)]
    return syn, [(-c * (a - 1.0), a), (c * (b - 1.0), b)]


def _scan_terms(a_spike: Tensor, silent: Tensor, terms: list[tuple[float, float]], scale: float = 1.0) -> Tensor:
    """Σ_i coef_i·rate_i^Δ · a(t_k), scanned from t = T−1 down to 0 (Δ = t_k − t, t_k the next spike).

    a_spike: the spike's factor a(t_k) at spike steps, 0 elsewhere [T, B, ...]; silent = 1 − spikes.
    Each term is a running value v: at a spike v = coef·a(t_k), else v ← v·rate; 0 after the last spike.
    """
    T = silent.shape[0]
    out = torch.zeros_like(a_spike)
    for coef, rate in terms:
        v = torch.zeros_like(a_spike[0])
        for t in range(T - 1, -1, -1):
            v.mul_(silent[t]).mul_(rate).add_(a_spike[t], alpha=coef * scale)
            out[t].add_(v)
    return out


@torch.no_grad()
def event_backward(
    grad: Tensor, spikes: Tensor, delta_u: Tensor, delta_u_g: Tensor, cfg: EventConfig, in_scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Fast :func:`event_backward_reference` (same maths): the table lookups syn_a[Δ] / partial_a[Δ]
    become running products of exponentials (:func:`exp_terms`), without index tensors.

    grad: dL/dt at the spikes [T, B, ...] (masked). ``in_scale`` multiplies ``grad_in_`` (the
    input-gradient damping, folded in for free). Returns ``(grad_in_, grad_w_)``.
    """
    syn_terms, partial_terms = exp_terms(cfg)
    # a_w(t_k) = G·clamp(−1/Δu, −4, 0) and a_t(t_k) = G·clamp(−1/Δu^g, −max_dudt_inv, 0) at spikes (G is 0 elsewhere)
    silent = 1.0 - spikes
    a_w = delta_u.reciprocal().neg_().clamp_(-4.0, 0.0).mul_(grad)
    grad_w_ = _scan_terms(a_w, silent, syn_terms)
    del a_w
    a_t = delta_u_g.reciprocal().neg_().clamp_(-cfg.max_dudt_inv, 0.0).mul_(grad)
    grad_in_ = _scan_terms(a_t, silent, partial_terms, in_scale)
    return grad_in_, grad_w_


@torch.no_grad()
def inject_label_spikes(spikes: Tensor, delta_u: Tensor, labels: Tensor, min_rise: float = 0.05) -> Tensor:
    """Label-spike injection at the output layer (training only; the authors' ``LinearFunc``).

    For each sample's label neuron: the last step t* where Δu > ``min_rise`` (step 0 if there
    is none, as ``torch.max`` of all zeros returns 0) gets o_{t*} = [Δu_{t*} ≠ 0], with no
    reset. A silent label neuron so gets a spike time that carries gradient.

    spikes, delta_u: [T, B, C]; labels: [B]. Returns a modified copy of ``spikes``.
    """
    T, B = spikes.shape[:2]
    out = spikes.clone()
    b = torch.arange(B, device=spikes.device)
    rise = delta_u[:, b, labels]  # [T, B]
    is_inc = (rise > min_rise).to(rise.dtype)
    steps = torch.arange(1, T + 1, device=spikes.device, dtype=rise.dtype).unsqueeze(-1)
    t_star = torch.max(is_inc * steps, dim=0).indices
    out[t_star, b, labels] = (delta_u[t_star, b, labels] != 0).to(out.dtype)
    return out


# --- synapse operators ----------------------------------------------------------------------
@dataclass(frozen=True)
class LinearOp:
    """I = x · Ŵᵀ on [N, in_features] → [N, out_features]."""

    def __call__(self, x: Tensor, w: Tensor) -> Tensor:
        return x.matmul(w.t())

    def input_grad(self, x_shape: torch.Size, w: Tensor, g: Tensor) -> Tensor:
        return g.matmul(w)

    def weight_grad(self, x: Tensor, w_shape: torch.Size, g: Tensor) -> Tensor:
        return g.t().matmul(x)


@dataclass(frozen=True)
class Conv2dOp:
    """I = conv2d(x, Ŵ) on [N, C, H, W] (no bias)."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __call__(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def input_grad(self, x_shape: torch.Size, w: Tensor, g: Tensor) -> Tensor:
        return torch.nn.grad.conv2d_input(x_shape, w, g, self.stride, self.padding, self.dilation, self.groups)

    def weight_grad(self, x: Tensor, w_shape: torch.Size, g: Tensor) -> Tensor:
        return torch.nn.grad.conv2d_weight(x, w_shape, g, self.stride, self.padding, self.dilation, self.groups)


@dataclass
class GradStats:
    """Running sums a layer's backward adds to while attached (gradient-flow monitoring).

    grad_out: Σ dL/do over the layer's output spikes (after masking to spikes).
    grad_in:  Σ dL/dx over its input, as passed to the layer below (after damping);
              stays None for a layer whose input needs no gradient (the first layer).
    steps:    backward calls counted.
    """

    grad_out: Tensor | None = None
    grad_in: Tensor | None = None
    steps: int = 0

    def add(self, name: str, value: Tensor) -> None:
        v = value.detach().double()
        cur = getattr(self, name)
        setattr(self, name, v if cur is None else cur + v)

    def reset(self) -> None:
        self.grad_out = self.grad_in = None
        self.steps = 0


def _is_repeated(x: Tensor) -> bool:
    return x.dim() > 0 and x.shape[0] > 1 and x.stride(0) == 0


class EventSynapseFunction(torch.autograd.Function):
    """Synapse (linear or conv with weight Ŵ) + dual-exponential neurons over time, event-driven backward.

    forward(x [T, B, ...], weight Ŵ, op, cfg, labels [B] or None, stats GradStats or None)
    → (spikes [T, B, ...], membrane u [T, B, ...]) and, when labels are given (output layer in
    training), a third output: the spikes as emitted before label-spike injection.
    Only ``spikes`` carries gradient. A stride-0 input repeated over time (direct encoding)
    runs the synapse once.
    """

    @staticmethod
    def forward(ctx, x, weight, op, cfg, labels, stats):  # type: ignore[override]
        T, B = x.shape[:2]
        if _is_repeated(x):
            one = op(x[0], weight)
            in_I = one.unsqueeze(0).expand(T, *one.shape)
        else:
            in_I = op(x.reshape(T * B, *x.shape[2:]), weight).unflatten(0, (T, B))
        fwd = event_forward(in_I, cfg)
        spikes = fwd.spikes
        outs = [spikes, fwd.membrane]
        if labels is not None:
            emitted = spikes
            spikes = inject_label_spikes(emitted, fwd.delta_u, labels)
            outs = [spikes, fwd.membrane, emitted]
        ctx.save_for_backward(x, weight, fwd.delta_u, fwd.delta_u_g, spikes)
        ctx.op, ctx.cfg, ctx.stats = op, cfg, stats
        ctx.mark_non_differentiable(*outs[1:])
        return tuple(outs)

    @staticmethod
    def backward(ctx, grad_spikes, *unused):  # type: ignore[override]
        x, weight, delta_u, delta_u_g, spikes = ctx.saved_tensors
        op, cfg, stats = ctx.op, ctx.cfg, ctx.stats
        T, B = spikes.shape[:2]
        grad = grad_spikes * spikes  # gradients exist only at spikes
        # the input-gradient damping is folded into grad_in_ (one multiply less over the input)
        grad_in_, grad_w_ = event_backward(grad, spikes, delta_u, delta_u_g, cfg, cfg.input_grad_damping)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[1]:
            if _is_repeated(x):  # the same x at every step: Σ_t g_tᵀ x = (Σ_t g_t)ᵀ x
                grad_weight = op.weight_grad(x[0], weight.shape, grad_w_.sum(0))
            else:
                grad_weight = op.weight_grad(x.reshape(T * B, *x.shape[2:]), weight.shape, grad_w_.flatten(0, 1))
        if ctx.needs_input_grad[0]:
            flat_shape = torch.Size((T * B, *x.shape[2:]))
            grad_x = op.input_grad(flat_shape, weight, grad_in_.flatten(0, 1)).unflatten(0, (T, B)).mul_(x)
        if stats is not None:
            stats.add("grad_out", grad.sum())
            if grad_x is not None:
                stats.add("grad_in", grad_x.sum())
            stats.steps += 1
        return grad_x, grad_weight, None, None, None, None


class AdjustedAvgPool2dFunction(torch.autograd.Function):
    """Average pooling whose backward keeps the gradient sum (§1.5 of the algorithm notes).

    forward: avg_pool2d(k) on [N, C, H, W] (the fractions p = n/k² are passed on as the next
    layer's "spikes"). backward: each input of a window gets grad_out / (k²·p), 0 where p = 0
    (the authors' rule: 1/p > k² + 1 counts as empty). With the next layer's ⊙x (x = p) and the
    previous layer's ⊙o, each spiking input of a window gets an equal share of the window's
    gradient, so the sum is kept; plain average pooling shrinks it by p. Inputs cut off by
    a size that k does not divide get no gradient (they are not pooled).
    """

    @staticmethod
    def forward(ctx, x, kernel):  # type: ignore[override]
        out = F.avg_pool2d(x, kernel)
        ctx.save_for_backward(out)
        ctx.kernel, ctx.in_hw = kernel, x.shape[-2:]
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        kh, kw = ctx.kernel
        area = kh * kw
        inv = 1.0 / out
        inv = torch.where(inv > area + 1, torch.zeros_like(inv), inv) / area
        g = (grad_out * inv).repeat_interleave(kh, -2).repeat_interleave(kw, -1)
        H, W = ctx.in_hw
        if g.shape[-2:] != (H, W):
            g = F.pad(g, (0, W - g.shape[-1], 0, H - g.shape[-2]))
        return g, None


# --- weight standardisation -----------------------------------------------------------------
def _channel_stats(weight: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    C = weight.shape[0]
    flat = weight.reshape(C, -1)
    shape = (C,) + (1,) * (weight.dim() - 1)
    return flat.mean(1).view(shape), flat.var(1, unbiased=True).view(shape), shape


def standardize_weight(weight: Tensor, gain: Tensor, shift: Tensor) -> Tensor:
    """Ŵ = (W − μ_c) / √(σ²_c + 1e−5) · gain_c + shift_c per output channel c (exact autograd).

    μ_c and σ²_c (unbiased, as ``torch.std``²) are over the channel's fan-in; ``shift`` moves every
    weight of the channel (it is not an output bias). weight [C, ...]; gain, shift [C].
    """
    C = weight.shape[0]
    shape = (C,) + (1,) * (weight.dim() - 1)
    var, mean = torch.var_mean(weight.reshape(C, -1), dim=1, correction=1)
    # Ŵ = W·a + b with per-channel a = gain/σ, b = shift − μ·a: one pass over W forward, few backward
    scale = gain * torch.rsqrt(var + STD_EPS)
    return torch.addcmul((shift - mean * scale).view(shape), weight, scale.view(shape))


class StandardizeAuthorsFunction(torch.autograd.Function):
    """:func:`standardize_weight` forward with the authors' manual backward (``bn_backward``).

    It differs from the exact gradient in two ways: the gain's gradient is Σ G·Ŵ instead of
    Σ G·(W − μ)/σ (it includes gain and shift), and the mean / variance terms are taken
    elementwise instead of summed over the channel, so in effect dL/dW ≈ gain·G/σ (the
    projection that removes the channel mean and the component along (W − μ) is missing).
    """

    @staticmethod
    def forward(ctx, weight, gain, shift):  # type: ignore[override]
        mean, var, shape = _channel_stats(weight)
        ctx.save_for_backward(weight, gain, shift, mean, var)
        return (weight - mean) / torch.sqrt(var + STD_EPS) * gain.view(shape) + shift.view(shape)

    @staticmethod
    def backward(ctx, grad_w_hat):  # type: ignore[override]
        weight, gain, shift, mean, var = ctx.saved_tensors
        C = weight.shape[0]
        shape = (C,) + (1,) * (weight.dim() - 1)
        std_inv = 1.0 / torch.sqrt(var + STD_EPS)
        w_hat = (weight - mean) * std_inv * gain.view(shape) + shift.view(shape)
        grad_shift = grad_w_hat.reshape(C, -1).sum(1)
        grad_gain = (grad_w_hat * w_hat).reshape(C, -1).sum(1)
        g = grad_w_hat * gain.view(shape)
        m = weight.numel() // C
        grad_var = g * (weight - mean) / m * (-0.5) * std_inv**3
        grad_mean = -g * std_inv
        grad_weight = g * std_inv + grad_var * 2 * (weight - mean) / m + grad_mean / m
        return grad_weight, grad_gain, grad_shift


def target_init_spikes(T: int, avg_spike_init: float) -> float:
    """The data-driven init's target: spikes per neuron in steps t ≥ ⌊2T/3⌋ (times 1.2, as the authors)."""
    t_start = T * 2 // 3
    return avg_spike_init / T * (T - t_start) * 1.2


def late_spike_rate(spikes: Tensor, t_start: int) -> Tensor:
    """Spikes per neuron in steps t ≥ t_start, as the authors' ``initialize`` computes it: a float32 tensor
    (``torch.sum(outputs[t_start:]) / n_neuron``), so :func:`bisect_gain` compares it with the target in float32."""
    return torch.sum(spikes[t_start:].float()) / spikes[0].numel()


def bisect_gain(spikes_late_per_neuron, low: float = 0.05, high: float = 500.0, target: float = 1.0) -> float:
    """Geometric bisection of a gain factor s ∈ [low, high] (the authors' ``initialize``).

    ``spikes_late_per_neuron(s)`` runs the layer with its gains times s and returns the spikes
    per neuron in the late steps. Stops when high/low < 1.01 and returns the last s tried
    (as the authors do). The comparison with ``target`` runs in the rate's own type: the model
    passes a float32 tensor, so a Python-float target is compared in float32, as in the authors'
    ``initialize`` (``torch.sum(outputs[t_start:]) / n_neuron > target``); a float64 comparison
    branches the other way on exact ties (CIFAR-10's target 0.39999999999999997 vs a rate of 0.4).
    """
    mid = math.sqrt(high * low)
    while high / low >= 1.01:
        mid = math.sqrt(high * low)
        if spikes_late_per_neuron(mid) > target:
            high = mid
        else:
            low = mid
    return mid
