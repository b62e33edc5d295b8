"""snnTorch's ``Leaky`` as one fused autograd Function in plain PyTorch (any device), and the
helpers the fused backend's Functions share.

IF / LIF / ALIF run through the recurrent Function with no W_rec
(:mod:`spikelight.dynamics.fused.recurrent`: one step written once for the feed-forward and
the recurrent case); Leaky resets one step late (snnTorch's order) and has its own loop here.
Against the reference loop the forward runs under no autograd into preallocated ``[T, ...]``
buffers with in-place / ``out=`` ops, bit-identical to the loop (every op rounds like the
reference's; products with 0/1 spikes are exact); the backward is a hand-written
reverse-time recurrence, the surrogate computed on blocks of time steps at once.

Saved for backward: the potential and the spikes (the outputs themselves). On the CPU the
``[T, ...]`` buffers come from :mod:`spikelight.dynamics.buffers` (reused memory).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics import buffers
from spikelight.dynamics.spec import LeakySpec

__all__ = ["LeakyFunction", "leaky_multi_step", "exact_ops", "block_steps", "fire_into", "BLOCK_ELEMS"]

#: elements per backward block of time steps: amortises per-op overhead over several
#: steps of a small layer, stays in cache, and is PyTorch's intra-op grain size, so
#: a block op never forks threads where the per-step ops would not (on a loaded
#: machine every fork waits for a busy core: measured 36x slower with 2^17)
BLOCK_ELEMS = 1 << 15


def block_steps(T: int, per_step: int) -> int:
    """Time steps per block of a backward's non-sequential work (``BLOCK_ELEMS`` elements)."""
    return max(1, min(T, BLOCK_ELEMS // max(per_step, 1)))


def fire_into(h: Tensor, thr: float, strict: bool, out: Tensor) -> Tensor:
    # h >= thr  <=>  round(h - thr) >= 0 (IEEE subtraction keeps the sign): the reference's spike
    return torch.gt(h, thr, out=out) if strict else torch.ge(h, thr, out=out)


class LeakyFunction(torch.autograd.Function):
    """snnTorch Leaky over ``T`` steps: ``(x [T, ...], v0 [...]) → (spikes, U, U_T)``."""

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, spec: LeakySpec, surrogate: Surrogate, exact_ops: str):  # type: ignore[override]
        T = x.shape[0]
        h = buffers.empty(x.shape, x.dtype, x.device)  # reused memory (no page faults), see buffers
        s = buffers.empty(x.shape, x.dtype, x.device)
        v0 = v0.to(x.dtype).expand(x.shape[1:])
        thr, beta = spec.v_threshold, spec.beta
        prev0 = fire_into(v0, thr, True, torch.empty(v0.shape, dtype=x.dtype, device=x.device))
        for t in range(T):
            ht, xt = h[t], x[t]
            hp, sp = (v0, prev0) if t == 0 else (h[t - 1], s[t - 1])
            torch.mul(hp, beta, out=ht)  # beta·U[t-1]
            if spec.reset_zero:  # beta·(1 - S[t-1])·U[t-1] + X[t]: zero where S[t-1]
                ht.addcmul_(ht, sp, value=-1.0)
                ht.add_(xt)
            else:  # beta·U[t-1] + X[t] - thr·S[t-1]
                ht.add_(xt).sub_(sp, alpha=thr)
            fire_into(ht, thr, spec.strict, s[t])
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
        K = block_steps(T, h[0].numel())
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            c = gx[t0:t1]
            if g_s is None:
                c.copy_(g_h[t0:t1]) if g_h is not None else c.zero_()
            else:
                sg = ctx.surrogate.derivative_(h[t0:t1] - spec.v_threshold)
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


def exact_ops(x: Tensor) -> str:
    """``cpu``: ops chosen to round like the reference on the CPU (``addcdiv``); ``mirror``: the reference's own ops
    (CUDA divides by a Python scalar through its reciprocal)."""
    return "cpu" if x.device.type == "cpu" else "mirror"


def leaky_multi_step(x: Tensor, v0: Tensor, spec: LeakySpec, surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor]:
    """Fused snnTorch Leaky. x [T, B, ...] and v0 [B, ...] in the compute dtype → (spikes, U, U_T)."""
    return LeakyFunction.apply(x, v0, spec, surrogate, exact_ops(x))
