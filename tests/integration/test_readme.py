"""Every command in README.md works as written (after the set-up commands).

The commands are read from README.md's code blocks (indented or ```bash fenced)
each time, so a command added, changed or removed there is picked up without
touching this file:

- ``python train.py|eval.py ...`` and ``python -m spikelight.plot ...`` run for
  real in a scratch folder (the repo root stands in for the clone: ``logs/`` and
  ``data/`` are relative to it), shortened by :func:`shorten` (one epoch of two
  batches, no plots); MNIST / Fashion-MNIST / CIFAR-10 and the event datasets
  (SHD, SSC, N-MNIST, DVS Gesture) are small files in their on-disk formats
  (:data:`DATA_WRITERS`). ``<ts>`` and ``<same overrides>`` are filled
  from the runs earlier README lines made.
- ``$ python ...`` followed by an ``error: ...`` line must stop with exactly that line.
- ``make X`` must be a Makefile target, ``pip install -e ".[x]"`` an extra of
  pyproject.toml, ``source .venv/bin/activate`` what ``make`` creates, and it
  must come before the first ``python`` command.

A command may instead stop with a one-line refusal when this machine lacks what
it needs and the refusal says so (:data:`REFUSALS`: no GPU, an optional extra
not installed). Failures name the README line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets

from spikelight.data.cifar import write_cifar
from spikelight.data.mnist import MNIST_FILES

from ..conftest import ROOT, make_mnist_files
from ..event_data import write_event_dataset

README = ROOT / "README.md"
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
COMMAND_WORDS = ("python", "make", "pip", "source")
HYDRA_SCRIPTS = ("train.py", "eval.py")
MODULES = ("spikelight.plot", "spikelight.sweep_report")

# added to every train.py / eval.py command unless it sets the key itself: one
# epoch of two batches of 16; plots are drawn by the README's `python -m spikelight.plot`
QUICK = {
    "trainer.max_epochs": "1",
    "trainer.limit_train_batches": "2",
    "trainer.limit_val_batches": "1",
    "trainer.limit_test_batches": "1",
    "trainer.num_sanity_val_steps": "0",
    "data.batch_size": "16",
    "print_config": "false",
    "++callbacks.spike_plots": "null",
}
# A train.py command with more time steps than this (e.g. 784-step sequential MNIST)
# only builds in the fast suite (config, data, model, run folder; no batch), and runs
# for real in the slow one: a step of such a model costs tens of seconds on 2 CPU cores.
MAX_FAST_STEPS = 100
BUILD_ONLY = {"trainer.limit_train_batches": "0", "trainer.limit_val_batches": "0", "test": "false"}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# (why this machine may refuse, regex of the one-line refusal, does that apply here?)
REFUSALS: list[tuple[str, str, Callable[[], bool]]] = [
    ("no GPU", r"^error: trainer\.accelerator=gpu but this machine has no usable GPU",
     lambda: not torch.cuda.is_available()),
    ("Optuna sweeper not installed", r'^error: .*Optuna sweeper plugin.*pip install -e "\.\[sweep\]"$',
     lambda: not _importable("hydra_plugins.hydra_optuna_sweeper")),
    ("submitit launcher not installed", r'^error: .*submitit launcher plugin.*pip install -e "\.\[cluster\]"$',
     lambda: not _importable("hydra_plugins.hydra_submitit_launcher")),
]

# console noise no README command may print (issue 7)
NOISE = ("💡 Tip", "log_every_n_steps", "Traceback (most recent call last)", "dirpath has changed",
         "exists and is not empty")


def _write_mnist_like(name: str) -> Callable[[Path], None]:
    def write(data_root: Path) -> None:  # enough for the default val_size=5000
        make_mnist_files(data_root / name / "raw", n_train=5200, n_test=200)
    return write


# datasets a README command may use that cannot be downloaded here: small files in
# the real on-disk format under data/ (the default data root)
def _write_cifar10(data_root: Path) -> None:
    """5,200 / 200 small images (enough for val_size=5000); torchvision's md5 check is satisfied in
    the command's process by tests/readme_preload.py from the checksums recorded here."""
    rng = np.random.default_rng(0)
    split = {n: (rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), [i % 10 for i in range(n)])
             for n in (5200, 200)}
    md5 = write_cifar(data_root, datasets.CIFAR10, split[5200], split[200])
    (data_root / "cifar-md5.json").write_text(json.dumps({"CIFAR10": md5}))


