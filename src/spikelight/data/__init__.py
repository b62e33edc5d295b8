"""LightningDataModules. Samples: x float [1, 28, 28] in [0, 1], y int64."""

from spikelight.data.base import ClassificationDataModule, DatasetNotFoundError, data_root
from spikelight.data.digits import DigitsDataModule
from spikelight.data.mnist import FashionMNISTDataModule, MNISTDataModule, write_idx
from spikelight.data.sequence import (
    SequentialDigitsDataModule,
    SequentialFashionMNISTDataModule,
    SequentialMNISTDataModule,
)

__all__ = [
    "ClassificationDataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "MNISTDataModule",
    "SequentialDigitsDataModule",
    "SequentialFashionMNISTDataModule",
    "SequentialMNISTDataModule",
    "data_root",
    "write_idx",
]
