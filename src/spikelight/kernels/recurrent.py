"""Fused recurrent spiking layer (LSNN) and fused ALIF, in plain PyTorch (any device; the CPU fast path).

One ``torch.autograd.Function`` runs a whole sequence of

    I_t = ff_t + z_{t-1} W_recᵀ                    (W_rec [H, H]; no recurrence if W_rec is None)
    h_t = charge(I_t, v_{t-1})                      (IF / LIF, :class:`LIFSpec`)
    s_t = Θ(u_t),  u_t = h_t − v_th                 (LIF)
         u_t = (h_t − v_th − β a_{t-1}) [/ v_th]     (ALIF, :class:`ALIFSpec`; s_t = 0 while refractory)
    v_t = reset(h_t, s_t),  a_t = ρ a_{t-1} + (1 − ρ) s_t

Against the reference loop (``RecurrentSpikingLayer`` with ``backend=torch``: ~20
autograd-recorded ops per step and as many backward nodes) the forward runs
without autograd, in place, on preallocated ``[T, ...]`` buffers (11 ops per
step for an adaptive ALIF, 6 for LIF), and the backward is a hand-written
reverse-time recurrence: per step one ``[B, H] × [H, H]`` product (the gradient
reaching z_{t-1} through W_rec) and 3–6 in-place element-wise ops; the
surrogate and every factor that is not sequential are computed on blocks of
time steps, and ``dL/dW_rec = Σ_t (dL/dI_t)ᵀ z_{t-1}`` is one matrix product
over the whole sequence.

Forward values are bit-identical to the reference loop: the recurrent current
is the reference's own product (``mm`` of the same operands, then ``ff_t +``),
and every element-wise op rounds like the reference's (as in
:mod:`spikelight.kernels.torch_fused`). Under autocast the product runs in the
autocast dtype, as ``F.linear`` does in the reference.

Saved for backward: the outputs (spikes, pre-reset potential h), plus for an
adaptive ALIF the surrogate's input u_t, and with a refractory period a bool
mask of the steps that could fire.

Truncated BPTT (``tbptt``): the reference detaches the state (v, a, z) before
every step t with ``t % k == 0``; the backward drops the gradient carried across
those steps (dL/dW_rec still collects every step's term, as W_rec is not detached).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.kernels.spec import ALIFSpec, LIFSpec
from spikelight.kernels.torch_fused import BLOCK_ELEMS, _exact_ops, surrogate_grad
from spikelight.surrogate import Surrogate

__all__ = ["RecurrentFunction", "recurrent_multi_step", "LeakyFilterFunction", "leaky_filter"]


def _block_steps(T: int, per_step: int, backward: bool = False) -> int:
    """Time steps per block of the backward's non-sequential work: PyTorch's grain size with
    several threads (no op forks where a per-step op would not, see torch_fused), else ~1 MB
    (fewer, larger ops; one thread never forks)."""
    elems = BLOCK_ELEMS if torch.get_num_threads() > 1 else 1 << 18
    return max(1, min(T, elems // max(per_step, 1)))


def _axpy(y: Tensor, s: Tensor, alpha: Tensor | float, out: Tensor | None = None) -> Tensor:
    """``y + alpha·s`` (in place on y unless ``out``); alpha a 0-dim tensor or a Python scalar."""
    if isinstance(alpha, Tensor):
        return y.addcmul_(s, alpha) if out is None else torch.addcmul(y, s, alpha, out=out)
    return y.add_(s, alpha=alpha) if out is None else torch.add(y, s, alpha=alpha, out=out)


def _charge(lif: LIFSpec, v: Tensor, x: Tensor, out: Tensor, buf: Tensor, tau_t: Tensor | None, fast: bool) -> Tensor:
    """``h = charge(x, v)`` into ``out``, op for op the reference's rounding (see torch_fused)."""
    if lif.tau is None:  # IF: v + x
        return torch.add(v, x, out=out)
    v_rest = 0.0 if lif.v_reset is None else lif.v_reset
    vd = v if v_rest == 0.0 else torch.sub(v, v_rest, out=buf)  # v - v_rest (exact skip at 0)
    if lif.decay_input:  # v + (x - (v - v_rest)) / tau
        torch.sub(x, vd, out=out)
        if fast:
            return torch.addcdiv(v, out, tau_t, out=out)
        return torch.add(v, out.div_(lif.tau), out=out)
    # v - (v - v_rest) / tau + x
    if fast:
        torch.addcdiv(v, vd, tau_t, value=-1.0, out=out)
    else:
        torch.sub(v, torch.div(vd, lif.tau, out=out), out=out)
    return out.add_(x)


