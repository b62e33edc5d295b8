"""LSNN family: the ALIF neuron, the recurrent layer, truncated BPTT, sequence encodings,
time-window readouts, the firing-rate regulariser, and every LSNN command end to end."""

from __future__ import annotations

import math

import pytest
import torch

from spikelight.app.cli import train
from spikelight.core.errors import ConfigError, ShapeError
from spikelight.core.surrogate import ATan, Triangle
from spikelight.data.sequence import SequentialDigitsDataModule, image_to_sequence
from spikelight.encoding import SequenceEncoder, ThresholdCrossingEncoder
from spikelight.losses import FiringRateRegularizer, MSERateLoss, ReadoutCrossEntropyLoss
from spikelight.models import LSNN, MLP, RecurrentSpikingLayer, SpikeOutput
from spikelight.monitor import Monitor
from spikelight.neurons import ALIFNode, LIFNode
from spikelight.readout import CountReadout, MembraneReadout, RateReadout
from spikelight.train.module import SpikingClassifier

from ..conftest import compose_cfg, make_mnist_files

RHO_HALF = 1.0 / math.log(2.0)  # tau_adapt giving rho = 0.5


def _alif(**kw) -> ALIFNode:
    args = dict(tau=2.0, tau_adapt=RHO_HALF, beta=0.5, decay_input=False, v_reset=None)
    args.update(kw)
    return ALIFNode(**args)


def test_alif_threshold_rises_after_spikes_and_decays_back():
    # h = v/2 + x; A = 1 + 0.5·a; a <- a/2 + s/2; soft reset subtracts 1
    node = _alif()
    node.record_states = True
    out = node(torch.tensor([1.2, 0.0, 0.0, 1.2, 1.1]).view(5, 1, 1))
    a = out.states.a.flatten().tolist()
    assert out.membrane.flatten().tolist() == pytest.approx([1.2, 0.1, 0.05, 1.225, 1.2125])
    assert a == pytest.approx([0.5, 0.25, 0.125, 0.5625, 0.28125])
    thresholds = [1.0] + [1.0 + 0.5 * v for v in a[:-1]]  # A_t uses a_{t-1}
    assert thresholds == pytest.approx([1.0, 1.25, 1.125, 1.0625, 1.28125])
    # the last input (1.2125) would fire a LIF (threshold 1) but not the adapted neuron (1.28125)
    assert out.spikes.flatten().tolist() == [1, 0, 0, 1, 0]


def test_alif_without_adaptation_is_lif_exactly():
    torch.manual_seed(0)
    x = (torch.rand(30, 4, 16) * 3.0).requires_grad_()
    for kw in ({"v_reset": 0.0, "decay_input": True}, {"v_reset": None, "decay_input": False}):
        alif = ALIFNode(tau=5.0, beta=0.0, surrogate=ATan(), **kw)
        lif = LIFNode(tau=5.0, surrogate=ATan(), **kw)
        a, b = alif(x), lif(x)
        assert a.spikes.sum() > 50 and torch.equal(a.spikes, b.spikes)
        ga = torch.autograd.grad((a.spikes * a.membrane).sum(), x)[0]
        gb = torch.autograd.grad((b.spikes * b.membrane).sum(), x)[0]
        torch.testing.assert_close(ga, gb)


def test_alif_refractory_period_holds():
    out = _alif(refractory=2, beta=0.0)(torch.full((9, 1, 1), 5.0))
    assert out.spikes.flatten().tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0]
    x = torch.full((9, 1, 1), 5.0, requires_grad=True)
    spikes = _alif(refractory=2, beta=0.0, surrogate=Triangle(1.0, 0.3))(x).spikes
    g = torch.autograd.grad(spikes[1].sum(), x)[0]  # step 1 is refractory: no surrogate gradient
    assert g.abs().sum() == 0


