"""The ``lsnn_official`` convention's ALIF over a whole sequence as one autograd Function (plain PyTorch).

LSNN-official (``lsnn/spiking_models.py``: ``ALIF.__call__`` and ``LIF_dynamic``) fires from the
*previous* potential and subtracts the *adaptive* threshold one step late. Per step, with the state
(v_{t−1}, a_{t−1}, ref, z_{t−1}) — ``a`` is the code's ``b`` (it already holds z_{t−1}):

    I_t = ff_t + z_{t−1} W_recᵀ                       (no recurrence if W_rec is None)
    A_t = v_th + β a_{t−1}
    u_t = (v_{t−1} − A_t) / A_t;    s_t = Θ(u_t > 0)   (0 while refractory)
    h_t = charge(I_t, v_{t−1}) − A_t z_{t−1}          (= the code's v_t; charge: LIF, soft, v_rest = 0)
    a_t = ρ a_{t−1} + (1 − ρ) s_t;   v_t = h_t

The other conventions' steps (fire from h_t) are those of :mod:`spikelight.dynamics.fused.recurrent`;
this one has its own loop because the spike and the reset it causes are a step apart: in plain PyTorch
(``fused``, any device), in C (``native``: ``spikelight_official_forward`` / ``_backward_step`` in
``cpu_native.c``, fp32 CPU) or as two persistent Triton kernels (``triton``: ``_off_fwd_kernel`` /
``_off_bwd_kernel`` in :mod:`spikelight.dynamics.triton.recurrent`, CUDA, fp32, H <= 512); the last two
sum the recurrent current in another order than BLAS's (an ulp).
The reference is :meth:`spikelight.neurons.ALIFNode._official_step`; the equivalence tests hold
this Function to it (spikes equal, gradients to rounding) and both to a float64 transcription
of LSNN-official (``tests/equivalence/test_conventions.py``).

Backward (reverse time; V = dL/dv_t carried, Z = dL/dz_{t−1} outside the spike's own step,
α = dL/da_t carried, D_t = σ'(u_t)·mask_t):

    V  ← g_h,t + V                 S = g_s,t + Z_{t} + (1 − ρ) α          q = D_t S        p_t = gain·V
    V  ← leak·V + q / A_t          dA = −V z_{t−1} − q (u_t + 1)/A_t       α ← ρ α + β dA
    Z_{t−1} = p_t W − A_t V  (the reset term dropped with detach_reset)

Shapes: ff [T, B, ..., H]; W_rec [H, H] or None; every state tensor [B, ..., H]; β [H].
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.native import library as native
from spikelight.dynamics.spec import ALIFSpec, step_args

__all__ = ["OfficialALIFFunction", "official_multi_step"]


def _charge(v: Tensor, x: Tensor, charge: int, tau: float) -> Tensor:
    """The LIF charge with v_rest = 0, op for op :func:`spikelight.dynamics.reference.lif_charge`."""
    if charge == 0:
        return v + x
    if charge == 1:
        return v + (x - (v - 0.0)) / tau
    return v - (v - 0.0) / tau + x


class OfficialALIFFunction(torch.autograd.Function):
    """``(ff, W_rec | None, v0, a0, ref0, z0, zr0, β) → (s, h, v_T, a_T, ref_T)`` in the ``lsnn_official`` convention.

    z0: the spikes before step 0 as the recurrence sees them (the layer's), zr0: as the reset sees them
    (the neuron state's; the same tensor unless a user passes two). ``record``: a list that receives
    ``(v, a, ref)`` after every step (values only). ``ref`` carries no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        ff: Tensor,
        w_rec: Tensor | None,
        v0: Tensor,
        a0: Tensor,
        ref0: Tensor,
        z0: Tensor,
        zr0: Tensor,
        beta: Tensor | None,
        spec: ALIFSpec,
        surrogate: Surrogate,
        tbptt: int | None,
        record: list | None,
        backend: str = "fused",
    ):
        args = step_args(spec)
        ctx.backend = backend
        if backend in ("native", "triton"):
            return _kernel_forward(ctx, ff, w_rec, v0, a0, ref0, z0, zr0, beta, spec, surrogate, tbptt, record)
        T, shape = ff.shape[0], ff.shape[1:]
        dt = ff.dtype
        v = v0.to(dt).expand(shape)
        a = a0.to(dt).expand(shape)
        ref = ref0.to(dt).expand(shape)
        z = z0.to(dt).expand(shape)
        zr = zr0.to(dt).expand(shape)
        b = torch.zeros(shape[-1:], dtype=dt, device=ff.device) if beta is None else beta.to(dt)
        w_t = None if w_rec is None else w_rec.t()
        s, h, u, A_all = (torch.empty_like(ff) for _ in range(4))
        mask = torch.empty(ff.shape, dtype=torch.bool, device=ff.device) if args.refractory else None
        rec = [] if record is not None else None
        k = tbptt or 0
        for t in range(T):
            x = ff[t] if w_t is None else ff[t] + torch.mm(z.reshape(-1, shape[-1]), w_t).view(shape)
            A = args.thr + b * a if args.adaptive else torch.full_like(v, args.thr)
            ut = (v - A) / A
            st = (ut > 0).to(dt)
            if args.refractory:
                ok = ref <= 0
                mask[t] = ok
                st = st * ok.to(dt)
                ref = torch.where(st > 0, torch.full_like(ref, float(args.refractory)), (ref - 1).clamp(min=0))
            ht = _charge(v, x, args.charge, args.tau) - A * zr
            a = args.rho * a + (1.0 - args.rho) * st
            s[t], h[t], u[t], A_all[t] = st, ht, ut, A
            v, z, zr = ht, st, st
            if rec is not None:
                rec.append((v, a, ref))
        if record is not None and rec:  # (truncated BPTT changes the backward only)
            record.extend(torch.stack(x) for x in zip(*rec))
        ctx.save_for_backward(s, u, A_all, mask, z0.to(dt).expand(shape), zr0.to(dt).expand(shape), w_rec, b)
        ctx.spec, ctx.surrogate, ctx.tbptt = spec, surrogate, k
        ctx.mark_non_differentiable(ref)
        ctx.set_materialize_grads(False)
        return s, h, v.clone(), a.clone(), ref.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s, g_h, g_v, g_a, g_ref):  # type: ignore[override]
        s, u, A_all, mask, z0, zr0, w, b = ctx.saved_tensors
        if ctx.backend == "native":
            return _native_backward(ctx, s, u, A_all, mask, z0, zr0, w, b, g_s, g_h, g_v, g_a)
        if ctx.backend == "triton":
            return _triton_backward(ctx, s, u, A_all, mask, z0, zr0, w, b, g_s, g_h, g_v, g_a)
        args = step_args(ctx.spec)
        T, shape = s.shape[0], s.shape[1:]
        H = shape[-1]
        k = ctx.tbptt
        zero = torch.zeros(shape, dtype=s.dtype, device=s.device)
        V = zero.clone() if g_v is None else g_v.to(s.dtype).expand(shape).clone()
        alpha = zero.clone() if g_a is None else g_a.to(s.dtype).expand(shape).clone()
        Z = zero.clone()
        gI = torch.empty_like(s)
        Zw = None  # dL/dz0 through W_rec (step 0)
        D = ctx.surrogate.derivative(u)
        if mask is not None:
            D = D * mask
        for t in range(T - 1, -1, -1):
            if g_h is not None:
                V = V + g_h[t]
            S = Z + (1.0 - args.rho) * alpha
            if g_s is not None:
                S = S + g_s[t]
            q = D[t] * S
            A = A_all[t]
            z_prev = s[t - 1] if t > 0 else zr0
            gI[t] = args.gain * V
            dA = -V * z_prev - q * (u[t] + 1.0) / A
            Z = (-A * V) if not args.detach else zero.clone()  # through the reset
            Zw = None if w is None else torch.mm(gI[t].reshape(-1, H), w).view(shape)  # through W_rec
            if t > 0 and Zw is not None:
                Z = Z + Zw
            V = args.leak * V + q / A
            alpha = args.rho * alpha + (b * dA if args.adaptive else 0.0)
            if k and t > 0 and t % k == 0:  # truncated BPTT: the state before step t was detached
                V, alpha, Z = zero.clone(), zero.clone(), zero.clone()
        g_w, _ = _recurrence_grads(ctx, gI, s, z0, w)
        # what reaches the initial state: V = dL/dv_{-1}, alpha = dL/da_{-1}, Z = dL/dz_{-1} (reset), Zw (W_rec)
        return gI, g_w, V, alpha, None, Zw, None if args.detach else Z, None, None, None, None, None, None


