"""Sweeps and scale-out: a real ``-m`` grid with its report and wandb group, Optuna, DDP
processes per sweep job, torchrun / srun run folders, same seed → same metrics."""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikelight.app import distributed
from spikelight.app.sweep_report import Job, _markdown, _swept, heat_grid, main, table
from spikelight.core.errors import ConfigError

from ..conftest import compose_cfg, run_cli

SMALL = ["print_config=false", "accelerator=cpu", "data=digits", "T=4", "trainer.max_epochs=1",
         "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
         "trainer.num_sanity_val_steps=0", "++callbacks.spike_plots=null"]


def _wandb_records(path: Path) -> list:
    """The records of an offline wandb run file (``run-<id>.wandb``): what ``wandb sync`` uploads.
    LevelDB-style log: a 7-byte file header, 32 KiB blocks of (crc32, length, type) chunks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, parts = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7]) if left >= 7 else (0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block padding
            pos += left
            continue
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
            parts = b""
    return out


def _offline_run(folder: Path) -> dict:
    """group, name, config, logged scalar keys and image files of the one offline run under ``folder``."""
    runs = list(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    run: dict = {"scalars": {}, "files": set()}
    for r in _wandb_records(runs[0]):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run.update(group=r.run.run_group, name=r.run.display_name,
                       config={i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "history":
            for item in r.history.item:
                run["scalars"][item.key or "/".join(item.nested_key)] = item.value_json
        elif kind == "files":
            run["files"] |= {f.path for f in r.files.files}
        elif kind == "exit":
            run["finished"] = True
    return run


def test_grid_sweep_report_and_wandb_group(tmp_path):
    """A 2x2 grid (one tau invalid: two jobs fail) with CSV + wandb offline: every job gets its
    folder, the sweep goes on past failures and ends with one line; the report lists all four,
    sorted, failed last, with a heat-map; each job is one finished wandb run in the sweep's group."""
    sweep = tmp_path / "sweep"
    home = tmp_path / "home"  # no ~/.netrc: wandb goes offline on its own
    home.mkdir()
    proc = run_cli("train.py", "-m", "neuron.tau=0.5,2.0", "surrogate.alpha=2,4", "logger=[csv,wandb]", *SMALL[:-1],
                   f"hydra.sweep.dir={sweep}", env={"WANDB_MODE": None, "WANDB_API_KEY": None, "HOME": str(home)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    last = lines[-1]  # our one line ends the sweep, not Hydra's hint
    assert last.startswith("error: 2 of 4 sweep jobs failed; job 0: ") and "LIF tau must be > 1" in last, last
    assert last.endswith(f"the report lists them: python -m spikelight.sweep_report {sweep}")
    # the offline switch of job 1 (wandb sets WANDB_MODE for its process) did not leak into job 2
    assert proc.stdout.count("logging offline") == 2, proc.stdout[-2000:]

    # as a user runs it: the report goes to wandb as the jobs did (offline)
    report = run_cli("-m", "spikelight.sweep_report", str(sweep), env={"WANDB_MODE": None, "HOME": str(home)})
    assert report.returncode == 0, report.stderr[-3000:]
    out = report.stdout
    assert "4 jobs, 2 ok" in out
    with open(sweep / "report" / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["job"]) for r in rows) == [0, 1, 2, 3]
    done = [r for r in rows if r["status"] == "ok"]
    assert [r["neuron.tau"] for r in done] == ["2.0", "2.0"] and [r["neuron.tau"] for r in rows[2:]] == ["0.5", "0.5"]
    accs = [float(r["val/acc_best"]) for r in done]
    assert accs == sorted(accs, reverse=True)
    for r in done:
        body = json.loads((sweep / r["job"] / "results.json").read_text())
        assert float(r["val/acc_best"]) == pytest.approx(body["metrics"]["val/acc_best"], abs=1e-4)
        assert float(r["test/acc"]) == pytest.approx(body["metrics"]["test/acc"], abs=1e-4) and float(r["seconds"]) > 0
    assert all(r["status"].startswith("failed: LIF tau must be > 1") for r in rows[2:])
    assert (sweep / "report" / "val_acc_best.png").stat().st_size > 5000

    groups = set()
    for job in ("2", "3"):
        run = _offline_run(sweep / job)
        groups.add(run["group"])
        assert run["finished"] and run["name"].startswith(f"{job}: neuron.tau=2.0 surrogate.alpha=")
        assert run["config"]["neuron/tau"] == 2.0 and "neuron.tau=2.0" in run["config"]["overrides"]
        assert {"val/acc", "val/acc_best", "test/acc", "train/fr/neuron"} <= set(run["scalars"])
        assert any(f.startswith("media/images/plots/curves") for f in run["files"]), run["files"]
    assert groups == {f"train/{sweep.name}"}
    report = _offline_run(sweep / "report")  # the report, logged to the same group
    assert report["group"] == f"train/{sweep.name}" and report["name"] == "sweep report"
    assert any("table" in f for f in report["files"]) and any(f.endswith(".png") for f in report["files"])


def _job(num: int, tau: str, alpha: str, acc: float | None) -> Job:
    if acc is None:
        return Job(num, Path(str(num)), {"neuron.tau": tau, "surrogate.alpha": alpha, "seed": "0"}, "failed",
                   error="error: diverged")
    return Job(num, Path(str(num)), {"neuron.tau": tau, "surrogate.alpha": alpha, "seed": "0"}, "ok", 1.0,
               {"val/acc_best": acc, "test/acc": acc - 0.01, "test/fr/a.neuron": 0.1, "test/fr/b.neuron": 0.3})


def test_report_table_and_heat_grid_from_jobs():
    jobs = [_job(0, "2", "1", 0.5), _job(1, "2", "4", 0.7), _job(2, "10", "1", None), _job(3, "10", "4", 0.6),
            _job(4, "10", "4", 0.65)]  # 4: a second seed of 3's cell
    header, rows = table(jobs)
    assert header[:3] == ["job", "neuron.tau", "surrogate.alpha"] and "seed" not in header
    assert [r[0] for r in rows] == [1, 4, 3, 0, 2]
    assert rows[0][header.index("firing_rate")] == pytest.approx(0.2)
    assert rows[-1][-1] == "failed: diverged"
    # an Optuna float is shown to 4 significant digits; a value as typed (2, 10) as typed
    optuna = Job(5, Path("5"), {"neuron.tau": "2.718281828459045", "surrogate.alpha": "1", "seed": "0"}, "ok", 1.0,
                 {"val/acc_best": 0.9})
    header, rows = table([*jobs, optuna])
    assert rows[0][1:3] == [2.718281828459045, "1"] and "| 5 | 2.718 | 1 | 0.9 |" in _markdown(header, rows)
    assert _swept("2.0") == "2.0" and _swept("1e-3") == "1e-3" and _swept("0.00012345") == 0.00012345
    grid = heat_grid(jobs, "val/acc_best", "neuron.tau", "surrogate.alpha", ["2", "10"], ["1", "4"])
    assert grid[0][0] == 0.5 and math.isnan(grid[0][1]) and grid[1] == [0.7, 0.65]


def test_report_refuses_a_folder_without_jobs(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} holds no job folders")


def test_optuna_three_trials_survive_a_failed_trial(tmp_path):
    """TPE (seeded) over tau in {0.5 (refused), 5}: failed trials are recorded and the search goes
    on (max_failure_rate); the sweeper's best value is the best job's val/acc_best."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "optuna"
    proc = run_cli("train.py", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3",
                   "hydra.sweeper.max_failure_rate=1.0", "neuron.tau=choice(0.5,5.0)", *SMALL,
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the end says how to make the report
    end = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"\[spikelight\] sweep done: 3 jobs \([12] failed\) in {sweep}; its report: "
                        rf"python -m spikelight.sweep_report {sweep}", end), end
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert sorted(results) == ["0", "1", "2"]
    statuses = [r["status"] for r in results.values()]
    assert "failed" in statuses and "ok" in statuses, statuses
    best = max(r["metrics"]["val/acc_best"] for r in results.values() if r["status"] == "ok")
    assert f"best_value: {best}" in (sweep / "optimization_results.yaml").read_text()


def test_same_seed_same_metrics_on_cpu(tmp_path):
    overrides = [o for o in SMALL if not o.startswith("++")] + ["callbacks=none", "logger=none"]

    def run(seed: int, name: str) -> dict[str, float]:
        from spikelight.app.cli import train

        return train(compose_cfg("train", [*overrides, f"seed={seed}"], tmp_path / name))

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    for key in ("val/acc", "val/loss", "train/loss_epoch", "test/acc"):
        assert a[key] == b[key], key
    assert a["train/loss_epoch"] != c["train/loss_epoch"]  # the seed matters (Poisson spikes, init)


# --- DDP: processes of one job only --------------------------------------------------------
def test_ddp_processes_run_this_job_in_its_folder(tmp_path):
    """The command Lightning's DDP launcher starts for rank 1 inside a sweep job: the job's own
    overrides, as a single run in the job's folder, writing no Hydra files; never ``-m``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    cfg = compose_cfg("train", ["neuron.tau=5.0", "accelerator=ddp"], tmp_path / "sweep" / "3")
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.overrides.hydra = ["hydra.sweep.dir=/x", "hydra.mode=MULTIRUN", "hydra.verbose=true"]
    HydraConfig().set_config(cfg)
    try:
        command, cwd = distributed.ddp_job_command(1)
    finally:  # later tests must not see a sweep
        HydraConfig.instance().cfg = None
    i = command.index("neuron.tau=5.0")
    assert "-m" not in command[3:] and command[i + 1] == "accelerator=ddp"
    assert f"hydra.run.dir='{tmp_path / 'sweep' / '3'}'" in command and "hydra.mode=RUN" in command
    assert "hydra.verbose=true" in command and not any(c.startswith("hydra.sweep.dir") for c in command)
    assert "hydra.output_subdir=null" in command and cwd == os.getcwd()
    # what marks it as started by rank 0 (its arguments taken as they are): the job name and the launcher's LOCAL_RANK
    assert distributed.started_by_rank_zero(command, {"LOCAL_RANK": "1"})
    assert not distributed.started_by_rank_zero(command, {"LOCAL_RANK": "0"})
    assert not distributed.started_by_rank_zero(command, {"LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2"})
    distributed.install_ddp_job_command()
    from lightning.fabric.strategies.launchers import subprocess_script as fabric_launcher
    from lightning.pytorch.strategies.launchers import subprocess_script

    assert subprocess_script._hydra_subprocess_cmd is distributed.ddp_job_command
    # Lightning's launcher calls its module's _launch_process_observer (a renamed one would leave ours unused)
    assert "_launch_process_observer(self.procs)" in inspect.getsource(subprocess_script._SubprocessScriptLauncher)
    assert subprocess_script._launch_process_observer is fabric_launcher._launch_process_observer is distributed._watch_started


def test_a_ddp_process_takes_rank_zeros_resolved_arguments_as_they_are(tmp_path, monkeypatch):
    """Resumed with ``~callbacks.fault`` (the run had added it), rank 0 leaves the run's fault out; rank 1, started
    with rank 0's arguments, must not merge the checkpoint's overrides again (it brought the fault back in rank 1
    alone: rank 1 killed itself, rank 0 lost its peer)."""
    import torch

    from spikelight.app.ckpt import OVERRIDES
    from spikelight.app.cli import preflight_or_exit

    ckpt = tmp_path / "run" / "checkpoints" / "interval.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, OVERRIDES: ["accelerator=ddp", "+callbacks.fault._target_=tests.fault_injection.SignalAt"]},
               ckpt)
    rank0 = preflight_or_exit(["train.py", f"ckpt_path={ckpt}", "~callbacks.fault"], "train")[1:]
    assert not any("fault" in a for a in rank0) and "accelerator=ddp" in rank0, rank0
    rank1 = [*rank0, "hydra.mode=RUN", f"hydra.job.name={distributed.PROCESS_JOB}1", "hydra.output_subdir=null"]
    monkeypatch.setenv("LOCAL_RANK", "1")  # as Lightning's launcher starts it
    assert distributed.started_by_rank_zero(rank1) and not distributed.started_by_rank_zero(rank0)
    assert preflight_or_exit(["train.py", *rank1], "train") == ["train.py", *rank1]
    monkeypatch.delenv("LOCAL_RANK")  # typed by a user, the job name alone skips no check
    with pytest.raises(SystemExit):
        preflight_or_exit(["train.py", *rank1], "train")