def _write_events(name: str) -> Callable[[Path], None]:
    def write(data_root: Path) -> None:  # tonic's layout under data/ (data.root is tonic's save_to)
        write_event_dataset(data_root, name, sizes={"train": 40, "valid": 10, "test": 20})
    return write


DATA_WRITERS: dict[str, Callable[[Path], None]] = {
    "mnist": _write_mnist_like("MNIST"),
    "fashion_mnist": _write_mnist_like("FashionMNIST"),
    "cifar10": _write_cifar10,
    **{name: _write_events(name) for name in ("shd", "ssc", "nmnist", "dvs_gesture")},
}
PRELOAD = ROOT / "tests" / "readme_preload.py"


@dataclass
class Command:
    """One command line of README.md."""

    line: int  # 1-based line number in README.md
    text: str  # as written, without the trailing comment
    expect_error: str | None = None  # for "$ cmd" lines followed by "error: ..."
    build_only: bool = False  # a long command in the fast suite (see MAX_FAST_STEPS)
    result: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"README.md:{self.line}: `{self.text}`"


def readme_commands(text: str) -> list[Command]:
    """Command lines of the README's shell code blocks (indented, or fenced with
    no language / bash / sh / console), with their line numbers."""
    commands: list[Command] = []
    fence: str | None = None
    lines = text.splitlines()
    for i, raw in enumerate(lines):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        in_code = (fence is not None and fence in SHELL_LANGS) or (fence is None and raw.startswith("    "))
        if not in_code or not stripped:
            continue
        if stripped.startswith("$ "):
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            commands.append(Command(i + 1, _uncomment(stripped[2:]), nxt if nxt.startswith("error:") else None))
        elif stripped.split()[0] in COMMAND_WORDS:
            commands.append(Command(i + 1, _uncomment(stripped)))
    return commands


def _uncomment(cmd: str) -> str:
    """The command without its trailing ``# comment`` (as a shell reads it: a ``#``
    starting a word, outside quotes)."""
    quote = None
    for i, ch in enumerate(cmd):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or cmd[i - 1].isspace()):
            return cmd[:i].rstrip()
    return cmd.strip()


def _key(arg: str) -> str | None:
    return arg.split("=", 1)[0].lstrip("+~") if "=" in arg and not arg.startswith("-") else None


def shorten(args: list[str], script: str, build_only: bool = False) -> list[str]:
    """A README command's Hydra arguments plus :data:`QUICK` (keys it sets win),
    and :data:`BUILD_ONLY` if ``build_only``.

    A resume (``ckpt_path=`` in train.py) trains one epoch more than the quick
    run it continues; an Optuna search runs 2 trials.
    """
    keys = {_key(a) for a in args}
    quick = {**QUICK, **BUILD_ONLY} if build_only else QUICK
    if build_only:
        args = [a for a in args if _key(a) not in BUILD_ONLY]
    extra = [f"{k}={v}" for k, v in quick.items() if k.lstrip("+") not in keys or k in BUILD_ONLY]
    if script == "eval.py" and "data" not in keys:  # eval's data is the checkpoint's unless data= is given
        extra = [e for e in extra if not e.startswith("data.")]
    if script == "train.py" and "ckpt_path" in keys:
        args = [a for a in args if _key(a) != "trainer.max_epochs"]
        extra = [e for e in extra if _key(e) != "trainer.max_epochs"] + ["trainer.max_epochs=2"]
    if "hparams_search=optuna" in args:
        extra.append("hydra.sweeper.n_trials=2")
    return [*args, *extra]


