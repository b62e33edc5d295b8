"""The equivalence matrix: every fast path of every built-in neuron against its reference loop.

One table of cases — neuron × surrogate × backend × (alone | in a recurrent layer, with and
without truncated BPTT) × detach_reset × dtype — each run twice on the same input, initial
state and weights: once on ``backend="torch"`` (the reference loop of
:mod:`spikelight.dynamics.reference`) and once on the fast backend. Held:

- spikes identical;
- membrane and final state identical, except where a sum over spikes runs in another order
  than BLAS's (the C and Triton recurrent current): there within float rounding;
- gradients of the input, the initial state (and W_in, W_rec, z0 in a layer) within 1e-5
  relative (an absolute floor of 1e-5 × the largest gradient: the backward sums the same
  terms in another order);
- the backend that ran is the one asked for (read off the autograd node).

Surrogates are paired with neurons in rotation (every surrogate meets every backend), and
every surrogate runs on an LIF and an ALIF on every backend. The Triton rows exist only
under ``TRITON_INTERPRET=1``: :func:`test_gpu_rows_run_interpreted` runs this file's
Triton rows in such a subprocess (the interpreter must be chosen before triton is imported).
"""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import cycle

import pytest
import torch

from spikelight.dynamics import dispatch
from spikelight.dynamics.native import library as native
from spikelight.layers.recurrent import RecurrentSpikingLayer, RecurrentState

from ..conftest import ROOT
from .cases import ALONE, NEURONS, STEPPED, SURROGATES, USER_SURROGATES, family, initial_state, inputs

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

#: the fast backends each neuron family has on the CPU (triton: under the interpreter), by mode; fp64 runs fused only
BACKENDS = {
    ("lif", "alone"): ("fused", "native", "triton"),
    ("alif", "alone"): ("fused", "native", "triton"),
    ("leaky", "alone"): ("fused", "triton"),
    ("dual_exp", "alone"): ("fused",),
    ("lif", "layer"): ("fused", "native", "triton"),
    ("alif", "layer"): ("fused", "native", "triton"),
    ("official", "alone"): ("fused", "native", "triton"),  # the lsnn_official convention: its own loops
    ("official", "layer"): ("fused", "native", "triton"),
}
AUTOGRAD_NODE = {
    "leaky": "LeakyFunctionBackward", "dual_exp": "DualExpFunctionBackward", "official": "OfficialALIFFunctionBackward"
}  # fmt: skip
T, B, F, H = 12, 3, 5, 12


def _backends(name: str, mode: str) -> tuple[str, ...]:
    """The rows of this process: the Triton ones under the interpreter, the others otherwise."""
    return tuple(b for b in BACKENDS[(family(name), mode)] if (b == "triton") == INTERPRETED)


def _cases() -> list[tuple]:
    """(neuron, surrogate, backend, mode, tbptt, detach, dtype) rows; mode ``threshold``: the neuron alone
    on quantised input from rest, where membranes land exactly on the threshold."""
    rows = []
    turn = cycle([s for s in SURROGATES if s != "atan"])
    for mode, names in (("alone", NEURONS), ("layer", STEPPED)):
        for name in names:
            for backend in _backends(name, mode):
                for detach in (False, True):
                    for sur in ("atan", next(turn)):
                        for tbptt in ((None, 4) if mode == "layer" and sur == "atan" else (None,)):
                            rows.append((name, sur, backend, mode, tbptt, detach, torch.float32))
    for name in ("lif_hard_decay_input", "alif_refractory"):  # every surrogate on every backend
        for mode in ("alone", "layer"):
            for backend in _backends(name, mode):
                rows += [(name, sur, backend, mode, None, False, torch.float32) for sur in SURROGATES]
    for name in NEURONS:  # membranes exactly at the threshold: fire on >= (strict: >) as the reference does
        rows += [(name, "atan", backend, "threshold", None, False, torch.float32) for backend in _backends(name, "alone")]
    if not INTERPRETED:
        rows += [(name, "atan", "fused", "alone", None, False, torch.float64) for name in NEURONS]
        rows += [(name, "sigmoid", "fused", "layer", 3, False, torch.float64) for name in STEPPED]
    rows = [r for r in rows if not (r[2] == "triton" and r[1] in USER_SURROGATES)]  # no in-kernel form: refused
    return list(dict.fromkeys(rows))


def _id(row) -> str:
    name, sur, backend, mode, tbptt, detach, dtype = row
    extra = ("-tbptt" if tbptt else "") + ("-detach" if detach else "") + ("-fp64" if dtype == torch.float64 else "")
    return f"{backend}-{mode}-{name}-{sur}{extra}"


CASES = _cases()


def _loss(out, state, gen) -> torch.Tensor:
    """A random linear function of every output (spikes, membrane, each float field of the final state)."""
    loss = (out.spikes * torch.randn(out.spikes.shape, generator=gen, dtype=out.spikes.dtype)).sum()
    loss = loss + 0.3 * (out.membrane * torch.randn(out.membrane.shape, generator=gen, dtype=out.membrane.dtype)).sum()
    fields = state.neuron if isinstance(state, RecurrentState) else state
    for name, f in zip(fields._fields, fields):
        if name != "ref":
            loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=f.dtype)).sum()
    if isinstance(state, RecurrentState):
        loss = loss + (state.spikes * torch.randn(state.spikes.shape, generator=gen, dtype=state.spikes.dtype)).sum()
    return loss


