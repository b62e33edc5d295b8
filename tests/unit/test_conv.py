"""Convolutional SNNs: stateless layers over time, the direct-input shortcut, layer specs, SpikingJelly parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikelight.core.errors import ConfigError, ShapeError
from spikelight.encoding import DirectEncoder
from spikelight.layers.over_time import SharedDropout, apply_over_time
from spikelight.models import ConvSNN
from spikelight.neurons import BaseNode, IFNode, LIFNode

SJ_LAYERS = [{"conv": 8, "norm": "batch", "maxpool": 2}, {"conv": 8, "norm": "batch", "maxpool": 2}, {"fc": 64}]


def _net(layers=SJ_LAYERS, **kw) -> ConvSNN:
    torch.manual_seed(0)
    return ConvSNN(lambda: IFNode(v_threshold=0.5), layers, **kw)


def _per_step(model: ConvSNN, x_seq: torch.Tensor):
    """Reference: every stateless layer called once per time step, in a Python loop."""
    x = x_seq
    for block in model.blocks:
        synapse, post = nn.Sequential(*block.synapse), nn.Sequential(*block.post)  # plain per-sample layers
        out = block.neuron(torch.stack([synapse(x_t) for x_t in x]))
        x = torch.stack([post(s_t) for s_t in out.spikes])
    return out


@pytest.mark.parametrize("repeated", [False, True])
def test_conv_over_time_equals_per_step_loop(repeated):
    model = _net().eval()  # eval: BatchNorm uses running statistics, so it is per sample
    x = torch.rand(4, 5, 1, 28, 28) * 2
    x_seq = DirectEncoder(4)(x[0]) if repeated else x
    out, ref = model(x_seq), _per_step(model, x_seq)
    assert 0.02 < out.hidden["blocks.0.neuron"].mean() < 0.98 and out.spikes.sum() > 0
    assert torch.equal(out.spikes, ref.spikes)
    torch.testing.assert_close(out.membrane, ref.membrane, rtol=1e-5, atol=1e-5)


def test_direct_shortcut_is_exact_in_training_running_stats_included():
    """A repeated (stride-0) input runs each conv once; outputs, gradients and BatchNorm
    running statistics equal those of the same input materialised over T·B."""
    a, b = _net().train(), _net().train()
    x, y = torch.rand(6, 1, 28, 28) * 2, torch.randint(0, 10, (6,))
    seq = DirectEncoder(5)(x)
    assert seq.stride(0) == 0
    oa, ob = a(seq), b(seq.contiguous())
    assert torch.equal(oa.spikes, ob.spikes) and oa.hidden["blocks.2.neuron"].sum() > 0
    ga = torch.autograd.grad(F.mse_loss(oa.membrane.mean(0), F.one_hot(y, 10).float()), list(a.parameters()))
    gb = torch.autograd.grad(F.mse_loss(ob.membrane.mean(0), F.one_hot(y, 10).float()), list(b.parameters()))
    for g1, g2 in zip(ga, gb):
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)
    for (name, s1), s2 in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(s1, s2, rtol=1e-6, atol=1e-7, msg=name)
    assert not torch.equal(a.state_dict()["blocks.0.synapse.1.running_var"], torch.ones(8))


def test_batchnorm_normalises_over_all_steps():
    """In training, a BatchNorm over time sees T·B samples (SpikingJelly SeqToANNContainer), not B per step."""
    bn = nn.BatchNorm1d(3).train()
    x = torch.randn(4, 6, 3) + torch.arange(4.0).view(4, 1, 1)  # each step has its own mean
    y = apply_over_time(bn, x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.mean((0, 1)), torch.zeros(3), atol=1e-5, rtol=0)
    assert y[0].mean() < -0.5 < 0.5 < y[3].mean()  # not normalised step by step


def test_shared_dropout_keeps_one_mask_over_time():
    torch.manual_seed(0)
    drop = SharedDropout(0.5).train()
    y = drop(torch.ones(6, 4, 100))
    assert torch.equal(y, y[0].expand_as(y)) and 0.3 < (y[0] == 0).float().mean() < 0.7
    assert set(y.unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1/(1-p)
    torch.manual_seed(1)
    repeated = drop(torch.ones(4, 100).expand(6, 4, 100))
    torch.manual_seed(1)
    assert torch.equal(repeated, drop(torch.ones(6, 4, 100)))  # shortcut: same mask, same values
    per_step = apply_over_time(nn.Dropout(0.5).train(), torch.ones(4, 100).expand(6, 4, 100))
    assert not torch.equal(per_step[0], per_step[1])  # per-step dropout is not shortcut
    assert torch.equal(drop.eval()(y), y)


@pytest.mark.parametrize("mode,shared", [("shared", True), ("per_step", False)])
def test_model_dropout_over_time(mode, shared):
    model = _net([{"fc": 50, "dropout": 0.5}], in_shape=[20], dropout_over_time=mode).train()
    torch.manual_seed(0)
    y = apply_over_time(model.blocks[0].post, torch.ones(20, 50).expand(4, 20, 50))
    assert 0.3 < (y == 0).float().mean() < 0.7
    assert torch.equal(y[0], y[3]) == shared


def test_layer_specs_build_the_documented_nets():
    # event-driven MNIST net (Zhu et al. 2022): 15C5-P2-40C5-P2-FC300-FC10, no padding
    mnist = ConvSNN(IFNode, [{"conv": 15, "kernel": 5, "padding": 0, "avgpool": 2},
                             {"conv": 40, "kernel": 5, "padding": 0, "avgpool": 2}, {"fc": 300}])
    assert mnist.blocks[2].synapse[1].in_features == 40 * 4 * 4 and isinstance(mnist.blocks[0].post[0], nn.AvgPool2d)
    # their CIFAR-10 net: 128C3-128C3-P2-D-256C3x3-P2-D-512C3x3-P2-D-FC2048-D-FC2048-D-FC10
    cifar = ConvSNN(IFNode, [
        {"conv": 128}, {"conv": 128, "maxpool": 2, "dropout": 0.1}, {"conv": 256, "repeat": 3, "maxpool": 2, "dropout": 0.1},
        {"conv": 512, "repeat": 3, "maxpool": 2, "dropout": 0.1}, {"fc": 2048, "dropout": 0.1}, {"fc": 2048, "dropout": 0.1},
    ], in_shape=[3, 32, 32])
    convs = [m for m in cifar.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 128, 256, 256, 256, 512, 512, 512]
    assert sum(isinstance(m, nn.MaxPool2d) for m in cifar.modules()) == 3
    assert sum(isinstance(m, SharedDropout) for m in cifar.modules()) == 5
    assert cifar.blocks[8].synapse[1].in_features == 512 * 4 * 4 and len(cifar.blocks) == 11
    assert all(c.bias is None and c.padding == (1, 1) for c in convs)


def test_hidden_is_keyed_by_neuron_module_paths():
    model = _net()
    out = model(torch.rand(2, 3, 1, 28, 28))
    neurons = [n for n, m in model.named_modules() if isinstance(m, BaseNode)]
    assert list(out.hidden) == neurons == [f"blocks.{i}.neuron" for i in range(4)]
    assert out.spikes.shape == out.membrane.shape == (2, 3, 10)


@pytest.mark.parametrize(
    "layers,kw,needle",
    [([{"conv": 8, "size": 3}], {}, "unknown keys ['size']"),
     ([{"conv": 8, "fc": 8}], {}, "exactly one of conv"),
     ([{"fc": 8}, {"conv": 8}], {}, "conv after fc"),
     ([{"conv": 8, "maxpool": 2}] * 5, {}, "shrinks the [8, 1, 1] input to 0x0"),
     ([{"conv": 8, "norm": "layer"}], {}, "norm must be one of"),
     ([{"conv": 0}], {}, "must be positive"),
     ([{"conv": 8, "stride": 0}], {}, "must be positive"),
     ([{"conv": 8, "dropout": 1.0}], {}, "dropout must be in [0, 1)"),
     ([{"conv": 8}], {"dropout_over_time": "never"}, "dropout_over_time")],
)
def test_bad_layer_specs_are_one_line(layers, kw, needle):
    with pytest.raises((ConfigError, ShapeError)) as err:
        ConvSNN(IFNode, layers, **kw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_wrong_input_shape_names_the_fix():
    with pytest.raises(ShapeError, match=r"set model.in_shape=\[3, 32, 32\]"):
        _net()(torch.rand(2, 1, 3, 32, 32))


def test_needs_a_neuron_factory():
    with pytest.raises(TypeError, match="factory"):
        ConvSNN(LIFNode(), SJ_LAYERS)


def test_equals_spikingjelly_conv_fashion_mnist_net():
    """Same weights → same spikes, gradients and BatchNorm statistics as SpikingJelly's own CSNN."""
    from spikingjelly.activation_based.examples.conv_fashion_mnist import CSNN

    torch.manual_seed(0)
    ref = CSNN(T=4, channels=16).train()
    ours = ConvSNN(IFNode, [{"conv": 16, "norm": "batch", "maxpool": 2}] * 2 + [{"fc": 256}]).train()
    where = {"0": "blocks.0.synapse.0", "1": "blocks.0.synapse.1", "4": "blocks.1.synapse.0",
             "5": "blocks.1.synapse.1", "9": "blocks.2.synapse.1", "11": "blocks.3.synapse.0"}
    with torch.no_grad():
        ref.conv_fc[11].weight.mul_(8)  # make the output layer fire
    ours.load_state_dict({where[k.split(".")[1]] + "." + k.split(".", 2)[2]: v for k, v in ref.state_dict().items()})
    x, y = torch.rand(32, 1, 28, 28), F.one_hot(torch.randint(0, 10, (32,)), 10).float()
    fr = ref(x)
    out = ours(DirectEncoder(4)(x))
    assert 0.05 < fr.mean() < 0.95
    assert torch.equal(out.spikes.mean(0), fr)
    g_ref = torch.autograd.grad(F.mse_loss(fr, y), list(ref.parameters()))
    g = torch.autograd.grad(F.mse_loss(out.spikes.mean(0), y), list(ours.parameters()))
    for a, b in zip(g_ref, g):
        assert a.norm() > 0 and ((a - b).norm() / a.norm()).item() < 1e-4
    for k, v in ref.state_dict().items():
        if "running" in k:
            torch.testing.assert_close(ours.state_dict()[where[k.split(".")[1]] + "." + k.split(".", 2)[2]], v)


