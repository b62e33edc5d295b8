"""Figures people look at: output membrane traces and spike rasters, output
membrane heatmaps, the encoded input, per-layer spike rasters and firing-rate
histograms, training curves.

Pure matplotlib (Agg); every function returns a Figure. :func:`sample_figures`
runs a trained :class:`~spikelight.train.module.SpikingClassifier` on a batch and draws
the per-sample pictures (used by the plot callback and ``python -m spikelight.plot``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import Tensor  # noqa: E402

from spikelight.encoding import FramesEncoder  # noqa: E402
from spikelight.monitor import Monitor  # noqa: E402

__all__ = [
    "plot_output_traces",
    "plot_membrane_heatmap",
    "plot_input_raster",
    "plot_event_frames",
    "plot_spike_raster",
    "plot_firing_rate_hist",
    "plot_curves",
    "sample_figures",
]

MEMBRANE = "membrane before reset"
READOUT = "readout potential (no spikes)"


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _int_ticks(axis) -> None:
    axis.set_major_locator(MaxNLocator(integer=True))


def _raster(ax, spikes: np.ndarray, colors=None, linewidth: float = 1.2) -> None:
    """Spike raster of ``spikes`` [T, N] (0/1): one tick per spike, neuron 0 on
    top, ticks 0.8 rows tall so neighbouring rows never merge."""
    T, N = spikes.shape
    trains = [np.nonzero(spikes[:, n] > 0)[0] for n in range(N)]
    ax.eventplot(trains, lineoffsets=np.arange(N), linelengths=0.8, linewidths=linewidth,
                 colors=colors if colors is not None else "k")
    ax.set_ylim(N - 0.5, -0.5)
    ax.set_xlim(-0.5, T - 0.5)


def plot_output_traces(
    membrane: Tensor, spikes: Tensor | None, labels: Tensor, preds: Tensor, v_threshold: float | None = None
) -> Figure:
    """Per sample (rows): output membrane (before reset) of every class over
    time next to the output spike raster; all panels share the time axis.
    membrane / spikes: [T, S, C]; labels / preds: [S]. ``spikes=None``: a
    non-spiking readout (LSNN's leaky readout): its potential alone, no raster."""
    T, S, C = membrane.shape
    spiking = spikes is not None
    fig, axes = plt.subplots(
        S, 2 if spiking else 1, figsize=(11 if spiking else 8, 2.5 * S + 0.9), squeeze=False, sharex=True,
        layout="constrained",
    )
    colors = plt.cm.tab10(np.arange(C) % 10)
    t = np.arange(T)
    for i in range(S):
        ax_m = axes[i, 0]
        label, pred = int(labels[i]), int(preds[i])
        for c in range(C):
            bold = c == label
            ax_m.plot(t, _np(membrane[:, i, c]), color=colors[c], lw=2.2 if bold else 0.8,
                      alpha=1.0 if bold else 0.75, label=str(c), zorder=3 if bold else 2)
        if v_threshold is not None:
            ax_m.axhline(v_threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax_m.set_ylabel(MEMBRANE if spiking else READOUT)
        verdict = "correct" if label == pred else "wrong"
        ax_m.set_title(f"sample {i}: label {label}, predicted {pred} ({verdict}); bold line = label", fontsize=10)
        ax_m.set_xlim(-0.5, T - 0.5)
        ax_m.grid(axis="x", alpha=0.25)
        if not spiking:
            continue
        ax_s = axes[i, 1]
        counts = _np(spikes[:, i].sum(0)).astype(int)
        _raster(ax_s, _np(spikes[:, i]), colors=list(colors), linewidth=1.6)  # rows coloured like the lines
        ax_s.set_yticks(range(C))
        ax_s.tick_params(axis="y", labelsize=7)
        if label < C:
            ax_s.get_yticklabels()[label].set_fontweight("bold")
        ax_s.set_ylabel("output neuron (class)")
        ax_s.set_title(f"output spikes; count per class {counts.tolist()}", fontsize=9)
        ax_s.set_xlim(-0.5, T - 0.5)
        ax_s.grid(axis="x", alpha=0.25)
    for ax in axes[-1]:
        _int_ticks(ax.xaxis)
        ax.set_xlabel("time step")
    handles = [Line2D([], [], color=colors[c], lw=1.5) for c in range(C)]
    names = [str(c) for c in range(C)]
    if v_threshold is not None:
        handles.append(Line2D([], [], color="k", ls="--", lw=0.8))
        names.append("threshold")
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 12), fontsize=8, title="class")
    return fig


