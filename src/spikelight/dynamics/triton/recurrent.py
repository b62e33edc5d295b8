"""Persistent Triton kernels for the recurrent layer (LSNN): all T steps in one launch (GPU).

The plain-PyTorch fused path on CUDA is ~20 small kernels per step, so a T=784
sequence is launch-bound. Here one program owns ``BLOCK_R`` rows (batch
elements; 4 or 8, chosen from the batch by :func:`launch`) and every neuron of
them, and loops over time inside the kernel with
the state (v, a, refractory count; in backward p_{t+1}'s carry and the
adaptation's gradient) in registers:

- forward, step t: the recurrent current ``z_{t-1} W_recᵀ`` as a ``tl.dot`` over
  tiles of the previous step's spikes (read back from the spike output the program
  wrote, after a barrier) and of W_recᵀ (L2-resident), then the element-wise
  IF / LIF / ALIF update of :mod:`spikelight.dynamics.fused.recurrent`;
- backward, step t (reverse): ``dL/ds_t = g_s + p_{t+1} W_rec`` the same way from
  the p_{t+1} just written, the surrogate evaluated in the kernel (the built-in
  surrogates, as :mod:`spikelight.dynamics.triton.neurons`), then the step's
  element-wise recurrence; dL/dW_rec = Σ_t p_tᵀ z_{t-1} is one cuBLAS product after.

fp32 throughout, ``tl.dot`` in IEEE fp32 (no TF32): values agree with the loop's
to float rounding (the sums run in another order), spikes are the same. Tested
on the CPU under ``TRITON_INTERPRET=1`` against the reference loop; on a GPU
it has not been run yet (no GPU was available when it was written).
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

from spikelight.dynamics.spec import StepArgs
from spikelight.dynamics.triton.neurons import fp32_reciprocal

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

__all__ = ["recurrent_forward", "recurrent_backward", "official_forward", "official_backward", "launch"]

#: rows (batch elements) per program: 4 up to 64 rows (up to 16 programs), else 8; smaller than 16, the per-thread
#: tiles fit the registers at H up to 512 without spills (see :func:`launch`; 16 where Triton's tl.dot needs it)
BLOCK_R = 8
BLOCK_K = 8  # reduction tile of the recurrent products (16 where Triton's tl.dot needs it)
NUM_WARPS = 8  # at most; fewer for tiles of fewer than 64 elements per warp


def _block_h(H: int) -> int:
    return max(16, triton.next_power_of_2(H))


@functools.cache
def _dot_minimum() -> tuple[int, int, int]:
    """The smallest (M, N, K) of an fp32 ``tl.dot`` on NVIDIA GPUs in the installed Triton: asked of its backend
    (Triton 3.8: (1, 1, 8)); 16 each where the backend does not say (older Triton)."""
    try:
        from triton.backends.compiler import GPUTarget
        from triton.backends.nvidia.compiler import min_dot_size

        return tuple(int(d) for d in min_dot_size(GPUTarget("cuda", 80, 32))(tl.float32, tl.float32))
    except Exception:  # noqa: BLE001 - an older Triton: its fixed minimum
        return 16, 16, 16


def launch(R: int, H: int) -> dict:
    """BLOCK_R, BLOCK_H, BLOCK_K, H_DIV and num_warps of one launch of the persistent kernels ([R, H] steps).

    ceil(R / BLOCK_R) programs each own BLOCK_R rows and all H neurons: BLOCK_R = 4 up to R = 64 (up to 16
    programs), else 8 (R = 256: 32 programs); 16 only where the installed Triton's tl.dot needs M >= 16. At 16
    rows and BLOCK_H = 512 the per-thread state (32 elements of each carried [BLOCK_R, BLOCK_H] tile) does not
    fit 255 registers and spills ~1 KB (docs/guides/speed.md, "Persistent kernels"). The per-element
    arithmetic does not depend on BLOCK_R, BLOCK_K or num_warps (the recurrent current is one sequential
    FMA chain over k), so none of them changes a value. H_DIV: H's power-of-two factor (up to 16), which the
    kernels tell the compiler so that rows of H = 220 are loaded as aligned vectors.
    ``SPIKELIGHT_TRITON_BLOCK_R`` / ``SPIKELIGHT_TRITON_WARPS`` override BLOCK_R / num_warps (GPU timing runs:
    experiments/benchmarks/gpu_check.py)."""
    m, _, k = _dot_minimum()
    br = int(os.environ.get("SPIKELIGHT_TRITON_BLOCK_R") or 0) or max(m, 4 if R <= 64 else BLOCK_R)
    bh = _block_h(H)
    nw = int(os.environ.get("SPIKELIGHT_TRITON_WARPS") or 0) or min(NUM_WARPS, max(1, br * bh // 64))
    return {"BLOCK_R": br, "BLOCK_H": bh, "BLOCK_K": max(k, BLOCK_K), "H_DIV": min(16, H & -H), "num_warps": nw}


if triton is not None:
    from spikelight.dynamics.triton.neurons import _backward_step, _charge, _fire, _reset, _surrogate_grad

    @triton.jit
    def _program_block(R, H, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr):
        # this program's rows (batch elements) and all H columns (neurons) of a [R, H] step, their masks,
        # the [BLOCK_R, BLOCK_H] offsets into a step and the elements per step N = R·H
        rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.arange(0, BLOCK_H)
        rmask, cmask = rows < R, cols < H
        m2 = rmask[:, None] & cmask[None, :]
        off = rows[:, None].to(tl.int64) * H + cols[None, :]
        return rows, cols, rmask, cmask, m2, off, tl.cast(R, tl.int64) * H

    @triton.jit
    def _rows_dot(src_ptr, base, rows, cols, rmask, cmask, H, mat_ptr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr,
                  BLOCK_K: tl.constexpr):  # fmt: skip
        # src[rows, :] @ mat[:, cols] for this program's rows: src a [R, H] step at ``base`` (spikes z_{t-1}, or
        # p_{t+1} in backward), mat [H, H] (W_recᵀ, or W_rec); K tiles, IEEE fp32 (no TF32)
        acc = tl.zeros([BLOCK_R, BLOCK_H], dtype=tl.float32)
        for k0 in range(0, H, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            kmask = ks < H
            a = tl.load(src_ptr + base + rows[:, None].to(tl.int64) * H + ks[None, :],
                        mask=rmask[:, None] & kmask[None, :], other=0.0)  # fmt: skip
            b = tl.load(mat_ptr + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
            acc = tl.dot(a, b, acc, input_precision="ieee")  # acc carried in: one FMA chain over k, any BLOCK_K
        return acc

    @triton.jit
    def _rec_fwd_kernel(
        ff_ptr, wt_ptr, sx_ptr, v_ptr, a_ptr, ref_ptr, beta_ptr, h_ptr, u_ptr, mask_ptr,
        T, R, H,
        tau, inv_tau, v_rest, thr, inv_thr, rho, keep, vr, soft, frefr,
        CHARGE: tl.constexpr, KIND: tl.constexpr, NORMALIZE: tl.constexpr, REFR: tl.constexpr,
        HARD: tl.constexpr, STRICT: tl.constexpr, RECUR: tl.constexpr, RECIP_DIV: tl.constexpr,
        REST_ZERO: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
        H_DIV: tl.constexpr,
    ):  # fmt: skip
        # sx_ptr: spikes [T + 1, R, H]; row 0 holds z0 (zeros if none), step t writes row t + 1
        H = H // H_DIV * H_DIV  # = H; tells the compiler H's power-of-two factor (rows aligned: vector loads)
        rows, cols, rmask, cmask, m2, off, N = _program_block(R, H, BLOCK_R, BLOCK_H)
        v = tl.load(v_ptr + off, mask=m2, other=0.0)
        if KIND > 0:
            a = tl.load(a_ptr + off, mask=m2, other=0.0)
        if REFR:
            rf = tl.load(ref_ptr + off, mask=m2, other=0.0)
        if KIND == 2:
            beta = tl.load(beta_ptr + cols, mask=cmask, other=0.0)[None, :]
        for t in range(T):
            base = tl.cast(t, tl.int64) * N
            x = tl.load(ff_ptr + base + off, mask=m2, other=0.0)
            if RECUR:  # + z_{t-1} W_recᵀ
                x = x + _rows_dot(sx_ptr, base, rows, cols, rmask, cmask, H, wt_ptr, BLOCK_R, BLOCK_H, BLOCK_K)
            hh = _charge(v, x, tau, inv_tau, v_rest, CHARGE, REST_ZERO, RECIP_DIV)
            if KIND == 2:  # the adaptive threshold: u = (h - (β a + v_th)) [/ v_th]
                ut = hh - (a * beta + thr)
                if NORMALIZE:
                    if RECIP_DIV:
                        ut = ut * inv_thr
                    else:
                        ut = ut / thr
                if STRICT:  # the eprop / lsnn_official conventions: (h - A)/v_th > 0
                    spike = ut > 0.0
                else:
                    spike = ut >= 0.0
                tl.store(u_ptr + base + off, ut, mask=m2)
            else:
                spike = _fire(hh, thr, inv_thr, NORMALIZE, STRICT, RECIP_DIV)
            if REFR:  # no spike while ref > 0
                ok = rf <= 0.0
                tl.store(mask_ptr + base + off, ok.to(tl.int8), mask=m2)
                spike = spike & ok
                rf = tl.where(spike, frefr, tl.maximum(rf - 1.0, 0.0))
            sp = spike.to(tl.float32)
            if KIND > 0:
                a = a * rho + sp * keep
            v = _reset(hh, spike, soft, vr, HARD)  # soft: h - v_th s (v_th/leak: eprop)
            tl.store(h_ptr + base + off, hh, mask=m2)
            tl.store(sx_ptr + base + N + off, sp, mask=m2)
            tl.debug_barrier()  # this step's spikes, written by every thread, are read by the next step's dot
        tl.store(v_ptr + off, v, mask=m2)
        if KIND > 0:
            tl.store(a_ptr + off, a, mask=m2)
        if REFR:
            tl.store(ref_ptr + off, rf, mask=m2)

    @triton.jit
    def _rec_bwd_kernel(
        gI_ptr, gs_ptr, gh_ptr, gv_ptr, ga_ptr, w_ptr, h_ptr, s_ptr, u_ptr, mask_ptr, beta_ptr,
        T, R, H, tbptt,
        leak, gain, thr, inv_thr, vr, soft, rho, scale, dbn, p1, p2,
        HAS_GS: tl.constexpr, HAS_GH: tl.constexpr, HAS_GV: tl.constexpr, HAS_GA: tl.constexpr,
        KIND: tl.constexpr, NORMALIZE: tl.constexpr, REFR: tl.constexpr, HARD: tl.constexpr,
        DETACH: tl.constexpr, RECUR: tl.constexpr, SURR: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, H_DIV: tl.constexpr,
    ):  # fmt: skip
        # reverse time; carries dv = dL/dv_t (the membrane after step t's reset) and ga = (1-ρ) dL/da_t
        H = H // H_DIV * H_DIV  # = H; tells the compiler H's power-of-two factor (rows aligned: vector loads)
        rows, cols, rmask, cmask, m2, off, N = _program_block(R, H, BLOCK_R, BLOCK_H)
        dv = tl.zeros([BLOCK_R, BLOCK_H], dtype=tl.float32)
        if HAS_GV:
            dv = tl.load(gv_ptr + off, mask=m2, other=0.0)
        ga = tl.zeros([BLOCK_R, BLOCK_H], dtype=tl.float32)
        if HAS_GA:
            ga = tl.load(ga_ptr + off, mask=m2, other=0.0) * (1.0 - rho)
        if KIND == 2:
            beta = tl.load(beta_ptr + cols, mask=cmask, other=0.0)[None, :]
        live = 0  # whether p_{t+1} reaches step t (not the last step, not cut by truncated BPTT)
        for i in range(T):
            t = T - 1 - i
            base = tl.cast(t, tl.int64) * N
            GS = ga
            if HAS_GS:
                GS += tl.load(gs_ptr + base + off, mask=m2, other=0.0)
            if RECUR:
                if live != 0:  # + p_{t+1} W_rec
                    GS += _rows_dot(gI_ptr, base + N, rows, cols, rmask, cmask, H, w_ptr, BLOCK_R, BLOCK_H, BLOCK_K)
            hh = tl.load(h_ptr + base + off, mask=m2, other=0.0)
            sp = tl.load(s_ptr + base + off, mask=m2, other=0.0)
            # D = gain · surrogate'(u) · mask (the surrogate's input scaled by 1/v_th under normalize)
            if KIND == 2:
                zz = tl.load(u_ptr + base + off, mask=m2, other=0.0)
            else:
                zz = hh - thr
                if NORMALIZE:
                    zz = zz * inv_thr
            D = _surrogate_grad(zz, SURR, p1, p2) * scale
            if REFR:
                D = D * tl.load(mask_ptr + base + off, mask=m2, other=0).to(tl.float32)
            gh = dv
            if HAS_GH:
                gh = tl.load(gh_ptr + base + off, mask=m2, other=0.0)
            pt, GS = _backward_step(GS, dv, D, hh, sp, gh, soft, vr, gain, HARD, DETACH, HAS_GH)
            tl.store(gI_ptr + base + off, pt, mask=m2)
            if KIND == 2:
                ga = ga * rho + (D * beta * dbn) * GS
            elif KIND == 1:
                ga = ga * rho
            dv = pt * (leak / gain)
            live = 1
            if tbptt > 0:
                if t > 0:
                    if t % tbptt == 0:  # the state before step t was detached
                        dv = dv * 0.0
                        ga = ga * 0.0
                        live = 0
            tl.debug_barrier()  # p_t, written by every thread, is read by the next (earlier) step's dot
        tl.store(ga_ptr + off, ga, mask=m2)


if triton is not None:

    @triton.jit
    def _off_fwd_kernel(
        ff_ptr, wt_ptr, sx_ptr, zr_ptr, v_ptr, a_ptr, ref_ptr, beta_ptr, h_ptr, u_ptr, A_ptr, mask_ptr,
        T, R, H,
        tau, inv_tau, thr, rho, keep, frefr,
        CHARGE: tl.constexpr, ADAPTIVE: tl.constexpr, REFR: tl.constexpr, RECUR: tl.constexpr,
        RECIP_DIV: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
        H_DIV: tl.constexpr,
    ):  # fmt: skip
        # the lsnn_official convention (spikelight.dynamics.fused.official): fire from v_{t-1} on (v - A)/A > 0,
        # then v_t = charge(v_{t-1}, I_t) - A_t z_{t-1}. sx_ptr: spikes [T + 1, R, H], row 0 = z0 (recurrence).
        H = H // H_DIV * H_DIV  # = H; tells the compiler H's power-of-two factor (rows aligned: vector loads)
        rows, cols, rmask, cmask, m2, off, N = _program_block(R, H, BLOCK_R, BLOCK_H)
        v = tl.load(v_ptr + off, mask=m2, other=0.0)
        a = tl.load(a_ptr + off, mask=m2, other=0.0)
        zr = tl.load(zr_ptr + off, mask=m2, other=0.0)
        if REFR:
            rf = tl.load(ref_ptr + off, mask=m2, other=0.0)
        if ADAPTIVE:
            beta = tl.load(beta_ptr + cols, mask=cmask, other=0.0)[None, :]
        for t in range(T):
            base = tl.cast(t, tl.int64) * N
            x = tl.load(ff_ptr + base + off, mask=m2, other=0.0)
            if RECUR:
                x = x + _rows_dot(sx_ptr, base, rows, cols, rmask, cmask, H, wt_ptr, BLOCK_R, BLOCK_H, BLOCK_K)
            if ADAPTIVE:
                A = a * beta + thr
            else:
                A = tl.zeros([BLOCK_R, BLOCK_H], dtype=tl.float32) + thr
            ut = tl.div_rn(v - A, A)  # IEEE division, as the reference's tensor division on CUDA
            spike = ut > 0.0
            if REFR:  # no spike while ref > 0
                ok = rf <= 0.0
                tl.store(mask_ptr + base + off, ok.to(tl.int8), mask=m2)
                spike = spike & ok
                rf = tl.where(spike, frefr, tl.maximum(rf - 1.0, 0.0))
            sp = spike.to(tl.float32)
            hh = _charge(v, x, tau, inv_tau, 0.0, CHARGE, True, RECIP_DIV) - A * zr
            a = a * rho + sp * keep
            v = hh
            zr = sp
            tl.store(h_ptr + base + off, hh, mask=m2)
            tl.store(u_ptr + base + off, ut, mask=m2)
            tl.store(A_ptr + base + off, A, mask=m2)
            tl.store(sx_ptr + base + N + off, sp, mask=m2)
            tl.debug_barrier()  # this step's spikes are read by the next step's dot
        tl.store(v_ptr + off, v, mask=m2)
        tl.store(a_ptr + off, a, mask=m2)
        if REFR:
            tl.store(ref_ptr + off, rf, mask=m2)

    @triton.jit
    def _off_bwd_kernel(
        gI_ptr, gs_ptr, gh_ptr, gv_ptr, ga_ptr, gz_ptr, w_ptr, s_ptr, u_ptr, A_ptr, mask_ptr, zr_ptr, beta_ptr,
        T, R, H, tbptt,
        leak, gain, rho, keep, p1, p2,
        HAS_GS: tl.constexpr, HAS_GH: tl.constexpr, HAS_GV: tl.constexpr, HAS_GA: tl.constexpr,
        ADAPTIVE: tl.constexpr, REFR: tl.constexpr, DETACH: tl.constexpr, RECUR: tl.constexpr, SURR: tl.constexpr,
        BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, H_DIV: tl.constexpr,
    ):  # fmt: skip
        # reverse time (OfficialALIFFunction.backward): carries V = dL/dv_t, al = dL/da_t, Z = dL/dz_t through the
        # next step's reset; writes gI = dL/dI_t, and at the end dL/dv0 (gv_ptr), dL/da0 (ga_ptr), dL/dzr0 (gz_ptr)
        H = H // H_DIV * H_DIV  # = H; tells the compiler H's power-of-two factor (rows aligned: vector loads)
        rows, cols, rmask, cmask, m2, off, N = _program_block(R, H, BLOCK_R, BLOCK_H)
        V = tl.zeros([BLOCK_R, BLOCK_H], dtype=tl.float32)
        if HAS_GV:
            V = tl.load(gv_ptr + off, mask=m2, other=0.0)
        al = tl.zeros([BLOCK_R, BLOCK_H], dtype=tl.float32)
        if HAS_GA:
            al = tl.load(ga_ptr + off, mask=m2, other=0.0)
        Z = tl.zeros([BLOCK_R, BLOCK_H], dtype=tl.float32)
        if ADAPTIVE:
            beta = tl.load(beta_ptr + cols, mask=cmask, other=0.0)[None, :]
        live = 0
        for i in range(T):
            t = T - 1 - i
            base = tl.cast(t, tl.int64) * N
            if HAS_GH:
                V += tl.load(gh_ptr + base + off, mask=m2, other=0.0)
            S = Z + keep * al
            if HAS_GS:
                S += tl.load(gs_ptr + base + off, mask=m2, other=0.0)
            if RECUR:
                if live != 0:  # + p_{t+1} W_rec
                    S += _rows_dot(gI_ptr, base + N, rows, cols, rmask, cmask, H, w_ptr, BLOCK_R, BLOCK_H, BLOCK_K)
            ut = tl.load(u_ptr + base + off, mask=m2, other=0.0)
            A = tl.load(A_ptr + base + off, mask=m2, other=1.0)
            D = _surrogate_grad(ut, SURR, p1, p2)
            if REFR:
                D = D * tl.load(mask_ptr + base + off, mask=m2, other=0).to(tl.float32)
            q = D * S
            if t > 0:
                zp = tl.load(s_ptr + base - N + off, mask=m2, other=0.0)
            else:
                zp = tl.load(zr_ptr + off, mask=m2, other=0.0)
            tl.store(gI_ptr + base + off, gain * V, mask=m2)
            dA = -V * zp - tl.div_rn(q * (ut + 1.0), A)
            if DETACH:
                Z = V * 0.0
            else:
                Z = -A * V
            V = leak * V + tl.div_rn(q, A)
            if ADAPTIVE:
                al = rho * al + beta * dA
            else:
                al = rho * al
            live = 1
            if tbptt > 0:
                if t > 0:
                    if t % tbptt == 0:  # the state before step t was detached
                        V = V * 0.0
                        al = al * 0.0
                        Z = Z * 0.0
                        live = 0
            tl.debug_barrier()  # gI[t], written by every thread, is read by the next (earlier) step's dot
        tl.store(gv_ptr + off, V, mask=m2)
        tl.store(ga_ptr + off, al, mask=m2)
        tl.store(gz_ptr + off, Z, mask=m2)


def official_forward(ff, w_rec, z0, zr0, state, beta, out, args: StepArgs) -> Tensor:
    """The lsnn_official convention's T steps in one launch. ff [T, R, H]; state = (v, a, ref) [R, H] fp32
    updated in place; z0 (recurrence; None = zeros) / zr0 (reset) [R, H]; out = (h, u, A, mask) [T, R, H]
    written (mask int8, None without a refractory period). Returns the spikes [T, R, H]."""
    (v, a, ref), (h, u, A, mask) = state, out
    T, R, H = ff.shape
    sx = torch.empty((T + 1, R, H), dtype=torch.float32, device=ff.device)
    sx[0].copy_(z0) if z0 is not None else sx[0].zero_()
    L = launch(R, H)
    grid = (triton.cdiv(R, L["BLOCK_R"]),)
    _off_fwd_kernel[grid](
        ff, h if w_rec is None else w_rec.t().contiguous(), sx, zr0, v, a, h if ref is None else ref,
        h if beta is None else beta, h, u, A, h if mask is None else mask,
        T, R, H,
        args.tau, fp32_reciprocal(args.tau), args.thr, args.rho, args.keep, float(args.refractory),
        CHARGE=args.charge, ADAPTIVE=args.adaptive, REFR=args.refractory > 0, RECUR=w_rec is not None,
        RECIP_DIV=ff.is_cuda, **L,
        enable_fp_fusion=False,  # the reference rounds every op
    )  # fmt: skip
    return sx[1:]


def official_backward(g_s, g_h, g_v, g_a, w_rec, s, u, A, mask, zr0, beta, args: StepArgs, sur, tbptt):
    """The reverse-time loop in one launch: (gI [T, R, H], dL/dv0, dL/da0, dL/dzr0 [R, H])."""
    T, R, H = s.shape
    gI = torch.empty_like(s)
    gv = torch.zeros((R, H), dtype=torch.float32, device=s.device)
    ga = torch.zeros((R, H), dtype=torch.float32, device=s.device)
    gz = torch.empty((R, H), dtype=torch.float32, device=s.device)
    if g_v is not None:
        gv.copy_(g_v.expand(R, H))
    if g_a is not None:
        ga.copy_(g_a.expand(R, H))
    c = lambda g: s if g is None else g.to(torch.float32).contiguous()  # noqa: E731
    sid, p1, p2 = sur
    L = launch(R, H)
    grid = (triton.cdiv(R, L["BLOCK_R"]),)
    _off_bwd_kernel[grid](
        gI, c(g_s), c(g_h), gv, ga, gz, s if w_rec is None else w_rec.contiguous(), s, u, A,
        s if mask is None else mask, zr0, s if beta is None else beta,
        T, R, H, tbptt or 0,
        args.leak, args.gain, args.rho, args.keep, p1, p2,
        HAS_GS=g_s is not None, HAS_GH=g_h is not None, HAS_GV=g_v is not None, HAS_GA=g_a is not None,
        ADAPTIVE=args.adaptive, REFR=args.refractory > 0, DETACH=args.detach, RECUR=w_rec is not None, SURR=sid,
        **L,
    )  # fmt: skip
    return gI, gv, ga, gz


def recurrent_forward(
    ff: Tensor,
    w_rec: Tensor | None,
    z0: Tensor | None,
    state: tuple[Tensor, Tensor | None, Tensor | None],
    beta: Tensor | None,
    out: tuple[Tensor, Tensor | None, Tensor | None],
    args: StepArgs,
) -> Tensor:
    """All T steps in one launch. ff [T, R, H]; out = (h, u, mask) [T, R, H] written (mask int8; u, mask None
    unless adaptive / refractory); state = (v, a, ref) [R, H] fp32, updated in place to the final state;
    z0 [R, H] or None; beta [H]. Returns the spikes [T, R, H] (fp32)."""
    (v, a, ref), (h, u, mask) = state, out
    kind = (2 if args.adaptive else 1) if args.alif else 0
    T, R, H = ff.shape
    sx = torch.empty((T + 1, R, H), dtype=torch.float32, device=ff.device)
    sx[0].copy_(z0) if z0 is not None else sx[0].zero_()
    dummy = h
    L = launch(R, H)
    grid = (triton.cdiv(R, L["BLOCK_R"]),)
    _rec_fwd_kernel[grid](
        ff, dummy if w_rec is None else w_rec.t().contiguous(), sx, v, dummy if a is None else a,
        dummy if ref is None else ref, dummy if beta is None else beta, h, dummy if u is None else u,
        dummy if mask is None else mask,
        T, R, H,
        args.tau, fp32_reciprocal(args.tau), args.v_rest, args.thr, fp32_reciprocal(args.thr), args.rho, args.keep,
        args.vr, args.soft, float(args.refractory),
        CHARGE=args.charge, KIND=kind, NORMALIZE=args.normalize, REFR=args.refractory > 0, HARD=args.hard,
        STRICT=args.strict, RECUR=w_rec is not None, RECIP_DIV=ff.is_cuda, REST_ZERO=args.v_rest_zero,
        **L,
        enable_fp_fusion=False,  # the reference rounds every op: no FMA, or a spike at the threshold could flip
    )  # fmt: skip
    return sx[1:]


def recurrent_backward(
    g_s: Tensor | None,
    g_h: Tensor | None,
    g_v: Tensor | None,
    g_a: Tensor | None,
    w_rec: Tensor | None,
    h: Tensor,
    s: Tensor,
    u: Tensor | None,
    mask: Tensor | None,
    beta: Tensor | None,
    args: StepArgs,
    sur: tuple[int, float, float],
    tbptt: int | None,
) -> tuple[Tensor, Tensor]:
    """The reverse-time recurrence in one launch: (gI = dL/dI [T, R, H], ga = (1-ρ)·dL/da_{-1} [R, H])."""
    kind = (2 if args.adaptive else 1) if args.alif else 0
    T, R, H = h.shape
    gI = torch.empty_like(h)
    ga = torch.empty((R, H), dtype=torch.float32, device=h.device)  # the kernel writes it: never g_a's own memory
    if g_a is not None:
        ga.copy_(g_a.expand(R, H))
    c = lambda g: h if g is None else g.to(torch.float32).contiguous()  # noqa: E731
    sid, p1, p2 = sur
    L = launch(R, H)
    grid = (triton.cdiv(R, L["BLOCK_R"]),)
    _rec_bwd_kernel[grid](
        gI, c(g_s), c(g_h), h if g_v is None else g_v.to(torch.float32).expand(R, H).contiguous(), ga,
        h if w_rec is None else w_rec.contiguous(), h, s, h if u is None else u, h if mask is None else mask,
        h if beta is None else beta,
        T, R, H, tbptt or 0,
        args.leak, args.gain, args.thr, fp32_reciprocal(args.thr), args.vr, args.soft, args.rho, args.surrogate_scale,
        (args.rho - 1.0) / args.gain, p1, p2,
        HAS_GS=g_s is not None, HAS_GH=g_h is not None, HAS_GV=g_v is not None, HAS_GA=g_a is not None,
        KIND=kind, NORMALIZE=args.normalize, REFR=args.refractory > 0, HARD=args.hard,
        DETACH=args.detach, RECUR=w_rec is not None, SURR=sid,
        **L,
    )  # fmt: skip
    return gI, ga
