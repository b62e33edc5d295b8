"""Fused multi-step neurons in plain PyTorch (any device; the CPU fast path).

One ``torch.autograd.Function`` per neuron kind (IF/LIF, Leaky). Against the
reference loop (``BaseNode.multi_step``: ~10 autograd nodes and ~12 tensor
allocations per step) the forward runs under no autograd, writes every step
into preallocated ``[T, ...]`` buffers with in-place / ``out=`` ops (4 per step
for LIF), and the backward is a hand-written reverse-time recurrence: the
surrogate and everything else that is not sequential is computed on blocks of
time steps at once, and only one fused multiply-add per step is sequential.

Forward values are bit-identical to the reference loop: every op rounds like
the reference's (e.g. ``addcdiv`` = ``v + d / tau`` exactly; reset products
are with 0/1 spikes, so exact). That identity is device specific (CUDA divides
by a Python scalar through its reciprocal), so on other devices the forward
uses the reference's own ops (``exact_ops="mirror"``).

Saved for backward: the pre-reset potential ``h`` and the spikes, which are
the outputs themselves (no extra memory). On the CPU those ``[T, ...]`` buffers
and the input gradient come from :mod:`spikelight.dynamics.buffers` (memory reused
between calls: no page faults on fresh allocations).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.surrogate import ATan, FastSigmoid, Sigmoid, Surrogate
from spikelight.dynamics import buffers
from spikelight.dynamics.spec import LeakySpec, LIFSpec

__all__ = ["LIFFunction", "LeakyFunction", "surrogate_grad", "lif_multi_step", "leaky_multi_step"]

#: elements per backward block of time steps: amortises per-op overhead over several
#: steps of a small layer, stays in cache, and is PyTorch's intra-op grain size, so
#: a block op never forks threads where the per-step ops would not (on a loaded
#: machine every fork waits for a busy core: measured 36x slower with 2^17)
BLOCK_ELEMS = 1 << 15


def _block_steps(T: int, per_step: int) -> int:
    return max(1, min(T, BLOCK_ELEMS // max(per_step, 1)))


def surrogate_grad(surrogate: Surrogate, z: Tensor, scale: float = 1.0) -> Tensor:
    """``scale · surrogate.derivative(z)``, in place on ``z`` (a temporary) for the common
    surrogates (fewer passes over memory), else through the surrogate's own ``derivative``."""
    kind = type(surrogate)
    a = surrogate.alpha
    if kind is ATan:  # a/2 / (1 + (pi/2 a z)^2)
        k = math.pi / 2 * a
        one = torch.ones((), dtype=z.dtype, device=z.device)
        den = torch.addcmul(one, z, z, value=k * k, out=z)
        return torch.div(torch.full((), a / 2 * scale, dtype=z.dtype, device=z.device), den, out=den)
    if kind is Sigmoid:  # a s (1 - s)
        s = z.mul_(a).sigmoid_()
        return torch.addcmul(s, s, s, value=-1.0, out=s).mul_(a * scale)
    if kind is FastSigmoid:  # 1 / (1 + a|z|)^2
        w = z.abs_().mul_(a).add_(1.0)
        return w.mul_(w).reciprocal_().mul_(scale) if scale != 1.0 else w.mul_(w).reciprocal_()
    g = surrogate.derivative(z)
    return g.mul_(scale) if scale != 1.0 else g


def _fire(h: Tensor, thr: float, strict: bool, out: Tensor) -> Tensor:
    # h >= thr  <=>  round(h - thr) >= 0 (IEEE subtraction keeps the sign): the reference's spike
    return torch.gt(h, thr, out=out) if strict else torch.ge(h, thr, out=out)


