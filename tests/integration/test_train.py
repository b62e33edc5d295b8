"""train.py / eval.py end to end through the real CLI (subprocesses, CPU, tiny data)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from ..conftest import make_mnist_files, run_cli

FAST = ["print_config=false", "accelerator=cpu"]


def _metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _error_line(proc) -> str:
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return lines[-1]


def test_fast_dev_run_digits(tmp_path):
    proc = run_cli("train.py", *FAST, "data=digits", "T=8", "trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/acc" in proc.stdout
    saved = (tmp_path / "config_resolved.yaml").read_text()
    assert "DigitsDataModule" in saved and "T: 8" in saved


def test_mnist_datamodule_from_idx_files_learns(tmp_path):
    """The real torchvision MNIST path, on small gz + plain IDX files this test writes."""
    make_mnist_files(tmp_path / "data" / "MNIST" / "raw")
    run_dir = tmp_path / "run"
    proc = run_cli(
        "train.py", *FAST, "data=mnist", f"data.root={tmp_path / 'data'}", "data.download=false",
        "data.val_size=50", "data.batch_size=25", "T=10", "trainer.max_epochs=3", "optimizer.lr=1e-2",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()  # decompressed
    test_acc = [float(r["test/acc"]) for r in _metrics(run_dir) if r.get("test/acc")]
    assert test_acc and test_acc[0] > 0.6, test_acc  # chance is 0.1
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_missing_dataset_is_one_clear_line(tmp_path):
    proc = run_cli("train.py", *FAST, "data=mnist", f"data.root={tmp_path}", "data.download=false",
                   f"hydra.run.dir={tmp_path / 'run'}")
    line = _error_line(proc)
    assert line.startswith("error: MNIST not found") and "data=digits" in line and str(tmp_path) in line


@pytest.mark.parametrize(
    "override,needle",
    [("neuron.tau=0.5", "tau must be > 1"), ("T=0", "T must be a positive integer"),
     ("loss.rate_on=nan", "training loss is nan"), ("neuron.v_reset=2.0", "v_reset"),
     ("model.in_features=100", "set model.in_features=784")],
)
def test_bad_values_are_one_clear_line(tmp_path, override, needle):
    proc = run_cli("train.py", *FAST, "data=digits", "T=4", "trainer.max_epochs=1", override,
                   f"hydra.run.dir={tmp_path}")
    line = _error_line(proc)
    assert line.startswith("error:") and needle in line, line


def test_unknown_surrogate_names_the_options(tmp_path):
    proc = run_cli("train.py", "surrogate=nope", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "surrogate/nope" in proc.stderr and "atan" in proc.stderr


def _weights(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return ckpt["state_dict"], ckpt["epoch"]


def test_resume_matches_uninterrupted_run(tmp_path):
    common = [*FAST, "data=digits", "T=6", "trainer.deterministic=true", "seed=3", "test=false", "logger=none"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli("train.py", *common, "trainer.max_epochs=2", f"hydra.run.dir={full}").returncode == 0
    assert run_cli("train.py", *common, "trainer.max_epochs=1", f"hydra.run.dir={part}").returncode == 0
    w_part, _ = _weights(part)
    resumed = run_cli("train.py", *common, "trainer.max_epochs=2", f"ckpt_path={part / 'checkpoints' / 'last.ckpt'}",
                      f"hydra.run.dir={tmp_path / 'resumed'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    w_full, ep_full = _weights(full)
    w_res, ep_res = _weights(tmp_path / "resumed")
    assert ep_full == ep_res == 1
    assert not torch.equal(w_part["model.fc.weight"], w_full["model.fc.weight"])  # epoch 2 changed them
    for k in w_full:
        assert torch.equal(w_full[k], w_res[k]), k


def test_resuming_a_run_with_max_steps_trains_every_epoch(tmp_path):
    """With trainer.max_steps set, Lightning 2.6 counts every resume as a restart: it ended the checkpoint's epoch
    again without a batch and counted it once more (experiment=lsnn_smnist sets max_steps: its resumes logged
    'epoch 2/20: 31357.4 s', then 'epoch 10/20: 0.0 s'), so each resume cost an epoch of max_epochs
    (spikelight/train/resume.py). Each resume here must train the next epoch, once, and only that."""
    run = tmp_path / "run"
    common = [*FAST, "data=digits", "T=4", "trainer.max_steps=10000", "trainer.limit_train_batches=3",
              "trainer.limit_val_batches=1", "test=false", "logger=csv", "callbacks=[default,epoch_time]"]
    assert run_cli("train.py", *common, "trainer.max_epochs=1", f"hydra.run.dir={run}").returncode == 0
    for epochs in (2, 3, 4):
        proc = run_cli("train.py", *common, f"trainer.max_epochs={epochs}",
                       f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run}")  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    lines = re.findall(r"epoch \d/\d: .*", (run / "train.log").read_text())
    assert [line.split(":")[0] for line in lines] == ["epoch 1/1", "epoch 2/2", "epoch 3/3", "epoch 4/4"], lines
    assert all("train loss" in line for line in lines), lines
    times = [float(r["time/epoch_s"]) for r in _metrics(run) if r.get("time/epoch_s")]
    assert len(times) == 4 and min(times) > 0.01, times
    # every epoch keeps its validation row: with max_steps each resume advances the loggers' step once more, and
    # the third resume cut the csv at the checkpoint's global step (below its epoch's rows)
    assert sorted(int(r["epoch"]) for r in _metrics(run) if r.get("val/acc")) == [0, 1, 2, 3]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["global_step"]) == (3, 12)  # 4 epochs of 3 batches, none twice


def test_a_run_stopped_by_max_steps_inside_an_epoch_resumes_that_epoch(tmp_path):
    """max_steps reached inside an epoch, then resumed with a larger max_steps: the rest of that epoch and the
    epochs after it train, each once (Lightning 2.6 counted the stopped epoch twice: one epoch short)."""
    run = tmp_path / "run"
    common = [*FAST, "data=digits", "T=4", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
              "test=false", "logger=csv", "trainer.max_epochs=3", f"hydra.run.dir={run}"]
    assert run_cli("train.py", *common, "trainer.max_steps=4").returncode == 0  # stops after epoch 1's first batch
    proc = run_cli("train.py", *common, "trainer.max_steps=100", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["global_step"]) == (2, 9)  # 3 epochs of 3 batches
    assert sorted(int(r["epoch"]) for r in _metrics(run) if r.get("val/acc")) == [0, 1, 2]


def test_eval_reloads_checkpoint_with_weights_only(tmp_path):
    run_dir = tmp_path / "train"
    proc = run_cli("train.py", *FAST, "data=digits", "T=8", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the run log: overrides and folder, the model in one line, one line per epoch (issue 23)
    log = (run_dir / "train.log").read_text()
    assert f"overrides: print_config=false accelerator=cpu data=digits T=8 trainer.max_epochs=2; run folder: {run_dir}" in log
    assert "model FCLIF: 7.8 K parameters" in log and "FLOPs" not in proc.stdout + log
    assert re.search(r"per test sample: [\d,]+ SOPs, SNN ≈ [\d,.]+ nJ vs equivalent ANN [\d,.]+ nJ", log)  # (was console only)
    epochs = re.findall(r"epoch (\d)/2: train loss [\d.]+ acc [\d.]+ \| val loss [\d.]+ acc [\d.]+ \(best [\d.]+\) "
                        r"\| firing neuron [\d.]+ / step \| [\d.]+ s", log)
    assert epochs == ["1", "2"], log
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    # data= given on eval's command line: its ${paths.data_dir} resolves in eval's config, not the checkpoint's
    ev = run_cli("eval.py", *FAST, f"ckpt_path={ckpt}", "data=digits", "data.batch_size=90",
                 f"hydra.run.dir={tmp_path / 'eval'}")
    assert ev.returncode == 0, ev.stderr[-3000:]
    acc = [float(r["test/acc"]) for r in _metrics(tmp_path / "eval") if r.get("test/acc")]
    assert acc and acc[0] > 0.5
    assert f"outputs in {tmp_path / 'eval'}" in ev.stdout and (tmp_path / "eval" / "eval.log").stat().st_size > 0
    assert f"overrides: print_config=false accelerator=cpu ckpt_path={ckpt} data=digits" in (tmp_path / "eval" / "eval.log").read_text()
    missing = run_cli("eval.py", *FAST, f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'e2'}")
    assert "does not exist" in _error_line(missing)


def test_default_train_downloads_mnist_or_says_where_to_put_it(tmp_path):
    """`python train.py` with defaults: torchvision download; offline, one clear line."""
    proc = run_cli("train.py", *FAST, f"data.root={tmp_path}", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", f"hydra.run.dir={tmp_path / 'run'}")
    if proc.returncode == 0:  # a machine with network: the real download worked
        assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    else:
        line = _error_line(proc)
        assert line.startswith("error: MNIST download failed")
        assert f"in {tmp_path}/MNIST/raw/" in line and "data=fashion_mnist" in line and "data=digits" in line


def test_multirun_sweep_writes_one_dir_per_job(tmp_path):
    proc = run_cli("train.py", "-m", "neuron.tau=2.0,5.0", *FAST, "data=digits", "T=4", "trainer.max_epochs=1",
                   "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                   "callbacks=none", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, tau in (("0", "2.0"), ("1", "5.0")):
        assert f"tau: {tau}" in (tmp_path / job / "config_resolved.yaml").read_text()
        assert any(r.get("test/acc") for r in _metrics(tmp_path / job))


def test_every_experiment_runs_end_to_end_on_digits(tmp_path):
    """Smoke test of every experiment file through the CLI (offline data, one batch each)."""
    from ..conftest import CONF

    # event-driven experiments (their 11-layer CIFAR net costs minutes on digits here) run one batch each on
    # their own data formats in tests/integration/test_event_driven_experiments.py; those on event data
    # (SHD, SSC, N-MNIST, DVS Gesture: settings of data.bins / data.frames) in test_event_experiments.py
    event_data = ("override /data: shd", "override /data: ssc", "override /data: nmnist", "override /data: dvs_gesture")
    names = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith("event_driven_")
                   and not any(d in p.read_text() for d in event_data))
    # sequence experiments (LSNN) read digits as sequences, row by row to stay fast
    sequence = [n for n in names if "sequence" in (CONF / "experiment" / f"{n}.yaml").read_text()
                or "/model: lsnn" in (CONF / "experiment" / f"{n}.yaml").read_text()]
    images = [n for n in names if n not in sequence]
    for group, data in ((images, ["data=digits", "T=4", "data.batch_size=16"]), (sequence, ["data=sdigits", "data.order=row",
                                                                        "encoder=sequence"])):
        if not group:
            continue
        proc = run_cli("train.py", "-m", f"experiment={','.join(group)}", *FAST, *data, "trainer.fast_dev_run=true",
                       f"hydra.sweep.dir={tmp_path / data[0].replace('=', '_')}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len(re.findall(r"test/acc \d", proc.stdout)) == len(group), group  # each job's summary line
    assert "lsnn_smnist" in sequence and "sj_lif_fc_mnist" in images
