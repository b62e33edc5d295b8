"""Event data as tensors: tonic datasets binned by config, cached on disk, in our DataModule.

A recording is a stream of events (t in µs, x[, y], polarity). :class:`Binning` turns one into
counts per time bin with tonic's transforms, in this order::

    Denoise(filter_time)            camera data, optional
    Downsample(to the target size)  sensor pixels / audio channels, optional
    ToFrame(one slicing)            n_time_bins | n_event_bins | time_window (µs) | event_count

Samples (batch-first; a batch adds B in front):

    camera (N-MNIST, DVS Gesture)  x [T, P, H, W] float32 counts per polarity P = 2  → encoder=frames
    audio (SHD, SSC)               x [T, F] float32 counts per channel               → encoder=sequence

T is fixed by ``n_time_bins``, ``n_event_bins`` or ``time_window`` with ``duration``; otherwise
(``time_window`` alone, ``event_count``) every recording has its own T and a batch is padded
with empty bins at the end to its longest recording (:func:`pad_time`).

Converted tensors are cached on disk (:class:`EventSource`): ``<cache_dir>/<dataset>/<key>/<split>/<i>.pt``
(``cache_dir`` defaults to ``<root>/cache``), the key a hash of the binning, the dataset's files and
the format; ``settings.json`` there says which. Delete the folder to clear it. The cache holds
counts; ``binary`` clamps them to 1 when read, so both share one cache.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from spikelight.core.errors import ConfigError, DatasetCorruptError
from spikelight.core.files import atomic_open
from spikelight.data.base import sample_seed

__all__ = ["Binning", "EventDataset", "EventSource", "pad_time", "require_tonic", "CACHE_FORMAT"]

#: bump when the cached file layout or the conversion changes: old caches are then not read
CACHE_FORMAT = 1
SLICINGS = ("n_time_bins", "n_event_bins", "time_window", "event_count")


def require_tonic(what: str):
    """Import tonic, or one line naming the extra that installs it."""
    try:
        import tonic
    except ImportError:
        raise ConfigError(f'{what} reads its files with tonic, which is not installed: pip install -e ".[events]"') from None
    return tonic


def _positive(value: Any, key: str, integer: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        raise ConfigError(f"{key} must be a positive {'whole ' if integer else ''}number, got {value!r}")


@dataclass(frozen=True)
class Binning:
    """How one recording becomes counts per time bin (tonic transforms; see the module docstring).

    Exactly one slicing: ``n_time_bins`` (T equal stretches of the recording's own time span, from its
    first to its last event), ``n_event_bins`` (T slices of floor(N/T) events: SpikingJelly's
    ``split_by='number'``), ``time_window`` (bins of this many µs from t = 0) or ``event_count``
    (bins of this many events; the last one may hold fewer). ``duration`` (µs, with ``time_window``
    only): T = duration / time_window; events after ``duration`` are left out and shorter recordings
    end in empty bins.
    ``denoise`` (µs): tonic's Denoise filter time (camera data). ``size``: output size, (W, H) of a
    camera or (channels,) of audio, downsampled from ``sensor`` (the same form) when smaller.
    ``binary``: clamp counts to 1.
    """

    sensor: tuple[int, ...]  # (W, H) of a camera, (channels,) of audio
    size: tuple[int, ...]
    polarities: int = 1
    n_time_bins: int | None = None
    n_event_bins: int | None = None
    time_window: float | None = None
    event_count: int | None = None
    duration: float | None = None
    denoise: float | None = None
    binary: bool = False

    @classmethod
    def from_config(
        cls, cfg: Mapping | None, where: str, sensor: tuple[int, ...], polarities: int, size_keys: Sequence[str],
        allowed: Sequence[str], defaults: Mapping[str, Any],
    ) -> Binning:
        """Parse ``data.frames`` / ``data.bins`` (``where``): unknown keys and bad values are one line."""
        given = dict(defaults)
        given.update(dict(cfg or {}))
        keys = (*SLICINGS, "duration", "binary", *allowed, *size_keys)
        for key in given:
            if key not in keys:
                raise ConfigError(f"{where}.{key}: no such setting; {where} takes {', '.join(keys)}")
        chosen = [k for k in SLICINGS if given.get(k) is not None]
        if len(chosen) != 1:
            raise ConfigError(f"{where} needs exactly one of {', '.join(SLICINGS)} (the others null), got "
                              f"{', '.join(chosen) or 'none'}")
        for key in SLICINGS:
            if given.get(key) is not None:
                _positive(given[key], f"{where}.{key}", integer=key != "time_window")
        duration = given.get("duration")
        if duration is not None:
            if chosen[0] != "time_window":
                raise ConfigError(f"{where}.duration fixes T only with {where}.time_window; set it to null")
            _positive(duration, f"{where}.duration", integer=False)
            steps = duration / given["time_window"]
            if not float(steps).is_integer():
                raise ConfigError(f"{where}.duration={duration} is not a whole number of time_window={given['time_window']} "
                                  "bins; make it a multiple")
        denoise = given.get("denoise")
        if denoise is not None:
            _positive(denoise, f"{where}.denoise", integer=False)
        size = []
        for key, full in zip(size_keys, sensor):
            value = given.get(key, full)
            _positive(value, f"{where}.{key}", integer=True)
            if value > full:
                raise ConfigError(f"{where}.{key}={value} exceeds the sensor's {full}; downsampling only (<= {full})")
            size.append(int(value))
        binary = given.get("binary", False)
        if not isinstance(binary, bool):
            raise ConfigError(f"{where}.binary must be true or false, got {binary!r}")
        as_int = {k: int(given[k]) for k in ("n_time_bins", "n_event_bins", "event_count") if given.get(k) is not None}
        as_float = {k: float(given[k]) for k in ("time_window", "duration", "denoise") if given.get(k) is not None}
        return cls(sensor=tuple(sensor), size=tuple(size), polarities=polarities, binary=binary, **as_int, **as_float)

    @property
    def steps(self) -> int | None:
        """T of every sample, or None when each recording has its own."""
        if self.n_time_bins or self.n_event_bins:
            return self.n_time_bins or self.n_event_bins
        if self.duration is not None:
            return round(self.duration / self.time_window)
        return None

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """One time bin: (P, H, W) for a camera (size = (W, H)), (F,) for audio channels."""
        if len(self.size) == 2:
            return (self.polarities, self.size[1], self.size[0])
        return (self.size[0],)

    def key(self) -> dict[str, Any]:
        """What the cached counts depend on (not ``binary``: applied when read)."""
        d = asdict(self)
        d.pop("binary")
        d["sensor"], d["size"] = list(self.sensor), list(self.size)
        return d

    def convert(self, events: np.ndarray) -> Tensor:
        """One recording (tonic's structured array) → int16 counts [T, *frame_shape]."""
        import tonic.transforms as tt

        if len(events) and np.any(np.diff(events["t"]) < 0):  # tonic's slicers search a sorted t
            events = events[np.argsort(events["t"], kind="stable")]
        if self.denoise is not None and len(events):
            events = tt.Denoise(filter_time=self.denoise)(events)
        if self.size != self.sensor:  # tonic wants sensor (W, H, P) and target (W, H); audio has H = 1
            full, target = (*self.sensor, 1)[:2], (*self.size, 1)[:2]
            events = tt.Downsample(sensor_size=(*full, self.polarities), target_size=target)(events)
        width, height = (*self.size, 1)[:2]
        steps = self.steps
        if len(events) == 0:
            return torch.zeros((steps or 1, *self.frame_shape), dtype=torch.int16)
        # time windows count from t = 0; without a fixed T the last, incomplete window / count is kept, and
        # the windows reach past the last event (tonic's would end at it, leaving it out)
        end = self.duration if self.duration is not None or not self.time_window else float(events["t"][-1]) + 1
        frames = tt.ToFrame(
            sensor_size=(width, height, self.polarities), n_time_bins=self.n_time_bins, n_event_bins=self.n_event_bins,
            time_window=self.time_window, event_count=self.event_count, include_incomplete=steps is None,
            start_time=0 if self.time_window else None, end_time=end,
        )(events)
        x = torch.from_numpy(np.ascontiguousarray(frames).astype(np.int16, copy=False))
        x = x.reshape(x.shape[0], *self.frame_shape)  # audio: (T, 1, F) → (T, F)
        if steps is not None and x.shape[0] != steps:  # tonic gives exactly T; a guard, not a path
            x = x[:steps] if x.shape[0] > steps else torch.cat([x, x.new_zeros(steps - x.shape[0], *x.shape[1:])])
        return x


def pad_time(batch: Sequence[tuple[Tensor, Any]]) -> tuple[Tensor, Tensor]:
    """Collate samples [T_i, ...] of different lengths: empty bins appended up to the longest.
    Returns (x [B, T_max, ...], y [B])."""
    longest = max(x.shape[0] for x, _ in batch)
    xs = [x if x.shape[0] == longest else torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])])
          for x, _ in batch]
    ys = [torch.as_tensor(y) for _, y in batch]
    return torch.stack(xs), torch.stack(ys)