class LIFFunction(torch.autograd.Function):
    """IF / LIF over ``T`` steps: ``(x [T, ...], v0 [...]) → (spikes, h, v_T)``.

    All tensors in the compute dtype (fp32 or wider); spikes are 0/1.
    """

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, spec: LIFSpec, surrogate: Surrogate, exact_ops: str):  # type: ignore[override]
        T = x.shape[0]
        h = buffers.empty(x.shape, x.dtype, x.device)  # reused memory (no page faults), see buffers
        s = buffers.empty(x.shape, x.dtype, x.device)
        v = v0.to(dtype=x.dtype, copy=True).expand(x.shape[1:]).contiguous()
        buf = torch.empty_like(v)
        thr, v_reset = spec.v_threshold, spec.v_reset
        v_rest = 0.0 if v_reset is None else v_reset
        fast = exact_ops == "cpu"
        tau_t = None if spec.tau is None else torch.tensor(spec.tau, dtype=x.dtype, device=x.device)
        for t in range(T):
            ht, st, xt = h[t], s[t], x[t]
            # --- charge (op for op the reference's rounding) ---
            if spec.tau is None:  # IF: v + x
                torch.add(v, xt, out=ht)
            else:
                vd = v if v_rest == 0.0 else torch.sub(v, v_rest, out=buf)  # v - v_rest (exact skip at 0)
                if spec.decay_input:  # v + (x - (v - v_rest)) / tau
                    torch.sub(xt, vd, out=ht)
                    if fast:
                        torch.addcdiv(v, ht, tau_t, out=ht)
                    else:
                        torch.add(v, ht.div_(spec.tau), out=ht)
                else:  # v - (v - v_rest) / tau + x
                    if fast:
                        torch.addcdiv(v, vd, tau_t, value=-1.0, out=ht)
                    else:
                        torch.sub(v, torch.div(vd, spec.tau, out=ht), out=ht)
                    ht.add_(xt)
            # --- fire, reset ---
            _fire(ht, thr, spec.strict, st)
            if v_reset is None:  # v = h - thr·s
                torch.sub(ht, st, alpha=thr, out=v)
            else:  # v = h·(1 - s) + v_reset·s, computed as h - h·s (+ v_reset·s): exact for s in {0, 1}
                torch.addcmul(ht, ht, st, value=-1.0, out=v)
                if v_reset != 0.0:
                    v.add_(st, alpha=v_reset)
        ctx.save_for_backward(h, s)
        ctx.spec, ctx.surrogate = spec, surrogate
        ctx.set_materialize_grads(False)
        return s, h, v

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s: Tensor | None, g_h: Tensor | None, g_v: Tensor | None):  # type: ignore[override]
        h, s = ctx.saved_tensors
        spec: LIFSpec = ctx.spec
        T = h.shape[0]
        a, b, thr = spec.leak, spec.input_gain, spec.v_threshold
        hard = spec.v_reset is not None
        # q_t = b·dL/dh_t is what we store (gx_t = dh_t/dx_t · dL/dh_t): it obeys the same recurrence
        # q_t = b·(dL/ds_t·sg_t + dL/dh_t) + leak·(dv_t/dh_t)·q_{t+1}, so the b folds into the surrogate
        gx = buffers.empty(h.shape, h.dtype, h.device)
        nxt: Tensor | None = None  # q_{t+1}
        K = _block_steps(T, h[0].numel())
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            hc, sc, c = h[t0:t1], s[t0:t1], gx[t0:t1]
            need_sg = g_s is not None or not spec.detach_reset
            bsg = surrogate_grad(ctx.surrogate, hc - thr, b) if need_sg else None  # b·sg
            # c = b·(dL/ds·sg + dL/dh): the parts of q_t that do not come from later steps
            if g_s is None:
                torch.mul(g_h[t0:t1], b, out=c) if g_h is not None else c.zero_()
            elif g_h is None:
                torch.mul(g_s[t0:t1], bsg, out=c)
            else:
                torch.addcmul(g_h[t0:t1] * b if b != 1.0 else g_h[t0:t1], g_s[t0:t1], bsg, out=c)
            # neg_e = -dv_t/dh_t (None: dv/dh = 1)
            if hard and spec.detach_reset:  # 1 - s
                neg_e = sc - 1.0
            elif hard:  # (1 - s) + (v_reset - h)·sg
                hv = hc if spec.v_reset == 0.0 else hc - spec.v_reset
                neg_e = torch.addcmul(sc, hv, bsg, value=1.0 / b, out=bsg).sub_(1.0)
            elif spec.detach_reset or thr == 0.0:
                neg_e = None
            else:  # 1 - thr·sg
                neg_e = bsg.mul_(thr / b).sub_(1.0)
            for i in range(t1 - t0 - 1, -1, -1):
                t = t0 + i
                if t == T - 1:  # dL/dv_{T-1} comes from the returned state
                    nv, scale = g_v, b
                else:  # dL/dv_t = leak · dL/dh_{t+1}
                    nv, scale = nxt, a
                if nv is not None:
                    if neg_e is None:
                        c[i].add_(nv, alpha=scale)
                    else:
                        c[i].addcmul_(nv, neg_e[i], value=-scale)
                nxt = c[i]
        g_v0 = nxt * (a / b) if ctx.needs_input_grad[1] else None
        return gx, g_v0, None, None, None


