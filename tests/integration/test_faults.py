"""Issue 14: runs survive faults, bad input is one line, only trusted code loads.

Faults are injected into real runs (SIGKILL / SIGTERM / SIGUSR1 mid-epoch, a kill
during a checkpoint write, NaN gradients); bad inputs go through the same path as
``python train.py ...`` (preflight, then the run) in this process, which is much
cheaper than a subprocess per case.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from spikelight.app.checks import preflight
from spikelight.app.cli import load_checkpoint_config, run_task, train
from spikelight.app.rundir import FAILED
from spikelight.core.errors import CheckpointError, ConfigError, UntrustedTargetError
from spikelight.data.mnist import write_idx
from spikelight.train.faults import AtomicCheckpointIO

from ..conftest import compose_cfg

FAST = ["print_config=false", "accelerator=cpu", "data=digits", "T=4"]
TINY = [*FAST, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "logger=none", "callbacks=none"]
FAULTS = {"SPIKELIGHT_TRUSTED_TARGETS": "tests"}


def run_in_process(tmp_path: Path, *args: str) -> str:
    """``python train.py args`` in this process: the one error line it prints ('' if it ran).
    Fails the test on a traceback (any exception other than a one-line exit)."""
    import contextlib
    import io

    try:
        argv = preflight(list(args), "train")
    except ConfigError as err:
        return f"error: {err}"
    cfg = compose_cfg("train", argv, tmp_path / "run")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            run_task(train, cfg)
        except SystemExit as exit_:
            assert exit_.code == 2, err.getvalue()
            lines = err.getvalue().strip().splitlines()
            assert len(lines) == 1, lines
            return lines[0]
    return ""


# --- 2. bad input: one line naming the fix -------------------------------------------
def _mnist_dir(root: Path, truncate: bool) -> Path:
    raw = root / "MNIST" / "raw"
    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 60), ("t10k", 20)):
        write_idx(raw / f"{split}-images-idx3-ubyte", (torch.rand(n, 28, 28, generator=gen) * 255).to(torch.uint8))
        write_idx(raw / f"{split}-labels-idx1-ubyte", torch.arange(n) % 10)
    if truncate:
        f = raw / "train-images-idx3-ubyte"
        f.write_bytes(f.read_bytes()[:5000])
    return root


def _foreign_checkpoint(path: Path) -> Path:
    """A Lightning-style checkpoint of another model (a 3-class head)."""
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(3, 784)}, "global_step": 0, "epoch": 0,
                "hyper_parameters": {"config": {"model": {"_target_": "spikelight.models.FCLIF"}}}}, path)
    return path


BAD_INPUTS = [
    # (what, extra arguments (may use {tmp}), text the line must contain)
    ("unknown option", ["nueron.tau=2"], "did you mean 'neuron.tau=2'"),
    ("tau", ["neuron.tau=-1"], "neuron.tau=-1 is out of range"),
    ("tau in (0, 1]", ["neuron.tau=0.5"], "tau must be > 1"),
    ("T", ["T=0"], "T=0 is out of range"),
    ("beta", ["neuron=leaky", "neuron.beta=1.5"], "beta (decay per step) must be in (0, 1)"),
    ("threshold", ["neuron.v_threshold=0"], "neuron.v_threshold=0 is out of range"),
    ("learning rate", ["optimizer.lr=-1e-3"], "optimizer.lr=-0.001 is out of range"),
    ("batch size", ["data.batch_size=2.5"], "data.batch_size=2.5 is out of range"),
    ("dropout", ["model=lsnn", "data=sdigits", "model.dropout=1.5"], "model.dropout=1.5 is out of range"),
    ("epochs", ["trainer.max_epochs=0"], "trainer.max_epochs=0 is out of range"),
    ("val_size > data (in setup)", ["data.val_size=5000"], "data.val_size=5000 leaves no training data"),
    ("dataset missing", ["data=mnist", "data.root={tmp}/empty", "data.download=false"], "MNIST not found"),
    ("dataset truncated", ["data=mnist", "data.root={tmp}/trunc", "data.download=false", "data.val_size=10"],
     "are truncated or corrupt"),
    ("not a checkpoint", ["ckpt_path={tmp}/junk.ckpt"], "is not a readable PyTorch checkpoint"),
    ("checkpoint of another model", ["ckpt_path={tmp}/other.ckpt"], "is a checkpoint of another model"),
    ("input shape", ["model.in_features=100"], "set model.in_features=784"),
    ("untrusted _target_", ["+callbacks.x._target_=os.system"], "SPIKELIGHT_TRUSTED_TARGETS=os.system"),
    ("NaN loss", ["loss.rate_on=nan", "trainer.max_epochs=1"], "training loss is nan at epoch 0, step 0"),
]


def test_bad_inputs_are_refused_in_one_line(tmp_path):
    _mnist_dir(tmp_path / "trunc", truncate=True)
    (tmp_path / "junk.ckpt").write_text("epoch,loss\n0,0.5\n")  # e.g. a CSV given by mistake
    _foreign_checkpoint(tmp_path / "other.ckpt")
    refused = []
    for what, extra, needle in BAD_INPUTS:
        args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
        line = run_in_process(tmp_path / what.replace(" ", "_"), *FAST, "trainer.fast_dev_run=true", "callbacks=none",
                              "logger=none", *args)
        assert line.startswith("error: ") and needle in line, (what, line)
        refused.append(what)
    assert len(refused) == len(BAD_INPUTS) == 18


def test_val_size_takes_a_fraction():
    from spikelight.data import DigitsDataModule

    dm = DigitsDataModule(val_size=0.25)
    dm.setup()
    n = len(dm.train_set) + len(dm.val_set)
    assert len(dm.val_set) == round(0.25 * n) and len(dm.train_set) == n - round(0.25 * n)
    with pytest.raises(ConfigError, match="data.val_size=0.0001 is 0 of the"):
        DigitsDataModule(val_size=0.0001).setup()


# --- 3. load only what is trusted -----------------------------------------------------
def test_checkpoint_config_may_not_name_untrusted_targets(tmp_path, monkeypatch):
    path = tmp_path / "downloaded.ckpt"
    config = {"model": {"_target_": "os.system", "command": "echo pwned"}}
    torch.save({"state_dict": {}, "hyper_parameters": {"config": config}}, path)
    with pytest.raises(UntrustedTargetError, match=r"model._target_=os.system from the config stored in .*SPIKELIGHT_TRUSTED"):
        load_checkpoint_config(str(path))
    monkeypatch.setenv("SPIKELIGHT_TRUSTED_TARGETS", "os.system")  # the documented opt-in
    assert load_checkpoint_config(str(path)) == config

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="need code to load"):  # weights_only=True
        load_checkpoint_config(str(path))


# --- 1. nothing checkpointed is lost --------------------------------------------------
def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_kill_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    """A child process SIGKILLs itself half-way through writing over a checkpoint."""

    def write_then_die(save) -> None:
        pid = os.fork()
        if pid == 0:  # child: write half of the new bytes, then die
            real_save = torch.save

            def half_save(obj, f, *a, **k):
                import io

                buf = io.BytesIO()
                real_save(obj, buf, *a, **k)
                data = buf.getvalue()
                f.write(data[: len(data) // 2]) if hasattr(f, "write") else Path(f).write_bytes(data[: len(data) // 2])
                if hasattr(f, "flush"):
                    f.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            torch.save = half_save
            save({"state_dict": {"w": torch.ones(1000)}, "epoch": 1})
            os._exit(0)  # not reached
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    path = tmp_path / "last.ckpt"
    io_ = AtomicCheckpointIO()
    io_.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0}, path)
    write_then_die(lambda ckpt: io_.save_checkpoint(ckpt, path))
    assert _state(path)["epoch"] == 0 and torch.equal(_state(path)["state_dict"]["w"], torch.zeros(1000))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["last.ckpt"]  # the partial file is a dot-temp

    plain = tmp_path / "plain.ckpt"  # the control: writing in place loses the old checkpoint
    torch.save({"epoch": 0}, plain)
    write_then_die(lambda ckpt: torch.save(ckpt, plain))
    with pytest.raises((RuntimeError, EOFError)):
        _state(plain)


def in_child(fn) -> int:
    """Run ``fn()`` in a forked copy of this process (torch already imported: no start-up
    cost); returns its exit status as ``subprocess`` does (-N: killed by signal N)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        # the parent's OpenMP thread pool does not survive a fork (GNU libgomp would hang
        # in the first parallel region): one thread, as DataLoader workers do
        torch.set_num_threads(1)
        try:
            fn()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - report as a failure, never return into pytest
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.fixture
def one_thread():
    """The killed child runs on one thread (see :func:`in_child`); so do the runs it is
    compared with, bit for bit (a multi-threaded reduction rounds differently)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sigkill_mid_epoch_resumes_to_the_same_weights(tmp_path, monkeypatch, one_thread):
    """Killed hard in epoch 2 (of 3): resuming from last.ckpt (end of epoch 1) ends
    with bit-identical weights to an uninterrupted run."""
    monkeypatch.setenv("SPIKELIGHT_TRUSTED_TARGETS", "tests")
    common = [*FAST, "trainer.deterministic=true", "seed=5", "test=false", "logger=none", "data.batch_size=128",
              "trainer.max_epochs=3", "trainer.num_sanity_val_steps=0", "callbacks=[last_checkpoint]"]
    run = tmp_path / "killed"
    # 1,257 training digits / 128 = 10 batches per epoch: step 14 is mid-epoch 2
    kill = ["+callbacks.fault._target_=tests.fault_injection.SignalAt", "+callbacks.fault.step=14"]
    cfg = compose_cfg("train", preflight([*common, *kill], "train"), run)
    assert in_child(lambda: run_task(train, cfg)) == -signal.SIGKILL
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 10  # the end of epoch 1 survived
    # the run's overrides are reused; ~callbacks.fault leaves out the fault it added
    resume = preflight([f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "~callbacks.fault"], "train")
    assert not any("fault" in a for a in resume) and all(a in resume for a in common), resume
    train(compose_cfg("train", resume, run))
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 30
    _assert_same_weights_as_never_stopped(tmp_path, common, run / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize(("case", "extra", "kill", "saved_at", "timed"), [
    ("mid_epoch", [], ["+callbacks.fault.step=14"], 14, [0, 2]),
    # a validation after every 4th batch: none saved at batch 4 of epoch 2 (resumed, its validation would be skipped)
    ("before_a_validation", ["+trainer.val_check_interval=4"], ["+callbacks.fault.step=14"], 13, [0, 2]),
    # killed in epoch 1's closing validation: the checkpoint is of batch 9, never of the last batch (resumed,
    # Lightning would count that epoch done, unvalidated)
    ("in_the_epochs_validation", [], ["+callbacks.fault.step=10", "+callbacks.fault.at=validation"], 9, [1, 2]),
    # no validation after epoch 1: killed in its end's hooks, before last.ckpt is written
    ("at_an_epochs_end", ["trainer.check_val_every_n_epoch=2"], ["+callbacks.fault.step=10",
                                                                  "+callbacks.fault.at=train_epoch_end"], 9, [1, 2]),
])  # fmt: skip
def test_interval_checkpoint_keeps_the_epoch_a_kill_cuts_off(tmp_path, monkeypatch, one_thread, case, extra, kill,
                                                             saved_at, timed):  # fmt: skip
    """With ``interval_checkpoint`` (here after every batch: ``minutes=1e-9``) a run killed hard inside an epoch
    resumes inside it (``ckpt_path=<run folder>``: its newest checkpoint), not from the epoch before, and ends
    with the weights of a run never stopped. The epoch resumed inside has no ``time/epoch_s`` (only its rest ran);
    metrics.csv kept the rows written before the kill; interval.ckpt is gone once a later checkpoint supersedes it."""
    monkeypatch.setenv("SPIKELIGHT_TRUSTED_TARGETS", "tests")
    common = [*FAST, "trainer.deterministic=true", "seed=5", "test=false", "logger=csv", "data.batch_size=128",
              "trainer.max_epochs=3", "trainer.num_sanity_val_steps=0",
              "callbacks=[last_checkpoint,interval_checkpoint,epoch_time]", "callbacks.interval_checkpoint.minutes=1e-9",
              *extra]  # fmt: skip
    run = tmp_path / "killed"
    (run / ".hydra").mkdir(parents=True)  # as Hydra makes it: a resume continues this run folder's metrics.csv
    fault = ["+callbacks.fault._target_=tests.fault_injection.SignalAt", *kill]
    assert in_child(lambda: run_task(train, compose_cfg("train", preflight([*common, *fault], "train"), run))) == -signal.SIGKILL
    saved = run / "checkpoints" / "interval.ckpt"
    assert _state(saved)["global_step"] == saved_at
    resume = preflight([f"ckpt_path={run}", "~callbacks.fault"], "train")
    assert f"ckpt_path='{saved}'" in resume, resume
    train(compose_cfg("train", resume, run))
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 30 and not saved.exists()
    _assert_same_weights_as_never_stopped(tmp_path, common, run / "checkpoints" / "last.ckpt")
    rows, full = ([*csv.DictReader(open(r / "csv" / "metrics.csv"))] for r in (run, tmp_path / "full"))
    assert sorted(int(r["epoch"]) for r in rows if r.get("time/epoch_s")) == timed
    validated = sorted(int(r["epoch"]) for r in rows if r.get("val/acc"))
    assert validated == sorted(int(r["epoch"]) for r in full if r.get("val/acc")) and validated, validated


def _in_two_ranks(tmp_path: Path, fn, timeout: float = 120.0) -> list[str]:
    """``fn(rank)`` in two forked processes joined in one gloo process group (world size 2); each returns a
    string: the two strings, rank 0's first. A child's traceback fails the test; so does a hang (processes that
    disagree on their collectives) past ``timeout`` seconds."""
    import datetime
    import traceback

    import torch.distributed as dist

    pids = []
    for rank in (0, 1):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                torch.set_num_threads(1)
                dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=rank, world_size=2,
                                        timeout=datetime.timedelta(seconds=timeout / 2))  # fmt: skip
                (tmp_path / f"rank{rank}").write_text(fn(rank))
                dist.destroy_process_group()
                code = 0
            except BaseException:  # noqa: BLE001 - reported by the parent
                (tmp_path / f"rank{rank}.error").write_text(traceback.format_exc())
            finally:
                os._exit(code)
        pids.append(pid)
    deadline, status = time.monotonic() + timeout, {}
    while len(status) < 2 and time.monotonic() < deadline:
        for pid in pids:
            if pid not in status and (done := os.waitpid(pid, os.WNOHANG))[0]:
                status[pid] = done[1]
        time.sleep(0.05)
    for pid in pids:
        if pid not in status:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    errors = "".join(f.read_text() for f in sorted(tmp_path.glob("rank*.error")))
    assert len(status) == 2, f"the two processes hung (past {timeout} s)\n{errors}"
    assert list(status.values()) == [0, 0], errors
    return [(tmp_path / f"rank{rank}").read_text() for rank in (0, 1)]


def _mid_epoch_trainer(tmp_path: Path, saved: list[str], world_size: int = 1, rank: int = 0):
    """What the checkpoint callbacks read of a trainer after batch 3 of an epoch of more (no validation next, no
    gradient accumulation); ``saved`` collects the names of the checkpoints it is asked to write."""
    from types import SimpleNamespace

    progress = SimpleNamespace(is_last_batch=False, current=SimpleNamespace(processed=3), total=SimpleNamespace(processed=3))
    loop = SimpleNamespace(batch_progress=progress, _should_check_val_fx=lambda fetcher: False)
    return SimpleNamespace(world_size=world_size, is_global_zero=rank == 0, global_rank=rank, global_step=3,
                           current_epoch=0, accumulate_grad_batches=1, callback_metrics={}, ckpt_path=None,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")),
                           fit_loop=SimpleNamespace(epoch_loop=loop, _data_fetcher=object()),
                           checkpoint_callbacks=[], default_root_dir=str(tmp_path),
                           save_checkpoint=lambda path, weights_only: saved.append(Path(path).name))  # fmt: skip


def test_interval_checkpoint_keeps_no_nan_the_run_has_not_yet_reported(tmp_path):
    """On an accelerator the finite checks are read back every 50 steps: a NaN still pending when the interval is
    up stops the run (naming the last good checkpoint) instead of being saved into interval.ckpt."""
    from types import SimpleNamespace

    from spikelight.core.errors import NonFiniteLossError
    from spikelight.train.faults import IntervalCheckpoint

    def pending_nan() -> None:
        raise NonFiniteLossError("loss is nan at epoch 0, step 2")

    saved = []
    interval = IntervalCheckpoint(minutes=1e-9)
    trainer = _mid_epoch_trainer(tmp_path, saved)
    trainer.callbacks = [interval]
    interval.on_train_start(trainer, None)
    with pytest.raises(NonFiniteLossError):
        interval.on_train_batch_end(trainer, SimpleNamespace(_raise_if_nonfinite=pending_nan), None, None, 2)
    assert saved == []
    trainer = _mid_epoch_trainer(tmp_path, saved)
    trainer.callbacks = [interval]
    interval.on_train_batch_end(trainer, SimpleNamespace(_raise_if_nonfinite=lambda: None), None, None, 2)
    assert saved == ["interval.ckpt"]


def test_a_resume_inside_an_epoch_leaves_out_the_batches_trained_or_says_it_cannot():
    """Resumed at global step 13 of epochs of 10 batches: EpochShuffleSampler leaves out 3 batches of 10 samples;
    a sampler that cannot (a user's DataModule) trains them again, and the run says so."""
    import warnings
    from types import SimpleNamespace

    from torch.utils.data import DataLoader

    from spikelight.data.base import EpochShuffleSampler
    from spikelight.train.module import SpikingClassifier

    def resumed(loader: DataLoader, step: int = 13, accumulate: int = 1, shards: int | None = 1):
        trainer = SimpleNamespace(train_dataloader=loader, num_training_batches=10, accumulate_grad_batches=accumulate,
                                  global_step=step)  # fmt: skip
        SpikingClassifier._skip_seen_batches(SimpleNamespace(trainer=trainer, _resume_shards=shards))

    ours = DataLoader(range(100), batch_size=10, sampler=EpochShuffleSampler(100, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed(ours)
    assert ours.sampler.skip == 30 and len(list(ours)) == 7
    resumed(ours, step=6, accumulate=2)  # 5 optimizer steps per epoch: 1 step of 2 batches into epoch 1
    assert ours.sampler.skip == 20
    ours.sampler.skip = 0
    with pytest.raises(ConfigError, match=r"shared among 2 process\(es\); this run shares it among 1, so the rest"):
        resumed(ours, shards=2)  # written by a run of 2 processes: its shares are not this run's
    assert ours.sampler.skip == 0
    resumed(ours, shards=None)  # a checkpoint from before the count was stored: as before
    assert ours.sampler.skip == 30
    with pytest.warns(UserWarning, match=r"after 3 batches, but the training sampler \(RandomSampler\) cannot leave"):
        resumed(DataLoader(range(100), batch_size=10, shuffle=True))


def test_the_processes_of_a_ddp_run_agree_on_every_checkpoint_decision(tmp_path):
    """Lightning's save_checkpoint waits for every process: one that decided otherwise would go on training and
    the run would hang. After a batch: a signal that reached only rank 1 stops both, rank 0's interval that is up
    saves on both, in one all-reduce for the two callbacks. At an epoch's start: SIGUSR1 on rank 0 and SIGTERM on
    rank 1 stop both with one exit code, rank 0 deciding which file to name (at the training's end: the last.ckpt
    it wrote). The sampler shards by the process group when nobody says how."""
    from types import SimpleNamespace

    import torch.distributed as dist

    from spikelight.data.base import EpochShuffleSampler
    from spikelight.train.faults import IntervalCheckpoint, Preempted, PreemptionCheckpoint

    def decide(rank: int) -> str:
        saved, reductions = [], []
        real = dist.all_reduce
        dist.all_reduce = lambda *a, **k: reductions.append(1) or real(*a, **k)  # (this forked process only)
        trainer = _mid_epoch_trainer(tmp_path, saved, world_size=2, rank=rank)

        def broadcast(obj, src=0):
            box = [obj]
            dist.broadcast_object_list(box, src=src)
            return box[0]

        trainer.strategy.broadcast = broadcast
        interval, stop = IntervalCheckpoint(minutes=1.0), PreemptionCheckpoint()
        trainer.callbacks = [stop, interval]
        interval._since = time.monotonic() - (120.0 if rank == 0 else 0.0)  # its minute is up on rank 0 only
        stop.received = signal.SIGTERM if rank == 1 else None  # the signal reached rank 1 only
        interval.on_train_batch_end(trainer, None, None, None, 2)
        with pytest.raises(Preempted) as after_batch:
            stop.on_train_batch_end(trainer, None, None, None, 2)
        at_batch_end = len(reductions)
        at_start = PreemptionCheckpoint()
        at_start.received = signal.SIGUSR1 if rank == 0 else signal.SIGTERM
        with pytest.raises(Preempted) as at_epoch_start:
            at_start.on_train_epoch_start(trainer, None)
        # at the training's end, last.ckpt of this step written: rank 0 names it for both (no save; rank 1 alone
        # cannot see which checkpoints the run wrote, and saving would wait for rank 0 in Lightning's barrier)
        trainer.checkpoint_callbacks = [SimpleNamespace(save_weights_only=False, best_model_path="",
                                                        last_model_path=str(last))]  # fmt: skip
        at_end = PreemptionCheckpoint()
        at_end.received = signal.SIGTERM if rank == 1 else None
        with pytest.raises(Preempted) as at_train_end:
            at_end.on_train_end(trainer, None)
        sampler = EpochShuffleSampler(10)
        return (f"{saved} {after_batch.value.code} {at_epoch_start.value.code} {at_batch_end} "
                f"{sampler.num_replicas} {sampler.rank} {len(list(sampler))} {Path(at_train_end.value.path).name}")

    last = tmp_path / "last.ckpt"
    torch.save({"global_step": 3}, last)
    saves = "['interval.ckpt', 'preempted.ckpt', 'preempted.ckpt']"
    code = 128 + signal.SIGTERM
    assert _in_two_ranks(tmp_path, decide) == [f"{saves} {code} {code} 1 2 {rank} 5 last.ckpt" for rank in (0, 1)]


DDP = ["accelerator=ddp", "trainer.devices=2", *FAST[2:], "trainer.deterministic=true", "seed=7", "test=false",
       "logger=csv", "data.batch_size=64", "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0",
       "callbacks=[last_checkpoint,interval_checkpoint,preemption]", "print_config=false"]  # fmt: skip


def _ddp_run(tmp_path: Path, run: Path, *args: str) -> subprocess.CompletedProcess:
    from ..conftest import run_cli

    return run_cli("train.py", *args, f"hydra.run.dir={run}", timeout=600,
                   env={"SPIKELIGHT_TRUSTED_TARGETS": "tests", "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_an_online_learning_rule_keeps_every_ddp_process_on_the_same_weights(tmp_path):
    """e-prop computes its gradients itself: DDP does not average them (it hooks autograd's), so each process
    stepped on its own shard's gradient and the weights drifted apart. Two CPU processes, 28-step digit rows."""
    common = ["accelerator=ddp", "trainer.devices=2", "model=lsnn", "neuron=sfa", "learning=eprop", "data=sdigits",
              "data.pixels_per_step=28", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
              "trainer.limit_val_batches=1", "test=false", "logger=none", "callbacks=none", "print_config=false",
              "+callbacks.same._target_=tests.fault_injection.SameWeightsOnEveryProcess"]  # fmt: skip
    proc = _ddp_run(tmp_path, tmp_path / "run", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("case", "extra", "fault", "code", "saved"), [
    # SIGTERM reaches rank 1 alone (at the start of step 3): both processes save at step 4 and stop
    # (rank 0 slow to finish: Lightning's watcher would SIGKILL it, exit 137, if the other process exited non-zero)
    ("sigterm_to_one_process", [], ["+callbacks.fault.step=3", "+callbacks.fault.signal=SIGTERM",
                                    "+callbacks.fault.rank=1",
                                    "+callbacks.slow._target_=tests.fault_injection.SlowExitOnRankZero"],
     128 + signal.SIGTERM, "preempted.ckpt"),
    # both processes killed hard at the start of step 13 (epoch 1): the interval checkpoint of step 13 survives
    ("sigkill_after_an_interval_save", ["callbacks.interval_checkpoint.minutes=1e-9"], ["+callbacks.fault.step=13"],
     None, "interval.ckpt"),
])  # fmt: skip
def test_a_ddp_run_stopped_inside_an_epoch_resumes_to_the_same_weights(tmp_path, case, extra, fault, code, saved):
    """Two CPU processes (gloo), 10 batches of 64 digits each per epoch: stopped inside an epoch, resumed from its
    run folder, the run ends with the weights of one never stopped: each process trained exactly the rest of its
    own share of that epoch (EpochShuffleSampler shards and skips; Lightning's wrapper of other samplers cannot)."""
    run = tmp_path / "stopped"
    first = _ddp_run(tmp_path, run, *DDP, *extra, "+callbacks.fault._target_=tests.fault_injection.SignalAt", *fault)
    if code is not None:  # rank 0's code (the other process exits 0: Lightning's watcher would SIGKILL rank 0)
        assert first.returncode == code, first.stderr[-3000:]
        assert first.stderr.count("stopped: SIGTERM at epoch 0, step 4") == 1, first.stderr[-3000:]  # one line
    else:
        assert first.returncode != 0
    ckpt = run / "checkpoints" / saved
    assert _state(ckpt)["global_step"] == (4 if code else 13), first.stderr[-3000:]
    resumed = _ddp_run(tmp_path, run, f"ckpt_path={run}", "~callbacks.fault", *(["~callbacks.slow"] if code else []))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "MEMBER: 2/2" in resumed.stdout + resumed.stderr  # it resumed as a DDP run
    full = _ddp_run(tmp_path, tmp_path / "full", *DDP, *extra)
    assert full.returncode == 0, full.stderr[-3000:]
    w_full, w_res = (_state(r / "checkpoints" / "last.ckpt") for r in (tmp_path / "full", run))
    assert w_res["global_step"] == w_full["global_step"] == 20
    for k, v in w_full["state_dict"].items():
        assert torch.equal(v, w_res["state_dict"][k]), k


@pytest.mark.slow
def test_a_checkpoint_write_failing_on_rank_zero_alone_does_not_leave_the_other_process_waiting(tmp_path):
    """Rank 0 cannot write its checkpoint (a full disk); rank 1 waits for it, as in Lightning's barrier after a save
    under NCCL (30 minutes). The run fails in one line with rank 0's error, and rank 1 is killed after
    STOP_GRACE_S (30 s) instead of holding its GPU — and this test's pipes — for the wait."""
    run, pid_file = tmp_path / "run", tmp_path / "pid_rank"
    start = time.monotonic()
    proc = _ddp_run(tmp_path, run, *DDP, "trainer.max_epochs=1",
                    "+callbacks.fault._target_=tests.fault_injection.SaveFailsOnRankZero", f"+callbacks.fault.pid_file={pid_file}")
    elapsed = time.monotonic() - start
    assert proc.returncode != 0 and "No space left on device (injected)" in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 400, elapsed  # not rank 1's 600 s (~90 s: starting two processes, an epoch, the 30 s grace)
    assert "waiting up to 30 s for the 1 other processes of the run to exit" in proc.stderr
    pid = int(Path(f"{pid_file}1").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and "No space left on device" in results["error"], results


def _sigterm_run(tmp_path: Path, step: int, logger: str,
                 extra: list[str] = ()) -> tuple[Path, Path, list[str], list[str], object]:  # fmt: skip
    """A digits run of 2 epochs of 10 batches (and the overrides ``extra``) that gets SIGTERM at the start of the
    first batch of global step ``step``, in a run folder as train.py makes it: (the log dir, the run folder, its
    overrides, the fault's, its config)."""
    logs = tmp_path / "logs"
    run = logs / "train" / "runs" / "2026-11-24_00-00-00-000000"
    common = [*FAST, "test=false", f"logger={logger}", "data.batch_size=128", "trainer.max_epochs=2",
              "trainer.num_sanity_val_steps=0", f"paths.log_dir={logs}", "trainer.deterministic=true", "seed=7",
              *extra]
    term = ["+callbacks.fault._target_=tests.fault_injection.SignalAt", f"+callbacks.fault.step={step}",
            "+callbacks.fault.signal=SIGTERM"]
    cfg = compose_cfg("train", preflight([*common, *term], "train"), run)
    (run / ".hydra").mkdir(parents=True)  # as Hydra makes it
    return logs, run, common, term, cfg


def _assert_same_weights_as_never_stopped(tmp_path: Path, common: list[str], last: Path) -> None:
    train(compose_cfg("train", common, tmp_path / "full"))
    w_full, w_res = _state(tmp_path / "full" / "checkpoints" / "last.ckpt"), _state(last)
    assert w_res["global_step"] == w_full["global_step"]
    for k, v in w_full["state_dict"].items():
        assert torch.equal(v, w_res["state_dict"][k]), k


def test_sigterm_saves_a_checkpoint_and_ckpt_path_last_resumes_it(tmp_path, monkeypatch, one_thread):
    """SIGTERM mid-epoch → checkpoint, exit 143, the stop line (with the exact resume command) on
    stderr and in train.log, the metrics in results.json, a note; then ``ckpt_path=last`` alone
    finds that checkpoint, reuses the run's overrides (stored in it) and finishes in its folder,
    keeping the run's own config files. (``run_task`` is what train.py runs; the child is a fork,
    to skip a start-up.)"""
    import json
    import logging
    import sys

    monkeypatch.setenv("SPIKELIGHT_TRUSTED_TARGETS", "tests")
    logs, run, common, term, cfg = _sigterm_run(tmp_path, step=3, logger="none")

    def stopped() -> None:
        sys.stderr = open(tmp_path / "stderr", "w", buffering=1)
        file_log = logging.FileHandler(run / "train.log")  # as Hydra's logging config attaches it
        logging.getLogger("spikelight").addHandler(file_log)
        run_task(train, cfg)

    assert in_child(stopped) == 128 + signal.SIGTERM
    saved = run / "checkpoints" / "preempted.ckpt"
    assert _state(saved)["global_step"] == 4  # the batch in flight finished, then it saved
    err = (tmp_path / "stderr").read_text()
    line = f"stopped: SIGTERM at epoch 0, step 4: saved {saved}; resume: python train.py ckpt_path={saved}"
    assert line in err and line in (run / "train.log").read_text(), err
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "stopped" and 0 < results["metrics"]["train/loss_step"] < 1, results
    assert (run / FAILED).read_text().startswith("stopped: SIGTERM") and f"ckpt_path={saved}" in (run / FAILED).read_text()
    first_config = (run / "config_resolved.yaml").read_text()
    assert _state(saved)["overrides"] == [*common, *term]
    # the resume names nothing but the checkpoint (and where the logs are, for ckpt_path=last)
    argv = preflight(["ckpt_path=last", f"paths.log_dir={logs}"], "train")
    assert f"ckpt_path='{saved}'" in argv and f"hydra.run.dir='{run}'" in argv  # resumes inside the run
    assert "data.batch_size=128" in argv and "+callbacks.fault.step=3" in argv  # the run's overrides
    # the fault callback would stop it again: the one thing this resume leaves out
    train(compose_cfg("train", preflight(["ckpt_path=last", f"paths.log_dir={logs}", "~callbacks.fault"], "train"), run))
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 20 and not (run / FAILED).exists()
    assert not saved.exists()  # superseded by the epoch's end: resuming from it would go back in time
    assert (run / "config_resolved.yaml").read_text() == first_config  # kept; the resume's is beside it
    assert "batch_size: 128" in (run / ".hydra" / "resume-1" / "config_resolved.yaml").read_text()
    # and the rest of epoch 1 was the batches it had not seen: the same weights as never stopping
    _assert_same_weights_as_never_stopped(tmp_path, common, run / "checkpoints" / "last.ckpt")


def test_sigterm_in_an_epochs_last_batch_lets_the_epoch_end_first(tmp_path, monkeypatch, one_thread):
    """A checkpoint of an epoch's last batch resumes as that epoch done, never validated nor checkpointed
    (Lightning 2.6): the run lets the epoch end (validation, best / last checkpoints), stops before the next
    epoch naming last.ckpt, and resumes from it to the weights of a run never stopped."""
    import sys

    monkeypatch.setenv("SPIKELIGHT_TRUSTED_TARGETS", "tests")
    logs, run, common, _, cfg = _sigterm_run(tmp_path, step=9, logger="csv")  # the last of epoch 0's 10 batches

    def stopped() -> None:
        sys.stderr = open(tmp_path / "stderr", "w", buffering=1)
        run_task(train, cfg)

    assert in_child(stopped) == 128 + signal.SIGTERM
    last = run / "checkpoints" / "last.ckpt"
    assert f"saved {last}; resume: python train.py ckpt_path={last}" in (tmp_path / "stderr").read_text()
    assert not (run / "checkpoints" / "preempted.ckpt").exists()
    assert _state(last)["global_step"] == 10 and list((run / "checkpoints").glob("epoch_000*.ckpt"))
    train(compose_cfg("train", preflight(["ckpt_path=last", f"paths.log_dir={logs}", "~callbacks.fault"], "train"), run))
    with open(run / "csv" / "metrics.csv") as f:
        assert sorted(int(r["epoch"]) for r in csv.DictReader(f) if r.get("val/acc")) == [0, 1]
    assert _state(last)["global_step"] == 20
    _assert_same_weights_as_never_stopped(tmp_path, common, last)


def test_the_lightning_internals_the_checkpoint_callbacks_read_are_there():
    """The pre-emption and interval checkpoints read private parts of Lightning (2.6); missing in another version,
    they fall back the safe way, which means quietly: no interval save ever (a validation is assumed next), no
    wait for an epoch's end. This fails instead, on the version installed (pyproject allows lightning>=2.4,<2.7)."""
    import inspect

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    loop = trainer.fit_loop.epoch_loop
    assert hasattr(trainer.fit_loop, "_data_fetcher") and list(inspect.signature(loop._should_check_val_fx).parameters) == ["data_fetcher"]
    assert hasattr(loop.batch_progress, "is_last_batch") and loop.batch_progress.current.processed == 0
    cb = ModelCheckpoint()
    assert cb._every_n_epochs == 1
    for name in ("_should_save_on_train_epoch_end", "_should_skip_saving_checkpoint"):
        assert list(inspect.signature(getattr(cb, name)).parameters) == ["trainer"], name


def test_a_signal_waits_for_the_epochs_end_only_where_a_checkpoint_comes_at_that_end(tmp_path):
    """A signal in an epoch's last batch waits for the epoch's end only where a ModelCheckpoint will write a full
    checkpoint there, as Lightning 2.6 decides it; otherwise nothing would be of that epoch's end to name (one saved
    at the next epoch's start resumes skipping that epoch): the run saves at the last batch, as mid-epoch."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.trainer.states import TrainerFn

    from spikelight.train.faults import _writes_at_this_epochs_end

    def trainer(**kw) -> L.Trainer:
        t = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, **kw)
        t.state.fn = TrainerFn.FITTING
        t.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed = 10
        assert t.global_step == 10  # at an epoch's last batch (a ModelCheckpoint never saves twice at one step)
        return t

    t = trainer()
    last = {"filename": "last", "monitor": None, "save_on_train_epoch_end": True}
    assert _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, **last), t)
    assert _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, monitor=None), t)  # no validation: at the epoch's end
    # save_last with a monitor writes only when the metric improved
    assert not _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, monitor="val/acc", save_last=True), t)
    assert not _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, monitor="val/acc", mode="max"), t)
    assert not _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, **last, save_top_k=0), t)
    assert not _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, **last, save_weights_only=True), t)
    assert not _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, monitor=None, every_n_train_steps=5), t)
    every2 = ModelCheckpoint(tmp_path, monitor=None, every_n_epochs=2)
    assert not _writes_at_this_epochs_end(every2, t)  # epoch 0 (the first): left out
    t.fit_loop.epoch_progress.current.completed = 1
    assert t.current_epoch == 1 and _writes_at_this_epochs_end(every2, t)
    # validation every 2nd epoch: Lightning saves at validation's end, unless told to save at the epoch's end
    assert not _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, monitor=None), trainer(check_val_every_n_epoch=2))
    assert _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, **last), trainer(check_val_every_n_epoch=2))
    t.state.fn = TrainerFn.VALIDATING
    assert not _writes_at_this_epochs_end(ModelCheckpoint(tmp_path, **last), t)  # nothing is saved outside a fit


def test_sigterm_inside_a_gradient_accumulation_saves_after_its_optimizer_step(tmp_path, monkeypatch, one_thread):
    """With ``trainer.accumulate_grad_batches=2`` a signal in the first batch of a pair saves after the second
    (the first one's gradient is in no checkpoint): the resumed run ends with the weights of one never stopped."""
    monkeypatch.setenv("SPIKELIGHT_TRUSTED_TARGETS", "tests")
    accumulate = ["+trainer.accumulate_grad_batches=2"]
    logs, run, common, _, cfg = _sigterm_run(tmp_path, step=2, logger="none", extra=accumulate)  # at batch 4 of 10
    assert in_child(lambda: run_task(train, cfg)) == 128 + signal.SIGTERM
    saved = run / "checkpoints" / "preempted.ckpt"
    assert _state(saved)["global_step"] == 3  # after batches 4 and 5 (the third pair), not after batch 4
    train(compose_cfg("train", preflight(["ckpt_path=last", f"paths.log_dir={logs}", "~callbacks.fault"], "train"), run))
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 10
    _assert_same_weights_as_never_stopped(tmp_path, common, run / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize("name", ["SIGUSR1", "SIGINT"])
def test_sigusr1_and_ctrl_c_save_a_checkpoint_in_process(tmp_path, monkeypatch, name):
    """SIGUSR1 (SLURM's warning) and SIGINT (Ctrl-C) finish the batch, save, exit 128+signal."""
    monkeypatch.setenv("SPIKELIGHT_TRUSTED_TARGETS", "tests")
    args = [*TINY, "trainer.limit_train_batches=4", "callbacks=[preemption]",
            "+callbacks.fault._target_=tests.fault_injection.SignalAt", "+callbacks.fault.step=1",
            f"+callbacks.fault.signal={name}"]
    cfg = compose_cfg("train", preflight(args, "train"), tmp_path)
    signum = getattr(signal, name)
    before = signal.getsignal(signum)
    with pytest.raises(SystemExit) as exit_:
        run_task(train, cfg)
    assert exit_.value.code == 128 + signum
    assert _state(tmp_path / "checkpoints" / "preempted.ckpt")["global_step"] == 2
    assert signal.getsignal(signum) == before  # handlers restored


def test_second_ctrl_c_stops_at_once():
    from spikelight.train.faults import PreemptionCheckpoint

    cb = PreemptionCheckpoint()
    cb._handler(signal.SIGINT, None)  # the first: stop at the end of the batch
    assert cb.received == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        cb._handler(signal.SIGINT, None)


def test_nan_gradient_stops_before_the_step_and_names_the_checkpoint(tmp_path):
    """Gradients turn NaN at step 3 (the loss stays finite): the run stops there,
    the weights are those of step 3, and the last good checkpoint is named."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from spikelight.app.cli import build_datamodule, build_module
    from spikelight.core.errors import NonFiniteGradientError

    cfg = compose_cfg("train", [*FAST, "data.batch_size=32"], tmp_path)
    module, dm = build_module(cfg), build_datamodule(cfg)
    weight = module.model.fc.weight
    weight.register_hook(lambda g: g * float("nan") if module.global_step == 3 else g)
    snapshot = {}
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", filename="step{step}", every_n_train_steps=1, save_top_k=-1,
                           monitor=None)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[ckpt])
    module.on_train_batch_start = lambda batch, i: snapshot.__setitem__("w", weight.detach().clone())
    with pytest.raises(NonFiniteGradientError, match=r"gradient norm is nan at epoch 0, step 3 .*last good checkpoint: .*step=3"):
        trainer.fit(module, datamodule=dm)
    assert torch.isfinite(weight).all() and torch.equal(weight, snapshot["w"])  # no update from the NaN step


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clipping_of_ordinary_gradients_is_lightnings_own(tmp_path, algorithm):
    """Only a gradient whose float32 norm would overflow gets the float64 pre-scaling: every other step is
    clipped by Lightning alone, by norm or by value (same weights after 4 steps at a clip of 0.01)."""
    import lightning as L

    from spikelight.app.cli import build_datamodule, build_module

    cfg = compose_cfg("train", [*FAST, "data.batch_size=32"], tmp_path)
    weights = []
    for ours in (True, False):
        L.seed_everything(0)
        module, dm = build_module(cfg), build_datamodule(cfg)
        if not ours:  # Lightning's hook, bypassing SpikingClassifier's
            def lightning_only(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None, m=module):
                L.LightningModule.configure_gradient_clipping(m, optimizer, gradient_clip_val, gradient_clip_algorithm)

            module.configure_gradient_clipping = lightning_only
        trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, gradient_clip_val=0.01, gradient_clip_algorithm=algorithm)
        trainer.fit(module, datamodule=dm)
        weights.append(module.model.fc.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_a_huge_gradient_without_clipping_is_said_once(tmp_path):
    """Without gradient_clip_val a finite gradient of ~1e21 goes to the optimizer as it is (as in the TF
    sources), but the run says so once: Adam's second moment keeps those weights nearly still for thousands
    of steps."""
    import lightning as L

    from spikelight.app.cli import build_datamodule, build_module

    cfg = compose_cfg("train", [*FAST, "data.batch_size=32"], tmp_path)
    module, dm = build_module(cfg), build_datamodule(cfg)
    module.model.fc.weight.register_hook(lambda g: g * 1e21 if module.global_step in (2, 4) else g)
    trainer = L.Trainer(max_epochs=1, max_steps=6, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    with pytest.warns(UserWarning, match=r"gradient norm \S+e\+\d+ at step 2 without gradient clipping") as seen:
        trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 6 and sum("without gradient clipping" in str(w.message) for w in seen) == 1


def test_an_epoch_ended_without_starting_in_this_process_gets_no_time():
    """A resume from a checkpoint written inside an epoch's end can end that epoch again without starting
    it (seen resuming an LSNN run: 'epoch 2/20: 31357.4 s', perf_counter() - 0, the seconds since boot), or
    start it and end it without a batch. Neither the logged time/epoch_s nor the epoch line may invent one;
    an epoch trained here only in part has a time in its line, said as such, and no time/epoch_s."""
    from types import SimpleNamespace

    from spikelight.train.callbacks import EpochSummary, EpochTimeCallback

    logged = {}
    module = SimpleNamespace(log=lambda k, v, **kw: logged.__setitem__(k, v), device=torch.device("cpu"))
    progress = SimpleNamespace(is_last_batch=True)
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, callback_metrics={}, max_epochs=20,
                              current_epoch=1, num_training_batches=10,
                              fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))
    timer, summary = EpochTimeCallback(), EpochSummary()
    lines = []
    summary_log = pytest.MonkeyPatch()
    summary_log.setattr("spikelight.train.callbacks.log.info", lines.append)
    try:
        timer.on_train_epoch_end(trainer, module)  # re-ended: never started here
        summary.on_train_epoch_end(trainer, module)
        assert "time/epoch_s" not in logged and lines[-1] == "[spikelight] epoch 2/20: resumed at its end"
        timer.on_train_epoch_start(trainer, module)
        summary.on_train_epoch_start(trainer, module)
        for cb in (timer, summary):
            cb.on_train_batch_end(trainer, module, None, None, 0)
        timer.on_train_epoch_end(trainer, module)
        summary.on_train_epoch_end(trainer, module)
        assert 0 <= logged.pop("time/epoch_s") < 5 and lines[-1].endswith(" s")
        # started again but no batch trained (after one that had: a second resume under max_steps logged
        # 'epoch 10/20: 0.0 s')
        timer.on_train_epoch_start(trainer, module)
        summary.on_train_epoch_start(trainer, module)
        timer.on_train_epoch_end(trainer, module)
        summary.on_train_epoch_end(trainer, module)
        assert "time/epoch_s" not in logged and lines[-1] == "[spikelight] epoch 2/20: resumed at its end"
        # resumed inside the epoch (its first batch here is batch 7), or ended before its last batch (max_steps):
        # a time, but not the epoch's
        for first, last in ((7, True), (0, False)):
            progress.is_last_batch = last
            for cb in (timer, summary):
                if first == 0:  # (Lightning 2.6 calls no on_train_epoch_start for an epoch resumed inside it)
                    cb.on_train_epoch_start(trainer, module)
                for i in (first, first + 1):
                    cb.on_train_batch_start(trainer, module, None, i)
                    cb.on_train_batch_end(trainer, module, None, None, i)
                cb.on_train_epoch_end(trainer, module)
            assert "time/epoch_s" not in logged and lines[-1].endswith(" s for the 2 batches trained here"), lines
    finally:
        summary_log.undo()


def test_a_huge_finite_gradient_is_clipped_not_called_inf(tmp_path):
    """At step 3 the gradient is multiplied by 1e21 (finite; float32's norm of it is inf). With
    gradient_clip_val=1 the run goes on and that step's gradient is scaled to norm 1, not zeroed: the
    guard and the clipping read the norm in float64 (a float32 norm stopped a full-BPTT LSNN run)."""
    import lightning as L

    from spikelight.app.cli import build_datamodule, build_module

    cfg = compose_cfg("train", [*FAST, "data.batch_size=32"], tmp_path)
    module, dm = build_module(cfg), build_datamodule(cfg)
    weight = module.model.fc.weight
    weight.register_hook(lambda g: g * 1e21 if module.global_step == 3 else g)
    seen = {}

    class Spy(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if pl_module.global_step == 3:
                seen["before"] = float(torch.linalg.vector_norm(weight.grad.double()))

    real = module.configure_gradient_clipping

    def clip_then_look(optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        real(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if module.global_step == 3:
            seen["norm"] = float(torch.linalg.vector_norm(weight.grad.double()))

    module.configure_gradient_clipping = clip_then_look
    trainer = L.Trainer(max_epochs=1, max_steps=6, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, gradient_clip_val=1.0, callbacks=[Spy()])
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 6 and torch.isfinite(weight).all()
    assert seen["before"] > 1e19  # finite, but past float32's squares
    assert 0.5 < seen["norm"] <= 1.0 + 1e-5  # clipped to (at most) 1, not zeroed


# --- 5. fuzzed configs ----------------------------------------------------------------
GROUPS = {
    "model": ["fc_lif", "mlp", "conv", "lsnn"],
    "neuron": ["lif", "if", "leaky", "alif", "sfa"],
    "surrogate": ["atan", "sigmoid", "fast_sigmoid", "triangle", "rectangle", "piecewise_quadratic", "soft_sign",
                  "leaky_k_relu", "spike_operator"],
    "encoder": ["poisson", "direct", "latency", "sequence", "threshold_crossing"],
    "readout": ["rate", "count", "membrane", "last", "first_spike"],
    "loss": ["mse_rate", "ce", "ce_rate", "ce_count", "mse_count", "ce_membrane_per_step"],
    "data": ["digits", "sdigits"],
    "learning": ["bptt", "eprop"],
}


# the refusals a random combination may meet: incompatible choices, each named with its fix
EXPECTED = {
    "online learning needs model=lsnn": r"learning=eprop trains model=lsnn",
    "online learning needs a neuron it derives": r"learning=eprop supports neuron=.*, got \w+Node",
    "readout/loss needs spikes": r"(readout|loss)=\w+ needs output spikes, .* use readout=",
    "sequence encoder needs sequence data": r"encoder=(sequence|threshold_crossing) expects batch-first sequences",
    "in_features=null needs sequence data": r"model.in_features=null follows a sequence dataset's inputs per step, "
                                            r"but \w+ gives images \[1, 28, 28\]; .* or set model.in_features=784 ",
    "input features": r"expects \d+ input features per step, got \d+ .*; set model.in_features=\d+",
    "image shape from sequence data": r"reads \$\{data.in_shape\}, which the chosen data option does not state",
    "neuron lacks a model's setting": r"neuron.\w+: \w+Node has no argument '\w+'; it takes ",
}


def _compatible(picks: dict[str, str], rng) -> dict[str, str]:
    """Re-draw the choices that decide the input layout so they fit the model family:
    the recurrent LSNN reads sequences (its own encoder), the rest images."""
    if picks["model"] == "lsnn":
        picks.pop("encoder")
        picks["data"] = "sdigits"
    else:
        picks["encoder"] = rng.choice(["poisson", "direct", "latency"])
        picks["data"], picks["learning"] = "digits", "bptt"
    return picks


def fuzz(n: int, seed: int, tmp_path: Path, compatible: bool = False) -> tuple[int, int, dict[str, int]]:
    """Try ``n`` random combinations (uniform over each group's options; with ``compatible``
    the data / encoder / learning rule follow the model family); each must run a
    fast_dev_run step or be refused with one of the :data:`EXPECTED` one-line errors.
    Returns (tried, ran, count of each refusal)."""
    import random
    import re

    rng = random.Random(seed)
    ran, reasons = 0, {}
    for i in range(n):
        drawn = {g: rng.choice(opts) for g, opts in GROUPS.items()}
        picks = [f"{g}={v}" for g, v in (_compatible(drawn, rng) if compatible else drawn).items()]
        line = run_in_process(tmp_path / str(i), *TINY, "trainer.fast_dev_run=true", "data.batch_size=16", *picks)
        if not line:
            ran += 1
            continue
        kind = next((k for k, rx in EXPECTED.items() if re.search(rx, line)), None)
        assert kind is not None, (picks, line)
        reasons[kind] = reasons.get(kind, 0) + 1
    return n, ran, reasons


def test_fuzzed_configs_run_or_are_refused_in_one_line(tmp_path):
    tried, ran, reasons = fuzz(10, seed=14, tmp_path=tmp_path)
    assert tried == 10 and ran >= 1, reasons


@pytest.mark.slow
def test_fuzzed_configs_many(tmp_path):
    start = time.time()
    tried, ran, reasons = fuzz(80, seed=2026, tmp_path=tmp_path / "any")
    print(f"\nfuzz (any): tried {tried}, ran {ran}, refused {tried - ran} in {time.time() - start:.0f} s: {reasons}")
    assert ran >= 5


@pytest.mark.slow
def test_fuzzed_configs_that_fit_the_model_mostly_run(tmp_path):
    start = time.time()
    tried, ran, reasons = fuzz(80, seed=2027, tmp_path=tmp_path / "fit", compatible=True)
    print(f"fuzz (layout fits the model): tried {tried}, ran {ran}, refused {tried - ran} in {time.time() - start:.0f} s: {reasons}")
    assert ran >= 40


# --- 4. long runs stay healthy ----------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024


@pytest.mark.slow
def test_1000_training_steps_hold_steady_rss(tmp_path):
    """1,000 steps with the default callbacks (plots, checkpoints, CSV logs): RSS after
    the warm-up (step 200) grows by less than RSS_BOUND_MB by step 1,000."""
    import lightning as L

    samples = {}

    class Rss(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step in (200, 600, 1000):
                samples[trainer.global_step] = _rss_mb()

    cfg = compose_cfg("train", [*FAST, "data.batch_size=16", "trainer.max_steps=1000", "trainer.max_epochs=-1",
                                "trainer.limit_val_batches=2", "test=false", "+trainer.enable_progress_bar=false",
                                "~callbacks.rich_progress_bar"], tmp_path)
    from spikelight.app import cli

    real = cli.build_callbacks
    cli.build_callbacks = lambda c, has_logger: [*real(c, has_logger), Rss()]
    try:
        train(cfg)
    finally:
        cli.build_callbacks = real
    print(f"\nRSS MB at steps 200/600/1000: {samples}")
    assert samples[1000] - samples[200] < RSS_BOUND_MB, samples


RSS_BOUND_MB = 10  # measured 2026-11-24 on the 2-core CPU: +0.4 MB from step 200 to 1,000


def test_loss_curve_holds_a_bounded_number_of_step_tensors(monkeypatch):
    from types import SimpleNamespace

    from spikelight.train.callbacks import SpikePlotCallback

    monkeypatch.setattr(SpikePlotCallback, "FLUSH_EVERY", 10)
    cb = SpikePlotCallback(max_points=8)
    trainer = SimpleNamespace(global_step=0)
    for step in range(95):  # one long epoch: no epoch end flushes it
        trainer.global_step = step
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(float(step))}, None, step)
        assert len(cb._pending) < 10 and len(cb.steps) <= 8
    cb._flush_steps()
    assert cb.stride == 16 and cb.steps[-1][0] == 79 and cb._partial[1] == 15  # all 95 steps, coarser


def test_range_checks_accept_every_shipped_config():
    """No false alarms: every experiment composes and passes check_ranges (and the
    check does catch a value placed deep in a list)."""
    from spikelight.app.checks import CONF, check_ranges

    for exp in sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")):
        check_ranges(compose_cfg("train", [f"experiment={exp}"], Path("/tmp/unused")))
    for path in CONF.rglob("*.yaml"):
        if path.parent != CONF and "hydra" not in path.parts and "experiment" not in path.parts:
            from omegaconf import OmegaConf

            node = OmegaConf.load(path)
            node.pop("defaults", None)
            check_ranges({path.parent.name: node})
    with pytest.raises(ConfigError, match=r"model.blocks\[1\].dropout=1.5 is out of range"):
        check_ranges({"model": {"blocks": [{"dropout": 0.1}, {"dropout": 1.5}]}})


def test_resuming_a_run_that_has_finished_is_refused_before_it_writes_over_its_results(tmp_path):
    """ckpt_path=last takes the task's newest run, finished or not: resumed, a finished run trained nothing and
    tested again over its results.json (found by helper-18: a demo stopped, then `python train.py ckpt_path=last`
    re-tested an older finished run of the train task). Refused in one line naming the fix, not with a larger
    max_epochs or max_steps; max_steps counts too."""
    from omegaconf import OmegaConf

    from spikelight.app.checks import _check_not_finished
    from spikelight.core.errors import ConfigError

    from ..conftest import run_cli

    common = [*TINY[:-1], "callbacks=[last_checkpoint]", f"paths.log_dir={tmp_path}", "task_name=fin"]
    first = run_cli("train.py", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = (tmp_path / "fin" / "runs").iterdir()
    results = (run / "results.json").read_text()
    again = run_cli("train.py", *common, "ckpt_path=last")
    assert again.returncode == 2, again.stderr[-3000:]
    line = again.stderr.strip().splitlines()[-1]
    assert "is of a run that has finished (1 of trainer.max_epochs=1 epochs trained)" in line, line
    assert "raise trainer.max_epochs" in line and "python eval.py ckpt_path=" in line
    assert (run / "results.json").read_text() == results and len(list((tmp_path / "fin" / "runs").iterdir())) == 1
    last = str(run / "checkpoints" / "last.ckpt")  # 1 epoch, 2 steps
    trainer = {"max_epochs": 5, "max_steps": 2}
    with pytest.raises(ConfigError, match=r"\(2 of trainer.max_steps=2 steps trained\).*raise trainer.max_steps"):
        _check_not_finished(OmegaConf.create({"ckpt_path": last, "trainer": trainer}))
    for more in ({**trainer, "max_steps": 3}, {"max_epochs": 2, "max_steps": -1}, {"max_epochs": -1, "max_steps": -1}):
        _check_not_finished(OmegaConf.create({"ckpt_path": last, "trainer": more}))  # trains on: not refused