def plot_membrane_heatmap(membrane: Tensor, labels: Tensor, preds: Tensor, what: str = MEMBRANE) -> Figure:
    """SpikingJelly's 2-d heatmap for several samples: per sample a panel with
    one output neuron (class) per row and time on x, on one colour scale; the
    label's row is marked. membrane: [T, S, C]; labels / preds: [S]; ``what``
    names the potential on the colour bar."""
    T, S, C = membrane.shape
    m = _np(membrane)
    lo, hi = float(m.min()), float(m.max())
    fig, axes = plt.subplots(
        S, 1, figsize=(8, S * max(1.6, 0.22 * C + 0.9) + 0.6), squeeze=False, sharex=True, layout="constrained"
    )
    for i, ax in enumerate(axes[:, 0]):
        label, pred = int(labels[i]), int(preds[i])
        im = ax.imshow(m[:, i].T, aspect="auto", cmap="viridis", interpolation="nearest", vmin=lo, vmax=hi)
        ax.set_title(f"sample {i}: label {label}, predicted {pred}", fontsize=10, loc="left")
        ax.set_ylabel("class")
        if C <= 20:
            ax.set_yticks(range(C))
            ax.tick_params(axis="y", labelsize=7)
            if label < C:
                ax.get_yticklabels()[label].set_color("tab:red")
                ax.get_yticklabels()[label].set_fontweight("bold")
        if label < C:
            ax.annotate("label", xy=(T - 0.5, label), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7, color="tab:red", annotation_clip=False)
    _int_ticks(axes[-1, 0].xaxis)
    axes[-1, 0].set_xlabel("time step")
    fig.colorbar(im, ax=axes[:, 0], label=f"output {what}", shrink=0.9)
    return fig


def _as_images(x: np.ndarray) -> np.ndarray | None:
    """x: [T, S, ...] → [T, S, C, H, W] when the input is an image, else None."""
    shape = x.shape[2:]
    if len(shape) == 3:
        return x
    if len(shape) == 2:
        return x[:, :, None]
    if len(shape) == 1:
        side = int(round(shape[0] ** 0.5))
        if side * side == shape[0] and side > 1:
            return x.reshape(*x.shape[:2], 1, side, side)
    return None


def plot_event_frames(x_seq: Tensor, labels: Tensor, max_bins: int = 8) -> Figure:
    """Camera event input: one row per sample, one panel per time bin (up to ``max_bins``, evenly
    spaced), ON minus OFF events per pixel (red ON, blue OFF, one colour scale per sample).
    x_seq: [T, S, 2, H, W] (``encoder=frames``)."""
    x = _np(x_seq)
    T, S = x.shape[:2]
    bins = np.unique(np.linspace(0, T - 1, min(max_bins, T)).round().astype(int))
    fig, axes = plt.subplots(S, len(bins), figsize=(1.9 * len(bins) + 1.2, 2.0 * S + 0.4), squeeze=False,
                             layout="constrained")
    for i in range(S):
        diff = x[:, i, 1] - x[:, i, 0] if x.shape[2] == 2 else x[:, i].sum(1)  # ON - OFF: [T, H, W]
        scale = max(float(np.abs(diff[bins]).max()), 1e-9)
        for j, t in enumerate(bins):
            ax = axes[i, j]
            im = ax.imshow(diff[t], cmap="bwr", vmin=-scale, vmax=scale, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"bin {t}: {int(x[t, i].sum())} events", fontsize=8)
        axes[i, 0].set_ylabel(f"label {int(labels[i])}")
        fig.colorbar(im, ax=axes[i, :], label="ON − OFF", shrink=0.85)
    fig.suptitle(f"event frames: {len(bins)} of {T} time bins", fontsize=10)
    return fig


