"""Monitors, synaptic-operation counts, plot callback and plot CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelight.encoding import DirectEncoder, PoissonEncoder
from spikelight.models import MLP
from spikelight.monitor import Monitor
from spikelight.neurons import BaseNode, LeakyNode, LIFNode
from spikelight.synops import E_AC_PJ, E_MAC_PJ, SynOpCounter

from .conftest import run_cli


def _model() -> MLP:
    torch.manual_seed(0)
    return MLP(lambda: LIFNode(tau=2.0), in_features=20, hidden=[16, 12], num_classes=5)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_monitor_records_T_steps_of_right_shape_and_removes_hooks():
    model, T, B = _model(), 7, 3
    x = (torch.rand(T, B, 20) * 3).requires_grad_()
    before = _hooks(model)
    with Monitor(model, names=["layers.1.neuron"], types=[nn.Linear],
                 record=("input", "output", "spikes", "membrane", "grad_output", "grad_input")) as mon:
        assert _hooks(model) == before + 4  # layers.1.neuron + three fc
        out = model(x)
        (out.membrane.sum() + (out.hidden["layers.1.neuron"] * torch.arange(12.0)).sum()).backward()
    assert _hooks(model) == before
    assert set(mon.layers) == {"layers.1.neuron", "layers.0.fc", "layers.1.fc", "layers.2.fc"}
    rec = mon["layers.1.neuron"]
    assert len(mon.steps("layers.1.neuron", "spikes")) == T
    assert all(s.shape == (B, 12) for s in mon.steps("layers.1.neuron", "membrane"))
    torch.testing.assert_close(rec["spikes"][0], out.hidden["layers.1.neuron"])
    assert rec["input"][0].shape == rec["grad_input"][0].shape == rec["grad_output"][0].shape == (T, B, 12)
    torch.testing.assert_close(mon["layers.0.fc"]["input"][0], x.detach())
    assert mon["layers.2.fc"]["output"][0].shape == (T, B, 5)
    # after removal nothing more is recorded
    model(x)
    assert len(rec["spikes"]) == 1


def test_monitor_default_is_every_neuron_and_bad_names_fail():
    model = _model()
    mon = Monitor(model)
    assert list(mon.layers) == ["layers.0.neuron", "layers.1.neuron", "layers.2.neuron"]
    assert all(isinstance(m, BaseNode) for m in mon.layers.values())
    mon.remove()
    with pytest.raises(ValueError, match="no layer named"):
        Monitor(model, names=["layers.9.neuron"])
    with Monitor(model, names=["layers.*.neuron"]) as m2:
        assert len(m2.layers) == 3


def test_synops_count_spikes_times_fanout():
    torch.manual_seed(0)
    model = MLP(lambda: LeakyNode(beta=0.9), in_features=30, hidden=[40], num_classes=10)
    x = torch.rand(6, 30)
    with SynOpCounter(model) as counter:
        x_seq = PoissonEncoder(T=8)(x)
        out = model(x_seq)
    hidden_spikes = out.hidden["layers.0.neuron"].sum().item()
    assert hidden_spikes > 0
    expected = (x_seq.sum().item() * 40 + hidden_spikes * 10) / 6
    c = counter.count
    assert c.samples == 6 and c.sops_per_sample == pytest.approx(expected)
    assert c.macs == 0
    assert c.ann_macs / 6 == 30 * 40 + 40 * 10
    assert c.snn_energy_nj == pytest.approx(expected * E_AC_PJ / 1e3)
    assert c.ann_energy_nj == pytest.approx((30 * 40 + 40 * 10) * E_MAC_PJ / 1e3)
    # analog (direct) input: MACs at every step, even through the one-step shortcut
    with SynOpCounter(model) as counter:
        out = model(DirectEncoder(T=8)(x))
    assert counter.count.macs / 6 == 8 * 30 * 40
    assert counter.count.sops_per_sample == pytest.approx(out.hidden["layers.0.neuron"].sum().item() * 10 / 6)
    assert _hooks(model) == 0


def test_plot_callback_writes_pngs_and_plot_cli(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("train.py", "print_config=false", "accelerator=cpu", "data=digits", "model=mlp", "model.hidden=[32]",
                   "neuron=leaky", "T=6", "trainer.fast_dev_run=true", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {"output_traces", "output_heatmap", "input_raster", "firing_rates", "curves"}
    pngs = {p.stem: p for p in (run_dir / "plots").glob("*.png")}
    assert set(pngs) == names
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs.values())
    assert "SOPs" in proc.stdout and "test/sops_per_sample" in proc.stdout
    # fast_dev_run keeps no checkpoint; a 1-epoch run does, and the CLI redraws from it
    run2 = tmp_path / "run2"
    proc = run_cli("train.py", "print_config=false", "accelerator=cpu", "data=digits", "T=6", "trainer.max_epochs=1",
                   "callbacks=none", "+callbacks.model_checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
                   f"+callbacks.model_checkpoint.dirpath={run2 / 'checkpoints'}", "+callbacks.model_checkpoint.save_last=true",
                   f"hydra.run.dir={run2}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = run_cli("-m", "spikelight.plot", str(run2), "--samples", "2")
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert {p.stem for p in (run2 / "plots").glob("*.png")} == names
    missing = run_cli("-m", "spikelight.plot", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: no checkpoint")


@pytest.mark.parametrize("logger", ["wandb", "tensorboard"])
def test_plots_reach_image_loggers(tmp_path, logger):
    """wandb with no account goes offline by itself; both loggers receive the figures."""
    env = {"HOME": str(tmp_path / "home"), "WANDB_MODE": None, "WANDB_API_KEY": None}
    proc = run_cli("train.py", "print_config=false", "accelerator=cpu", "data=digits", "T=4", f"logger={logger}",
                   "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                   "trainer.limit_test_batches=1", f"hydra.run.dir={tmp_path}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if logger == "wandb":
        assert "logging offline" in proc.stdout
        images = list(tmp_path.glob("wandb/offline-run-*/files/media/images/plots/*.png"))
        assert {p.name.split("_")[0] for p in images} >= {"output", "input", "firing", "curves"}
    else:
        events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
        assert events and sum(e.stat().st_size for e in events) > 50_000  # figures are in the event file
