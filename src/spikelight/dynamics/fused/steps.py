"""The fused backend's per-step loops for IF / LIF / ALIF, feed-forward and recurrent alike.

:class:`~spikelight.dynamics.fused.recurrent.RecurrentFunction` runs these where neither the
C loops (:mod:`spikelight.dynamics.native`) nor the Triton kernels apply: other devices
than the CPU without Triton, fp64, autocast, no C compiler. A step is a handful of ATen ops
on [B, ..., H] tensors, in place on preallocated buffers.

Forward values are bit-identical to the reference loop: the recurrent current is the
reference's own product (``mm`` of the same operands, then ``ff_t +``), and every
element-wise op rounds like the reference's (``addcdiv`` = ``v + d / tau`` exactly on the
CPU; elsewhere the reference's own ops, ``fast=False``; products with 0/1 spikes are exact).

Shapes: every per-step tensor is [B, ..., H]; sequences are [T, B, ..., H]; optional
buffers are None when unused. The step's constants come by name from
:class:`~spikelight.dynamics.spec.StepArgs`. (These loops were TorchScript-compiled until
2026-12; with the C loops the CPU default, the interpreter's gain no longer paid for a
deprecated compiler: plain Python, the same numbers.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikelight.dynamics.spec import StepArgs

__all__ = ["forward_steps", "backward_steps", "elementwise_backward_steps", "filter_forward", "filter_backward"]


def forward_steps(
    ff: Tensor,
    w_t: Tensor | None,
    z0: Tensor,
    v: Tensor,
    a: Tensor | None,
    ref: Tensor | None,
    beta: Tensor | None,
    out: tuple[Tensor, Tensor, Tensor | None, Tensor | None],
    rec: tuple[Tensor, ...] | None,
    args: StepArgs,
    fast: bool,
    mm_dtype: torch.dtype,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """All T steps in place. ``out = (h, s, u, mask)`` [T, ...] are written (u: adaptive ALIF only,
    mask: refractory only); ``rec``, if given, receives the state after every step ((v,) or (v, a, ref)).
    v / a / ref are working copies of the initial state; returns the final ``(v, a, ref)``.

        I_t = ff_t + z_{t-1} W_recᵀ;  h_t = charge(I_t, v_{t-1});  s_t = Θ(u_t) (0 while refractory);
        a_t = ρ a_{t-1} + (1 − ρ) s_t;  v_t = reset(h_t, s_t)
    """
    h, s, u, mask = out
    dt, dev = v.dtype, v.device
    cpu = torch.device("cpu")
    # 0-dim constants (divisors on the CPU: CUDA kernels treat those exactly like Python scalars)
    tau, thr = torch.tensor(args.tau, dtype=dt, device=cpu), torch.tensor(args.thr, dtype=dt, device=cpu)
    v_rest, zero = torch.tensor(args.v_rest, dtype=dt, device=dev), torch.tensor(0.0, dtype=dt, device=dev)
    rho, keep = torch.tensor(args.rho, dtype=dt, device=dev), torch.tensor(args.keep, dtype=dt, device=dev)
    soft, vr = torch.tensor(-args.soft, dtype=dt, device=dev), torch.tensor(args.vr, dtype=dt, device=dev)
    cast = w_t is not None and mm_dtype != dt
    buf, tmp, cur = torch.empty_like(v), torch.empty_like(v), torch.empty_like(v)
    cur_mm = torch.empty(v.shape, dtype=mm_dtype, device=dev) if cast else cur
    z = z0
    for t in range(ff.shape[0]):
        ht, st = h[t], s[t]
        # --- I_t = ff_t + z_{t-1} W_recᵀ: F.linear's own product, then the add ---
        x = ff[t]
        if w_t is not None:
            torch.mm(z.to(mm_dtype) if cast else z, w_t, out=cur_mm)
            x = torch.add(x, cur_mm, out=cur)
        # --- charge, op for op the reference's rounding ---
        if args.charge == 0:  # IF: v + x
            torch.add(v, x, out=ht)
        else:
            vd = v if args.v_rest_zero else torch.sub(v, v_rest, out=buf)
            if args.charge == 1:  # v + (x - (v - v_rest)) / tau
                torch.sub(x, vd, out=ht)
                if fast:
                    torch.addcdiv(v, ht, tau, out=ht)
                else:
                    torch.add(v, ht.div_(tau), out=ht)
            else:  # v - (v - v_rest) / tau + x
                if fast:
                    torch.addcdiv(v, vd, tau, value=-1.0, out=ht)
                else:
                    torch.sub(v, torch.div(vd, tau, out=ht), out=ht)
                ht.add_(x)
        # --- fire ---
        if args.adaptive:  # u = (h - (v_th + β a)) [/ v_th]
            ut = torch.mul(a, beta, out=u[t]).add_(thr)
            torch.sub(ht, ut, out=ut)
            if args.normalize:
                ut.div_(thr)
            (torch.gt if args.strict else torch.ge)(ut, zero, out=st)
        elif args.normalize:
            (torch.gt if args.strict else torch.ge)(torch.sub(ht, thr, out=tmp).div_(thr), zero, out=st)
        elif args.strict:
            torch.gt(ht, thr, out=st)
        else:  # h - v_th >= 0  <=>  h >= v_th (IEEE subtraction keeps the sign)
            torch.ge(ht, thr, out=st)
        if args.refractory > 0:  # no spike while ref > 0; ref = R after a spike, else counts down to 0
            mt = torch.le(ref, 0.0, out=mask[t])
            st.mul_(mt)
            ref_next = rec[2][t] if rec is not None else ref
            torch.sub(ref, 1.0, out=ref_next).clamp_(min=0.0).masked_fill_(st > 0, float(args.refractory))
            ref = ref_next
        # --- adaptation a = ρ a + (1 - ρ) s, reset (every product with s in {0, 1} is exact) ---
        if args.alif:
            a = torch.mul(a, rho, out=rec[1][t] if rec is not None else a).addcmul_(st, keep)
        v_next = rec[0][t] if rec is not None else v
        if not args.hard:  # v = h - v_th s (v_th/leak in the eprop convention)
            v = torch.addcmul(ht, st, soft, out=v_next)
        else:  # v = h (1 - s) + v_reset s, computed as h - h s (+ v_reset s)
            v = torch.addcmul(ht, ht, st, value=-1.0, out=v_next)
            if args.vr_add:
                v.addcmul_(st, vr)
        z = st
    return v, a, ref


def backward_steps(
    t0: int,
    n: int,
    last: int,
    gI: Tensor,
    g_s: Tensor | None,
    w: Tensor | None,
    GS: Tensor,
    nxt: Tensor | None,
    ga: Tensor | None,
    Dg: Tensor,
    Dbn: Tensor | None,
    E: Tensor | None,
    F: Tensor | None,
    Gh: Tensor | None,
    args: StepArgs,
    tbptt: int,
) -> tuple[Tensor | None, Tensor | None]:
    """Steps ``t0 + n − 1`` down to ``t0`` of the reverse-time recurrence; writes p_t = dL/dI_t into gI[t].

    Blocks from t0 ([n, ...]): Dg = gain·surrogate'·mask, Dbn = −(1−ρ)β·D, E = (leak/gain)(v_reset − h)
    (hard reset with gradient), F = leak(1 − s) (hard reset; both constants for a soft reset), Gh = gain·g_h. ``nxt`` is p_{t+1} (for the
    sequence's last step, ``last``, the returned state's gradient as (gain/leak)·dL/dv: no W product there),
    ``ga`` is w_t = (1−ρ)·dL/da_t. Returns (p_{t0} or None, w_{t0−1} or None) for the next block.

        GS_t    = dL/ds_t = g_s + p_{t+1} W + w_t + E p_{t+1}
        p_t     = Gh_t + F p_{t+1} + Dg_t GS_t       (soft reset: F = leak, E = −v_th·leak/gain)
        w_{t-1} = ρ w_t + Dbn_t GS_t
    """
    dt, dev, shape = gI.dtype, gI.device, gI.shape[1:]
    rho = torch.tensor(args.rho, dtype=dt, device=dev)
    if not args.hard:  # soft reset: E and F are constants (stride-0 views: no memory, the same products)
        E = torch.tensor(-args.soft * args.leak / args.gain, dtype=dt, device=dev).expand(n, *shape)
        F = torch.tensor(args.leak, dtype=dt, device=dev).expand(n, *shape)
    for i in range(n - 1, -1, -1):
        t = t0 + i
        pt = gI[t]
        # GS = dL/ds_t = g_s + p_{t+1} W + w_t + E p_{t+1}
        if nxt is not None and w is not None and t != last:
            if g_s is not None:
                torch.addmm(g_s[t], nxt, w, out=GS)
            else:
                torch.mm(nxt, w, out=GS)
        elif g_s is not None:
            GS.copy_(g_s[t])
        else:
            GS.zero_()
        if ga is not None:
            GS.add_(ga)
        if nxt is not None:
            if not args.detach:
                GS.addcmul_(E[i], nxt)
            # p_t = gain g_h + F p_{t+1} + gain D GS
            if Gh is not None:
                torch.addcmul(Gh[i], F[i], nxt, out=pt)
            else:
                torch.mul(F[i], nxt, out=pt)
        elif Gh is not None:
            pt.copy_(Gh[i])
        else:
            pt.zero_()
        pt.addcmul_(Dg[i], GS)
        # w_{t-1} = ρ w_t + Dbn GS
        if args.adaptive:
            if ga is None:
                ga = torch.mul(Dbn[i], GS)
            else:
                ga.mul_(rho).addcmul_(Dbn[i], GS)
        elif ga is not None:
            ga.mul_(rho)
        if tbptt > 0 and t > 0 and t % tbptt == 0:  # truncated BPTT: the state before step t was detached
            nxt, ga = None, None
        else:
            nxt = pt
    return nxt, ga


def elementwise_backward_steps(
    t0: int,
    n: int,
    gI: Tensor,
    g_s: Tensor | None,
    nxt: Tensor | None,
    Dg: Tensor,
    E: Tensor | None,
    F: Tensor | None,
    Gh: Tensor | None,
    args: StepArgs,
) -> Tensor | None:
    """:func:`backward_steps` for a neuron on its own with nothing carried but p (no W_rec, no adaptation's
    gradient, no truncation): p_t = (Gh_t + Dg_t g_s) + (F_t + Dg_t E_t) p_{t+1}, everything but the carry
    computed on the block at once, so one fused multiply-add per step. Returns p_{t0}."""
    dt, dev, shape = gI.dtype, gI.device, gI.shape[1:]
    if not args.hard:
        E = torch.tensor(-args.soft * args.leak / args.gain, dtype=dt, device=dev).expand(n, *shape)
        F = torch.tensor(args.leak, dtype=dt, device=dev).expand(n, *shape)
    c = gI[t0 : t0 + n]
    if g_s is not None:  # c = Gh + Dg·g_s
        torch.mul(Dg, g_s[t0 : t0 + n], out=c)
        if Gh is not None:
            c.add_(Gh)
    elif Gh is not None:
        c.copy_(Gh)
    else:
        c.zero_()
    carry = F if args.detach else torch.addcmul(F, Dg, E)  # F + Dg·E: dp_t/dp_{t+1}
    for i in range(n - 1, -1, -1):
        if nxt is not None:
            c[i].addcmul_(carry[i], nxt)
        nxt = c[i]
    return nxt


def filter_forward(c: Tensor, y: Tensor, y0: Tensor, kappa: Tensor) -> None:
    """``y_t = κ·y_{t-1} + c_t`` into y [T, ...] (c_t = (1 − κ)·x_t; two roundings, as the reference loop)."""
    prev = y0
    for ct, yt in zip(c.unbind(0), y.unbind(0)):
        prev = torch.mul(prev, kappa, out=yt).add_(ct)


def filter_backward(r: Tensor, kappa: float) -> None:
    """``r_t += κ·r_{t+1}`` in place, from the last step back (the adjoint of the filter)."""
    rs = r.unbind(0)
    for t in range(len(rs) - 2, -1, -1):
        rs[t].add_(rs[t + 1], alpha=kappa)