def _kernel_forward(ctx, ff, w_rec, v0, a0, ref0, z0, zr0, beta, spec, surrogate, tbptt, record):
    """The forward on the C loops (``spikelight_official_forward``) or the persistent Triton kernel
    (:func:`spikelight.dynamics.triton.recurrent.official_forward`): the same values as the loop above but for
    the recurrent sum (in another order than BLAS's: an ulp or so)."""
    args = step_args(spec)
    T, shape = ff.shape[0], ff.shape[1:]
    f32, dev = torch.float32, ff.device
    v = v0.to(f32).expand(shape).contiguous().clone()
    a = a0.to(f32).expand(shape).contiguous().clone()
    ref = ref0.to(f32).expand(shape).contiguous().clone()
    z = z0.to(f32).expand(shape).contiguous()
    zr = zr0.to(f32).expand(shape).contiguous()
    b = None if beta is None or not args.adaptive else beta.to(f32).expand(shape[-1:]).contiguous()
    h, u, A = (torch.empty_like(ff) for _ in range(3))
    mask = torch.empty(ff.shape, dtype=torch.bool, device=dev) if args.refractory else None
    if ctx.backend == "triton":
        from spikelight.dynamics.triton import recurrent as triton_recurrent  # only where triton is installed

        H = shape[-1]
        R = shape.numel() // H
        t3 = lambda x: None if x is None else x.view(T, R, H)  # noqa: E731
        s = triton_recurrent.official_forward(
            ff.reshape(T, R, H).contiguous(), w_rec, z.view(R, H), zr.view(R, H),
            (v.view(R, H), a.view(R, H), ref.view(R, H)), b,
            (t3(h), t3(u), t3(A), None if mask is None else mask.view(torch.int8).view(T, R, H)), args,
        ).view(T, *shape)  # fmt: skip
    else:
        s = torch.empty_like(ff)
        rec = (torch.empty_like(ff), torch.empty_like(ff), torch.empty_like(ff)) if record is not None else (None,)
        native.official_forward(ff.contiguous(), None if w_rec is None else w_rec.t().contiguous(), z, zr,
                                (v, a, ref), b, (h, s, u, A, mask), rec, args)  # fmt: skip
        if record is not None:
            record.extend(rec)
    ctx.save_for_backward(s, u, A, mask, z, zr, w_rec, b)
    ctx.spec, ctx.surrogate, ctx.tbptt = spec, surrogate, tbptt or 0
    ctx.mark_non_differentiable(ref)
    ctx.set_materialize_grads(False)
    return s, h, v, a, ref


