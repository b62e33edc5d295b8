"""The per-step loops of :mod:`spikelight.dynamics.fused.recurrent`, written so TorchScript can compile them.

A fused recurrent step is ~10 small ops (forward) and ~7 (backward) on [B, H]
tensors: at LSNN sizes each op costs a few microseconds, most of it Python
argument parsing and dispatch. Run by the TorchScript interpreter the same ATen
ops (the same kernels, the same rounding) cost less: at LSNN sizes (T=784, H=220,
ALIF, 1 thread, 2-core CPU) the forward loop took 1.45× (B=8) and 1.2× (B=32) less
CPU time, the backward 1.15× (B=8) and the same (B=32): experiments/benchmarks/README.md.
``torch.jit.script`` is deprecated in favour of ``torch.compile``, which was
measured slower here (its per-call overhead exceeds the ops it fuses), so the
functions are scripted when TorchScript is available and otherwise run as the
plain Python they are: the same numbers either way (:func:`scripted` tells which).

Shapes: every per-step tensor is [B, ..., H]; sequences are [T, B, ..., H].
Unused optional buffers are passed as empty tensors (flags say which are used).
Constants are 0-dim tensors: cheaper than Python scalars on the CPU; divisors
(tau, v_th) are CPU tensors, which CUDA kernels treat exactly like Python scalars.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

__all__ = ["forward_steps", "backward_steps", "filter_forward", "filter_backward", "scripted"]


def _forward_steps(
    ff: Tensor,
    w_t: Optional[Tensor],  # noqa: UP045 (TorchScript needs Optional)
    z0: Tensor,
    v0: Tensor,
    a0: Tensor,
    ref0: Tensor,
    beta: Tensor,
    h: Tensor,
    s: Tensor,
    u: Tensor,
    mask: Tensor,
    rec_v: Tensor,
    rec_a: Tensor,
    rec_ref: Tensor,
    consts: list[Tensor],
    charge: int,
    v_rest_zero: bool,
    hard: bool,
    vr_add: bool,
    alif: bool,
    adaptive: bool,
    normalize: bool,
    strict: bool,
    refractory: int,
    record: bool,
    fast: bool,
    cast: bool,
    mm_dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor]:
    """All T steps in place: writes h, s (and u, mask, rec_*); returns the final (v, a, ref).

    charge: 0 = IF, 1 = LIF with decay_input, 2 = LIF without. consts = [tau, v_rest, thr, 0,
    rho, 1 - rho, -thr, v_reset] (tau and thr on the CPU). v0/a0/ref0 are working copies.
    """
    tau, v_rest, thr, zero = consts[0], consts[1], consts[2], consts[3]
    rho, keep, soft, vr = consts[4], consts[5], consts[6], consts[7]
    T = ff.shape[0]
    hs, ss, fs = h.unbind(0), s.unbind(0), ff.unbind(0)
    us = u.unbind(0) if adaptive else hs
    ms = mask.unbind(0) if refractory > 0 else hs
    vs = rec_v.unbind(0) if record else hs
    as_ = rec_a.unbind(0) if record and alif else hs
    rs = rec_ref.unbind(0) if record and refractory > 0 else hs
    v, a, ref, z = v0, a0, ref0, z0
    buf, tmp, cur = torch.empty_like(v), torch.empty_like(v), torch.empty_like(v)
    cur_mm = torch.empty(v.shape, dtype=mm_dtype, device=v.device) if cast else cur
    for t in range(T):
        ht, st = hs[t], ss[t]
        # --- I_t = ff_t + z_{t-1} W_recᵀ: F.linear's own product, then the add ---
        x = fs[t]
        if w_t is not None:
            torch.mm(z.to(mm_dtype) if cast else z, w_t, out=cur_mm)
            x = torch.add(x, cur_mm, out=cur)
        # --- charge, op for op the reference's rounding (see torch_fused) ---
        if charge == 0:  # IF: v + x
            torch.add(v, x, out=ht)
        else:
            vd = v if v_rest_zero else torch.sub(v, v_rest, out=buf)
            if charge == 1:  # v + (x - (v - v_rest)) / tau
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
        if adaptive:  # u = (h - (v_th + β a)) [/ v_th]
            ut = torch.mul(a, beta, out=us[t]).add_(thr)
            torch.sub(ht, ut, out=ut)
            if normalize:
                ut.div_(thr)
            torch.ge(ut, zero, out=st)
        elif normalize:
            torch.ge(torch.sub(ht, thr, out=tmp).div_(thr), zero, out=st)
        elif strict:
            torch.gt(ht, thr, out=st)
        else:  # h - v_th >= 0  <=>  h >= v_th (IEEE subtraction keeps the sign)
            torch.ge(ht, thr, out=st)
        if refractory > 0:  # no spike while ref > 0; ref = R after a spike, else counts down to 0
            mt = torch.le(ref, 0.0, out=ms[t])
            st.mul_(mt)
            ref_next = rs[t] if record else ref
            torch.sub(ref, 1.0, out=ref_next).clamp_(min=0.0).masked_fill_(st > 0, float(refractory))
            ref = ref_next
        # --- adaptation a = ρ a + (1 - ρ) s, reset (every product with s in {0, 1} is exact) ---
        if alif:
            a = torch.mul(a, rho, out=as_[t] if record else a).addcmul_(st, keep)
        v_next = vs[t] if record else v
        if not hard:  # v = h - v_th s
            v = torch.addcmul(ht, st, soft, out=v_next)
        else:  # v = h (1 - s) + v_reset s, computed as h - h s (+ v_reset s)
            v = torch.addcmul(ht, ht, st, value=-1.0, out=v_next)
            if vr_add:
                v.addcmul_(st, vr)
        z = st
    return v, a, ref


def _backward_steps(
    n: int,
    t0: int,
    gI: Tensor,
    g_s: Tensor,
    w: Optional[Tensor],  # noqa: UP045
    GS: Tensor,
    nxt: Optional[Tensor],  # noqa: UP045
    ga: Optional[Tensor],  # noqa: UP045
    Dg: Tensor,
    Dbn: Tensor,
    E: Tensor,
    F: Tensor,
    Gh: Tensor,
    f_soft: Tensor,
    e_soft: Tensor,
    rho: Tensor,
    has_gs: bool,
    has_e: bool,
    hard: bool,
    has_gh: bool,
    adaptive: bool,
    tbptt: int,
) -> tuple[Optional[Tensor], Optional[Tensor]]:  # noqa: UP045
    """Steps ``t0 + n - 1`` down to ``t0`` of the reverse-time recurrence (never the sequence's last
    step): writes p_t = dL/dI_t into gI[i] (i = t - t0); returns (p_{t0}, w_{t0-1}) for the next block.
    All tensors but GS/nxt/ga/constants are blocks [n, ...] from t0 (empty when unused; flags say).
    See RecurrentFunction.backward for the equations."""
    g_i, g_ss, Dg_ = gI.unbind(0), (g_s.unbind(0) if has_gs else []), Dg.unbind(0)
    Dbn_ = Dbn.unbind(0) if adaptive else []
    E_ = E.unbind(0) if has_e and hard else []
    F_ = F.unbind(0) if hard else []
    Gh_ = Gh.unbind(0) if has_gh else []
    for i in range(n - 1, -1, -1):
        t = t0 + i
        pt = g_i[i]
        # GS = dL/ds_t = g_s + p_{t+1} W + w_t + E p_{t+1}
        if nxt is not None and w is not None:
            if has_gs:
                torch.addmm(g_ss[i], nxt, w, out=GS)
            else:
                torch.mm(nxt, w, out=GS)
        elif has_gs:
            GS.copy_(g_ss[i])
        else:
            GS.zero_()
        if ga is not None:
            GS.add_(ga)
        if nxt is not None:
            if has_e and hard:
                GS.addcmul_(E_[i], nxt)
            elif has_e:
                GS.addcmul_(nxt, e_soft)
            # p_t = gain g_h + F p_{t+1} + gain D GS
            if hard and has_gh:
                torch.addcmul(Gh_[i], F_[i], nxt, out=pt)
            elif hard:
                torch.mul(F_[i], nxt, out=pt)
            elif has_gh:
                torch.addcmul(Gh_[i], nxt, f_soft, out=pt)
            else:
                torch.mul(nxt, f_soft, out=pt)
        elif has_gh:
            pt.copy_(Gh_[i])
        else:
            pt.zero_()
        pt.addcmul_(Dg_[i], GS)
        # w_{t-1} = ρ w_t − (1-ρ) β D GS
        if adaptive:
            if ga is None:
                ga = torch.mul(Dbn_[i], GS)
            else:
                ga.mul_(rho).addcmul_(Dbn_[i], GS)
        elif ga is not None:
            ga.mul_(rho)
        if tbptt > 0 and t > 0 and t % tbptt == 0:  # truncated BPTT: the state before step t was detached
            nxt = None
            ga = None
        else:
            nxt = pt
    return nxt, ga


def _filter_forward(c: Tensor, y: Tensor, y0: Tensor, kappa: Tensor) -> None:
    """``y_t = κ·y_{t-1} + c_t`` into y [T, ...] (c_t = (1 − κ)·x_t; two roundings, as the reference loop)."""
    prev = y0
    for ct, yt in zip(c.unbind(0), y.unbind(0)):
        prev = torch.mul(prev, kappa, out=yt).add_(ct)


def _filter_backward(r: Tensor, kappa: float) -> None:
    """``r_t += κ·r_{t+1}`` in place, from the last step back (the adjoint of the filter)."""
    rs = r.unbind(0)
    for t in range(len(rs) - 2, -1, -1):
        rs[t].add_(rs[t + 1], alpha=kappa)


_compiled: dict[str, object] = {}


def _get(fn, use_script: bool):
    """``fn`` compiled by TorchScript (once, on first use: ~1 s), or ``fn`` itself."""
    if not use_script:
        return fn
    name = fn.__name__
    if name not in _compiled:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.script's deprecation notice
                _compiled[name] = torch.jit.script(fn)
        except Exception:  # TorchScript gone or unable: the plain function computes the same numbers
            _compiled[name] = fn
    return _compiled[name]


def forward_steps(*args, script: bool = True):
    """:func:`_forward_steps`, TorchScript-compiled unless ``script=False`` or unavailable."""
    return _get(_forward_steps, script)(*args)


def backward_steps(*args, script: bool = True):
    """:func:`_backward_steps`, TorchScript-compiled unless ``script=False`` or unavailable."""
    return _get(_backward_steps, script)(*args)


def filter_forward(*args, script: bool = True):
    """:func:`_filter_forward`, TorchScript-compiled where available."""
    return _get(_filter_forward, script)(*args)


def filter_backward(*args, script: bool = True):
    """:func:`_filter_backward`, TorchScript-compiled where available."""
    return _get(_filter_backward, script)(*args)


def scripted() -> bool:
    """True when the loops run compiled by TorchScript."""
    return all(not isinstance(f, type(_forward_steps)) for f in (_get(_forward_steps, True), _get(_backward_steps, True)))
