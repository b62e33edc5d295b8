"""The gradient's norm without float32 overflow, and clipping by it.

``torch.nn.utils.clip_grad_norm_`` (what Lightning's ``gradient_clip_val`` calls) sums squares in the
gradients' dtype: in float32 the norm is ``inf`` once an element passes ~1.8e19, although every element is
finite. Clipping then multiplies the gradient by ``max_norm / inf = 0`` (the step is silently lost), and a
fault guard reading that norm calls a finite gradient infinite. It happened: an LSNN trained with full BPTT
through 784 steps had a finite input-weight gradient of norm 4.2e19 at one step (every backend and a float64
run of the plain loop agree; ``experiments/lsnn/divergence/``), and the run was stopped as "gradient norm is
inf". Here the squares are summed in float64 (float32 with a scale on Apple's MPS, which has no float64), so
the norm is finite exactly when every element is, and clipping scales such a gradient to ``max_norm``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["grad_norm", "clip_grad_norm"]


def _norm(g: Tensor) -> Tensor:
    if g.device.type == "mps":  # no float64 there: scale by the largest magnitude first
        m = g.detach().abs().max()
        return m * torch.linalg.vector_norm(g.detach() / m.clamp(min=torch.finfo(g.dtype).tiny))
    return torch.linalg.vector_norm(g.detach(), dtype=torch.float64)


def grad_norm(grads: Iterable[Tensor]) -> Tensor:
    """The 2-norm of all ``grads`` together, as a 0-d tensor on their device (float64 except on MPS):
    ``inf`` / ``nan`` only when an element is. Empty: 0."""
    norms = [_norm(g) for g in grads]
    if not norms:
        return torch.zeros((), dtype=torch.float64)
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their joint 2-norm is at most ``max_norm``
    (``torch.nn.utils.clip_grad_norm_``'s rule, ``max_norm / (norm + 1e-6)``, with the norm of
    :func:`grad_norm`). Returns the norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total = grad_norm(grads)
    if not grads:
        return total
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.to(device=g.device, dtype=g.dtype))
    return total
