"""Data-parallel runs under Hydra: one job = one set of processes, one run folder.

- ``accelerator=ddp trainer.devices=N``: Lightning starts N-1 more processes by
  re-running the command line. Inside a ``-m`` sweep that command line is the whole
  sweep (Lightning's known Hydra trap), so :func:`install_ddp_job_command` makes the
  extra processes run exactly the current job, in its folder.
- Several jobs in one process (a local sweep): :func:`job_scope` gives every job
  the environment it started with (Lightning's ``LOCAL_RANK``, ``WORLD_SIZE``, ...
  and wandb's ``WANDB_MODE``) and no leftover process group, so job 2 starts its
  own processes instead of waiting for job 1's, which have exited.
- A job that fails in rank 0 alone (a full disk while it writes a checkpoint, which
  only rank 0 does; a logger's error) leaves the processes Lightning started waiting
  for it in a collective (NCCL: 30 minutes): :func:`job_scope` gives them
  :data:`STOP_GRACE_S` to exit by themselves, then kills them.
- ``torchrun`` / ``srun`` start every rank themselves; each rank runs ``train.py``.
  :func:`launcher_overrides` gives them one shared run folder (Hydra would name
  one per process) and keeps ranks other than 0 from writing Hydra's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from spikelight.core.errors import ConfigError

__all__ = ["agreed_stop", "install_ddp_job_command", "job_scope", "launcher", "launcher_overrides", "reports_to_rank_zero",
           "started_by_rank_zero", "JOB_ENV"]

# the job name of the processes Lightning's launcher starts (:func:`ddp_job_command`)
PROCESS_JOB = "train_ddp_process_"

# set by Lightning's process launcher and by wandb's offline mode; must not outlive a job
JOB_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "WANDB_MODE")


@contextmanager
def job_scope() -> Iterator[None]:
    """Run one job: afterwards restore :data:`JOB_ENV` as it was and destroy the
    ``torch.distributed`` process group the job created (Lightning keeps it until exit).
    A job that failed in this process (rank 0 of Lightning's launcher) other than by a stop every
    process agreed on (a pre-emption, a NaN: they exit by themselves) stops the processes it
    started (:func:`_stop_started`) rather than leave them waiting for it."""
    saved = {k: os.environ.get(k) for k in JOB_ENV}
    try:
        yield
    except BaseException as err:
        if not agreed_stop(err):
            _stop_started()
        raise
    finally:
        _started.clear()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _script_command() -> list[str]:
    from hydra.utils import to_absolute_path

    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is None:
        return [sys.executable, to_absolute_path(sys.argv[0])]
    return [sys.executable, "-m", spec.name]


def ddp_job_command(local_rank: int) -> tuple[list[str], str]:
    """The command line and working directory of DDP process ``local_rank`` of the
    running Hydra job: this job's overrides (the values the sweeper chose), in this
    job's folder, as a single run (``hydra.mode=RUN``) that writes no Hydra files."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    hc = HydraConfig.get()
    skip = ("hydra.mode", "hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.job.name",
            "hydra.output_subdir")
    own_hydra = [o for o in hc.overrides.hydra if o.split("=", 1)[0].lstrip("+~") not in skip]
    command = [*_script_command(), *hc.overrides.task, *own_hydra,
               f"hydra.run.dir={_quote(str(hc.runtime.output_dir))}", "hydra.mode=RUN",
               f"hydra.job.name={PROCESS_JOB}{local_rank}", "hydra.output_subdir=null"]
    return command, get_original_cwd()


def reports_to_rank_zero(args: list[str], env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one of a DDP run's other than rank 0, which after a stop every process agreed on
    (:func:`agreed_stop`) exits 0 and leaves the report to rank 0: one started by Lightning's launcher (whose
    watcher SIGKILLs every process, rank 0 too, when one it started exits non-zero) or a rank ≥ 1 of torchrun /
    srun (whose ``--kill-on-bad-exit`` ends the others, rank 0 in the middle of its report, when one fails)."""
    env = os.environ if env is None else env
    return started_by_rank_zero(args, env) or (launcher(env) is not None and _rank(env) != 0)


def started_by_rank_zero(args: list[str], env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one Lightning's DDP launcher started, running a :func:`ddp_job_command` (``args``:
    its command line without the script; ``env``: its environment, where the launcher set ``LOCAL_RANK`` >= 1):
    rank 0 checked and resolved those arguments (the resumed run's overrides merged, those the command line left
    out with ``~`` gone), so they are taken as they are. Checking them again would merge the run's overrides a
    second time, bringing back what ``~`` had left out, in this process only."""
    env = os.environ if env is None else env
    rank = env.get("LOCAL_RANK", "0")
    return (rank.isdigit() and int(rank) >= 1 and launcher(env) is None
            and any(a.startswith(f"hydra.job.name={PROCESS_JOB}") for a in args))


def install_ddp_job_command() -> None:
    """Make Lightning's DDP process launcher start :func:`ddp_job_command` (idempotent), and watch the processes
    it starts with :func:`_watch_started`. Outside a sweep the command is the same as Lightning's, with the job's
    own overrides."""
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script as pytorch_launcher

    for module in (fabric_launcher, pytorch_launcher):
        if getattr(module, "_hydra_subprocess_cmd", None) is not ddp_job_command:
            module._hydra_subprocess_cmd = ddp_job_command
        if getattr(module, "_launch_process_observer", None) is not _watch_started:
            module._launch_process_observer = _watch_started


# --- the processes Lightning's launcher started for the running job --------------------
#: seconds they have to exit by themselves once rank 0 failed: a stop every process agreed on (pre-emption, a
#: NaN) ends each of them within a few seconds; a failure of rank 0 alone (a full disk while it writes a
#: checkpoint, a logger's error) leaves them waiting in a collective — NCCL's for its 30-minute timeout
STOP_GRACE_S = 30.0

#: (the processes, their watcher) of the running job, rank 0 of Lightning's launcher only
_started: list[tuple[list[subprocess.Popen], _Watcher]] = []


class _Watcher(threading.Thread):
    """Lightning's watcher of the processes its launcher started (``_ChildProcessObserver``: every 5 s, when one
    has exited non-zero, SIGKILL the others and this process, so that none is left waiting in a collective),
    which :meth:`stop` ends for good: it would take the processes :func:`_stop_started` kills for a failure and
    SIGKILL rank 0 in the middle of its own error handling. (It is stopped once the failure reaches
    :func:`job_scope`: one of them exiting non-zero before that, while Lightning runs its exception hooks, still
    has every process killed, as Lightning's own watcher does.)"""

    def __init__(self, procs: list[subprocess.Popen], main_pid: int, period_s: float = 5.0) -> None:
        from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver

        super().__init__(daemon=True, name="spikelight-process-watcher")
        self._lightning = _ChildProcessObserver(main_pid=main_pid, child_processes=procs)
        self._period_s, self._lock, self._stopped = period_s, threading.Lock(), threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._period_s):
            with self._lock:  # stop() waits for a look in progress to end
                if self._stopped.is_set() or self._lightning._run():
                    return

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()


