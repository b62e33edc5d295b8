"""``z Wᵀ`` for spike inputs z (0/1) on the CPU: the LSNN readout's projection, summed over the spikes.

With B·T rows of H spikes at a few percent firing, the product is a sum of a few
rows of Wᵀ per row of z (no products), and the weight gradient ``gᵀ z`` a sum of
rows of g, both in :mod:`spikelight.dynamics.native.library`; the input gradient ``g W``
(K = C classes, small) runs there too, where BLAS is slow at this shape. Values
equal ``F.linear(z, W)`` up to float rounding of the sums (another order); any z
is accepted (non-binary entries are multiplied), only the speed assumes spikes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from spikelight.core.errors import ShapeError
from spikelight.dynamics import buffers
from spikelight.dynamics.native import library as cpu_native

__all__ = ["SpikeLinearFunction", "spike_linear", "spike_linear_applies"]


class SpikeLinearFunction(torch.autograd.Function):
    """``(z [..., n_in], W [n_out, n_in]) → z Wᵀ [..., n_out]``, fp32 CPU (no bias)."""

    @staticmethod
    def forward(ctx, z: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        lead, n_in = z.shape[:-1], z.shape[-1]
        zc = z.reshape(-1, n_in).contiguous()
        out = torch.empty(zc.shape[0], weight.shape[0], dtype=torch.float32)
        cpu_native.spike_linear(zc, weight.t().contiguous(), out)
        ctx.save_for_backward(zc, weight)
        ctx.lead = lead
        return out.view(*lead, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):  # type: ignore[override]
        zc, weight = ctx.saved_tensors
        gc = g.reshape(zc.shape[0], weight.shape[0]).contiguous()
        g_z = g_w = None
        if ctx.needs_input_grad[0]:
            g_z = buffers.empty(zc.shape, torch.float32, zc.device)
            cpu_native.mm_small_k(gc, weight.contiguous(), g_z)
            g_z = g_z.view(*ctx.lead, zc.shape[1])
        if ctx.needs_input_grad[1]:
            g_w = cpu_native.grad_w_sparse(gc, zc)
        return g_z, g_w


def spike_linear_applies(z: Tensor, weight: Tensor) -> bool:
    """Whether :func:`spike_linear` runs here: fp32 CPU tensors of matching sizes, no autocast, a finite
    weight (a sum over spikes would not spread a NaN as the dense product does), the C library built."""
    return (
        z.device.type == "cpu"
        and z.dtype == weight.dtype == torch.float32
        and weight.dim() == 2
        and weight.shape[0] > 0
        and weight.shape[1] == z.shape[-1] > 0
        and not torch.is_autocast_enabled("cpu")
        and cpu_native.available()
        and bool(torch.isfinite(weight).all())
    )


def spike_linear(z: Tensor, weight: Tensor) -> Tensor:
    """``F.linear(z, weight)`` (no bias) summed over the non-zero z; z [..., n_in], weight [n_out, n_in]."""
    if weight.dim() != 2 or weight.shape[1] != z.shape[-1]:
        raise ShapeError(f"spike_linear: weight [n_out, {z.shape[-1]}] expected for z [..., {z.shape[-1]}], "
                         f"got {tuple(weight.shape)}")  # fmt: skip
    return SpikeLinearFunction.apply(z, weight)
