"""Event DataModules (SHD, SSC, N-MNIST, DVS Gesture through tonic) on small files in tonic's on-disk
layouts (tests/event_data.py): tensors per binning setting checked against the events written, the disk
cache, the validation split, one-line refusals of missing / corrupt files and bad settings, the frames
encoder and the event figures."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from spikelight.core.errors import ConfigError, DatasetCorruptError, DatasetNotFoundError, ShapeError
from spikelight.data import DVSGestureDataModule, NMNISTDataModule, SHDDataModule, SSCDataModule
from spikelight.data.events import pad_time

from ..event_data import LAYOUT, write_event_dataset

tonic = pytest.importorskip("tonic")

MODULES = {"shd": SHDDataModule, "ssc": SSCDataModule, "nmnist": NMNISTDataModule, "dvs_gesture": DVSGestureDataModule}
SLICINGS = {"n_time_bins": None, "n_event_bins": None, "time_window": None, "event_count": None}


def _dm(name: str, root: Path, binning: dict, **kw):
    key = "bins" if name in ("shd", "ssc") else "frames"
    kw = {"download": False, "batch_size": 8, "val_size": 4, **kw}
    return MODULES[name](root=str(root), **{key: {**SLICINGS, **binning}}, **kw)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text, text
    return text


def test_what_we_name_is_tonics():
    """Folders, archives, checksum / URL attributes, sensors and class counts as tonic has them."""
    for name, cls in MODULES.items():
        t = getattr(tonic.datasets, cls.tonic_name)
        assert LAYOUT[name][0] == cls.tonic_name
        for split, files in cls.split_files.items():
            archive = getattr(t, f"{split}_zip", None) or getattr(t, f"{split}_filename")
            assert files.archive == archive and len(getattr(t, files.md5)) == 32, (name, split)
            assert getattr(t, files.url).startswith("https://") if files.url else t.base_url.startswith("https://")
        assert tuple(t.sensor_size[: len(cls.sensor)]) == cls.sensor, name
    assert len(tonic.datasets.DVSGesture.classes) == DVSGestureDataModule.num_classes
    assert len(tonic.datasets.NMNIST.classes) == NMNISTDataModule.num_classes


def _hsd_events(path: Path, i: int) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path) as f:
        return f["spikes/times"][i].astype(np.float64), f["spikes/units"][i].astype(np.int64)


@pytest.mark.parametrize("binning,steps,channels", [
    ({"time_window": 4000, "duration": 1_000_000}, 250, 700),
    ({"time_window": 4000, "duration": 1_000_000, "channels": 140}, 250, 140),
    ({"n_time_bins": 50}, 50, 700),
    ({"time_window": 10_000}, None, 700),
])
def test_audio_counts_are_the_spikes_per_bin_and_channel(tmp_path, binning, steps, channels):
    files = write_event_dataset(tmp_path, "shd")
    dm = _dm("shd", tmp_path, binning, val_size=0)
    dm.setup()
    assert dm.seq_len == steps and dm.num_features == channels and dm.in_shape == (channels,)
    x, y = next(iter(dm.test_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[0] == 8 and x.shape[2] == channels
    assert steps is None or x.shape[1] == steps
    for i in range(3):  # against the file, recording by recording
        t, u = _hsd_events(files["test"], i)
        if "n_time_bins" in binning:  # tonic's equal stretches end before the last spike's time
            keep = t < t[0] + (t[-1] - t[0]) // (1e-6 * 50) * 50 * 1e-6 + 1e-12
            t, u = t[keep], u[keep]
        expected = np.bincount(u * channels // 700, minlength=channels)
        assert np.array_equal(x[i].sum(0).numpy(), expected), i
        first = int(t.min() * 1e6 // binning["time_window"]) if "time_window" in binning else 0
        assert x[i, : first].sum() == 0 and x[i, first].sum() > 0  # bins start at t = 0 (time_window)
        assert y[i] == i % 20
    if steps is None:  # each recording its own length: padded to the batch's longest
        assert max(int(x[i].sum(1).nonzero().max()) for i in range(8)) < x.shape[1]


def test_binary_clamps_counts_and_shares_the_cache(tmp_path):
    write_event_dataset(tmp_path, "shd")
    counts = _dm("shd", tmp_path, {"time_window": 20_000, "duration": 1_000_000}, val_size=0)
    counts.setup()
    x, _ = counts.test_set[0]
    assert x.max() > 1  # 20 ms bins hold several spikes of a channel
    binary = _dm("shd", tmp_path, {"time_window": 20_000, "duration": 1_000_000, "binary": True}, val_size=0)
    binary.setup()
    xb, _ = binary.test_set[0]
    assert torch.equal(xb, x.clamp(max=1)) and binary.test_set.source.cache == counts.test_set.source.cache


def _nmnist_events(path: Path) -> np.ndarray:
    return tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)


@pytest.mark.parametrize("binning,steps,shape", [
    ({"n_time_bins": 5}, 5, (2, 34, 34)),
    ({"n_event_bins": 4}, 4, (2, 34, 34)),
    ({"time_window": 50_000, "duration": 300_000}, 6, (2, 34, 34)),
    ({"time_window": 50_000, "duration": 300_000, "width": 17, "height": 17}, 6, (2, 17, 17)),
    ({"event_count": 40}, None, (2, 34, 34)),
])
def test_camera_frames_count_events_per_polarity_and_pixel(tmp_path, binning, steps, shape):
    write_event_dataset(tmp_path, "nmnist")
    dm = _dm("nmnist", tmp_path, binning, val_size=0)
    dm.setup()
    assert dm.seq_len == steps and dm.in_shape == shape
    x, y = next(iter(dm.test_dataloader()))
    assert x.dtype == torch.float32 and x.shape[0] == 8 and x.shape[2:] == shape
    assert steps is None or x.shape[1] == steps
    paths = dm.test_set.source.dataset.data
    for i in range(3):
        ev = _nmnist_events(Path(paths[i]))
        n = len(ev)
        if "n_event_bins" in binning:
            n = n // 4 * 4  # tonic drops the N mod T left-over events
        if "n_time_bins" in binning:  # tonic's equal stretches end before the last event
            assert 0 < x[i].sum() <= n
            continue
        assert x[i].sum() == n
        if shape[1] == 34:  # each polarity's events land on their own pixels
            for p in (0, 1):
                sel = ev["p"] == p
                img = np.zeros((34, 34))
                np.add.at(img, (ev["y"][sel], ev["x"][sel]), 1)
                if "n_event_bins" in binning:
                    continue
                assert np.array_equal(x[i, :, p].sum(0).numpy(), img), (i, p)
        rows = x[i].sum((0, 1, 3)).nonzero().squeeze(1)  # class k fires in rows 2 + 3k .. 4 + 3k
        k = int(y[i])
        lo, hi = (2 + 3 * k, 4 + 3 * k) if shape[1] == 34 else ((2 + 3 * k) // 2, (4 + 3 * k) // 2)
        assert lo <= int(rows.min()) and int(rows.max()) <= hi, (k, rows)
    if "event_count" in binning:  # 40 events a bin, the last one the rest: padded to the batch's longest
        assert x.shape[1] == max(-(-len(_nmnist_events(Path(paths[i]))) // 40) for i in range(8))


def test_dvs_gesture_frames_and_denoise(tmp_path):
    from spikelight.data.event_files import write_dvs_gesture

    write_event_dataset(tmp_path, "dvs_gesture")
    dm = _dm("dvs_gesture", tmp_path, {"n_event_bins": 4, "width": 32, "height": 32})
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 4, 2, 32, 32) and dm.in_shape == (2, 32, 32) and int(y.max()) < 11
    # a test recording replaced: two neighbours at 100 ms (the second has a neighbour within 1 ms before
    # it), a lone event at 2 s, one at exactly 3 s (where a 1 s window ends: still counted)
    x_, y_, p_, t_ = (np.array(v) for v in zip(*[(50, 50, 1, 100), (51, 50, 0, 100), (100, 100, 1, 2000),
                                                   (90, 3, 1, 3000)]))  # (x, y, p, t ms)
    first = Path(sorted((tmp_path / "DVSGesture" / "ibmGestureTest").rglob("*.npy"))[0])
    write_dvs_gesture(first, x_, y_, p_, t_)
    full = _dm("dvs_gesture", tmp_path, {"time_window": 1_000_000}, val_size=0, cache=False)
    full.setup()
    i = full.test_set.source.dataset.data.index(str(first))
    a = full.test_set[i][0]
    assert a.shape[0] == 4 and a.sum() == 4 and a[3, 1, 3, 90] == 1 and a[0, 0, 50, 51] == 1  # [T, P, y, x]
    denoised = _dm("dvs_gesture", tmp_path, {"time_window": 1_000_000, "denoise": 1000}, val_size=0, cache=False)
    denoised.setup()
    b = denoised.test_set[i][0]
    assert b.sum() == 1 and b[0, 0, 50, 51] == 1  # only the event with a neighbour 0 ms before it


def test_second_load_reads_the_cache_not_the_events(tmp_path, monkeypatch):
    write_event_dataset(tmp_path, "nmnist")
    first = _dm("nmnist", tmp_path, {"n_time_bins": 5})
    first.setup()
    before = [first.train_set[i] for i in range(len(first.train_set))]
    cached = list((tmp_path / "cache" / "NMNIST").glob("*/train/*.pt"))
    assert len(cached) == len(first.train_set)

    def no_reading(self, index):
        raise AssertionError("read the events again")

    monkeypatch.setattr(tonic.datasets.NMNIST, "__getitem__", no_reading)
    second = _dm("nmnist", tmp_path, {"n_time_bins": 5})
    second.setup()
    after = [second.train_set[i] for i in range(len(second.train_set))]
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(before, after))
    other = _dm("nmnist", tmp_path, {"n_time_bins": 6})  # other settings: another key, so a miss
    other.setup()
    with pytest.raises(DatasetCorruptError, match="read the events again"):
        other.train_set[0]


def test_validation_split_never_overlaps_training(tmp_path):
    write_event_dataset(tmp_path, "shd", sizes={"train": 50})
    dm = _dm("shd", tmp_path, {"time_window": 4000, "duration": 1_000_000}, val_size=0.2, seed=3)
    dm.setup()
    train, val = set(dm.train_set.indices), set(dm.val_set.indices)
    assert len(val) == 10 and len(train) == 40 and not train & val and train | val == set(range(50))
    assert dm.val_set.source is dm.train_set.source and dm.test_set.source is not dm.train_set.source
    again = _dm("shd", tmp_path, {"time_window": 4000, "duration": 1_000_000}, val_size=0.2, seed=3)
    again.setup()
    other = _dm("shd", tmp_path, {"time_window": 4000, "duration": 1_000_000}, val_size=0.2, seed=4)
    other.setup()
    assert set(again.val_set.indices) == val and set(other.val_set.indices) != val
    write_event_dataset(tmp_path, "ssc", sizes={"train": 30, "valid": 12, "test": 8})
    ssc = _dm("ssc", tmp_path, {"time_window": 4000, "duration": 1_000_000}, val_size="valid")
    ssc.setup()
    assert (len(ssc.train_set), len(ssc.val_set), len(ssc.test_set)) == (30, 12, 8)
    assert len({id(s.source) for s in (ssc.train_set, ssc.val_set, ssc.test_set)}) == 3


@pytest.mark.parametrize("name", list(MODULES))
def test_missing_files_are_one_line_naming_them(tmp_path, name):
    dm = _dm(name, tmp_path, {"n_time_bins": 4}, **({"val_size": "valid"} if name == "ssc" else {}))
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup()
    line = _one_line(err)
    folder, layout = LAYOUT[name]
    assert line.startswith(f"{dm.name} not found: put ") and str(tmp_path / folder) in line
    assert all(archive in line for archive, _ in layout.values()) and "data.download=true" in line


def test_archives_are_checked_then_extracted(tmp_path, monkeypatch):
    """tonic's archives in its folder: extracted after their md5 (patched to these files', as the CIFAR tests do)."""
    for name in ("shd", "nmnist", "dvs_gesture"):
        archives = write_event_dataset(tmp_path, name, sizes={"train": 12, "test": 6}, archives=True)
        cls = getattr(tonic.datasets, MODULES[name].tonic_name)
        for split, files in MODULES[name].split_files.items():
            if split in archives:
                monkeypatch.setattr(cls, files.md5, __import__("hashlib").md5(archives[split].read_bytes()).hexdigest())
        dm = _dm(name, tmp_path, {"n_event_bins": 2})
        dm.setup()
        assert (len(dm.train_set) + len(dm.val_set), len(dm.test_set)) == (12, 6), name
        x, _ = dm.test_set[0]
        assert x.shape[0] == 2 and x.sum() > 0


def test_archive_failing_its_checksum_is_one_line(tmp_path):
    write_event_dataset(tmp_path, "shd", archives=True)  # tonic's real md5s: these files fail them
    with pytest.raises(DatasetCorruptError) as err:
        _dm("shd", tmp_path, {"n_time_bins": 4}).setup()
    line = _one_line(err)
    assert "shd_train.h5.zip fails its checksum" in line and tonic.datasets.SHD.train_md5 in line
    assert "delete it and download it again" in line


def test_failed_download_is_one_line_and_leaves_no_partial_archive(tmp_path, monkeypatch):
    def offline(url, root, filename=None, md5=None):
        (Path(root) / filename).write_bytes(b"partial")
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tonic.download_utils, "download_url", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        _dm("dvs_gesture", tmp_path, {"n_time_bins": 4}, download=True).setup()
    line = _one_line(err)
    assert line.startswith("DVS128 Gesture download failed (URLError); put ibmGestureTrain.tar.gz")
    assert not (tmp_path / "DVSGesture" / "ibmGestureTrain.tar.gz").exists()


def test_corrupt_files_are_one_line_naming_them(tmp_path):
    files = write_event_dataset(tmp_path, "shd")
    files["train"].write_bytes(files["train"].read_bytes()[:300])  # truncated HDF5
    with pytest.raises(DatasetCorruptError) as err:
        _dm("shd", tmp_path, {"n_time_bins": 4}).setup()
    assert str(files["train"]) in _one_line(err) and "cannot be read" in str(err.value)

    files = write_event_dataset(tmp_path, "dvs_gesture")
    dm = _dm("dvs_gesture", tmp_path, {"n_time_bins": 4}, val_size=0)
    dm.setup()
    bad = Path(dm.test_set.source.dataset.data[1])
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated .npy
    dm.test_set[0]
    with pytest.raises(DatasetCorruptError) as err:
        dm.test_set[1]
    line = _one_line(err)
    assert str(bad) in line and "truncated or corrupt" in line


@pytest.mark.parametrize("frames,needle", [
    ({"n_time_bins": 4, "time_window": 1000}, "exactly one of"),
    ({}, "exactly one of"),
    ({"n_time_bins": 4, "windows": 3}, "data.frames.windows: no such setting"),
    ({"time_window": 3000, "duration": 10_000}, "not a whole number of time_window"),
    ({"n_time_bins": 4, "duration": 10_000}, "duration fixes T only with"),
    ({"n_time_bins": 4, "width": 40}, "data.frames.width=40 exceeds the sensor's 34"),
    ({"n_time_bins": 2.5}, "positive whole number"),
    ({"n_time_bins": 4, "binary": "yes"}, "binary must be true or false"),
])
def test_bad_binning_is_one_line(tmp_path, frames, needle):
    with pytest.raises(ConfigError) as err:
        NMNISTDataModule(root=str(tmp_path), frames={**SLICINGS, **frames})
    assert needle in _one_line(err)


def test_in_shape_follows_the_frames(tmp_path):
    from ..conftest import compose_cfg

    cfg = compose_cfg("train", ["data=dvs_gesture", "data.frames.width=32", "data.frames.height=16"], tmp_path)
    assert list(cfg.data.in_shape) == [2, 16, 32]
    from hydra.utils import instantiate

    assert instantiate(cfg.data).in_shape == (2, 16, 32)
    with pytest.raises(ConfigError, match=r"set data.in_shape=\[2, 34, 34\]"):
        NMNISTDataModule(root=str(tmp_path), frames={**SLICINGS, "n_time_bins": 4}, in_shape=[2, 17, 17])
    with pytest.raises(ConfigError, match="data.normalize=false"):
        SHDDataModule(root=str(tmp_path), bins={**SLICINGS, "n_time_bins": 4}, normalize=True)
    with pytest.raises(ConfigError, match="'valid'"):
        SHDDataModule(root=str(tmp_path), bins={**SLICINGS, "n_time_bins": 4}, val_size="valid")


def test_pad_time_appends_empty_bins():
    a, b = torch.ones(3, 2), torch.full((5, 2), 2.0)
    x, y = pad_time([(a, 1), (b, 0)])
    assert x.shape == (2, 5, 2) and torch.equal(x[0, :3], a) and x[0, 3:].sum() == 0 and y.tolist() == [1, 0]


def test_frames_encoder_is_the_time_major_view():
    from spikelight.encoding import DirectEncoder, FramesEncoder

    x = torch.rand(3, 4, 2, 5, 5)
    enc = FramesEncoder()
    out = enc(x)
    assert out.shape == (4, 3, 2, 5, 5) and torch.equal(out[1, 2], x[2, 1])
    enc.steps = 4
    with pytest.raises(ShapeError, match="T=4"):
        enc(torch.rand(4, 3, 2, 5, 5))
    with pytest.raises(ShapeError, match="batch-first event frames"):
        enc(torch.rand(3, 4, 10))
    with pytest.raises(ShapeError, match="need encoder=frames"):
        DirectEncoder(T=4)(x)


def test_event_figures_draw_the_events():
    from matplotlib.image import AxesImage

    from spikelight.train.figures import plot_event_frames, plot_input_raster

    x = torch.zeros(12, 2, 2, 6, 8)
    x[3, 0, 1, 2, 5] = 4  # 4 ON events of sample 0 in bin 3 at row 2, column 5
    x[3, 0, 0, 1, 1] = 1
    fig = plot_event_frames(x, torch.tensor([3, 7]))
    panels = [ax for ax in fig.axes if any(isinstance(a, AxesImage) for a in ax.get_children())]
    assert len(panels) == 2 * 8  # a frame per time bin (8 of 12) per sample
    titles = [ax.get_title() for ax in panels]
    assert "bin 3: 5 events" in titles
    img = next(ax for ax in panels if ax.get_title() == "bin 3: 5 events").get_images()[0].get_array()
    assert img.shape == (6, 8) and img[2, 5] == 4 and img[1, 1] == -1  # ON - OFF
    audio = torch.zeros(30, 2, 700)
    audio[10, 1, 650] = 2
    fig = plot_input_raster(audio, torch.tensor([0, 5]))
    images = [im.get_array() for ax in fig.axes for im in ax.get_images()]
    assert [a.shape for a in images] == [(700, 30), (700, 30)] and images[1][650, 10] == 2  # every channel x time
