"""The experiments on event data (lsnn_shd, lsnn_ssc, conv_nmnist, conv_dvs_gesture) end to end on small
files in tonic's layouts (tests/event_data.py): one batch each of training, validation and test, the
converted recordings cached, the input figures drawn. Camera experiments run through train.py (one
``-m`` sweep); the audio ones in-process (:func:`spikelight.app.cli.train`, what train.py calls), with
``learning=eprop`` too, and ``model=event_driven`` on N-MNIST frames."""

from __future__ import annotations

import re

import pytest

from spikelight.app.cli import train

from ..conftest import compose_cfg, run_cli
from ..event_data import write_event_dataset

pytest.importorskip("tonic")

FAST = ["print_config=false", "accelerator=cpu", "trainer.fast_dev_run=true", "data.download=false"]


def test_camera_experiments_through_train_py(tmp_path):
    root = tmp_path / "data"
    for name in ("nmnist", "dvs_gesture"):
        write_event_dataset(root, name, sizes={"train": 8, "test": 4})
    sweep = tmp_path / "sweep"
    # 32x32 frames, 4 bins, batch 2: one step of the 5-conv DVS net at 128x128 x 16 bins costs a minute here
    # (++: a sweep first composes its config without the swept experiment, whose data has no frames)
    proc = run_cli("train.py", "-m", "experiment=conv_nmnist,conv_dvs_gesture", *FAST, f"data.root={root}",
                   "data.batch_size=2", "++data.frames.n_event_bins=4", "++data.frames.width=32",
                   "++data.frames.height=32", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(re.findall(r"test/acc \d", proc.stdout)) == 2, proc.stdout[-2000:]
    for job, folder in (("0", "NMNIST"), ("1", "DVSGesture")):
        saved = (sweep / job / "config_resolved.yaml").read_text()
        assert "FramesEncoder" in saved and "n_event_bins: 4" in saved and "in_shape:\n  - 2\n  - 32\n  - 32" in saved
        assert (sweep / job / "plots" / "input_raster.png").exists()
        assert list((root / "cache" / folder).glob("*/train/*.pt")), folder


SMALL = ["model.hidden=64", "callbacks=none"]  # the plots are drawn once, for lsnn_shd


@pytest.mark.parametrize("overrides", [
    ["experiment=lsnn_shd"],
    ["experiment=lsnn_ssc", *SMALL],
    ["experiment=lsnn_shd", "learning=eprop", *SMALL],
    ["data=nmnist", "model=event_driven", "encoder=frames", "data.frames.n_time_bins=4", "data.frames.width=17",
     "data.frames.height=17", "data.val_size=2", "callbacks=none"],
], ids=["lsnn_shd", "lsnn_ssc", "lsnn_shd-eprop", "event_driven-nmnist"])
def test_experiments_in_process(tmp_path, overrides):
    root = tmp_path / "data"
    for name in ("shd", "ssc", "nmnist"):
        write_event_dataset(root, name, sizes={"train": 8, "valid": 4, "test": 4})
    cfg = compose_cfg("train", [*overrides, *FAST, f"data.root={root}", "data.batch_size=4"], tmp_path / "run")
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["train/loss_epoch"] == metrics["train/loss_epoch"]
    assert (tmp_path / "run" / "plots" / "input_raster.png").exists() == ("callbacks=none" not in overrides)
    if overrides[0].startswith("experiment=lsnn"):
        assert cfg.model.in_features == (140 if "ssc" in overrides[0] else 700)  # filled in from the data