def plot_input_raster(x_seq: Tensor, labels: Tensor, max_channels: int = 64) -> Figure:
    """The encoded input per sample (columns). Images: the input summed over
    time, and below it the spike trains of the busiest pixel row (marked on the
    image). Other inputs: a raster of the channels over time, every channel when
    there are more than ``max_channels`` (drawn as an image: channel × time, e.g. the
    700 cochlea channels of SHD), else one row of spike ticks per channel. Analog
    (non-binary) inputs are drawn as intensities. x_seq: [T, S, ...]."""
    x = _np(x_seq)
    T, S = x.shape[:2]
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    images = _as_images(x)
    if T > 1 and not binary and bool((x == x[:1]).all()):  # direct input: one analog frame, repeated
        return _plot_constant_input(x[0], images[0] if images is not None else None, labels, T)
    rows = 2 if images is not None else 1
    fig, axes = plt.subplots(
        rows, S, figsize=(3.9 * S, 3.4 * rows), squeeze=False, layout="constrained",
        height_ratios=[1.15, 1] if rows == 2 else None,
    )
    for i in range(S):
        label = int(labels[i])
        if images is not None:
            img = images[:, i]  # [T, C, H, W]
            total = img.sum(0)  # [C, H, W]
            ax = axes[0, i]
            if total.shape[0] == 3:
                rgb = np.transpose(total, (1, 2, 0))
                ax.imshow(rgb / max(float(rgb.max()), 1e-9))
            else:
                im = ax.imshow(total.sum(0), cmap="gray_r", interpolation="nearest")
                fig.colorbar(im, ax=ax, label="spikes per pixel" if binary else "summed input", shrink=0.85)
            row = int(total.sum((0, 2)).argmax())
            ax.axhline(row, color="tab:red", lw=1.0)
            ax.set_title(f"label {label}: input summed over {T} steps", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            trains = img[:, :, row, :].sum(1)  # [T, W]
            ax_r = axes[1, i]
            ylabel = f"column of pixel row {row} (red)"
        else:
            flat = x[:, i].reshape(T, -1)
            ax_r = axes[0, i]
            if flat.shape[1] > max_channels:  # too many rows for spike ticks: every channel, as an image
                # antialiased: hundreds of channels on fewer pixel rows keep their lone spikes visible
                im = ax_r.imshow(flat.T, aspect="auto", cmap="gray_r", interpolation="antialiased")
                fig.colorbar(im, ax=ax_r, label="spikes" if binary else "input", shrink=0.85)
                total = f"{flat.sum():.0f} input spikes" if binary else f"input summed {flat.sum():.4g}"
                ax_r.set_title(f"label {label}: {total}", fontsize=9)
                ax_r.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
                ax_r.set_xlabel("time step")
                ax_r.set_ylabel(f"input channel (all {flat.shape[1]})")
                continue
            trains = flat
            ylabel = f"input channel ({flat.shape[1]})"
        # time on x: a few ticks (784 steps in a 4-inch panel would overlap)
        ax_r.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
        ax_r.set_xlabel("time step")
        if binary:
            _raster(ax_r, trains)
            ax_r.set_title(f"spikes of pixel row {row}: {int(trains.sum())}" if images is not None
                           else f"label {label}: {int(x[:, i].sum())} input spikes", fontsize=9)
            if trains.shape[1] <= 8:  # one tick per channel (a lone channel is not a -0.5..0.5 axis)
                ax_r.set_yticks(range(trains.shape[1]))
            else:
                _int_ticks(ax_r.yaxis)
            ax_r.set_ylabel(ylabel)
        elif images is None and trains.shape[1] <= ANALOG_LINES:  # a few analog channels: their values as lines
            for c in range(trains.shape[1]):
                ax_r.plot(np.arange(T), trains[:, c], lw=0.9, label=f"channel {c}")
            if trains.shape[1] > 1:
                ax_r.legend(fontsize=7, loc="upper right")
            ax_r.set_xlim(-0.5, T - 0.5)
            ax_r.set_title(f"label {label}: input over {T} steps (analog)", fontsize=9)
            ax_r.set_ylabel("input value" + (" (the one channel)" if trains.shape[1] == 1 else ""))
            ax_r.grid(alpha=0.3)
        else:
            im = ax_r.imshow(trains.T, aspect="auto", cmap="gray_r", interpolation="nearest")
            fig.colorbar(im, ax=ax_r, label="input", shrink=0.85)
            ax_r.set_title(f"pixel row {row} over time (analog input)" if images is not None
                           else f"label {label}: input (analog)", fontsize=9)
            _int_ticks(ax_r.yaxis)
            ax_r.set_ylabel(ylabel)
    return fig


#: analog inputs with at most this many channels are drawn as one line per channel (e.g. pixel-by-pixel MNIST)
ANALOG_LINES = 8


def _plot_constant_input(frame: np.ndarray, image: np.ndarray | None, labels: Tensor, T: int) -> Figure:
    """Input that is the same at every step (``encoder=direct``): the analog values once, per sample.
    frame: [S, ...]; image: [S, C, H, W] when the input is an image."""
    S = frame.shape[0]
    fig, axes = plt.subplots(1, S, figsize=(3.9 * S, 3.6), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes[0]):
        title = f"label {int(labels[i])}: analog input\n(the same at each of {T} steps)"
        if image is not None and image.shape[1] == 3:
            rgb = np.transpose(image[i], (1, 2, 0))
            lo, hi = float(rgb.min()), float(rgb.max())
            ax.imshow((rgb - lo) / max(hi - lo, 1e-9))  # normalised inputs: shown stretched to [0, 1]
            ax.set_xticks([])
            ax.set_yticks([])
        elif image is not None:
            im = ax.imshow(image[i].sum(0), cmap="gray_r", interpolation="nearest")
            fig.colorbar(im, ax=ax, label="input", shrink=0.85)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            values = frame[i].reshape(-1)
            ax.plot(np.arange(values.size), values, lw=0.9)
            ax.set_xlabel("input channel")
            ax.set_ylabel("input value")
            ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=9)
    return fig


