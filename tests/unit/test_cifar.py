"""CIFAR-10/100 DataModules on small files in torchvision's on-disk format, per-split transforms,
seeded augmentation, and encoders that refuse normalised input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import datasets
from torchvision.transforms import v2

from spikelight.app.cli import train
from spikelight.core.errors import ConfigError
from spikelight.data import CIFAR10DataModule, CIFAR100DataModule, DatasetNotFoundError, write_cifar
from spikelight.encoding import DirectEncoder, LatencyEncoder, PoissonEncoder

from ..conftest import compose_cfg

AUGMENT = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]


def _images(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """HWC uint8 images; class k has a bright row band at 2k (mod 28) so it is learnable."""
    rng = np.random.default_rng(seed)
    labels = [i % n_classes for i in range(n)]
    x = rng.integers(0, 80, size=(n, 32, 32, 3), dtype=np.uint8)
    for i, k in enumerate(labels):
        x[i, 2 + (2 * k) % 28 : 4 + (2 * k) % 28, 4:28, k % 3] = 255
    return x, labels


def make_cifar(root, monkeypatch, cls=datasets.CIFAR10, n_train=100, n_test=40, tarball=False):
    """Write CIFAR files under root and make torchvision accept their checksums (they are not the real ones)."""
    n_classes = 100 if cls is datasets.CIFAR100 else 10
    train, test = _images(n_train, n_classes, 0), _images(n_test, n_classes, 1)
    md5 = write_cifar(root, cls, train, test, tarball=tarball)
    monkeypatch.setattr(cls, "train_list", [[n, md5[n]] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5[n]] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
    if tarball:
        monkeypatch.setattr(cls, "tgz_md5", md5[cls.filename])
    return train, test


def test_cifar10_download_code_extracts_archive_offline(tmp_path, monkeypatch):
    """torchvision's download path: a verified cifar-10-python.tar.gz in root is extracted, no network."""
    train, test = make_cifar(tmp_path, monkeypatch, tarball=True)
    assert not (tmp_path / "cifar-10-batches-py").exists()
    dm = CIFAR10DataModule(root=str(tmp_path), val_size=20, batch_size=16, augment=AUGMENT, normalize=True)
    dm.prepare_data()
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").exists()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (80, 20, 40)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and x.min() < -1  # normalised
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < 10
    # stored images are the files' images, labels in file order (CHW from HWC)
    images, labels = dm.test_set.tensors
    assert torch.equal(images, torch.from_numpy(test[0]).permute(0, 3, 1, 2)) and labels.tolist() == test[1]


def test_cifar100_reads_fine_labels(tmp_path, monkeypatch):
    make_cifar(tmp_path, monkeypatch, cls=datasets.CIFAR100, n_train=200)
    dm = CIFAR100DataModule(root=str(tmp_path), download=False, val_size=0, augment=[], normalize=False)
    dm.setup()
    assert dm.num_classes == 100 and dm.val_set is dm.test_set
    labels = dm.train_set.tensors[1]
    assert labels.max() == 99 and len(labels.unique()) == 100
    x, _ = dm.train_set[0]
    assert 0 <= x.min() and x.max() <= 1 and x.dtype == torch.float32  # not normalised: [0, 1]


def test_augmentation_only_in_training(tmp_path, monkeypatch):
    make_cifar(tmp_path, monkeypatch)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, val_size=20, augment=AUGMENT, normalize=True)
    dm.setup()
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)

    def plain(images):  # the evaluation transform by hand
        return (images.float() / 255 - mean) / std

    for split in (dm.val_set, dm.test_set):
        images, _ = split.tensors
        got = torch.stack([split[i][0] for i in range(len(split))])
        torch.testing.assert_close(got, plain(images))
    images, _ = dm.train_set.tensors
    got = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
    changed = ((got - plain(images)).abs().flatten(1).amax(1) > 1e-4).float().mean()
    assert changed > 0.8  # crops / flips reach (almost) every training image
    assert not set(dm.val_set.indices) & set(dm.train_set.indices)


def _epoch_batches(dm, epoch):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [x for x, _ in loader]


