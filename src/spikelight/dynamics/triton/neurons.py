"""Triton kernels for IF/LIF and snnTorch Leaky (element-wise over time), and the step helpers
every Triton kernel of spikelight shares (GPU).

One program per block of neurons (the flattened ``[B·N]`` of one step), looping
over T with the state in registers: the forward reads x and writes the spikes
(in x's dtype) and the pre-reset potential ``h`` (fp32, the only thing
saved); the backward reads ``h`` and the incoming gradients, recomputes the
spikes and evaluates the surrogate in the kernel. State and arithmetic are
fp32 whatever the I/O dtype (fp32 / bf16 / fp16).

The IF / LIF step is written once, in the ``@triton.jit`` helpers below (:func:`_charge`,
:func:`_fire`, :func:`_reset`, :func:`_backward_step`), and called by these kernels and by the
persistent recurrent kernels (:mod:`spikelight.dynamics.triton.recurrent`). The surrogate's
in-kernel derivative is :func:`_surrogate_grad`, one branch per ``kernel_id`` of the surrogate
classes (:meth:`spikelight.core.surrogate.Surrogate.kernel_form`).

Forward values equal the reference loop's bit for bit on the same device:
fp contraction is off (``enable_fp_fusion=False``), and division by tau is done the way
PyTorch does it there (CUDA multiplies by the fp32 reciprocal of a Python scalar; the CPU,
where these kernels run under ``TRITON_INTERPRET=1`` in the tests, divides).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.dynamics.spec import LeakySpec, LIFSpec, step_args

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

__all__ = ["triton_available", "TritonNeuronFunction", "fp32_reciprocal"]

BLOCK = 512
NUM_WARPS = 4


def triton_available(device: torch.device) -> bool:
    """Triton can run here: a CUDA device, or the CPU interpreter (``TRITON_INTERPRET=1``, tests)."""
    if triton is None:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def fp32_reciprocal(x: float) -> float:
    """What CUDA multiplies by for ``t / x`` with a Python scalar x (1/x rounded in fp32)."""
    return float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(x, dtype=torch.float32))


if triton is not None:

    @triton.jit
    def _surrogate_grad(z, SURR: tl.constexpr, p1, p2):
        # the derivative formulas of spikelight.core.surrogate, one per id of _SURROGATE_IDS
        if SURR == 0:  # sigmoid
            sig = tl.sigmoid(p1 * z)
            g = p1 * sig * (1.0 - sig)
        elif SURR == 1:  # atan
            w = 1.5707963267948966 * p1 * z
            g = (0.5 * p1) / (1.0 + w * w)
        elif SURR == 2:  # fast_sigmoid
            d = 1.0 + p1 * tl.abs(z)
            g = 1.0 / (d * d)
        elif SURR == 3:  # triangle (p2 = dampening) / piecewise_quadratic
            g = p2 * tl.maximum(1.0 - p1 * tl.abs(z), 0.0)
        elif SURR == 4:  # soft_sign
            d = 1.0 + p1 * tl.abs(z)
            g = p1 / (2.0 * d * d)
        elif SURR == 5:  # leaky_k_relu (p1 = leak, p2 = k)
            g = tl.where(z >= 0.0, p2, p1)
        elif SURR == 6:  # rectangle
            g = tl.where(tl.abs(z) < 0.5 / p1, p1, 0.0)
        else:  # spike_operator
            g = tl.where(z > 0.0, p1, 0.0)
        return g

    @triton.jit
    def _block(NE, BLOCK: tl.constexpr):
        # this program's neurons of the flattened [NE] step, and which of them exist
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        return offs, offs < NE

    @triton.jit
    def _charge(v, x, tau, inv_tau, v_rest, CHARGE: tl.constexpr, REST_ZERO: tl.constexpr, RECIP_DIV: tl.constexpr):
        # h = charge(x, v): the reference's op order; CUDA divides by a Python scalar through its fp32 reciprocal
        if CHARGE == 0:  # IF: v + x
            h = v + x
        else:
            if REST_ZERO:
                vd = v
            else:
                vd = v - v_rest
            if CHARGE == 1:  # v + (x - (v - v_rest)) / tau
                d = x - vd
                if RECIP_DIV:
                    h = v + d * inv_tau
                else:
                    h = v + d / tau
            else:  # v - (v - v_rest) / tau + x
                if RECIP_DIV:
                    q = vd * inv_tau
                else:
                    q = vd / tau
                h = (v - q) + x
        return h

    @triton.jit
    def _fire(h, thr, inv_thr, NORMALIZE: tl.constexpr, STRICT: tl.constexpr, RECIP_DIV: tl.constexpr):
        # IF / LIF spike: h >= v_th (h > v_th if STRICT; (h - v_th)/v_th >= 0 (> 0 if STRICT) if NORMALIZE)
        if NORMALIZE:
            zz = h - thr
            if RECIP_DIV:
                zz = zz * inv_thr
            else:
                zz = zz / thr
            if STRICT:
                spike = zz > 0.0
            else:
                spike = zz >= 0.0
        elif STRICT:
            spike = h > thr
        else:
            spike = h >= thr
        return spike

    @triton.jit
    def _reset(h, spike, thr, vr, HARD: tl.constexpr):
        # hard: v_reset where it spiked; soft: h - thr where it spiked (thr: what a soft reset subtracts)
        if HARD:
            v = tl.where(spike, vr, h)
        else:
            v = tl.where(spike, h - thr, h)
        return v

    @triton.jit
    def _backward_step(GS, dv, D, hh, sp, gh, thr, vr, gain, HARD: tl.constexpr, DETACH: tl.constexpr,
                       HAS_GH: tl.constexpr):  # fmt: skip
        # one reverse step of IF / LIF / ALIF: GS = dL/ds_t from outside the reset (later layers, the recurrent
        # product, the adaptation), dv = dL/dv_t, D = gain·surrogate'·mask; returns (p_t = dL/dI_t, dL/ds_t)
        if not DETACH:  # the reset's dependence on the spike
            if HARD:
                GS += (vr - hh) * dv
            else:
                GS -= thr * dv
        if HARD:
            pt = (gain * (1.0 - sp)) * dv + D * GS
        else:
            pt = gain * dv + D * GS
        if HAS_GH:
            pt += gain * gh
        return pt, GS

    @triton.jit
    def _lif_fwd_kernel(
        x_ptr, v0_ptr, s_ptr, h_ptr, vT_ptr,
        T, NE, stride_xt,
        tau, inv_tau, thr, v_reset,
        CHARGE: tl.constexpr, HARD: tl.constexpr, STRICT: tl.constexpr,
        RECIP_DIV: tl.constexpr, REST_ZERO: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs, mask = _block(NE, BLOCK)
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for t in range(T):
            x = tl.load(x_ptr + tl.cast(t, tl.int64) * stride_xt + offs, mask=mask, other=0.0).to(tl.float32)
            h = _charge(v, x, tau, inv_tau, v_reset, CHARGE, REST_ZERO, RECIP_DIV)
            spike = _fire(h, thr, thr, False, STRICT, RECIP_DIV)
            v = _reset(h, spike, thr, v_reset, HARD)
            row = tl.cast(t, tl.int64) * NE
            tl.store(h_ptr + row + offs, h, mask=mask)
            tl.store(s_ptr + row + offs, spike.to(tl.float32).to(s_ptr.dtype.element_ty), mask=mask)
        tl.store(vT_ptr + offs, v, mask=mask)

    @triton.jit
    def _lif_bwd_kernel(
        gs_ptr, gh_ptr, gvT_ptr, h_ptr, gx_ptr, gv0_ptr,
        T, NE,
        leak, gain, thr, v_reset, p1, p2,
        HAS_GS: tl.constexpr, HAS_GH: tl.constexpr, HAS_GV: tl.constexpr,
        HARD: tl.constexpr, DETACH: tl.constexpr, STRICT: tl.constexpr, SURR: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs, mask = _block(NE, BLOCK)
        dv = tl.zeros([BLOCK], dtype=tl.float32)  # dL/dv_t
        if HAS_GV:
            dv = tl.load(gvT_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for i in range(T):
            row = tl.cast(T - 1 - i, tl.int64) * NE
            h = tl.load(h_ptr + row + offs, mask=mask, other=0.0)
            sp = _fire(h, thr, thr, False, STRICT, False).to(tl.float32)
            D = _surrogate_grad(h - thr, SURR, p1, p2) * gain
            GS = tl.zeros([BLOCK], dtype=tl.float32)
            if HAS_GS:
                GS = tl.load(gs_ptr + row + offs, mask=mask, other=0.0).to(tl.float32)
            gh = tl.zeros([BLOCK], dtype=tl.float32)
            if HAS_GH:
                gh = tl.load(gh_ptr + row + offs, mask=mask, other=0.0).to(tl.float32)
            pt, GS = _backward_step(GS, dv, D, h, sp, gh, thr, v_reset, gain, HARD, DETACH, HAS_GH)
            tl.store(gx_ptr + row + offs, pt.to(gx_ptr.dtype.element_ty), mask=mask)
            dv = pt * (leak / gain)
        tl.store(gv0_ptr + offs, dv, mask=mask)

    @triton.jit
    def _leaky_fwd_kernel(
        x_ptr, v0_ptr, s_ptr, h_ptr, vT_ptr,
        T, NE, stride_xt,
        beta, thr,
        RESET_ZERO: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs, mask = _block(NE, BLOCK)
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        prev = (v > thr).to(tl.float32)
        for t in range(T):
            x = tl.load(x_ptr + tl.cast(t, tl.int64) * stride_xt + offs, mask=mask, other=0.0).to(tl.float32)
            if RESET_ZERO:  # beta·(1 - S[t-1])·U[t-1] + X[t]
                h = (beta * (1.0 - prev)) * v + x
            else:  # beta·U[t-1] + X[t] - thr·S[t-1]
                h = (beta * v + x) - thr * prev
            spike = h > thr
            row = tl.cast(t, tl.int64) * NE
            tl.store(h_ptr + row + offs, h, mask=mask)
            tl.store(s_ptr + row + offs, spike.to(tl.float32).to(s_ptr.dtype.element_ty), mask=mask)
            v = h
            prev = spike.to(tl.float32)
        tl.store(vT_ptr + offs, v, mask=mask)

    @triton.jit
    def _leaky_bwd_kernel(
        gs_ptr, gh_ptr, gvT_ptr, h_ptr, v0_ptr, gx_ptr, gv0_ptr,
        T, NE,
        beta, thr, p1, p2,
        HAS_GS: tl.constexpr, HAS_GH: tl.constexpr, HAS_GV: tl.constexpr,
        RESET_ZERO: tl.constexpr, SURR: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs, mask = _block(NE, BLOCK)
        carry = tl.zeros([BLOCK], dtype=tl.float32)  # dL/dU_t from later steps
        if HAS_GV:
            carry = tl.load(gvT_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if RESET_ZERO:
            prev0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32) > thr
        for i in range(T):
            t = T - 1 - i
            row = tl.cast(t, tl.int64) * NE
            g = carry
            if HAS_GS:
                h = tl.load(h_ptr + row + offs, mask=mask, other=0.0)
                g += tl.load(gs_ptr + row + offs, mask=mask, other=0.0).to(tl.float32) * _surrogate_grad(
                    h - thr, SURR, p1, p2
                )
            if HAS_GH:
                g += tl.load(gh_ptr + row + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(gx_ptr + row + offs, g.to(gx_ptr.dtype.element_ty), mask=mask)
            if RESET_ZERO:  # dU[t]/dU[t-1] = beta·(1 - S[t-1])
                prow = tl.cast(tl.maximum(t - 1, 0), tl.int64) * NE
                hp = tl.load(h_ptr + prow + offs, mask=mask, other=0.0)
                fired = tl.where(t > 0, hp > thr, prev0)
                carry = g * tl.where(fired, 0.0, beta)
            else:
                carry = g * beta
        tl.store(gv0_ptr + offs, carry, mask=mask)


def _flat_input(x: Tensor) -> tuple[Tensor, int]:
    """x [T, ...] as [T, NE] with each step contiguous (a stride-0 time axis stays a view)."""
    T = x.shape[0]
    if T == 0 or not x[0].is_contiguous():
        x = x.contiguous()
    flat = x.reshape(T, -1) if x.stride(0) != 0 else x.as_strided((T, x[0].numel()), (0, 1))
    return flat, flat.stride(0)


def _grid(ne: int) -> tuple[int]:
    return (triton.cdiv(ne, BLOCK),)


def _grad_or(g: Tensor | None, like: Tensor) -> tuple[Tensor, bool]:
    return (like, False) if g is None else (g.contiguous(), True)


def _elementwise(kernel, x: Tensor, v0: Tensor, **consts) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Launch an element-wise forward kernel over x [T, ...]: (spikes [T, NE] in x's dtype, h [T, NE] fp32,
    v_T [NE] fp32, v0 as the fp32 [NE] the kernel read)."""
    T, shape = x.shape[0], x.shape[1:]
    xf, stride_xt = _flat_input(x)
    ne = xf.shape[1]
    s = torch.empty((T, ne), dtype=x.dtype, device=x.device)
    h = torch.empty((T, ne), dtype=torch.float32, device=x.device)
    vT = torch.empty(ne, dtype=torch.float32, device=x.device)
    v0f = v0.to(torch.float32).expand(shape).contiguous().view(-1)
    kernel[_grid(ne)](xf, v0f, s, h, vT, T, ne, stride_xt, **consts, BLOCK=BLOCK, num_warps=NUM_WARPS,
                      enable_fp_fusion=False)  # fmt: skip
    return s, h, vT, v0f