def test_job_scope_restores_the_job_environment(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with distributed.job_scope():
        os.environ["LOCAL_RANK"] = "0"  # what Lightning's launcher sets for the main process
        os.environ["WANDB_MODE"] = "dryrun"  # what an offline WandbLogger sets
    assert "LOCAL_RANK" not in os.environ and os.environ["WANDB_MODE"] == "disabled"


def _sleeper(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_a_job_failed_in_rank_zero_kills_the_processes_left_waiting_for_it(monkeypatch, capsys):
    """Rank 0 of Lightning's launcher failed alone (its checkpoint write, say): the process still waiting for it
    (in a collective that NCCL would hold for 30 minutes) is killed after the grace, said in one line; one that
    exits by itself within the grace is not; the watcher, stopped first, kills no one else (here its 'main
    process' is a stand-in, which must outlive it)."""
    monkeypatch.setattr(distributed, "STOP_GRACE_S", 3.0)
    exiting, waiting, main = _sleeper(0.5), _sleeper(120), _sleeper(120)
    try:
        distributed._watch_started([exiting, waiting], main_pid=main.pid)
        watcher = distributed._started[0][1]
        start = time.monotonic()
        with pytest.raises(OSError, match="No space"), distributed.job_scope():
            raise OSError(28, "No space left on device")
        assert 2.5 < time.monotonic() - start < 30
        assert waiting.returncode == -signal.SIGKILL and exiting.returncode == 0
        assert "waiting up to 3 s for the 2 other processes" in capsys.readouterr().err
        watcher.join(timeout=10)
        assert not watcher.is_alive() and distributed._started == []
        with pytest.raises(subprocess.TimeoutExpired):  # not killed (a kill is not instant: wait a second for it)
            main.wait(timeout=1)
    finally:
        for p in (waiting, exiting, main):
            p.kill()
            p.wait()


def test_a_ctrl_c_while_rank_zero_waits_for_the_others_kills_them_at_once(monkeypatch):
    """The wait after a failure is interrupted (a Ctrl-C: the user saw the run hang): the processes are killed
    then, not left waiting (nothing else would kill them: the watcher is stopped)."""
    monkeypatch.setattr(distributed, "STOP_GRACE_S", 60.0)
    waiting, main = _sleeper(120), _sleeper(120)

    def ctrl_c(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        distributed._watch_started([waiting], main_pid=main.pid)
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt), distributed.job_scope():
            raise RuntimeError("a logger failed on rank 0")
        assert time.monotonic() - start < 30 and waiting.wait(timeout=10) == -signal.SIGKILL
        assert main.poll() is None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        for p in (waiting, main):
            p.kill()
            p.wait()


def test_a_stop_every_process_agreed_on_leaves_the_others_to_exit_by_themselves(monkeypatch):
    """A pre-emption or a NaN stops every process at the same step; the others exit 0 by themselves (rank 0 neither
    waits for nor kills them, and its watcher stays on)."""
    from spikelight.core.errors import NonFiniteLossError
    from spikelight.train.faults import Preempted

    monkeypatch.setattr(distributed, "STOP_GRACE_S", 0.0)
    for stop in (Preempted(143, "SIGTERM at epoch 0, step 4: saved x"), NonFiniteLossError("loss is nan")):
        proc, main = _sleeper(120), _sleeper(120)
        try:
            distributed._watch_started([proc], main_pid=main.pid)
            watcher = distributed._started[0][1]
            with pytest.raises(type(stop)), distributed.job_scope():
                raise stop
            time.sleep(0.5)
            assert proc.poll() is None and watcher.is_alive() and not watcher._stopped.is_set()
        finally:
            watcher.stop()
            for p in (proc, main):
                p.kill()
                p.wait()


@pytest.mark.parametrize(("env", "reports"), [
    ({}, False),  # one process
    ({"LOCAL_RANK": "1"}, False),  # (without the job name Lightning's launcher gives)
    ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, True),
    ({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, False),
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "job"}, True),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "job"}, False),
])  # fmt: skip
def test_the_ranks_other_than_zero_leave_an_agreed_stop_to_rank_zero(env, reports):
    """After a pre-emption or a NaN every process stops; those other than rank 0 exit 0 (torchrun, srun
    --kill-on-bad-exit and Lightning's watcher end the whole run when one exits non-zero, rank 0 in the middle
    of its report)."""
    assert distributed.reports_to_rank_zero(["model=lsnn"], env) is reports
    started = ["model=lsnn", f"hydra.job.name={distributed.PROCESS_JOB}1"]
    assert distributed.reports_to_rank_zero(started, {"LOCAL_RANK": "1"})