def test_alif_adaptive_fraction_keeps_the_first_neurons_plain():
    node = ALIFNode(adaptive_fraction=100 / 220)
    beta = node.beta_per_neuron(220, torch.zeros(1))
    assert (beta[:120] == 0).all() and (beta[120:] == 1.8).all()


@pytest.mark.parametrize("kw", [{"tau_adapt": 0.0}, {"beta": -1.0}, {"adaptive_fraction": 1.5},
                                {"refractory": -1}, {"tau": 1.0}, {"beta": "x"}])
def test_alif_bad_parameters_are_one_line(kw):
    with pytest.raises(ValueError, match="ALIF"):
        ALIFNode(**kw)


def test_recurrent_layer_has_no_self_connections():
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer(3, 5, lambda: LIFNode(tau=2.0))
    with torch.no_grad():
        layer.rec.weight.fill_(1.0)  # the diagonal stays masked
    assert torch.equal(layer.recurrent_weight().diagonal(), torch.zeros(5))
    x = torch.rand(20, 2, 3) * 2
    out = layer(x)
    out.spikes.sum().backward()
    assert layer.rec.weight.grad.abs().sum() > 0 and torch.equal(layer.rec.weight.grad.diagonal(), torch.zeros(5))
    # one neuron alone (others silenced) gets no input from its own spikes
    solo = RecurrentSpikingLayer(1, 2, lambda: LIFNode(tau=2.0))
    with torch.no_grad():
        solo.fc.weight.copy_(torch.tensor([[3.0], [0.0]]))
        solo.rec.weight.copy_(torch.tensor([[5.0, 0.0], [0.0, 0.0]]))
    h = solo(torch.ones(4, 1, 1)).membrane[:, 0]
    assert h[:, 0].tolist() == pytest.approx([1.5, 1.5, 1.5, 1.5])  # spikes every step, never self-excited


def _lsnn(tbptt=None, readout_tau=20.0) -> LSNN:
    torch.manual_seed(0)
    return LSNN(lambda: ALIFNode(tau=5.0, tau_adapt=10.0, beta=0.3, surrogate=Triangle(1.0, 0.3)),
                in_features=3, hidden=12, num_classes=4, readout_tau=readout_tau, tbptt_steps=tbptt)


def test_state_carried_across_two_calls_equals_one_call():
    model = _lsnn()
    x = torch.rand(40, 2, 3) * 1.5
    full = model(x)
    first = model(x[:17])
    second = model(x[17:], first.state)
    assert full.hidden["rec.neuron"].sum() > 20
    assert torch.equal(torch.cat([first.hidden["rec.neuron"], second.hidden["rec.neuron"]]), full.hidden["rec.neuron"])
    torch.testing.assert_close(torch.cat([first.membrane, second.membrane]), full.membrane)


def _grads(model: LSNN, x: torch.Tensor) -> list[torch.Tensor]:
    out = model(x)
    loss = out.membrane[-5:].mean(0).pow(2).sum() + out.hidden["rec.neuron"].mean()
    return torch.autograd.grad(loss, [model.rec.fc.weight, model.rec.rec.weight, model.readout.fc.weight])


def test_truncated_bptt_with_k_at_least_T_is_full_bptt_and_shorter_k_truncates():
    x = torch.rand(30, 3, 3) * 1.5
    full = _grads(_lsnn(None), x)
    for a, b in zip(_grads(_lsnn(30), x), full):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    short = _grads(_lsnn(7), x)
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(short, full))
    # forward values do not change with truncation
    torch.testing.assert_close(_lsnn(7)(x).membrane, _lsnn(None)(x).membrane)


def test_truncated_bptt_cuts_gradients_older_than_k():
    """dL/dx_t for a loss at the last step is zero for inputs more than k steps back."""
    x = (torch.rand(30, 2, 3) * 1.5).requires_grad_()
    out = _lsnn(10, readout_tau=None)(x)
    g = torch.autograd.grad(out.membrane[-1].sum(), x)[0]
    assert g[20:].abs().sum() > 0 and g[:20].abs().sum() == 0


