"""Lightning's CSVLogger, able to continue a resumed run's ``metrics.csv``; figures sent to the loggers."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
from lightning.pytorch.loggers import CSVLogger as _CSVLogger
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from matplotlib.figure import Figure

from spikelight.core.files import atomic_open

__all__ = ["CSVLogger", "log_figure"]


def log_figure(trainer: L.Trainer, name: str, fig: Figure, out_dir: Path) -> Path:
    """Save ``fig`` as ``out_dir/<name>.png`` and send it to every logger that
    takes images (wandb image, TensorBoard figure; CSV keeps the file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(f"plots/{name}", fig, global_step=trainer.global_step, close=False)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=f"plots/{name}", images=[str(path)], step=trainer.global_step)
    plt.close(fig)
    return path


class _Writer(ExperimentWriter):
    """Lightning's writer, rewriting ``metrics.csv`` atomically when a new column appears (Lightning rewrites the
    file in place: a process killed in that instant lost every row; :mod:`spikelight.core.files`)."""

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        if "://" in str(self.metrics_file_path):  # remote storage: Lightning's fsspec writer
            super()._rewrite_with_new_header(fieldnames)
            return
        with open(self.metrics_file_path, newline="") as f:
            metrics = list(csv.DictReader(f))
        with atomic_open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(metrics)


class _AppendingWriter(_Writer):
    """Keeps an existing ``metrics.csv`` (and its columns) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class CSVLogger(_CSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` plus ``append``: when true, rows
    are added to an existing ``metrics.csv`` (a run resumed in its own folder)
    instead of Lightning's default of deleting the file. A new column rewrites the
    file atomically."""

    def __init__(self, *args, append: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = (_AppendingWriter if self.append else _Writer)(log_dir=self.log_dir)
        return self._experiment
