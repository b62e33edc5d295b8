"""Small event datasets in the on-disk layouts tonic reads (SHD, SSC, N-MNIST, DVS Gesture), learnable:
class k fires in its own band of channels / rows. Used by tests/unit/test_events.py and
tests/integration/test_event_experiments.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikelight.data.event_files import write_archive, write_dvs_gesture, write_hsd, write_nmnist_bin

# (tonic folder, split -> (archive, extracted file or folder)) as tonic names them
LAYOUT = {
    "shd": ("SHD", {"train": ("shd_train.h5.zip", "shd_train.h5"), "test": ("shd_test.h5.zip", "shd_test.h5")}),
    "ssc": ("SSC", {"train": ("ssc_train.h5.zip", "ssc_train.h5"), "valid": ("ssc_valid.h5.zip", "ssc_valid.h5"),
                    "test": ("ssc_test.h5.zip", "ssc_test.h5")}),
    "nmnist": ("NMNIST", {"train": ("train.zip", "Train"), "test": ("test.zip", "Test")}),
    "dvs_gesture": ("DVSGesture", {"train": ("ibmGestureTrain.tar.gz", "ibmGestureTrain"),
                                   "test": ("ibmGestureTest.tar.gz", "ibmGestureTest")}),
}
CLASSES = {"shd": 20, "ssc": 35, "nmnist": 10, "dvs_gesture": 11}


def _hsd(path: Path, n: int, classes: int, rng: np.random.Generator) -> list[int]:
    labels = [i % classes for i in range(n)]
    band = 700 // classes
    recordings = []
    for k in labels:
        m = int(rng.integers(80, 160))
        t = np.sort(rng.uniform(0.0, 0.9, m))  # seconds, within the first second
        u = k * band + rng.integers(0, band, m)
        recordings.append((t, u))
    write_hsd(path, recordings, labels)
    return labels


def _nmnist(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    files = []
    for i in range(n):
        k, m = i % 10, int(rng.integers(150, 300))
        y = 2 + 3 * k + rng.integers(0, 3, m)
        path = folder / str(k) / f"{i:05d}.bin"
        write_nmnist_bin(path, rng.integers(0, 34, m), y, np.sort(rng.integers(0, 300_000, m)), rng.integers(0, 2, m))
        files.append(path)
    return files


def _dvs(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    files = []
    for i in range(n):
        k, m = i % 11, int(rng.integers(300, 600))
        x = 8 + 10 * k + rng.integers(0, 10, m)
        path = folder / f"user{i // 11 + 1:02d}_{'led' if i % 2 else 'fluorescent'}" / f"{k}.npy"
        write_dvs_gesture(path, x, rng.integers(0, 128, m), rng.integers(0, 2, m), np.sort(rng.integers(0, 6000, m)))
        files.append(path)
    return files


def write_event_dataset(root: Path, name: str, sizes: dict[str, int] | None = None, archives: bool = False,
                        seed: int = 0) -> dict[str, Path]:
    """Write dataset ``name`` (shd | ssc | nmnist | dvs_gesture) under ``root`` in tonic's layout.

    ``sizes``: recordings per split (default train 40, test 20, SSC valid 10). With ``archives`` the
    splits are packed into tonic's download archives (the extracted files removed). Returns
    split -> the archive (``archives``) or the extracted file / folder."""
    folder_name, layout = LAYOUT[name]
    folder = Path(root) / folder_name
    sizes = {"train": 40, "test": 20, "valid": 10, **(sizes or {})}
    rng = np.random.default_rng(seed)
    out = {}
    for split, (archive, data) in layout.items():
        n = sizes[split]
        if name in ("shd", "ssc"):
            _hsd(folder / data, n, CLASSES[name], rng)
            members = [folder / data]
        elif name == "nmnist":
            members = _nmnist(folder / data, n, rng)
        else:
            members = _dvs(folder / data, n, rng)
        if archives:
            write_archive(folder / archive, folder, members)
            for m in members:
                m.unlink()
            out[split] = folder / archive
        else:
            out[split] = folder / data
    return out