def test_monitor_records_adaptation_of_recurrent_neurons():
    model = _lsnn()
    x = torch.rand(25, 2, 3) * 1.5
    with Monitor(model, record=("spikes", "states")) as mon:
        out = model(x)
    assert list(mon.layers) == ["rec.neuron"]
    rec = mon["rec.neuron"]
    assert rec["a"][0].shape == (25, 2, 12) and rec["a"][0].max() > 0
    assert torch.equal(rec["spikes"][0], out.hidden["rec.neuron"])
    assert not model.rec.neuron.record_states  # switched off when the monitor is removed


def test_sfa_works_in_the_mlp_family():
    torch.manual_seed(0)
    model = MLP(lambda: ALIFNode(tau=2.0), in_features=20, hidden=[16], num_classes=3)
    out = model(torch.rand(10, 2, 20) * 3)
    assert out.spikes.shape == (10, 2, 3) and out.hidden["layers.0.neuron"].sum() > 0


# --- sequences -------------------------------------------------------------------------------


def test_image_to_sequence_orders():
    img = torch.arange(16.0).view(1, 4, 4)
    assert image_to_sequence(img, "pixel").flatten().tolist() == list(range(16))
    assert image_to_sequence(img, "pixel").shape == (16, 1)
    assert torch.equal(image_to_sequence(img, "row"), img[0])
    perm = torch.tensor([3, 0, 2, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 14])
    assert image_to_sequence(img, "permuted", perm).flatten().tolist() == perm.float().tolist()
    assert image_to_sequence(img, "pixel", pixels_per_step=4).tolist() == img[0].tolist()  # 4 pixels = a row here
    four = SequentialDigitsDataModule(pixels_per_step=4)
    assert (four.seq_len, four.num_features) == (196, 4)
    with pytest.raises(ValueError, match="pixels_per_step"):
        SequentialDigitsDataModule(pixels_per_step=5)


def test_sequential_datamodule_yields_batch_first_sequences():
    dm = SequentialDigitsDataModule(order="permuted", batch_size=5)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 784, 1) and (dm.seq_len, dm.num_features) == (784, 1)
    images = SequentialDigitsDataModule(order="pixel", batch_size=5)
    images.setup("fit")
    xp, yp = next(iter(images.train_dataloader()))
    assert torch.equal(y, yp) and torch.equal(x[:, :, 0], xp[:, dm.permutation, 0])
    assert SequentialDigitsDataModule(order="permuted", seed=9).permutation.tolist() == dm.permutation.tolist()
    with pytest.raises(ValueError, match="data.order"):
        SequentialDigitsDataModule(order="column")


def test_sequence_encoder_transposes_and_refuses_a_time_major_batch():
    x = torch.rand(8, 784, 1)
    enc = SequenceEncoder(steps=784)
    assert torch.equal(enc(x), x.transpose(0, 1))
    with pytest.raises(ShapeError, match="already time-major"):
        enc(x.transpose(0, 1))
    with pytest.raises(ShapeError, match=r"\[B, T, F\]"):
        enc(torch.rand(8, 1, 28, 28))


def test_threshold_crossing_onsets_offsets_touch_and_cue():
    # thresholds 0, 0.5 (and 1): pixel sequence 0, .6, 1, .4, 0
    enc = ThresholdCrossingEncoder(n_thresholds=3, cue_steps=2)
    out = enc(torch.tensor([0.0, 0.6, 1.0, 0.4, 0.0]).view(1, 5, 1))
    assert out.shape == (7, 1, 6) and enc.out_features(1) == 6
    s = out[:, 0].T  # [channel, time]: (on 0, off 0, on .5, off .5, ==1, cue)
    assert s[0].tolist() == [0] * 7 and s[1].tolist() == [0] * 7  # threshold 0 is never crossed
    assert s[2].tolist() == [1, 0, 0, 0, 0, 0, 0]  # 0 -> .6 crosses .5 upward: spike at the step before
    assert s[3].tolist() == [0, 0, 1, 0, 0, 0, 0]  # 1 -> .4 crosses downward
    assert s[4].tolist() == [0, 0, 1, 0, 0, 0, 0]  # pixel == 1
    assert s[5].tolist() == [0, 0, 0, 0, 0, 1, 1]  # cue after the image
    assert ThresholdCrossingEncoder().out_features(1) == 80


