"""Fused recurrent spiking layer (LSNN) and fused ALIF, in plain PyTorch (any device; the CPU fast path).

One ``torch.autograd.Function`` runs a whole sequence of

    I_t = ff_t + z_{t-1} W_recᵀ                    (W_rec [H, H]; no recurrence if W_rec is None)
    h_t = charge(I_t, v_{t-1})                      (IF / LIF, :class:`LIFSpec`)
    s_t = Θ(u_t),  u_t = h_t − v_th                 (LIF)
         u_t = (h_t − v_th − β a_{t-1}) [/ v_th]     (ALIF, :class:`ALIFSpec`; s_t = 0 while refractory)
    v_t = reset(h_t, s_t),  a_t = ρ a_{t-1} + (1 − ρ) s_t

Against the reference loop (``RecurrentSpikingLayer`` with ``backend=torch``: ~20
autograd-recorded ops per step and as many backward nodes) the forward runs
without autograd, in place, on preallocated ``[T, ...]`` buffers (10 ops and one
``[B, H] × [H, H]`` product per step for an adaptive ALIF, 5 for LIF), and the
backward is a hand-written reverse-time recurrence: per step one product (the
gradient reaching z_{t-1} through W_rec) and 3–6 in-place element-wise ops; the
surrogate and every factor that is not sequential are computed on blocks of
time steps, and ``dL/dW_rec = Σ_t (dL/dI_t)ᵀ z_{t-1}`` is one matrix product
over the whole sequence.

The per-step loops run one of three ways (``loops``):

- ``native`` (the CPU default: fp32, no autocast, a C compiler present): the C loops
  of :mod:`spikelight.dynamics.native.library`. A forward step is one pass over B·H
  numbers, and the recurrent current adds the rows of W_recᵀ of the neurons that
  spiked (no products: spikes are 0/1, and mostly 0); the backward keeps torch's
  dense product p_{t+1} W per step plus one C call for the step's element-wise
  work, and dL/dW_rec sums over the spikes when fewer than ``SPARSE_GRAD_W`` fire.
  Spikes and final state match the loop; h differs from it by the rounding of the
  recurrent sum (taken in another order than BLAS's: an ulp or so).
- ``script``: :mod:`spikelight.dynamics.fused.steps` compiled by TorchScript
  (other devices, fp64, autocast, no compiler). Forward values are bit-identical
  to the reference loop: the recurrent current is the reference's own product
  (``mm`` of the same operands, then ``ff_t +``), and every element-wise op rounds
  like the reference's (as in :mod:`spikelight.dynamics.fused.neurons`). Under
  autocast the product runs in the autocast dtype, as ``F.linear`` does in the
  reference.
- ``python``: the same functions uncompiled (same numbers as ``script``).

Saved for backward: the outputs (spikes, pre-reset potential h), plus for an
adaptive ALIF the surrogate's input u_t, and with a refractory period a bool
mask of the steps that could fire.

Truncated BPTT (``tbptt``): the reference detaches the state (v, a, z) before
every step t with ``t % k == 0``; the backward drops the gradient carried across
those steps (dL/dW_rec still collects every step's term, as W_rec is not detached).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.errors import ConfigError, ShapeError
from spikelight.core.surrogate import Surrogate
from spikelight.dynamics import buffers
from spikelight.dynamics.fused.neurons import BLOCK_ELEMS, _exact_ops, surrogate_grad
from spikelight.dynamics.fused.steps import backward_steps, filter_backward, filter_forward, forward_steps
from spikelight.dynamics.native import library as cpu_native
from spikelight.dynamics.spec import ALIFSpec, LIFSpec

__all__ = ["RecurrentFunction", "recurrent_multi_step", "LeakyFilterFunction", "leaky_filter"]


def _block_steps(T: int, per_step: int, backward: bool = False) -> int:
    """Time steps per block of the backward's non-sequential work: PyTorch's grain size with
    several threads (no op forks where a per-step op would not, see torch_fused), else ~1 MB
    (fewer, larger ops; one thread never forks)."""
    elems = BLOCK_ELEMS if torch.get_num_threads() > 1 else 1 << 18
    return max(1, min(T, elems // max(per_step, 1)))


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
        loops: str,
    ):
        alif = isinstance(spec, ALIFSpec)
        lif = spec.lif if alif else spec
        adaptive = alif and spec.adaptive
        refractory = alif and spec.refractory > 0
        T, shape, dt, dev = ff.shape[0], ff.shape[1:], ff.dtype, ff.device
        new = lambda *lead, dtype=dt: buffers.empty((*lead, *shape), dtype, dev)  # noqa: E731  (reused memory)
        h, s = new(T), new(T)
        u = new(T) if adaptive else None  # the surrogate's input, saved for backward
        mask = new(T, dtype=torch.bool) if refractory else None  # steps that could fire
        rec = None if record is None else (new(T), new(T), new(T)) if alif else (new(T),)
        v = v0.to(dtype=dt, copy=True).expand(shape).contiguous()
        a = a0.to(dtype=dt, copy=True).expand(shape).contiguous() if alif else None
        ref = ref0.to(dtype=dt, copy=True).expand(shape).contiguous() if refractory else None
        thr, v_reset = lif.v_threshold, lif.v_reset
        rho = spec.rho if alif else 0.0
        cpu = torch.device("cpu")
        k = lambda x, d=dev: torch.tensor(x, dtype=dt, device=d)  # noqa: E731  (0-dim constants, see recurrent_steps)
        consts = [
            k(lif.tau or 1.0, cpu), k(0.0 if v_reset is None else v_reset), k(thr, cpu), k(0.0),
            k(rho), k(1.0 - rho), k(-thr), k(v_reset or 0.0),
        ]  # fmt: skip
        empty = torch.empty(0, dtype=dt, device=dev)
        w_t = None if w_rec is None else w_rec.to(mm_dtype).t()  # F.linear(z, W) = z @ Wᵀ: the same product
        z = torch.zeros_like(v) if z0 is None else z0.to(dt).expand(shape)
        opt = lambda x: empty if x is None else x  # noqa: E731
        rec3 = (*rec, empty, empty)[:3] if rec else (empty,) * 3
        n_spikes = -1
        if loops == "triton":
            from spikelight.dynamics.triton import recurrent as triton_recurrent

            H = shape[-1]
            R = shape.numel() // H
            s = triton_recurrent.recurrent_forward(
                ff.reshape(T, R, H).contiguous(), w_rec, None if z0 is None else z.reshape(R, H).contiguous(),
                v.view(R, H), None if a is None else a.view(R, H), None if ref is None else ref.view(R, H),
                None if beta is None else torch.broadcast_to(beta, (H,)).to(dt).contiguous(), h.view(T, R, H),
                None if u is None else u.view(T, R, H), None if mask is None else mask.view(torch.int8).view(T, R, H),
                spec,
            ).view(T, *shape)  # fmt: skip
        elif loops == "native":
            n_spikes = cpu_native.forward(
                ff.contiguous(), None if w_rec is None else w_rec.t().contiguous(),
                None if z0 is None else z.contiguous(), v, a, ref,
                None if beta is None else torch.broadcast_to(beta, shape[-1:]).to(dt).contiguous(), h, s, u, mask,
                tuple(x if x.numel() else None for x in rec3),
                (lif.tau or 1.0, 0.0 if v_reset is None else v_reset, thr, rho, 1.0 - rho, v_reset or 0.0),
                dict(charge=0 if lif.tau is None else 1 if lif.decay_input else 2, v_rest_zero=v_reset in (None, 0.0),
                     hard=v_reset is not None, vr_add=v_reset not in (None, 0.0), alif=alif, adaptive=adaptive,
                     normalize=alif and spec.normalize, strict=not alif and lif.strict,
                     refractory=spec.refractory if alif else 0),
            )  # fmt: skip
        else:
            with torch.autocast(dev.type, enabled=False):
                v, a, ref = forward_steps(
                    ff, w_t, z, v, opt(a), opt(ref), opt(beta), h, s, opt(u), opt(mask), *rec3, consts,
                    0 if lif.tau is None else 1 if lif.decay_input else 2, v_reset in (None, 0.0),
                    v_reset is not None, v_reset not in (None, 0.0), alif, adaptive, alif and spec.normalize,
                    not alif and lif.strict, spec.refractory if alif else 0, rec is not None, exact_ops == "cpu",
                    w_rec is not None and mm_dtype != dt, mm_dtype, script=loops == "script",
                )  # fmt: skip
        if not alif:
            a = ref = None
        elif not refractory:
            ref = None
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
        ctx.spec, ctx.surrogate, ctx.tbptt, ctx.loops, ctx.n_spikes = spec, surrogate, tbptt, loops, n_spikes
        ctx.set_materialize_grads(False)
        return s, h, v, a, ref

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s, g_h, g_v, g_a, g_ref):  # type: ignore[override]
        h, s, u, mask, z0, w, beta = ctx.saved_tensors
        if ctx.loops == "triton":
            return _triton_backward(ctx, h, s, u, mask, z0, w, beta, g_s, g_h, g_v, g_a)
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
        # p_t = dL/dI_t (= dL/dff_t), written straight into the gradient of ff. With dL/dv_t = (leak/gain)·p_{t+1}
        # and w_t = (1-ρ)·dL/da_t (the adaptation's gradient as it reaches the spike):
        #   GS_t    = dL/ds_t = g_s + p_{t+1} W + w_t + (leak/gain)·dv/ds·p_{t+1}
        #   p_t     = gain·g_h + leak·dv/dh·p_{t+1} + gain·D_t·GS_t       (D_t = ds_t/dh_t: surrogate · mask)
        #   w_{t-1} = ρ w_t − (1-ρ) β D_t GS_t
        dt, dev = h.dtype, h.device
        c = lambda x: torch.tensor(x, dtype=dt, device=dev)  # noqa: E731  (0-dim: cheaper than a Python scalar)
        rho_t, empty = c(rho), h.new_empty(0)
        gI = buffers.empty(h.shape, dt, dev)
        GS = torch.empty(shape, dtype=dt, device=dev)
        ga = None if g_a is None else torch.mul(g_a.to(dt).expand(shape), 1.0 - rho)  # w_{T-1}
        e_soft = None if (detach or hard) else c(-thr * leak / gain)  # soft reset: (leak/gain)·dv/ds
        f_soft = None if hard else c(leak)
        nxt: Tensor | None = None  # p_{t+1}, when it reaches step t
        native = ctx.loops == "native"
        if native:
            nat = _NativeBackward(gI, GS, g_s, g_h, w, h, s, beta, spec, k)
        K = _block_steps(T, h[0].numel(), backward=True)
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            hb, sb = h[t0:t1], s[t0:t1]
            # Dg = gain · D (surrogate at u, times the mask), Dbn = -(1-ρ) β · D
            if adaptive:
                zb = u[t0:t1].clone()
            else:
                zb = hb - thr
                if alif and spec.normalize:
                    zb.div_(thr)
            Dg = surrogate_grad(ctx.surrogate, zb, scale)
            if mask is not None:
                Dg.mul_(mask[t0:t1])
            blocks = not native or t1 == T  # the C loop computes these per step; the last step needs them
            Dbn = Dg * (beta * ((rho - 1.0) / gain)) if adaptive and blocks else None
            # E = (leak/gain)(v_reset - h), F = leak (1 - s) (soft reset: F = leak); one pass each
            E = None if detach or not hard or native else torch.addcmul(c(vr * leak / gain), hb, c(-leak / gain))
            F = torch.addcmul(c(leak), sb, c(-leak)) if hard and not native else None
            Gh = None if g_h is None or not blocks else (g_h[t0:t1] * gain if gain != 1.0 else g_h[t0:t1])
            n = t1 - t0
            if t1 == T:  # the last step: what reaches later steps is the returned state's gradient
                n, i, t = n - 1, n - 1, T - 1
                pt = gI[t]
                carry, f, e = g_v, (torch.sub(1.0, sb[i]).mul_(gain) if hard else c(gain)), None
                if g_v is not None and not detach:
                    e = torch.sub(vr, hb[i]) if hard else c(-thr)
                # GS = dL/ds_t
                if w is not None and nxt is not None:
                    torch.addmm(g_s[t], nxt, w, out=GS) if g_s is not None else torch.mm(nxt, w, out=GS)
                elif g_s is not None:
                    GS.copy_(g_s[t])
                else:
                    GS.zero_()
                if ga is not None:
                    GS.add_(ga)
                if carry is not None and e is not None:
                    GS.addcmul_(e, carry)
                # p_t = dL/dI_t
                if carry is not None:
                    torch.addcmul(Gh[i], f, carry, out=pt) if Gh is not None else torch.mul(f, carry, out=pt)
                elif Gh is not None:
                    pt.copy_(Gh[i])
                else:
                    pt.zero_()
                pt.addcmul_(Dg[i], GS)
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
            if n > 0 and native:
                nxt, ga = nat.block(t0, n, Dg, nxt, ga)
            elif n > 0:
                opt = lambda x: empty if x is None else x  # noqa: E731
                nxt, ga = backward_steps(
                    n, t0, gI[t0:t1], empty if g_s is None else g_s[t0:t1], w, GS, nxt, ga, Dg, opt(Dbn), opt(E),
                    opt(F), opt(Gh), opt(f_soft), opt(e_soft), rho_t, g_s is not None, not detach, hard,
                    Gh is not None, adaptive, k or 0, script=ctx.loops == "script",
                )  # fmt: skip
        return _input_grads(ctx, gI, ga, h, s, z0, w, native)


def _input_grads(ctx, gI: Tensor, ga: Tensor | None, h: Tensor, s: Tensor, z0, w, native: bool) -> tuple:
    """The gradients RecurrentFunction.backward returns, from p_t = dL/dI_t (gI) and the adaptation's
    carry ga = (1-ρ)·dL/da before step 0: dL/dW_rec = Σ_t p_tᵀ z_{t-1}, dL/dz0, dL/dv0, dL/da0."""
    spec = ctx.spec
    alif = isinstance(spec, ALIFSpec)
    lif: LIFSpec = spec.lif if alif else spec
    T, shape = h.shape[0], h.shape[1:]
    rho = spec.rho if alif else 0.0
    need = ctx.needs_input_grad
    g_w = g_z0 = None
    if w is not None and need[1]:
        H = shape[-1]
        if T == 1:
            g_w = torch.zeros_like(w)
        elif native and ctx.n_spikes < SPARSE_GRAD_W * s.numel():  # the sum over the spikes only
            g_w = cpu_native.grad_w_sparse(gI[1:].reshape(-1, H), s[:-1].reshape(-1, H))
        else:
            g_w = torch.mm(gI[1:].reshape(-1, H).t(), s[:-1].reshape(-1, H))
        if z0 is not None:
            g_w.addmm_(gI[0].reshape(-1, H).t(), z0.to(h.dtype).expand(shape).reshape(-1, H))
    if w is not None and z0 is not None and need[5]:
        g_z0 = torch.mm(gI[0].reshape(-1, shape[-1]), w).view(shape)
    g_v0 = gI[0] * (lif.leak / lif.input_gain) if need[2] else None
    g_a0 = None
    if alif and need[3]:
        g_a0 = ga.div_(1.0 - rho) if ga is not None else torch.zeros(shape, dtype=h.dtype, device=h.device)
    return gI, g_w, g_v0, g_a0, None, g_z0, None, None, None, None, None, None, None, None


def _triton_backward(ctx, h, s, u, mask, z0, w, beta, g_s, g_h, g_v, g_a) -> tuple:
    """RecurrentFunction.backward on the persistent Triton kernel (:mod:`spikelight.dynamics.triton.recurrent`)."""
    from spikelight.dynamics.triton import recurrent as triton_recurrent
    from spikelight.dynamics.triton.neurons import triton_surrogate

    T, shape = h.shape[0], h.shape[1:]
    H = shape[-1]
    R = shape.numel() // H
    v3 = lambda x: None if x is None else x.reshape(T, R, H)  # noqa: E731
    gI, ga = triton_recurrent.recurrent_backward(
        v3(g_s), v3(g_h), None if g_v is None else g_v.expand(shape).reshape(R, H),
        None if g_a is None else g_a.expand(shape).reshape(R, H), w, h.view(T, R, H), s.reshape(T, R, H),
        v3(u), None if mask is None else mask.view(torch.int8).view(T, R, H),
        None if beta is None else torch.broadcast_to(beta, (H,)).to(h.dtype).contiguous(),
        ctx.spec, triton_surrogate(ctx.surrogate), ctx.tbptt,
    )  # fmt: skip
    return _input_grads(ctx, gI.view(h.shape), ga.view(shape), h, s, z0, w, False)


SPARSE_GRAD_W = 0.1  # below this firing density dL/dW_rec sums over the spikes (cpu_native) instead of one GEMM


class _NativeBackward:
    """The backward's per-step loop on the C library: torch's product p_{t+1} W, then one C call per step
    (``spikelight_backward_step``) for the step's element-wise work. State between blocks: p_{t+1}
    (``nxt``, a row of gI, or None) and w_t (``ga``, or None)."""

    def __init__(self, gI, GS, g_s, g_h, w, h, s, beta, spec, tbptt) -> None:
        alif = isinstance(spec, ALIFSpec)
        lif: LIFSpec = spec.lif if alif else spec
        leak, gain, thr = lif.leak, lif.input_gain, lif.v_threshold
        hard = lif.v_reset is not None
        vr, rho = (lif.v_reset if hard else 0.0), (spec.rho if alif else 0.0)
        shape = h.shape[1:]
        self.lib = cpu_native.library()
        self.ga = torch.zeros(shape, dtype=h.dtype)
        self.g_h = None if g_h is None else g_h.to(h.dtype).contiguous()
        self.g_s = None if g_s is None else g_s.to(h.dtype).contiguous()  # added to the product in C
        # every tensor whose address the C code keeps is held here for as long as the arguments live
        self.beta = None if beta is None else torch.broadcast_to(beta, shape[-1:]).to(h.dtype).contiguous()
        self.args = cpu_native.backward_step_args(
            gI, GS, self.ga, h, s, self.g_h, self.g_s, self.beta,
            leak=leak, gain=gain, rho=rho, e0=vr * leak / gain, e1=-leak / gain, e_soft=-thr * leak / gain,
            dbn=(rho - 1.0) / gain, hard=hard, has_e=not lif.detach_reset, adaptive=alif and spec.adaptive,
        )  # fmt: skip
        self.ref = ctypes.byref(self.args)
        self.gI, self.GS, self.w, self.k = gI.unbind(0), GS, w, tbptt or 0
        self.adaptive = alif and spec.adaptive

    def block(self, t0: int, n: int, Dg: Tensor, nxt: Tensor | None, ga: Tensor | None):
        """Steps t0 + n − 1 down to t0 (Dg: [≥ n, ...] from t0); returns (p_{t0} or None, w_{t0−1} or None)."""
        Dg = Dg.to(torch.float32).contiguous()  # (a user surrogate's derivative may come back in another dtype)
        self.args.Dg, self.args.t0 = Dg.data_ptr(), t0
        if ga is not None and ga is not self.ga:
            self.ga.copy_(ga)
        has_next, ga_live = nxt is not None, ga is not None
        gI, GS, w, k, step = self.gI, self.GS, self.w, self.k, self.lib.spikelight_backward_step
        product = True  # whether GS may hold something other than zeros (the last step left its GS there)
        for t in range(t0 + n - 1, t0 - 1, -1):
            if has_next and w is not None:
                torch.mm(gI[t + 1], w, out=GS)
                product = True
            elif product:
                GS.zero_()
                product = False
            step(self.ref, t, has_next, ga_live)
            ga_live = ga_live or self.adaptive
            has_next = True
            if k and t > 0 and t % k == 0:  # truncated BPTT: the state before step t was detached
                has_next = ga_live = False
        return (gI[t0] if has_next else None), (self.ga if ga_live else None)


def recurrent_loops(backend: str, record: list | None) -> str:
    """``recurrent_multi_step``'s ``loops`` for a neuron's ``backend``: ``triton`` runs the persistent
    kernels (not with a state monitor: they record nothing), ``fused`` never does (plain PyTorch, or C on
    the CPU), ``auto`` picks."""
    if backend == "triton":
        return "triton" if record is None else "fused"
    return "fused" if backend == "fused" else "auto"


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
    loops: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Run all T steps fused. ff [T, B, ..., H] (the feed-forward current), W_rec [H, H] or None.

    v0 / a0 / ref0 / z0: initial membrane, adaptation, refractory count, spikes ([B, ..., H];
    a0 and ref0 for ALIF only; z0 None = zeros). beta [H]: ALIF's per-neuron adaptation strength.
    record: a list to receive the per-step states (values only), or None.
    loops: how the per-step loops run: ``triton`` (one persistent kernel per direction, CUDA, fp32, no
    autocast, built-in surrogates, no ``record``), ``native`` (C, :mod:`spikelight.dynamics.native.library`:
    CPU, fp32, no autocast), ``script`` (TorchScript where available), ``python``; ``auto`` = triton on
    CUDA where it applies, native on the CPU where it applies and a C compiler is present, else script;
    ``fused`` = the same without Triton (``neuron.backend=fused``: plain PyTorch on CUDA).
    script and python are bit-identical to the reference loop; native and triton sum the recurrent
    current in another order (h within an ulp or so; a spike differs only where h is that close to
    the threshold).
    Returns (spikes, h [T, B, ..., H], v_T, a_T, ref_T), all in the compute dtype (fp32, or
    fp64 for fp64 input); a_T / ref_T are None for IF/LIF.
    """
    compute = torch.promote_types(ff.dtype, torch.float32)
    dev = ff.device.type
    mm_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else compute
    H = ff.shape[-1]
    if w_rec is not None and tuple(w_rec.shape) != (H, H):
        raise ShapeError(f"W_rec must be [H, H] = [{H}, {H}] for input [..., {H}], got {tuple(w_rec.shape)}")
    if isinstance(spec, ALIFSpec) and spec.adaptive and (beta is None or beta.numel() not in (1, H)):
        raise ShapeError(f"an adaptive ALIF needs beta of {H} (or 1) values, got {None if beta is None else beta.shape}")
    w = None if w_rec is None else w_rec.to(compute)
    if loops in ("auto", "fused"):
        if loops == "auto" and ff.is_cuda and triton_applies(ff, compute, mm_dtype, surrogate, record, w_rec is not None):
            loops = "triton"
        elif native_applies(ff, compute, mm_dtype) and (w is None or bool(torch.isfinite(w).all())):
            loops = "native"  # (a non-finite W_rec: the dense product spreads it like the loop's, so no C sums)
        else:
            loops = "script"
    elif loops == "native" and not native_applies(ff, compute, mm_dtype):
        raise ValueError("loops='native' needs fp32 CPU tensors without autocast and a C compiler (cpu_native)")
    elif loops == "triton" and not triton_applies(ff, compute, mm_dtype, surrogate, record, w_rec is not None):
        raise ConfigError(
            "neuron.backend=triton: the recurrent Triton kernel needs a CUDA tensor (or TRITON_INTERPRET=1), fp32 "
            "without autocast, a built-in surrogate and no state monitor; use neuron.backend=auto"
        )
    return RecurrentFunction.apply(
        ff.to(compute), w, v0, a0, ref0, z0, beta, spec, surrogate, tbptt, _exact_ops(ff), mm_dtype, record, loops
    )


