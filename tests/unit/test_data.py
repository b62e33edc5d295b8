"""DataModules: MNIST-format readers (gz / plain, system copy), digits split, seeded validation split."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from spikelight.data import DatasetNotFoundError, DigitsDataModule, FashionMNISTDataModule, MNISTDataModule, data_root

from ..conftest import make_mnist_files


def test_fashion_mnist_uses_system_copy(tmp_path, monkeypatch, capsys):
    system = tmp_path / "usr-share"
    make_mnist_files(system, n_train=300, n_test=100)
    monkeypatch.setattr(FashionMNISTDataModule, "system_dirs", (system,))
    dm = FashionMNISTDataModule(root=str(tmp_path / "data"), download=False, val_size=50, batch_size=32)
    dm.prepare_data()
    # the copy is not silent: one line names the files and where they came from (issue 23)
    said = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[spikelight] Fashion-MNIST:")]
    assert len(said) == 1 and f"come from {system}: train-images-idx3-ubyte.gz, " in said[0], said
    dm.prepare_data()  # already copied: nothing more to say
    assert "come from" not in capsys.readouterr().out
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (250, 50, 100)
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))


def test_validation_split_is_seeded(tmp_path):
    make_mnist_files(tmp_path / "MNIST" / "raw")

    def val_indices(seed):
        dm = MNISTDataModule(root=str(tmp_path), download=False, val_size=40, seed=seed)
        dm.setup()
        return sorted(dm.val_set.indices)

    assert val_indices(0) == val_indices(0)
    assert val_indices(0) != val_indices(1)


def test_val_size_zero_validates_on_test(tmp_path, capsys):
    make_mnist_files(tmp_path / "MNIST" / "raw")
    dm = MNISTDataModule(root=str(tmp_path), download=False, val_size=0)
    dm.setup()
    assert dm.val_set is dm.test_set and len(dm.train_set) == 300
    assert "validating on the MNIST test set" in capsys.readouterr().out


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="MNIST not found"):
        MNISTDataModule(root=str(tmp_path), download=False).prepare_data()
    from spikelight.data import SequentialMNISTDataModule

    # data=psmnist offline: the offline data in the same order
    with pytest.raises(DatasetNotFoundError, match=r"offline, use data=sfmnist data.order=permuted \("):
        SequentialMNISTDataModule(root=str(tmp_path), download=False, order="permuted").prepare_data()


def test_digits_split_fixed_and_stratified():
    a, b = DigitsDataModule(), DigitsDataModule()
    a.setup()
    b.setup()
    sizes = (len(a.train_set), len(a.val_set), len(a.test_set))
    assert sum(sizes) == 1797 and sizes[2] == 360 and sizes[1] == 180
    assert torch.equal(a.test_set.tensors[1], b.test_set.tensors[1])
    counts = Counter(a.test_set.tensors[1].tolist())
    totals = Counter(DigitsDataModule.images()[1].tolist())
    assert all(abs(counts[c] - 0.2 * totals[c]) <= 1 for c in range(10))  # 20% of every class
    x = a.train_set.tensors[0]
    assert x.shape[1:] == (1, 28, 28) and 0 <= x.min() and x.max() <= 1


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKELIGHT_DATA", str(tmp_path))
    assert data_root() == tmp_path and data_root("x") == data_root("x")
    monkeypatch.delenv("SPIKELIGHT_DATA")
    assert str(data_root()) == "data"


def test_digits_accepts_val_size_like_other_datasets():
    dm = DigitsDataModule(val_size=0)
    dm.setup()
    assert dm.val_set is dm.test_set and len(dm.train_set) == 1797 - 360
    dm = DigitsDataModule(val_size=100)
    dm.setup()
    assert len(dm.val_set) == 100 and len(dm.train_set) == 1797 - 360 - 100


def test_epoch_shuffle_sampler_depends_on_seed_and_epoch_only():
    from spikelight.data.base import EpochShuffleSampler

    def order(seed: int, epoch: int) -> list[int]:
        s = EpochShuffleSampler(50, seed=seed)
        torch.manual_seed(epoch + 100)  # the global RNG must not matter
        s.set_epoch(epoch)
        return list(s)

    assert sorted(order(0, 0)) == list(range(50))
    assert order(0, 3) == order(0, 3)
    assert order(0, 0) != order(0, 1)  # a new order every epoch
    assert order(0, 1) != order(1, 1)  # and every seed


@pytest.mark.parametrize(("n", "replicas"), [(10, 3), (12, 4), (2, 3)])
def test_epoch_shuffle_sampler_shards_as_torchs_distributed_sampler_and_skips_within_its_shard(n, replicas):
    """Under DDP each process takes torch's DistributedSampler share (drop_last=False: padded by repeating the
    order's first samples) of the one (seed, epoch) order; a resume inside an epoch leaves out this process's
    first samples only. Lightning keeps a DistributedSampler as it is (its wrapper of other samplers cannot skip)."""
    from torch.utils.data import DistributedSampler

    from spikelight.data.base import EpochShuffleSampler

    whole = EpochShuffleSampler(n, seed=5)
    whole.set_epoch(2)
    order = list(whole)
    positions = [list(DistributedSampler(range(n), num_replicas=replicas, rank=r, shuffle=False))
                 for r in range(replicas)]  # fmt: skip
    for rank in range(replicas):
        s = EpochShuffleSampler(n, seed=5, num_replicas=replicas, rank=rank)
        assert isinstance(s, DistributedSampler) and len(s) == -(-n // replicas)
        s.set_epoch(2)
        shard = list(s)
        assert shard == [order[i] for i in positions[rank]] and len(shard) == len(s)
        s.skip_next(1)
        assert list(s) == shard[1:] and list(s) == shard  # once
    shards = [list(EpochShuffleSampler(n, 5, num_replicas=replicas, rank=r)) for r in range(replicas)]
    assert set().union(*shards) == set(range(n))  # every sample is in some process's share
    with pytest.raises(ValueError, match="rank must be in"):
        EpochShuffleSampler(n, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas and rank together"):
        EpochShuffleSampler(n, rank=1)


def test_the_training_share_comes_from_the_trainer():
    """The DataModule shards by the Trainer's data-parallel processes; trainer.use_distributed_sampler=false gives
    every process the whole order, as Lightning's own switch does."""
    from types import SimpleNamespace

    dm = DigitsDataModule(batch_size=64)
    dm.setup()

    def share(kwargs, use=True):
        dm.trainer = SimpleNamespace(distributed_sampler_kwargs=kwargs,
                                     _accelerator_connector=SimpleNamespace(use_distributed_sampler=use))
        sampler = dm.train_dataloader().sampler
        return sampler.num_replicas, sampler.rank, len(sampler)

    n = len(dm.train_set)
    assert share({"num_replicas": 2, "rank": 1}) == (2, 1, -(-n // 2))
    assert share({"num_replicas": 2, "rank": 1}, use=False) == (1, 0, n)
    assert share(None) == (1, 0, n)


def test_data_seed_follows_the_run_seed(tmp_path):
    from ..conftest import compose_cfg

    for name in ("mnist", "fashion_mnist", "digits"):
        cfg = compose_cfg("train", [f"data={name}", "seed=7"], tmp_path)
        assert cfg.data.seed == 7, name
