"""Surrogates: exact Heaviside forward; backward = derivative of the smooth primitive."""

import pytest
import torch

from spikelight.core import surrogate as sg

SMOOTH = [sg.Sigmoid(4.0), sg.ATan(2.0), sg.FastSigmoid(25.0), sg.Triangle(1.0, 0.3), sg.Triangle(2.0), sg.Rectangle(1.0),
          sg.Sigmoid(1.5), sg.ATan(0.7), sg.PiecewiseQuadratic(1.0), sg.PiecewiseQuadratic(2.5), sg.SoftSign(2.0),
          sg.SoftSign(0.5), sg.LeakyKReLU(0.1, 2.0)]


def _points(s: sg.Surrogate) -> torch.Tensor:
    torch.manual_seed(0)
    x = (torch.rand(2000, dtype=torch.float64) - 0.5) * 4
    # keep away from kinks of the piecewise primitives, where the derivative is one-sided
    tri = [0.0, 1 / s.alpha, -1 / s.alpha]
    kinks = {sg.Triangle: tri, sg.PiecewiseQuadratic: tri, sg.Rectangle: [0.5 / s.alpha, -0.5 / s.alpha],
             sg.FastSigmoid: [0.0], sg.LeakyKReLU: [0.0]}.get(type(s), [])
    for k in kinks:
        x = x[(x - k).abs() > 1e-3]
    return x


@pytest.mark.parametrize("s", SMOOTH, ids=lambda s: f"{type(s).__name__}{s.alpha}")
def test_backward_is_derivative_of_primitive(s):
    x = _points(s).requires_grad_()
    s(x).sum().backward()
    surrogate_grad = x.grad.clone()
    x.grad = None
    s.primitive(x).sum().backward()
    torch.testing.assert_close(surrogate_grad, x.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("s", [*SMOOTH, sg.SpikeOperator()], ids=lambda s: type(s).__name__)
def test_forward_is_exact_heaviside(s):
    x = torch.tensor([-2.0, -1e-7, 0.0, 1e-7, 3.0])
    assert s(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # SpikingJelly: fires at x = 0
    assert s(x, strict=True).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # snnTorch: x > 0


def test_spike_operator_backward_is_the_spike():
    # snnTorch tutorial: spk = (mem > 0); grad = grad_output * spk
    x = torch.tensor([-0.5, 0.0, 0.2, 1.0], requires_grad=True)
    spikes = sg.SpikeOperator()(x, strict=True)
    spikes.sum().backward()
    assert spikes.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_piecewise_quadratic_is_a_triangle_with_peak_alpha():
    x = torch.linspace(-1, 1, 41)
    for a in (0.5, 1.0, 3.0):
        torch.testing.assert_close(sg.PiecewiseQuadratic(a).derivative(x), sg.Triangle(a, dampening=a).derivative(x))
        assert sg.PiecewiseQuadratic(a).derivative(torch.zeros(1)).item() == pytest.approx(a)


def test_alpha_sharpens():
    x = torch.tensor([0.3])
    assert sg.ATan(8.0).derivative(x) < sg.ATan(2.0).derivative(x)
    assert sg.ATan(8.0).derivative(torch.zeros(1)) > sg.ATan(2.0).derivative(torch.zeros(1))


def test_triangle_dampening_scales_peak():
    assert sg.Triangle(1.0, dampening=0.3).derivative(torch.zeros(1)).item() == pytest.approx(0.3)


def test_invalid_alpha():
    with pytest.raises(ValueError, match="alpha"):
        sg.Sigmoid(alpha=0.0)
