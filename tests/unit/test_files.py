"""Files replaced whole or not at all (spikelight.core.files) and the writers built on it: a process that dies
while writing a checkpoint, metrics.csv or results.json leaves the previous file whole."""

from __future__ import annotations

import csv

import pytest
import torch

from spikelight.app.rundir import continue_metrics_csv
from spikelight.core.files import atomic_open, remove_leftovers, replaced_atomically
from spikelight.train.faults import AtomicCheckpointIO
from spikelight.train.loggers import CSVLogger


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_the_new_file_takes_the_path_only_when_it_is_whole(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with atomic_open(path) as f:
        f.write("new")
        f.flush()
        assert path.read_text() == "old"  # written in place, a reader would see "new" (or half of it) here
    assert path.read_text() == "new" and _leftovers(tmp_path) == []


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,val/acc\n9,0.5\n")
    with pytest.raises(RuntimeError, match="killed"), atomic_open(path, newline="") as f:
        f.write("step,val/acc,val/loss\n")
        raise RuntimeError("killed while rewriting")
    assert path.read_text() == "step,val/acc\n9,0.5\n" and _leftovers(tmp_path) == []


def test_nothing_written_is_an_error_not_an_empty_file(tmp_path):
    path = tmp_path / "native.so"
    path.write_bytes(b"old")
    with pytest.raises(FileNotFoundError, match="nothing was written"), replaced_atomically(path, durable=False):
        pass  # a compiler that exited 0 without output
    assert path.read_bytes() == b"old"


def test_appending_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', not 'a'"), atomic_open(tmp_path / "x", "a"):
        pass


def test_the_parent_folder_is_created_and_the_write_is_durable(tmp_path, monkeypatch):
    synced = []
    real = __import__("os").fsync
    monkeypatch.setattr("spikelight.core.files.os.fsync", lambda fd: synced.append(fd) or real(fd))
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with atomic_open(path, "wb") as f:
        f.write(b"x")
    assert path.read_bytes() == b"x" and len(synced) == 2  # the file, then its folder (the rename)
    synced.clear()
    with atomic_open(path, "wb", durable=False) as f:
        f.write(b"y")
    assert synced == []


def test_a_checkpoint_save_that_fails_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)

    def dies(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr("spikelight.train.faults.torch.save", dies)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    assert torch.load(path, weights_only=True) == {"global_step": 1} and _leftovers(tmp_path) == []


def test_a_new_column_rewrites_metrics_csv_whole_or_not_at_all(tmp_path, monkeypatch):
    """Lightning rewrites metrics.csv in place when a column appears: killed in that instant, every row was lost."""
    logger = CSVLogger(save_dir=tmp_path, name="csv", version="", flush_logs_every_n_steps=1000)
    logger.log_metrics({"val/acc": 0.5}, step=9)
    logger.save()
    path = tmp_path / "csv" / "metrics.csv"
    before = path.read_text()
    logger.log_metrics({"val/acc": 0.6, "time/epoch_s": 410.0}, step=19)  # a new column

    def dies(self, rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", dies)
    with pytest.raises(KeyboardInterrupt):
        logger.save()
    assert path.read_text() == before and _leftovers(path.parent) == []
    monkeypatch.undo()
    resumed = CSVLogger(save_dir=tmp_path, name="csv", version="", append=True)  # the process was gone: a resume
    resumed.log_metrics({"val/acc": 0.6, "time/epoch_s": 410.0}, step=19)
    resumed.save()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["val/acc"], r["time/epoch_s"]) for r in rows] == [("9", "0.5", ""), ("19", "0.6", "410.0")]


def test_a_resume_drops_the_row_a_killed_process_was_appending(tmp_path):
    """The last row without its line end was cut short (here 0.4375 → 0.43): the resume must not keep it."""
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,val/acc\r\n0,9,0.5\r\n1,19,0.6\r\n2,29,0.43", newline="")
    assert continue_metrics_csv(path, step=29) == 2
    assert path.read_bytes().decode() == "epoch,step,val/acc\r\n0,9,0.5\r\n1,19,0.6\r\n"
    path.write_text("epoch,step,val/acc\r\n0,9,0.5\r\n", newline="")  # whole rows are all kept
    assert continue_metrics_csv(path, step=29) == 1


def test_a_failed_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    """A delayed write error (network file systems report it at fsync) must not put an unsafe file in place."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, path)

    def eio(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("spikelight.core.files.os.fsync", eio)
    with pytest.raises(OSError, match="Input/output error"):
        AtomicCheckpointIO().save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"global_step": 1} and _leftovers(tmp_path) == []


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    path.chmod(0o664)
    with atomic_open(path) as f:
        f.write("new")
    assert path.stat().st_mode & 0o777 == 0o664


def test_the_temporary_files_of_killed_processes_are_removed(tmp_path):
    """At a resume: the files of this machine's processes that are gone (and this process's own: a restarted
    container reuses process ids) go; a live process's, another machine's and files not ours stay."""
    import os
    import subprocess
    import sys

    from spikelight.core.files import _HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        gone = tmp_path / f".last.ckpt.{_HOST}.{int(dead.stdout)}.ab12cd34.tmp"
        mine = tmp_path / f".interval.ckpt.{_HOST}.{os.getpid()}.ab12cd34.tmp"
        writing = tmp_path / f".results.json.{_HOST}.{live.pid}.ab12cd34.tmp"
        elsewhere = tmp_path / f".last.ckpt.other-node.{int(dead.stdout)}.ab12cd34.tmp"
        other = tmp_path / ".notes.tmp"  # not one of ours
        for f in (gone, mine, writing, elsewhere, other):
            f.write_bytes(b"x")
        assert sorted(remove_leftovers(tmp_path)) == sorted([gone, mine])
        assert writing.exists() and elsewhere.exists() and other.exists()
    finally:
        live.kill()
        live.wait()
