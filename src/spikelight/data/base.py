"""Shared DataModule machinery: one data root, a seeded validation split, per-split transforms, loaders."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset, random_split
from torchvision.transforms import v2

from spikelight.core.errors import ConfigError, DatasetNotFoundError

__all__ = [
    "DatasetNotFoundError",
    "ClassificationDataModule",
    "EpochShuffleSampler",
    "ImageDataset",
    "data_root",
    "sample_seed",
]

Transform = Callable[[Tensor], Tensor]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The random seed of one sample's augmentation: a function of (seed, epoch, index) only."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2**63 - 1)


class EpochShuffleSampler(DistributedSampler):
    """Random order that depends only on ``(seed, epoch)``, not on the global RNG; under DDP, this process's shard
    of it.

    Lightning calls ``set_epoch`` at every epoch start (as for DistributedSampler),
    so a run resumed from a checkpoint sees exactly the batches an uninterrupted
    run would have seen; :meth:`skip_next` leaves out those a mid-epoch checkpoint
    already trained on. With ``with_epoch`` it yields ``(epoch, index)`` keys so
    the dataset can seed each sample's augmentation from (seed, epoch, index),
    whichever worker process loads it.

    With several processes (``num_replicas``, by default torch.distributed's world size when it is
    initialised, else 1) every process draws the same order, padded to a multiple of ``num_replicas`` by
    repeating its first samples, and takes the positions ``rank, rank + num_replicas, ...`` of it: torch's
    ``DistributedSampler`` rule (``drop_last=False``), so each has ``ceil(n / num_replicas)`` samples. Being a
    ``DistributedSampler`` it is kept as is by Lightning, whose wrapper for other samplers could not leave out
    batches on a resume. spikelight's DataModules give them from the Trainer (its data-parallel processes;
    ``trainer.use_distributed_sampler=false``: 1 and 0, every process the whole order); not given, they are
    torch.distributed's world size and rank, read when iterating (a loader built before the process group exists
    still shards).
    """

    def __init__(self, n: int, seed: int = 0, with_epoch: bool = False, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        # (not DistributedSampler.__init__: it needs a dataset and the process group at once)
        if num_replicas is not None and not (isinstance(num_replicas, int) and num_replicas >= 1):
            raise ValueError(f"EpochShuffleSampler num_replicas must be an integer >= 1, got {num_replicas!r}")
        if (rank is None) != (num_replicas is None):
            raise ValueError("EpochShuffleSampler takes num_replicas and rank together (or neither: torch.distributed's)")
        if rank is not None and not (isinstance(rank, int) and 0 <= rank < num_replicas):
            raise ValueError(f"EpochShuffleSampler rank must be in [0, num_replicas), got {rank!r}")
        self.n, self.seed, self.epoch, self.with_epoch = n, seed, 0, with_epoch
        self._replicas, self._rank = num_replicas, rank
        self.shuffle, self.drop_last = True, False
        self.skip = 0

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        if self._replicas is not None:
            return self._replicas
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:  # type: ignore[override]
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        return -(-self.n // self.num_replicas)

    @property
    def total_size(self) -> int:  # type: ignore[override]
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_next(self, samples: int) -> None:
        """Leave out the first ``samples`` of this process's share of the next epoch (once): a run resumed
        from a mid-epoch checkpoint sees the rest of that epoch, as if never stopped."""
        self.skip = samples

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        replicas = self.num_replicas
        if replicas > 1:
            pad = self.total_size - self.n
            order += (order * (pad // max(self.n, 1) + 1))[:pad]
            order = order[self.rank :: replicas]
        order, self.skip = order[self.skip :], 0
        if self.with_epoch:
            return iter([(self.epoch, i) for i in order])
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples


class ImageDataset(Dataset):
    """One split: samples ``images[indices]`` with a per-sample transform, labels int64.

    images: [N, C, H, W] uint8 (0..255) or float in [0, 1]; labels: [N].
    ``transform`` maps one image to a float tensor. If ``random`` (training
    augmentation), each sample is transformed under the seed
    :func:`sample_seed` ``(seed, epoch, index)`` (index into ``images``), taken
    from ``(epoch, i)`` keys (:class:`EpochShuffleSampler`): the same sample in
    the same epoch looks the same in every run, with any number of workers,
    and after resuming from a checkpoint. The global RNG is left as it was.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        indices: Sequence[int] | Tensor | None = None,
        transform: Transform | None = None,
        random: bool = False,
        seed: int = 0,
    ) -> None:
        self.images, self.labels = images, labels
        self.indices = list(range(len(labels))) if indices is None else [int(i) for i in indices]
        self.transform, self.random, self.seed = transform, random, seed

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """(images, labels) of this split, untransformed (as ``TensorDataset.tensors``)."""
        idx = torch.as_tensor(self.indices, dtype=torch.long)
        return self.images[idx], self.labels[idx]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        j = self.indices[i]
        x = self.images[j]
        if self.transform is not None:
            if self.random:
                gen = torch.default_generator
                state = gen.get_state()
                gen.manual_seed(sample_seed(self.seed, epoch, j))
                try:
                    x = self.transform(x)
                finally:
                    gen.set_state(state)
            else:
                x = self.transform(x)
        return x, self.labels[j]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$SPIKELIGHT_DATA``, else ``data/``."""
    return Path(root or os.environ.get("SPIKELIGHT_DATA") or "data")


class ClassificationDataModule(L.LightningDataModule):
    """Image classification data held in memory as tensors.

    Samples are ``x`` float [C, H, W] (``in_shape``; in [0, 1] unless
    normalised) and ``y`` int64 labels in [0, num_classes). Subclasses
    implement :meth:`load` (training and test sets as tensors) and may
    override :meth:`split`.

    Transforms are per split: ``augment`` runs on training samples only;
    conversion to float and ``normalize`` run on every split. Validation data
    carved from the training files gets the evaluation transform.

    Args:
        root: data root (see :func:`data_root`).
        batch_size: training batch size (also used for evaluation unless
            ``eval_batch_size`` is set).
        val_size: samples carved from the training set for validation with a
            fixed ``seed``: a count, or a fraction of the training set in (0, 1)
            (``0.1`` = 10 %); 0 = no carve-out, validate on the test set (what the
            SpikingJelly tutorials report; a message says so).
        num_workers, pin_memory: DataLoader options.
        drop_last: drop the last partial training batch.
        seed: seed of the validation split, the shuffling and the augmentation.
        augment: training-only transforms (e.g. torchvision ``v2.RandomCrop``),
            applied to one image [C, H, W] as stored (uint8 for CIFAR).
        normalize: subtract ``mean`` and divide by ``std`` per channel (then the
            input is no longer in [0, 1]: use ``encoder=direct``).
        mean, std: per-channel statistics; None = the dataset's own.
        num_classes, in_shape: facts about the data that configs read
            (``${data.num_classes}``); a value that contradicts the dataset is refused.
    """

    num_classes: int = 10
    in_shape: tuple[int, ...] = (1, 28, 28)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    name: str = "dataset"
    #: how a loader stacks samples into a batch; None = torch's default (event data pads recordings of
    #: different lengths: :func:`spikelight.data.events.pad_time`)
    collate = None

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        val_size: int | float = 5000,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = False,
        eval_batch_size: int | None = None,
        seed: int = 0,
        augment: Sequence[Transform] | None = None,
        normalize: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_classes: int | None = None,
        in_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0 or int(batch_size) != batch_size:
            raise ConfigError(f"data.batch_size must be a positive whole number, got {batch_size}")
        if val_size < 0 or (val_size >= 1 and int(val_size) != val_size):
            raise ConfigError(f"data.val_size must be a count >= 0 or a fraction in (0, 1), got {val_size}")
        batch_size = int(batch_size)
        self._check_fact("num_classes", num_classes, type(self).num_classes)
        self._check_fact("in_shape", None if in_shape is None else tuple(in_shape), tuple(type(self).in_shape))
        self.root = data_root(root)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size = val_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.seed = seed
        self.augment = list(augment or [])
        self.normalize = bool(normalize)
        self.mean = tuple(mean) if mean is not None else tuple(type(self).mean)
        self.std = tuple(std) if std is not None else tuple(type(self).std)
        channels = self.in_shape[0]
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ConfigError(f"data.mean and data.std need {channels} values (std > 0), got {self.mean} / {self.std}")
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _check_fact(self, key: str, given, actual) -> None:
        if given is not None and given != actual:
            raise ConfigError(f"data.{key}={given} but {self.name} has {actual}; {key} follows the data, leave it as is")

    # --- what subclasses provide ---------------------------------------------------
    def load(self) -> tuple[TensorDataset, TensorDataset]:
        """Return (full training set, test set) as (images [N, C, H, W], labels [N])."""
        raise NotImplementedError

    def val_count(self, n: int) -> int:
        """``val_size`` as a number of the ``n`` training samples (a fraction is rounded).
        Raises :class:`ConfigError` when it would leave no training or no validation data."""
        size = self.val_size
        count = round(size * n) if 0 < size < 1 else int(size)
        if count >= n:
            raise ConfigError(f"data.val_size={size} leaves no training data ({n} samples in the {self.name} "
                              f"training set); use a count below {n} or a fraction such as 0.1")
        if count == 0 and size > 0:
            raise ConfigError(f"data.val_size={size} is 0 of the {n} {self.name} training samples; use a larger fraction or a count")
        return count

    def split(self, full_train: TensorDataset) -> tuple[Sequence[int], Sequence[int] | None]:
        """Indices (train, val) into the training set; val None = validate on the test set.
        ``val_size`` samples (or that fraction) are carved out with a fixed seed."""
        n = len(full_train)
        if self.val_size == 0:
            return range(n), None
        n_val = self.val_count(n)
        gen = torch.Generator().manual_seed(self.seed)
        train, val = random_split(range(n), [n - n_val, n_val], generator=gen)
        return train.indices, val.indices

    # --- transforms ---------------------------------------------------------------
    def transform(self, train: bool, dtype: torch.dtype) -> Transform | None:
        """The per-sample transform of a split whose images are stored as ``dtype``; None = none."""
        steps = list(self.augment) if train else []
        if dtype == torch.uint8:
            steps.append(v2.ToDtype(torch.float32, scale=True))
        if self.normalize:
            steps.append(v2.Normalize(list(self.mean), list(self.std)))
        return v2.Compose(steps) if steps else None

    def _dataset(self, data: TensorDataset, indices: Sequence[int] | None, train: bool) -> ImageDataset:
        images, labels = data.tensors
        return ImageDataset(
            images, labels, indices, self.transform(train, images.dtype), random=train and bool(self.augment),
            seed=self.seed,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        full_train, test = self.load()
        train_idx, val_idx = self.split(full_train)
        self.train_set = self._dataset(full_train, train_idx, train=True)
        self.test_set = self._dataset(test, None, train=False)
        if val_idx is None:
            print(f"[spikelight] data.val_size=0: validating on the {self.name} test set (val/acc is test accuracy)")
            self.val_set = self.test_set
        else:
            self.val_set = self._dataset(full_train, val_idx, train=False)

    # --- loaders -----------------------------------------------------------------------
    @staticmethod
    def _augmented(ds: Dataset | None) -> bool:
        """Is ds (or the dataset it wraps, e.g. a sequence view) a randomly augmented :class:`ImageDataset`?"""
        for _ in range(8):  # a few wrappers deep (SequenceDataset.images, Subset.dataset)
            if isinstance(ds, ImageDataset):
                return ds.random
            inner = [getattr(ds, a, None) for a in ("images", "dataset")]
            ds = next((d for d in inner if isinstance(d, Dataset)), None)
        return False

    def _loader(self, ds: Dataset, train: bool) -> DataLoader:
        random = train and self._augmented(ds)
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=EpochShuffleSampler(len(ds), self.seed, with_epoch=random, **self._shard()) if train else None,
            # own generator: creating an iterator must not draw from the global RNG
            # (the Poisson encoder's), or resumed runs would see different spikes
            generator=torch.Generator().manual_seed(self.seed),
            drop_last=self.drop_last if train else False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def _shard(self) -> dict[str, int]:
        """``num_replicas`` and ``rank`` of this process's share of the training set, from the Trainer: its
        data-parallel processes, or 1 and 0 where ``use_distributed_sampler`` is off; {} without a Trainer."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        kwargs = trainer.distributed_sampler_kwargs or {}
        connector = getattr(trainer, "_accelerator_connector", None)
        if "num_replicas" not in kwargs or not getattr(connector, "use_distributed_sampler", True):
            return {"num_replicas": 1, "rank": 0}
        return {"num_replicas": int(kwargs["num_replicas"]), "rank": int(kwargs["rank"])}

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
