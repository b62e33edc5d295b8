"""Draw the standard figures for a finished run from its checkpoint.

    python -m spikelight.plot logs/train/runs/<ts> [--ckpt last|PATH] [--samples 3] [--out DIR]

Writes output traces / rasters, output heatmaps, the encoded input, a spike
raster of every layer, firing-rate histograms (first test batch), the loss /
accuracy curves (from the checkpoint, else the CSV log) and, for event-driven
runs (``<run_dir>/gradient_flow.csv``), the gradient-flow figure, as PNGs into
``<run_dir>/plots`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from spikelight.app.cli import build_datamodule, load_trained
from spikelight.core.errors import ConfigError, SpikelightError
from spikelight.train.figures import plot_curves, sample_figures
from spikelight.train.gradient_flow import plot_gradient_flow, read_gradient_flow

__all__ = ["main", "read_history", "curves_from_checkpoint"]


def read_history(metrics_csv: Path) -> tuple[list[dict[str, float]], list[tuple[int, float]]]:
    """Curves from a Lightning CSVLogger ``metrics.csv``: per-epoch rows
    (``epoch``, ``step`` and the epoch-level keys) and the per-step training
    loss ``(step, loss)`` rows (every ``trainer.log_every_n_steps``)."""
    keys = {"train/loss_epoch": "train/loss", "train/acc": "train/acc", "val/loss": "val/loss", "val/acc": "val/acc"}
    epochs: dict[int, dict[str, float]] = {}
    steps: list[tuple[int, float]] = []
    with open(metrics_csv) as f:
        for r in csv.DictReader(f):
            step = int(float(r["step"])) + 1 if r.get("step") else None  # Lightning logs global_step - 1
            if r.get("train/loss_step") and step is not None:
                steps.append((step, float(r["train/loss_step"])))
            if not r.get("epoch") or not any(r.get(k) for k in keys):
                continue
            row = epochs.setdefault(int(float(r["epoch"])), {"epoch": int(float(r["epoch"]))})
            if step is not None:
                row["step"] = max(step, row.get("step", 0))
            row.update({new: float(r[old]) for old, new in keys.items() if r.get(old)})
    return [epochs[e] for e in sorted(epochs)], steps


def curves_from_checkpoint(ckpt: dict) -> tuple[list[dict[str, float]], list[tuple[int, float]]]:
    """The curve data the plot callback keeps in a checkpoint (empty if none)."""
    for key, state in (ckpt.get("callbacks") or {}).items():
        if str(key).startswith("SpikePlotCallback") and isinstance(state, dict):
            return list(state.get("history", [])), [tuple(p) for p in state.get("steps", [])]
    return [], []


def _resolve_ckpt(run_dir: Path, ckpt: str) -> Path:
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt == "last" else Path(ckpt)
    if not path.exists():
        raise ConfigError(f"no checkpoint at {path}; pass --ckpt PATH (runs save checkpoints/last.ckpt)")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m spikelight.plot", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--ckpt", default="last", help="'last' (run_dir/checkpoints/last.ckpt) or a path")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        ckpt = _resolve_ckpt(args.run_dir, args.ckpt)
        module, cfg = load_trained(str(ckpt))
        dm = build_datamodule(cfg)
        dm.setup("test")
        x, y = next(iter(dm.test_dataloader()))
    except SpikelightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    figs = sample_figures(module, x, y, args.samples)
    # the callback's record (every step) when the checkpoint has it, else the CSV log
    history, steps = curves_from_checkpoint(torch.load(ckpt, map_location="cpu", weights_only=True))
    metrics = args.run_dir / "csv" / "metrics.csv"
    if not (history or steps) and metrics.exists():
        history, steps = read_history(metrics)
    if history or steps:
        figs["curves"] = plot_curves(history, steps)
    flow = args.run_dir / "gradient_flow.csv"
    if flow.exists():
        rows = read_gradient_flow(flow)
        if rows:
            figs["gradient_flow"] = plot_gradient_flow(rows)
    for name, fig in figs.items():
        fig.savefig(out / f"{name}.png", dpi=110)
        print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
