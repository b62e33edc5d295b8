"""CIFAR-10 and CIFAR-100 through torchvision (download, checksums, python-pickle batches)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from spikelight.data.base import ClassificationDataModule, DatasetNotFoundError

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "write_cifar"]


class CIFAR10DataModule(ClassificationDataModule):
    """CIFAR-10 (50k train / 10k test, 3×32×32, 10 classes) via ``torchvision.datasets.CIFAR10``.

    Files live in ``<root>/cifar-10-batches-py/`` (torchvision's layout); with
    ``download`` true and the files absent, torchvision downloads and checks
    ``cifar-10-python.tar.gz`` (a copy already in ``<root>/`` is used without
    network). Images stay uint8 in memory; every split is converted to float
    per sample, ``augment`` runs on the training split only (see
    :class:`ClassificationDataModule`). ``mean`` / ``std`` default to the
    training set's per-channel statistics.
    """

    name = "CIFAR-10"
    dataset_cls = datasets.CIFAR10
    num_classes = 10
    in_shape = (3, 32, 32)
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def __init__(self, *args, download: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.download = download

    def _files_ok(self) -> bool:
        cls = self.dataset_cls
        folder = self.root / cls.base_folder
        files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        return all(check_integrity(os.fspath(folder / name), md5) for name, md5 in files)

    def _where(self) -> str:
        cls = self.dataset_cls
        return f"put {cls.filename} ({cls.url}) in {self.root}/ or its {cls.base_folder}/ folder there"

    def prepare_data(self) -> None:
        if self._files_ok():
            return
        if not self.download:
            raise DatasetNotFoundError(f"{self.name} not found: {self._where()}, or set data.download=true")
        try:
            self.dataset_cls(str(self.root), train=True, download=True)
        except Exception as err:  # URLError / RuntimeError (checksum) / tarfile errors
            raise DatasetNotFoundError(f"{self.name} download failed ({type(err).__name__}); {self._where()}") from None
        if not self._files_ok():
            raise DatasetNotFoundError(f"{self.name} files in {self.root / self.dataset_cls.base_folder} fail their checksums; {self._where()}")

    def load(self) -> tuple[TensorDataset, TensorDataset]:
        self.prepare_data()  # cheap when files exist; lets setup() work without a Trainer
        out = []
        for train in (True, False):
            ds = self.dataset_cls(str(self.root), train=train, download=False)
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # HWC uint8 → [N, 3, 32, 32]
            out.append(TensorDataset(images, torch.as_tensor(ds.targets, dtype=torch.long)))
        return out[0], out[1]


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 (50k / 10k, 3×32×32, 100 fine labels) via ``torchvision.datasets.CIFAR100``;
    files in ``<root>/cifar-100-python/``. Otherwise as :class:`CIFAR10DataModule`."""

    name = "CIFAR-100"
    dataset_cls = datasets.CIFAR100
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_cifar(
    root: Path,
    dataset_cls: type[datasets.CIFAR10],
    train: tuple[np.ndarray, Sequence[int]],
    test: tuple[np.ndarray, Sequence[int]],
    tarball: bool = False,
) -> dict[str, str]:
    """Write CIFAR files in torchvision's on-disk format (python pickles of uint8 rows).

    train / test: (images [N, 32, 32, 3] uint8 HWC, labels). CIFAR-10's training
    images are spread over its five ``data_batch_*`` files. Writes
    ``<root>/<base_folder>/...`` or, with ``tarball``, only the
    ``<root>/<filename>`` archive. Returns file name → md5 (the archive's too),
    which a test must put into ``dataset_cls``'s checksum lists.
    """
    label_key = "fine_labels" if issubclass(dataset_cls, datasets.CIFAR100) else "labels"
    files: dict[str, bytes] = {}
    for (images, labels), names in ((train, [n for n, _ in dataset_cls.train_list]),
                                    (test, [n for n, _ in dataset_cls.test_list])):
        rows = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2)).reshape(len(images), -1)
        for k, name in enumerate(names):
            part = slice(k * len(rows) // len(names), (k + 1) * len(rows) // len(names))
            entry = {"data": rows[part], label_key: [int(v) for v in list(labels)[part]], "batch_label": name}
            files[name] = pickle.dumps(entry, protocol=2)
    n_classes = 100 if label_key == "fine_labels" else 10
    files[dataset_cls.meta["filename"]] = pickle.dumps({dataset_cls.meta["key"]: [f"class{i}" for i in range(n_classes)]})
    md5 = {name: _md5(data) for name, data in files.items()}
    if not tarball:
        folder = Path(root) / dataset_cls.base_folder
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return md5
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{dataset_cls.base_folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / dataset_cls.filename).write_bytes(buf.getvalue())
    md5[dataset_cls.filename] = _md5(buf.getvalue())
    return md5