class RecurrentFunction(torch.autograd.Function):
    """``(ff [T, B, ..., H], W_rec [H, H] | None, v0, a0, ref0, z0, β) → (s, h, v_T, a_T, ref_T)``.

    ``a0``/``ref0``/``a_T``/``ref_T`` are None for IF/LIF; ``z0`` None = no spikes before
    step 0. ``record``: a list that receives the state after every step, ``(v, a, ref)``
    (ALIF) or ``(v,)`` stacked over time, values only (no gradient). All tensors in the
    compute dtype (fp32 or wider). ``ref`` carries no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        ff: Tensor,
        w_rec: Tensor | None,
        v0: Tensor,
        a0: Tensor | None,
        ref0: Tensor | None,
        z0: Tensor | None,
        beta: Tensor | None,
        spec: LIFSpec | ALIFSpec,
        surrogate: Surrogate,
        tbptt: int | None,
        exact_ops: str,
        mm_dtype: torch.dtype,
        record: list | None,
    ):
        alif = isinstance(spec, ALIFSpec)
        lif = spec.lif if alif else spec
        adaptive = alif and spec.adaptive
        refractory = alif and spec.refractory > 0
        T, shape, dt, dev = ff.shape[0], ff.shape[1:], ff.dtype, ff.device
        new = lambda *lead, dtype=dt: torch.empty((*lead, *shape), dtype=dtype, device=dev)  # noqa: E731
        h, s = new(T), new(T)
        u = new(T) if adaptive else None  # the surrogate's input, saved for backward
        mask = new(T, dtype=torch.bool) if refractory else None  # steps that could fire
        rec = None if record is None else (new(T), new(T), new(T)) if alif else (new(T),)
        v = v0.to(dtype=dt, copy=True).expand(shape).contiguous()
        a = a0.to(dtype=dt, copy=True).expand(shape).contiguous() if alif else None
        ref = ref0.to(dtype=dt, copy=True).expand(shape).contiguous() if refractory else None
        buf, tmp = torch.empty_like(v), torch.empty_like(v)
        thr, v_reset = lif.v_threshold, lif.v_reset
        fast = exact_ops == "cpu"
        tau_t = None if lif.tau is None else torch.tensor(lif.tau, dtype=dt, device=dev)
        # constants as 0-dim tensors on the CPU (a Python scalar costs ~2.5 us more per op there); elsewhere
        # the reference's Python scalars, so each op takes the reference's kernel (CUDA divides by a scalar
        # through its reciprocal). Every product below with s in {0, 1} is exact, so it rounds as the reference.
        K = (lambda x: torch.tensor(x, dtype=dt, device=dev)) if fast else (lambda x: x)  # noqa: E731
        rho = spec.rho if alif else 0.0
        thr_k, zero_k, rho_k, keep_k = K(thr), K(0.0), K(rho), K(1.0 - rho)
        soft_k = K(-thr)
        vr_k = K(v_reset) if v_reset not in (None, 0.0) else None
        recurrent = w_rec is not None
        if recurrent:
            cur = torch.empty_like(v)
            w_t = w_rec.to(mm_dtype).t()  # F.linear(z, W) = z @ Wᵀ: the same product, the same rounding
            cur_mm = cur if mm_dtype == dt else torch.empty(shape, dtype=mm_dtype, device=dev)
            z = torch.zeros_like(v) if z0 is None else z0.to(dt).expand(shape)
        # unbind once: a list index costs nothing, a tensor index allocates a view every step
        hs, ss, fs = h.unbind(0), s.unbind(0), ff.unbind(0)
        us = u.unbind(0) if adaptive else None
        ms = mask.unbind(0) if refractory else None
        vs, as_, rs = (r.unbind(0) for r in rec) if alif and rec else (rec[0].unbind(0) if rec else None, None, None)
        cast = recurrent and mm_dtype != dt
        normalize = alif and spec.normalize
        fire_gt = not alif and lif.strict
        with torch.autocast(dev.type, enabled=False):
            for t in range(T):
                ht, st = hs[t], ss[t]
                if recurrent:  # I_t = ff_t + z W_recᵀ
                    torch.mm(z.to(mm_dtype) if cast else z, w_t, out=cur_mm)
                    x = torch.add(fs[t], cur_mm, out=cur)
                else:
                    x = fs[t]
                _charge(lif, v, x, ht, buf, tau_t, fast)
                # --- fire ---
                if adaptive:  # u = (h - (v_th + β a)) [/ v_th]
                    ut = torch.mul(a, beta, out=us[t]).add_(thr_k)
                    torch.sub(ht, ut, out=ut)
                    if normalize:
                        ut.div_(thr_k)
                    torch.ge(ut, zero_k, out=st)
                elif normalize:
                    torch.ge(torch.sub(ht, thr_k, out=tmp).div_(thr_k), zero_k, out=st)
                elif fire_gt:
                    torch.gt(ht, thr_k, out=st)
                else:  # h - v_th >= 0  <=>  h >= v_th (IEEE subtraction keeps the sign)
                    torch.ge(ht, thr_k, out=st)
                if refractory:  # no spike while ref > 0; ref = R after a spike, else counts down to 0
                    mt = torch.le(ref, 0.0, out=ms[t])
                    st.mul_(mt)
                    ref_next = rs[t] if rs else ref
                    torch.sub(ref, 1.0, out=ref_next).clamp_(min=0.0).masked_fill_(st > 0, float(spec.refractory))
                    ref = ref_next
                # --- adaptation, reset ---
                if alif:  # a = ρ a + (1 - ρ) s
                    a = _axpy(torch.mul(a, rho_k, out=as_[t] if as_ else a), st, keep_k)
                v_next = vs[t] if vs else v
                if v_reset is None:  # v = h - v_th s
                    v = _axpy(ht, st, soft_k, out=v_next)
                else:  # v = h (1 - s) + v_reset s, computed as h - h s (+ v_reset s): exact for s in {0, 1}
                    v = torch.addcmul(ht, ht, st, value=-1.0, out=v_next)
                    if vr_k is not None:
                        _axpy(v, st, vr_k)
                z = st
        if rec:  # the final state is an output of its own, not a view of the recorded sequence
            v = v.clone()
            a = a.clone() if alif else None
            ref = ref.clone() if refractory else None
            if alif and not refractory:
                rec[2].copy_(ref0.expand(shape))
            record.extend(rec)
        if alif and not refractory:  # no refractory period: ref stays what it was
            ref = ref0.to(dtype=dt, copy=True).expand(shape).contiguous()
        if ref is not None:
            ctx.mark_non_differentiable(ref)
        ctx.save_for_backward(h, s, u, mask, z0, w_rec, beta)
        ctx.spec, ctx.surrogate, ctx.tbptt = spec, surrogate, tbptt
        ctx.set_materialize_grads(False)
        return s, h, v, a, ref

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s, g_h, g_v, g_a, g_ref):  # type: ignore[override]
        h, s, u, mask, z0, w, beta = ctx.saved_tensors
        spec = ctx.spec
        alif = isinstance(spec, ALIFSpec)
        lif: LIFSpec = spec.lif if alif else spec
        adaptive = alif and spec.adaptive
        T, shape = h.shape[0], h.shape[1:]
        leak, gain, thr = lif.leak, lif.input_gain, lif.v_threshold
        hard, detach = lif.v_reset is not None, lif.detach_reset
        vr = lif.v_reset if hard else 0.0
        rho = spec.rho if alif else 0.0
        scale = gain / thr if (alif and spec.normalize) else gain  # dh/dI · du/dh
        k = ctx.tbptt
        # p_t = dL/dI_t (= dL/dff_t), written straight into the gradient of ff. With dL/dv_t = (leak/gain)·p_{t+1}:
        #   GS_t    = dL/ds_t = g_s + p_{t+1} W + (1-ρ) ga_t + (leak/gain)·dv/ds·p_{t+1}
        #   p_t     = gain·g_h + leak·dv/dh·p_{t+1} + gain·D_t·GS_t       (D_t = ds_t/dh_t: surrogate · mask)
        #   ga_{t-1} = ρ ga_t − β D_t GS_t                                  (ga = dL/da)
        dt, dev = h.dtype, h.device
        c = lambda x: torch.tensor(x, dtype=dt, device=dev)  # noqa: E731  (0-dim: cheaper than a Python scalar)
        rho_t, keep_t = c(rho), c(1.0 - rho)
        gI = torch.empty_like(h)
        GS = torch.empty(shape, dtype=dt, device=dev)
        ga = None if g_a is None else g_a.to(dt, copy=True).expand(shape).contiguous()
        e_soft = None if (detach or hard) else c(-thr * leak / gain)  # soft reset: (leak/gain)·dv/ds
        f_soft = None if hard else c(leak)
        g_i, g_ss = gI.unbind(0), (None if g_s is None else g_s.unbind(0))
        nxt: Tensor | None = None  # p_{t+1}, when it reaches step t
        K = _block_steps(T, h[0].numel(), backward=True)
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            hb, sb = h[t0:t1], s[t0:t1]
            # Dg = gain · D (surrogate at u, times the mask), Dbn = -β · D
            if adaptive:
                zb = u[t0:t1].clone()
            else:
                zb = hb - thr
                if alif and spec.normalize:
                    zb.div_(thr)
            Dg = surrogate_grad(ctx.surrogate, zb, scale)
            if mask is not None:
                Dg.mul_(mask[t0:t1])
            Dg_ = Dg.unbind(0)
            Dbn = (Dg * (beta / -gain)).unbind(0) if adaptive else None
            E = None if detach or not hard else (hb - vr).mul_(-leak / gain).unbind(0)  # (leak/gain)(v_reset - h)
            F = torch.sub(1.0, sb).mul_(leak).unbind(0) if hard else None  # leak (1 - s); soft: leak
            Gh = None if g_h is None else (g_h[t0:t1] * gain if gain != 1.0 else g_h[t0:t1]).unbind(0)
            for i in range(t1 - t0 - 1, -1, -1):
                t = t0 + i
                pt = g_i[t]
                if t == T - 1:  # what reaches later steps is the returned state's gradient
                    carry, f, e = g_v, (torch.sub(1.0, sb[i]).mul_(gain) if hard else c(gain)), None
                    if g_v is not None and not detach:
                        e = torch.sub(vr, hb[i]) if hard else c(-thr)
                else:
                    carry, f, e = nxt, (F[i] if hard else f_soft), (E[i] if E is not None else e_soft)
                # GS = dL/ds_t
                if w is not None and nxt is not None:
                    torch.addmm(g_ss[t], nxt, w, out=GS) if g_ss is not None else torch.mm(nxt, w, out=GS)
                elif g_ss is not None:
                    GS.copy_(g_ss[t])
                else:
                    GS.zero_()
                if ga is not None:
                    GS.addcmul_(ga, keep_t)
                if carry is not None and e is not None:
                    GS.addcmul_(e, carry)
                # p_t = dL/dI_t
                if carry is not None:
                    torch.addcmul(Gh[i], f, carry, out=pt) if Gh is not None else torch.mul(f, carry, out=pt)
                elif Gh is not None:
                    pt.copy_(Gh[i])
                else:
                    pt.zero_()
                pt.addcmul_(Dg_[i], GS)
                # ga_{t-1}
                if adaptive:
                    if ga is None:
                        ga = torch.mul(Dbn[i], GS)
                    else:
                        ga.mul_(rho_t).addcmul_(Dbn[i], GS)
                elif ga is not None:
                    ga.mul_(rho_t)
                nxt = pt
                if k is not None and t > 0 and t % k == 0:  # truncated BPTT: the state before step t was detached
                    nxt, ga = None, None
        need = ctx.needs_input_grad
        g_w = g_z0 = None
        if w is not None and need[1]:
            H = shape[-1]
            g_w = torch.mm(gI[1:].reshape(-1, H).t(), s[:-1].reshape(-1, H)) if T > 1 else torch.zeros_like(w)
            if z0 is not None:
                g_w.addmm_(gI[0].reshape(-1, H).t(), z0.to(h.dtype).expand(shape).reshape(-1, H))
        if w is not None and z0 is not None and need[5]:
            g_z0 = torch.mm(gI[0].reshape(-1, shape[-1]), w).view(shape)
        g_v0 = gI[0] * (leak / gain) if need[2] else None
        g_a0 = None
        if alif and need[3]:
            g_a0 = ga if ga is not None else torch.zeros(shape, dtype=h.dtype, device=h.device)
        return gI, g_w, g_v0, g_a0, None, g_z0, None, None, None, None, None, None, None


def recurrent_multi_step(
    ff: Tensor,
    w_rec: Tensor | None,
    spec: LIFSpec | ALIFSpec,
    surrogate: Surrogate,
    v0: Tensor,
    a0: Tensor | None = None,
    ref0: Tensor | None = None,
    z0: Tensor | None = None,
    beta: Tensor | None = None,
    tbptt: int | None = None,
    record: list | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Run all T steps fused. ff [T, B, ..., H] (the feed-forward current), W_rec [H, H] or None.

    v0 / a0 / ref0 / z0: initial membrane, adaptation, refractory count, spikes ([B, ..., H];
    a0 and ref0 for ALIF only; z0 None = zeros). beta [H]: ALIF's per-neuron adaptation strength.
    record: a list to receive the per-step states (values only), or None.
    Returns (spikes, h [T, B, ..., H], v_T, a_T, ref_T), all in the compute dtype (fp32, or
    fp64 for fp64 input); a_T / ref_T are None for IF/LIF.
    """
    compute = torch.promote_types(ff.dtype, torch.float32)
    dev = ff.device.type
    mm_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else compute
    w = None if w_rec is None else w_rec.to(compute)
    return RecurrentFunction.apply(
        ff.to(compute), w, v0, a0, ref0, z0, beta, spec, surrogate, tbptt, _exact_ops(ff), mm_dtype, record
    )


