"""Summarise a ``-m`` sweep: ``python -m spikelight.sweep_report logs/train/multiruns/<ts>``.

Reads every job folder of the sweep (Hydra's ``.hydra/overrides.yaml`` and the
``results.json`` that ``train.py`` leaves; a job without one is ``incomplete``) and writes
to ``<sweep>/report/``:

- ``report.md`` / ``report.csv``: one row per job (its swept values, best val acc, test acc,
  mean firing rate, seconds, status), sorted by the metric, failed jobs last (listed, not dropped);
- ``<metric>.png``: a heat-map of the metric over the two swept parameters (best over any
  others), a line plot for one, a scatter coloured by the metric for continuous (Optuna) values.

When the jobs logged to wandb the report is logged there too, as a run ``sweep report`` in the
sweep's group (offline when the jobs were).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Job", "read_sweep", "swept_keys", "table", "heat_grid", "plot", "write_report", "sweep_group", "main"]

METRIC = "val/acc_best"
COLUMNS = ("val/acc_best", "test/acc")
MAX_GRID_VALUES = 12  # more distinct values than this per parameter: a scatter, not a heat-map


def sweep_group(task_name: str, sweep_dir: Path) -> str:
    """The wandb group of a sweep's runs (set by ``train.py`` unless ``logger.wandb.group`` is)."""
    return f"{task_name}/{Path(sweep_dir).name}"


@dataclass
class Job:
    """One job of a sweep."""

    num: int
    path: Path
    overrides: dict[str, str]
    status: str  # ok | failed | incomplete
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def value(self, name: str) -> float:
        v = self.metrics.get(name)
        return float(v) if v is not None else math.nan

    @property
    def firing_rate(self) -> float:
        """Mean over layers of the test (else val) firing rates, spikes per neuron per step."""
        for stage in ("test", "val"):
            rates = [v for k, v in self.metrics.items() if k.startswith(f"{stage}/fr/")]
            if rates:
                return sum(rates) / len(rates)
        return math.nan


def _read_overrides(job_dir: Path) -> dict[str, str]:
    from omegaconf import OmegaConf

    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for line in OmegaConf.to_container(OmegaConf.load(path)) or []:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def read_sweep(sweep_dir: Path) -> list[Job]:
    """The jobs of ``sweep_dir`` (folders holding ``.hydra/`` or ``results.json``), by job number."""
    from spikelight.app.rundir import FAILED

    jobs = []
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        if not ((job_dir / ".hydra").is_dir() or (job_dir / "results.json").is_file()):
            continue
        num = int(job_dir.name) if job_dir.name.isdigit() else len(jobs)
        job = Job(num, job_dir, _read_overrides(job_dir), "incomplete")
        results = job_dir / "results.json"
        if results.is_file():
            body = json.loads(results.read_text())
            job.status, job.seconds = body.get("status", "incomplete"), body.get("seconds")
            job.metrics, job.error = body.get("metrics") or {}, body.get("error")
        elif (job_dir / FAILED).is_file():
            job.status, job.error = "failed", (job_dir / FAILED).read_text().splitlines()[0]
        jobs.append(job)
    return sorted(jobs, key=lambda j: j.num)


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs, in command-line order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job.overrides if k not in keys]
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]


def _sorted(jobs: list[Job], metric: str) -> list[Job]:
    def key(job: Job) -> tuple:
        v = job.value(metric)
        return (job.status != "ok", math.isnan(v), -v if not math.isnan(v) else 0.0, job.num)

    return sorted(jobs, key=key)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _swept(value: str) -> Any:
    """A swept value as the report shows it: a float with more than 4 significant digits (an Optuna
    suggestion, 0.0012345678901) to 4 (:func:`_fmt`); anything else as written (2.0 stays 2.0)."""
    text = str(value).strip()
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)", text):
        digits = re.sub(r"[eE].*$", "", text).lstrip("+-").replace(".", "").lstrip("0").rstrip("0")
        if len(digits) > 4:
            return float(text)
    return value


