"""Fused dual-exponential neuron (``neuron=dual_exp`` trained with the surrogate, BPTT), plain PyTorch.

One ``torch.autograd.Function`` for T steps of :class:`~spikelight.neurons.DualExpNode`
(equations in :class:`~spikelight.dynamics.spec.DualExpSpec`). The forward runs
without autograd on preallocated buffers, op for op the reference step's rounding
(``(m + x)·(1 − θ_m)``, ``(m − s)·c``, traces times ``1 − spike``), so spikes, u
and the final traces are bit-identical to the loop. The backward is the
reverse-time recurrence below (k_t = 1 − o_t, D_t = surrogate'(u_t − ϑ),
c = θ_s/(θ_s − θ_m), α = 1 − θ), with dm, ds, dg the gradients of the traces
after step t's reset:

    dL/do_t = g_o + [−(dm·M_t + ds·S_t + dg·G_t)]     (the reset's term, unless detach_reset)
    du_t    = g_u + D_t · dL/do_t
    dM_t    = dm·k_t + c·du_t,  dS_t = ds·k_t − c·du_t,  dG_t = dg·k_t
    dx_t    = α_m dM_t + α_s dS_t + α_g dG_t,  (dm, ds, dg) ← (α_m dM_t, α_s dS_t, α_g dG_t)

M_t, S_t, G_t are the traces before the reset. Saved for backward: the input x
and the outputs (spikes, u); the pre-reset traces are recomputed from x (one
forward pass, the forward's own ops) only when the reset's term needs them, the
g trace only when the final g has a gradient (nothing else reads g).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.surrogate import Surrogate
from spikelight.dynamics import buffers
from spikelight.dynamics.fused.leaky import block_steps
from spikelight.dynamics.spec import DualExpSpec

__all__ = ["DualExpFunction", "dual_exp_multi_step"]


def dual_exp_step_(
    traces: list[Tensor], x: Tensor, alphas: tuple[float, ...], scale: float, thr: float, strict: bool,
    u: Tensor, spike: Tensor, keep: Tensor, pre: list[Tensor | None] | None = None, fired: Tensor | None = None,
) -> None:
    """One step of the dual-exponential neuron in place, op for op the reference's rounding
    (:func:`spikelight.dynamics.reference.dual_exp_update`, then fire and reset):

        trace = (trace + x)·(1 − θ)  for (m, s[, g]);  u = (m − s)·scale;  spike = Θ(u − ϑ);  trace ·= 1 − spike

    traces: the working state (updated); u, spike, keep: outputs of this step (keep = 1 − spike);
    pre: where to copy each trace before the reset (None entries: not needed); fired: spikes to
    replay instead of firing (the backward's recomputation). Shared by the fused Function and the
    event-driven forward (:func:`spikelight.layers.event_driven.functions.event_forward`).
    """
    for j, (tr, a) in enumerate(zip(traces, alphas)):
        tr.add_(x).mul_(a)
        if pre is not None and pre[j] is not None:
            pre[j].copy_(tr)
    torch.sub(traces[0], traces[1], out=u).mul_(scale)
    if fired is not None:
        spike.copy_(fired)
    elif strict:
        torch.gt(u, thr, out=spike)
    else:
        torch.ge(u, thr, out=spike)
    torch.sub(1.0, spike, out=keep)
    for tr in traces:  # trace·(1 − spike): exact for spikes in {0, 1}
        tr.mul_(keep)


def _traces(x: Tensor, state: list[Tensor], spikes: Tensor, spec: DualExpSpec, out: tuple) -> None:
    """The pre-reset traces M, S (and G if ``state`` has g) of every step into ``out`` ([T, ...] each),
    replaying the forward's steps with its spikes."""
    alphas = (1.0 - spec.theta_m, 1.0 - spec.theta_s, 1.0 - spec.theta_g)[: len(state)]
    traces = [t0.clone(memory_format=torch.contiguous_format) for t0 in state]
    u, spike, keep = (torch.empty_like(traces[0]) for _ in range(3))
    for t in range(x.shape[0]):
        dual_exp_step_(traces, x[t], alphas, spec.scale, spec.v_threshold, spec.strict, u, spike, keep,
                       pre=[o[t] for o in out], fired=spikes[t])  # fmt: skip


class DualExpFunction(torch.autograd.Function):
    """``(x [T, ...], m0, s0, g0 [...]) → (spikes, u [T, ...], m_T, s_T, g_T)``, compute dtype throughout."""

    @staticmethod
    def forward(ctx, x: Tensor, m0: Tensor, s0: Tensor, g0: Tensor, spec: DualExpSpec, surrogate: Surrogate,
                record: list | None):  # type: ignore[override]  # fmt: skip
        T, shape = x.shape[0], x.shape[1:]
        u, spk = buffers.empty(x.shape, x.dtype, x.device), buffers.empty(x.shape, x.dtype, x.device)
        traces = [t0.to(dtype=x.dtype, copy=True).expand(shape).contiguous() for t0 in (m0, s0, g0)]
        alphas = (1.0 - spec.theta_m, 1.0 - spec.theta_s, 1.0 - spec.theta_g)
        rec = None if record is None else [torch.empty_like(x) for _ in range(3)]
        keep = torch.empty(shape, dtype=x.dtype, device=x.device)
        for t in range(T):
            dual_exp_step_(traces, x[t], alphas, spec.scale, spec.v_threshold, spec.strict, u[t], spk[t], keep)
            if rec is not None:
                for j, tr in enumerate(traces):
                    rec[j][t].copy_(tr)
        if rec is not None:
            record.extend(rec)
        ctx.save_for_backward(x, spk, u, m0, s0, g0)
        ctx.spec, ctx.surrogate = spec, surrogate
        ctx.set_materialize_grads(False)
        return spk, u, *traces

    @staticmethod
    @once_differentiable
    def backward(ctx, g_o, g_u, g_m, g_s, g_g):  # type: ignore[override]
        x, spk, u, m0, s0, g0 = ctx.saved_tensors
        spec: DualExpSpec = ctx.spec
        T, shape, dt = x.shape[0], x.shape[1:], x.dtype
        c, thr = spec.scale, spec.v_threshold
        am, as_, ag = 1.0 - spec.theta_m, 1.0 - spec.theta_s, 1.0 - spec.theta_g
        reset_grad = not spec.detach_reset
        # the pre-reset traces, where the reset's gradient needs them
        pre = ()
        if reset_grad:
            pre = tuple(buffers.empty(x.shape, dt, x.device) for _ in range(3 if g_g is not None else 2))
            z = lambda t0: t0.to(dt).expand(shape)  # noqa: E731
            _traces(x, [z(m0), z(s0)] + ([z(g0)] if g_g is not None else []), spk, spec, pre)
        gx = buffers.empty(x.shape, dt, x.device)
        zero = torch.zeros(shape, dtype=dt, device=x.device)
        dm = zero.clone() if g_m is None else g_m.to(dt).expand(shape).clone()
        ds = zero.clone() if g_s is None else g_s.to(dt).expand(shape).clone()
        dg = None if g_g is None else g_g.to(dt).expand(shape).clone()
        go, du = torch.empty(shape, dtype=dt, device=x.device), torch.empty(shape, dtype=dt, device=x.device)
        K = block_steps(T, x[0].numel())
        for t1 in range(T, 0, -K):
            t0 = max(0, t1 - K)
            D = ctx.surrogate.derivative_(u[t0:t1] - thr)
            keep = torch.sub(1.0, spk[t0:t1])
            for i in range(t1 - t0 - 1, -1, -1):
                t = t0 + i
                # dL/do_t
                if reset_grad:
                    torch.mul(dm, pre[0][t], out=go).addcmul_(ds, pre[1][t])
                    if dg is not None:
                        go.addcmul_(dg, pre[2][t])
                    go.neg_()
                    if g_o is not None:
                        go.add_(g_o[t])
                elif g_o is not None:
                    go.copy_(g_o[t])
                else:
                    go.zero_()
                torch.mul(D[i], go, out=du)  # du_t
                if g_u is not None:
                    du.add_(g_u[t])
                # (dm, ds, dg) ← α·(d·k ± c·du); dx_t = their sum
                dm.mul_(keep[i]).add_(du, alpha=c).mul_(am)
                ds.mul_(keep[i]).sub_(du, alpha=c).mul_(as_)
                torch.add(dm, ds, out=gx[t])
                if dg is not None:
                    dg.mul_(keep[i]).mul_(ag)
                    gx[t].add_(dg)
        need = ctx.needs_input_grad
        g_m0 = dm if need[1] else None
        g_s0 = ds if need[2] else None
        g_g0 = (dg if dg is not None else zero) if need[3] else None
        return gx, g_m0, g_s0, g_g0, None, None, None


def dual_exp_multi_step(
    x: Tensor, m0: Tensor, s0: Tensor, g0: Tensor, spec: DualExpSpec, surrogate: Surrogate, record: list | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Fused dual-exponential neuron. x [T, B, ...] and m0, s0, g0 [B, ...] in the compute dtype →
    (spikes, u [T, B, ...], m_T, s_T, g_T). record: a list that receives the per-step (m, s, g) after
    the reset, stacked over time (values only)."""
    return DualExpFunction.apply(x, m0, s0, g0, spec, surrogate, record)