def time_steps(args: list[str]) -> int | None:
    """Time steps per sample of a train.py command: the sequence length of
    sequence data (plus an encoder's cue steps), else ``T``; None if it does not
    compose (its run reports why)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import instantiate

    from spikelight.app.checks import _compose, _compose_lines

    try:
        lines = _compose_lines(OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")]))
        cfg = _compose("train", lines, ROOT / "conf")
        steps = getattr(instantiate(cfg.data), "seq_len", None)  # no data is read here
        if steps is None:
            return int(cfg.T)
        encoder = instantiate(cfg.encoder) if cfg.get("encoder") else None
        return int(steps) + int(getattr(encoder, "cue_steps", 0) or 0)
    except Exception:  # noqa: BLE001
        return None


class ForkServer:
    """tests/fork_server.py: runs each command in a fork of one warmed-up Python."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fork_server.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, argv: list[str], cwd: Path, env: dict, timeout: float = 240) -> dict:
        req = {"argv": argv, "cwd": str(cwd), "env": env, "timeout": timeout, "preload": str(PRELOAD)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _runs(cwd: Path) -> set[Path]:
    return {p for p in (cwd / "logs").glob("*/runs/*") if p.is_dir()} | {
        p for p in (cwd / "logs").glob("*/multiruns/*/*") if p.is_dir()}


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _tail(result: dict, n: int = 2500) -> str:
    return f"exit {result['rc']}\n--- stderr ---\n{result['err'][-n:]}\n--- stdout ---\n{result['out'][-n:]}"


class Walk:
    """Runs the README's commands in order, remembering which run each made."""

    def __init__(self, server: ForkServer, cwd: Path, env: dict, full: bool = False) -> None:
        self.server, self.cwd, self.env, self.full = server, cwd, env, full
        self.made_by: dict[Path, list[str]] = {}  # run folder -> README arguments of the command that made it

    def fill(self, cmd: Command) -> str:
        """``<ts>`` → the newest run of that task with a last.ckpt (in ``multiruns/<ts>``: the newest
        sweep); ``<same overrides>`` → the README arguments of the command that made it."""
        text = cmd.text
        for task in re.findall(r"logs/([\w.-]+)/runs/<ts>", text):
            runs = sorted(p for p in (self.cwd / "logs" / task / "runs").glob("*")
                          if (p / "checkpoints" / "last.ckpt").exists())
            if not runs:
                pytest.fail(f"{cmd.where} refers to logs/{task}/runs/<ts>, but no README command above it "
                            f"left a run there with checkpoints/last.ckpt")
            run = runs[-1]
            text = text.replace(f"logs/{task}/runs/<ts>", str(run.relative_to(self.cwd)))
            if "<same overrides>" in text:
                text = text.replace("<same overrides>", shlex.join(self.made_by.get(run, [])))
        for task in re.findall(r"logs/([\w.-]+)/multiruns/<ts>", text):  # the newest sweep of that task
            sweeps = sorted(p for p in (self.cwd / "logs" / task / "multiruns").glob("*") if p.is_dir())
            if not sweeps:
                pytest.fail(f"{cmd.where} refers to logs/{task}/multiruns/<ts>, but no README command above it swept")
            text = text.replace(f"logs/{task}/multiruns/<ts>", str(sweeps[-1].relative_to(self.cwd)))
        left = re.findall(r"<[^<>=]+>", text)
        if left:
            pytest.fail(f"{cmd.where}: placeholder {left[0]} is unknown to tests/integration/test_readme.py; teach Walk.fill")
        return text

    def argv(self, cmd: Command, text: str) -> tuple[list[str], list[str], str]:
        """(argv for the fork server, the README arguments, the script or module)."""
        words = shlex.split(text)
        if words[:2] == ["python", "-m"] and words[2] in MODULES:
            return ["-m", words[2], *words[3:]], words[3:], words[2]
        if words[0] == "python" and len(words) > 1 and words[1] in HYDRA_SCRIPTS:
            steps = time_steps(words[2:]) if words[1] == "train.py" and not self.full else None
            cmd.build_only = steps is not None and steps > MAX_FAST_STEPS and cmd.expect_error is None
            return [str(ROOT / words[1]), *shorten(words[2:], words[1], cmd.build_only)], words[2:], words[1]
        pytest.fail(f"{cmd.where}: tests/integration/test_readme.py does not know how to run this command quickly; "
                    "add a rule to Walk.argv (and shorten)")

    def run(self, cmd: Command) -> None:
        text = self.fill(cmd)
        argv, readme_args, what = self.argv(cmd, text)
        before = _runs(self.cwd)
        cmd.result = self.server.run(argv, self.cwd, self.env)
        cmd.result.update(what=what, args=readme_args, new_runs=sorted(_runs(self.cwd) - before))
        for run in cmd.result["new_runs"]:
            self.made_by[run] = readme_args


def _refusal(cmd: Command) -> str | None:
    """Why a failed command's one-line refusal is right on this machine, else None."""
    res = cmd.result
    if res["rc"] != 2:
        return None
    line = _last_line(res["err"])
    return next((why for why, rx, applies in REFUSALS if applies() and re.search(rx, line)), None)


def _check_ran(cmd: Command) -> list[str]:
    """What is wrong with a command that had to work (empty list: nothing)."""
    res, problems = cmd.result, []
    if cmd.expect_error is not None:
        if res["rc"] != 2 or _last_line(res["err"]) != cmd.expect_error:
            problems.append(f"should stop with\n    {cmd.expect_error}\n{_tail(res)}")
        elif res["new_runs"]:
            problems.append(f"left run folders behind: {res['new_runs']}")
        return problems
    if res["rc"] != 0:
        if _refusal(cmd) is not None:
            return []  # refused in one line for a reason that holds here
        hint = ""
        if re.search(r"not found|download failed", _last_line(res["err"])):
            hint = ("\n(a dataset that cannot be downloaded here? add a writer of small files in its on-disk "
                    "format to DATA_WRITERS in tests/integration/test_readme.py)")
        return [_tail(res) + hint]
    if res["what"] in HYDRA_SCRIPTS and "-m" not in res["args"]:
        if "outputs in " not in res["out"]:
            problems.append("printed no 'outputs in <dir>' line\n" + _tail(res))
    noise = [n for n in NOISE if n in res["out"] + res["err"]]
    if noise:
        problems.append(f"printed {noise}\n{_tail(res)}")
    return problems


def _check_runs_made(cmd: Command, cwd: Path) -> list[str]:
    """Run folders: a log that is not empty, no FAILED note; a resume stays in its folder;
    a DDP run really ran its processes."""
    res, problems = cmd.result, []
    if res["rc"] != 0 or res["what"] not in HYDRA_SCRIPTS:
        return problems
    for run in res["new_runs"]:
        logs = list(run.glob("*.log"))
        if not logs or any(p.stat().st_size == 0 for p in logs):
            problems.append(f"{run}: no log or an empty one: {[p.name for p in logs]}")
        if (run / "FAILED").exists():
            problems.append(f"{run}: FAILED note after a successful run")
    ckpt = next((a.split("=", 1)[1] for a in res["args"] if a.startswith("ckpt_path=")), None)
    if res["what"] == "train.py" and ckpt:
        run = (cwd / ckpt).parents[1]
        if res["new_runs"]:
            problems.append(f"resumed into new folders {res['new_runs']} instead of {run}")
        epochs = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"]
        if epochs != 1:
            problems.append(f"resume did not train on in {run}: last.ckpt is at epoch {epochs}")
    if any(a.startswith("accelerator=ddp") for a in res["args"]):
        devices = next((a.split("=")[1] for a in res["args"] if a.startswith("trainer.devices=")), None)
        if devices and devices.isdigit() and f"MEMBER: {devices}/{devices}" not in res["out"] + res["err"]:
            problems.append(f"DDP did not start {devices} processes\n{_tail(res)}")
        if not torch.cuda.is_available() and "distributed_backend=gloo" not in res["out"] + res["err"]:
            problems.append(f"DDP on CPU did not use gloo\n{_tail(res)}")
    return problems


def _static_checks(commands: list[Command]) -> list[str]:
    """make / pip / source lines: they name things that exist; activation comes first."""
    problems = []
    makefile = (ROOT / "Makefile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+; the project supports 3.10)
    section = pyproject.split("[project.optional-dependencies]", 1)[-1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([\w-]+)\s*=", section, re.M))
    first_python = next((c.line for c in commands if c.text.startswith("python")), None)
    activations = [c for c in commands if c.text.startswith("source ")]
    if first_python is not None and not any(c.line < first_python for c in activations):
        problems.append(f"README.md:{first_python}: a python command comes before `source .venv/bin/activate`")
    for c in commands:
        words = shlex.split(c.text)
        if words[0] == "make":
            for target in words[1:]:
                if "=" not in target and not re.search(rf"^{re.escape(target)}:", makefile, re.M):
                    problems.append(f"{c.where}: no Makefile target {target}")
        elif words[0] == "pip":
            for extra in re.findall(r"\.\[([\w,-]+)\]", c.text):
                missing = [e for e in extra.split(",") if e not in extras]
                if missing:
                    problems.append(f"{c.where}: no extra {missing} in pyproject.toml")
        elif words[0] == "source":
            venv = re.search(r"^VENV\s*\?=\s*(\S+)", makefile, re.M)
            if not (venv and words[1] == f"{venv.group(1)}/bin/activate" and "-m venv $(VENV)" in makefile):
                problems.append(f"{c.where}: `make` does not create {words[1]}")
    return problems


def test_readme_parser_finds_commands_comments_and_errors():
    text = "\n".join([
        "intro `python train.py inline` is not a command",
        "",
        "    make demo     # set up",
        "    python train.py 'model.hidden=[5,2]' x=1   # a '#' comment",
        "",
        "```python",
        "python_code = 1",
        "```",
        "```bash",
        "python -m spikelight.plot logs/train/runs/<ts>",
        "```",
        "",
        "    $ python train.py nope=1",
        "    error: unknown",
    ])
    cmds = readme_commands(text)
    assert [(c.line, c.text, c.expect_error) for c in cmds] == [
        (3, "make demo", None),
        (4, "python train.py 'model.hidden=[5,2]' x=1", None),
        (10, "python -m spikelight.plot logs/train/runs/<ts>", None),
        (13, "python train.py nope=1", "error: unknown"),
    ]
    assert shlex.split(cmds[1].text)[2] == "model.hidden=[5,2]"
    short = shorten(["trainer.max_epochs=3", "T=4"], "train.py")
    assert short[:2] == ["trainer.max_epochs=3", "T=4"] and "trainer.max_epochs=1" not in short
    resumed = shorten(["trainer.max_epochs=1", "ckpt_path=x"], "train.py")
    assert resumed.count("trainer.max_epochs=2") == 1 and "trainer.max_epochs=1" not in resumed


def test_readme_links_point_at_files():
    """The README is the site's front door: its relative links (into docs/) name files that exist,
    and every tutorial of the site's navigation is linked from it."""
    text = README.read_text()
    links = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert links, "README links to no page of the site?"
    missing = [t for t in links if t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    nav = re.findall(r"^\s+- [^:]+: (tutorials/\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert nav and not [t for t in nav if f"docs/{t}" not in links], "a tutorial of mkdocs.yml's nav is not linked"


def walk_readme(tmp_path: Path, full: bool) -> None:
    """Run every README command in order (see the module docstring); fail naming the lines that broke."""
    commands = readme_commands(README.read_text())
    runnable = [c for c in commands if c.text.startswith("python")]
    assert len(runnable) >= 10, "README lost its commands?"
    problems = [f"\n{p}" for p in _static_checks(commands)]

    for write in DATA_WRITERS.values():
        write(tmp_path / "data")
    assert all((tmp_path / "data" / "MNIST" / "raw" / f"{f}.gz").exists() for f in MNIST_FILES[:2])
    src = str(ROOT / "src")
    env = {"SPIKELIGHT_DATA": None, "HYDRA_FULL_ERROR": None, "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([src, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                 if p and Path(p).resolve() != Path(src)]])}
    server = ForkServer({**os.environ, **{k: v for k, v in env.items() if v is not None}})
    try:
        walk = Walk(server, tmp_path, env, full=full)
        for cmd in runnable:
            walk.run(cmd)
            found = _check_ran(cmd) + _check_runs_made(cmd, tmp_path)
            problems += [f"\n{cmd.where} (ran {cmd.result['seconds']} s):\n{p}" for p in found]
    finally:
        server.close()
    timing = ", ".join(f"{c.line}: {c.result.get('seconds')}s{' (built)' if c.build_only else ''}" for c in runnable)
    print(f"README walk, seconds by line: {timing}")  # shown with pytest -s / -rP
    assert not problems, "".join(problems) + f"\n(times by README line: {timing})"


def test_every_readme_command_works_as_written(tmp_path):
    """Fast: commands longer than MAX_FAST_STEPS time steps only build."""
    walk_readme(tmp_path, full=False)


@pytest.mark.slow
def test_every_readme_command_trains_as_written(tmp_path):
    """Slow: every command trains its shortened epoch, the long ones too."""
    walk_readme(tmp_path, full=True)


@pytest.mark.parametrize("script", HYDRA_SCRIPTS)
def test_without_the_venv_the_scripts_say_how_to_activate(script):
    """A shell where .venv is not active (here: a Python without site-packages)
    gets one line naming the fix, not `No module named 'hydra'` in a traceback."""
    proc = subprocess.run([sys.executable, "-S", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: hydra is not installed for {sys.executable}; run `source .venv/bin/activate` first "
        "(`make install` creates .venv)"]
