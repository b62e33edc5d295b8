"""Run folders: what a run leaves behind.

- A run that fails before producing anything (no checkpoint, metrics or plot)
  leaves no folder: the ``.hydra/``, config and log Hydra and spikelight wrote
  are removed. One that fails later keeps its files and gets a ``FAILED`` note
  saying why (and how to resume when there is a ``last.ckpt``).
- A run resumed inside its own folder keeps the earlier ``csv/metrics.csv``
  rows up to the checkpoint (:func:`continue_metrics_csv`), and its own config files:
  the resume's go to ``.hydra/resume-<n>/`` (:func:`resume_subdir`).
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from spikelight.core.files import atomic_open

__all__ = [
    "FAILED", "finish_failed_run", "clear_failed_mark", "continue_metrics_csv", "logger_step", "is_bookkeeping",
    "resume_subdir", "resume_command",
]

FAILED = "FAILED"


def resume_subdir(run_dir: Path) -> str:
    """Where the config files of a resume inside ``run_dir`` go (relative to it): ``.hydra/resume-<n>``
    with the first unused n, so the run's ``.hydra/*.yaml`` and ``config_resolved.yaml`` stay as written."""
    n = 1
    while (run_dir / ".hydra" / f"resume-{n}").exists():
        n += 1
    return f".hydra/resume-{n}"


def resume_command(ckpt: Path | str) -> str:
    """The command that resumes from ``ckpt``: the run's overrides are stored in the checkpoint
    and reused, so the checkpoint is all it names."""
    import re
    import shlex

    path = str(ckpt)
    if re.fullmatch(r"[\w./\-:+@]+", path):
        return f"python train.py ckpt_path={path}"
    hydra_value = "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"  # one Hydra string
    return f"python train.py {shlex.quote('ckpt_path=' + hydra_value)}"


def is_bookkeeping(path: Path, run_dir: Path) -> bool:
    """Files every run writes before doing anything: Hydra's ``.hydra/``, the
    resolved config, logs, the CSV logger's ``hparams.yaml``, empty folders."""
    rel = path.relative_to(run_dir)
    if rel.parts[0] == ".hydra" or rel.name in ("config_resolved.yaml", FAILED) or rel.suffix == ".log":
        return True
    if rel.name == "hparams.yaml":
        return True
    return path.is_dir() and not any(path.iterdir())


def finish_failed_run(run_dir: Path | None, reason: str, sweep_dir: Path | None = None, keep: bool = False) -> str:
    """Remove ``run_dir`` if it holds only bookkeeping (unless ``keep``: a sweep job's folder is
    the sweep report's record of it); else write ``FAILED`` there. A sweep folder (``sweep_dir``)
    left with nothing but Hydra's ``multirun.yaml`` goes too.

    Returns what happened ("removed" | "marked" | "none").
    """
    if run_dir is None or not run_dir.is_dir():
        return "none"
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    if not keep and all(is_bookkeeping(p, run_dir) for p in files):
        shutil.rmtree(run_dir, ignore_errors=True)
        if sweep_dir is not None and sweep_dir.is_dir() and {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml"}:
            shutil.rmtree(sweep_dir, ignore_errors=True)
        return "removed"
    note = reason.rstrip() + "\n"
    from spikelight.app.ckpt import newest_checkpoint

    last = newest_checkpoint(run_dir)
    if last is not None:
        note += f"resume: {resume_command(last)}\n"
    with atomic_open(run_dir / FAILED, "w") as f:
        f.write(note)
    return "marked"


def clear_failed_mark(run_dir: Path | None) -> None:
    """A run that succeeds in a folder (e.g. after resuming) drops an old ``FAILED`` note."""
    if run_dir is not None:
        (run_dir / FAILED).unlink(missing_ok=True)


def logger_step(checkpoint: dict) -> int:
    """The step the loggers had reached when ``checkpoint`` was written (Lightning's ``_batches_that_stepped``,
    the ``step`` column of metrics.csv), else its ``global_step``. The two differ after a resume with
    ``trainer.max_steps`` set: Lightning then advances the loggers' step once more per resume
    (:mod:`spikelight.train.resume`), so an epoch's rows lie above the global step of that epoch's checkpoint."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    stepped = loops.get("epoch_loop.state_dict", {}).get("_batches_that_stepped") if isinstance(loops, dict) else None
    return int(stepped) if stepped is not None else int(checkpoint.get("global_step", 0))


def continue_metrics_csv(metrics_csv: Path, step: int) -> int:
    """Keep the rows of an earlier run that a resume from a checkpoint at logger step ``step``
    (:func:`logger_step`) continues: rows logged at or before ``step``, minus test results (the resumed
    run tests again) and minus a last row without its line end (the earlier process was killed while
    appending it: its last value may be cut short). Returns the number of rows kept."""
    if not metrics_csv.is_file():
        return 0
    with open(metrics_csv, newline="") as f:
        text = f.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = list(reader.fieldnames or [])
    rows = list(reader)

    def keep(row: dict) -> bool:
        try:
            at = int(float(row.get("step") or 0))
        except ValueError:
            return False
        return at <= step and not any(row.get(k) for k in fields if k.startswith("test/"))

    kept = [r for r in rows if keep(r)]
    with atomic_open(metrics_csv, "w", newline="") as f:  # a kill while rewriting leaves the old file whole
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return len(kept)
