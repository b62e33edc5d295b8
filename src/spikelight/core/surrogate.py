"""Surrogate spike functions: exact Heaviside forward, analytic backward.

Every surrogate is an ``nn.Module`` called on ``x = h - v_threshold`` (any shape)
and returns spikes ``Θ(x)`` in the input dtype. The backward pass multiplies the
incoming gradient by ``derivative(x)``, the derivative of a smooth primitive.

Where the spike is emitted is the *neuron's* convention, not the surrogate's:
SpikingJelly fires on ``x >= 0`` (``Θ(0) = 1``, the default), snnTorch on
``x > 0``; a neuron passes ``strict=True`` for the latter
(:class:`~spikelight.neurons.LeakyNode` does).

``alpha`` means what it means in the library the surrogate is named after
(SpikingJelly unless the docstring says snnTorch), with the same default, so a
value copied from either library's code gives the same gradient here. A new
surrogate only writes ``derivative`` (and ``primitive`` for tests and plots).

Each surrogate owns every form of its derivative the backends use:

- ``derivative(x)``: the definition (the reference loop's backward);
- ``derivative_(z, scale)``: ``scale · derivative(z)`` computed in place on a temporary ``z``
  (the fused backends' backward; the built-ins with a costly formula do it in fewer passes);
- ``kernel_form()``: ``(id, p1, p2)`` of the in-kernel formula the GPU kernels evaluate
  (:func:`spikelight.dynamics.triton.neurons._surrogate_grad`, one branch per id), or None for
  a surrogate the kernels do not know (a subclass that changed ``derivative``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Surrogate",
    "Sigmoid",
    "ATan",
    "FastSigmoid",
    "Triangle",
    "PiecewiseQuadratic",
    "SoftSign",
    "LeakyKReLU",
    "Rectangle",
    "SpikeOperator",
    "heaviside",
]


def heaviside(x: Tensor, strict: bool = False) -> Tensor:
    """Θ(x) in x's dtype: 1 where ``x >= 0`` (``x > 0`` if ``strict``), else 0."""
    return ((x > 0) if strict else (x >= 0)).to(x.dtype)


class _SurrogateSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate, strict: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x, strict)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None, None


class Surrogate(nn.Module):
    """Base class: forward Θ(x), backward ``grad * derivative(x)``.

    Args:
        alpha: shape parameter (for most: larger = sharper, closer to Θ).
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

    def derivative_(self, z: Tensor, scale: float = 1.0) -> Tensor:
        """``scale · derivative(z)``, free to overwrite ``z`` (a temporary the caller hands over)."""
        g = self.derivative(z)
        return g.mul_(scale) if scale != 1.0 else g

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "derivative" in cls.__dict__ and "derivative_" not in cls.__dict__:
            # a changed derivative: a parent's in-place form computes the parent's formula, not this one
            cls.derivative_ = Surrogate.derivative_

    #: the id of this class's formula in the GPU kernels; set by each built-in surrogate in its own class body
    kernel_id: int | None = None

    def kernel_params(self) -> tuple[float, float]:
        """The two numbers the in-kernel formula reads (``alpha`` and an unused 0 unless overridden)."""
        return self.alpha, 0.0

    def kernel_form(self) -> tuple[int, float, float] | None:
        """``(kernel_id, p1, p2)`` if the GPU kernels evaluate this surrogate's derivative in-kernel, else None.

        Only a class that sets ``kernel_id`` in its own body qualifies: a subclass may have changed
        ``derivative``."""
        kid = type(self).__dict__.get("kernel_id")
        return None if kid is None else (kid, *self.kernel_params())

    def forward(self, x: Tensor, strict: bool = False) -> Tensor:
        """Spikes Θ(x) (``x > 0`` if ``strict``) with this surrogate's backward."""
        return _SurrogateSpike.apply(x, self, strict)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(Surrogate):
    """SpikingJelly ``Sigmoid`` (its default surrogate): g = σ(αx), g' = α·σ(αx)(1−σ(αx)); alpha=4.

    snnTorch's ``sigmoid(slope)`` is the same function with ``alpha = slope`` (its default 25).
    """

    def __init__(self, alpha: float = 4.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.alpha * x)

    kernel_id = 0

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)

    def derivative_(self, z: Tensor, scale: float = 1.0) -> Tensor:
        s = z.mul_(self.alpha).sigmoid_()  # a s (1 - s)
        return torch.addcmul(s, s, s, value=-1.0, out=s).mul_(self.alpha * scale)


class ATan(Surrogate):
    """SpikingJelly ``ATan`` = snnTorch ``atan``: g = arctan(π/2·αx)/π + 1/2,
    g' = α/2 / (1 + (π/2·αx)²); alpha=2 (snnTorch's default neuron surrogate)."""

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    kernel_id = 1

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x) ** 2)

    def derivative_(self, z: Tensor, scale: float = 1.0) -> Tensor:
        a = self.alpha  # a/2 / (1 + (pi/2 a z)^2)
        k = math.pi / 2 * a
        den = torch.addcmul(torch.ones((), dtype=z.dtype, device=z.device), z, z, value=k * k, out=z)
        return torch.div(torch.full((), a / 2 * scale, dtype=z.dtype, device=z.device), den, out=den)


