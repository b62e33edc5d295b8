"""scikit-learn's built-in handwritten digits (1,797 real 8×8 images), offline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from spikelight.core.errors import ConfigError
from spikelight.data.base import ClassificationDataModule

__all__ = ["DigitsDataModule"]


class DigitsDataModule(ClassificationDataModule):
    """Digits upsampled (bilinear) to [1, 28, 28] in [0, 1], so MNIST models run unchanged.

    Fixed stratified split: ``test_fraction`` for test, ``val_fraction`` for
    validation, the rest for training (1,257 / 180 / 360 with the defaults).
    ``val_size`` (as for the other datasets) overrides ``val_fraction`` with a
    count or a fraction of the non-test digits; 0 validates on the test set. Other arguments as
    :class:`ClassificationDataModule`.
    """

    name = "digits"
    mean, std = (0.3053,), (0.3247,)  # of all 1,797 upsampled digits
    #: said beside the input shape when a run starts (a conv net on digits sees 28x28, not 8x8)
    shape_note = "8x8 digits upsampled to 28x28"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        val_size: int | float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(root, batch_size, val_size or 0, **kwargs)
        self.val_size = val_size
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ConfigError("data.val_fraction and data.test_fraction must be in (0, 1) and sum below 1")
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self._n_total = 0

    @staticmethod
    def images() -> tuple[torch.Tensor, torch.Tensor]:
        """All 1,797 digits as x [N, 1, 28, 28] float in [0, 1] and y [N] int64."""
        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
        return x, torch.tensor(digits.target, dtype=torch.long)

    def load(self) -> tuple[TensorDataset, TensorDataset]:
        """(non-test digits, test digits): a stratified ``test_fraction`` split with ``seed``."""
        x, y = self.images()
        self._n_total = len(y)
        rest, test = train_test_split(np.arange(len(y)), test_size=self.test_fraction, stratify=y, random_state=self.seed)
        rest, test = torch.as_tensor(rest), torch.as_tensor(test)
        return TensorDataset(x[rest], y[rest]), TensorDataset(x[test], y[test])

    def split(self, full_train: TensorDataset) -> tuple[Sequence[int], Sequence[int] | None]:
        n = len(full_train)
        if self.val_size == 0:
            return range(n), None
        if self.val_size is not None:
            n_val = self.val_count(n)
        else:
            n_val = round(self.val_fraction * self._n_total)
        y = full_train.tensors[1].numpy()
        train, val = train_test_split(np.arange(n), test_size=n_val, stratify=y, random_state=self.seed)
        return train.tolist(), val.tolist()
