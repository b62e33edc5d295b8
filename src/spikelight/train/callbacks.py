"""Lightning callbacks: spike plots and synaptic-operation / energy statistics,
logged into whatever logger the run uses."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelSummary
from torch import Tensor

from spikelight.synops import E_AC_PJ, E_MAC_PJ, SynOpCounter
from spikelight.train.figures import plot_curves, sample_figures
from spikelight.train.gradient_flow import GradientFlowCallback
from spikelight.train.loggers import log_figure

__all__ = [
    "SpikePlotCallback", "SynOpsCallback", "GradientFlowCallback", "EpochTimeCallback", "EpochSummary", "ModelSummaryLine",
    "log_figure",
]

log = logging.getLogger("spikelight")


class SpikePlotCallback(L.Callback):
    """After testing, draw for the first test batch: output membrane traces +
    spike rasters, output heatmaps, the encoded input, a spike raster of every
    layer and per-layer firing-rate histograms; after fitting, the loss /
    accuracy curves (training loss of every step, epoch metrics).

    PNGs go to ``<run dir>/plots/`` and to the active loggers. The curve data
    is kept in checkpoints, so a resumed run draws its whole history.

    Args:
        num_samples: samples drawn in the per-sample figures.
        dirname: folder under the run directory.
        max_points: per-step losses kept; beyond it, neighbours are averaged
            (long runs keep a bounded history).
    """

    CURVE_KEYS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc")
    FLUSH_EVERY = 1000

    def __init__(self, num_samples: int = 3, dirname: str = "plots", max_points: int = 10_000) -> None:
        self.num_samples = num_samples
        self.dirname = dirname
        self.max_points = max_points
        self.history: list[dict[str, float]] = []
        self.steps: list[tuple[int, float]] = []
        self.stride = 1  # steps averaged into one point
        self._pending: list[tuple[int, Tensor]] = []
        self._partial = (0.0, 0)  # sum and count of steps not yet averaged into a point

    def _dir(self, trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir) / self.dirname

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, Tensor):
            # kept on the device: one transfer per epoch (or per FLUSH_EVERY steps), not a sync every step
            self._pending.append((trainer.global_step, loss.detach()))
            if len(self._pending) >= self.FLUSH_EVERY:  # long epochs: hold a bounded number of tensors
                self._flush_steps()

    def _flush_steps(self) -> None:
        if not self._pending:
            return
        values = torch.stack([v.float() for _, v in self._pending]).cpu().tolist()
        total, count = self._partial
        for (step, _), value in zip(self._pending, values):
            total, count = total + value, count + 1
            if count >= self.stride:
                self.steps.append((int(step), total / count))
                total, count = 0.0, 0
        self._partial = (total, count)
        self._pending = []
        while len(self.steps) > self.max_points:  # halve the resolution, keep the shape
            pairs = zip(self.steps[0::2], self.steps[1::2])
            self.steps = [(b[0], (a[1] + b[1]) / 2) for a, b in pairs]
            self.stride *= 2

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._flush_steps()
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k.replace("_epoch", ""): float(m[k]) for k in self.CURVE_KEYS if k in m})
        self.history.append(row)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_steps()
        if (self.history or self.steps) and trainer.is_global_zero:
            log_figure(trainer, "curves", plot_curves(self.history, self.steps), self._dir(trainer))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        loaders = trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        x, y = next(iter(loader))
        for name, fig in sample_figures(pl_module, x.to(pl_module.device), y, self.num_samples).items():
            log_figure(trainer, name, fig, self._dir(trainer))

    def state_dict(self) -> dict:
        self._flush_steps()
        return {"history": self.history, "steps": self.steps, "stride": self.stride, "partial": list(self._partial)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        self.steps = [tuple(p) for p in state_dict.get("steps", [])]
        self.stride = int(state_dict.get("stride", 1))
        total, count = state_dict.get("partial", (0.0, 0))  # steps not yet averaged into a point (inside an epoch)
        self._partial = (float(total), int(count))


class SynOpsCallback(L.Callback):
    """At test time, count synaptic operations per sample and log
    ``test/sops_per_sample``, ``test/energy_snn_nJ``, ``test/energy_ann_nJ``
    (AC 0.9 pJ, MAC 4.6 pJ; see :mod:`spikelight.synops`)."""

    def __init__(self) -> None:
        self.counter: SynOpCounter | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter = SynOpCounter(pl_module.model)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.counter is None:
            return
        c = self.counter.count
        self.counter.remove()
        self.counter = None
        pl_module.log_dict(
            {
                "test/sops_per_sample": c.sops_per_sample,
                "test/energy_snn_nJ": c.snn_energy_nj,
                "test/energy_ann_nJ": c.ann_energy_nj,
            },
            sync_dist=True,
        )
        if trainer.is_global_zero:  # (the console and train.log, as the epoch lines)
            log.info(f"[spikelight] per test sample: {c.sops_per_sample:,.0f} SOPs, SNN ≈ {c.snn_energy_nj:,.1f} nJ "
                     f"vs equivalent ANN {c.ann_energy_nj:,.1f} nJ (AC {E_AC_PJ} pJ, MAC {E_MAC_PJ} pJ)")


class _EpochClock:
    """The wall-clock time of the training epoch in progress, as far as this process saw it.

    A resume can end an epoch without starting it here, or start it and train no batch (Lightning 2.6 re-ends
    the checkpoint's epoch when ``trainer.max_steps`` is set: 'epoch 2/20: 31357.4 s' was perf_counter() − 0);
    an epoch resumed from a checkpoint inside it (``preempted.ckpt``, ``interval.ckpt``) trains only its rest
    here, and one stopped by ``max_steps`` (or a stop) ends before its last batch. :meth:`stop` says which."""

    def __init__(self) -> None:
        self._start: float | None = None
        self.batches = 0
        self._first_batch = -1  # the index of the first batch this process trained in the epoch

    def start(self) -> None:
        self._start, self.batches, self._first_batch = time.perf_counter(), 0, -1

    def batch_start(self) -> None:
        """Lightning 2.6 calls no ``on_train_epoch_start`` for an epoch resumed inside it: start at its first batch."""
        if self._start is None:
            self.start()

    def batch_end(self, batch_idx: int) -> None:
        if not self.batches:
            self._first_batch = batch_idx
        self.batches += 1

    def stop(self, trainer: L.Trainer) -> tuple[float | None, bool]:
        """(seconds since the epoch started here, None if it did not or trained no batch here; whether those
        seconds are the whole epoch: from its first batch to its last)."""
        seconds = None if self._start is None or not self.batches else time.perf_counter() - self._start
        self._start = None
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        whole = seconds is not None and self._first_batch == 0 and bool(loop and loop.batch_progress.is_last_batch)
        return seconds, whole


class EpochTimeCallback(L.Callback):
    """Wall-clock timing in the logs: ``time/epoch_s`` (one training epoch, validation runs
    inside it included) and ``time/elapsed_s`` (since the fit started) at every validation; and the
    memory high-water mark at each epoch's end: ``mem/peak_rss_mb`` (the process's peak resident set,
    Linux/macOS) and on CUDA ``mem/peak_cuda_mb`` (the peak allocated by torch). ``time/epoch_s`` is only
    logged for an epoch this process trained whole (:class:`_EpochClock`): not for one resumed from a
    checkpoint written inside it, nor one ``trainer.max_steps`` (or a stop) ended before its last batch."""

    def __init__(self) -> None:
        self._fit_start = 0.0
        self._clock = _EpochClock()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock.start()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        self._clock.batch_start()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._clock.batch_end(batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds, whole = self._clock.stop(trainer)
        if whole:
            pl_module.log("time/epoch_s", seconds)
        try:
            import resource  # POSIX only

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
            pl_module.log("mem/peak_rss_mb", peak / (2**20 if sys.platform == "darwin" else 2**10))
        except ImportError:
            pass
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            pl_module.log("mem/peak_cuda_mb", torch.cuda.max_memory_allocated(pl_module.device) / 2**20)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            pl_module.log("time/elapsed_s", time.perf_counter() - self._fit_start)


def _short(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


class EpochSummary(L.Callback):
    """One line per training epoch in the run log (``train.log``) and on the console:
    ``epoch 3/10: train loss 0.0432 acc 0.762 | val loss 0.041 acc 0.778 (best 0.778) | firing neuron 0.101 | 4.2 s``.
    The firing rates are spikes per neuron and step of each spiking layer (their mean beyond three layers).

    A slow run also says early what an epoch will take: when the first epoch's second and third
    batches (the first warms up) take ``slow_s`` or more per batch, one line gives the measured
    seconds per batch and the epoch's expected minutes."""

    def __init__(self, slow_s: float = 5.0) -> None:
        self.slow_s = slow_s
        self._clock = _EpochClock()  # as EpochTimeCallback's
        self._marks: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock.start()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        self._clock.batch_start()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        self._clock.batch_end(batch_idx)
        if len(self._marks) > 2 or not trainer.is_global_zero:
            return
        self._marks.append(time.perf_counter())
        if len(self._marks) == 3:
            per_batch = (self._marks[2] - self._marks[0]) / 2
            batches = trainer.num_training_batches
            if per_batch >= self.slow_s and batches and batches != float("inf"):
                size = getattr(trainer.train_dataloader, "batch_size", None)
                of = f" of {size}" if size else ""
                log.info(f"[spikelight] {per_batch:.1f} s per training batch{of} (measured on batches 2-3): "
                         f"an epoch of {int(batches)} batches takes about {per_batch * batches / 60:.0f} min here")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        seconds, whole = self._clock.stop(trainer)
        log.info("[spikelight] " + self.line(trainer, seconds, None if whole else self._clock.batches))

    @staticmethod
    def line(trainer: L.Trainer, seconds: float | None, part: int | None = None) -> str:
        """The epoch's line; ``part``: the number of batches ``seconds`` covers when not the whole epoch."""
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = []
        for stage, loss_key in (("train", "train/loss_epoch"), ("val", "val/loss")):
            got = [f"loss {_short(m[loss_key])}"] if loss_key in m else []
            if f"{stage}/acc" in m:
                got.append(f"acc {m[f'{stage}/acc']:.4f}")
            if stage == "val" and "val/acc_best" in m:
                got.append(f"(best {m['val/acc_best']:.4f})")
            if got:
                parts.append(f"{stage} " + " ".join(got))
        rates = {k.removeprefix("train/fr/"): v for k, v in m.items() if k.startswith("train/fr/")}
        if rates:
            shown = (" ".join(f"{k} {v:.3f}" for k, v in rates.items()) if len(rates) <= 3
                     else f"mean of {len(rates)} layers {sum(rates.values()) / len(rates):.3f}")
            parts.append(f"firing {shown} / step")
        if seconds is not None:
            parts.append(f"{seconds:.1f} s" + ("" if part is None else f" for the {part} batches trained here"))
        if not parts:  # an epoch a resume ended again (the checkpoint was written inside its end)
            return f"epoch {trainer.current_epoch + 1}{epochs}: resumed at its end"
        return f"epoch {trainer.current_epoch + 1}{epochs}: " + " | ".join(parts)