def _watch_started(child_processes: list[subprocess.Popen], main_pid: int | None = None) -> None:
    """Lightning's ``_launch_process_observer`` (what its launcher calls once it started the processes), with a
    watcher :func:`_stop_started` can stop; ``main_pid`` (tests): the process the watcher kills, else this one."""
    watcher = _Watcher(child_processes, os.getpid() if main_pid is None else main_pid)
    watcher.start()
    _started.append((child_processes, watcher))


def agreed_stop(err: BaseException) -> bool:
    """Whether ``err`` is a stop every process of a DDP run makes at the same step: a pre-emption
    (:class:`~spikelight.train.faults.Preempted`, agreed after each batch) or a NaN / Inf (the checks read the
    gradient averaged over the processes). The processes other than rank 0 then exit 0 and leave the report
    (exit code, stop line, ``results.json``) to rank 0."""
    from spikelight.core.errors import NonFiniteLossError
    from spikelight.train.faults import Preempted

    return isinstance(err, (Preempted, NonFiniteLossError))


def _stop_started(grace_s: float | None = None) -> None:
    """After the running job failed in this process: stop the watcher of the processes Lightning's launcher
    started, give them ``grace_s`` (:data:`STOP_GRACE_S`) to exit by themselves, then SIGKILL those still running
    (as Lightning does after a Ctrl-C), so that none waits for this process in a collective. Interrupted (a
    Ctrl-C while waiting), it kills them at once."""
    running = [proc for procs, _ in _started for proc in procs if proc.poll() is None]
    for _, watcher in _started:
        watcher.stop()
    _started.clear()
    if not running:
        return
    grace_s = STOP_GRACE_S if grace_s is None else grace_s
    print(f"[spikelight] this process failed: waiting up to {grace_s:g} s for the {len(running)} other processes of "
          "the run to exit, then stopping them", file=sys.stderr, flush=True)
    deadline = time.monotonic() + grace_s
    try:
        for proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.kill()
        for proc in running:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # (uninterruptible: left to the system)
                pass


# --- processes started by torchrun / srun ------------------------------------------
def launcher(env: Mapping[str, str] | None = None) -> str | None:
    """``"torchrun"`` or ``"srun"`` when this process is one of several ranks such a
    launcher started, else None."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" in env and int(env.get("WORLD_SIZE", "1")) > 1:
        return "torchrun"
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1 and env.get("SLURM_JOB_NAME") not in (
            "bash", "interactive"):
        return "srun"
    return None


def _rank(env: Mapping[str, str]) -> int:
    return int(env.get("RANK", env.get("SLURM_PROCID", "0")))


def launcher_overrides(argv: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    """Overrides to add to the command line of a rank started by torchrun / srun:
    one run folder for all ranks (``runs/torchrun-<run id>`` / ``runs/slurm-<job>.<step>``)
    unless ``hydra.run.dir`` is given, and no Hydra files from ranks other than 0.

    Raises :class:`ConfigError` for ``-m`` under such a launcher (every rank would run
    the whole sweep: use ``hydra/launcher=slurm``)."""
    env = os.environ if env is None else env
    kind = launcher(env)
    if kind is None:
        return []
    if "-m" in argv or "--multirun" in argv or any(a.startswith("hparams_search=") for a in argv):
        raise ConfigError(f"a sweep (-m) under {kind} would run every job in every rank; sweep with "
                          "`python train.py -m hydra/launcher=slurm ...` (one SLURM job per sweep job) or run "
                          "single jobs under it")
    extra: list[str] = []
    if not any(a.split("=", 1)[0] == "hydra.run.dir" for a in argv):
        if kind == "torchrun":
            run_id = env.get("TORCHELASTIC_RUN_ID", "none")
            if run_id == "none":  # torchrun without --rdzv-id/--standalone: the agent's port is shared by its ranks
                run_id = f"{env.get('MASTER_ADDR', 'local')}-{env.get('MASTER_PORT', '0')}"
            name = f"torchrun-{run_id}"
        else:
            name = f"slurm-{env.get('SLURM_JOB_ID', '0')}.{env.get('SLURM_STEP_ID', '0')}"
        extra.append(f"hydra.run.dir=${{paths.log_dir}}/${{task_name}}/runs/{name}")
    if _rank(env) != 0:
        extra.append("hydra.output_subdir=null")
    return extra

