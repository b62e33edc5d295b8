"""Every Triton kernel compiled for real GPUs (sm_80, sm_90) through the project's own launch wrappers,
without a GPU (``spikelight.dynamics.triton.aot``). Marked ``gpu_compile``: ``make test-gpu-compile``, which
CI runs after the fast suite (a few minutes of compiling: too heavy for ``make test``'s budget).

Fails on: a compile error; shared memory over the target's per-block limit or registers × threads over the
register file; a fused multiply-add in the element-wise step of a forward kernel (the reference rounds the
product and the sum separately: an FMA moves a membrane by an ulp and can flip a spike at the threshold).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from spikelight.dynamics.triton.aot import FORWARD_KERNELS, fused_multiply_adds  # noqa: E402

pytestmark = pytest.mark.gpu_compile


@pytest.fixture(scope="module", params=[80, 90])
def records(request, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("aot") / f"sm{request.param}.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cases = "all" if os.environ.get("SPIKELIGHT_AOT_ALL") == "1" else "pairwise"
    proc = subprocess.run([sys.executable, "-m", "spikelight.dynamics.triton.aot", "--arch", str(request.param),
                           "--cases", cases, "--json", str(out)], capture_output=True, text=True, env=env,
                          timeout=3000)  # fmt: skip
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_every_kernel_compiles_within_the_targets_limits(records):
    kernels = {r["kernel"] for r in records}
    assert kernels >= {"_lif_fwd_kernel", "_lif_bwd_kernel", "_leaky_fwd_kernel", "_leaky_bwd_kernel",
                       "_rec_fwd_kernel", "_rec_bwd_kernel", "_off_fwd_kernel", "_off_bwd_kernel"}  # fmt: skip
    bad = [f"{r['kernel']} {r['spec']}: {r.get('error') or r['problems']}" for r in records
           if r["status"] != "OK" or r["problems"]]  # fmt: skip
    assert not bad, "\n".join(bad[:10])


def test_forward_kernels_round_every_operation_like_the_reference(records):
    """No FMA in an element-wise forward step. The recurrent kernel's ``tl.dot`` (the recurrent current, a
    sum in another order than BLAS's anyway) is made of FMAs: with W_rec, every kernel variant of one block
    size must have exactly the FMAs of the simplest one (the dot's), whatever its neuron."""
    fwd = [r for r in records if r["kernel"] in FORWARD_KERNELS]
    assert fwd
    dot = {}
    for r in fwd:
        if r["spec"].get("RECUR") is True:
            key = (r["kernel"], r["spec"]["BLOCK_H"], r["spec"]["BLOCK_R"], r["spec"]["BLOCK_K"])
            dot.setdefault(key, set()).add(fused_multiply_adds(r["ptx"]))
        else:
            assert fused_multiply_adds(r["ptx"]) == 0, (r["kernel"], r["spec"])
    assert dot, "no recurrent forward kernel with W_rec was compiled"
    for (kernel, *blocks), counts in dot.items():
        assert len(counts) == 1, f"{kernel} BLOCK_H/R/K={blocks}: FMA counts differ between neuron kinds: {counts}"
    for (kernel, *blocks), counts in dot.items():  # the lsnn_official kernel: the same dot, nothing more
        if kernel == "_off_fwd_kernel" and ("_rec_fwd_kernel", *blocks) in dot:
            assert counts == dot[("_rec_fwd_kernel", *blocks)], f"_off_fwd_kernel BLOCK_H/R/K={blocks}: FMAs beyond the dot"