class ModelSummaryLine(ModelSummary):
    """Lightning's model summary as one line (Lightning's table counted ``Total FLOPs: 0``: spikelight
    counts synaptic operations instead, at test time): the model, its parameters and the input it is
    given, e.g. ``model ConvSNN: 13.0 M parameters (all trainable, 52.0 MB); input per step [1, 28, 28]
    from DigitsDataModule (8x8 images upsampled to 28x28)``."""

    def __init__(self) -> None:
        super().__init__(max_depth=0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            log.info("[spikelight] " + self.line(pl_module, trainer.datamodule))

    @staticmethod
    def line(pl_module: L.LightningModule, datamodule=None) -> str:
        from lightning.pytorch.utilities.model_summary import get_human_readable_count

        model = getattr(pl_module, "model", pl_module)
        params = list(pl_module.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        size_mb = sum(p.numel() * p.element_size() for p in params) / 2**20
        which = "all trainable" if trainable == total else f"{get_human_readable_count(trainable)} trainable"
        text = f"model {type(model).__name__}: {get_human_readable_count(total)} parameters ({which}, {size_mb:.3g} MB)"
        if datamodule is not None:
            shape = getattr(datamodule, "num_features", None)
            shape = f"{shape} features" if shape is not None else list(getattr(datamodule, "in_shape", []) or [])
            if shape:
                note = getattr(datamodule, "shape_note", "")
                text += f"; input per step {shape} from {type(datamodule).__name__}" + (f" ({note})" if note else "")
        return text