def plot_spike_raster(layers: dict[str, Tensor], title: str = "", max_neurons: int = 100) -> Figure:
    """Spike raster of every spiking layer for one sample: one panel per layer
    (top = first), up to ``max_neurons`` evenly spaced neurons each, shared time
    axis. layers: name → spikes [T, N] (0/1)."""
    n = len(layers)
    heights = [min(max_neurons, s.shape[1]) for s in layers.values()]
    ratios = [max(h, 30) for h in heights]
    fig, axes = plt.subplots(
        n, 1, figsize=(9, 1.0 + sum(0.03 * r + 0.5 for r in ratios)), squeeze=False, sharex=True,
        layout="constrained", height_ratios=ratios,
    )
    for ax, (name, s) in zip(axes[:, 0], layers.items()):
        s = _np(s)
        T, N = s.shape
        keep = np.unique(np.linspace(0, N - 1, min(max_neurons, N)).round().astype(int))
        _raster(ax, s[:, keep], linewidth=1.0 if s.shape[0] <= 60 else 0.6)
        which = "all" if len(keep) == N else f"{len(keep)} of {N}, evenly spaced"
        # 3 significant digits: a sparse layer's rate (0.00041) is not "0.000"
        ax.set_title(f"{name}: {int(s.sum())} spikes from {N} neurons, rate {s.mean():.3g} / neuron / step "
                     f"({which} shown)", fontsize=9, loc="left")
        ax.set_ylabel("neuron")
        if len(keep) < N:  # label rows with the real neuron index
            ticks = np.linspace(0, len(keep) - 1, min(5, len(keep))).round().astype(int)
            ax.set_yticks(ticks, [str(keep[t]) for t in ticks])
        else:
            _int_ticks(ax.yaxis)
        ax.grid(axis="x", alpha=0.25)
    _int_ticks(axes[-1, 0].xaxis)
    axes[-1, 0].set_xlabel("time step")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_firing_rate_hist(rates: dict[str, Tensor]) -> Figure:
    """Histogram of per-neuron firing rates (spikes per step, averaged over time
    and samples), one panel per layer. rates: layer → [N]."""
    n = len(rates)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False, layout="constrained")
    for ax, (name, r) in zip(axes[0], rates.items()):
        r = _np(r)
        ax.hist(r, bins=np.linspace(0, 1, 26), color="tab:blue", edgecolor="white")
        ax.set_title(f"{name} ({r.size} neurons)\nmean {r.mean():.3f}, silent {np.mean(r == 0):.0%}", fontsize=9)
        ax.set_xlabel("firing rate (spikes / step)")
        ax.set_ylabel("neurons")
        _int_ticks(ax.yaxis)
    return fig


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    head = np.convolve(y, kernel, mode="valid")
    return np.concatenate([np.full(window - 1, np.nan), head])


