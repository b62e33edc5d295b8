"""Tabulate an event-driven run: test accuracy at each validation, wall time, gradient flow.

    python experiments/event_driven/summarize.py <run_dir> [--batches-per-epoch 1200]

Reads ``<run_dir>/csv/metrics.csv`` (CSV logger; ``time/elapsed_s`` from
``callbacks=[default,epoch_time]``) and ``<run_dir>/gradient_flow.csv``; prints markdown.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--batches-per-epoch", type=int, default=1200, help="60,000 / 50 for (F)MNIST")
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.run_dir / "csv" / "metrics.csv")))
    print("| training steps | epochs | wall time (min) | s / step | accuracy |")
    print("|---:|---:|---:|---:|---:|")
    prev_step, prev_t = 0, 0.0
    for r in rows:
        if r.get("val/acc") and r.get("time/elapsed_s"):
            step, t = int(r["step"]) + 1, float(r["time/elapsed_s"])
            rate = (t - prev_t) / max(step - prev_step, 1)
            print(f"| {step} | {step / args.batches_per_epoch:.2f} | {t / 60:.1f} | {rate:.2f} | "
                  f"{100 * float(r['val/acc']):.2f}% |")
            prev_step, prev_t = step, t
    epochs = [r for r in rows if r.get("time/epoch_s")]
    for r in epochs:
        print(f"\nepoch {r['epoch']}: {float(r['time/epoch_s']) / 60:.1f} min (validations inside it included), "
              f"train acc {100 * float(r['train/acc']):.2f}%")
    flow = args.run_dir / "gradient_flow.csv"
    if flow.exists():
        print("\n| epoch | layer | Σ dL/d output spikes | Σ dL/d input spikes | in / out |")
        print("|---:|---|---:|---:|---:|")
        for r in csv.DictReader(open(flow)):
            g_out, g_in = float(r["grad_out"]), (float(r["grad_in"]) if r["grad_in"] else None)
            ratio = f"{g_in / g_out:.4f}" if g_in is not None and g_out else "–"
            print(f"| {r['epoch']} | {r['layer']} | {g_out:.4g} | {'–' if g_in is None else f'{g_in:.4g}'} | {ratio} |")


if __name__ == "__main__":
    main()