class LeakyFunction(torch.autograd.Function):
    """snnTorch Leaky over ``T`` steps: ``(x [T, ...], v0 [...]) → (spikes, U, U_T)``."""

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, spec: LeakySpec, surrogate: Surrogate, exact_ops: str):  # type: ignore[override]
        T = x.shape[0]
        h = buffers.empty(x.shape, x.dtype, x.device)  # reused memory (no page faults), see buffers
        s = buffers.empty(x.shape, x.dtype, x.device)
        v0 = v0.to(x.dtype).expand(x.shape[1:])
        thr, beta = spec.v_threshold, spec.beta
        prev0 = _fire(v0, thr, True, torch.empty(v0.shape, dtype=x.dtype, device=x.device))
        for t in range(T):
            ht, xt = h[t], x[t]
            hp, sp = (v0, prev0) if t == 0 else (h[t - 1], s[t - 1])
            torch.mul(hp, beta, out=ht)  # beta·U[t-1]
            if spec.reset_zero:  # beta·(1 - S[t-1])·U[t-1] + X[t]: zero where S[t-1]
                ht.addcmul_(ht, sp, value=-1.0)
                ht.add_(xt)
            else:  # beta·U[t-1] + X[t] - thr·S[t-1]
                ht.add_(xt).sub_(sp, alpha=thr)
            _fire(ht, thr, spec.strict, s[t])
        ctx.save_for_backward(s, h, prev0)
        ctx.spec, ctx.surrogate = spec, surrogate
        ctx.set_materialize_grads(False)
        return s, h, h[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s: Tensor | None, g_h: Tensor | None, g_v: Tensor | None):  # type: ignore[override]
        s, h, prev0 = ctx.saved_tensors
        spec: LeakySpec = ctx.spec
        T, beta = h.shape[0], spec.beta
        gx = buffers.empty(h.shape, h.dtype, h.device)
        nxt: Tensor | None = None
        K = _block_steps(T, h[0].numel())
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            c = gx[t0:t1]
            if g_s is None:
                c.copy_(g_h[t0:t1]) if g_h is not None else c.zero_()
            else:
                sg = surrogate_grad(ctx.surrogate, h[t0:t1] - spec.v_threshold)
                if g_h is None:
                    torch.mul(g_s[t0:t1], sg, out=c)
                else:
                    torch.addcmul(g_h[t0:t1], g_s[t0:t1], sg, out=c)
            # dU[t+1]/dU[t] = beta (subtract) or beta·(1 - S[t]) (zero)
            neg_keep = s[t0:t1] - 1.0 if spec.reset_zero else None
            for i in range(t1 - t0 - 1, -1, -1):
                t = t0 + i
                if t == T - 1:
                    if g_v is not None:
                        c[i].add_(g_v)
                elif neg_keep is None:
                    c[i].add_(nxt, alpha=beta)
                else:
                    c[i].addcmul_(nxt, neg_keep[i], value=-beta)
                nxt = c[i]
        g_v0 = None
        if ctx.needs_input_grad[1]:
            g_v0 = nxt * beta
            if spec.reset_zero:
                g_v0 = g_v0 * (1.0 - prev0)
        return gx, g_v0, None, None, None


def _exact_ops(x: Tensor) -> str:
    return "cpu" if x.device.type == "cpu" else "mirror"


def lif_multi_step(x: Tensor, v0: Tensor, spec: LIFSpec, surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor]:
    """Fused IF/LIF. x [T, B, ...] and v0 [B, ...] in the compute dtype → (spikes, h, v_T)."""
    return LIFFunction.apply(x, v0, spec, surrogate, _exact_ops(x))


def leaky_multi_step(x: Tensor, v0: Tensor, spec: LeakySpec, surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor]:
    """Fused snnTorch Leaky. x [T, B, ...] and v0 [B, ...] in the compute dtype → (spikes, U, U_T)."""
    return LeakyFunction.apply(x, v0, spec, surrogate, _exact_ops(x))