class LeakyFilterFunction(torch.autograd.Function):
    """``y_t = κ·y_{t-1} + (1 − κ)·x_t`` over T steps: ``(x [T, ...], y0 [...] | None) → (y [T, ...], y_T)``.

    The LSNN readout filter. Forward op for op the reference loop's rounding (κ·y, then
    + (1 − κ)·x_t); backward the reverse filter ``r_t = g_t + κ r_{t+1}``, one op per step.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y0: Tensor | None, kappa: float):  # type: ignore[override]
        c = torch.mul(x, 1.0 - kappa)
        y = torch.empty_like(c)
        prev = torch.zeros_like(c[0]) if y0 is None else y0
        for ct, yt in zip(c.unbind(0), y.unbind(0)):
            prev = torch.mul(prev, kappa, out=yt).add_(ct)
        ctx.kappa = kappa
        ctx.set_materialize_grads(False)
        return y, y[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_y: Tensor | None, g_last: Tensor | None):  # type: ignore[override]
        kappa = ctx.kappa
        r = torch.zeros_like(g_y) if g_y is None else g_y.clone(memory_format=torch.contiguous_format)
        if g_last is not None:
            r[-1].add_(g_last)
        rs = r.unbind(0)
        for t in range(len(rs) - 2, -1, -1):
            rs[t].add_(rs[t + 1], alpha=kappa)
        g_y0 = rs[0] * kappa if ctx.needs_input_grad[1] else None
        return r.mul_(1.0 - kappa), g_y0, None


def leaky_filter(x: Tensor, kappa: float, y0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fused first-order low-pass filter (see :class:`LeakyFilterFunction`). x [T, ...] → (y [T, ...], y_T)."""
    return LeakyFilterFunction.apply(x, y0, kappa)
