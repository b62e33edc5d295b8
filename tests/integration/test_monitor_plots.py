"""Monitors, synaptic-operation counts, plot callback and plot CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spikelight.encoding import DirectEncoder, PoissonEncoder
from spikelight.models import MLP
from spikelight.monitor import Monitor
from spikelight.neurons import BaseNode, LeakyNode, LIFNode
from spikelight.synops import E_AC_PJ, E_MAC_PJ, SynOpCounter

from ..conftest import run_cli


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
    names = {"output_traces", "output_heatmap", "input_raster", "spike_raster", "firing_rates", "curves"}
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


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def _integer_ticks(ticks) -> bool:
    return all(float(t).is_integer() for t in ticks)


def test_plots_read_at_a_glance():
    """What issue 7 asked of each figure, checked on the figure objects."""
    from matplotlib.image import AxesImage

    from spikelight.train.figures import (
        plot_curves,
        plot_firing_rate_hist,
        plot_input_raster,
        plot_membrane_heatmap,
        plot_output_traces,
        plot_spike_raster,
    )

    g = torch.Generator().manual_seed(0)
    T, S, C = 12, 3, 10
    membrane = torch.randn(T, S, C, generator=g)
    spikes = (membrane > 0.8).float()
    labels, preds = torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4])

    fig = plot_output_traces(membrane, spikes, labels, preds, 1.0)
    axes = fig.axes
    assert len(axes) == 2 * S and all("before reset" in ax.get_ylabel() for ax in axes[0::2])
    assert all(axes[0].get_shared_x_axes().joined(axes[0], ax) for ax in axes)  # paired panels share time ticks
    assert all(ax.get_xlim() == axes[0].get_xlim() for ax in axes)
    _close(fig)

    fig = plot_membrane_heatmap(membrane, labels, preds)
    panels = [ax for ax in fig.axes if any(isinstance(a, AxesImage) for a in ax.get_children())]
    assert [ax.get_title(loc="left") for ax in panels] == [
        "sample 0: label 1, predicted 1", "sample 1: label 2, predicted 2", "sample 2: label 3, predicted 4"]
    _close(fig)

    x_seq = (torch.rand(T, S, 784, generator=g) < 0.2).float()  # Poisson-like 28x28 input
    fig = plot_input_raster(x_seq, labels)
    images = [a.get_array().shape for ax in fig.axes for a in ax.get_images()]
    assert images.count((28, 28)) == S  # the summed images stay
    spans = [abs(ax.get_ylim()[0] - ax.get_ylim()[1]) for ax in fig.axes if ax.get_xlabel() == "time step"]
    assert len(spans) == S and max(spans) <= 28  # one pixel row per sample, not a 784-row blob
    _close(fig)

    layers = {"layers.0.neuron": (torch.rand(T, 1000, generator=g) < 0.1).float(),
              "layers.1.neuron": (torch.rand(T, 10, generator=g) < 0.3).float()}
    fig = plot_spike_raster(layers, "sample 0")
    top, out = fig.axes
    assert "100 of 1000" in top.get_title(loc="left") and abs(top.get_ylim()[0] - top.get_ylim()[1]) == 100
    assert "all shown" in out.get_title(loc="left") and out.get_xlabel() == "time step"
    _close(fig)

    fig = plot_firing_rate_hist({"out": torch.tensor([0.1, 0.1, 0.2, 0.5, 0.0, 0.0, 0.3, 0.1, 0.1, 0.9])})
    assert _integer_ticks(fig.axes[0].get_yticks())  # neuron counts, no 0.5 neurons
    _close(fig)

    steps = [(s, 1.0 / s) for s in range(1, 21)]  # one epoch of 20 steps
    fig = plot_curves([{"epoch": 0, "step": 20, "train/loss": 0.3, "val/loss": 0.2, "val/acc": 0.9}], steps)
    ax_l, ax_a = fig.axes[:2]
    assert max(len(line.get_xdata()) for line in ax_l.lines) == 20  # the per-step training curve
    assert _integer_ticks(ax_l.get_xticks()) and _integer_ticks(ax_a.get_xticks())
    lo, hi = ax_a.get_ylim()
    assert 0 <= lo < 0.9 < hi <= 1.01
    _close(fig)


def test_plot_callback_keeps_a_bounded_per_step_history():
    from spikelight.app.plot import curves_from_checkpoint
    from spikelight.train.callbacks import SpikePlotCallback

    cb = SpikePlotCallback(max_points=8)
    for step in range(1, 21):
        cb._pending.append((step, torch.tensor(float(step))))
    cb._flush_steps()
    assert len(cb.steps) <= 8 and cb.stride == 4
    assert cb.steps[0] == (4, 2.5)  # the mean of steps 1..4, at the last of them
    state = cb.state_dict()
    again = SpikePlotCallback()
    again.load_state_dict(state)
    assert again.steps == cb.steps and again.stride == 4
    ckpt = {"callbacks": {"ModelCheckpoint{}": {}, "SpikePlotCallback": {**state, "history": [{"epoch": 0}]}}}
    assert curves_from_checkpoint(ckpt) == ([{"epoch": 0}], cb.steps)


def test_sequence_direct_and_sparse_figures_show_what_is_there():
    """Issue 23: a one-channel analog sequence (LSNN's pixel by pixel) is a line over time with a few
    time ticks, not a 1-row image on a -0.5..0.5 axis; direct input (the same analog frame at every step)
    is that frame, not constant stripes; a sparse layer's rate is not printed as 0.000."""
    from spikelight.train.figures import plot_input_raster, plot_spike_raster

    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([1, 2, 3])
    pixels = torch.rand(784, 3, 1, generator=g)
    fig = plot_input_raster(pixels, labels)
    assert [len(ax.lines) for ax in fig.axes] == [1, 1, 1] and not any(ax.get_images() for ax in fig.axes)
    assert all(len(ax.lines[0].get_xdata()) == 784 and len(ax.get_xticks()) <= 7 for ax in fig.axes)
    _close(fig)
    fig = plot_input_raster((pixels > 0.8).float(), labels)  # one binary channel: one row, one tick
    assert all(list(ax.get_yticks()) == [0] for ax in fig.axes)
    _close(fig)

    frame = torch.rand(3, 1, 28, 28, generator=g)
    fig = plot_input_raster(frame.expand(4, -1, -1, -1, -1), labels)  # encoder=direct, T=4
    assert len(fig.axes) == 2 * 3  # one panel (and its colour bar) per sample: no second row of stripes
    shown = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert len(shown) == 3 and np.allclose(shown[0], frame[0, 0].numpy())  # the frame, not 4x it
    assert "the same at each of 4 steps" in fig.axes[0].get_title()
    _close(fig)

    sparse = torch.zeros(1000, 220)
    sparse[::10, 0] = 1.0  # 100 spikes in 220,000 neuron-steps
    fig = plot_spike_raster({"rec.neuron": sparse})
    assert "rate 0.000455 / neuron / step" in fig.axes[0].get_title(loc="left")
    _close(fig)


def test_gradient_flow_figure_labels_clear_the_title_and_one_epoch_is_bars():
    """Issue 23: the ×ratio labels sit below the panel's top (they met the title), and one recorded
    epoch is a bar per layer, not points on a -0.04..0.04 epoch axis."""
    from matplotlib.patches import Rectangle

    from spikelight.train.gradient_flow import plot_gradient_flow

    rows = [{"epoch": 0, "layer": f"blocks.{i}.neuron", "grad_out": 0.04 * 0.85 ** (4 - i),
             "grad_in": 0.04 * 0.85 ** (5 - i), "steps": 10} for i in range(5)]
    fig = plot_gradient_flow(rows)
    left, right = fig.axes
    fig.canvas.draw()
    top = left.get_window_extent().y1
    labels = [t for t in left.texts if t.get_text().startswith("×")]
    assert len(labels) == 5 and all(t.get_window_extent().y1 < top for t in labels)
    bars = [p for p in right.patches if isinstance(p, Rectangle)]
    assert len(bars) == 5 and right.get_title().endswith("(epoch 1)") and not right.lines[1:]
    _close(fig)
    fig = plot_gradient_flow([{**r, "epoch": e} for e in range(3) for r in rows])
    assert [list(line.get_xdata()) for line in fig.axes[1].lines[:5]] == [[1, 2, 3]] * 5  # epochs from 1
    _close(fig)
