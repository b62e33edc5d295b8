"""Callbacks that inject faults into a real training run (named on the command line as
``+callbacks.fault._target_=tests.fault_injection.SignalAt``, with
``SPIKELIGHT_TRUSTED_TARGETS=tests`` since they are outside spikelight)."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAt(L.Callback):
    """Send ``signal`` (a name: SIGKILL, SIGTERM, SIGUSR1) to this process at the
    start of training batch ``step`` (global step), i.e. mid-epoch; with ``at="validation"``,
    at the start of the first validation (not the sanity check) at global step ``step``; with
    ``at="train_epoch_end"``, in the epoch-end hooks at that step (before the ModelCheckpoints', which
    Lightning runs last). With several processes (DDP) every process signals itself, or only the one of
    ``rank``."""

    def __init__(self, step: int, signal: str = "SIGKILL", at: str = "train_batch", rank: int | None = None) -> None:
        if at not in ("train_batch", "validation", "train_epoch_end"):
            raise ValueError(f"SignalAt at must be train_batch, validation or train_epoch_end, got {at!r}")
        self.step, self.signal, self.at, self.rank = step, signal, at, rank

    def _send(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), getattr(signal, self.signal))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self.at == "train_batch":
            self._send(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at == "validation" and not trainer.sanity_checking:
            self._send(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.at == "train_epoch_end":
            self._send(trainer)


class SameWeightsOnEveryProcess(L.Callback):
    """At the end of training, fail (raise) unless every process of a DDP run holds the same weights: what data
    parallelism promises, and what a checkpoint written by rank 0 alone assumes."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import torch

        flat = torch.cat([p.detach().double().flatten() for p in pl_module.parameters()])
        gathered = trainer.strategy.all_gather(flat)
        if gathered.dim() == 2 and not all(torch.equal(gathered[0], g) for g in gathered[1:]):
            raise RuntimeError(f"the weights differ between processes (rank {trainer.global_rank})")


class SlowExitOnRankZero(L.Callback):
    """Rank 0 takes ``seconds`` to handle a stop (as a slow logger's finish can): long enough for Lightning's
    process watcher (it looks every 5 s) to see the other processes' exit codes before rank 0 is done."""

    def __init__(self, seconds: float = 7.0) -> None:
        self.seconds = seconds

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        import time

        if trainer.global_rank == 0:
            time.sleep(self.seconds)


class SaveFailsOnRankZero(L.Callback):
    """The first checkpoint save fails on rank 0 alone, as a full disk does (only rank 0 writes): rank 0 raises
    ``OSError(ENOSPC)``; every other process writes its pid to ``pid_file`` + its rank and then waits, as it would
    in Lightning's barrier after the save under NCCL (until its 30-minute timeout; gloo notices a dead peer)."""

    def __init__(self, pid_file: str, wait_s: float = 600.0) -> None:
        self.pid_file, self.wait_s = pid_file, wait_s

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        import errno
        import time

        if trainer.global_rank == 0:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        with open(f"{self.pid_file}{trainer.global_rank}", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(self.wait_s)
