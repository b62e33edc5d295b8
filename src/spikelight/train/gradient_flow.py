"""Gradient flow of event-driven layers: per layer, Σ dL/d(output spikes) and Σ dL/d(input spikes).

With ``exponential`` gradients and no damping, each layer passes on exactly the gradient sum it
receives (the paper's invariance); the authors' 0.85 damping shrinks it by 0.85 per layer, and
plain average pooling by the pooled firing fraction. :class:`GradientFlowCallback` records the
sums per epoch while training, writes ``<run>/gradient_flow.csv`` and draws
``<run>/plots/gradient_flow.png``; ``python -m spikelight.plot <run>`` redraws it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from spikelight.layers.event_driven.functions import GradStats  # noqa: E402
from spikelight.train.loggers import log_figure  # noqa: E402

__all__ = ["GradientFlowCallback", "plot_gradient_flow", "read_gradient_flow", "write_gradient_flow", "FIELDS"]

FIELDS = ("epoch", "layer", "grad_out", "grad_in", "steps")


def write_gradient_flow(path: Path, rows: list[dict]) -> None:
    """Rows ``{epoch, layer, grad_out, grad_in, steps}`` as CSV (grad_in empty where not computed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r[k]) for k in FIELDS})


def read_gradient_flow(path: Path) -> list[dict]:
    """The rows :func:`write_gradient_flow` wrote."""
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            rows.append({
                "epoch": int(r["epoch"]), "layer": r["layer"], "grad_out": float(r["grad_out"]),
                "grad_in": float(r["grad_in"]) if r["grad_in"] else None, "steps": int(r["steps"]),
            })
    return rows


def plot_gradient_flow(rows: list[dict]) -> Figure:
    """Left: per layer, Σ dL/d(output spikes) and Σ dL/d(input spikes) over all recorded epochs.
    Right: per epoch, each layer's output-spike gradient sum per training step."""
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    total_out = {name: sum(r["grad_out"] for r in rows if r["layer"] == name) for name in layers}
    total_in = {
        name: sum(r["grad_in"] for r in rows if r["layer"] == name and r["grad_in"] is not None)
        if any(r["grad_in"] is not None for r in rows if r["layer"] == name) else None
        for name in layers
    }
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    xs = range(len(layers))
    width = 0.38
    ax0.bar([x - width / 2 for x in xs], [total_out[n] for n in layers], width, label="Σ dL/d output spikes")
    ax0.bar([x + width / 2 for x in xs], [total_in[n] or 0.0 for n in layers], width,
            label="Σ dL/d input spikes (passed down)")
    for x, n in zip(xs, layers):
        if total_in[n] is not None and total_out[n] != 0:
            ax0.annotate(f"×{total_in[n] / total_out[n]:.3f}", (x, max(total_out[n], total_in[n], 0)),
                         xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    names = [n.replace(".neuron", "") for n in layers]
    ax0.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    ax0.axhline(0, color="k", lw=0.5)
    # headroom above the tallest bar for its ×ratio label and the legend (they met the title)
    values = [v for n in layers for v in (total_out[n], total_in[n] or 0.0)] + [0.0]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    ax0.set_ylim(lo - 0.05 * span, hi + 0.3 * span)
    ax0.set_title("gradient sums per layer (all epochs)")
    ax0.legend(fontsize=8, loc="upper left")
    epochs = sorted({r["epoch"] for r in rows})
    per_step = {n: {r["epoch"]: r["grad_out"] / max(r["steps"], 1) for r in rows if r["layer"] == n} for n in layers}
    if len(epochs) == 1:  # one epoch is no curve: the layers side by side
        e = epochs[0]
        ax1.bar(list(xs), [per_step[n].get(e, float("nan")) for n in layers],
                color=[f"C{i % 10}" for i in range(len(layers))])
        ax1.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
        ax1.set_title(f"Σ dL/d output spikes per training step (epoch {e + 1})")
    else:
        for n, name in zip(layers, names):
            ax1.plot([e + 1 for e in epochs], [per_step[n].get(e, float("nan")) for e in epochs], marker="o", ms=3,
                     label=name)
        ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax1.set_xlabel("epoch")
        ax1.set_title("Σ dL/d output spikes per training step (epoch mean)")
        ax1.legend(fontsize=7)
    ax1.axhline(0, color="k", lw=0.5)
    fig.tight_layout()
    return fig


class GradientFlowCallback(L.Callback):
    """Record, per event-driven layer (a module with a ``grad_stats`` slot, e.g. ``blocks.<i>``),
    the summed gradient w.r.t. its output spikes and its input spikes over each training epoch.

    Logs ``grad_flow/<layer>/out`` and ``/in`` per epoch (summed over DDP ranks), writes
    ``<run dir>/<filename>`` after every epoch and ``<run dir>/plots/gradient_flow.png`` (and the
    active loggers) after fitting. Costs two sums per layer and step. Models without such
    layers are left alone.
    """

    def __init__(self, filename: str = "gradient_flow.csv", dirname: str = "plots") -> None:
        self.filename, self.dirname = filename, dirname
        self.rows: list[dict] = []
        self._layers: dict[str, torch.nn.Module] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._layers = {
            f"{name}.neuron": mod for name, mod in pl_module.model.named_modules() if hasattr(mod, "grad_stats")
        }
        for mod in self._layers.values():
            mod.grad_stats = GradStats()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._layers:
            return
        for name, mod in self._layers.items():
            st: GradStats = mod.grad_stats
            out = 0.0 if st.grad_out is None else float(st.grad_out)
            grad_in = None if st.grad_in is None else float(st.grad_in)
            self.rows.append({"epoch": trainer.current_epoch, "layer": name, "grad_out": out, "grad_in": grad_in,
                              "steps": st.steps})
            pl_module.log(f"grad_flow/{name}/out", out, reduce_fx="sum", sync_dist=True)
            if grad_in is not None:
                pl_module.log(f"grad_flow/{name}/in", grad_in, reduce_fx="sum", sync_dist=True)
            st.reset()
        if trainer.is_global_zero:
            write_gradient_flow(Path(trainer.default_root_dir) / self.filename, self.rows)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for mod in self._layers.values():
            mod.grad_stats = None
        if self.rows and trainer.is_global_zero:
            log_figure(trainer, "gradient_flow", plot_gradient_flow(self.rows),
                       Path(trainer.default_root_dir) / self.dirname)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict.get("rows", []))
