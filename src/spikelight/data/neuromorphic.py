"""Neuromorphic datasets through tonic: SHD, SSC (audio) and N-MNIST, DVS128 Gesture (camera).

Files live where tonic puts them (``data.root`` is tonic's ``save_to``), so an existing tonic
download is found as it is::

    <root>/SHD/shd_train.h5, shd_test.h5                   (from shd_*.h5.zip)
    <root>/SSC/ssc_train.h5, ssc_valid.h5, ssc_test.h5     (from ssc_*.h5.zip)
    <root>/NMNIST/Train/<digit>/*.bin, Test/<digit>/*.bin  (from train.zip, test.zip)
    <root>/DVSGesture/ibmGestureTrain/user*_*/<label>.npy, ibmGestureTest/...  (from ibmGesture*.tar.gz)

What is missing is extracted from tonic's archive in the same folder (after its md5 check) or,
with ``download``, downloaded from tonic's URL; offline, one line names the files and the folder.
Recordings are binned by :class:`~spikelight.data.events.Binning` (``data.frames`` for camera
data, ``data.bins`` for audio) and cached on disk (:mod:`spikelight.data.events`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision.transforms import v2

from spikelight.core.errors import ConfigError, DatasetCorruptError, DatasetNotFoundError
from spikelight.data.base import ClassificationDataModule
from spikelight.data.events import Binning, EventDataset, EventSource, cache_folder, pad_time, require_tonic

__all__ = [
    "EventDataModule",
    "SHDDataModule",
    "SSCDataModule",
    "NMNISTDataModule",
    "DVSGestureDataModule",
]


@dataclass(frozen=True)
class SplitFiles:
    """One split on disk, in tonic's layout under ``<root>/<tonic class name>/``."""

    archive: str  # what tonic downloads
    md5: str  # the tonic class attribute holding the archive's md5
    url: str  # the tonic class attribute holding its URL ("" = base_url + archive)
    data: str  # what extracting it gives: a file, or a folder of sample files
    suffix: str = ""  # a folder's sample files end in this