def table(jobs: list[Job], metric: str = METRIC) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of the report, sorted by ``metric`` (best first), failed jobs last."""
    keys = swept_keys(jobs)
    metrics = [metric, *(c for c in COLUMNS if c != metric)]
    header = ["job", *keys, *metrics, "firing_rate", "seconds", "status"]
    rows = []
    for job in _sorted(jobs, metric):
        error = (job.error or "").removeprefix("error: ")
        status = f"{job.status}: {error}" if error and job.status != "ok" else job.status
        rows.append([job.num, *(_swept(job.overrides.get(k, "")) for k in keys), *(job.value(m) for m in metrics),
                     job.firing_rate, job.seconds, status])
    return header, rows


def _markdown(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def heat_grid(jobs: list[Job], metric: str, kx: str, ky: str, xs: list[str], ys: list[str]) -> list[list[float]]:
    """``grid[i][j]``: the best ``metric`` of the finished jobs with ``ky = ys[i]`` and ``kx = xs[j]``
    (NaN where every such job failed)."""
    done = [j for j in jobs if j.status == "ok" and not math.isnan(j.value(metric))]
    return [[max((j.value(metric) for j in done if j.overrides.get(kx) == x and j.overrides.get(ky) == y),
                 default=math.nan) for x in xs] for y in ys]


def plot(jobs: list[Job], metric: str, path: Path) -> Path | None:
    """Draw the metric over the swept parameters into ``path``; None when nothing was swept or no job
    finished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = swept_keys(jobs)
    done = [j for j in jobs if j.status == "ok" and not math.isnan(j.value(metric))]
    if not keys or not done:
        return None
    values = {k: sorted({j.overrides.get(k, "") for j in jobs}, key=lambda v: (_number(v) is None, _number(v) or 0, v))
              for k in keys}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if len(keys) == 1:
        k = keys[0]
        xs = values[k]
        best = {x: max((j.value(metric) for j in done if j.overrides.get(k) == x), default=math.nan) for x in xs}
        numeric = all(_number(x) is not None for x in xs)
        pos = [_number(x) for x in xs] if numeric else list(range(len(xs)))
        ax.plot(pos, [best[x] for x in xs], "o-")
        if not numeric:
            ax.set_xticks(pos, xs)
        ax.set_xlabel(k)
        ax.set_ylabel(metric)
        failed = [x for x in xs if math.isnan(best[x])]
        ax.set_title(f"{metric} over {k}" + (f" (failed: {', '.join(failed)})" if failed else ""))
    elif all(len(values[k]) <= MAX_GRID_VALUES for k in keys[:2]):
        kx, ky = keys[0], keys[1]
        grid = heat_grid(jobs, metric, kx, ky, values[kx], values[ky])
        im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        ax.set_xticks(range(len(values[kx])), values[kx])
        ax.set_yticks(range(len(values[ky])), values[ky])
        finite = [v for row in grid for v in row if not math.isnan(v)]
        mid = (min(finite) + max(finite)) / 2
        for iy, row in enumerate(grid):
            for ix, v in enumerate(row):  # dark text on the bright (high) end of viridis
                color = "red" if math.isnan(v) else "black" if v > mid else "white"
                ax.text(ix, iy, "failed" if math.isnan(v) else f"{v:.3f}", ha="center", va="center",
                        color=color, fontsize=9)
        ax.set_xlabel(kx)
        ax.set_ylabel(ky)
        fig.colorbar(im, ax=ax, label=metric)
        rest = f" (best over {', '.join(keys[2:])})" if len(keys) > 2 else ""
        ax.set_title(f"{metric}{rest}")
    else:  # continuous values (an Optuna search): one point per finished job
        kx, ky = keys[0], keys[1]
        xs = [_number(j.overrides.get(kx)) for j in done]
        ys = [_number(j.overrides.get(ky)) for j in done]
        sc = ax.scatter(xs, ys, c=[j.value(metric) for j in done], cmap="viridis")
        fig.colorbar(sc, ax=ax, label=metric)
        ax.set_xlabel(kx)
        ax.set_ylabel(ky)
        ax.set_title(f"{metric} per job ({len(jobs) - len(done)} failed or incomplete)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(sweep_dir: Path, metric: str = METRIC) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` and the metric plot into ``<sweep_dir>/report/``.
    Returns the paths written (keys ``md``, ``csv``, ``png`` when drawn)."""
    from spikelight.core.errors import ConfigError

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir} is not a folder; pass a sweep folder such as logs/train/multiruns/<ts>")
    jobs = read_sweep(sweep_dir)
    if not jobs:
        raise ConfigError(f"{sweep_dir} holds no job folders; pass a sweep folder such as logs/train/multiruns/<ts>")
    header, rows = table(jobs, metric)
    out = sweep_dir / "report"
    out.mkdir(exist_ok=True)
    paths = {"md": out / "report.md", "csv": out / "report.csv"}
    ok = sum(j.status == "ok" for j in jobs)
    title = f"# Sweep {sweep_dir.name}: {len(jobs)} jobs, {ok} ok, sorted by {metric}\n\n"
    paths["md"].write_text(title + _markdown(header, rows))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[_fmt(v) for v in row] for row in rows])
    png = plot(jobs, metric, out / f"{metric.replace('/', '_')}.png")
    if png is not None:
        paths["png"] = png
        with open(paths["md"], "a") as f:
            f.write(f"\n![{metric}]({png.name})\n")
    return paths


def _wandb_runs(jobs: list[Job]) -> list[Path]:
    return [run for job in jobs for run in (job.path / "wandb").glob("*run-*") if run.is_dir()]


def log_to_wandb(sweep_dir: Path, paths: dict[str, Path], metric: str) -> str | None:
    """Log the report as a run in the sweep's wandb group when the jobs logged to wandb; returns the
    run's folder (None when the jobs did not use wandb)."""
    import os

    from omegaconf import OmegaConf

    jobs = read_sweep(sweep_dir)
    runs = _wandb_runs(jobs)
    if not runs or os.environ.get("WANDB_MODE") == "disabled":
        return None
    import wandb

    first = jobs[0].path / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(first) if first.is_file() else OmegaConf.create()
    wb = OmegaConf.select(cfg, "logger.wandb", default=None) or {}
    group = wb.get("group") or sweep_group(str(OmegaConf.select(cfg, "task_name", default="train")), sweep_dir)
    offline = all(r.name.startswith("offline-") for r in runs)
    with open(paths["csv"], newline="") as f:
        rows = list(csv.reader(f))
    run = wandb.init(project=wb.get("project") or "spikelight", group=group, name="sweep report",
                     job_type="sweep_report", dir=str(paths["csv"].parent), mode="offline" if offline else None,
                     config={"sweep_dir": str(sweep_dir), "metric": metric})
    log: dict[str, Any] = {"sweep/report": wandb.Table(columns=rows[0], data=rows[1:])}
    if "png" in paths:
        log[f"sweep/{metric}"] = wandb.Image(str(paths["png"]))
    run.log(log)
    where = run.dir
    run.finish()
    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spikelight.sweep_report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder, e.g. logs/train/multiruns/<ts>")
    parser.add_argument("--metric", default=METRIC, help=f"column to sort by and plot (default {METRIC})")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the report to wandb")
    args = parser.parse_args(argv)
    from spikelight.core.errors import SpikelightError

    try:
        paths = write_report(args.sweep_dir, args.metric)
    except SpikelightError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(paths["md"].read_text(), end="")
    print(f"report in {paths['md'].parent}")
    if not args.no_wandb:
        where = log_to_wandb(args.sweep_dir, paths, args.metric)
        if where:
            print(f"logged to wandb ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
