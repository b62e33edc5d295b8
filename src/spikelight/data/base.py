"""Shared DataModule machinery: one data root, a seeded validation split, loaders."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset, random_split

from spikelight.errors import DatasetNotFoundError

__all__ = ["DatasetNotFoundError", "ClassificationDataModule", "EpochShuffleSampler", "data_root"]


class EpochShuffleSampler(Sampler[int]):
    """Random order that depends only on ``(seed, epoch)``, not on the global RNG.

    Lightning calls ``set_epoch`` at every epoch start (as for DistributedSampler),
    so a run resumed from a checkpoint sees exactly the batches an uninterrupted
    run would have seen.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$SPIKELIGHT_DATA``, else ``data/``."""
    return Path(root or os.environ.get("SPIKELIGHT_DATA") or "data")


class ClassificationDataModule(L.LightningDataModule):
    """Image classification data held in memory as tensors.

    Samples are ``x`` float [1, 28, 28] in [0, 1] and ``y`` int64 labels.
    Subclasses implement :meth:`load` (train and test datasets as tensors).

    Args:
        root: data root (see :func:`data_root`).
        batch_size: training batch size (also used for evaluation unless
            ``eval_batch_size`` is set).
        val_size: samples carved from the training set for validation with a
            fixed ``seed``; 0 = no carve-out, validate on the test set (what the
            SpikingJelly tutorials report; a warning says so).
        num_workers, pin_memory: DataLoader options.
        drop_last: drop the last partial training batch.
        seed: seed of the validation split.
    """

    num_classes: int = 10
    name: str = "dataset"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        val_size: int = 5000,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        if val_size < 0:
            raise ValueError(f"data.val_size must be >= 0, got {val_size}")
        self.root = data_root(root)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size = val_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def load(self) -> tuple[TensorDataset, TensorDataset]:
        """Return (full training set, test set)."""
        raise NotImplementedError

    def split(self, full_train: TensorDataset) -> tuple[Dataset, Dataset | None]:
        """Carve ``val_size`` samples from the training set with a fixed seed."""
        if self.val_size == 0:
            return full_train, None
        if self.val_size >= len(full_train):
            raise ValueError(
                f"data.val_size={self.val_size} leaves no training data ({len(full_train)} samples in {self.name})"
            )
        gen = torch.Generator().manual_seed(self.seed)
        train, val = random_split(full_train, [len(full_train) - self.val_size, self.val_size], generator=gen)
        return train, val

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        full_train, self.test_set = self.load()
        self.train_set, val = self.split(full_train)
        if val is None:
            print(f"[spikelight] data.val_size=0: validating on the {self.name} test set (as the SJ tutorials do)")
            val = self.test_set
        self.val_set = val

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=EpochShuffleSampler(len(ds), self.seed) if train else None,
            # own generator: creating an iterator must not draw from the global RNG
            # (the Poisson encoder's), or resumed runs would see different spikes
            generator=torch.Generator().manual_seed(self.seed),
            drop_last=self.drop_last if train else False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
