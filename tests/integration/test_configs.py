"""Every option of every config group composes and instantiates."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from spikelight.app.checks import check_accelerator
from spikelight.app.cli import build_callbacks, build_datamodule, build_loggers, build_module, fill_in_features
from spikelight.core.errors import ConfigError
from spikelight.core.surrogate import Surrogate
from spikelight.data import ClassificationDataModule
from spikelight.encoding import Encoder, SequenceEncoder, ThresholdCrossingEncoder
from spikelight.losses import SpikeLoss
from spikelight.neurons import BaseNode
from spikelight.readout import Readout

from ..conftest import CONF, compose_cfg

BASE = ["data=digits", "trainer.max_epochs=1"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_groups_exist():
    for group in ("model", "neuron", "surrogate", "encoder", "readout", "loss", "data", "optimizer", "scheduler",
                  "accelerator", "trainer", "logger", "callbacks", "experiment"):
        assert options(group), group


@pytest.mark.parametrize("opt", options("surrogate"))
def test_surrogates(opt, tmp_path):
    cfg = compose_cfg("train", [*BASE, f"surrogate={opt}"], tmp_path)
    s = instantiate(cfg.surrogate)
    assert isinstance(s, Surrogate)
    x = torch.linspace(-1, 1, 9, requires_grad=True)
    s(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("opt", options("neuron"))
def test_neurons(opt, tmp_path):
    cfg = compose_cfg("train", [*BASE, f"neuron={opt}", "surrogate=sigmoid"], tmp_path)
    node = instantiate(cfg.neuron)()
    assert isinstance(node, BaseNode) and type(node.surrogate).__name__ == "Sigmoid"
    assert node(torch.rand(4, 2, 3)).spikes.shape == (4, 2, 3)


@pytest.mark.parametrize("group,cls", [("encoder", (Encoder, SequenceEncoder, ThresholdCrossingEncoder)),
                                       ("readout", Readout), ("loss", SpikeLoss)])
def test_encoders_readouts_losses(group, cls, tmp_path):
    for opt in options(group):
        cfg = compose_cfg("train", [*BASE, f"{group}={opt}"], tmp_path)
        assert isinstance(instantiate(cfg[group]), cls), opt


def _build_and_run(cfg, batch: int = 3):
    """Build the module as train.py does and run it on a random batch of the data's shape."""
    dm = build_datamodule(cfg)
    fill_in_features(cfg, dm)
    module = build_module(cfg)
    steps = getattr(dm, "seq_len", None)
    features = getattr(dm, "num_features", None)
    if steps:  # sequences [B, T, F]; camera event frames [B, T, C, H, W]
        x = torch.rand(batch, steps, *((features,) if features else dm.in_shape))
    else:
        x = torch.rand(batch, *getattr(dm, "in_shape", (1, 28, 28)))
    out = module(x)
    T = steps + getattr(module.encoder, "cue_steps", 0) if steps else cfg.T
    return module, out, T


@pytest.mark.parametrize("group", ["model", "optimizer", "scheduler"])
def test_model_optimizer_scheduler(group, tmp_path):
    for opt in options(group):
        cfg = compose_cfg("train", [*BASE, f"{group}={opt}"] if group != "model" else [f"model={opt}"], tmp_path)
        module, out, T = _build_and_run(cfg)
        opt_conf = module.configure_optimizers()
        optimizer = opt_conf["optimizer"] if isinstance(opt_conf, dict) else opt_conf
        assert isinstance(optimizer, torch.optim.Optimizer), opt
        assert out.membrane.shape == (T, 3, 10), opt
        assert out.spikes is None or out.spikes.shape == (T, 3, 10), opt


@pytest.mark.parametrize("opt", options("data"))
def test_data(opt, tmp_path):
    cfg = compose_cfg("train", [f"data={opt}"], tmp_path)
    dm = instantiate(cfg.data)
    assert isinstance(dm, ClassificationDataModule)
    # num_classes follows the data
    assert dm.num_classes == cfg.num_classes == {"cifar100": 100, "shd": 20, "ssc": 35, "dvs_gesture": 11}.get(opt, 10)
    assert tuple(cfg.data.get("in_shape", dm.in_shape)) == tuple(dm.in_shape)  # image data states its shape