def _run(row, backend: str, seed: int):
    name, sur, _, mode, tbptt, detach, dtype = row
    make = lambda: NEURONS[name](SURROGATES[sur](), detach, backend)  # noqa: E731
    explicit = seed % 2 == 0 and mode != "threshold"  # every other case starts from a random explicit state
    if mode in ("alone", "threshold"):
        shape = ((T, 3, 5, 8), (T, 4, 40), (T, 2, 300))[seed % 3]  # 600 neurons: a second, masked Triton program
        x = inputs(seed, shape, name, dtype, quantised=mode == "threshold").requires_grad_()
        node = make()
        state = initial_state(node, x[0].detach(), seed + 1) if explicit else None
        out = node(x, state)
        final, params = out.state, {}
    else:
        torch.manual_seed(0)  # the same weights for both backends
        layer = RecurrentSpikingLayer(F, H, make, tbptt_steps=tbptt).to(dtype)
        with torch.no_grad():
            layer.rec.weight.mul_(2.0)  # a recurrence strong enough to change who fires
        x = inputs(seed, (T, B, F), name, dtype).requires_grad_()
        state = None
        if explicit:
            like = torch.zeros(B, H, dtype=dtype)
            z0 = (torch.rand(B, H, generator=torch.Generator().manual_seed(seed)) < 0.3).to(dtype).requires_grad_()
            state = RecurrentState(initial_state(layer.neuron, like, seed + 1), z0)
        out = layer(x, state)
        final, params = out.state, {"w_in": layer.fc.weight, "w_rec": layer.rec.weight}
    _loss(out, final, torch.Generator().manual_seed(seed + 7)).backward()
    grads = {"x": x.grad, **{k: p.grad for k, p in params.items()}}
    if state is not None:
        fields = state.neuron if isinstance(state, RecurrentState) else state
        grads.update({f"{n}0": f.grad for n, f in zip(fields._fields, fields) if f.requires_grad})
        if isinstance(state, RecurrentState):
            grads["z0"] = state.spikes.grad
    return out, final, grads


def _ran_on(out, name: str) -> str:
    node = out.membrane.grad_fn
    kind = type(node).__name__
    if kind.startswith("Triton"):
        return "triton"
    if kind in ("RecurrentFunctionBackward", "OfficialALIFFunctionBackward"):
        return node.backend
    return "fused" if kind == AUTOGRAD_NODE.get(family(name)) else "torch"


def _same(a: torch.Tensor, b: torch.Tensor, exact: bool, what: str) -> None:
    if exact:
        assert torch.equal(a, b), what
    else:  # a sum over spikes in another order than BLAS's
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * max(1.0, b.abs().max().item()), msg=what)


@pytest.mark.parametrize("row", CASES, ids=[_id(r) for r in CASES])
def test_fast_path_equals_reference(row):
    name, sur, backend, mode, *_ = row
    seed = CASES.index(row)
    if backend == "native" and not native.available():
        pytest.fail("no C compiler: the C loops cannot be built here (the suite needs one, as CI has)")
    out_r, final_r, g_r = _run(row, "torch", seed)
    out_f, final_f, g_f = _run(row, backend, seed)
    assert _ran_on(out_r, name) == "torch" and _ran_on(out_f, name) == backend
    assert 0.03 < out_r.spikes.float().mean() < 0.75  # both branches of fire and reset are exercised
    exact = mode != "layer" or backend == "fused"
    assert out_f.spikes.dtype == out_r.spikes.dtype and out_f.membrane.dtype == out_r.membrane.dtype
    assert torch.equal(out_f.spikes, out_r.spikes)
    _same(out_f.membrane, out_r.membrane, exact, "membrane")
    fields_r = final_r.neuron if isinstance(final_r, RecurrentState) else final_r
    fields_f = final_f.neuron if isinstance(final_f, RecurrentState) else final_f
    for field, a, b in zip(fields_r._fields, fields_f, fields_r):
        _same(a, b, exact, field)
    assert g_f.keys() == g_r.keys()
    for key, b in g_r.items():
        a = g_f[key]
        assert (a is None) == (b is None), key
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item(), msg=key)


def test_the_table_of_backends_is_what_dispatch_offers():
    """The matrix runs the backends of BACKENDS: dispatch must offer exactly those (on fp32 CPU input;
    Triton aside, which needs CUDA or the interpreter), and only fused for fp64."""
    x32, x64 = torch.zeros(2, 2, H), torch.zeros(2, 2, H, dtype=torch.float64)
    for (fam, mode), backends in BACKENDS.items():
        names = [n for n in (STEPPED if mode == "layer" else NEURONS) if family(n) == fam]
        for name in names:
            node = NEURONS[name](SURROGATES["atan"](), False, "auto")
            spec, layer = node._kernel_spec(), mode == "layer"
            offered = {b for b in ("fused", "native") if dispatch.why_not(b, spec, node.surrogate, x32, layer) is None}
            assert offered == set(backends) - {"triton"}, (name, mode)
            assert dispatch.why_not("fused", spec, node.surrogate, x64, layer) is None
            assert dispatch.why_not("native", spec, node.surrogate, x64, layer) is not None
    assert set(ALONE) | set(STEPPED) == set(NEURONS)


def test_gpu_rows_run_interpreted():
    """This file's Triton rows, run in a subprocess with TRITON_INTERPRET=1 (real kernels, interpreted)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__, "-k", "test_fast_path_equals_reference"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 40, summary  # the rows really ran
