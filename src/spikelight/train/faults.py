"""Surviving faults: checkpoints that are never half-written, and a checkpoint on pre-emption.

- :class:`AtomicCheckpointIO` (``trainer.plugins``): a checkpoint is written to a
  temporary file next to it, flushed to disk, then renamed over the old one, so a
  kill at any moment leaves either the previous checkpoint or the new one, never
  a truncated file. (Lightning's own writer stages in ``/tmp`` and *copies* into
  place when ``/tmp`` is another filesystem: a kill during that copy truncates it.)
- :class:`PreemptionCheckpoint` (``callbacks=default``): on SIGTERM (``kill``, SLURM
  time limit, Docker stop), SIGUSR1 (SLURM's pre-emption warning with
  ``--signal=USR1@90``) or SIGINT (Ctrl-C; a second Ctrl-C stops at once, without a
  checkpoint) it finishes the current training batch, writes ``checkpoints/preempted.ckpt``
  and exits with ``128 + signal``; ``ckpt_path=<that file>`` (or ``last``, or the run
  folder) resumes from it with the run's own overrides.
- :class:`IntervalCheckpoint` (``callbacks=default``): every ``minutes`` of training it writes
  ``checkpoints/interval.ckpt`` inside the epoch, so a process killed without a signal
  (``kill -9``, out of memory, the end of a session) loses at most those minutes, not the
  epoch; ``ckpt_path=last`` (the run's newest checkpoint) resumes it exactly.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from spikelight.core.files import atomic_open

__all__ = ["AtomicCheckpointIO", "PreemptionCheckpoint", "Preempted", "IntervalCheckpoint"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic and durable (:func:`spikelight.core.files.atomic_open`):
    a process killed while saving leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: Lightning's fsspec writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


def _writes_at_this_epochs_end(cb: object, trainer: L.Trainer) -> bool:
    """Whether ``cb`` is a ``ModelCheckpoint`` that will write a full checkpoint at the end of the current training
    epoch, whatever the metrics (``last.ckpt``: no monitor), as Lightning 2.6 decides it
    (``ModelCheckpoint.on_train_epoch_end``): not with a monitor (even with ``save_last``, written only when the
    metric improved), ``save_top_k=0``, ``save_weights_only``, an epoch ``every_n_epochs`` leaves out, or a save
    moved to validation's end (``check_val_every_n_epoch`` > 1, ``val_check_interval`` < 1, unless
    ``save_on_train_epoch_end``). Lightning's private helpers missing (another version): False."""
    if not isinstance(cb, ModelCheckpoint) or cb.monitor is not None or cb.save_top_k == 0 or cb.save_weights_only:
        return False
    every = getattr(cb, "_every_n_epochs", 0)
    on_epoch_end = getattr(cb, "_should_save_on_train_epoch_end", None)
    skip = getattr(cb, "_should_skip_saving_checkpoint", None)
    if not (isinstance(every, int) and every >= 1 and callable(on_epoch_end) and callable(skip)):
        return False
    return (trainer.current_epoch + 1) % every == 0 and bool(on_epoch_end(trainer)) and not skip(trainer)


def written_checkpoints(trainer: L.Trainer | None) -> list[Path]:
    """The full checkpoint files (not weights-only) the run's ModelCheckpoints still hold (their best and last),
    oldest first."""
    callbacks = [cb for cb in (trainer.checkpoint_callbacks if trainer is not None else [])
                 if not getattr(cb, "save_weights_only", False)]
    paths = {Path(p) for cb in callbacks for attr in ("best_model_path", "last_model_path") if (p := getattr(cb, attr, ""))}
    return sorted((p for p in paths if p.is_file()), key=lambda p: p.stat().st_mtime_ns)


def _drop_if_superseded(trainer: L.Trainer, path: Path) -> None:
    """Remove ``path`` (a mid-epoch checkpoint of this run: interval, pre-emption) once a full checkpoint the run's
    ModelCheckpoints wrote is newer: resuming from it would go back in time. Rank 0 only (it writes the files)."""
    if not (trainer.is_global_zero and path.is_file()):
        return
    mtime = path.stat().st_mtime_ns
    if any(p.stat().st_mtime_ns > mtime for p in written_checkpoints(trainer)):
        path.unlink(missing_ok=True)


