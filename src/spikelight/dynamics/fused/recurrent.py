"""IF / LIF / ALIF over a whole sequence as one autograd Function, with or without recurrence.

The one Function every fast path of these neurons goes through: a feed-forward IF / LIF /
ALIF layer is this Function without W_rec, the LSNN's recurrent layer with it. Which loops
run its steps is the backend :mod:`spikelight.dynamics.dispatch` chose (``backend``):
``fused`` the plain-PyTorch loops of :mod:`~spikelight.dynamics.fused.steps`, ``native`` the
C loops of :mod:`spikelight.dynamics.native`, ``triton`` the persistent kernels of
:mod:`spikelight.dynamics.triton.recurrent`.

Each call runs a whole sequence of

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

The per-step loops run one of three ways (``backend``):

- ``native`` (the CPU default: fp32, no autocast, a C compiler present): a forward step is
  one pass over B·H numbers, and the recurrent current adds the rows of W_recᵀ of the
  neurons that spiked (spikes are 0/1, and mostly 0); the backward keeps torch's dense
  product p_{t+1} W per step plus one C call for the step's element-wise work, and
  dL/dW_rec sums over the spikes when fewer than ``SPARSE_GRAD_W`` fire. h differs from the
  loop's by the rounding of the recurrent sum (another order than BLAS's: an ulp or so).
- ``fused``: :mod:`spikelight.dynamics.fused.steps` (other devices, fp64, autocast, no
  compiler), bit-identical to the reference loop (the recurrent current is the reference's
  own product; every element-wise op rounds like the reference's). Under autocast the
  product runs in the autocast dtype, as ``F.linear`` does in the reference.
- ``triton``: one persistent kernel per direction (CUDA, fp32); the recurrent sum in another
  order (as ``native``).

Saved for backward: the outputs (spikes, pre-reset potential h), plus for an
adaptive ALIF the surrogate's input u_t, and with a refractory period a bool
mask of the steps that could fire.

Truncated BPTT (``tbptt``): the reference detaches the state (v, a, z) before
every step t with ``t % k == 0``; the backward drops the gradient carried across
those steps (dL/dW_rec still collects every step's term, as W_rec is not detached).
"""

from __future__ import annotations

import contextvars
import ctypes
import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.errors import BackendError, ShapeError
from spikelight.core.surrogate import Surrogate
from spikelight.dynamics import buffers
from spikelight.dynamics.fused.leaky import BLOCK_ELEMS, exact_ops
from spikelight.dynamics.fused.steps import (
    backward_steps,
    elementwise_backward_steps,
    filter_backward,
    filter_forward,
    forward_steps,
)
from spikelight.dynamics.native import library as native
from spikelight.dynamics.spec import ALIFSpec, LIFSpec, StepArgs, step_args

__all__ = ["RecurrentFunction", "recurrent_multi_step", "LeakyFilterFunction", "leaky_filter", "SPARSE_GRAD_W"]

SPARSE_GRAD_W = 0.1  # below this firing density dL/dW_rec sums over the spikes (native) instead of one GEMM

#: set by :func:`spikelight.dynamics.dispatch.guarded` while ``auto`` runs the Triton kernels: a backward that
#: fails on them then runs the fused backward (the saved tensors are the same) instead of failing the run
TRITON_FALLBACK: contextvars.ContextVar[bool] = contextvars.ContextVar("triton_fallback", default=False)


