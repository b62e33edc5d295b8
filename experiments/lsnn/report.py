"""Collect the experiments/lsnn runs: the figure (validation accuracy per epoch, every run) and the table.

    python experiments/lsnn/report.py            (reads logs/lsnn_<name>/runs/*/csv/metrics.csv)
    python experiments/lsnn/report.py --candidates   (the runs that chose model=lsnn's defaults)

A run continued with ``ckpt_path=last`` (``RESUME=1 experiments/lsnn/run.sh ...``) has several run
folders; their rows are joined by epoch (the later folder wins). Writes ``experiments/lsnn/curves.png``
and ``experiments/lsnn/results.md`` (the table: epochs done (the last epoch with a validation row, from 1), best / last validation accuracy, test
accuracy of the best-validation and of the last checkpoint (``checkpoint_tests.json``, written by
``test_checkpoints.py``), seconds per epoch, peak resident memory, dates, the command), and below it the
comparisons issue 19 asks for (:data:`COMPARISONS`: one table each, and one panel each in
``experiments/lsnn/comparisons.png``); a run not begun yet is listed as such.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent

#: (title, what is compared, the runs) — issue 19, part 4; every network has 220 recurrent neurons (LSTM: 110
#: units, the same 50.8 K parameters as model=lsnn)
COMPARISONS = [
    ("LSNN vs LIF-RSNN vs LSTM", "model=lsnn's defaults (50-step truncated BPTT), equal parameter count; "
     "lif_bptt_s0 is the LIF-RSNN under full BPTT; lstm_cosine_s0 is the LSTM with its learning rate decayed to 0 "
     "over the 20 epochs (cosine)", ["sfa_tbptt50_s0", "lif_tbptt50_s0", "lstm_s0", "lstm_cosine_s0", "lif_bptt_s0"]),
    ("Bellec et al.'s settings", "experiment=lsnn_smnist (LSNN-official's neuron and recipe: 80-channel "
     "threshold-crossing input, 840 steps, full BPTT without clipping, Adam 1e-2 decayed ×0.8 every 2,500 steps, "
     "firing-rate regulariser): 100 adaptive + 120 LIF neurons vs 220 LIF", ["bellec_s0", "bellec_lif_s0"]),
    ("Full BPTT vs truncated BPTT (50 steps)", "model=lsnn neuron=sfa, three seeds each; sfa_bptt_lr3e3_s0 is full "
     "BPTT at learning rate 3e-3", ["sfa_bptt_s0", "sfa_bptt_s1", "sfa_bptt_s2", "sfa_tbptt50_s0", "sfa_tbptt50_s1",
                                    "sfa_tbptt50_s2", "sfa_bptt_lr3e3_s0"]),
    ("e-prop vs BPTT", "model=lsnn neuron=sfa, seed 0, 20 epochs each: e-prop (learning=eprop, symmetric feedback) "
     "against truncated and full BPTT", ["sfa_eprop_s0", "sfa_tbptt50_s0", "sfa_bptt_s0"]),
]


def _float(row: dict, key: str) -> float | None:
    v = row.get(key, "")
    return float(v) if v not in ("", None) else None


def load(run: Path) -> dict:
    """One named run (logs/lsnn_<name>): per-epoch validation accuracy, epoch time, memory, test accuracy."""
    per_epoch: dict[int, dict] = {}
    test, folders = None, sorted(p for p in (run / "runs").glob("*") if (p / "csv" / "metrics.csv").is_file())
    for folder in folders:
        for row in csv.DictReader(open(folder / "csv" / "metrics.csv")):
            if not row.get("epoch"):
                continue
            e = int(row["epoch"])
            rec = per_epoch.setdefault(e, {})
            for key in ("val/acc", "time/epoch_s", "mem/peak_rss_mb", "train/loss_epoch", "val/fr/rec.neuron"):
                val = _float(row, key)
                if val is not None and not (key == "time/epoch_s" and key in rec):
                    # an epoch's first time only: before 2026-12-06 11:50 UTC a resume that ended an epoch again
                    # logged perf_counter() - 0 for it (the seconds since boot)
                    rec[key] = val
            t = _float(row, "test/acc")
            if t is not None:
                test = t
    status = "running or cut off"
    for folder in folders:
        res = folder / "results.json"
        if res.is_file():
            r = json.loads(res.read_text())
            err = r.get("error") or ""
            if r.get("status") == "ok":
                status = "finished"
            elif "gradient norm is" in err or "training loss is" in err:
                status = "diverged: " + err.removeprefix("error: ").split(" (")[0].split(";")[0]
                # the guard counts epochs from 0 (Lightning's current_epoch); the epoch lines and this table from 1
                status = re.sub(r"at epoch (\d+),", lambda m: f"in epoch {int(m.group(1)) + 1},", status)
    command = ""
    resumes = [r for f in folders for r in sorted((f / ".hydra").glob("resume-*"))]
    if (folders[:1] and any((f / "results.before-fix.json").is_file() for f in folders)
            and status == "running or cut off"):
        status = "stopped once by the float32-norm guard of before 2026-12-06 11:24 UTC; continues from its last.ckpt"
    if folders:
        # the newest resume's overrides (they may add what the run began without, e.g. model.tbptt_steps=null)
        newest = [*(folders[-1] / ".hydra").glob("resume-*")]
        base = max(newest, key=lambda p: int(p.name.split("-")[1])) if newest else folders[-1] / ".hydra"
        overrides = base / "overrides.yaml"
        if overrides.is_file():
            items = [ln[2:].strip() for ln in overrides.read_text().splitlines() if ln.startswith("- ")]
            command = "python train.py " + " ".join(i for i in items if not i.startswith("ckpt_path="))
    epochs = sorted(e for e, r in per_epoch.items() if "val/acc" in r)
    return {
        "name": run.name.removeprefix("lsnn_"),
        "epochs": epochs,
        "val": [per_epoch[e]["val/acc"] for e in epochs],
        "epoch_s": [r["time/epoch_s"] for r in per_epoch.values() if "time/epoch_s" in r],
        "mem": max((r.get("mem/peak_rss_mb", 0.0) for r in per_epoch.values()), default=0.0),
        "rate": [per_epoch[e].get("val/fr/rec.neuron") for e in epochs],
        "test": test,
        "folders": len(folders),
        "resumes": len(folders) - 1 + len(resumes),
        "status": status,
        "command": command,
        # the first folder's name is its start (YYYY-MM-DD_HH-MM-...); the newest metrics file's time its last epoch
        "dates": (folders[0].name[:10] + " " + folders[0].name[11:16].replace("-", ":"), _mtime(folders))
        if folders else ("", ""),
    }


def _mtime(folders: list[Path]) -> str:
    import datetime

    newest = max((f / "csv" / "metrics.csv").stat().st_mtime for f in folders)
    return datetime.datetime.fromtimestamp(newest, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def candidates() -> None:
    """The default-choosing runs (logs/lsnn_defaults_<name>): training loss per step, validation at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    lines = ["| candidate | overrides | train loss, last 30 steps | val acc % (2,048 samples) | val acc % at step 100 "
             "| firing rate | note |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in sorted((ROOT / "logs").glob("lsnn_defaults_*")):
        for folder in sorted((run / "runs").glob("*")):
            rows = list(csv.DictReader(open(folder / "csv" / "metrics.csv")))
            steps = [(int(r["step"]) + 1, float(r["train/loss_step"])) for r in rows if r.get("train/loss_step")]
            val = [r for r in rows if r.get("val/acc")]
            name = run.name.removeprefix("lsnn_defaults_")
            if steps:
                ax.plot(*zip(*steps), label=name)
            items = [ln[2:].strip() for ln in (folder / ".hydra" / "overrides.yaml").read_text().splitlines()
                     if ln.startswith("- ")]  # fmt: skip
            keep = ("neuron.", "surrogate", "optimizer.", "trainer.gradient", "readout", "regularizer", "model.")
            tail = [v for s_, v in steps if s_ > steps[-1][0] - 30] if steps else []
            result = json.loads((folder / "results.json").read_text()) if (folder / "results.json").is_file() else {}
            error = result.get("error") or ""
            note = "" if val else ("stopped: gradient norm inf" if "gradient norm is inf" in error else "running")
            if name.endswith("_newguard"):  # the same command again under the float64 guard of 11:24 UTC
                ran = steps[-1][0] if steps else 0
                note = (f"replayed under the float64 guard: ran its {ran} steps (no inf / nan element)"
                        if result.get("status") == "ok" else f"replayed under the float64 guard: {error or 'running'}")
            at100 = [100 * float(r["val/acc"]) for r in val if int(r["step"]) == 99]
            at100 = f"{at100[0]:.1f}" if at100 else "—"
            lines.append(
                f"| {name} | `{' '.join(i for i in items if i.startswith(keep))}` "
                f"| {sum(tail) / len(tail):.3f} | {100 * float(val[-1]['val/acc']):.1f} | {at100} | "
                f"{float(val[-1]['val/fr/rec.neuron']):.4f} | {note} |" if val else
                f"| {name} | `{' '.join(i for i in items if i.startswith(keep))}` | {sum(tail) / max(len(tail), 1):.3f} "
                f"| — | — | — | {note} |"
            )  # fmt: skip
    ax.set_xlabel("training step (batch 256)")
    ax.set_ylabel("training loss")
    ax.set_title("model=lsnn neuron=sfa data=sfmnist: candidate defaults")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "candidates.png", dpi=120)
    (OUT / "candidates.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _test_of(r: dict, tested: dict) -> float | None:
    """Test accuracy of the best-validation checkpoint: the run's own test when it finished, else
    test_checkpoints.py's."""
    return r["test"] if r["test"] is not None else tested.get(r["name"], {}).get("best", {}).get("test_acc")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "—"
    sd = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""  # sample sd (n − 1)
    return f"{100 * statistics.mean(values):.2f}{sd} (n = {len(values)})"


def comparisons(runs: list[dict], tested: dict) -> list[str]:
    """One table per comparison (runs not begun: "not begun"), and for runs that share a name up to _s<seed>
    the mean ± sd over seeds of the finished runs' test accuracy and how many diverged."""
    by_name = {r["name"]: r for r in runs}
    lines = ["", "## Comparisons (issue 19)", ""]
    for title, what, names in COMPARISONS:
        lines += [f"### {title}", "", what + ".", "",
                  "| run | test % (best val) | best val % | epochs | s / epoch | status |", "|---|---|---|---|---|---|"]
        groups: dict[str, list[dict]] = {}
        for name in names:
            r = by_name.get(name)
            if r is None:
                lines.append(f"| {name} | — | — | 0 | — | not begun |")
                continue
            groups.setdefault(re.sub(r"_s\d+$", "", name), []).append(r)
            test = _test_of(r, tested)
            sec = sum(r["epoch_s"]) / len(r["epoch_s"]) if r["epoch_s"] else math.nan
            lines.append(f"| {name} | {'—' if test is None else f'{100 * test:.2f}'} | {100 * max(r['val']):.2f} "
                         f"| {r['epochs'][-1] + 1} | {sec:.0f} | {r['status']} |")
        seeded = {k: v for k, v in groups.items() if len(v) > 1}
        if seeded:
            lines.append("")
        for key, rs in seeded.items():
            done = [_test_of(r, tested) for r in rs if r["status"] == "finished"]
            div = [r for r in rs if r["status"].startswith("diverged")]
            div_tests = [t for t in (_test_of(r, tested) for r in div) if t is not None]
            lines.append(f"- `{key}_s*`: {len(rs)} seeds begun; finished {len(done)}, test % {_mean_sd(done)}; "
                         f"diverged {len(div)}" + (f", test % of their best checkpoints {_mean_sd(div_tests)}"
                                                   if div_tests else "") + ".")
        lines.append("")
    return lines


def _plot_run(ax, r: dict, colour, label: str) -> None:
    """One run's validation accuracy per epoch (full BPTT dashed); × after the last epoch of a diverged run: the
    epoch it stopped in."""
    x, y = [e + 1 for e in r["epochs"]], [100 * v for v in r["val"]]
    full_bptt = "bptt_" in r["name"] and "tbptt" not in r["name"]
    ax.plot(x, y, "--" if full_bptt else "-", marker=".", color=colour, label=label)
    if r["status"].startswith("diverged"):
        ax.plot([x[-1] + 1], [y[-1]], marker="x", markersize=9, color=colour, linestyle="none")


def _colours(runs: list[dict], plt) -> dict[str, tuple]:
    """One colour per run (up to 20 distinct), the same in both figures."""
    cmap = plt.get_cmap("tab20")
    return {r["name"]: cmap(i % 20) for i, r in enumerate(runs)}


def comparison_figure(runs: list[dict], plt) -> None:
    """experiments/lsnn/comparisons.png: one panel per comparison, validation accuracy per epoch, a run keeps its
    colour in every panel; × marks the epoch a diverged run stopped in."""
    by_name = {r["name"]: r for r in runs}
    colours = _colours(runs, plt)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), sharey=True)
    for ax, (title, _, names) in zip(axes.flat, COMPARISONS):
        for name in names:
            if name in by_name:
                _plot_run(ax, by_name[name], colours[name], name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("validation accuracy (%)")
    fig.suptitle("Sequential Fashion-MNIST, pixel by pixel (784 steps); full BPTT dashed; × = diverged in that epoch")
    fig.tight_layout()
    fig.savefig(OUT / "comparisons.png", dpi=110)


def main() -> None:
    if "--candidates" in sys.argv:
        candidates()
        return
    runs = [load(p) for p in sorted((ROOT / "logs").glob("lsnn_*")) if not p.name.startswith("lsnn_defaults_")]
    runs = [r for r in runs if r["epochs"]]
    if not runs:
        sys.exit("no runs in logs/lsnn_*: start them with experiments/lsnn/run.sh")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    colours = _colours(runs, plt)
    for r in runs:
        _plot_run(ax, r, colours[r["name"]], r["name"] + (" (diverged ×)" if r["status"].startswith("diverged") else ""))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Sequential Fashion-MNIST, pixel by pixel (784 steps); full BPTT dashed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(OUT / "curves.png", dpi=120)
    comparison_figure(runs, plt)
    tests = OUT / "checkpoint_tests.json"
    tested = json.loads(tests.read_text()) if tests.is_file() else {}
    lines = [
        "Sequential Fashion-MNIST pixel by pixel (784 steps; 55,000 / 5,000 / 10,000 images); this project's 2-core "
        "x86_64 VM, no GPU, torch 2.14.1, one run per core with one torch thread. Test accuracy on the 10,000 test "
        "images: of the best-validation checkpoint (the run's own test when it finished, else `test_checkpoints.py`) "
        "and of the last epoch's weights (`test_checkpoints.py`; for a diverged run, the last epoch before it).",
        "",
        "| run | epochs | best val % | last val % | test % (best val) | test % (last epoch) | s / epoch | peak RSS MB "
        "| resumed | dates (UTC) | status | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        sec = sum(r["epoch_s"]) / len(r["epoch_s"]) if r["epoch_s"] else math.nan
        own = tested.get(r["name"], {})
        best = _test_of(r, tested)
        best = "—" if best is None else f"{100 * best:.2f}"
        last = own.get("last")
        last = f"{100 * last['test_acc']:.2f} (epoch {last['epoch']})" if last else "—"
        lines.append(
            f"| {r['name']} | {r['epochs'][-1] + 1} | {100 * max(r['val']):.2f} | {100 * r['val'][-1]:.2f} | {best} "
            f"| {last} | {sec:.0f} | {r['mem']:.0f} | {r['resumes']}× | {r['dates'][0]} – {r['dates'][1]} "
            f"| {r['status']} | `{r['command']}` |"
        )
    lines += comparisons(runs, tested)
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
