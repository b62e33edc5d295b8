"""Checkpoints and configs written before the layered package (issue 18) still work.

tests/fixtures/legacy/ holds two checkpoints written by the code before the move (their stored
configs name ``spikelight.surrogate.ATan``, today's ``spikelight.core.surrogate.ATan``);
:mod:`spikelight.app.compat` maps such ``_target_`` strings to today's modules when ``eval.py``
rebuilds the model. The accuracies and losses below are what the old code's ``eval.py`` gave.
"""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch
import yaml
from hydra.utils import get_object

from spikelight.app.compat import MOVED, upgrade_target, upgrade_targets
from spikelight.core.moved import MovedModuleFinder

from ..conftest import CONF, ROOT, run_cli

LEGACY = ROOT / "tests" / "fixtures" / "legacy"

# checkpoint -> (printed summary, test/acc, test/loss) of `python eval.py ckpt_path=<it>`, before the move and after.
# fc_lif_digits: `python train.py experiment=demo_digits trainer.max_epochs=1`;
# lsnn_sfa_sdigits: `model=lsnn neuron=sfa data=sdigits model.hidden=12`, 2 training batches.
EXPECTED = {
    "fc_lif_digits.ckpt": ("test/acc 0.8139", 293 / 360, 0.05427466),
    "lsnn_sfa_sdigits.ckpt": ("test/acc 0.0972", 35 / 360, 2.30259609),
}

# every `_target_` (and logging `()`) of conf/ before the move: configs stored in old checkpoints and
# old run folders (.hydra/config.yaml, read when such a run resumes) name these
OLD_CONF_TARGETS = (
    "spikelight.callbacks.EpochTimeCallback", "spikelight.callbacks.GradientFlowCallback",
    "spikelight.callbacks.SpikePlotCallback", "spikelight.callbacks.SynOpsCallback",
    "spikelight.console.RankZero",
    "spikelight.data.CIFAR100DataModule", "spikelight.data.CIFAR10DataModule", "spikelight.data.DigitsDataModule",
    "spikelight.data.FashionMNISTDataModule", "spikelight.data.MNISTDataModule",
    "spikelight.data.SequentialDigitsDataModule", "spikelight.data.SequentialFashionMNISTDataModule",
    "spikelight.data.SequentialMNISTDataModule",
    "spikelight.encoding.DirectEncoder", "spikelight.encoding.LatencyEncoder", "spikelight.encoding.PoissonEncoder",
    "spikelight.encoding.SequenceEncoder", "spikelight.encoding.ThresholdCrossingEncoder",
    "spikelight.faults.AtomicCheckpointIO", "spikelight.faults.PreemptionCheckpoint",
    "spikelight.learning.BPTT", "spikelight.learning.EProp",
    "spikelight.loggers.CSVLogger",
    "spikelight.losses.CECountLoss", "spikelight.losses.CEMembranePerStepLoss", "spikelight.losses.CERateLoss",
    "spikelight.losses.FiringRateRegularizer", "spikelight.losses.MSECountLoss", "spikelight.losses.MSERateLoss",
    "spikelight.losses.ReadoutCrossEntropyLoss", "spikelight.losses.SpikeCountLoss",
    "spikelight.models.ConvSNN", "spikelight.models.EventDrivenSNN", "spikelight.models.FCLIF",
    "spikelight.models.LSNN", "spikelight.models.MLP",
    "spikelight.neurons.ALIFNode", "spikelight.neurons.DualExpNode", "spikelight.neurons.IFNode",
    "spikelight.neurons.LIFNode", "spikelight.neurons.LeakyNode",
    "spikelight.readout.CountReadout", "spikelight.readout.FirstSpikeReadout", "spikelight.readout.MembraneReadout",
    "spikelight.readout.RateReadout", "spikelight.readout.TimeWeightedCountReadout",
    "spikelight.surrogate.ATan", "spikelight.surrogate.FastSigmoid", "spikelight.surrogate.LeakyKReLU",
    "spikelight.surrogate.PiecewiseQuadratic", "spikelight.surrogate.Rectangle", "spikelight.surrogate.Sigmoid",
    "spikelight.surrogate.SoftSign", "spikelight.surrogate.SpikeOperator", "spikelight.surrogate.Triangle",
)


def _targets(node, key: str = ""):
    """``(key, target)`` for every ``_target_`` and ``()`` (logging factory) in a plain nested config."""
    if isinstance(node, dict):
        for k, v in node.items():
            where = f"{key}.{k}" if key else str(k)
            if k in ("_target_", "()") and isinstance(v, str):
                yield where, v
            else:
                yield from _targets(v, where)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{key}[{i}]")


