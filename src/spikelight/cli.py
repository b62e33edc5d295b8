"""Entry logic behind ``train.py`` and ``eval.py``: build from config, run, report.

Everything here also works without the Hydra decorator: compose a config with
``hydra.compose`` and call :func:`train` / :func:`evaluate` (the tests do).
"""

from __future__ import annotations

import netrc
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.syntax import Syntax

from spikelight.errors import ConfigError, SpikelightError
from spikelight.lit import SpikingClassifier

__all__ = [
    "build_module",
    "load_checkpoint_config",
    "load_trained",
    "build_datamodule",
    "build_callbacks",
    "build_loggers",
    "train",
    "evaluate",
    "run_task",
    "ConfigError",
]

# noise on every run that a user cannot act on (in-memory tensor data needs no workers)
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")

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
        raise ConfigError("model.in_features=null needs a sequence dataset (data=smnist|sfmnist|psmnist|sdigits); set it")
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


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Loggers from the ``logger`` group (a dict of name → config). wandb goes
    offline when no API key is configured, so it works without an account."""
    loggers: list[Logger] = []
    for conf in (cfg.get("logger") or {}).values():
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            continue
        if conf._target_.endswith("WandbLogger"):
            if not conf.get("offline") and not os.environ.get("WANDB_MODE") and not _has_wandb_credentials():
                print("[spikelight] wandb: no API key configured, logging offline (upload later with `wandb sync`)")
                conf = OmegaConf.merge(conf, {"offline": True})
        loggers.append(_build(conf))
    return loggers


def build_callbacks(cfg: DictConfig, has_logger: bool) -> list[Callback]:
    callbacks: list[Callback] = []
    for conf in (cfg.get("callbacks") or {}).values():
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            continue
        cb = _build(conf)
        if isinstance(cb, LearningRateMonitor) and not has_logger:
            continue  # Lightning refuses an LR monitor without a logger
        callbacks.append(cb)
    return callbacks


def _save_config(cfg: DictConfig, output_dir: Path | None) -> None:
    yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if cfg.get("print_config", True):
        Console().print(Syntax(yaml, "yaml"))
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config_resolved.yaml").write_text(yaml)


def _output_dir(cfg: DictConfig) -> Path | None:
    out = OmegaConf.select(cfg, "paths.output_dir")
    return Path(out) if out else None


def _finish_wandb() -> None:
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (optionally resuming from ``ckpt_path``), then test the best checkpoint.

    Returns the final metrics (``val/acc_best``, ``test/acc``, ...) as floats.
    """
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    fill_in_features(cfg, datamodule)
    _save_config(cfg, _output_dir(cfg))
    module = build_module(cfg)
    loggers = build_loggers(cfg)
    extra = {}
    if not module.automatic_optimization:  # online learning steps itself: it clips, not the Trainer
        module.manual_gradient_clip_val = cfg.trainer.get("gradient_clip_val")
        extra["gradient_clip_val"] = None
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg, bool(loggers)), logger=loggers or False, _convert_="all", **extra
    )
    metrics: dict[str, float] = {}
    try:
        if cfg.get("train", True):
            ckpt = cfg.get("ckpt_path")
            if ckpt and not Path(ckpt).exists():
                raise ConfigError(f"ckpt_path={ckpt} does not exist")
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if cfg.get("test", True):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    finally:
        _finish_wandb()
    out = _output_dir(cfg)
    if out is not None:
        print(f"[spikelight] outputs in {out}")
    return metrics


def load_checkpoint_config(path: str) -> dict:
    """The plain run config stored in a spikelight checkpoint (``weights_only`` load)."""
    if not Path(path).exists():
        raise ConfigError(f"ckpt_path={path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    config = ckpt.get("hyper_parameters", {}).get("config")
    if not config:
        raise ConfigError(f"{path} has no spikelight config in its hyper_parameters; was it written by train.py?")
    return config


def load_trained(path: str) -> tuple[SpikingClassifier, DictConfig]:
    """Rebuild a trained SpikingClassifier from a checkpoint; returns (module in eval mode, its config)."""
    cfg = OmegaConf.create(load_checkpoint_config(path))
    module = build_module(cfg)
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return module.eval(), cfg


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint. The model is rebuilt from the config stored in the
    checkpoint; ``data`` defaults to the training data unless given."""
    L.seed_everything(cfg.seed, workers=True)
    saved = OmegaConf.create(load_checkpoint_config(cfg.ckpt_path))
    if cfg.get("data") is not None:
        saved.data = cfg.data
    _save_config(cfg, _output_dir(cfg))
    datamodule = build_datamodule(saved)
    module = build_module(saved)
    loggers = build_loggers(cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg, bool(loggers)), logger=loggers or False, _convert_="all"
    )
    try:
        trainer.test(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    finally:
        _finish_wandb()
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _root_cause(err: BaseException) -> BaseException:
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def run_task(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float | None:
    """Run ``task``; known user errors become one line on stderr and exit code 2
    (``HYDRA_FULL_ERROR=1`` shows the full traceback instead).

    Returns ``cfg.optimized_metric`` from the metrics (for Hydra sweepers) if set.
    """
    try:
        metrics = task(cfg)
    except (InstantiationException, SpikelightError, OmegaConfBaseException) as err:
        cause = _root_cause(err)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # a bad constructor argument surfaces as ValueError/TypeError inside InstantiationException
        if not isinstance(cause, (SpikelightError, ValueError, TypeError, OmegaConfBaseException)):
            raise
        msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    name = cfg.get("optimized_metric")
    if name:
        if name not in metrics:
            print(f"error: optimized_metric={name} was not logged; have {sorted(metrics)}", file=sys.stderr)
            sys.exit(2)
        return metrics[name]
    return None