#: the persistent kernels hold [16, H] tiles per program: beyond this H they would not fit (shared memory)
TRITON_MAX_H = 512


def triton_applies(
    ff: Tensor, compute: torch.dtype, mm_dtype: torch.dtype, surrogate: Surrogate, record, has_w: bool = True
) -> bool:
    """Whether the persistent Triton kernels can run this call (:mod:`spikelight.dynamics.triton.recurrent`)."""
    from spikelight.dynamics.triton.neurons import triton_available, triton_surrogate

    return (
        compute == torch.float32
        and (mm_dtype == compute or not has_w)  # autocast changes only the recurrent product
        and record is None
        and 0 < ff.shape[-1] <= TRITON_MAX_H
        and triton_available(ff.device)
        and triton_surrogate(surrogate) is not None
    )


def native_applies(ff: Tensor, compute: torch.dtype, mm_dtype: torch.dtype) -> bool:
    """Whether the C loops can run this call: CPU, fp32 compute, no autocast, the library built."""
    return (
        ff.device.type == "cpu"
        and compute == mm_dtype == torch.float32
        and ff.shape[-1] > 0
        and cpu_native.available()
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
        y0 = torch.zeros_like(c[0]) if y0 is None else y0.to(c.dtype)
        filter_forward(c, y, y0, torch.tensor(kappa, dtype=torch.promote_types(c.dtype, torch.float32)))
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
        filter_backward(r, kappa)
        g_y0 = r[0] * kappa if ctx.needs_input_grad[1] else None
        return r.mul_(1.0 - kappa), g_y0, None


def leaky_filter(x: Tensor, kappa: float, y0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fused first-order low-pass filter (see :class:`LeakyFilterFunction`). x [T, ...] → (y [T, ...], y_T)."""
    return LeakyFilterFunction.apply(x, y0, kappa)