def _elementwise_grads(kernel, ctx, g_s, g_h, g_v, *saved, **consts) -> tuple[Tensor, Tensor]:
    """Launch an element-wise backward kernel: (dL/dx in x's shape and dtype, dL/dv0)."""
    h = saved[0]
    T, ne = h.shape
    gx = torch.empty((T, ne), dtype=ctx.x_dtype, device=h.device)
    gv0 = torch.empty(ne, dtype=torch.float32, device=h.device)
    (gs, has_gs), (gh, has_gh), (gv, has_gv) = _grad_or(g_s, h), _grad_or(g_h, h), _grad_or(g_v, h)
    sid, p1, p2 = ctx.sur
    kernel[_grid(ne)](gs, gh, gv, *saved, gx, gv0, T, ne, **consts, p1=p1, p2=p2, HAS_GS=has_gs, HAS_GH=has_gh,
                      HAS_GV=has_gv, SURR=sid, BLOCK=BLOCK, num_warps=NUM_WARPS)  # fmt: skip
    return gx.view(ctx.shape), gv0.view(ctx.shape[1:])


def _launch(spec: LIFSpec | LeakySpec, on_cuda: bool) -> tuple:
    """(forward kernel, its constants, backward kernel, its constants, whether v0 is saved) of a neuron kind."""
    if isinstance(spec, LeakySpec):
        consts = dict(beta=spec.beta, thr=spec.v_threshold, RESET_ZERO=spec.reset_zero)
        return _leaky_fwd_kernel, consts, _leaky_bwd_kernel, consts, True
    args = step_args(spec)
    fwd = dict(tau=args.tau, inv_tau=fp32_reciprocal(args.tau), thr=args.thr, v_reset=args.vr, CHARGE=args.charge,
               HARD=args.hard, STRICT=args.strict, RECIP_DIV=on_cuda, REST_ZERO=args.v_rest_zero)  # fmt: skip
    bwd = dict(leak=args.leak, gain=args.gain, thr=args.thr, v_reset=args.vr, HARD=args.hard, DETACH=args.detach,
               STRICT=args.strict)  # fmt: skip
    return _lif_fwd_kernel, fwd, _lif_bwd_kernel, bwd, False


