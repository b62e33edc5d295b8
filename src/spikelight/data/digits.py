"""scikit-learn's built-in handwritten digits (1,797 real 8×8 images), offline."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, TensorDataset

from spikelight.data.base import ClassificationDataModule

__all__ = ["DigitsDataModule"]


class DigitsDataModule(ClassificationDataModule):
    """Digits upsampled (bilinear) to [1, 28, 28] in [0, 1], so MNIST models run unchanged.

    Fixed stratified split: ``test_fraction`` for test, ``val_fraction`` for
    validation, the rest for training (1,257 / 180 / 360 with the defaults).
    ``val_size`` (as for the other datasets) overrides ``val_fraction`` with a
    count; 0 validates on the test set.
    """

    name = "digits"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        val_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(root, batch_size, val_size or 0, num_workers, pin_memory, drop_last, eval_batch_size, seed)
        self.val_size = val_size
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in (0, 1) and sum below 1")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    @staticmethod
    def images() -> tuple[torch.Tensor, torch.Tensor]:
        """All 1,797 digits as x [N, 1, 28, 28] float in [0, 1] and y [N] int64."""
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
        return x, torch.tensor(digits.target, dtype=torch.long)

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        x, y = self.images()
        idx = np.arange(len(y))
        rest, test = train_test_split(idx, test_size=self.test_fraction, stratify=y, random_state=self.seed)

        def subset(i: np.ndarray) -> Dataset:
            t = torch.as_tensor(i)
            return TensorDataset(x[t], y[t])

        self.test_set = subset(test)
        if self.val_size == 0:
            print("[spikelight] data.val_size=0: validating on the digits test set")
            self.train_set, self.val_set = subset(rest), self.test_set
            return
        n_val = self.val_size if self.val_size is not None else round(self.val_fraction * len(y))
        if not 0 < n_val < len(rest):
            raise ValueError(f"data.val_size={n_val} must leave training data ({len(rest)} non-test digits)")
        train, val = train_test_split(rest, test_size=n_val, stratify=y[rest], random_state=self.seed)
        self.train_set, self.val_set = subset(train), subset(val)
