"""Entry logic behind ``train.py`` and ``eval.py``: build from config, run, report.

Everything here also works without the Hydra decorator: compose a config with
``hydra.compose`` and call :func:`train` / :func:`evaluate` (the tests do).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import netrc
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.errors import CompactHydraException, InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException
from rich.console import Console
from rich.syntax import Syntax

from spikelight.app import console
from spikelight.app.checks import check_accelerator, check_ranges, check_types, device_note, resume_run_dir
from spikelight.app.ckpt import check_fits, load_checkpoint, newest_checkpoint, resolve_ckpt_path
from spikelight.app.compat import upgrade_targets
from spikelight.app.denormals import flush_denormals
from spikelight.app.distributed import (
    install_ddp_job_command,
    job_scope,
    launcher_overrides,
    reports_to_rank_zero,
    started_by_rank_zero,
)
from spikelight.app.rundir import (
    clear_failed_mark,
    continue_metrics_csv,
    finish_failed_run,
    logger_step,
    resume_command,
)
from spikelight.app.trust import check_trusted
from spikelight.core.errors import CheckpointError, ConfigError, NonFiniteLossError, SpikelightError
from spikelight.core.files import atomic_open, remove_leftovers
from spikelight.train.faults import Preempted
from spikelight.train.module import SpikingClassifier

__all__ = [
    "build_module",
    "load_checkpoint_config",
    "load_trained",
    "build_datamodule",
    "build_callbacks",
    "build_loggers",
    "train",
    "evaluate",
    "build_trainer",
    "run_task",
    "preflight_or_exit",
    "hydra_script",
    "ConfigError",
]

console.quiet()
log = logging.getLogger("spikelight")

MODEL_KEYS = (
    "model", "encoder", "readout", "loss", "optimizer", "scheduler", "neuron", "surrogate", "regularizer",
    "scheduler_interval", "learning",
)


def _plain(cfg: DictConfig) -> dict:
    """Resolved config as plain Python containers (safe for ``weights_only`` checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def _build(node: Any) -> Any:
    """``instantiate`` with plain containers; None stays None."""
    if node is None:
        return None
    return instantiate(node, _convert_="all")


def build_module(cfg: DictConfig) -> SpikingClassifier:
    """The LightningModule described by ``cfg`` (model, encoder, readout, loss, optimizer, scheduler)."""
    plain = _plain(cfg)
    return SpikingClassifier(
        model=_build(cfg.model),
        encoder=_build(cfg.get("encoder")),
        readout=_build(cfg.readout),
        loss=_build(cfg.loss),
        optimizer=_build(cfg.optimizer),
        scheduler=_build(cfg.get("scheduler")),
        num_classes=int(cfg.get("num_classes", 10)),
        config={k: plain[k] for k in (*MODEL_KEYS, "data", "T", "num_classes", "seed") if k in plain},
        regularizer=_build(cfg.get("regularizer")),
        scheduler_interval=cfg.get("scheduler_interval") or "epoch",
        learning=_build(cfg.get("learning")),
    )


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return _build(cfg.data)


def fill_in_features(cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """``model.in_features: null`` follows the data: the DataModule's inputs per step
    (``num_features``), through the encoder's ``out_features`` (e.g. 80 for threshold
    crossing). Written into ``cfg`` so the checkpoint stores the number."""
    if OmegaConf.select(cfg, "model.in_features", default=0) is not None:
        return
    feats = getattr(datamodule, "num_features", None)
    if feats is None:
        shape = getattr(datamodule, "in_shape", None)
        name = OmegaConf.select(cfg, "data._target_", default="?").rsplit(".", 1)[-1]
        flat = math.prod(shape) if shape else None
        what = f"{name} gives images {list(shape)}" if shape else f"{name} states no inputs per step"
        fix = f"set model.in_features={flat} (the image flattened, one per step)" if flat else "set model.in_features"
        raise ConfigError(f"model.in_features=null follows a sequence dataset's inputs per step, but {what}; "
                          f"use data=smnist|sfmnist|psmnist|sdigits, or {fix}")
    encoder = _build(cfg.get("encoder"))
    if encoder is not None and hasattr(encoder, "out_features"):
        feats = encoder.out_features(feats)
    with open_dict(cfg):
        cfg.model.in_features = int(feats)


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def build_loggers(cfg: DictConfig, append: bool = False) -> list[Logger]:
    """Loggers from the ``logger`` group (a dict of name → config). wandb goes
    offline when no API key is configured, so it works without an account;
    ``append`` makes the CSV logger continue an existing ``metrics.csv`` (resume)."""
    loggers: list[Logger] = []
    for conf in (cfg.get("logger") or {}).values():
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            continue
        if conf._target_.endswith("WandbLogger"):
            if not conf.get("offline") and not os.environ.get("WANDB_MODE") and not _has_wandb_credentials():
                log.info("[spikelight] wandb: no API key configured, logging offline (upload later with `wandb sync`)")
                conf = OmegaConf.merge(conf, {"offline": True})
            # passed as arguments, not merged into the node: config keys are free text
            factory = instantiate(conf, _convert_="all", _partial_=True)
            loggers.append(factory(**_wandb_run_fields(cfg, conf)))
            continue
        if append and conf._target_ == "spikelight.train.loggers.CSVLogger":
            conf = conf.copy()
            with open_dict(conf):
                conf.append = True
        loggers.append(_build(conf))
    return loggers


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested plain config as ``{"a/b/c": value}`` (wandb's run table shows one column per key)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}/"))
        return out
    return {prefix.rstrip("/"): node if isinstance(node, (int, float, str, bool)) or node is None else str(node)}


def _wandb_run_fields(cfg: DictConfig, conf: DictConfig) -> dict[str, Any]:
    """wandb.init fields of a run: in a ``-m`` sweep the group is the sweep (``<task>/<sweep folder>``,
    unless ``logger.wandb.group`` is set) and the name the job's overrides; the config holds the
    job's overrides and the flattened run config (the checkpoint's nested config is logged too)."""
    from hydra.core.hydra_config import HydraConfig

    from spikelight.app.sweep_report import sweep_group

    fields: dict[str, Any] = {}
    plain = {k: v for k, v in _plain(cfg).items() if k != "hydra"}
    overrides: list[str] = []
    sweep = _sweep_dir()
    if HydraConfig.initialized():
        overrides = list(HydraConfig.get().overrides.task)
    if sweep is not None:
        if not conf.get("group"):
            fields["group"] = sweep_group(str(cfg.get("task_name", "train")), sweep)
        if conf.get("name") in (None, cfg.get("task_name")):
            job = HydraConfig.get().job.num
            fields["name"] = f"{job}: {' '.join(o for o in overrides if not o.startswith('hparams_search='))}"[:120]
    fields["config"] = {"overrides": overrides, **_flat(plain)}
    return fields


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[Callback]:
    """The ``callbacks`` group's callbacks, plus :class:`~spikelight.train.callbacks.ModelSummaryLine`
    (one line, where Lightning would add its table) unless the config has a model summary of its own
    or ``trainer.enable_model_summary=false``."""
    from lightning.pytorch.callbacks import ModelSummary

    from spikelight.train.callbacks import ModelSummaryLine
    from spikelight.train.faults import IntervalCheckpoint, PreemptionCheckpoint

    callbacks: list[Callback] = []
    for conf in (cfg.get("callbacks") or {}).values():
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            continue
        cb = _build(conf)
        if isinstance(cb, LearningRateMonitor) and not has_logger:
            continue  # Lightning refuses an LR monitor without a logger
        callbacks.append(cb)
    wanted = OmegaConf.select(cfg, "trainer.enable_model_summary", default=True) is not False
    if wanted and not any(isinstance(cb, ModelSummary) for cb in callbacks):
        callbacks.append(ModelSummaryLine())
    # the checkpoints written inside an epoch hold the other callbacks' record of the batch they follow (as
    # Lightning runs its ModelCheckpoints last); a stable sort keeps the rest in the config's order
    return sorted(callbacks, key=lambda cb: isinstance(cb, (IntervalCheckpoint, PreemptionCheckpoint)))


def build_trainer(cfg: DictConfig, loggers: list[Logger], **overrides: Any) -> L.Trainer:
    """The Lightning Trainer of ``cfg.trainer`` with the configured callbacks and loggers."""
    return instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg, bool(loggers)), logger=loggers or False, _convert_="all",
        **overrides,
    )


def _save_config(cfg: DictConfig, output_dir: Path | None, subdir: str | None = None) -> None:
    """Write the resolved config to ``<run>/[subdir/]config_resolved.yaml`` and say in one line where the run
    goes and with which overrides (``print_config=true`` prints the whole config too)."""
    if rank_zero_only.rank != 0:
        return  # DDP workers share rank 0's folder
    yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if cfg.get("print_config", False):
        Console().print(Syntax(yaml, "yaml"))
    if output_dir is None:
        return
    folder = output_dir / subdir if subdir else output_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config_resolved.yaml").write_text(yaml)
    typed = _task_overrides(keep_all=True)  # (ckpt_path too: eval.py's one override)
    shown = " ".join(typed) if typed else "none"
    log.info(f"[spikelight] overrides: {shown}; run folder: {output_dir} "
             f"(full config: {(folder / 'config_resolved.yaml').relative_to(output_dir)})")


def _task_overrides(keep_all: bool = False) -> list[str] | None:
    """The run's command-line overrides (Hydra's ``overrides.task``) without ``ckpt_path`` (with it:
    ``keep_all``); None outside a Hydra run (a config composed by hand)."""
    from hydra.core.hydra_config import HydraConfig

    from spikelight.app.ckpt import NOT_REUSED

    if not HydraConfig.initialized():
        return None
    lines = [str(x) for x in HydraConfig.get().overrides.task]
    return [x for x in lines if keep_all or x.lstrip("+~").split("=")[0].split("@")[0] not in NOT_REUSED]


def _resume_subdir(out: Path) -> str:
    """This resume's config folder inside its run folder: the one preflight gave Hydra
    (``hydra.output_subdir``), else the next ``.hydra/resume-<n>``."""
    from hydra.core.hydra_config import HydraConfig

    from spikelight.app.rundir import resume_subdir

    if HydraConfig.initialized():
        sub = str(HydraConfig.get().output_subdir or "")
        if sub.startswith(".hydra/resume-"):
            return sub
    return resume_subdir(out)


def _output_dir(cfg: DictConfig) -> Path | None:
    try:
        out = OmegaConf.select(cfg, "paths.output_dir")
    except OmegaConfBaseException:  # outside a Hydra run
        return None
    return Path(out) if out else None


def _finish_wandb() -> None:
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _summary(metrics: dict[str, float], out: Path | None) -> None:
    if rank_zero_only.rank != 0:
        return
    shown = [f"{k} {metrics[k]:.4f}" for k in ("val/acc_best", "test/acc") if k in metrics]
    where = f"outputs in {out}" if out is not None else ""
    log.info("[spikelight] " + "; ".join([*shown, where] if where else shown))


def runs_dir(cfg: DictConfig, task: str | None = None) -> Path:
    """Where train.py's run folders are (``ckpt_path=last`` looks there): ``<log_dir>/<task>/runs``, the task
    by default this config's ``task_name`` (eval.py passes ``train``: its own task_name names its outputs)."""
    task = task or str(OmegaConf.select(cfg, "task_name", default="train") or "train")
    return Path(OmegaConf.select(cfg, "paths.log_dir", default="logs")) / task / "runs"


def _prepare_resume(ckpt: str, out: Path | None) -> tuple[bool, dict]:
    """Check ``ckpt`` (readable, ``weights_only``); when it belongs to this run's folder
    (the default, see :func:`spikelight.app.checks.preflight`), keep the folder's metrics
    up to it. Says in one line what is resumed where, and every override that differs from the
    run's (:func:`override_changes`). Returns whether the run continues in the checkpoint's own
    folder, and the loaded checkpoint."""
    from spikelight.app.ckpt import run_overrides

    loaded = load_checkpoint(ckpt)
    same = out is not None and resume_run_dir(ckpt) == out.resolve()
    if same:
        # the checkpoint directory is this run's own: Lightning's warning about it is expected
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
        if rank_zero_only.rank == 0:
            continue_metrics_csv(out / "csv" / "metrics.csv", logger_step(loaded))
        where = f"continuing in its run folder {out}"
    else:
        where = f"this run writes to {out}"
    changes = override_changes(run_overrides(ckpt, loaded), _task_overrides())
    log.info(f"[spikelight] resuming from {ckpt}, {where}; {changes}")
    return same, loaded


def override_changes(stored: list[str] | None, now: list[str] | None) -> str:
    """How this run's overrides differ from those its checkpoint's run was started with, in words:
    ``the run's overrides, unchanged`` or ``changed: trainer.max_epochs=2 -> 4; added: ...; left out: ...``."""
    if now is None:
        return "config given directly (the run's overrides are not compared)"
    if stored is None:
        return "the checkpoint stores no overrides (a checkpoint from before they were stored): this run's are used"
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()

    def parse(lines: list[str]) -> dict[tuple, tuple[str, str]]:
        out = {}
        for line in lines:
            try:
                o = parser.parse_override(line)
            except Exception:  # noqa: BLE001 - compared as written
                out[(line, None)] = (line, line)
                continue
            value = "~" if o.is_delete() else o.get_value_element_as_str()
            out[(o.key_or_group, o.package)] = (line, value)
        return out

    before, after = parse(stored), parse(now)
    changed = [f"{before[k][0]} -> {after[k][1]}" for k in after if k in before and before[k][1] != after[k][1]]
    added = [after[k][0] for k in after if k not in before]
    left = [before[k][0] for k in before if k not in after]
    parts = [f"{what}: {', '.join(items)}" for what, items in
             (("changed", changed), ("added", added), ("left out (the run had them)", left)) if items]
    return "; ".join(parts) if parts else "the run's overrides, unchanged"


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (optionally resuming from ``ckpt_path``), then test the best checkpoint.

    Returns the final metrics (``val/acc_best``, ``test/acc``, ...) as floats.
    """
    check_types(cfg)
    check_ranges(cfg)
    check_accelerator(cfg.trainer)
    if (note := device_note(cfg.trainer)) and rank_zero_only.rank == 0:
        log.warning(f"[spikelight] {note}")
    L.seed_everything(cfg.seed, workers=True)
    out = _output_dir(cfg)
    ckpt = cfg.get("ckpt_path") if cfg.get("train", True) else None
    if ckpt:
        ckpt = resolve_ckpt_path(str(ckpt), runs_dir(cfg))  # ckpt_path=last / a run folder (API use; the CLI resolved it)
    same_folder, loaded = _prepare_resume(ckpt, out) if ckpt else (False, None)
    if same_folder and out is not None and rank_zero_only.rank == 0:  # what the stopped process was writing
        for folder in (out, out / "csv", out / "checkpoints"):
            remove_leftovers(folder)
    datamodule = build_datamodule(cfg)
    fill_in_features(cfg, datamodule)
    # a resume inside its run folder keeps the run's config files: its own go to .hydra/resume-<n>/
    _save_config(cfg, out, _resume_subdir(out) if same_folder and out is not None else None)
    module = build_module(cfg)
    module.run_overrides = _task_overrides()  # stored in every checkpoint: a resume reuses them
    if loaded is not None:
        check_fits(module, loaded, ckpt)
        del loaded
    loggers = build_loggers(cfg, append=same_folder)
    extra = {}
    if not module.automatic_optimization:  # online learning steps itself: it clips, not the Trainer
        module.manual_gradient_clip_val = cfg.trainer.get("gradient_clip_val")
        extra["gradient_clip_val"] = None
    trainer = build_trainer(cfg, loggers, **extra)
    metrics: dict[str, float] = {}
    try:
        if cfg.get("train", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    finally:
        _finish_wandb()
    clear_failed_mark(out)
    _summary(metrics, out)
    return metrics


def _stored_config(ckpt: dict, path: str) -> dict:
    config = (ckpt.get("hyper_parameters") or {}).get("config")
    if not config or not isinstance(config, dict):
        raise CheckpointError(f"{path} has no spikelight config in its hyper_parameters; was it written by train.py?")
    config = upgrade_targets(config)  # a checkpoint from before a module moved names today's path
    # the model is rebuilt from this config: its _target_s must be ones spikelight trusts
    check_trusted(config, f"the config stored in {path}")
    return config


def load_checkpoint_config(path: str) -> dict:
    """The plain run config stored in a spikelight checkpoint (``weights_only`` load;
    its ``_target_``s checked by :func:`spikelight.app.trust.check_trusted`)."""
    return _stored_config(load_checkpoint(path), path)


def load_trained(path: str) -> tuple[SpikingClassifier, DictConfig]:
    """Rebuild a trained SpikingClassifier from a checkpoint; returns (module in eval mode, its config)."""
    ckpt = load_checkpoint(path)
    cfg = OmegaConf.create(_stored_config(ckpt, path))
    module = build_module(cfg)
    check_fits(module, ckpt, path)
    module.load_state_dict(ckpt["state_dict"])
    return module.eval(), cfg


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint. The model is rebuilt from the config stored in the
    checkpoint; ``data`` defaults to the training data unless given."""
    check_types(cfg)
    check_ranges(cfg)
    check_accelerator(cfg.trainer)
    L.seed_everything(cfg.seed, workers=True)
    out = _output_dir(cfg)
    _save_config(cfg, out)
    module, saved = load_trained(resolve_ckpt_path(str(cfg.ckpt_path), runs_dir(cfg, "train")))
    if cfg.get("data") is not None:
        # resolved here: ${paths.data_dir} and ${seed} live in eval's config, not in the saved one
        saved.data = OmegaConf.create(_plain(cfg.data))
    datamodule = build_datamodule(saved)
    loggers = build_loggers(cfg)
    # the weights are loaded above; no checkpoints (nor Lightning's restore of training callbacks) in eval
    trainer = build_trainer(cfg, loggers, enable_checkpointing=False)
    log.info(f"[spikelight] testing {cfg.ckpt_path}")
    try:
        trainer.test(module, datamodule=datamodule)
    finally:
        _finish_wandb()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    clear_failed_mark(out)
    _summary(metrics, out)
    return metrics


# errors a user fixes from the command line: one line, no traceback
USER_ERRORS = (InstantiationException, SpikelightError, OmegaConfBaseException, MisconfigurationException)


def _root_cause(err: BaseException) -> BaseException:
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def _one_line(err: BaseException) -> str | None:
    """The one-line message for a user error, or None for a bug (keep the traceback)."""
    cause = _root_cause(err)
    # a bad constructor argument surfaces as ValueError/TypeError inside InstantiationException
    if not isinstance(cause, (SpikelightError, ValueError, TypeError, OmegaConfBaseException, MisconfigurationException)):
        return None
    if isinstance(cause, InterpolationKeyError):
        return _missing_interpolation(cause)
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _missing_interpolation(err: InterpolationKeyError) -> str:
    """``${data.in_shape}`` read by a model whose data option does not state it (sequence data)."""
    found = re.search(r"Interpolation key '([^']+)'", str(err))
    key = found.group(1) if found else "?"
    reader = f"{err.full_key} reads" if getattr(err, "full_key", None) else "the config reads"
    if key.startswith("data."):
        return (f"{reader} ${{{key}}}, which the chosen data option does not state; pick data that does "
                f"(image data: data=digits|mnist|fashion_mnist|cifar10) or set {err.full_key or key} yourself")
    return f"{reader} ${{{key}}}, which is not set; set {key}"


def _sweep_dir() -> Path | None:
    """The folder of the running ``-m`` sweep, if this job is part of one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None


RESULTS = "results.json"


class SweepJobError(SpikelightError, CompactHydraException):
    """A job of a ``-m`` sweep failed. Raised (not ``sys.exit``) so Hydra's sweepers go on with
    the other jobs (the Optuna sweeper counts it against ``max_failure_rate``); when it ends the
    sweep, :func:`hydra_script` prints one line for it (:func:`sweep_end_line`)."""

    def __init__(self, message: str, sweep_dir: Path | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.sweep_dir = sweep_dir
        self.reason = reason


#: the folder of the last ``-m`` sweep a job of this process ran in (the basic launcher runs them here)
_LAST_SWEEP: list[Path] = []


def sweep_end_line(sweep_dir: Path, failed: SweepJobError | None = None) -> str:
    """The last line of a ``-m`` sweep: how many jobs ran and failed, and the command that makes its report."""
    from spikelight.app.sweep_report import read_sweep

    try:
        jobs = read_sweep(sweep_dir)
    except Exception:  # noqa: BLE001 - an unreadable folder: the command alone
        jobs = []
    bad = [j for j in jobs if j.status != "ok"]
    report = f"python -m spikelight.sweep_report {sweep_dir}"
    if failed is None:  # the sweep went on to its end (a sweeper may allow failed trials)
        some = f" ({len(bad)} failed)" if bad else ""
        return f"[spikelight] sweep done: {len(jobs)} jobs{some} in {sweep_dir}; its report: {report}"
    return (f"error: {max(len(bad), 1)} of {len(jobs)} sweep jobs failed; job {bad[0].num if bad else '?'}: "
            f"{failed.reason}; the report lists them: {report}")


def _write_results(cfg: DictConfig, status: str, seconds: float, metrics: dict[str, float],
                   error: str | None = None) -> None:
    """``<run>/results.json``: status (ok | failed | stopped), wall seconds, final metrics (a stopped
    run's: those when it stopped), the error line.
    Read by :mod:`spikelight.app.sweep_report`."""
    out = _output_dir(cfg)
    if rank_zero_only.rank != 0 or out is None or not out.is_dir():
        return
    body = {"status": status, "seconds": round(seconds, 3), "metrics": metrics, "error": error}
    with atomic_open(out / RESULTS, "w") as f:  # read to tell a finished run (sweeps, experiments/lsnn/queue.sh)
        f.write(json.dumps(body, indent=1) + "\n")


def _failed(cfg: DictConfig, reason: str, seconds: float, metrics: dict[str, float] | None = None,
            status: str = "failed") -> None:
    if rank_zero_only.rank == 0:
        sweep = _sweep_dir()
        # a sweep keeps a failed job's folder (its FAILED note and results) for the sweep report
        if finish_failed_run(_output_dir(cfg), reason, sweep, keep=sweep is not None) == "marked":
            _write_results(cfg, status, seconds, metrics or {}, reason)


def _stop_line(line: str) -> None:
    """``line`` on stderr, and into the run's log file (``train.log``): the console already has it. Rank 0's
    only (every process of a DDP run stops with the same line)."""
    if rank_zero_only.rank != 0:
        return
    print(line, file=sys.stderr, flush=True)
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.emit(logging.LogRecord("spikelight", logging.WARNING, __file__, 0, line, None, None))
            handler.flush()


def _job_failed_line(cfg: DictConfig, msg: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    sweep = _sweep_dir()
    return (f"sweep job {HydraConfig.get().job.num} failed ({_output_dir(cfg)}): {msg}; the other jobs ran: "
            f"python -m spikelight.sweep_report {sweep} lists them")


def run_task(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float | None:
    """Run ``task``; known user errors become one line on stderr and exit code 2
    (``HYDRA_FULL_ERROR=1`` shows the full traceback instead). A failed run's
    folder is removed if it holds nothing yet, else marked ``FAILED``. Inside a
    ``-m`` sweep a failed job raises :class:`SweepJobError` instead, so the sweep goes on.

    Each job runs in :func:`~spikelight.app.distributed.job_scope` (DDP processes of its own) with
    subnormal floats flushed to zero unless ``flush_denormal=false``
    (:func:`~spikelight.app.denormals.flush_denormals`) and leaves ``results.json`` (status, seconds, metrics).

    Returns ``cfg.optimized_metric`` from the metrics (for Hydra sweepers) if set.
    """
    install_ddp_job_command()
    sweep = _sweep_dir() is not None
    if sweep:
        _LAST_SWEEP[:] = [_sweep_dir()]
    start = time.perf_counter()
    try:
        with job_scope(), flush_denormals(cfg.get("flush_denormal", True)):
            metrics = task(cfg)
    except USER_ERRORS as err:
        msg = _one_line(err)
        _failed(cfg, f"error: {msg}" if msg else f"{type(err).__name__}: {err}", time.perf_counter() - start)
        if isinstance(err, NonFiniteLossError) and reports_to_rank_zero(sys.argv[1:]):
            sys.exit(0)  # every process stops at this step (the checks see the averaged gradient): rank 0 reports it
        if msg is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {msg}", file=sys.stderr)
        if sweep:
            raise SweepJobError("error: " + _job_failed_line(cfg, msg), _sweep_dir(), msg) from None
        sys.exit(2)
    except Preempted as err:  # SIGTERM / SIGUSR1 / SIGINT: a checkpoint was written, exit 128+signal
        _failed(cfg, f"stopped: {err.message}", time.perf_counter() - start, err.metrics, "stopped")
        resume = resume_command(err.path) if err.path is not None else "python train.py ckpt_path=last"
        _stop_line(f"stopped: {err.message}; resume: {resume}")
        if reports_to_rank_zero(sys.argv[1:]):
            # not rank 0: rank 0 gives the exit code (Lightning's watcher SIGKILLs every process, rank 0 too, as soon
            # as one of those it started exits non-zero; srun --kill-on-bad-exit ends the others); so for a NaN stop
            sys.exit(0)
        raise
    except SystemExit as err:  # Lightning exits 1 after a Ctrl-C it handled (a second Ctrl-C: no checkpoint now)
        _failed(cfg, "interrupted" if err.code else "stopped", time.perf_counter() - start)
        out = _output_dir(cfg)
        last = newest_checkpoint(out) if err.code and out is not None and out.is_dir() else None
        if last is not None and rank_zero_only.rank == 0:
            _stop_line(f"interrupted; resume from its last checkpoint: {resume_command(last)}")
        raise
    except BaseException as err:
        _failed(cfg, f"{type(err).__name__}: {err}", time.perf_counter() - start)
        raise
    _write_results(cfg, "ok", time.perf_counter() - start, metrics)
    name = cfg.get("optimized_metric")
    if name:
        if name not in metrics:
            print(f"error: optimized_metric={name} was not logged; have {sorted(metrics)}", file=sys.stderr)
            sys.exit(2)
        return metrics[name]
    return None


def preflight_or_exit(argv: list[str], config_name: str) -> list[str]:
    """:func:`spikelight.app.checks.preflight` for a script's ``sys.argv``, plus the run folder shared by the
    ranks of a ``torchrun`` / ``srun`` launch (:func:`~spikelight.app.distributed.launcher_overrides`);
    one line and exit 2 on a bad argument. A process Lightning's DDP launcher started gets rank 0's
    arguments, already checked and resolved (:func:`~spikelight.app.distributed.started_by_rank_zero`)."""
    from spikelight.app.checks import preflight

    if started_by_rank_zero(argv[1:]):
        return argv
    try:
        args = preflight(argv[1:], config_name)
        return [argv[0], *args, *launcher_overrides(args)]
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def hydra_script(task: Callable[[DictConfig], dict[str, float]], config_name: str) -> None:
    """The body of ``train.py`` / ``eval.py``: check the command line (:func:`preflight_or_exit`), then
    ``@hydra.main`` on ``conf/<config_name>.yaml`` next to the script, running ``task`` through :func:`run_task`."""
    import __main__

    sys.argv = preflight_or_exit(sys.argv, config_name)
    script = Path(__main__.__file__).resolve()

    def main(cfg: DictConfig) -> float | None:
        return run_task(task, cfg)

    # Hydra names the job (hydra.job.name: the log file <run>/<name>.log) after the module of the task
    # function: the script's, as when this function is written there
    main.__module__ = script.stem
    with _sweep_ends_in_one_line():
        hydra.main(version_base="1.3", config_path=str(script.parent / "conf"), config_name=config_name)(main)()


@contextlib.contextmanager
def _sweep_ends_in_one_line() -> Any:
    """A ``-m`` sweep ends with :func:`sweep_end_line`: the report command when it went well; one line
    (exit 2) instead of Hydra's message and ``HYDRA_FULL_ERROR`` hint when a job failed."""
    import hydra._internal.utils as hydra_utils

    real = hydra_utils.run_and_report

    def run_and_report(func: Any) -> Any:
        def ours() -> Any:
            _LAST_SWEEP.clear()
            try:
                result = func()
            except SweepJobError as err:
                if os.environ.get("HYDRA_FULL_ERROR") == "1" or err.sweep_dir is None:
                    raise
                print(sweep_end_line(err.sweep_dir, err), file=sys.stderr)
                sys.exit(2)
            if _LAST_SWEEP and rank_zero_only.rank == 0:
                log.info(sweep_end_line(_LAST_SWEEP[0]))
            return result

        return real(ours)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = real
