"""Draw the standard figures for a finished run from its checkpoint.

    python -m spikelight.plot logs/train/runs/<ts> [--ckpt last|PATH] [--samples 3] [--out DIR]

Writes output traces / rasters, output heatmap, input raster, firing-rate
histograms (first test batch) and, if the run logged to CSV, loss / accuracy
curves, as PNGs into ``<run_dir>/plots`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from spikelight.cli import build_datamodule, load_trained
from spikelight.errors import ConfigError, SpikelightError
from spikelight.visualize import plot_curves, sample_figures

__all__ = ["main", "read_history"]


def read_history(metrics_csv: Path) -> list[dict[str, float]]:
    """Per-epoch rows from a Lightning CSVLogger ``metrics.csv`` (epoch-level keys only)."""
    keys = {"train/loss_epoch": "train/loss", "train/acc": "train/acc", "val/loss": "val/loss", "val/acc": "val/acc"}
    epochs: dict[int, dict[str, float]] = {}
    with open(metrics_csv) as f:
        for r in csv.DictReader(f):
            if not r.get("epoch"):
                continue
            row = epochs.setdefault(int(r["epoch"]), {"epoch": int(r["epoch"])})
            row.update({new: float(r[old]) for old, new in keys.items() if r.get(old)})
    return [epochs[e] for e in sorted(epochs)]


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
    metrics = args.run_dir / "csv" / "metrics.csv"
    if metrics.exists():
        history = read_history(metrics)
        if history:
            figs["curves"] = plot_curves(history)
    for name, fig in figs.items():
        fig.savefig(out / f"{name}.png", dpi=110)
        print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
