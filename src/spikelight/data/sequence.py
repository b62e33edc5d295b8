"""Sequential image data: each image becomes a sequence (sequential / permuted MNIST).

Samples are batch-first sequences ``x`` [T, F] (a batch is [B, T, F]); an
encoder (``encoder=sequence`` or ``threshold_crossing``) makes them time-major.

    order=pixel     T = 784, F = 1   (pixel by pixel, row-major, 1 step per pixel)
    order=row       T = 28,  F = 28  (row by row)
    order=permuted  T = 784, F = 1   (pixels in a fixed random order, ``permute_seed``)

``pixels_per_step=k`` (pixel and permuted orders) feeds k consecutive pixels per
step: T = 784/k, F = k (k = 4: 196 steps; k = 28 is ``order=row``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikelight.data.digits import DigitsDataModule
from spikelight.data.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "ORDERS",
    "image_to_sequence",
    "SequenceDataset",
    "SequentialMNISTDataModule",
    "SequentialFashionMNISTDataModule",
    "SequentialDigitsDataModule",
]

ORDERS = ("pixel", "row", "permuted")


def image_to_sequence(x: Tensor, order: str, permutation: Tensor | None = None, pixels_per_step: int = 1) -> Tensor:
    """One image [1, H, W] → sequence [T, F] (see module docstring)."""
    img = x.reshape(x.shape[-2], x.shape[-1])
    if order == "row":
        return img
    pixels = img.reshape(-1)
    if order == "permuted":
        pixels = pixels[permutation]
    return pixels.reshape(-1, pixels_per_step)


class SequenceDataset(Dataset):
    """Wraps an image dataset: item ``key`` → (sequence [T, F], label)."""

    def __init__(self, images: Dataset, order: str, permutation: Tensor | None, pixels_per_step: int = 1) -> None:
        self.images, self.order, self.permutation, self.pixels_per_step = images, order, permutation, pixels_per_step

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> tuple[Tensor, Tensor]:
        x, y = self.images[key]
        return image_to_sequence(x, self.order, self.permutation, self.pixels_per_step), y


class _SequenceMixin:
    """Turns an image DataModule's splits into sequences after its own setup."""

    #: what to use offline instead, completed by this data's order (``data=psmnist`` → ``data=sfmnist data.order=permuted``)
    offline_instead = "use data=sfmnist{same} (sequential Fashion-MNIST; Debian: apt-get install dataset-fashion-mnist)"

    @property
    def offline_hint(self) -> str:
        same = "".join(f" data.{k}={v}" for k, v, default in (("order", self.order, "pixel"),
                       ("pixels_per_step", self.pixels_per_step, 1)) if v != default)
        return "offline, " + self.offline_instead.format(same=same)

    def __init__(
        self, *args: Any, order: str = "pixel", permute_seed: int = 0, pixels_per_step: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if order not in ORDERS:
            raise ValueError(f"data.order must be one of {ORDERS}, got {order!r}")
        n = self.image_size[0] * self.image_size[1]
        if isinstance(pixels_per_step, bool) or not isinstance(pixels_per_step, int) or pixels_per_step <= 0 \
                or n % pixels_per_step or (order == "row" and pixels_per_step != 1):
            raise ValueError(
                f"data.pixels_per_step must be a positive divisor of {n} (pixel / permuted orders only), "
                f"got {pixels_per_step!r}"
            )
        self.order = order
        self.permute_seed = int(permute_seed)
        self.pixels_per_step = pixels_per_step
        gen = torch.Generator().manual_seed(self.permute_seed)
        self.permutation = torch.randperm(n, generator=gen) if order == "permuted" else None

    image_size: tuple[int, int] = (28, 28)

    @property
    def seq_len(self) -> int:
        """Time steps per sample."""
        h, w = self.image_size
        return h if self.order == "row" else h * w // self.pixels_per_step

    @property
    def num_features(self) -> int:
        """Inputs per time step."""
        return self.image_size[1] if self.order == "row" else self.pixels_per_step

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)  # type: ignore[misc]
        wrapped: dict[int, SequenceDataset] = {}
        for split in ("train_set", "val_set", "test_set"):
            ds = getattr(self, split)
            if ds is None or isinstance(ds, SequenceDataset):
                continue
            if id(ds) not in wrapped:  # val may be the test set (val_size=0): wrap it once
                wrapped[id(ds)] = SequenceDataset(ds, self.order, self.permutation, self.pixels_per_step)
            setattr(self, split, wrapped[id(ds)])


class SequentialMNISTDataModule(_SequenceMixin, MNISTDataModule):
    """Sequential MNIST (``data=smnist``; ``data=psmnist`` is ``order=permuted``)."""

    name = "MNIST"


class SequentialFashionMNISTDataModule(_SequenceMixin, FashionMNISTDataModule):
    """Sequential Fashion-MNIST (``data=sfmnist``), offline from Debian's package."""

    name = "Fashion-MNIST"
    offline_instead = "install Debian's dataset-fashion-mnist or use data=sdigits{same}"


class SequentialDigitsDataModule(_SequenceMixin, DigitsDataModule):
    """scikit-learn's digits (upsampled to 28×28) as sequences (``data=sdigits``; tiny, offline)."""

    name = "digits"
