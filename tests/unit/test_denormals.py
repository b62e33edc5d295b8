"""Runs flush subnormal floats to zero on the CPU unless ``flush_denormal=false`` (spikelight.app.denormals).

Why it matters: an LSTM's training step over 784 steps ran 7.7x slower with subnormal gradients
(experiments/benchmarks/RESULTS-denormals.md). The mode belongs to the thread (and the threads it starts
later): a run must put back what it found, or the next test in that worker computes differently.
"""

from __future__ import annotations

import sys

import pytest
import torch
from omegaconf import OmegaConf

from spikelight.app.cli import run_task
from spikelight.app.denormals import _openmp_parallel, flush_denormals, flushing

pytestmark = pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")


def test_the_block_flushes_and_puts_the_mode_back():
    assert not flushing()
    tiny = torch.tensor([3e-39, -1e-40, 1e-30], dtype=torch.float32)
    with flush_denormals(True):
        assert flushing()
        assert (tiny * 1.0).tolist() == [0.0, 0.0, pytest.approx(1e-30)]  # only the subnormal ones
        with flush_denormals(False):
            assert not flushing()
            assert (tiny * 1.0)[0].item() == pytest.approx(3e-39)
        assert flushing()
    assert not flushing()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_intra_op_pool_flushes_too(two_threads):
    """With the calling thread alone, a 2-thread product of subnormals is flushed in half its elements (the
    other half is the pool's): every element, and every term of a matrix product, inside the block; none after."""
    if sys.platform.startswith("linux") and "parallel backend: OpenMP" in torch.__config__.parallel_info():
        assert _openmp_parallel() is not None  # PyTorch's x86 Linux wheels: the pool must be reached
    else:
        pytest.skip("only the calling thread is set on this platform (spikelight.app.denormals)")
    tiny = torch.full((1 << 20,), 1e-39)
    a = torch.full((256, 256), 1e-20)  # each term 1e-40: subnormal; their sum 2.6e-38 is not

    def flushed():
        return ((tiny * 1.0) == 0).float().mean().item(), ((a @ a) == 0).float().mean().item()

    assert flushed() == (0.0, 0.0)
    with flush_denormals(True):
        assert flushed() == (1.0, 1.0)
    assert flushed() == (0.0, 0.0)


def test_the_mode_is_put_back_after_an_error():
    with pytest.raises(RuntimeError), flush_denormals(True):
        raise RuntimeError("boom")
    assert not flushing()


def test_run_task_flushes_by_default_and_not_when_told(tmp_path):
    seen = []

    def task(cfg):
        seen.append(flushing())
        return {}

    for value, expect in ((None, True), (True, True), (False, False)):
        cfg = {"paths": {"output_dir": str(tmp_path / str(value))}}
        if value is not None:
            cfg["flush_denormal"] = value
        run_task(task, OmegaConf.create(cfg))
        assert seen[-1] is expect
        assert not flushing()  # as the test found it


def test_a_wrong_value_is_one_line(tmp_path, capsys):
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path / "run")}, "flush_denormal": "yes"})
    with pytest.raises(SystemExit) as exit_:
        run_task(lambda cfg: {}, cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: flush_denormal must be true or false, got 'yes'\n"