def plot_curves(history: list[dict[str, float]], steps: list[tuple[int, float]] | None = None) -> Figure:
    """Loss (left) and accuracy (right) over training.

    history: per-epoch rows ``{"epoch", "step", "train/loss", "val/acc", ...}``
    (``step`` = global step at the end of the epoch); steps: per-step training
    loss ``(global step, loss)``. With steps (or ``step`` in the rows) the x
    axis is the training step and epochs are marked on the top axis; without,
    it is the epoch.
    """
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 3.9), sharex=True, layout="constrained")
    steps = steps if steps and len(steps) >= 2 else []  # one logged step is no curve
    by_step = bool(steps) or (bool(history) and all("step" in row for row in history))

    def x_of(row: dict) -> float:
        return row["step"] if by_step else row["epoch"] + 1

    if steps:
        xs, ys = (np.asarray(v, dtype=float) for v in zip(*steps))
        smooth = len(ys) >= 50
        ax_l.plot(xs, ys, color="tab:blue", lw=0.8 if smooth else 1.3, alpha=0.35 if smooth else 0.9,
                  label="train/loss (each step)")
        if smooth:
            ax_l.plot(xs, _smooth(ys, len(ys) // 25), color="tab:blue", lw=1.6, label="train/loss (moving average)")
    keys = sorted({k for row in history for k in row if k not in ("epoch", "step")})
    colors = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    starts = {row["epoch"]: prev.get("step", 0) for prev, row in zip([{}, *history], history)} if by_step else {}
    for k in keys:
        mean_over_epoch = k.startswith("train/") and by_step
        pts = [((starts[row["epoch"]] + x_of(row)) / 2 if mean_over_epoch else x_of(row), row[k])
               for row in history if k in row]
        ax = ax_l if "loss" in k else ax_a if "acc" in k else None
        if ax is None or not pts:
            continue
        style = dict(marker="o", ms=5, color=colors.get(k.split("/")[0], None))
        if mean_over_epoch and ax is ax_l:  # the mean over an epoch's steps, drawn mid-epoch
            style.update(ls="none", marker="s", ms=4, mfc="white")
            label = f"{k} (epoch mean)"
        elif mean_over_epoch:
            label = f"{k} (epoch mean)"
        else:
            label = k
        ax.plot(*zip(*pts), label=f"{label}: last {pts[-1][1]:.3g}", **style)
    for ax, name in ((ax_l, "loss"), (ax_a, "accuracy")):
        _int_ticks(ax.xaxis)
        ax.set_xlabel("training step" if by_step else "epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if ax_a.lines:
        vals = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax_a.lines])
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        ax_a.set_ylim(max(0.0, lo - 0.05), min(1.0, hi + 0.05) + 0.005)
    ends = [(row["step"], row["epoch"] + 1) for row in history if "step" in row] if by_step else []
    if ends:
        for ax in (ax_l, ax_a):
            lo, hi = ax.get_xlim()
            ax.set_xlim(min(lo, 0), hi)
            top = ax.secondary_xaxis("top")
            every = max(1, int(np.ceil(len(ends) / 10)))
            shown = ends[every - 1 :: every] if len(ends) > 1 else ends
            top.set_xticks([s for s, _ in shown], [str(e) for _, e in shown])
            top.set_xlabel("end of epoch", fontsize=8)
            top.tick_params(labelsize=8)
            if len(ends) <= 30:
                for s, _ in ends:
                    ax.axvline(s, color="0.6", lw=0.6, ls=":")
    return fig


@torch.no_grad()
def sample_figures(module, x: Tensor, y: Tensor, num_samples: int = 3) -> dict[str, Figure]:
    """Run ``module`` (a SpikingClassifier) on a batch and draw the standard figures.

    Output traces, heatmaps and the input use the first ``num_samples``
    samples; the spike raster sample 0; the firing-rate histogram the whole batch.
    """
    was_training = module.training
    module.eval()
    try:
        x_seq = module.encode(x)
        with Monitor(module.model, record=("spikes", "membrane")) as mon:
            out = module.model(x_seq)
        preds = module.readout(out).argmax(-1)
    finally:
        module.train(was_training)
    S = min(num_samples, y.shape[0])
    names = list(mon.layers)  # spiking layers, in order; the last is the output layer
    threshold = getattr(mon.layers[names[-1]], "v_threshold", None) if names and out.spikes is not None else None
    figs = {
        "output_traces": plot_output_traces(
            out.membrane[:, :S], None if out.spikes is None else out.spikes[:, :S], y[:S], preds[:S], threshold
        ),
        "output_heatmap": plot_membrane_heatmap(
            out.membrane[:, :S], y[:S], preds[:S], MEMBRANE if out.spikes is not None else READOUT
        ),
        # camera events: a frame per time bin; anything else (audio events: channel x time) the input raster
        "input_raster": plot_event_frames(x_seq[:, :S], y[:S]) if isinstance(module.encoder, FramesEncoder)
        else plot_input_raster(x_seq[:, :S], y[:S]),
    }
    layer_spikes = {n: mon[n]["spikes"][-1] for n in names} or dict(out.hidden)
    if layer_spikes:
        figs["spike_raster"] = plot_spike_raster(
            {n: s[:, 0].reshape(s.shape[0], -1) for n, s in layer_spikes.items()},
            f"spikes of every layer, sample 0 (label {int(y[0])}, predicted {int(preds[0])})",
        )
        figs["firing_rates"] = plot_firing_rate_hist(
            {n: s.float().mean((0, 1)).flatten() for n, s in layer_spikes.items()}
        )
    return figs