def test_a_job_that_ends_well_leaves_the_processes_it_started_alone():
    proc, main = _sleeper(120), _sleeper(120)
    try:
        distributed._watch_started([proc], main_pid=main.pid)
        with distributed.job_scope():
            pass
        assert proc.poll() is None and distributed._started == []
        proc.kill()  # then one of them fails: the watcher (every 5 s), still on, kills the main process as Lightning's
        assert main.wait(timeout=20) == -signal.SIGKILL
    finally:
        for p in (proc, main):
            p.kill()
            p.wait()


@pytest.mark.parametrize(("env", "rank_dir"), [
    ({"TORCHELASTIC_RUN_ID": "abc", "WORLD_SIZE": "2", "RANK": "1"}, "torchrun-abc"),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0",
      "SLURM_JOB_NAME": "job"}, "slurm-77.0"),
])
def test_torchrun_and_srun_ranks_share_one_run_folder(env, rank_dir):
    extra = distributed.launcher_overrides(["model=lsnn"], env)
    assert extra[0] == f"hydra.run.dir=${{paths.log_dir}}/${{task_name}}/runs/{rank_dir}"
    assert ("hydra.output_subdir=null" in extra) == (env.get("RANK", env.get("SLURM_PROCID")) != "0")
    assert distributed.launcher_overrides(["hydra.run.dir=here"], env) == extra[1:]
    with pytest.raises(ConfigError, match="hydra/launcher=slurm"):
        distributed.launcher_overrides(["-m", "neuron.tau=2,5"], env)
    assert distributed.launcher_overrides(["model=lsnn"], {"WORLD_SIZE": "1"}) == []


