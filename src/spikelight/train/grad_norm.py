"""The gradient's norm without float32 overflow, and clipping by it.

``torch.nn.utils.clip_grad_norm_`` (what Lightning's ``gradient_clip_val`` calls) sums squares in the
gradients' dtype: in float32 the norm is ``inf`` once an element passes ~1.8e19, although every element is
finite. Clipping then multiplies the gradient by ``max_norm / inf = 0`` (the step is silently lost), and a
fault guard reading that norm calls a finite gradient infinite. It happened: an LSNN trained with full BPTT
through 784 steps had a finite input-weight gradient of norm 4.2e19 at one step (every backend and a float64
run of the plain loop agree; ``experiments/lsnn/divergence/``) and was stopped as "gradient norm is inf".
Here the squares are summed in float64 (float32 scaled by the largest element on Apple's MPS, which has no
float64), so the norm is finite exactly when every element is. ``SpikingClassifier`` stops a run on a
non-finite :func:`grad_norm` and, before Lightning's own clipping, scales a gradient whose float32 norm would
overflow (:func:`overflows_float32`) to the clipping value with :func:`clip_grad_norm`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["grad_norm", "clip_grad_norm", "scaled_norm", "overflows_float32", "FLOAT32_SQUARES_LIMIT"]


def scaled_norm(t: Tensor) -> Tensor:
    """The 2-norm of ``t`` in its own dtype without overflow: ``m * ||t / m||`` with ``m = max |t|``
    (for devices without float64, such as Apple's MPS)."""
    t = t.detach()
    m = t.abs().max()
    return m * torch.linalg.vector_norm(t / m.clamp(min=torch.finfo(t.dtype).tiny))


def _norm(g: Tensor) -> Tensor:
    if g.device.type == "mps":  # no float64 there
        return scaled_norm(g)
    return torch.linalg.vector_norm(g.detach(), dtype=torch.float64)


def grad_norm(grads: Iterable[Tensor]) -> Tensor:
    """The 2-norm of all ``grads`` together, as a 0-d tensor on their device (float64 except on MPS):
    ``inf`` / ``nan`` only when an element is. Empty: 0."""
    norms = [_norm(g) for g in grads]
    if not norms:
        return torch.zeros((), dtype=torch.float64)
    stacked = torch.stack([n.to(norms[0].device) for n in norms])
    return torch.linalg.vector_norm(stacked) if stacked.dtype == torch.float64 else scaled_norm(stacked)


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
        g.mul_(coef.to(g.device))  # a 0-d factor keeps g's dtype; computed in float64, it cannot underflow first
    return total


def overflows_float32(norm: Tensor) -> bool:
    """True when a finite ``norm`` (from :func:`grad_norm`) is too large for a float32 sum of squares
    (what ``torch.nn.utils.clip_grad_norm_`` computes for float32 gradients)."""
    return bool(torch.isfinite(norm)) and float(norm) > FLOAT32_SQUARES_LIMIT


#: above this, a float32 norm's sum of squares overflows (sqrt of float32's largest value, with room for rounding)
FLOAT32_SQUARES_LIMIT = 1.0e19
