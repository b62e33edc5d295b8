"""Run a ``python train.py ...`` command from a page, as a user would type it, while the site is built."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = re.compile(r"outputs in (\S+)\s*$", re.M)
SWEEP = re.compile(r"sweep done: \d+ jobs? in (\S+?);", re.M)
ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")
SHOWN = ("[spikelight]", "error:", "warning:")


def run(command: str, timeout: int = 600, keep: tuple[str, ...] = (), threads: int | None = None) -> tuple[str, Path | None]:
    """Run ``command`` (``python train.py ...``, ``python eval.py ...``, ``python -m spikelight.…``,
    ``torchrun ...``; leading ``NAME=value`` words set environment variables, as in a shell) in the
    repository root.

    Returns (the command and the lines it printed that say what happened: spikelight's own and those
    matching a regex of ``keep``; its run folder, or a sweep's folder). ``threads`` sets
    ``OMP_NUM_THREADS`` (the build machine's cores are shared: one thread per process is faster
    there for small networks). A command that fails raises, so the page, and with it the strict
    build, fails."""
    args = shlex.split(command)
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    while args and ENV_WORD.match(args[0]):
        name, value = args.pop(0).split("=", 1)
        env[name] = value
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    if args[0] == "python":
        args[0] = sys.executable
    elif args[0] == "torchrun":
        args[:1] = [sys.executable, "-m", "torch.distributed.run"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{command!r} exited with {proc.returncode}:\n{out[-3000:]}")
    sweep, found = SWEEP.findall(out), OUTPUTS.findall(out)
    run_dir = ROOT / sweep[-1] if sweep else Path(found[-1]) if found else None
    lines = [ln for ln in out.splitlines() if ln.startswith(SHOWN) or any(re.search(k, ln) for k in keep)]
    return "\n".join([f"$ {command}", *lines]), run_dir


def tree(folder: Path, depth: int = 2) -> str:
    """The files of a run folder, relative to the repository root, one a line (folders first-level only)."""
    folder = Path(folder)
    lines = [str(folder.relative_to(ROOT)) + "/"]
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if len(rel.parts) > depth or path.is_dir():
            continue
        lines.append("    " + str(rel))
    return "\n".join(lines)



def refusals(commands: list[str], timeout: int = 300) -> str:
    """``$ command`` and the one ``error:`` line each must stop with (exit code 2), run side by side;
    any other outcome raises."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    procs = [
        subprocess.Popen([sys.executable, *shlex.split(c)[1:]], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for c in commands
    ]
    out = []
    for command, proc in zip(commands, procs):
        text, _ = proc.communicate(timeout=timeout)
        lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
        if proc.returncode != 2 or len(lines) != 1:
            raise RuntimeError(f"{command!r} should stop with one error line (exit 2), got {proc.returncode}: {lines}")
        out += [f"$ {command}", lines[0]]
    return "\n".join(out)