class FastSigmoid(Surrogate):
    """snnTorch ``fast_sigmoid`` (SuperSpike, Zenke & Ganguli 2018): g' = 1/(1+α|x|)²;
    ``alpha`` is snnTorch's ``slope`` (default 25). Peak gradient 1 at x=0.

    (SpikingJelly's ``SuperSpike(alpha)`` is a different parametrisation, α/(1+|x|)².)
    """

    def __init__(self, alpha: float = 25.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return x / (1 + self.alpha * x.abs())

    kernel_id = 2

    def derivative(self, x: Tensor) -> Tensor:
        return 1.0 / (1 + self.alpha * x.abs()) ** 2

    def derivative_(self, z: Tensor, scale: float = 1.0) -> Tensor:
        w = z.abs_().mul_(self.alpha).add_(1.0)  # 1 / (1 + a|z|)^2
        return w.mul_(w).reciprocal_().mul_(scale) if scale != 1.0 else w.mul_(w).reciprocal_()


class Triangle(Surrogate):
    """Piecewise-linear (triangle): g' = ``dampening · max(0, 1 − α|x|)``.

    Half-width ``1/alpha``, peak ``dampening``. LSNN / e-prop's pseudo-derivative
    is ``Triangle(alpha=1, dampening=0.3)`` on the normalised potential.
    SpikingJelly's ``PiecewiseQuadratic(a)`` (g' = max(0, a − a²|x|)) is
    ``Triangle(alpha=a, dampening=a)`` — see :class:`PiecewiseQuadratic`.
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

    kernel_id = 3

    def derivative(self, x: Tensor) -> Tensor:
        return self.dampening * torch.clamp(1 - self.alpha * x.abs(), min=0)

    def kernel_params(self) -> tuple[float, float]:
        return self.alpha, self.dampening

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, dampening={self.dampening}"


class PiecewiseQuadratic(Triangle):
    """SpikingJelly ``PiecewiseQuadratic``: g' = max(0, α − α²|x|) (a triangle of
    half-width 1/α and peak α; the primitive is piecewise quadratic); alpha=1.

    Identical to ``Triangle(alpha=alpha, dampening=alpha)``.
    """

    kernel_id = 3  # the triangle's formula

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha=alpha, dampening=alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SoftSign(Surrogate):
    """SpikingJelly ``SoftSign``: g = (αx/(1+|αx|) + 1)/2, g' = α / (2(1+α|x|)²); alpha=2."""

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)

    def primitive(self, x: Tensor) -> Tensor:
        return (F.softsign(self.alpha * x) + 1.0) / 2.0

    kernel_id = 4

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha / (2 * (1 + self.alpha * x.abs()) ** 2)


class LeakyKReLU(Surrogate):
    """SpikingJelly ``LeakyKReLU(leak, k)``: g' = ``k`` for x >= 0, ``leak`` for x < 0
    (defaults 0 and 1, a straight-through estimator on the firing side).
    It has no ``alpha``; ``k`` plays its role.
    """

    def __init__(self, leak: float = 0.0, k: float = 1.0) -> None:
        super().__init__(alpha=1.0)
        if leak < 0 or not k > 0:
            raise ValueError(f"leaky_k_relu needs leak >= 0 and k > 0, got leak={leak}, k={k}")
        self.leak, self.k = float(leak), float(k)

    def primitive(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, self.k * x, self.leak * x)

    kernel_id = 5

    def derivative(self, x: Tensor) -> Tensor:
        pos = (x >= 0).to(x.dtype)
        return pos * self.k + (1.0 - pos) * self.leak

    def kernel_params(self) -> tuple[float, float]:
        return self.leak, self.k

    def extra_repr(self) -> str:
        return f"leak={self.leak}, k={self.k}"


class Rectangle(Surrogate):
    """SpikingJelly ``Rect``: boxcar, g' = α on |x| < 1/(2α), else 0; alpha=1."""

    kernel_id = 6

    def primitive(self, x: Tensor) -> Tensor:
        return torch.clamp(self.alpha * x + 0.5, 0.0, 1.0)

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha * (x.abs() < 0.5 / self.alpha).to(x.dtype)


class SpikeOperator(Surrogate):
    """snnTorch tutorial 3/5's ``SpikeOperator``: backward passes ``grad · Θ(x)``
    where the neuron fired (``x > 0``, snnTorch's comparison).

    It treats the spike as ``S = U·Θ(U − θ)/U`` so dS/dU ≈ Θ. ``alpha`` scales the
    gradient (the tutorial has no parameter: alpha=1 reproduces it).
    """

    kernel_id = 7

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha * (x > 0).to(x.dtype)

    def primitive(self, x: Tensor) -> Tensor:
        return self.alpha * torch.relu(x)
