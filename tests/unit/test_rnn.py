"""model=lstm / model=gru: the non-spiking baselines on the LSNN's sequences, through the same trainer."""

from __future__ import annotations

import math

import pytest
import torch

from spikelight.app.cli import train
from spikelight.core.errors import ConfigError
from spikelight.models import RNNClassifier

from ..conftest import compose_cfg

FAST = ["trainer.fast_dev_run=true", "accelerator=cpu", "print_config=false", "logger=none", "callbacks=none",
        "data.batch_size=8"]  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_logits_every_step_and_gradients_reach_every_weight(cell):
    torch.manual_seed(0)
    model = RNNClassifier(cell, in_features=3, hidden=16, num_layers=2, num_classes=5, dropout=0.1)
    out = model(torch.randn(9, 4, 3))
    assert out.spikes is None and out.membrane.shape == (9, 4, 5) and out.hidden == {}
    out.membrane[-1].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # the state continues a sequence: two halves give the whole
    model.eval()
    x = torch.randn(10, 2, 3)
    whole, first = model(x), model(x[:4])
    torch.testing.assert_close(torch.cat([first.membrane, model(x[4:], first.state).membrane]), whole.membrane)


def test_bad_settings_are_one_line():
    with pytest.raises(ConfigError, match="model.cell must be one of"):
        RNNClassifier("rnn")
    with pytest.raises(ConfigError, match="model.hidden must be a positive integer"):
        RNNClassifier("lstm", hidden=0)


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_the_commands_train_on_sequences(model, tmp_path):
    cfg = compose_cfg("train", [f"model={model}", "data=sdigits", *FAST], tmp_path)
    assert cfg.model.in_features is None  # follows the data
    metrics = train(cfg)
    assert math.isfinite(metrics["test/loss"]) and "test/acc" in metrics


def test_spike_readouts_are_refused_for_a_model_that_does_not_spike(tmp_path):
    cfg = compose_cfg("train", ["model=lstm", "data=sdigits", "readout=count", *FAST], tmp_path)
    with pytest.raises(ConfigError, match="needs output spikes"):
        train(cfg)