class TritonNeuronFunction(torch.autograd.Function):
    """IF / LIF (:class:`LIFSpec`) or snnTorch Leaky (:class:`LeakySpec`) on Triton:
    ``(x [T, ...] fp32/bf16/fp16, v0) → (spikes in x's dtype, h fp32, v_T fp32)``."""

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, spec: LIFSpec | LeakySpec, sur: tuple[int, float, float]):  # type: ignore[override]
        fwd, fwd_consts, _, _, save_v0 = _launch(spec, x.is_cuda)
        s, h, vT, v0f = _elementwise(fwd, x, v0, **fwd_consts)
        ctx.save_for_backward(*((h, v0f) if save_v0 else (h,)))
        ctx.spec, ctx.sur, ctx.x_dtype, ctx.shape = spec, sur, x.dtype, x.shape
        ctx.set_materialize_grads(False)
        return s.view(x.shape), h.view(x.shape), vT.view(x.shape[1:])

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s: Tensor | None, g_h: Tensor | None, g_v: Tensor | None):  # type: ignore[override]
        _, _, bwd, bwd_consts, _ = _launch(ctx.spec, False)
        gx, gv0 = _elementwise_grads(bwd, ctx, g_s, g_h, g_v, *ctx.saved_tensors, **bwd_consts)
        return gx, gv0, None, None