# --- readouts, losses, regulariser -----------------------------------------------------------


def test_window_readout_and_rate_on_a_non_spiking_output():
    m = torch.arange(40.0).view(10, 1, 4)
    out = SpikeOutput(None, m)
    torch.testing.assert_close(MembraneReadout("mean", window=3)(out), m[-3:].mean(0))
    torch.testing.assert_close(MembraneReadout("last")(out), m[-1])
    torch.testing.assert_close(RateReadout()(out), m.mean(0))


def test_spiking_readouts_and_losses_are_refused_for_the_lsnn():
    opt = torch.optim.Adam
    with pytest.raises(ConfigError, match="readout=CountReadout needs output spikes"):
        SpikingClassifier(_lsnn(), SequenceEncoder(), CountReadout(), ReadoutCrossEntropyLoss(), opt)
    with pytest.raises(ConfigError, match="loss=MSERateLoss needs output spikes"):
        SpikingClassifier(_lsnn(), SequenceEncoder(), RateReadout(), MSERateLoss(), opt)


def test_firing_rate_regulariser_by_hand():
    s = torch.zeros(10, 2, 3)
    s[:, :, 0] = 1.0  # rate 1
    s[:5, :, 1] = 1.0  # rate 0.5
    reg = FiringRateRegularizer(weight=0.1, target=0.01)
    out = SpikeOutput(None, torch.zeros(10, 2, 4), {"rec.neuron": s})
    expected = 0.1 * ((1 - 0.01) ** 2 + (0.5 - 0.01) ** 2 + 0.01**2)
    assert reg(out).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="not in the model"):
        FiringRateRegularizer(layers=["nope"])(out)


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqdata")
    make_mnist_files(root / "MNIST" / "raw", n_train=60, n_test=20)
    make_mnist_files(root / "FashionMNIST" / "raw", n_train=60, n_test=20)
    return root


FAST = ["trainer.fast_dev_run=true", "accelerator=cpu", "print_config=false", "logger=none", "callbacks=none",
        "data.batch_size=4", "data.val_size=10", "data.download=false"]


@pytest.mark.parametrize(
    "overrides",
    [
        # 784 / 840-step runs: the default command, permuted MNIST with truncated BPTT, Bellec's setup
        ["model=lsnn", "neuron=sfa"],
        ["model=lsnn", "neuron=sfa", "data=psmnist", "model.tbptt_steps=100"],
        ["experiment=lsnn_smnist", "data=sfmnist"],
        # the rest row by row (28 steps) to keep the suite fast
        ["model=lsnn", "neuron=lif", "data.order=row"],
        ["model=lsnn", "neuron=alif", "data=sfmnist", "data.order=row"],
        ["experiment=lsnn_bptt_seed", "readout=last", "data.order=row"],
    ],
    ids=lambda o: " ".join(o),
)
def test_lsnn_commands_run(overrides, mnist_root, tmp_path):
    cfg = compose_cfg("train", [*overrides, *FAST, f"data.root={mnist_root}"], tmp_path)
    metrics = train(cfg)
    assert "test/acc" in metrics and math.isfinite(metrics["train/loss_epoch"] if "train/loss_epoch" in metrics
                                                   else metrics["test/loss"])