def _checkpoint_folder(trainer: L.Trainer) -> Path:
    """The folder of the run's first ``ModelCheckpoint`` (else ``<default_root_dir>/checkpoints``)."""
    return next(
        (Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath),
        Path(trainer.default_root_dir) / "checkpoints",
    )


def _global_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("global_step", -1))
    except Exception:  # unreadable: not the one to name
        return None


def _between_steps(trainer: L.Trainer) -> bool:
    """After the training batch that stepped the optimizer (not inside a gradient accumulation). Reads the
    epoch's batches processed, which counts the current batch from its ``on_train_batch_end`` on."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    return progress.is_last_batch or progress.current.processed % trainer.accumulate_grad_batches == 0


def _largest_over_ranks(trainer: L.Trainer, *values: int) -> tuple[int, ...]:
    """The largest of each of ``values`` over the processes of a DDP run (one all-reduce); the values themselves
    with one process. The checkpoint callbacks below decide through it, so that every process saves at the same
    batch: Lightning's ``save_checkpoint`` waits for all of them (a process that went on training would never come)."""
    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.int64, device=trainer.strategy.root_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(int(v) for v in t.tolist())


_VOTE = "_spikelight_batch_vote"  # the trainer's attribute holding this batch's vote


def _batch_vote(trainer: L.Trainer, asking: L.Callback) -> int:
    """After a training batch, what ``asking`` is to act on, agreed by every process: for a
    :class:`PreemptionCheckpoint`, the signal any process's received (0: none); for an :class:`IntervalCheckpoint`,
    1 when any process's time is up. One all-reduce per batch holds every such callback's value (one slot each, in
    the run's callback order): the first of them to ask makes it, the others read it (Lightning 2.6 makes one of
    its own per batch under DDP, for its SIGTERM flag)."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    key = (trainer.global_step, progress.total.processed)
    voters = [cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, (PreemptionCheckpoint, IntervalCheckpoint))]
    cached = getattr(trainer, _VOTE, None)
    if cached is None or cached[0] != key:
        mine = [(cb.received or 0) if isinstance(cb, PreemptionCheckpoint) else int(cb._due()) for cb in voters]
        cached = (key, dict(zip(map(id, voters), _largest_over_ranks(trainer, *mine))))
        setattr(trainer, _VOTE, cached)
    return cached[1].get(id(asking), 0)


def _forget_votes(trainer: L.Trainer) -> None:
    """At a fit's start: a vote of an earlier fit on this trainer is not this one's (its counters may repeat)."""
    if hasattr(trainer, _VOTE):
        delattr(trainer, _VOTE)


def _validates_next(trainer: L.Trainer) -> bool:
    """Whether a validation runs right after the current training batch (Lightning's own test; its private
    helpers missing: True, i.e. do not save here)."""
    loop, fetcher = trainer.fit_loop.epoch_loop, getattr(trainer.fit_loop, "_data_fetcher", None)
    check = getattr(loop, "_should_check_val_fx", None)
    return not callable(check) or fetcher is None or bool(check(fetcher))


class Preempted(SystemExit):
    """Raised after the pre-emption checkpoint is written; exit code ``128 + signal``.
    ``path``: the checkpoint; ``metrics``: the run's metrics when it stopped."""

    def __init__(self, code: int, message: str, path: Path | None = None,
                 metrics: dict[str, float] | None = None) -> None:
        super().__init__(code)
        self.message = message
        self.path = path
        self.metrics = dict(metrics or {})