def test_bf16_mixed_training_of_model_conv(tmp_path):
    """`trainer.precision=bf16-mixed` with model=conv: convs run in bf16, neurons keep fp32 membranes."""
    import math

    from spikelight.app.cli import train

    from ..conftest import compose_cfg

    model = _net().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(DirectEncoder(2)(torch.rand(4, 1, 28, 28)))
    assert out.spikes.dtype == torch.bfloat16 and out.membrane.dtype == torch.float32
    cfg = compose_cfg("train", [
        "model=conv", "data=digits", "encoder=direct", "T=2", "data.batch_size=16", "trainer.precision=bf16-mixed",
        "trainer.fast_dev_run=true", "accelerator=cpu", "print_config=false", "logger=none", "callbacks=none",
        "model.layers=[{conv: 8, norm: batch, maxpool: 2}, {fc: 32}]",
    ], tmp_path)
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss_step"]) and 0 <= metrics["test/acc"] <= 1
    assert "train/fr/blocks.1.neuron" in metrics


def test_monitors_see_time_major_synapse_and_pooling():
    from spikelight.monitor import Monitor

    model = _net()
    with Monitor(model, names=["blocks.0.synapse", "blocks.0.post", "blocks.2.synapse.1"], record=("input", "output")) as mon:
        model(torch.rand(3, 2, 1, 28, 28))
    assert mon["blocks.0.synapse"]["input"][0].shape == (3, 2, 1, 28, 28)
    assert mon["blocks.0.synapse"]["output"][0].shape == (3, 2, 8, 28, 28)
    assert mon["blocks.0.post"]["output"][0].shape == (3, 2, 8, 14, 14)
    assert mon["blocks.2.synapse.1"]["output"][0].shape == (3, 2, 64)  # Linear runs on [T, B, F]