def test_sfa_in_the_mlp_family_trains_end_to_end(tmp_path):
    cfg = compose_cfg("train", ["model=mlp", "neuron=sfa", "data=digits", "T=8", *FAST[:6]], tmp_path)
    assert "test/acc" in train(cfg)


def test_lsnn_experiments_are_the_published_setups(tmp_path):
    seed = compose_cfg("train", ["experiment=lsnn_bptt_seed"], tmp_path)
    assert (seed.model.hidden, seed.neuron.tau, seed.neuron.tau_adapt, seed.neuron.beta) == (400, 20.0, 200.0, 1.8)
    assert (seed.data.batch_size, seed.optimizer.lr, seed.optimizer.weight_decay) == (32, 1e-3, 1e-4)
    assert (seed.trainer.max_epochs, seed.trainer.gradient_clip_val) == (50, 1.0)
    bellec = compose_cfg("train", ["experiment=lsnn_smnist"], tmp_path)
    node = bellec.neuron
    assert (bellec.model.hidden, node.tau_adapt, node.beta, node.v_threshold, node.refractory) == (220, 700, 1.8, 0.01, 5)
    assert round((1 - node.adaptive_fraction) * 220) == 120
    assert (bellec.readout.window, bellec.regularizer.weight, bellec.optimizer.lr) == (28, 0.1, 0.01)
    assert (bellec.scheduler.step_size, bellec.scheduler.gamma, bellec.scheduler_interval) == (2500, 0.8, "step")
    # LSNN-official's alpha = exp(-1/20): our decay 1 - 1/tau must equal it
    assert 1 - 1 / node.tau == pytest.approx(math.exp(-1 / 20), abs=1e-7)
    assert node.convention == "lsnn_official"  # its neuron, not SpikingJelly's order


def test_neuron_lif_takes_a_convention_from_the_command_line(tmp_path):
    """``model=lsnn neuron=lif neuron.convention=lsnn_official neuron.v_reset=null`` builds LSNN-official's LIF
    (an ALIFNode with beta 0) in the recurrent layer; the default is still SpikingJelly's LIFNode."""
    from hydra.utils import instantiate

    default = compose_cfg("train", ["model=lsnn", "neuron=lif"], tmp_path)
    assert type(instantiate(default.neuron)()) is LIFNode
    cfg = compose_cfg("train", ["model=lsnn", "neuron=lif", "neuron.convention=lsnn_official", "neuron.v_reset=null",
                                "neuron.refractory=5"], tmp_path)  # fmt: skip
    node = instantiate(cfg.neuron)()
    assert isinstance(node, ALIFNode) and (node.convention, node.beta, node.refractory) == ("lsnn_official", 0.0, 5)
    assert node.tau == 20.0 and node.decay_input is False  # model=lsnn's neuron settings reach it


def test_smnist_offline_names_sfmnist(tmp_path):
    cfg = compose_cfg("train", ["model=lsnn", *FAST, f"data.root={tmp_path}"], tmp_path)
    with pytest.raises(Exception, match="data=sfmnist"):
        train(cfg)


def test_synaptic_operations_count_recurrent_and_readout_spikes():
    from spikelight.synops import SynOpCounter

    torch.manual_seed(0)
    model = LSNN(lambda: ALIFNode(tau=2.0, decay_input=False), in_features=80, hidden=20, num_classes=10)
    x = (torch.rand(30, 3, 80) < 0.3).float()
    with SynOpCounter(model) as counter:
        out = model(x)
    z = out.hidden["rec.neuron"]
    assert z.sum() > 0
    # input spikes x 20 targets, recurrent spikes (not the last step's) x 19, readout spikes x 10 classes
    assert counter.count.sops == x.sum().item() * 20 + z[:-1].sum().item() * 19 + z.sum().item() * 10
    assert counter.count.ann_macs == 30 * 3 * (80 * 20 + 20 * 20 + 20 * 10)  # an RNN over the same 30 steps
