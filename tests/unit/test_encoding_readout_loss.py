"""Encoders, readouts and losses."""

import pytest
import torch
import torch.nn.functional as F

from spikelight.encoding import DirectEncoder, LatencyEncoder, PoissonEncoder
from spikelight.losses import CEMembranePerStepLoss, CERateLoss, MSERateLoss
from spikelight.models import SpikeOutput
from spikelight.readout import CountReadout, MembraneReadout, RateReadout


def test_poisson_rate_matches_intensity():
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 11).repeat(20, 1)  # [B=20, 11]
    spikes = PoissonEncoder(T=500)(x)
    assert spikes.shape == (500, 20, 11)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rate = spikes.mean((0, 1))
    # 10,000 Bernoulli draws per intensity: std <= 0.005
    torch.testing.assert_close(rate, torch.linspace(0, 1, 11), atol=0.02, rtol=0)
    assert rate[0] == 0 and rate[-1] == 1


def test_direct_repeats_input():
    x = torch.rand(3, 1, 4, 4)
    seq = DirectEncoder(T=7)(x)
    assert seq.shape == (7, 3, 1, 4, 4) and torch.equal(seq[6], x)


def test_latency_one_spike_brighter_first():
    x = torch.tensor([[1.0, 0.5, 0.0]])
    seq = LatencyEncoder(T=11)(x)
    assert seq.sum(0).tolist() == [[1.0, 1.0, 0.0]]
    assert seq[:, 0, 0].argmax() == 0 and seq[:, 0, 1].argmax() == 5


@pytest.mark.parametrize("T", [0, -3, 2.5])
def test_bad_T(T):
    with pytest.raises(ValueError, match="T"):
        PoissonEncoder(T=T)


def _out():
    torch.manual_seed(1)
    spikes = (torch.rand(6, 4, 3) > 0.5).float()
    return SpikeOutput(spikes, torch.randn(6, 4, 3))


def test_readouts():
    out = _out()
    torch.testing.assert_close(RateReadout()(out), out.spikes.mean(0))
    torch.testing.assert_close(CountReadout("none")(out), out.spikes.sum(0))
    assert (CountReadout()(out) - out.spikes.sum(0)).abs().max() < 0.5  # tie-break stays below one spike
    torch.testing.assert_close(MembraneReadout("last")(out), out.membrane[-1])
    torch.testing.assert_close(MembraneReadout("max")(out), out.membrane.max(0).values)
    torch.testing.assert_close(MembraneReadout("mean")(out), out.membrane.mean(0))
    with pytest.raises(ValueError, match="mode"):
        MembraneReadout("median")


def test_losses_match_manual():
    out, y = _out(), torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(MSERateLoss()(out, y), F.mse_loss(out.spikes.mean(0), F.one_hot(y, 3).float()))
    manual = sum(F.cross_entropy(out.membrane[t], y) for t in range(6))
    torch.testing.assert_close(CEMembranePerStepLoss("sum")(out, y), manual)
    torch.testing.assert_close(CEMembranePerStepLoss("mean")(out, y), manual / 6)
    torch.testing.assert_close(CERateLoss("mean")(out, y), sum(F.cross_entropy(out.spikes[t], y) for t in range(6)) / 6)


def test_count_tie_break_uses_the_mean_membrane_over_time():
    # equal counts; class 0 leads at t=0, class 1 has the higher mean membrane
    spikes = torch.zeros(3, 1, 2)
    membrane = torch.tensor([[[2.0, 0.0]], [[-1.0, 1.0]], [[-1.0, 1.0]]])
    assert CountReadout("membrane")(SpikeOutput(spikes, membrane)).argmax(-1).item() == 1
