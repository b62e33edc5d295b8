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
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["AtomicCheckpointIO", "PreemptionCheckpoint", "Preempted"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic (temp file, fsync, ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: Lightning's fsspec writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: the rename stays atomic
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _writes_every_epoch(cb: object) -> bool:
    """A ModelCheckpoint that writes a checkpoint at the end of every epoch (``last.ckpt``: no monitor, or
    ``save_last``), the one a signal in an epoch's last batch waits for."""
    return (isinstance(cb, ModelCheckpoint) and getattr(cb, "_every_n_epochs", 0) == 1
            and not getattr(cb, "_every_n_train_steps", 0) and getattr(cb, "_train_time_interval", None) is None
            and (cb.monitor is None or bool(cb.save_last)))


def written_checkpoints(trainer: L.Trainer | None) -> list[Path]:
    """The checkpoint files the run's ModelCheckpoints still hold (their best and last), oldest first."""
    callbacks = trainer.checkpoint_callbacks if trainer is not None else []
    paths = {Path(p) for cb in callbacks for attr in ("best_model_path", "last_model_path") if (p := getattr(cb, attr, ""))}
    return sorted((p for p in paths if p.is_file()), key=lambda p: p.stat().st_mtime_ns)


def _global_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("global_step", -1))
    except Exception:  # unreadable: not the one to name
        return None


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
    of the current training batch (a consistent state), as ``filename`` in the
    folder of the run's first ``ModelCheckpoint`` (else ``<run>/checkpoints``).
    When that batch is its epoch's last and a ``ModelCheckpoint`` writes every epoch (the
    default ``last.ckpt``), the epoch ends first — its validation, its epoch-end hooks and
    checkpoints — and the run stops before the next epoch begins (or before testing), naming
    that checkpoint: resumed from a checkpoint of the last batch, Lightning 2.6 counts that
    epoch done without validating it or saving its checkpoints (what a run without such a
    callback still does: its batches are all trained, that epoch is not validated).

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

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            if self.received == signal.SIGINT:  # Ctrl-C twice: stop now (Lightning's own shutdown)
                raise KeyboardInterrupt
            import sys

            print("\n[spikelight] Ctrl-C: stopping at the end of this batch with a checkpoint "
                  "(Ctrl-C again stops at once, without one)", file=sys.stderr, flush=True)
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
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

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.received is None:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch and any(map(_writes_every_epoch,
                                                                             trainer.checkpoint_callbacks)):
            self._after_epoch_end = True  # its validation, epoch end and checkpoints first
            return
        self._save_and_exit(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.received is not None and not trainer.sanity_checking and not self._after_epoch_end:
            self._save_and_exit(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.received is not None:  # arrived in the last epoch's last batch
            self._exit_after_epoch_end(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()
        if self.received is not None:  # ... of the run's last epoch: stop before testing
            self._exit_after_epoch_end(trainer)

    def _exit_after_epoch_end(self, trainer: L.Trainer) -> None:
        """Stop, naming the newest checkpoint of this step (written at the epoch's end: ``last.ckpt``, a
        ``ModelCheckpoint`` without a monitor); without one, save ``filename`` now."""
        self._after_epoch_end = False
        written = [p for p in written_checkpoints(trainer) if _global_step(p) == trainer.global_step]
        if not written:
            self._save_and_exit(trainer)  # (raises)
        self._exit(trainer, written[-1])

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _save_and_exit(self, trainer: L.Trainer) -> None:
        folder = next(
            (Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath),
            Path(trainer.default_root_dir) / "checkpoints",
        )
        trainer.save_checkpoint(folder / self.filename, weights_only=False)  # the full training state (said: no log line)
        self._exit(trainer, folder / self.filename)

    def _exit(self, trainer: L.Trainer, path: Path) -> None:
        """Raise :class:`Preempted` naming the checkpoint to resume from."""
        signum, self.received = self.received, None
        self.path = path
        name = signal.Signals(signum).name
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if isinstance(v, (int, float)) or v.numel() == 1}
        raise Preempted(128 + signum, f"{name} at epoch {trainer.current_epoch}, step {trainer.global_step}: saved {self.path}",
                        self.path, metrics)
