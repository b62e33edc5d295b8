"""Neuron step functions against hand-computed sequences."""

import math

import pytest
import torch

from spikelight.core.surrogate import ATan
from spikelight.core.types import VState
from spikelight.neurons import BaseNode, IFNode, LIFNode

X = torch.tensor([0.8, 0.8, 0.8, 2.5, 0.0]).view(5, 1, 1)


def run(node: BaseNode, x: torch.Tensor = X):
    out = node.multi_step(x)
    return out.spikes.flatten().tolist(), [round(v, 6) for v in out.membrane.flatten().tolist()]


def test_lif_decay_input_hard_reset():
    # h = v + (x - v)/2 ; spike at h >= 1 ; v <- 0
    spikes, h = run(LIFNode(tau=2.0))
    assert h == [0.4, 0.6, 0.7, 1.6, 0.0]
    assert spikes == [0, 0, 0, 1, 0]


def test_lif_decay_input_soft_reset():
    # after the spike v = 1.6 - 1 = 0.6, then h = 0.6 + (0 - 0.6)/2 = 0.3
    spikes, h = run(LIFNode(tau=2.0, v_reset=None))
    assert h == [0.4, 0.6, 0.7, 1.6, 0.3]
    assert spikes == [0, 0, 0, 1, 0]


def test_lif_no_decay_input_hard_reset():
    # h = v - v/2 + x
    spikes, h = run(LIFNode(tau=2.0, decay_input=False))
    assert h == [0.8, 1.2, 0.8, 2.9, 0.0]
    assert spikes == [0, 1, 0, 1, 0]


def test_lif_nonzero_v_reset_leaks_toward_reset():
    # v starts at v_reset=-0.5; h = v + (x - (v + 0.5))/2:
    # h1 = -0.5 + 1/2 = 0 ; h2 = 0 + (3 - 0.5)/2 = 1.25 fires, v <- -0.5 ; h3 = -0.5 + 0/2
    spikes, h = run(LIFNode(tau=2.0, v_reset=-0.5), torch.tensor([1.0, 3.0, 0.0]).view(3, 1, 1))
    assert h == [0.0, 1.25, -0.5]
    assert spikes == [0, 1, 0]


def test_if_soft_reset():
    spikes, h = run(IFNode(v_reset=None), torch.tensor([0.5, 0.6, 0.3, 1.2]).view(4, 1, 1))
    assert h == [0.5, 1.1, 0.4, 1.6]
    assert spikes == [0, 1, 0, 1]


def test_beta_matches_snntorch_charge():
    node = LIFNode(beta=0.95, decay_input=False, v_reset=None)
    assert node.tau == pytest.approx(20.0)
    x = torch.tensor([0.3, 0.3, 0.3]).view(3, 1, 1)
    _, h = run(node, x)
    assert h == pytest.approx([0.3, 0.3 * 0.95 + 0.3, (0.3 * 0.95 + 0.3) * 0.95 + 0.3])


def test_single_step_chain_equals_multi_step_and_state_continues():
    torch.manual_seed(0)
    node = LIFNode(tau=3.0, v_reset=None)
    x = torch.rand(12, 4, 7) * 1.5
    full = node.multi_step(x)
    v, spikes = None, []
    for t in range(12):
        s, v = node.single_step(x[t], v)
        spikes.append(s)
    assert torch.equal(torch.stack(spikes), full.spikes)
    assert torch.equal(v.v, full.v) and torch.equal(v.v, full.state.v)
    first = node.multi_step(x[:5])
    second = node.multi_step(x[5:], first.v)
    assert torch.equal(torch.cat([first.spikes, second.spikes]), full.spikes)


def test_multi_step_starts_fresh_each_call():
    node = LIFNode(tau=2.0)
    x = torch.full((3, 2, 2), 0.9)
    assert torch.equal(node(x).spikes, node(x).spikes)


def test_detach_reset_cuts_reset_gradient():
    # one step: h = x/2 = 1.6 fires; hard reset v = h(1 - s)
    for detach, expected in [(True, 0.0), (False, -1.6 * (1 / (1 + (math.pi * 0.6) ** 2)) * 0.5)]:
        x = torch.tensor([3.2], requires_grad=True)
        _, state, _ = LIFNode(tau=2.0, surrogate=ATan(2.0), detach_reset=detach).step(x, VState(torch.zeros(1)))
        state.v.sum().backward()
        assert x.grad.item() == pytest.approx(expected, rel=1e-6)


def test_custom_neuron_needs_only_charge():
    class SquareIFNode(BaseNode):
        def charge(self, x, v):
            return v + x**2

    node = SquareIFNode(v_reset=None)
    x = torch.tensor([0.5, 0.5, 0.9, -1.1]).view(4, 1, 1).requires_grad_()
    out = node.multi_step(x)
    assert out.membrane.flatten().tolist() == pytest.approx([0.25, 0.5, 1.31, 1.52])
    assert out.spikes.flatten().tolist() == [0, 0, 1, 1]
    out.spikes.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{"tau": 1.0}, {"tau": 0.5}, {"beta": 1.2}, {"beta": 0.0}, {"tau": "abc"},
                                    {"tau": 2.0, "beta": 0.9}])
def test_bad_lif_parameters_raise_clear_error(kwargs):
    with pytest.raises(ValueError, match="tau|beta"):
        LIFNode(**kwargs)


def test_reset_above_threshold_raises():
    with pytest.raises(ValueError, match="v_reset"):
        IFNode(v_threshold=1.0, v_reset=1.0)


def test_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"\[T, B"):
        LIFNode().multi_step(torch.ones(5))


@pytest.mark.parametrize("node", [LIFNode(tau=2.0), IFNode(v_reset=None)], ids=["lif", "if"])
def test_half_precision_input_keeps_fp32_state(node):
    """bf16 currents (autocast Linear outputs): the membrane accumulates in fp32, so spikes equal
    an fp32 run on the same (bf16-rounded) currents; spikes come back in bf16."""
    torch.manual_seed(0)
    x = (torch.rand(50, 8, 64) * 1.2).to(torch.bfloat16)
    half, full = node(x), node(x.float())
    assert half.spikes.dtype == torch.bfloat16 and half.membrane.dtype == torch.float32
    assert full.spikes.sum() > 100 and torch.equal(half.spikes.float(), full.spikes)
    assert torch.equal(half.membrane, full.membrane)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fc = torch.nn.Linear(64, 64)
        out = node(fc(torch.rand(10, 8, 64)))
    assert out.membrane.dtype == torch.float32