@functools.cache
def _reader(tonic_cls: type) -> type:
    """tonic's dataset class, reading what is on disk: ``prepare_data`` checked, extracted or downloaded
    the files (tonic's own check wants the archive next to them, and 10,000 files for N-MNIST). Same
    class name, so tonic's folder (``save_to/<name>``) stays the same."""
    return type(tonic_cls.__name__, (tonic_cls,), {"_check_exists": lambda self: True, "__module__": __name__})


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class EventDataModule(ClassificationDataModule):
    """A tonic dataset with a seeded validation split carved from its training files, per-split
    transforms (``augment``: training only) and the disk cache.

    Subclasses name tonic's class (``tonic_name``), its files (``split_files``), sensor and how the
    config names the binning (``binning_key``: ``frames`` | ``bins``).

    Args (besides :class:`~spikelight.data.base.ClassificationDataModule`'s):
        download: download what is missing from tonic's URL (else one line says where to put it).
        cache: keep converted recordings on disk; cache_dir: where (None = ``<root>/cache``).
    """

    tonic_name: str = ""
    page: str = ""
    split_files: Mapping[str, SplitFiles] = {}
    sensor: tuple[int, ...] = ()
    polarities: int = 1
    binning_key: str = "frames"
    size_keys: tuple[str, ...] = ()
    binning_options: tuple[str, ...] = ()
    binning_defaults: Mapping[str, Any] = {}
    collate = staticmethod(pad_time)

    def __init__(self, *args: Any, binning: Mapping | None = None, download: bool = True, cache: bool = True,
                 cache_dir: str | None = None, in_shape: Sequence[int] | None = None,
                 val_size: int | float | str = 5000, **kwargs: Any) -> None:
        if kwargs.get("normalize"):
            raise ConfigError(f"data.normalize=true: {self.name} samples are event counts, not normalised; "
                              "set data.normalize=false")
        # val_size="valid": a validation split of its own files (SSC's ssc_valid.h5)
        self.val_file = val_size == "valid"
        if isinstance(val_size, str) and not (self.val_file and "valid" in self.split_files):
            own = " or 'valid' (its own validation files)" if "valid" in self.split_files else ""
            raise ConfigError(f"data.val_size={val_size!r}: give a count or a fraction of the training files{own}")
        super().__init__(*args, val_size=0 if self.val_file else val_size, **kwargs)
        where = f"data.{self.binning_key}"
        self.binning = Binning.from_config(binning, where, self.sensor, self.polarities, self.size_keys,
                                           self.binning_options, self.binning_defaults)
        self.in_shape = self.binning.frame_shape
        if in_shape is not None and tuple(in_shape) != self.in_shape:
            raise ConfigError(f"data.in_shape={list(in_shape)} but {where} gives {list(self.in_shape)} per time bin; "
                              f"in_shape follows the data, set data.in_shape={list(self.in_shape)}")
        self.download, self.cache = bool(download), bool(cache)
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / "cache"

    # --- facts the rest of spikelight reads -------------------------------------------------
    @property
    def seq_len(self) -> int | None:
        """Time bins per sample (None: each recording its own, padded per batch)."""
        return self.binning.steps

    @property
    def folder(self) -> Path:
        """tonic's folder: ``<root>/<tonic class name>``."""
        return self.root / self.tonic_name

    # --- files ------------------------------------------------------------------------------
    def _tonic_class(self) -> type:
        tonic = require_tonic(f"data={self.name}")
        return getattr(tonic.datasets, self.tonic_name)

    def _present(self, files: SplitFiles) -> bool:
        path = self.folder / files.data
        if not files.suffix:
            return path.is_file()
        return path.is_dir() and next((True for _ in path.rglob(f"*{files.suffix}")), False)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this run reads."""
        return ("train", "valid", "test") if self.val_file else ("train", "test")

    def _where(self) -> str:
        files = [self.split_files[s] for s in self.splits]
        return (f"put {', '.join(f.archive for f in files)} ({self.page}) in {self.folder}/ "
                f"(or what they extract to: {', '.join(f.data for f in files)})")

    def _ensure(self, split: str) -> None:
        files = self.split_files[split]
        if self._present(files):
            return
        cls = self._tonic_class()
        archive = self.folder / files.archive
        if not archive.exists():
            if not self.download:
                raise DatasetNotFoundError(f"{self.name} not found: {self._where()}, or set data.download=true")
            from tonic.download_utils import download_url

            url = getattr(cls, files.url) if files.url else cls.base_url + files.archive
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                download_url(url, str(self.folder), filename=files.archive, md5=None)
            except Exception as err:  # noqa: BLE001 - URLError / HTTPError / OSError, every one means: not here
                archive.unlink(missing_ok=True)  # a partial download would fail its checksum next time
                raise DatasetNotFoundError(f"{self.name} download failed ({type(err).__name__}); {self._where()}") from None
        expected = getattr(cls, files.md5)
        got = _md5(archive)
        if got != expected:
            raise DatasetCorruptError(f"{self.name} archive {archive} fails its checksum (md5 {got}, expected {expected}); "
                                      f"delete it and download it again ({self.page})")
        from tonic.download_utils import extract_archive

        try:
            extract_archive(str(archive), str(self.folder))
        except Exception as err:  # noqa: BLE001 - zipfile / tarfile errors
            raise DatasetCorruptError(f"{self.name} archive {archive} cannot be extracted ({type(err).__name__}); "
                                      "delete it and download it again") from None
        if not self._present(files):
            raise DatasetCorruptError(f"{self.name} archive {archive} did not give {self.folder / files.data}; "
                                      f"delete it and download it again ({self.page})")

    def prepare_data(self) -> None:
        for split in self.splits:
            self._ensure(split)

    # --- what each dataset says about its files ---------------------------------------------------
    def _tonic_kwargs(self, split: str) -> dict[str, Any]:
        return {"train": split == "train"}

    def _open(self, split: str) -> Any:
        """tonic's dataset of one split (events, no transform); unreadable files are one line."""
        cls = _reader(self._tonic_class())
        try:
            return cls(str(self.root), **self._tonic_kwargs(split))
        except Exception as err:  # noqa: BLE001 - h5py OSError, bad folder names, ...
            raise DatasetCorruptError(
                f"{self.name} files in {self.folder / self.split_files[split].data} cannot be read by tonic "
                f"({type(err).__name__}); delete them so they are extracted or downloaded again"
            ) from None

    def _source_id(self, ds: Any, split: str) -> dict[str, Any]:
        """What the cache key knows of the files: the sample files' names (and count)."""
        base = self.folder / self.split_files[split].data
        names = "\n".join(os.path.relpath(p, base) for p in ds.data)
        return {"files": len(ds.data), "names": hashlib.sha1(names.encode()).hexdigest()}

    def _describe(self, ds: Any, split: str) -> Callable[[int], str]:
        return lambda i: str(ds.data[i])

    def _extra_key(self) -> dict[str, Any]:
        return {}

    def _source(self, split: str) -> EventSource:
        ds = self._open(split)
        if len(ds) == 0:
            raise DatasetCorruptError(f"{self.name} {split} files in {self.folder / self.split_files[split].data} hold no "
                                      f"recordings; delete them so they are extracted or downloaded again")
        cache = None
        if self.cache:
            cache = cache_folder(self.cache_dir, self.tonic_name, self.binning, self._source_id(ds, split), split,
                                 self._extra_key())
        return EventSource(ds, self.binning, cache, self._describe(ds, split), self.name)

    # --- splits -----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        self.prepare_data()  # cheap when files exist; lets setup() work without a Trainer
        train, test = self._source("train"), self._source("test")
        train_idx, val_idx = self.split(train)  # type: ignore[arg-type]
        augment = v2.Compose(self.augment) if self.augment else None
        binary = self.binning.binary
        self.train_set = EventDataset(train, train_idx, binary, augment, random=augment is not None, seed=self.seed)
        self.test_set = EventDataset(test, None, binary)
        if self.val_file:
            self.val_set = EventDataset(self._source("valid"), None, binary)
        elif val_idx is None:
            print(f"[spikelight] data.val_size=0: validating on the {self.name} test set")
            self.val_set = self.test_set
        else:
            self.val_set = EventDataset(train, val_idx, binary)

    @staticmethod
    def _augmented(ds: Dataset | None) -> bool:
        if isinstance(ds, EventDataset):
            return ds.random
        return ClassificationDataModule._augmented(ds)


