"""Callbacks that inject faults into a real training run (named on the command line as
``+callbacks.fault._target_=tests.fault_injection.SignalAt``, with
``SPIKELIGHT_TRUSTED_TARGETS=tests`` since they are outside spikelight)."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAt(L.Callback):
    """Send ``signal`` (a name: SIGKILL, SIGTERM, SIGUSR1) to this process at the
    start of training batch ``step`` (global step), i.e. mid-epoch."""

    def __init__(self, step: int, signal: str = "SIGKILL") -> None:
        self.step, self.signal = step, signal

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal))