def test_augmentation_depends_only_on_seed_epoch_index(tmp_path, monkeypatch):
    """Resume stays exact: epoch e's augmented batches do not depend on earlier epochs, the global RNG,
    or the number of worker processes."""
    make_cifar(tmp_path, monkeypatch)

    def dm(workers=0):
        d = CIFAR10DataModule(root=str(tmp_path), download=False, val_size=0, batch_size=50, augment=AUGMENT,
                              normalize=True, seed=7, num_workers=workers)
        d.setup()
        return d

    uninterrupted = dm()
    _epoch_batches(uninterrupted, 0)
    torch.manual_seed(123)
    epoch1 = _epoch_batches(uninterrupted, 1)
    torch.manual_seed(999)
    rng_before = torch.get_rng_state()
    resumed = _epoch_batches(dm(), 1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # augmentation leaves the global RNG alone
    assert all(torch.equal(a, b) for a, b in zip(epoch1, resumed))
    assert all(torch.equal(a, b) for a, b in zip(epoch1, _epoch_batches(dm(workers=2), 1)))
    # a new epoch is a new draw of every sample's augmentation
    a = torch.stack([dm().train_set[(0, i)][0] for i in range(20)])
    b = torch.stack([dm().train_set[(1, i)][0] for i in range(20)])
    assert not torch.equal(a, b)


def test_missing_cifar_is_one_line_naming_the_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CIFAR10DataModule(root=str(tmp_path), download=False).prepare_data()
    msg = str(err.value)
    assert "\n" not in msg and "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg and "cifar-10-batches-py" in msg


def test_num_classes_and_shape_follow_the_data():
    with pytest.raises(ConfigError, match="has 10; num_classes follows the data"):
        CIFAR10DataModule(num_classes=100)
    with pytest.raises(ConfigError, match="in_shape"):
        CIFAR100DataModule(in_shape=[1, 28, 28])
    assert CIFAR100DataModule(num_classes=100, in_shape=[3, 32, 32]).num_classes == 100


@pytest.mark.parametrize("encoder", [PoissonEncoder(4), LatencyEncoder(4)])
def test_unit_range_encoders_refuse_normalised_input(encoder):
    normalised = (torch.rand(2, 3, 8, 8) - 0.5) / 0.25
    with pytest.raises(ConfigError) as err:
        encoder(normalised)
    assert "encoder=direct" in str(err.value) and "\n" not in str(err.value)
    assert encoder(torch.rand(2, 3, 8, 8)).shape == (4, 2, 3, 8, 8)  # [0, 1] passes
    assert DirectEncoder(4)(normalised).shape == (4, 2, 3, 8, 8)


def test_conv_cifar10_experiment_fast_dev_run(tmp_path, monkeypatch):
    """`train.py experiment=conv_cifar10` end to end (one batch of each split) on generated CIFAR files."""
    make_cifar(tmp_path / "data", monkeypatch)
    cfg = compose_cfg("train", [
        "experiment=conv_cifar10", f"data.root={tmp_path / 'data'}", "data.download=false", "data.val_size=20",
        "data.batch_size=8", "T=2", "trainer.fast_dev_run=true", "accelerator=cpu", "print_config=false",
        "logger=none", "callbacks=none",
    ], tmp_path / "run")
    assert cfg.model.in_shape == [3, 32, 32] and cfg.num_classes == 10 and cfg.encoder._target_.endswith("DirectEncoder")
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1 and np.isfinite(metrics["train/loss_step"])
    assert metrics["train/fr/blocks.7.neuron"] > 0 and "train/fr/blocks.8.neuron" in metrics  # 8 convs + output


def test_poisson_on_normalised_cifar_is_one_line(tmp_path, monkeypatch):
    make_cifar(tmp_path / "data", monkeypatch)
    cfg = compose_cfg("train", [
        "model=conv", "data=cifar10", "encoder=poisson", f"data.root={tmp_path / 'data'}", "data.download=false",
        "data.val_size=20", "data.batch_size=8", "T=2", "trainer.fast_dev_run=true", "accelerator=cpu",
        "print_config=false", "logger=none", "callbacks=none",
    ], tmp_path / "run")
    with pytest.raises(ConfigError, match=r"PoissonEncoder needs inputs in \[0, 1\].*encoder=direct"):
        train(cfg)


def test_wrapped_augmented_split_still_gets_epoch_keys(tmp_path, monkeypatch):
    """A view over an augmented split (e.g. sequence data) still gets (epoch, index) keys from the sampler."""
    from spikelight.data.sequence import SequenceDataset

    make_cifar(tmp_path, monkeypatch)
    dm = CIFAR10DataModule(root=str(tmp_path), download=False, val_size=0, augment=AUGMENT)
    dm.setup()
    dm.train_set = SequenceDataset(dm.train_set, "row", None)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    assert next(iter(loader.sampler))[0] == 3
    assert not dm._augmented(dm.test_set)


def test_model_conv_data_cifar10_runs_as_typed(tmp_path, monkeypatch):
    """`python train.py model=conv data=cifar10`: conv SNNs default to direct input, T=4 (works normalised)."""
    make_cifar(tmp_path / "data", monkeypatch)
    cfg = compose_cfg("train", [
        "model=conv", "data=cifar10", f"data.root={tmp_path / 'data'}", "data.download=false", "data.val_size=20",
        "data.batch_size=8", "trainer.fast_dev_run=true", "accelerator=cpu", "print_config=false", "logger=none",
        "callbacks=none",
    ], tmp_path / "run")
    assert cfg.T == 4 and cfg.encoder._target_.endswith("DirectEncoder") and cfg.data.normalize
    assert 0 <= train(cfg)["test/acc"] <= 1
