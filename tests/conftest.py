"""Shared fixtures: compose configs like train.py does, run the real CLI, write MNIST-format files."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from spikelight.data.mnist import MNIST_FILES, write_idx

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# the C kernels (spikelight.dynamics.native.library) build once per test session into a private cache, so the
# tests neither depend on a writable $HOME nor reuse a library built from other sources; subprocesses
# (the CLI runs) inherit it
if "SPIKELIGHT_CACHE" not in os.environ:
    os.environ["SPIKELIGHT_CACHE"] = tempfile.mkdtemp(prefix="spikelight-test-cache-")
    atexit.register(shutil.rmtree, os.environ["SPIKELIGHT_CACHE"], True)


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def _no_hydra_config_left_over():
    """Each test starts without a Hydra config set by an earlier one (compose_cfg sets the singleton; a
    multirun one left behind would make run_task treat the next test's run as a sweep job)."""
    yield
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config exactly as ``@hydra.main`` would, with outputs under output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def run_cli(script: str, *args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python train.py|eval.py args`` from the repo root, capture output.
    ``env`` values of None unset that variable."""
    full_env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run(
        [sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def run_under_triton_interpreter(script: str, timeout: int = 300) -> dict:
    """Run ``script`` in a fresh Python with ``TRITON_INTERPRET=1`` (chosen before triton is imported)
    and return the JSON object its last output line prints; fails the test on a non-zero exit."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_mnist_files(raw_dir: Path, n_train: int = 300, n_test: int = 100, gzip_train: bool = True) -> None:
    """Small learnable MNIST-format files: class k lights up row band k. Train files
    gzipped (as Debian ships them), test files plain, to cover both readers."""
    gen = torch.Generator().manual_seed(0)
    for split, n, compress in (("train", n_train, gzip_train), ("t10k", n_test, False)):
        labels = torch.arange(n) % 10
        images = (torch.rand(n, 28, 28, generator=gen) * 60).to(torch.uint8)
        for i, k in enumerate(labels.tolist()):
            images[i, 2 + 2 * k : 4 + 2 * k, 4:24] = 255
        write_idx(raw_dir / f"{split}-images-idx3-ubyte", images, compress=compress)
        write_idx(raw_dir / f"{split}-labels-idx1-ubyte", labels, compress=compress)
    assert len(MNIST_FILES) == 4