class EventSource:
    """One split of a tonic dataset, each recording converted by ``binning`` and cached on disk.

    ``sample(i)`` → (int16 counts [T, ...], label): from ``cache/<i>.pt`` when there, else read
    with tonic (``dataset[i]``), converted and written there (atomically: a run killed mid-write
    leaves no half file). A file tonic cannot read is one line naming it (``describe(i)``).
    """

    def __init__(self, dataset: Any, binning: Binning, cache: Path | None, describe: Callable[[int], str],
                 name: str) -> None:
        self.dataset, self.binning, self.cache, self.describe, self.name = dataset, binning, cache, describe, name

    def __len__(self) -> int:
        return len(self.dataset)

    def _read(self, i: int) -> tuple[Tensor, int]:
        try:
            events, target = self.dataset[i]
            return self.binning.convert(events), int(target)
        except Exception as err:  # noqa: BLE001 - h5py / numpy / zip errors on a damaged file
            why = type(err).__name__ + (f": {str(err).splitlines()[0][:80]}" if str(err).strip() else "")
            raise DatasetCorruptError(
                f"{self.name} file {self.describe(i)} is truncated or corrupt ({why}); delete it and extract or "
                "download it again"
            ) from None

    def sample(self, i: int) -> tuple[Tensor, int]:
        path = None if self.cache is None else self.cache / f"{i}.pt"
        if path is not None and path.exists():
            try:
                d = torch.load(path, weights_only=True)
                x = torch.zeros(math.prod(d["shape"]), dtype=torch.int16)
                x[d["index"].long()] = d["value"]
                return x.view(*d["shape"]), int(d["label"])
            except Exception:  # noqa: BLE001 - an unreadable cache file is converted again
                pass
        x, label = self._read(i)
        if path is not None:
            flat = x.reshape(-1)
            index = flat.nonzero().squeeze(1)
            entry = {"shape": list(x.shape), "index": index.to(torch.int32), "value": flat[index].clone(), "label": label}
            with atomic_open(path, "wb", durable=False) as f:  # a cache: rebuilt if lost, never read half-written
                torch.save(entry, f)
        return x, label