def _triton_backward(ctx, s, u, A_all, mask, z0, zr0, w, b, g_s, g_h, g_v, g_a):
    """The reverse-time loop in one persistent Triton kernel (:func:`spikelight.dynamics.triton.recurrent.official_backward`)."""
    from spikelight.dynamics.triton import recurrent as triton_recurrent  # only where triton is installed

    args = step_args(ctx.spec)
    T, shape = s.shape[0], s.shape[1:]
    H = shape[-1]
    R = shape.numel() // H
    t3 = lambda x: None if x is None else x.reshape(T, R, H)  # noqa: E731
    gI, gv, ga, gz = triton_recurrent.official_backward(
        t3(g_s), t3(g_h), None if g_v is None else g_v.to(torch.float32).expand(shape).reshape(R, H),
        None if g_a is None else g_a.to(torch.float32).expand(shape).reshape(R, H), w, s.reshape(T, R, H),
        u.reshape(T, R, H), A_all.reshape(T, R, H), None if mask is None else mask.view(torch.int8).view(T, R, H),
        zr0.reshape(R, H).contiguous(), b, args, ctx.surrogate.kernel_form(), ctx.tbptt,
    )  # fmt: skip
    gI = gI.view(s.shape)
    g_w, g_z0 = _recurrence_grads(ctx, gI, s, z0, w)
    return (gI, g_w, gv.view(shape), ga.view(shape), None, g_z0, None if args.detach else gz.view(shape), None, None,
            None, None, None, None)  # fmt: skip