class _CameraDataModule(EventDataModule):
    """Camera events (x, y, t, p) → frames [T, 2, H, W] (``data.frames``: one slicing; ``height`` /
    ``width`` downsample the sensor; ``denoise`` in µs; ``binary``). Use ``encoder=frames``."""

    polarities = 2
    binning_key = "frames"
    size_keys = ("width", "height")
    binning_options = ("denoise",)
    mean, std = (0.0, 0.0), (1.0, 1.0)

    def __init__(self, *args: Any, frames: Mapping | None = None, **kwargs: Any) -> None:
        super().__init__(*args, binning=frames, **kwargs)


class _AudioDataModule(EventDataModule):
    """Cochlea spikes (t, channel) → counts [T, F] (``data.bins``: one slicing, usually ``time_window``
    with ``duration``; ``channels`` pools the 700 channels, e.g. 140 = 5 per input as SE-adLIF;
    ``binary``). Use ``encoder=sequence``; ``num_features`` = F."""

    sensor = (700,)
    binning_key = "bins"
    size_keys = ("channels",)
    in_shape = (700,)
    mean, std = (0.0,) * 700, (1.0,) * 700

    def __init__(self, *args: Any, bins: Mapping | None = None, **kwargs: Any) -> None:
        super().__init__(*args, binning=bins, **kwargs)

    @property
    def num_features(self) -> int:
        """Inputs per time bin (the pooled channel count)."""
        return self.binning.size[0]

    def _source_id(self, ds: Any, split: str) -> dict[str, Any]:
        stat = (self.folder / self.split_files[split].data).stat()
        return {"file": self.split_files[split].data, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def _describe(self, ds: Any, split: str) -> Callable[[int], str]:
        path = self.folder / self.split_files[split].data
        return lambda i: f"{path} (recording {i})"


class SHDDataModule(_AudioDataModule):
    """Spiking Heidelberg Digits (Cramer et al. 2020; 8,156 train / 2,264 test recordings, 20 classes:
    digits 0-9 spoken in English and German) via ``tonic.datasets.SHD``."""

    name = "SHD"
    tonic_name = "SHD"
    num_classes = 20
    page = "https://zenkelab.org/datasets/"
    split_files = {
        "train": SplitFiles("shd_train.h5.zip", "train_md5", "", "shd_train.h5"),
        "test": SplitFiles("shd_test.h5.zip", "test_md5", "", "shd_test.h5"),
    }


class SSCDataModule(_AudioDataModule):
    """Spiking Speech Commands (Cramer et al. 2020; 35 classes) via ``tonic.datasets.SSC``.
    ``val_size="valid"`` validates on its own ``ssc_valid.h5``; a count or fraction carves the
    validation split from ``ssc_train.h5`` as for every dataset."""

    name = "SSC"
    tonic_name = "SSC"
    num_classes = 35
    page = "https://zenkelab.org/datasets/"
    split_files = {
        "train": SplitFiles("ssc_train.h5.zip", "train_md5", "", "ssc_train.h5"),
        "test": SplitFiles("ssc_test.h5.zip", "test_md5", "", "ssc_test.h5"),
        "valid": SplitFiles("ssc_valid.h5.zip", "valid_md5", "", "ssc_valid.h5"),
    }

    def _tonic_kwargs(self, split: str) -> dict[str, Any]:
        return {"split": split}


class NMNISTDataModule(_CameraDataModule):
    """N-MNIST (Orchard et al. 2015; 60k / 10k saccade recordings of MNIST digits, 34x34 sensor) via
    ``tonic.datasets.NMNIST``. ``first_saccade_only``: keep the events of the first of three saccades
    (t < 100 ms), as tonic's option."""

    name = "N-MNIST"
    tonic_name = "NMNIST"
    num_classes = 10
    in_shape = (2, 34, 34)
    sensor = (34, 34)
    page = "https://www.garrickorchard.com/datasets/n-mnist"
    split_files = {
        "train": SplitFiles("train.zip", "train_md5", "train_url", "Train", ".bin"),
        "test": SplitFiles("test.zip", "test_md5", "test_url", "Test", ".bin"),
    }

    def __init__(self, *args: Any, first_saccade_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_saccade_only = bool(first_saccade_only)

    def _tonic_kwargs(self, split: str) -> dict[str, Any]:
        return {"train": split == "train", "first_saccade_only": self.first_saccade_only}

    def _extra_key(self) -> dict[str, Any]:
        return {"first_saccade_only": self.first_saccade_only}


class DVSGestureDataModule(_CameraDataModule):
    """IBM DVS128 Gesture (Amir et al. 2017; 11 gestures, 128x128 sensor) via ``tonic.datasets.DVSGesture``:
    tonic's preprocessed version (recordings cut into one gesture each, time stamps in ms)."""

    name = "DVS128 Gesture"
    tonic_name = "DVSGesture"
    num_classes = 11
    in_shape = (2, 128, 128)
    sensor = (128, 128)
    page = "https://research.ibm.com/interactive/dvsgesture/ (tonic's preprocessed copy: figshare)"
    split_files = {
        "train": SplitFiles("ibmGestureTrain.tar.gz", "train_md5", "train_url", "ibmGestureTrain", ".npy"),
        "test": SplitFiles("ibmGestureTest.tar.gz", "test_md5", "test_url", "ibmGestureTest", ".npy"),
    }
