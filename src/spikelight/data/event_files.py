"""Write event recordings in the on-disk formats tonic reads (tests, small local datasets).

    write_hsd           SHD / SSC HDF5: spikes/times (s), spikes/units (channel), labels, extra/keys, extra/speaker
    write_nmnist_bin    N-MNIST .bin: 5 bytes an event (x, y, polarity bit 7 + 23-bit µs time stamp)
    write_dvs_gesture   tonic's DVS Gesture .npy: an [N, 4] array of x, y, polarity, t (ms)
    write_archive       the .zip / .tar.gz tonic downloads, holding files of a folder

Each writes what tonic's readers (``tonic.datasets.hsd.HSD.__getitem__``, ``tonic.io.read_mnist_file``,
``tonic.datasets.DVSGesture.__getitem__``) read back event for event.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_hsd", "write_nmnist_bin", "write_dvs_gesture", "write_archive"]


def write_hsd(path: Path, recordings: Sequence[tuple[np.ndarray, np.ndarray]], labels: Sequence[int],
              keys: Sequence[str] | None = None, speakers: Sequence[int] | None = None) -> None:
    """SHD / SSC file: one (times in s, channel units 0..699) pair per recording, variable length."""
    import h5py

    n = len(recordings)
    keys = list(keys) if keys is not None else [f"class-{k}" for k in range(max(labels) + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(recordings):
            times[i] = np.asarray(t, dtype=np.float16)
            units[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.asarray([k.encode() for k in keys]))
        f.create_dataset("extra/speaker", data=np.asarray(speakers if speakers is not None else [0] * n, dtype=np.uint16))


def write_nmnist_bin(path: Path, x: np.ndarray, y: np.ndarray, t_us: np.ndarray, p: np.ndarray) -> None:
    """N-MNIST recording: x, y in 0..33, polarity 0/1, time stamps in µs (< 2**23, no overflow events)."""
    t = np.asarray(t_us, dtype=np.uint32)
    if t.size and t.max() >= 1 << 23:
        raise ValueError("N-MNIST time stamps hold 23 bits; write shorter recordings")
    raw = np.empty((len(t), 5), dtype=np.uint8)
    raw[:, 0] = np.asarray(x, dtype=np.uint8)
    raw[:, 1] = np.asarray(y, dtype=np.uint8)
    raw[:, 2] = (np.asarray(p, dtype=np.uint32) << 7 | (t >> 16) & 0x7F).astype(np.uint8)
    raw[:, 3] = ((t >> 8) & 0xFF).astype(np.uint8)
    raw[:, 4] = (t & 0xFF).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def write_dvs_gesture(path: Path, x: np.ndarray, y: np.ndarray, p: np.ndarray, t_ms: np.ndarray) -> None:
    """One gesture of tonic's preprocessed DVS Gesture: ``<folder>/user<NN>_<lighting>/<label>.npy``."""
    events = np.stack([np.asarray(v, dtype=np.int64) for v in (x, y, p, t_ms)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, events)


def write_archive(archive: Path, base: Path, members: Sequence[Path]) -> None:
    """``archive`` (.zip or .tar.gz) holding ``members`` (files under ``base``) by their path relative to it."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as z:
            for m in members:
                z.write(m, Path(m).relative_to(base).as_posix())
    elif archive.name.endswith(".tar.gz"):
        with tarfile.open(archive, "w:gz") as tar:
            for m in members:
                tar.add(m, Path(m).relative_to(base).as_posix())
    else:
        raise ValueError(f"write_archive writes .zip or .tar.gz, not {archive.name}")