def _native_backward(ctx, s, u, A_all, mask, z0, zr0, w, b, g_s, g_h, g_v, g_a):
    """The reverse-time loop with the element-wise work of each step in C (``spikelight_official_backward_step``)
    and torch's product p_{t+1} W between steps."""
    args = step_args(ctx.spec)
    T, shape = s.shape[0], s.shape[1:]
    H, k = shape[-1], ctx.tbptt
    f32 = torch.float32
    V = torch.zeros(shape, dtype=f32) if g_v is None else g_v.to(f32).expand(shape).contiguous().clone()
    alpha = torch.zeros(shape, dtype=f32) if g_a is None else g_a.to(f32).expand(shape).contiguous().clone()
    Z, GS = torch.zeros(shape, dtype=f32), torch.zeros(shape, dtype=f32)
    gI = torch.empty_like(s)
    D = ctx.surrogate.derivative(u).to(f32)
    if mask is not None:
        D.mul_(mask)
    D = D.contiguous()
    g_h = None if g_h is None else g_h.to(f32).contiguous()
    g_s = None if g_s is None else g_s.to(f32).contiguous()
    beta = torch.zeros(H, dtype=f32) if b is None else b
    block = native.official_backward_args(gI, GS, V, alpha, Z, D, u, A_all, s, zr0, g_h, g_s, beta, args)
    step, ref = native.library().spikelight_official_backward_step, ctypes.byref(block)
    gIs, live = gI.unbind(0), False
    for t in range(T - 1, -1, -1):
        if live and w is not None:  # dL/dz_t through W_rec: p_{t+1} W
            torch.mm(gIs[t + 1].reshape(-1, H), w, out=GS.view(-1, H))
        else:
            GS.zero_()
        cut = bool(k and t > 0 and t % k == 0)
        step(ref, t, cut)
        live = not cut
    g_w, g_z0 = _recurrence_grads(ctx, gI, s, z0, w)
    return gI, g_w, V, alpha, None, g_z0, None if args.detach else Z, None, None, None, None, None, None


def _recurrence_grads(ctx, gI: Tensor, s: Tensor, z0: Tensor, w: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """dL/dW_rec = Σ_t p_tᵀ z_{t-1} and dL/dz0 = p_0 W_rec from p_t = dL/dI_t (gI [T, ...]); (None, None) alone."""
    if w is None:
        return None, None
    H, shape = s.shape[-1], s.shape[1:]
    g_w = None
    if ctx.needs_input_grad[1]:
        zs = torch.cat([z0.unsqueeze(0), s[:-1]])
        g_w = torch.mm(gI.reshape(-1, H).t(), zs.reshape(-1, H))
    return g_w, torch.mm(gI[0].reshape(-1, H), w).view(shape)


def official_multi_step(
    ff: Tensor,
    w_rec: Tensor | None,
    spec: ALIFSpec,
    surrogate: Surrogate,
    v0: Tensor,
    a0: Tensor,
    ref0: Tensor,
    z0: Tensor,
    zr0: Tensor | None = None,
    beta: Tensor | None = None,
    tbptt: int | None = None,
    record: list | None = None,
    backend: str = "fused",
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """All T steps of the ``lsnn_official`` ALIF (module docstring); arguments as
    :func:`spikelight.dynamics.fused.recurrent.recurrent_multi_step`, and zr0 the last spike as the reset
    sees it (None = z0). Returns (s, h, v_T, a_T, ref_T)."""
    compute = torch.promote_types(ff.dtype, torch.float32)
    w = None if w_rec is None else w_rec.to(compute)
    zr0 = z0 if zr0 is None else zr0
    return OfficialALIFFunction.apply(ff.to(compute), w, v0, a0, ref0, z0, zr0, beta, spec, surrogate, tbptt, record,
                                      backend)