def cache_folder(cache_dir: Path, dataset: str, binning: Binning, source: Mapping[str, Any], split: str,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """``<cache_dir>/<dataset>/<key>/<split>``, created, with a ``settings.json`` naming the key's parts.
    The key hashes the binning, the dataset's files (``source``), ``extra`` options and :data:`CACHE_FORMAT`."""
    settings = {"format": CACHE_FORMAT, "binning": binning.key(), "source": dict(source), **dict(extra or {})}
    text = json.dumps(settings, sort_keys=True, default=str)
    folder = Path(cache_dir) / dataset / hashlib.sha1(text.encode()).hexdigest()[:16]
    try:
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True, default=str))
    except OSError as err:
        raise ConfigError(f"cannot write the {dataset} cache in {folder} ({type(err).__name__}); set data.cache_dir "
                          "to a writable folder or data.cache=false") from None
    return folder / split


class EventDataset(Dataset):
    """A split's samples: item → (x float32 [T, ...] counts (clamped to 1 if ``binary``), y int64).

    ``indices`` pick recordings of ``source``. ``transform`` (training augmentation, e.g. a torchvision
    crop: it sees all T bins of one sample at once, so every bin is cropped alike) runs on each
    sample under the seed :func:`~spikelight.data.base.sample_seed` ``(seed, epoch, index)`` when
    ``random`` (keys ``(epoch, i)`` from :class:`~spikelight.data.base.EpochShuffleSampler`), as
    :class:`~spikelight.data.base.ImageDataset` does.
    """

    def __init__(self, source: EventSource, indices: Sequence[int] | None = None, binary: bool = False,
                 transform: Callable[[Tensor], Tensor] | None = None, random: bool = False, seed: int = 0) -> None:
        self.source, self.binary = source, binary
        self.indices = list(range(len(source))) if indices is None else [int(i) for i in indices]
        self.transform, self.random, self.seed = transform, random, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        j = self.indices[i]
        counts, label = self.source.sample(j)
        x = counts.float()
        if self.binary:
            x.clamp_(max=1.0)
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
        return x, torch.tensor(label, dtype=torch.long)
