"""The event-driven experiments end to end (fast_dev_run: the gain init and one batch of each split) on
small generated files in the real on-disk formats (Fashion-MNIST's runs in the README walk); the
gradient-flow figure from the plot CLI."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import datasets

from spikelight.app.cli import train
from spikelight.train.gradient_flow import read_gradient_flow

from ..conftest import compose_cfg, make_mnist_files
from ..unit.test_cifar import make_cifar


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The event-driven time loops are many small elementwise ops: on this shared 2-core machine a second
    torch thread makes each wait for the slower core (the CIFAR-10 case took 15-80 s with 2 threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


COMMON = ["trainer.fast_dev_run=true", "accelerator=cpu", "print_config=false", "logger=csv", "callbacks=none",
          "data.download=false"]


# event_driven_fmnist also trains end to end in the README walk (tests/integration/test_readme.py); CIFAR-100 is CIFAR-10's
# network with 100 outputs, so it runs here with one conv layer (its data, T, loss, init and optimiser as configured)
@pytest.mark.parametrize("exp, layers", [
    ("event_driven_mnist", 4), ("event_driven_cifar10", 11), ("event_driven_cifar100", 2),
])
def test_event_driven_experiment_fast_dev_run(exp, layers, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    if exp == "event_driven_mnist":
        make_mnist_files(data / "MNIST" / "raw", n_train=60, n_test=20)
        extra = ["data.batch_size=10"]
    else:
        make_cifar(data, monkeypatch, cls=datasets.CIFAR100 if exp.endswith("100") else datasets.CIFAR10)
        extra = ["data.batch_size=2", "T=2"]  # fewer images and steps (CPU)
        if exp.endswith("100"):
            extra.append("model.layers=[{conv: 16, kernel: 3, padding: 1, pool: 2, dropout: 0.1}]")
    run = tmp_path / "run"
    cfg = compose_cfg("train", [f"experiment={exp}", f"data.root={data}", *COMMON, *extra], run)
    assert cfg.model._target_.endswith("EventDrivenSNN") and cfg.trainer.gradient_clip_val == 1.0
    assert cfg.num_classes == (100 if exp.endswith("100") else 10)
    metrics = train(cfg)
    out = capsys.readouterr().out
    assert "data-driven init on one batch" in out
    assert 0 <= metrics["test/acc"] <= 1 and math.isfinite(metrics["train/loss_step"])
    assert metrics[f"train/fr/blocks.{layers - 1}.neuron"] >= 0 and f"train/fr/blocks.{layers}.neuron" not in metrics
    rows = read_gradient_flow(run / "gradient_flow.csv")
    assert [r["layer"] for r in rows] == [f"blocks.{i}.neuron" for i in range(layers)]
    assert rows[0]["grad_in"] is None and all(r["grad_in"] is not None and r["steps"] == 1 for r in rows[1:])
    assert (run / "plots" / "gradient_flow.png").exists()


def test_plot_cli_draws_the_gradient_flow(tmp_path):
    """`python -m spikelight.plot <run_dir>` redraws the gradient-flow figure from the run's csv."""
    from spikelight.app.plot import main

    data = tmp_path / "data"
    make_mnist_files(data / "MNIST" / "raw", n_train=120, n_test=40)
    run = tmp_path / "run"
    cfg = compose_cfg("train", [
        "model=event_driven_mlp", "data=mnist", f"data.root={data}", "data.val_size=20", "data.batch_size=20",
        "trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
        "accelerator=cpu", "print_config=false", "logger=csv", "callbacks=default", "data.download=false",
    ], run)
    train(cfg)
    rows = read_gradient_flow(run / "gradient_flow.csv")
    assert sorted({r["epoch"] for r in rows}) == [0, 1] and len(rows) == 4
    (run / "plots" / "gradient_flow.png").unlink()
    assert main([str(run), "--samples", "1"]) == 0
    assert (run / "plots" / "gradient_flow.png").exists() and (run / "plots" / "curves.png").exists()