def _block_steps(T: int, per_step: int) -> int:
    """Time steps per block of the backward's non-sequential work: PyTorch's grain size with
    several threads (no op forks where a per-step op would not, see fused.leaky), else ~1 MB
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
        mm_dtype: torch.dtype,
        record: list | None,
        backend: str,
    ):
        args = step_args(spec)
        T, shape, dt, dev = ff.shape[0], ff.shape[1:], ff.dtype, ff.device
        new = lambda *lead, dtype=dt: buffers.empty((*lead, *shape), dtype, dev)  # noqa: E731  (reused memory)
        h, s = new(T), new(T)
        u = new(T) if args.adaptive else None  # the surrogate's input, saved for backward
        mask = new(T, dtype=torch.bool) if args.refractory else None  # steps that could fire
        rec = None if record is None else (new(T), new(T), new(T)) if args.alif else (new(T),)
        v = v0.to(dtype=dt, copy=True).expand(shape).contiguous()
        a = a0.to(dtype=dt, copy=True).expand(shape).contiguous() if args.alif else None
        ref = ref0.to(dtype=dt, copy=True).expand(shape).contiguous() if args.refractory else None
        z = torch.zeros_like(v) if z0 is None else z0.to(dt).expand(shape)
        beta_h = None if beta is None else torch.broadcast_to(beta, shape[-1:]).to(dt).contiguous()
        n_spikes = -1
        if backend == "triton":
            from spikelight.dynamics.triton import recurrent as triton_recurrent  # only where triton is installed

            H = shape[-1]
            R, v3 = shape.numel() // H, (lambda x: None if x is None else x.view(T, R, H))  # noqa: E731
            r2 = lambda x: None if x is None else x.view(R, H)  # noqa: E731
            s = triton_recurrent.recurrent_forward(
                ff.reshape(T, R, H).contiguous(), w_rec, None if z0 is None else z.reshape(R, H).contiguous(),
                (r2(v), r2(a), r2(ref)), beta_h, (v3(h), v3(u), None if mask is None else v3(mask.view(torch.int8))),
                args,
            ).view(T, *shape)  # fmt: skip
        elif backend == "native":
            # without W_rec or β nothing couples a step's neurons: one row of all of them (no per-row overhead)
            flat = (lambda x: x if x is None else x.view(*x.shape[: x.dim() - len(shape)], 1, -1)) if (
                w_rec is None and beta_h is None) else (lambda x: x)  # fmt: skip
            n_spikes = native.forward(
                flat(ff.contiguous()), None if w_rec is None else w_rec.t().contiguous(),
                None if z0 is None else z.contiguous(), tuple(map(flat, (v, a, ref))), beta_h,
                tuple(map(flat, (h, s, u, mask))), tuple(map(flat, rec or (None,))), args,
            )  # fmt: skip
        else:
            with torch.autocast(dev.type, enabled=False):
                w_t = None if w_rec is None else w_rec.to(mm_dtype).t()  # F.linear(z, W) = z @ Wᵀ: the same product
                v, a, ref = forward_steps(
                    ff, w_t, z, v, a, ref, beta_h, (h, s, u, mask), rec, args, exact_ops(ff) == "cpu", mm_dtype
                )
        if rec:  # the final state is an output of its own, not a view of the recorded sequence
            v = v.clone()
            a = a.clone() if args.alif else None
            ref = ref.clone() if args.refractory else None
            if args.alif and not args.refractory:
                rec[2].copy_(ref0.expand(shape))
            record.extend(rec)
        if args.alif and not args.refractory:  # no refractory period: ref stays what it was
            ref = ref0.to(dtype=dt, copy=True).expand(shape).contiguous()
        if ref is not None:
            ctx.mark_non_differentiable(ref)
        ctx.save_for_backward(h, s, u, mask, z0, w_rec, beta)
        ctx.spec, ctx.surrogate, ctx.tbptt, ctx.backend, ctx.n_spikes = spec, surrogate, tbptt, backend, n_spikes
        ctx.fallback = TRITON_FALLBACK.get()
        ctx.set_materialize_grads(False)
        return s, h, v, a, ref

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s, g_h, g_v, g_a, g_ref):  # type: ignore[override]
        h, s, u, mask, z0, w, beta = ctx.saved_tensors
        if ctx.backend == "triton":
            try:
                return _triton_backward(ctx, h, s, u, mask, z0, w, beta, g_s, g_h, g_v, g_a)
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0][:200]
                if not ctx.fallback:
                    raise BackendError(f"neuron.backend=triton: the recurrent backward kernel failed "
                                       f"({type(e).__name__}: {first}); use neuron.backend=auto or fused") from e
                warnings.warn(f"the Triton recurrent backward kernel failed ({type(e).__name__}: {first}); "
                              f"neuron.backend=auto computes this backward fused", RuntimeWarning, stacklevel=2)
                ctx.backend = "fused"  # the same saved tensors: the fused backward below
        args = step_args(ctx.spec)
        T, shape, dt, dev = h.shape[0], h.shape[1:], h.dtype, h.device
        leak, gain, thr, k = args.leak, args.gain, args.thr, ctx.tbptt
        c = lambda x: torch.tensor(x, dtype=dt, device=dev)  # noqa: E731  (0-dim: cheaper than a Python scalar)
        # p_t = dL/dI_t (= dL/dff_t), written straight into the gradient of ff. With dL/dv_t = (leak/gain)·p_{t+1}
        # and w_t = (1-ρ)·dL/da_t (the adaptation's gradient as it reaches the spike):
        #   GS_t    = dL/ds_t = g_s + p_{t+1} W + w_t + (leak/gain)·dv/ds·p_{t+1}
        #   p_t     = gain·g_h + leak·dv/dh·p_{t+1} + gain·D_t·GS_t       (D_t = ds_t/dh_t: surrogate · mask)
        #   w_{t-1} = ρ w_t − (1-ρ) β D_t GS_t
        # Row T of gI holds the returned state's gradient in the same form, p_T = (gain/leak)·dL/dv_{T-1}, so the
        # last step is one more step of the same recurrence (without the W product: no step T runs).
        gI = buffers.empty((T + 1, *shape), dt, dev)
        nxt = None if g_v is None else torch.mul(g_v.to(dt).expand(shape), gain / leak, out=gI[T])
        GS = torch.empty(shape, dtype=dt, device=dev)
        ga = None if g_a is None else torch.mul(g_a.to(dt).expand(shape), args.keep)  # w_{T-1}
        on_c = ctx.backend == "native"
        if on_c:
            nat = _NativeBackward(gI, GS, g_s, g_h, w, h, s, beta, args, k)
        g_s = None if g_s is None else g_s.to(dt)
        K = _block_steps(T, h[0].numel())
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            hb, sb = h[t0:t1], s[t0:t1]
            # Dg = gain · D (surrogate at u, times the mask), Dbn = -(1-ρ) β · D
            if args.adaptive:
                zb = u[t0:t1].clone()
            else:
                zb = hb - thr
                if args.normalize:
                    zb.div_(thr)
            Dg = ctx.surrogate.derivative_(zb, args.surrogate_scale)
            if mask is not None:
                Dg.mul_(mask[t0:t1])
            if on_c:  # the C step computes the rest per step
                nxt, ga = nat.block(t0, t1 - t0, Dg, nxt, ga)
                continue
            Dbn = Dg * (beta * ((args.rho - 1.0) / gain)) if args.adaptive else None
            # E = (leak/gain)(v_reset - h), F = leak (1 - s) (soft reset: constants); one pass each
            E = torch.addcmul(c(args.vr * leak / gain), hb, c(-leak / gain)) if args.hard and not args.detach else None
            F = torch.addcmul(c(leak), sb, c(-leak)) if args.hard else None
            Gh = None if g_h is None else (g_h[t0:t1] * gain if gain != 1.0 else g_h[t0:t1])
            if w is None and not args.adaptive and ga is None and not k:  # a neuron alone: one op per step
                nxt = elementwise_backward_steps(t0, t1 - t0, gI, g_s, nxt, Dg, E, F, Gh, args)
            else:
                nxt, ga = backward_steps(t0, t1 - t0, T - 1, gI, g_s, w, GS, nxt, ga, Dg, Dbn, E, F, Gh, args, k or 0)
        return _input_grads(ctx, gI[:T], ga, h, s, z0, w, on_c)


def _input_grads(ctx, gI: Tensor, ga: Tensor | None, h: Tensor, s: Tensor, z0, w, on_c: bool) -> tuple:
    """The gradients RecurrentFunction.backward returns, from p_t = dL/dI_t (gI) and the adaptation's
    carry ga = (1-ρ)·dL/da before step 0: dL/dW_rec = Σ_t p_tᵀ z_{t-1}, dL/dz0, dL/dv0, dL/da0."""
    args = step_args(ctx.spec)
    T, shape = h.shape[0], h.shape[1:]
    need = ctx.needs_input_grad
    g_w = g_z0 = None
    if w is not None and need[1]:
        H = shape[-1]
        if T == 1:
            g_w = torch.zeros_like(w)
        elif on_c and ctx.n_spikes < SPARSE_GRAD_W * s.numel():  # the sum over the spikes only
            g_w = native.grad_w_sparse(gI[1:].reshape(-1, H), s[:-1].reshape(-1, H))
        else:
            g_w = torch.mm(gI[1:].reshape(-1, H).t(), s[:-1].reshape(-1, H))
        if z0 is not None:
            g_w.addmm_(gI[0].reshape(-1, H).t(), z0.to(h.dtype).expand(shape).reshape(-1, H))
    if w is not None and z0 is not None and need[5]:
        g_z0 = torch.mm(gI[0].reshape(-1, shape[-1]), w).view(shape)
    g_v0 = gI[0] * (args.leak / args.gain) if need[2] else None
    g_a0 = None
    if args.alif and need[3]:
        g_a0 = ga.div_(args.keep) if ga is not None else torch.zeros(shape, dtype=h.dtype, device=h.device)
    return gI, g_w, g_v0, g_a0, None, g_z0, None, None, None, None, None, None, None


def _triton_backward(ctx, h, s, u, mask, z0, w, beta, g_s, g_h, g_v, g_a) -> tuple:
    """RecurrentFunction.backward on the persistent Triton kernel (:mod:`spikelight.dynamics.triton.recurrent`)."""
    from spikelight.dynamics.triton import recurrent as triton_recurrent  # only where triton is installed

    T, shape = h.shape[0], h.shape[1:]
    H = shape[-1]
    R = shape.numel() // H
    v3 = lambda x: None if x is None else x.reshape(T, R, H)  # noqa: E731
    gI, ga = triton_recurrent.recurrent_backward(
        v3(g_s), v3(g_h), None if g_v is None else g_v.expand(shape).reshape(R, H),
        None if g_a is None else g_a.expand(shape).reshape(R, H), w, h.view(T, R, H), s.reshape(T, R, H),
        v3(u), None if mask is None else mask.view(torch.int8).view(T, R, H),
        None if beta is None else torch.broadcast_to(beta, (H,)).to(h.dtype).contiguous(),
        step_args(ctx.spec), ctx.surrogate.kernel_form(), ctx.tbptt,
    )  # fmt: skip
    return _input_grads(ctx, gI.view(h.shape), ga.view(shape), h, s, z0, w, False)


class _NativeBackward:
    """The backward's per-step loop on the C library: torch's product p_{t+1} W, then one C call per step
    (``spikelight_backward_step``) for the step's element-wise work. State between blocks: p_{t+1}
    (``nxt``, a row of gI, or None) and w_t (``ga``, or None). gI has T + 1 rows (row T: p_T)."""

    def __init__(self, gI, GS, g_s, g_h, w, h, s, beta, args: StepArgs, tbptt) -> None:
        shape = h.shape[1:]
        self.lib = native.library()
        self.ga = torch.zeros(shape, dtype=h.dtype)
        self.g_h = None if g_h is None else g_h.to(h.dtype).contiguous()
        self.g_s = None if g_s is None else g_s.to(h.dtype).contiguous()  # added to the product in C
        # every tensor whose address the C code keeps is held here for as long as the arguments live
        self.beta = None if beta is None else torch.broadcast_to(beta, shape[-1:]).to(h.dtype).contiguous()
        row = None if (w is not None or beta is not None) else h[0].numel()  # as the forward: one row, nothing couples
        self.args = native.backward_step_args(gI, GS, self.ga, h, s, self.g_h, self.g_s, self.beta, args, row)
        self.ref = ctypes.byref(self.args)
        self.gI, self.GS, self.w, self.k = gI.unbind(0), GS, w, tbptt or 0
        self.last, self.adaptive = h.shape[0] - 1, args.adaptive

    def block(self, t0: int, n: int, Dg: Tensor, nxt: Tensor | None, ga: Tensor | None):
        """Steps t0 + n − 1 down to t0 (Dg: [≥ n, ...] from t0); returns (p_{t0} or None, w_{t0−1} or None)."""
        Dg = Dg.to(torch.float32).contiguous()  # (a user surrogate's derivative may come back in another dtype)
        self.args.Dg, self.args.t0 = Dg.data_ptr(), t0
        if ga is not None and ga is not self.ga:
            self.ga.copy_(ga)
        has_next, ga_live = nxt is not None, ga is not None
        gI, GS, w, k, step = self.gI, self.GS, self.w, self.k, self.lib.spikelight_backward_step
        product = True  # whether GS may hold something other than zeros
        for t in range(t0 + n - 1, t0 - 1, -1):
            if has_next and w is not None and t != self.last:
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
    backend: str = "fused",
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Run all T steps on ``backend`` (``fused`` | ``native`` | ``triton``, as :func:`spikelight.dynamics.dispatch.choose`
    picked). ff [T, B, ..., H] (the feed-forward current), W_rec [H, H] or None (a feed-forward layer).

    v0 / a0 / ref0 / z0: initial membrane, adaptation, refractory count, spikes ([B, ..., H];
    a0 and ref0 for ALIF only; z0 None = zeros). beta [H]: ALIF's per-neuron adaptation strength.
    record: a list to receive the per-step states (values only), or None.
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
    return RecurrentFunction.apply(ff.to(compute), w, v0, a0, ref0, z0, beta, spec, surrogate, tbptt, mm_dtype, record,
                                   backend)  # fmt: skip


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
