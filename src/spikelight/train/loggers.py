"""Lightning's CSVLogger, able to continue a resumed run's ``metrics.csv``."""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger as _CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

__all__ = ["CSVLogger"]


class _AppendingWriter(ExperimentWriter):
    """Keeps an existing ``metrics.csv`` (and its columns) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])


class CSVLogger(_CSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` plus ``append``: when true, rows
    are added to an existing ``metrics.csv`` (a run resumed in its own folder)
    instead of Lightning's default of deleting the file."""

    def __init__(self, *args, append: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None and self.append:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return super().experiment
