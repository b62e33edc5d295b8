"""Surrogate spike functions: exact Heaviside forward, analytic backward.

Every surrogate is an ``nn.Module`` called on ``x = h - v_threshold`` (any shape)
and returns spikes ``Θ(x)`` in the input dtype (``Θ(0) = 1``, as SpikingJelly).
The backward pass multiplies the incoming gradient by ``derivative(x)``, the
derivative of a smooth primitive whose sharpness is set by ``alpha`` (the
SpikingJelly name). A new surrogate only writes ``derivative``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "Surrogate",
    "Sigmoid",
    "ATan",
    "FastSigmoid",
    "Triangle",
    "Rectangle",
    "SpikeOperator",
    "heaviside",
]


def heaviside(x: Tensor) -> Tensor:
    """Θ(x) = 1 where x >= 0, else 0, in x's dtype."""
    return (x >= 0).to(x.dtype)


class _SurrogateSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None


class Surrogate(nn.Module):
    """Base class: forward Θ(x), backward ``grad * derivative(x)``.

    Args:
        alpha: sharpness of the smooth primitive (larger = closer to Θ).
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"surrogate alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def derivative(self, x: Tensor) -> Tensor:
        """dΘ̃/dx evaluated at x (same shape as x)."""
        raise NotImplementedError

    def primitive(self, x: Tensor) -> Tensor:
        """The smooth function whose derivative is used (for tests and plots)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return _SurrogateSpike.apply(x, self)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Surrogate):
    """σ(αx); SpikingJelly's default surrogate (alpha=4)."""

    def __init__(self, alpha: float = 4.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.alpha * x)

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)


class ATan(Surrogate):
    """arctan(π/2·αx)/π + 1/2 (SpikingJelly ATan, snnTorch atan; alpha=2)."""

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x) ** 2)


class FastSigmoid(Surrogate):
    """SuperSpike / snnTorch fast_sigmoid: x/(1+α|x|), derivative 1/(1+α|x|)².

    ``alpha`` is snnTorch's ``slope`` (default 25).
    """

    def __init__(self, alpha: float = 25.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return x / (1 + self.alpha * x.abs())

    def derivative(self, x: Tensor) -> Tensor:
        return 1.0 / (1 + self.alpha * x.abs()) ** 2


class Triangle(Surrogate):
    """Piecewise-linear: ``dampening · max(0, 1 - α|x|)``.

    LSNN / e-prop use ``dampening=0.3`` with ``alpha=1`` on the normalised
    potential. The primitive is the integral of that triangle.
    """

    def __init__(self, alpha: float = 1.0, dampening: float = 1.0) -> None:
        super().__init__(alpha)
        if not dampening > 0:
            raise ValueError(f"triangle dampening must be > 0, got {dampening}")
        self.dampening = float(dampening)

    def primitive(self, x: Tensor) -> Tensor:
        a = self.alpha
        xc = x.clamp(-1 / a, 1 / a)
        # ∫_{-1/a}^{x} (1 - a|u|) du
        return self.dampening * (xc - a * xc * xc.abs() / 2 + 1 / (2 * a))

    def derivative(self, x: Tensor) -> Tensor:
        return self.dampening * torch.clamp(1 - self.alpha * x.abs(), min=0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, dampening={self.dampening}"


class Rectangle(Surrogate):
    """Boxcar: derivative ``α`` on ``|x| < 1/(2α)``, else 0 (SpikingJelly Rect)."""

    def primitive(self, x: Tensor) -> Tensor:
        return torch.clamp(self.alpha * x + 0.5, 0.0, 1.0)

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha * (x.abs() < 0.5 / self.alpha).to(x.dtype)


class SpikeOperator(Surrogate):
    """snnTorch tutorial's spike operator: backward passes ``grad · S`` (S = Θ(x)).

    Treats the spike as ``S = U·Θ(U - θ)/U`` so dS/dU ≈ Θ: gradient flows only
    where the neuron fired. ``alpha`` scales it (1 in the tutorial).
    """

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha * heaviside(x)

    def primitive(self, x: Tensor) -> Tensor:
        return self.alpha * torch.relu(x)
