"""Run train.py once per named configuration and collect what a report needs.

    python experiments/run_configs.py --out experiments/lsnn/results --runs runs.json [--only name ...]

``runs.json`` maps a run name to its list of train.py overrides. For each run this
writes ``<out>/<name>.csv`` (epoch, train/val/test accuracy and loss per epoch,
from the run's CSV logger) and appends one line to ``<out>/summary.csv``: wall time,
time per epoch, peak resident memory of the training process (ru_maxrss of that
child), best validation and final test accuracy, and the exact command.
Runs already in summary.csv are skipped (delete the line to rerun).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY_FIELDS = ["name", "epochs", "wall_s", "s_per_epoch", "peak_rss_mb", "best_val_acc", "final_test_acc",
                  "date", "host", "command"]


def _epoch_rows(metrics_csv: Path) -> list[dict[str, str]]:
    keys = ("train/acc", "train/loss_epoch", "val/acc", "val/loss", "test/acc", "test/loss", "train/loss_reg")
    rows: dict[int, dict[str, str]] = {}
    with open(metrics_csv) as f:
        for r in csv.DictReader(f):
            if not r.get("epoch"):
                continue
            row = rows.setdefault(int(r["epoch"]), {"epoch": r["epoch"]})
            row.update({k: r[k] for k in keys if r.get(k)})
    return [rows[e] for e in sorted(rows)]


def run(name: str, overrides: list[str], out: Path, threads: int) -> dict[str, str]:
    run_dir = out / "runs" / name
    cmd = [sys.executable, "train.py", *overrides, "print_config=false", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore", "WANDB_MODE": "disabled"}
    print(f"[{name}] {shlex.join(cmd)}", flush=True)
    start = time.time()
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - start
    if status != 0:
        raise SystemExit(f"[{name}] failed (exit {status >> 8}); see {out / (name + '.log')}")
    rows = _epoch_rows(run_dir / "csv" / "metrics.csv")
    with open(out / f"{name}.csv", "w", newline="") as f:
        fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "epoch", k))
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    vals = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    tests = [float(r["test/acc"]) for r in rows if r.get("test/acc")]
    epochs = sum(1 for r in rows if r.get("train/acc"))
    return {
        "name": name,
        "epochs": str(epochs),
        "wall_s": f"{wall:.0f}",
        "s_per_epoch": f"{wall / max(epochs, 1):.0f}",
        "peak_rss_mb": f"{usage.ru_maxrss / 1024:.0f}",
        "best_val_acc": f"{max(vals):.4f}" if vals else "",
        "final_test_acc": f"{tests[-1]:.4f}" if tests else "",
        "date": date.today().isoformat(),
        "host": f"{platform.machine()} {os.cpu_count()} cores",
        "command": "python " + shlex.join(["train.py", *overrides]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True, help="JSON: name -> list of overrides")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    runs = json.loads(args.runs.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / "summary.csv"
    done = set()
    if summary.exists():
        with open(summary) as f:
            done = {r["name"] for r in csv.DictReader(f)}
    for name, overrides in runs.items():
        if (args.only and name not in args.only) or name in done:
            continue
        row = run(name, overrides, args.out, args.threads)
        new = not summary.exists()
        with open(summary, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)
        print(f"[{name}] {row}", flush=True)


if __name__ == "__main__":
    main()
