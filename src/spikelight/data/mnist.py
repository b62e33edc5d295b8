"""MNIST and Fashion-MNIST through torchvision, from gzipped or plain IDX files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from torch.utils.data import TensorDataset
from torchvision import datasets

from spikelight.core.errors import DatasetCorruptError
from spikelight.core.files import atomic_open
from spikelight.data.base import ClassificationDataModule, DatasetNotFoundError

__all__ = ["MNISTDataModule", "FashionMNISTDataModule", "MNIST_FILES", "ensure_raw_files"]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _place(src: Path, dst: Path) -> None:
    """Copy ``src`` to plain file ``dst``, decompressing if ``src`` is gzipped."""
    opener = gzip.open if src.suffix == ".gz" else open
    try:
        with opener(src, "rb") as fin, atomic_open(dst, "wb", durable=False) as fout:
            shutil.copyfileobj(fin, fout)
    except (EOFError, OSError, gzip.BadGzipFile) as err:  # truncated / not gzip / unreadable
        raise DatasetCorruptError(
            f"{src} is truncated or corrupt ({type(err).__name__}); replace it with an intact copy (or delete it to download again)"
        ) from None


def ensure_raw_files(raw_dir: Path, sources: tuple[Path, ...] = (), dataset: str = "data") -> list[str]:
    """Make the four plain IDX files exist in ``raw_dir``.

    Each may already be there plain or as ``.gz`` (decompressed here), or be
    found in one of ``sources`` (copied; one line names the files and where they came from).
    Returns the names still missing.
    """
    missing = []
    copied: list[Path] = []
    for name in MNIST_FILES:
        dst = raw_dir / name
        if dst.exists():
            continue
        found = None
        for folder in (raw_dir, *sources):
            for cand in (folder / name, folder / f"{name}.gz"):
                if cand.exists() and cand != dst:
                    found = cand
                    break
            if found:
                break
        if found is None:
            missing.append(name)
            continue
        raw_dir.mkdir(parents=True, exist_ok=True)
        _place(found, dst)
        if found.parent != raw_dir:
            copied.append(found)
    for folder in dict.fromkeys(f.parent for f in copied):
        files = ", ".join(f.name for f in copied if f.parent == folder)
        print(f"[spikelight] {dataset}: {raw_dir} had no copy, so these come from {folder}: {files}")
    return missing


class MNISTDataModule(ClassificationDataModule):
    """MNIST (60k train / 10k test) via ``torchvision.datasets.MNIST``.

    Files live in ``<root>/MNIST/raw/`` (gzipped or plain); if absent and
    ``download`` is true, torchvision downloads them on first use.
    """

    name = "MNIST"
    mean, std = (0.1307,), (0.3081,)
    dataset_cls = datasets.MNIST
    system_dirs: tuple[Path, ...] = ()
    offline_hint = "offline, use data=fashion_mnist (Debian: apt-get install dataset-fashion-mnist) or data=digits"

    def __init__(self, *args, download: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.download = download

    @property
    def raw_dir(self) -> Path:
        return self.root / self.dataset_cls.__name__ / "raw"

    def prepare_data(self) -> None:
        missing = ensure_raw_files(self.raw_dir, self.system_dirs, self.name)
        if not missing:
            return
        where = f"put {', '.join(f + '.gz' for f in MNIST_FILES)} (gzipped or plain) in {self.raw_dir}/"
        if not self.download:
            raise DatasetNotFoundError(f"{self.name} not found: {where}, or set data.download=true; {self.offline_hint}")
        try:
            for train in (True, False):
                self.dataset_cls(str(self.root), train=train, download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError for every mirror
            raise DatasetNotFoundError(
                f"{self.name} download failed ({type(err).__name__}); {where}; {self.offline_hint}"
            ) from None

    def load(self) -> tuple[TensorDataset, TensorDataset]:
        self.prepare_data()  # cheap when files exist; lets setup() work without a Trainer
        out = []
        for train in (True, False):
            ds = self._read(train)
            # Same values as transforms.ToTensor(): uint8 / 255 → float [1, 28, 28].
            x = ds.data.unsqueeze(1).float().div_(255.0)
            out.append(TensorDataset(x, ds.targets.long()))
        return out[0], out[1]


    def _read(self, train: bool) -> datasets.MNIST:
        """torchvision's reader on the raw IDX files; a truncated or corrupt file is one line naming it."""
        split = "train" if train else "t10k"
        names = ", ".join(f"{split}-{kind}-idx{d}-ubyte" for kind, d in (("images", 3), ("labels", 1)))
        try:
            ds = self.dataset_cls(str(self.root), train=train, download=False)
        except Exception as err:  # noqa: BLE001 - torchvision: RuntimeError / AssertionError / ValueError on bad bytes
            raise DatasetCorruptError(
                f"{self.name} files {names} in {self.raw_dir} are truncated or corrupt ({type(err).__name__}); "
                "delete them so they are copied or downloaded again"
            ) from None
        if ds.data.ndim != 3 or tuple(ds.data.shape[1:]) != (28, 28) or len(ds.data) != len(ds.targets):
            raise DatasetCorruptError(
                f"{self.name} files {names} in {self.raw_dir} disagree ({tuple(ds.data.shape)} images, "
                f"{len(ds.targets)} labels); delete them so they are copied or downloaded again"
            )
        return ds


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST (60k / 10k, MNIST format). Uses ``/usr/share/datasets/fashion-mnist``
    (Debian ``dataset-fashion-mnist``) when present, else downloads with torchvision."""

    name = "Fashion-MNIST"
    mean, std = (0.2860,), (0.3530,)
    dataset_cls = datasets.FashionMNIST
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
    offline_hint = "offline, install Debian's dataset-fashion-mnist or use data=digits"


def write_idx(path: Path, array: torch.Tensor, compress: bool = False) -> None:
    """Write a uint8 tensor as an IDX file (the MNIST on-disk format), optionally gzipped."""
    arr = array.to(torch.uint8).contiguous()
    magic = bytes([0, 0, 0x08, arr.dim()])
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    payload = magic + dims + arr.numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