@pytest.mark.parametrize("opt", options("accelerator"))
def test_accelerators(opt, tmp_path):
    cfg = compose_cfg("train", [*BASE, f"accelerator={opt}"], tmp_path)
    assert cfg.trainer.accelerator in ("auto", "cpu", "gpu")
    if opt == "gpu" and not torch.cuda.is_available():  # refused in one line, not Lightning's traceback
        with pytest.raises(ConfigError, match="no usable GPU"):
            check_accelerator(cfg.trainer)
        return
    check_accelerator(cfg.trainer)
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == 1
    if opt == "ddp":  # GPUs with NCCL, or CPU processes with gloo: never hard-codes the GPU
        assert type(trainer.strategy).__name__ == "DDPStrategy"
        assert trainer.accelerator.__class__.__name__ == ("CUDAAccelerator" if torch.cuda.is_available()
                                                          else "CPUAccelerator")


def test_loggers_and_callbacks(tmp_path):
    for opt in options("logger"):
        cfg = compose_cfg("train", [*BASE, f"logger={opt}"], tmp_path)
        loggers = build_loggers(cfg)
        assert len(loggers) == (0 if opt == "none" else 1), opt
    for opt in options("callbacks"):
        cfg = compose_cfg("train", [*BASE, f"callbacks={opt}"], tmp_path)
        names = {type(c).__name__ for c in build_callbacks(cfg, has_logger=True)}
        # Lightning's model summary is always our one line (no 'Total FLOPs: 0' table), whatever the group adds
        assert "ModelSummaryLine" in names, opt
        names.discard("ModelSummaryLine")
        expected = {
            "default": {"ModelCheckpoint", "PreemptionCheckpoint", "IntervalCheckpoint", "LearningRateMonitor",
                        "RichProgressBar", "SpikePlotCallback", "SynOpsCallback", "EpochSummary"},
            "eval": {"RichProgressBar", "SpikePlotCallback", "SynOpsCallback"},
            "none": set(),
        }
        if opt in expected:
            assert names == expected[opt], opt
        else:  # one file = one callback
            assert len(names) == 1, opt
    cfg = compose_cfg("train", [*BASE, "callbacks=default"], tmp_path)
    assert "LearningRateMonitor" not in {type(c).__name__ for c in build_callbacks(cfg, has_logger=False)}


@pytest.mark.parametrize("opt", options("experiment"))
def test_experiments(opt, tmp_path):
    # the event-driven CIFAR net (11 layers, up to 512 channels) at its T=12/16 costs ~15 s a forward here
    fewer_steps = ["T=2"] if opt.startswith("event_driven_cifar") else []
    if opt == "conv_dvs_gesture":  # its 128x128 frames x 16 bins cost seconds a forward here: 32x32, 4 bins
        fewer_steps = ["data.frames.width=32", "data.frames.height=32", "data.frames.n_event_bins=4"]
    cfg = compose_cfg("train", [f"experiment={opt}", *fewer_steps], tmp_path)
    _, out, T = _build_and_run(cfg, batch=2)
    assert out.membrane.shape[:2] == (T, 2)


def test_sj_experiment_is_the_tutorial(tmp_path):
    cfg = compose_cfg("train", ["experiment=sj_lif_fc_mnist"], tmp_path)
    m = build_module(cfg)
    assert cfg.T == 100 and cfg.data.batch_size == 128 and cfg.trainer.max_epochs == 100
    assert m.model.fc.bias is None and m.model.fc.in_features == 784
    n = m.model.neuron
    assert (n.tau, n.v_threshold, n.v_reset, n.decay_input) == (2.0, 1.0, 0.0, True)
    assert type(n.surrogate).__name__ == "ATan" and type(m.encoder).__name__ == "PoissonEncoder"
    assert type(m.loss_fn).__name__ == "MSERateLoss" and type(m.readout).__name__ == "RateReadout"
    assert m.configure_optimizers().defaults["lr"] == 1e-3


def test_eval_config_composes(tmp_path):
    cfg = compose_cfg("eval", ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.get("data") is None and cfg.ckpt_path == "x.ckpt"
