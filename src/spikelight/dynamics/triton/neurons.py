"""Triton kernels for IF/LIF and snnTorch Leaky: forward and backward (GPU).

One program per block of neurons (the flattened ``[B·N]`` of one step), looping
over T with the state in registers: the forward reads x and writes the spikes
(in x's dtype) and the pre-reset potential ``h`` (fp32, the only thing
saved); the backward reads ``h`` and the incoming gradients, recomputes the
spikes and evaluates the surrogate in the kernel. State and arithmetic are
fp32 whatever the I/O dtype (fp32 / bf16 / fp16).

Forward values equal the reference loop's bit for bit on the same device:
fp contraction is off, and division by tau is done the way PyTorch does it
there (CUDA multiplies by the fp32 reciprocal of a Python scalar; the CPU,
where these kernels run under ``TRITON_INTERPRET=1`` in the tests, divides).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.surrogate import (
    ATan,
    FastSigmoid,
    LeakyKReLU,
    PiecewiseQuadratic,
    Rectangle,
    Sigmoid,
    SoftSign,
    SpikeOperator,
    Surrogate,
    Triangle,
)
from spikelight.dynamics.spec import LeakySpec, LIFSpec

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

__all__ = ["triton_available", "triton_surrogate", "TritonLIFFunction", "TritonLeakyFunction", "DTYPES"]

#: I/O dtypes the kernels take (state is fp32 inside)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCK = 512
NUM_WARPS = 4

_SURROGATE_IDS = {
    Sigmoid: 0,
    ATan: 1,
    FastSigmoid: 2,
    Triangle: 3,
    PiecewiseQuadratic: 3,
    SoftSign: 4,
    LeakyKReLU: 5,
    Rectangle: 6,
    SpikeOperator: 7,
}


def triton_surrogate(surrogate: Surrogate) -> tuple[int, float, float] | None:
    """``(id, p1, p2)`` of a surrogate the kernels evaluate in-kernel, else None.

    Exact type match: a subclass may have changed ``derivative``.
    """
    sid = _SURROGATE_IDS.get(type(surrogate))
    if sid is None:
        return None
    if isinstance(surrogate, Triangle):
        return sid, surrogate.alpha, surrogate.dampening
    if isinstance(surrogate, LeakyKReLU):
        return sid, surrogate.leak, surrogate.k
    return sid, surrogate.alpha, 0.0


def triton_available(device: torch.device) -> bool:
    """Triton can run here: a CUDA device, or the CPU interpreter (``TRITON_INTERPRET=1``, tests)."""
    if triton is None:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


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
    def _lif_fwd_kernel(
        x_ptr, v0_ptr, s_ptr, h_ptr, vT_ptr,
        T, NE, stride_xt,
        tau, inv_tau, thr, v_reset,
        IS_IF: tl.constexpr, DECAY_INPUT: tl.constexpr, HARD: tl.constexpr, STRICT: tl.constexpr,
        RECIP_DIV: tl.constexpr, REST_ZERO: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NE
        v = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for t in range(T):
            x = tl.load(x_ptr + tl.cast(t, tl.int64) * stride_xt + offs, mask=mask, other=0.0).to(tl.float32)
            if IS_IF:
                h = v + x
            else:
                if REST_ZERO:
                    vd = v
                else:
                    vd = v - v_reset
                if DECAY_INPUT:  # v + (x - (v - v_rest)) / tau
                    d = x - vd
                    if RECIP_DIV:
                        q = d * inv_tau
                    else:
                        q = d / tau
                    h = v + q
                else:  # v - (v - v_rest) / tau + x
                    if RECIP_DIV:
                        q = vd * inv_tau
                    else:
                        q = vd / tau
                    h = (v - q) + x
            if STRICT:
                spike = h > thr
            else:
                spike = h >= thr
            if HARD:
                v = tl.where(spike, v_reset, h)
            else:
                v = tl.where(spike, h - thr, h)
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
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NE
        carry = tl.zeros([BLOCK], dtype=tl.float32)  # dL/dv_t
        if HAS_GV:
            carry = tl.load(gvT_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        for i in range(T):
            row = tl.cast(T - 1 - i, tl.int64) * NE
            h = tl.load(h_ptr + row + offs, mask=mask, other=0.0)
            z = h - thr
            sg = _surrogate_grad(z, SURR, p1, p2)
            if HARD:  # dv/dh = (1 - s) + (v_reset - h)·sg
                if STRICT:
                    e = tl.where(z > 0.0, 0.0, 1.0)
                else:
                    e = tl.where(z >= 0.0, 0.0, 1.0)
                if not DETACH:
                    e = e + (v_reset - h) * sg
            else:  # dv/dh = 1 - thr·sg
                if DETACH:
                    e = 1.0
                else:
                    e = 1.0 - thr * sg
            g = carry * e
            if HAS_GS:
                g += tl.load(gs_ptr + row + offs, mask=mask, other=0.0).to(tl.float32) * sg
            if HAS_GH:
                g += tl.load(gh_ptr + row + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(gx_ptr + row + offs, (g * gain).to(gx_ptr.dtype.element_ty), mask=mask)
            carry = g * leak
        tl.store(gv0_ptr + offs, carry, mask=mask)

    @triton.jit
    def _leaky_fwd_kernel(
        x_ptr, v0_ptr, s_ptr, h_ptr, vT_ptr,
        T, NE, stride_xt,
        beta, thr,
        RESET_ZERO: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NE
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
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < NE
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


def _fp32_state(v0: Tensor, shape: torch.Size) -> Tensor:
    return v0.to(torch.float32).expand(shape).contiguous().view(-1)


def _grad_or(g: Tensor | None, like: Tensor) -> tuple[Tensor, bool]:
    return (like, False) if g is None else (g.contiguous(), True)


def _fp32_reciprocal(tau: float) -> float:
    # what CUDA multiplies by for `t / tau` (1/tau rounded in fp32)
    return float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(tau, dtype=torch.float32))


class TritonLIFFunction(torch.autograd.Function):
    """IF / LIF on Triton: ``(x [T, ...] fp32/bf16/fp16, v0) → (spikes in x's dtype, h fp32, v_T fp32)``."""

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, spec: LIFSpec, sur: tuple[int, float, float]):  # type: ignore[override]
        T, shape = x.shape[0], x.shape[1:]
        xf, stride_xt = _flat_input(x)
        ne = xf.shape[1]
        s = torch.empty((T, ne), dtype=x.dtype, device=x.device)
        h = torch.empty((T, ne), dtype=torch.float32, device=x.device)
        vT = torch.empty(ne, dtype=torch.float32, device=x.device)
        tau = 2.0 if spec.tau is None else spec.tau
        v_rest = 0.0 if spec.v_reset is None else spec.v_reset
        _lif_fwd_kernel[_grid(ne)](
            xf, _fp32_state(v0, shape), s, h, vT, T, ne, stride_xt,
            tau, _fp32_reciprocal(tau), spec.v_threshold, v_rest,
            IS_IF=spec.tau is None, DECAY_INPUT=spec.decay_input, HARD=spec.v_reset is not None,
            STRICT=spec.strict, RECIP_DIV=x.is_cuda, REST_ZERO=v_rest == 0.0, BLOCK=BLOCK,
            num_warps=NUM_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
        ctx.save_for_backward(h)
        ctx.spec, ctx.sur, ctx.x_dtype, ctx.shape = spec, sur, x.dtype, x.shape
        ctx.set_materialize_grads(False)
        return s.view(x.shape), h.view(x.shape), vT.view(shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s: Tensor | None, g_h: Tensor | None, g_v: Tensor | None):  # type: ignore[override]
        (h,) = ctx.saved_tensors
        spec: LIFSpec = ctx.spec
        T, ne = h.shape
        gx = torch.empty((T, ne), dtype=ctx.x_dtype, device=h.device)
        gv0 = torch.empty(ne, dtype=torch.float32, device=h.device)
        gs, has_gs = _grad_or(g_s, h)
        gh, has_gh = _grad_or(g_h, h)
        gv, has_gv = _grad_or(g_v, h)
        sid, p1, p2 = ctx.sur
        _lif_bwd_kernel[_grid(ne)](
            gs, gh, gv, h, gx, gv0, T, ne,
            spec.leak, spec.input_gain, spec.v_threshold, 0.0 if spec.v_reset is None else spec.v_reset, p1, p2,
            HAS_GS=has_gs, HAS_GH=has_gh, HAS_GV=has_gv, HARD=spec.v_reset is not None,
            DETACH=spec.detach_reset, STRICT=spec.strict, SURR=sid, BLOCK=BLOCK, num_warps=NUM_WARPS,
        )  # fmt: skip
        return gx.view(ctx.shape), gv0.view(ctx.shape[1:]), None, None


class TritonLeakyFunction(torch.autograd.Function):
    """snnTorch Leaky on Triton: ``(x, v0) → (spikes in x's dtype, U fp32, U_T fp32)``."""

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, spec: LeakySpec, sur: tuple[int, float, float]):  # type: ignore[override]
        T, shape = x.shape[0], x.shape[1:]
        xf, stride_xt = _flat_input(x)
        ne = xf.shape[1]
        s = torch.empty((T, ne), dtype=x.dtype, device=x.device)
        h = torch.empty((T, ne), dtype=torch.float32, device=x.device)
        vT = torch.empty(ne, dtype=torch.float32, device=x.device)
        v0f = _fp32_state(v0, shape)
        _leaky_fwd_kernel[_grid(ne)](
            xf, v0f, s, h, vT, T, ne, stride_xt, spec.beta, spec.v_threshold,
            RESET_ZERO=spec.reset_zero, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False,
        )  # fmt: skip
        ctx.save_for_backward(h, v0f)
        ctx.spec, ctx.sur, ctx.x_dtype, ctx.shape = spec, sur, x.dtype, x.shape
        ctx.set_materialize_grads(False)
        return s.view(x.shape), h.view(x.shape), vT.view(shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s: Tensor | None, g_h: Tensor | None, g_v: Tensor | None):  # type: ignore[override]
        h, v0f = ctx.saved_tensors
        spec: LeakySpec = ctx.spec
        T, ne = h.shape
        gx = torch.empty((T, ne), dtype=ctx.x_dtype, device=h.device)
        gv0 = torch.empty(ne, dtype=torch.float32, device=h.device)
        gs, has_gs = _grad_or(g_s, h)
        gh, has_gh = _grad_or(g_h, h)
        gv, has_gv = _grad_or(g_v, h)
        sid, p1, p2 = ctx.sur
        _leaky_bwd_kernel[_grid(ne)](
            gs, gh, gv, h, v0f, gx, gv0, T, ne, spec.beta, spec.v_threshold, p1, p2,
            HAS_GS=has_gs, HAS_GH=has_gh, HAS_GV=has_gv, RESET_ZERO=spec.reset_zero, SURR=sid,
            BLOCK=BLOCK, num_warps=NUM_WARPS,
        )  # fmt: skip
        return gx.view(ctx.shape), gv0.view(ctx.shape[1:]), None, None