@pytest.mark.slow
def test_ddp_inside_a_sweep_runs_each_job_once(tmp_path):
    """-m with accelerator=ddp devices=2 (CPU, gloo): each job starts its own 2 processes, which run
    that job only (Lightning alone re-runs the whole sweep in them and hangs), one set of outputs."""
    sweep = tmp_path / "sweep"
    proc = run_cli("train.py", "-m", "seed=0,1", "accelerator=ddp", "trainer.devices=2", *SMALL[:1], *SMALL[2:],
                   f"hydra.sweep.dir={sweep}", timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("MEMBER: 2/2") + proc.stderr.count("MEMBER: 2/2") == 2
    for job in ("0", "1"):
        body = json.loads((sweep / job / "results.json").read_text())
        assert body["status"] == "ok" and 0 <= body["metrics"]["test/acc"] <= 1
        names = sorted(p.name for p in (sweep / job).iterdir())
        assert names == [".hydra", "checkpoints", "config_resolved.yaml", "csv", "results.json", "train.log"], names
        assert len((sweep / job / "csv" / "metrics.csv").read_text().splitlines()) >= 3
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]


@pytest.mark.parametrize("search", ["tau_grid", "tau_beta_grid", "optuna"])
def test_every_search_sweeps_keys_the_config_has(tmp_path, search):
    from omegaconf import OmegaConf

    cfg = compose_cfg("train", [f"hparams_search={search}"], tmp_path)
    params = cfg.hydra.sweeper.params
    assert params and cfg.hydra.mode.name == "MULTIRUN"
    for key in params:
        assert OmegaConf.select(cfg, key, default="MISSING") != "MISSING", (search, key)
    if search == "optuna":
        assert 0 < cfg.hydra.sweeper.max_failure_rate < 1 and cfg.optimized_metric == "val/acc_best"


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_write_one_run_folder(tmp_path):
    import subprocess
    import sys

    from ..conftest import ROOT

    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train.py", "accelerator=ddp", "trainer.devices=2", *SMALL[:1], *SMALL[2:],
                           f"paths.log_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stdout + proc.stderr
    runs = list((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("torchrun-"), runs
    assert json.loads((runs[0] / "results.json").read_text())["status"] == "ok"
