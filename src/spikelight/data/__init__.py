"""LightningDataModules. Samples: x float [C, H, W] (``in_shape``; in [0, 1] unless normalised), y int64;
sequence data x [T, F]; event data (:mod:`spikelight.data.neuromorphic`, through tonic) x [T, 2, H, W]
(camera) or [T, F] (audio)."""

from spikelight.data.base import ClassificationDataModule, DatasetNotFoundError, ImageDataset, data_root
from spikelight.data.cifar import CIFAR10DataModule, CIFAR100DataModule, write_cifar
from spikelight.data.digits import DigitsDataModule
from spikelight.data.mnist import FashionMNISTDataModule, MNISTDataModule, write_idx
from spikelight.data.neuromorphic import (
    DVSGestureDataModule,
    EventDataModule,
    NMNISTDataModule,
    SHDDataModule,
    SSCDataModule,
)
from spikelight.data.sequence import (
    SequentialDigitsDataModule,
    SequentialFashionMNISTDataModule,
    SequentialMNISTDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "DVSGestureDataModule",
    "EventDataModule",
    "FashionMNISTDataModule",
    "ImageDataset",
    "MNISTDataModule",
    "NMNISTDataModule",
    "SHDDataModule",
    "SSCDataModule",
    "SequentialDigitsDataModule",
    "SequentialFashionMNISTDataModule",
    "SequentialMNISTDataModule",
    "data_root",
    "write_cifar",
    "write_idx",
]
