"""Figures people look at: output membrane traces and spike rasters, membrane
heatmap, input encoding raster, per-layer firing-rate histograms, training curves.

Pure matplotlib (Agg); every function returns a Figure. :func:`sample_figures`
runs a trained :class:`~spikelight.lit.SpikingClassifier` on a batch and draws
the per-sample pictures (used by the plot callback and ``python -m spikelight.plot``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import Tensor  # noqa: E402

from spikelight.monitor import Monitor  # noqa: E402

__all__ = [
    "plot_output_traces",
    "plot_membrane_heatmap",
    "plot_input_raster",
    "plot_firing_rate_hist",
    "plot_curves",
    "sample_figures",
]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _int_x(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_output_traces(
    membrane: Tensor, spikes: Tensor | None, labels: Tensor, preds: Tensor, v_threshold: float | None = None
) -> Figure:
    """Per sample (rows): output membrane of every class over time, and the
    output spike raster. membrane / spikes: [T, S, C]; labels / preds: [S].
    ``spikes=None``: a non-spiking readout layer (LSNN); its potential is drawn, no raster."""
    if spikes is None:
        spikes = torch.zeros_like(membrane)
    T, S, C = membrane.shape
    fig, axes = plt.subplots(S, 2, figsize=(11, 2.6 * S + 0.8), squeeze=False, layout="constrained")
    colors = plt.cm.tab10(np.arange(C) % 10)
    t = np.arange(T)
    for i in range(S):
        ax_m, ax_s = axes[i]
        for c in range(C):
            lw = 2.2 if c == int(labels[i]) else 0.9
            ax_m.plot(t, _np(membrane[:, i, c]), color=colors[c], lw=lw, label=str(c))
        if v_threshold is not None:
            ax_m.axhline(v_threshold, color="k", ls="--", lw=0.8, label="threshold")
        ax_m.set_ylabel("membrane potential")
        ax_m.set_title(f"sample {i}: label {int(labels[i])}, predicted {int(preds[i])} (bold = label)")
        ts, cs = np.nonzero(_np(spikes[:, i]) > 0)
        ax_s.scatter(ts, cs, marker="|", s=120, color=colors[cs], linewidths=1.5)
        ax_s.set_yticks(range(C))
        ax_s.set_ylim(-0.5, C - 0.5)
        ax_s.set_xlim(-0.5, T - 0.5)
        ax_s.set_ylabel("output neuron (class)")
        ax_s.set_title(f"output spikes (count per class: {_np(spikes[:, i].sum(0)).astype(int).tolist()})", fontsize=9)
        for ax in (ax_m, ax_s):
            _int_x(ax)
            if i == S - 1:
                ax.set_xlabel("time step")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 12), fontsize=8, title="class")
    return fig


def plot_membrane_heatmap(membrane: Tensor, title: str = "membrane potential", ylabel: str = "neuron") -> Figure:
    """SpikingJelly's 2d heatmap: one neuron per row, time on x. membrane: [T, N]."""
    m = _np(membrane).T
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.25 * m.shape[0] + 1)), constrained_layout=True)
    im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("time step")
    ax.set_ylabel(ylabel)
    if m.shape[0] <= 20:
        ax.set_yticks(range(m.shape[0]))
    _int_x(ax)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="potential")
    return fig


def plot_input_raster(x_seq: Tensor, labels: Tensor) -> Figure:
    """Encoded input per sample (columns): spikes as a raster (input index vs
    time), or analog intensity as an image if not binary; below it, for square
    inputs (28×28), the total input per pixel as an image. x_seq: [T, S, F]."""
    T, S, F = x_seq.shape
    binary = bool(((x_seq == 0) | (x_seq == 1)).all())
    side = int(round(F**0.5))
    square = side * side == F
    rows = 2 if square else 1
    fig, axes = plt.subplots(
        rows, S, figsize=(4.2 * S, 3.6 * rows), squeeze=False, layout="constrained",
        height_ratios=[1, 1.1] if square else None,
    )
    for i in range(S):
        ax = axes[0, i]
        if binary:
            ts, fs = np.nonzero(_np(x_seq[:, i]) > 0)
            ax.scatter(ts, fs, s=0.6, color="k", marker=".")
            ax.set_ylim(F, 0)
            ax.set_xlim(-0.5, T - 0.5)
            ax.set_title(f"input spikes, label {int(labels[i])} ({len(ts)} spikes)", fontsize=9)
        else:
            im = ax.imshow(_np(x_seq[:, i]).T, aspect="auto", cmap="gray_r", interpolation="nearest")
            fig.colorbar(im, ax=ax, label="intensity")
            ax.set_title(f"input (analog), label {int(labels[i])}", fontsize=9)
        _int_x(ax)
        ax.set_xlabel("time step")
        ax.set_ylabel("input index (pixel)")
        if square:
            img = axes[1, i].imshow(_np(x_seq[:, i].sum(0)).reshape(side, side), cmap="gray_r")
            fig.colorbar(img, ax=axes[1, i], label="spikes per pixel" if binary else "summed input")
            axes[1, i].set_title(f"input summed over {T} steps", fontsize=9)
            axes[1, i].set_xticks([])
            axes[1, i].set_yticks([])
    return fig


def plot_firing_rate_hist(rates: dict[str, Tensor]) -> Figure:
    """Histogram of per-neuron firing rates (spikes per step, averaged over time
    and samples), one panel per layer. rates: layer → [N]."""
    n = len(rates)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False, constrained_layout=True)
    for ax, (name, r) in zip(axes[0], rates.items()):
        r = _np(r)
        ax.hist(r, bins=np.linspace(0, 1, 26), color="tab:blue", edgecolor="white")
        ax.set_title(f"{name}: mean {r.mean():.3f}, silent {np.mean(r == 0):.0%}", fontsize=9)
        ax.set_xlabel("firing rate (spikes / step)")
        ax.set_ylabel("neurons")
    return fig


def plot_curves(history: list[dict[str, float]]) -> Figure:
    """Loss and accuracy per epoch from rows like ``{"epoch", "train/loss", "val/acc", ...}``."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    keys = sorted({k for row in history for k in row if k != "epoch"})
    for k in keys:
        pts = [(row["epoch"] + 1, row[k]) for row in history if k in row]
        if not pts:
            continue
        ax = ax_l if "loss" in k else ax_a if "acc" in k else None
        if ax is not None:
            ax.plot(*zip(*pts), marker="o", ms=3, label=k)
    for ax, name in ((ax_l, "loss"), (ax_a, "accuracy")):
        _int_x(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    ax_a.set_title("accuracy")
    ax_l.set_title("loss")
    return fig


@torch.no_grad()
def sample_figures(module, x: Tensor, y: Tensor, num_samples: int = 3) -> dict[str, Figure]:
    """Run ``module`` (a SpikingClassifier) on a batch and draw the standard figures.

    Output traces, input raster and heatmap use the first ``num_samples``
    samples; the firing-rate histogram uses the whole batch.
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
            out.membrane[:, 0],
            f"output membrane, sample 0 (label {int(y[0])}, predicted {int(preds[0])})",
            "output neuron (class)",
        ),
        "input_raster": plot_input_raster(x_seq[:, :S].flatten(2), y[:S]),
    }
    rates = {n: mon[n]["spikes"][-1].float().mean((0, 1)).flatten() for n in names}
    rates = rates or {name: s.float().mean((0, 1)).flatten() for name, s in out.hidden.items()}
    if rates:
        figs["firing_rates"] = plot_firing_rate_hist(rates)
    return figs