class PreemptionCheckpoint(L.Callback):
    """Save a checkpoint and stop when SIGTERM or SIGUSR1 arrives during ``fit``.

    The signal handler only sets a flag; the checkpoint is written at the end
    of the current training batch (a consistent state; inside a gradient accumulation, after the
    batch that steps the optimizer; before a validation inside the epoch, at that validation's end),
    as ``filename`` in the folder of the run's first ``ModelCheckpoint`` (else ``<run>/checkpoints``).
    When the signal comes in an epoch's last batch or its validation and a ``ModelCheckpoint`` will
    write a full checkpoint at that epoch's end (the default ``last.ckpt``), ``filename`` is written
    there first (should the process be killed during the epoch's end), then the epoch ends — its
    validation, its epoch-end hooks and checkpoints — and the run stops before the next epoch begins
    (or before testing), naming that epoch-end checkpoint (``filename`` is removed): resumed from a
    checkpoint of the last batch, Lightning 2.6 counts that epoch done without validating it or
    saving its checkpoints, which is what a run without such a callback gets (its batches are all trained,
    that epoch is not validated). The processes of a DDP run agree on the signal at each of these points
    (one all-reduce of a number), so all save and stop at the same batch, whichever of them got it when;
    each resumes with its own share of the rest of the epoch.

    Args:
        signals: names of the signals to handle.
        filename: checkpoint file name.
    """

    def __init__(self, signals: tuple[str, ...] | list[str] = ("SIGTERM", "SIGUSR1", "SIGINT"),
                 filename: str = "preempted.ckpt") -> None:
        self.signals = [getattr(signal, s) for s in signals if hasattr(signal, s)]
        self.filename = filename
        self.received: int | None = None
        self.path: Path | None = None
        self._previous: dict[int, Any] = {}
        self._after_epoch_end = False  # a signal in an epoch's last batch waits for the epoch's end
        self._ctrl_c = False  # pressed once (whatever signal the processes agreed on since)

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            if self._ctrl_c:  # Ctrl-C twice: stop now (Lightning's own shutdown)
                raise KeyboardInterrupt
            self._ctrl_c = True
            import sys

            print("\n[spikelight] Ctrl-C: stopping at the end of this batch with a checkpoint "
                  "(Ctrl-C again stops at once, without one)", file=sys.stderr, flush=True)
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _forget_votes(trainer)
        # after Lightning's own signal setup (which would replace these handlers)
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handler)

    def _restore(self) -> None:
        for s, h in self._previous.items():
            if h is not None:
                signal.signal(s, h)
        self._previous = {}

    def _agreed(self, trainer: L.Trainer) -> int | None:
        """The signal any process of the run received (each process of a DDP run gets it at its own moment:
        SLURM, torchrun and ``kill`` signal every process); all then stop at the same batch."""
        (signum,) = _largest_over_ranks(trainer, self.received or 0)
        return self._take(signum)

    def _take(self, signum: int) -> int | None:
        """The agreed signal (0: none) becomes every process's own, so all exit with the same code."""
        if signum:
            self.received = signum
        return signum or None  # (not self.received: a signal handled after the all-reduce counts at the next call)

    def _wait_for_epoch_end(self, trainer: L.Trainer) -> bool:
        """At an epoch's last batch (or its validation) with a checkpoint coming at the epoch's end: save
        ``filename`` now, and stop after the epoch has ended."""
        if not (trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
                and any(_writes_at_this_epochs_end(cb, trainer) for cb in trainer.checkpoint_callbacks)):
            return False
        self.path = _checkpoint_folder(trainer) / self.filename
        trainer.save_checkpoint(self.path, weights_only=False)
        self._after_epoch_end = True
        return True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._take(_batch_vote(trainer, self)) is None or self._after_epoch_end:
            return
        if not _between_steps(trainer):
            return  # inside a gradient accumulation: its batches' gradients are in no checkpoint
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if not last and _validates_next(trainer):
            return  # at that validation's end (a checkpoint before it resumes with it skipped)
        if not self._wait_for_epoch_end(trainer):
            self._save_and_exit(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._agreed(trainer) is None or trainer.sanity_checking or self._after_epoch_end or not _between_steps(trainer):
            return  # (inside a gradient accumulation: after the batch that steps the optimizer)
        if not self._wait_for_epoch_end(trainer):
            self._save_and_exit(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._agreed(trainer) is not None:  # arrived in the last epoch's end
            self._exit_after_epoch_end(trainer)
        _drop_if_superseded(trainer, _checkpoint_folder(trainer) / self.filename)  # an earlier stop's, resumed

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()
        if self._agreed(trainer) is not None:  # ... of the run's last epoch: stop before testing
            self._exit_after_epoch_end(trainer)
        _drop_if_superseded(trainer, _checkpoint_folder(trainer) / self.filename)

    def _exit_after_epoch_end(self, trainer: L.Trainer) -> None:
        """Stop, naming the newest checkpoint of this step written at the epoch's end (``last.ckpt``) and
        removing ``filename`` of the last batch; else naming that one (a signal after the epoch's validation
        with no such checkpoint: saved now). Rank 0, which writes the files, decides for every process."""
        insurance, self._after_epoch_end = self.path, False
        named = None
        if trainer.is_global_zero:
            written = [p for p in written_checkpoints(trainer)
                       if p != insurance and _global_step(p) == trainer.global_step]
            if written:
                if insurance is not None:
                    insurance.unlink(missing_ok=True)
                named = written[-1]
            elif insurance is not None and insurance.is_file():
                named = insurance
        named = trainer.strategy.broadcast(named, src=0)  # (one process: itself)
        if named is not None:
            self._exit(trainer, named)
        self._save_and_exit(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _save_and_exit(self, trainer: L.Trainer) -> None:
        path = _checkpoint_folder(trainer) / self.filename
        trainer.save_checkpoint(path, weights_only=False)  # the full training state (said: no log line)
        self._exit(trainer, path)

    def _exit(self, trainer: L.Trainer, path: Path) -> None:
        """Raise :class:`Preempted` naming the checkpoint to resume from."""
        signum, self.received = self.received, None
        self.path = path
        name = signal.Signals(signum).name
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, (int, float)) or v.numel() == 1}
        raise Preempted(128 + signum, f"{name} at epoch {trainer.current_epoch}, step {trainer.global_step}: saved {self.path}",
                        self.path, metrics)


class IntervalCheckpoint(L.Callback):
    """Write ``filename`` (the full training state) every ``minutes`` of training, inside epochs.

    ``last.ckpt`` is written at each epoch's end; a process killed without a signal (``kill -9``, out of
    memory, a session or a machine that ends) loses the epoch in progress. This callback saves after a
    training batch once ``minutes`` have passed since the fit started or the run's last full checkpoint
    (``last.ckpt`` at an epoch's end, its own previous save), in the folder of the run's first
    ``ModelCheckpoint``: resuming from it (``ckpt_path=last`` takes the run's newest checkpoint) continues the
    epoch where it stopped, as from ``preempted.ckpt`` (the sampler leaves out the batches already trained on).
    It waits for the next batch rather than save at one that ends a gradient accumulation's middle (those
    batches' gradients are in no state) or that a validation follows (resumed, Lightning 2.6 counts that
    validation done, never run), and never saves after an epoch's last batch (resumed, that epoch counts done,
    never validated: the epoch's end writes ``last.ckpt`` instead). A NaN / Inf the run has not yet reported
    (on an accelerator the checks read back every 50 steps) stops the run before a save would keep it.
    ``filename`` is removed once a later checkpoint has superseded it (an epoch's end, the fit's end, a start
    from another checkpoint). List it after callbacks that record each batch (the spike plots' loss curve),
    so that the batch it saves after is in their state. With several processes (DDP) all save at the same batch,
    the first after any one's ``minutes`` are up (one all-reduce per batch, shared with the pre-emption), and each resumes with
    its own share of the rest of the epoch (:class:`spikelight.data.base.EpochShuffleSampler`).

    Args:
        minutes: training time between two saves (> 0).
        filename: the checkpoint's file name, overwritten by each save (atomically with ``AtomicCheckpointIO``).
    """

    def __init__(self, minutes: float = 10.0, filename: str = "interval.ckpt") -> None:
        if not (isinstance(minutes, (int, float)) and minutes > 0):
            raise ValueError(f"callbacks.interval_checkpoint.minutes must be > 0, got {minutes!r}")
        self.minutes, self.filename = float(minutes), filename
        self._since: float | None = None
        self.saves = 0  # how many this process wrote

    def _path(self, trainer: L.Trainer) -> Path:
        return _checkpoint_folder(trainer) / self.filename

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _forget_votes(trainer)
        self._since = time.monotonic()
        path, source = self._path(trainer), trainer.ckpt_path
        if trainer.is_global_zero and not (source and Path(source).resolve() == path.resolve()):
            path.unlink(missing_ok=True)  # of a trajectory this start leaves (a fresh start, a resume from another file)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self._since is not None:
            self._since = time.monotonic()  # any full checkpoint (last.ckpt at an epoch's end, its own) holds this moment

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _drop_if_superseded(trainer, self._path(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _drop_if_superseded(trainer, self._path(trainer))

    def _due(self) -> bool:
        return self._since is not None and time.monotonic() - self._since >= 60.0 * self.minutes

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if not _batch_vote(trainer, self):  # (under DDP: when any process's time is up)
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or not _between_steps(trainer) or _validates_next(trainer):
            return
        check = getattr(pl_module, "_raise_if_nonfinite", None)
        if callable(check):
            check()
        trainer.save_checkpoint(self._path(trainer), weights_only=False)
        self._since, self.saves = time.monotonic(), self.saves + 1