def _stored_config(name: str) -> dict:
    ckpt = torch.load(LEGACY / name, map_location="cpu", weights_only=True)
    return ckpt["hyper_parameters"]["config"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_legacy_checkpoint_evaluates_as_before(name, tmp_path):
    """The real ``python eval.py ckpt_path=<old checkpoint>``: same accuracy and loss as before the move."""
    summary, acc, loss = EXPECTED[name]
    proc = run_cli("eval.py", f"ckpt_path={LEGACY / name}", f"hydra.run.dir={tmp_path}", "print_config=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"[spikelight] {summary}; outputs in {tmp_path}" in proc.stdout, proc.stdout[-2000:]
    with open(tmp_path / "csv" / "metrics.csv") as f:
        row = next(r for r in csv.DictReader(f) if r.get("test/acc"))
    assert float(row["test/acc"]) == pytest.approx(acc, abs=1e-6)
    assert float(row["test/loss"]) == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_legacy_stored_config_needs_the_mapping_and_resolves_with_it(name):
    config = _stored_config(name)
    old = {t for _, t in _targets(config)}
    assert "spikelight.surrogate.ATan" in old  # what this fixture is for
    # the module moved: it imports only through the alias finder of spikelight.core.moved, and the stored
    # targets are rewritten to today's paths
    assert isinstance(importlib.util.find_spec("spikelight.surrogate").loader, MovedModuleFinder)
    assert "spikelight.surrogate.ATan" not in {t for _, t in _targets(upgrade_targets(config))}
    broken = _unresolved(_targets(upgrade_targets(config)))
    assert not broken, "\n".join(broken)
    assert config == _stored_config(name)  # the stored config is copied, not changed in place


@pytest.mark.parametrize(
    "old,new",
    [
        ("spikelight.surrogate.ATan", "spikelight.core.surrogate.ATan"),
        ("spikelight.surrogate", "spikelight.core.surrogate"),
        ("spikelight.callbacks.SpikePlotCallback", "spikelight.train.callbacks.SpikePlotCallback"),
        ("spikelight.callbacks.SynOpsCallback", "spikelight.train.callbacks.SynOpsCallback"),
        ("spikelight.faults.AtomicCheckpointIO", "spikelight.train.faults.AtomicCheckpointIO"),
        ("spikelight.loggers.CSVLogger", "spikelight.train.loggers.CSVLogger"),
        ("spikelight.console.RankZero", "spikelight.app.console.RankZero"),
        # the longest moved prefix wins: event_driven.layers is not event_driven + .layers
        ("spikelight.event_driven.layers.EventLinear", "spikelight.layers.event_driven.synapses.EventLinear"),
        ("spikelight.models.lsnn.LeakyReadout", "spikelight.layers.recurrent.LeakyReadout"),
        # not moved: unchanged
        ("spikelight.models.lsnn.LSNN", "spikelight.models.lsnn.LSNN"),
        ("spikelight.neurons.LIFNode", "spikelight.neurons.LIFNode"),
        ("spikelight.surrogates.ATan", "spikelight.surrogates.ATan"),  # a prefix only at a dot
        ("torch.optim.Adam", "torch.optim.Adam"),
    ],
)
def test_upgrade_target(old, new):
    assert upgrade_target(old) == new


def test_upgrade_targets_changes_only_targets():
    config = {
        "model": {"_target_": "spikelight.models.FCLIF", "neuron": {
            "_target_": "spikelight.neurons.LIFNode", "surrogate": {"_target_": "spikelight.surrogate.ATan"}}},
        "callbacks": [{"_target_": "spikelight.callbacks.SpikePlotCallback", "note": "spikelight.surrogate.ATan"}],
        "trainer": {"plugins": [{"_target_": "spikelight.faults.AtomicCheckpointIO"}], "max_epochs": 3},
        "name": "spikelight.callbacks.X",
    }
    assert upgrade_targets(config) == {
        "model": {"_target_": "spikelight.models.FCLIF", "neuron": {
            "_target_": "spikelight.neurons.LIFNode", "surrogate": {"_target_": "spikelight.core.surrogate.ATan"}}},
        "callbacks": [{"_target_": "spikelight.train.callbacks.SpikePlotCallback", "note": "spikelight.surrogate.ATan"}],
        "trainer": {"plugins": [{"_target_": "spikelight.train.faults.AtomicCheckpointIO"}], "max_epochs": 3},
        "name": "spikelight.callbacks.X",
    }
    assert config["model"]["neuron"]["surrogate"]["_target_"] == "spikelight.surrogate.ATan"  # a copy


def _unresolved(targets) -> list[str]:
    """``where: target: error`` for each ``(where, target)`` that does not import."""
    broken = []
    for where, target in targets:
        try:
            get_object(target)
        except Exception as err:  # noqa: BLE001 - collect them all
            broken.append(f"{where}: {target}: {type(err).__name__}: {err}")
    return broken


def test_every_old_conf_target_resolves_today():
    broken = _unresolved((old, upgrade_target(old)) for old in OLD_CONF_TARGETS)
    assert not broken, "\n".join(broken)


def test_every_moved_module_exists_today():
    broken = _unresolved(MOVED.items())
    assert not broken, "\n".join(broken)


def _installed(target: str) -> bool:
    return importlib.util.find_spec(target.split(".")[0]) is not None


def test_every_conf_target_resolves():
    """No file under conf/ names a class, function or module that does not exist (optional plugins:
    only when installed)."""
    files = sorted(CONF.rglob("*.yaml"))
    assert len(files) > 50, CONF
    targets = [(f"{path.relative_to(ROOT)}: {key}", target) for path in files
               for key, target in _targets(yaml.safe_load(path.read_text()) or {})
               if "${" not in target and _installed(target)]
    assert len(targets) > 50
    broken = _unresolved(targets)
    assert not broken, "\n".join(broken)
