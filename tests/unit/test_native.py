"""The C library of the CPU fast path (spikelight/dynamics/native/cpu_native.c) on its own.

The recurrent layer's C loops are checked against the reference loop in
tests/equivalence/ (every neuron, reset, surrogate, TBPTT); here: that the ctypes mirror of its
argument structs matches the C layout,
the library builds where a compiler is, that it can be turned off, the sums over
spikes against dense products, and the LSNN readout's spike product against F.linear.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from spikelight.dynamics import buffers
from spikelight.dynamics.native import library as cpu_native
from spikelight.dynamics.native.spike_linear import spike_linear, spike_linear_applies
from spikelight.models import RecurrentSpikingLayer
from spikelight.neurons import LIFNode

needs_library = pytest.mark.skipif(cpu_native.library() is None, reason="no C compiler here (see the first test)")


def test_library_builds_where_a_compiler_is_and_can_be_turned_off(monkeypatch, tmp_path):
    # a compiler on PATH must give a working library (a broken build would otherwise only show as slowness)
    if any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        assert cpu_native.library() is not None
    monkeypatch.setattr(cpu_native, "_lib", cpu_native._lib)  # restored after the test, with _tried
    monkeypatch.setattr(cpu_native, "_tried", False)
    monkeypatch.setenv("SPIKELIGHT_CACHE", str(tmp_path))  # built there, once
    # unoptimised: the same source and build path in ~1 s instead of ~30-50 s of -O3 (the session's own
    # library, built above with the real flags, is what the equivalence tests run)
    monkeypatch.setattr(cpu_native, "FLAGS", [f if f != "-O3" else "-O0" for f in cpu_native.FLAGS])
    assert (cpu_native.library() is not None) == bool(cpu_native._compiler())
    assert len(list(tmp_path.glob("cpu_native-*.so"))) == int(cpu_native.available())
    monkeypatch.setattr(cpu_native, "_tried", False)
    monkeypatch.setenv("SPIKELIGHT_NATIVE", "0")  # off: the plain-PyTorch loops run
    assert cpu_native.library() is None and not cpu_native.available()
    torch.manual_seed(0)
    out = RecurrentSpikingLayer(5, 7, lambda: LIFNode(tau=3.0))(torch.rand(4, 2, 5).requires_grad_())
    assert out.membrane.grad_fn.backend == "fused"


def test_pointers_only_of_contiguous_fp32_cpu_tensors():
    with pytest.raises(ValueError, match="contiguous fp32"):
        cpu_native._ptr(torch.zeros(3, 4).t())
    with pytest.raises(ValueError, match="contiguous fp32"):
        cpu_native._ptr(torch.zeros(3, dtype=torch.float64))


@needs_library
@pytest.mark.parametrize("density", [0.02, 0.5])
def test_sparse_weight_gradient_equals_the_dense_product(density):
    # below SPARSE_GRAD_W firing dL/dW_rec sums over the spikes, else one GEMM: the same matrix
    gen = torch.Generator().manual_seed(5)
    g, z = torch.randn(300, 13, generator=gen), (torch.rand(300, 17, generator=gen) < density).float()
    z[::7, 3] = 0.5  # non-binary entries are multiplied
    torch.testing.assert_close(cpu_native.grad_w_sparse(g, z), g.t() @ z, rtol=1e-5, atol=1e-5)


@needs_library
def test_sparse_weight_gradient_keeps_its_accuracy_over_a_long_sequence():
    # M = T*B rows (784 steps x 256): one running fp32 sum drifted to 9.4e-6 relative here (and 4-8e-5 on a trained
    # LSNN readout's gradient, 30x the dense product's); the blocked sum stays at the dense product's rounding
    gen = torch.Generator().manual_seed(0)
    g, z = torch.rand(200_000, 3, generator=gen), torch.ones(200_000, 4)
    exact = g.double().t() @ z.double()
    rel = ((cpu_native.grad_w_sparse(g, z).double() - exact).norm() / exact.norm()).item()
    assert rel < 2e-6, rel


@needs_library
@pytest.mark.parametrize("density", [0.0, 0.03, 0.6])
def test_spike_linear_equals_f_linear_with_gradients(density):
    gen = torch.Generator().manual_seed(7)
    z = (torch.rand(9, 4, 70, generator=gen) < density).float()
    z[0, 0, :5] = torch.tensor([0.3, -1.0, 2.0, -0.0, 1.0])  # any value works, spikes are only the fast case
    w = torch.randn(6, 70, generator=gen)
    g = torch.randn(9, 4, 6, generator=gen)
    outs = []
    for fn in (spike_linear, F.linear):
        zi, wi = z.clone().requires_grad_(), w.clone().requires_grad_()
        out = fn(zi, wi)
        out.backward(g)
        outs.append((out, zi.grad, wi.grad))
    assert type(outs[0][0].grad_fn).__name__ == "SpikeLinearFunctionBackward"
    for a, b, what in zip(outs[0], outs[1], ("out", "g_z", "g_w")):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, b.abs().max().item()), msg=what)


@needs_library
def test_small_k_product_equals_mm():
    gen = torch.Generator().manual_seed(9)
    a, b = torch.randn(1000, 10, generator=gen), torch.randn(10, 33, generator=gen)
    out = cpu_native.mm_small_k(a, b, torch.empty(1000, 33))
    torch.testing.assert_close(out, a @ b, rtol=1e-5, atol=1e-5)


def test_spike_linear_only_on_fp32_cpu_without_autocast():
    z, w = torch.zeros(3, 4), torch.zeros(2, 4)
    assert spike_linear_applies(z, w) == cpu_native.available()
    assert not spike_linear_applies(z.double(), w.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not spike_linear_applies(z, w)


def test_buffer_pool_reuses_memory_only_when_no_tensor_holds_it():
    pool = buffers.BufferPool(min_bytes=100, max_free_bytes=5000)
    a = pool.empty((10, 30), torch.float32)
    b = pool.empty((10, 30), torch.float32)
    assert a.data_ptr() != b.data_ptr()
    pa, view = a.data_ptr(), a[2:4]
    del a
    c = pool.empty((10, 30), torch.float32)  # a's memory is still seen through the view
    assert c.data_ptr() not in (pa, b.data_ptr())
    del view
    assert pool.empty((10, 30), torch.float32).data_ptr() == pa  # now free: handed out again
    assert pool.empty((5,), torch.float32).data_ptr() not in (pa, b.data_ptr(), c.data_ptr())  # small: torch.empty
    for _ in range(20):  # unused buffers beyond max_free_bytes go back to the OS
        pool.empty((10, 30 + _), torch.float32)
    assert pool.held_bytes() <= 5000 + 2 * 1200 + 10 * 49 * 4
    assert pool.release() > 0 and pool.held_bytes() == 2 * 1200  # b and c are still in use
    del b, c
    assert pool.release() == 2 * 1200 and pool.held_bytes() == 0


# --- inputs the C code must never see unchecked (a review's reproducers) ----------------------------


def test_wrong_shapes_are_one_line_errors_not_reads_out_of_bounds():
    from spikelight.core.errors import ShapeError
    from spikelight.core.surrogate import ATan
    from spikelight.dynamics.dispatch import ALIFSpec, LIFSpec, recurrent_multi_step

    lif = LIFSpec(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False)
    ff = torch.rand(4, 2, 64) * 3
    with pytest.raises(ShapeError, match=r"W_rec must be \[H, H\] = \[64, 64\]"):
        recurrent_multi_step(ff, torch.randn(8, 8), lif, ATan(), torch.zeros(2, 64))
    with pytest.raises(ShapeError, match="adaptive ALIF needs beta"):
        z = torch.zeros(2, 8)
        recurrent_multi_step(torch.rand(3, 2, 8), None, ALIFSpec(lif, 0.9, 0, False, True), ATan(), z, z, z)
    with pytest.raises(ShapeError, match="spike_linear: weight"):
        spike_linear(torch.zeros(3, 64), torch.zeros(3, 8))
    if cpu_native.library() is not None:
        with pytest.raises(ValueError, match=r"cpu_native.spike_linear: expected .* \(64, 3\)"):
            cpu_native.spike_linear(torch.zeros(5, 64), torch.zeros(8, 3), torch.zeros(5, 3))
        with pytest.raises(ValueError, match="cpu_native.mm_small_k"):
            cpu_native.mm_small_k(torch.zeros(5, 4), torch.zeros(3, 6), torch.zeros(5, 6))


@needs_library
def test_spike_linear_with_no_outputs_and_no_inputs():
    for n_out, n_in in ((0, 7), (3, 0)):
        z, w = (torch.rand(5, n_in) < 0.3).float().requires_grad_(), torch.randn(n_out, n_in, requires_grad=True)
        out = spike_linear(z, w) if n_in else F.linear(z, w)
        out.sum().backward()
        assert out.shape == (5, n_out) and z.grad.shape == z.shape and w.grad.shape == w.shape


def test_a_non_finite_w_rec_spreads_like_the_loops():
    # the dense product gives 0·NaN = NaN everywhere; a sum over spikes alone would hide a diverged W_rec
    from spikelight.core.errors import ConfigError
    from spikelight.core.surrogate import ATan
    from spikelight.dynamics import dispatch
    from spikelight.dynamics.fused.recurrent import recurrent_multi_step
    from spikelight.dynamics.spec import LIFSpec

    spec = LIFSpec(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False)
    w = torch.randn(8, 8) / 4
    w[:, 3] = float("nan")  # neuron 3 never fires below
    ff = torch.full((3, 1, 8), 2.5)
    ff[:, :, 3] = -5.0
    assert dispatch.choose("auto", spec, ATan(), ff, "LIFNode", recurrent=True, w_rec=w) == "fused"
    with pytest.raises(ConfigError, match="non-finite W_rec"):
        dispatch.choose("native", spec, ATan(), ff, "LIFNode", recurrent=True, w_rec=w)
    assert torch.isnan(recurrent_multi_step(ff, w, spec, ATan(), torch.zeros(1, 8), backend="fused")[1]).any()


def test_a_surrogate_whose_derivative_is_fp64_gives_the_loops_gradients():
    from spikelight.core.surrogate import Surrogate

    class Gauss64(Surrogate):
        def derivative(self, x):
            return torch.exp(-(x.double() ** 2)) * self.alpha

    grads = {}
    for backend in ("torch", "fused"):
        torch.manual_seed(0)
        layer = RecurrentSpikingLayer(5, 12, lambda b=backend: LIFNode(tau=3.0, surrogate=Gauss64(), backend=b))
        x = (torch.rand(9, 2, 5) * 3).requires_grad_()
        out = layer(x)
        (out.spikes * torch.linspace(-1, 1, 12)).sum().backward()
        grads[backend] = x.grad
    assert grads["torch"].abs().sum() > 0
    torch.testing.assert_close(grads["fused"], grads["torch"], rtol=1e-5, atol=1e-5 * grads["torch"].abs().max().item())


def test_an_unwritable_cache_means_no_c_library_not_one_from_elsewhere(monkeypatch, tmp_path):
    def refuse(cc, out):
        raise PermissionError(out)

    monkeypatch.setattr(cpu_native, "_lib", cpu_native._lib)
    monkeypatch.setattr(cpu_native, "_tried", False)
    monkeypatch.setattr(cpu_native, "_build", refuse)
    monkeypatch.setenv("SPIKELIGHT_CACHE", str(tmp_path / "ro"))
    assert cpu_native.library() is None and not list(tmp_path.rglob("*.so"))


@needs_library
@pytest.mark.parametrize("struct", ["FwdArgs", "BwdArgs"])
def test_the_ctypes_structs_mirror_the_c_ones(struct, tmp_path):
    """The ctypes mirror of an argument struct has the C struct's fields, in order, at the same offsets and of the
    same sizes, and its size: a small C program built from cpu_native.c itself prints them (a renamed, moved or
    retyped field fails)."""
    import ctypes
    import re
    import subprocess

    mirror = getattr(cpu_native, struct)
    c_name = {"FwdArgs": "fwd_args", "BwdArgs": "bwd_args"}[struct]
    source = re.sub(r"/\*.*?\*/", "", cpu_native.SOURCE.read_text(), flags=re.S)  # comments out
    body = re.search(r"typedef struct \{([^{}]*)\} " + c_name + ";", source).group(1)
    c_fields = [name for decl in body.split(";") if decl.strip()
                for name in re.findall(r"\*?\s*(\w+)\s*(?:,|$)", decl.strip().split(None, 1)[1])]
    assert c_fields == [name for name, _ in mirror._fields_]
    program = tmp_path / "layout.c"
    prints = "".join(f'printf("%zu %zu\\n", offsetof({c_name}, {n}), sizeof((({c_name} *)0)->{n}));' for n in c_fields)
    program.write_text(f'#include <stdio.h>\n#include "{cpu_native.SOURCE}"\n'
                       f'int main(void) {{ {prints} printf("%zu\\n", sizeof({c_name})); return 0; }}\n')
    exe = tmp_path / "layout"
    subprocess.run([*cpu_native._compiler().split(), str(program), "-o", str(exe)], check=True, capture_output=True)
    printed = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    expected = [v for n in c_fields for v in (getattr(mirror, n).offset, getattr(mirror, n).size)]
    assert printed == expected + [ctypes.sizeof(mirror)]


def test_every_fwd_constant_is_a_step_argument():
    """The C forward's constants are filled from StepArgs by name: each must exist there and in the struct."""
    from spikelight.dynamics.spec import StepArgs

    struct_fields = {name for name, _ in cpu_native.FwdArgs._fields_}
    assert set(cpu_native.FWD_CONSTS) <= set(StepArgs.__dataclass_fields__) & struct_fields
