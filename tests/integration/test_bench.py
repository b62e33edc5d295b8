"""The benchmark's conv, event-driven and other-neuron cases still build and run one call of every contender
(the benchmark itself is never timed in tests; this only keeps it from rotting)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("spikelight_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["conv", "event_driven", "other_neurons"])
def test_bench_case_runs_every_contender_once(bench, case):
    build = dict(bench.CASES)[case]
    for built in build(bench.Ctx(torch.device("cpu"), reps=1, warmup=0)):
        assert set(built.ours) | set(built.anchors) <= set(built.contenders) and built.ours and built.anchors
        for call in built.contenders.values():
            call()


def test_gpu_check_refuses_in_one_line_without_cuda():
    """make gpu-check on a machine without CUDA: one line, exit status 2, nothing written."""
    import subprocess

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the check would run")
    proc = subprocess.run([sys.executable, str(BENCH.with_name("gpu_check.py"))], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines() == [
        "gpu-check: no CUDA device here (torch.cuda.is_available() is False): run it on a GPU machine"
    ]
