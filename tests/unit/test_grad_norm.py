"""The gradient norm summed in float64 (spikelight.train.grad_norm): the fault guard and clipping read it.

The bug it prevents: a finite float32 gradient past ~1.8e19 has a float32 norm of inf, so the guard stopped
a full-BPTT LSNN run as "gradient norm is inf" and Lightning's clipping would have zeroed the step
(experiments/lsnn/divergence/).
"""

from __future__ import annotations

import math

import torch

from spikelight.train.grad_norm import clip_grad_norm, grad_norm, overflows_float32, scaled_norm


def _params(*grads: torch.Tensor) -> list[torch.nn.Parameter]:
    out = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        out.append(p)
    return out


def test_equals_torch_on_ordinary_gradients():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(220, 1, generator=g), torch.randn(220, 220, generator=g) * 1e-3, torch.randn(10, generator=g)]
    ours, theirs = _params(*grads), _params(*grads)
    assert math.isclose(float(grad_norm(grads)), float(torch.linalg.vector_norm(torch.cat([x.flatten() for x in grads]).double())),
                        rel_tol=1e-12)
    for max_norm in (0.5, 1e3):  # clipped, and left alone
        n_ours = clip_grad_norm(ours, max_norm)
        n_torch = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
        assert math.isclose(float(n_ours), float(n_torch), rel_tol=1e-6)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=0)


def test_a_finite_gradient_past_float32_squares_is_finite_and_clipped_to_max_norm():
    big = torch.tensor([2.4e19, -1.5e19, 3.0], dtype=torch.float32)  # what the LSNN's input weights got
    small = torch.tensor([1e-3, 2e-3])
    assert torch.isinf(torch.linalg.vector_norm(big))  # float32's own norm: the overflow
    norm = grad_norm([big, small])
    assert math.isfinite(float(norm)) and math.isclose(float(norm), math.hypot(2.4e19, 1.5e19), rel_tol=1e-6)
    params = _params(big, small)
    clip_grad_norm(params, 1.0)
    after = float(grad_norm([p.grad for p in params]))
    assert math.isclose(after, 1.0, rel_tol=1e-5)  # torch's clip_grad_norm_ would leave 0 here
    assert params[0].grad[0] > 0.8 and params[0].grad[1] < -0.5  # the direction is kept


def test_inf_and_nan_elements_still_show():
    assert math.isinf(float(grad_norm([torch.tensor([1.0, float("inf")])])))
    assert math.isnan(float(grad_norm([torch.tensor([1.0]), torch.tensor([float("nan")])])))
    assert float(grad_norm([])) == 0.0


def test_the_scaled_norm_for_devices_without_float64_does_not_overflow():
    """MPS has no float64: each tensor's and the joint norm are taken as m * ||t / m|| in float32."""
    big = torch.tensor([2.4e19, -1.5e19, 3.0])
    assert torch.isinf(torch.linalg.vector_norm(big))
    n = scaled_norm(big)
    assert n.dtype == torch.float32 and math.isclose(float(n), math.hypot(2.4e19, 1.5e19), rel_tol=1e-6)
    joint = scaled_norm(torch.stack([n, torch.tensor(2.2e-3)]))  # the combination too
    assert math.isclose(float(joint), float(n), rel_tol=1e-6)
    assert float(scaled_norm(torch.zeros(3))) == 0.0


def test_only_norms_past_float32_squares_count_as_overflowing():
    assert not overflows_float32(torch.tensor(1e18, dtype=torch.float64))
    assert overflows_float32(torch.tensor(4.2e19, dtype=torch.float64))
    assert not overflows_float32(torch.tensor(float("inf"), dtype=torch.float64))  # not finite: the guard's case
