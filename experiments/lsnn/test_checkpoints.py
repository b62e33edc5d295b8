"""Test accuracy of each experiments/lsnn run that has ended, on both of its checkpoints.

    python experiments/lsnn/test_checkpoints.py [NAME ...]   (default: every run that finished or diverged)

A run that finishes tests its best-validation checkpoint itself (``test/acc`` in its results.json); a run
that diverged never reaches its test, and neither kind tests its last epoch. This script runs
``python eval.py ckpt_path=<checkpoint>`` (the 10,000 test images of the run's own data config, one torch
thread) on

- ``best``: the best-validation checkpoint (``checkpoints/epoch_NNN.ckpt``, ModelCheckpoint on ``val/acc``: the
  one it recorded in last.ckpt), for a run that did not test it itself (a diverged one),
- ``last``: ``checkpoints/last.ckpt`` (the end of the last whole epoch: for a diverged run, the epoch before
  the one it diverged in),

and writes ``experiments/lsnn/checkpoint_tests.json`` (name → which → checkpoint, epoch, test accuracy, the
command, the date), which ``report.py`` reads. A checkpoint already tested (same path, size and time) is
not tested again. Evaluation logs go to ``logs/eval_lsnn_<name>_<which>/`` (not read by report.py).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "checkpoint_tests.json"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import load  # noqa: E402 - the same reading of a run's status as the table


def recorded_best(last: Path) -> Path | None:
    """The best-validation checkpoint as the run's ModelCheckpoint (monitor ``val/acc``) recorded it in
    ``last`` (its ``best_model_path``), if that file is still there."""
    import torch

    state = torch.load(last, map_location="cpu", weights_only=False, mmap=True).get("callbacks", {})
    for key, value in state.items():
        if "ModelCheckpoint" in key and "'monitor': 'val/acc'" in key and value.get("best_model_path"):
            path = Path(value["best_model_path"])
            path = path if path.is_absolute() else ROOT / path
            return path if path.is_file() else None
    return None


def checkpoints(run: Path, info: dict) -> dict[str, Path]:
    """The best-validation checkpoint — as the run's ModelCheckpoint recorded it in its newest last.ckpt, else
    ``epoch_NNN.ckpt`` of the epoch with the best logged validation accuracy (NNN from 0; a run resumed into
    another folder may hold a later, worse one: the choice is by the accuracy, not by the file's time) — and
    the newest last.ckpt over a run's folders. A run that finished tested its best checkpoint itself (report.py
    shows that test): only its last one is tested here."""
    found: dict[str, Path] = {}
    lasts = sorted(run.glob("runs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if info["test"] is None and info["val"]:
        best = recorded_best(lasts[-1]) if lasts else None
        if best is None:
            best_epoch = info["epochs"][max(range(len(info["val"])), key=info["val"].__getitem__)]
            files = sorted(run.glob(f"runs/*/checkpoints/epoch_{best_epoch:03d}.ckpt"), key=lambda p: p.stat().st_mtime)
            best = files[-1] if files else None
            if best is None:
                print(f"{run.name}: no checkpoint of its best epoch {best_epoch + 1} left; best not tested", flush=True)
        if best is not None:
            found["best"] = best
    if lasts:
        found["last"] = lasts[-1]
    return found


def test_one(name: str, which: str, ckpt: Path) -> dict:
    import torch

    epoch = int(torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)["epoch"]) + 1
    rel = ckpt.relative_to(ROOT)
    task = f"eval_lsnn_{name}_{which}"
    cmd = [sys.executable, "eval.py", f"ckpt_path={rel}", f"task_name={task}", "logger=csv"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    print(f"{name} {which}: {rel} (epoch {epoch})", flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    newest = max((ROOT / "logs" / task / "runs").glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    result = json.loads(newest.read_text())
    if result.get("status") != "ok":
        raise SystemExit(f"error: {' '.join(cmd[1:])} failed: {result.get('error')}")
    stat = ckpt.stat()
    return {
        "checkpoint": str(rel),
        "size": stat.st_size,
        "mtime": stat.st_mtime,
        "epoch": epoch,
        "test_acc": result["metrics"]["test/acc"],
        "command": "python " + " ".join(cmd[1:3]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> None:
    done = json.loads(OUT.read_text()) if OUT.is_file() else {}
    runs = sorted(p for p in (ROOT / "logs").glob("lsnn_*") if not p.name.startswith("lsnn_defaults_"))
    wanted = set(sys.argv[1:])
    for run in runs:
        info = load(run)
        name = info["name"]
        if wanted and name not in wanted:
            continue
        if not wanted and not (info["status"] == "finished" or info["status"].startswith("diverged")):
            continue  # still training: its checkpoints will change
        for which, ckpt in checkpoints(run, info).items():
            old = done.get(name, {}).get(which)
            stat = ckpt.stat()
            if (
                old
                and old["checkpoint"] == str(ckpt.relative_to(ROOT))
                and old["size"] == stat.st_size
                and old["mtime"] == stat.st_mtime
            ):
                continue
            done.setdefault(name, {})[which] = test_one(name, which, ckpt)
            OUT.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
            print(f"  test accuracy {100 * done[name][which]['test_acc']:.2f}%", flush=True)


if __name__ == "__main__":
    main()
