"""The Triton paths under ``TRITON_INTERPRET=1``, beyond the matrix's Triton rows
(tests/equivalence/test_matrix.py::test_gpu_rows_run_interpreted): the whole LSNN with its
readout on ``neuron.backend=triton``, ALIF from bf16 input, the incoming gradient of the final
adaptation left untouched, and a state monitor's call running ``fused`` instead of failing.

Run on the CPU in a subprocess (the interpreter must be chosen before triton is imported). The
interpreter runs a program's threads in order, so it cannot show a missing barrier; that needs a GPU.
"""

from __future__ import annotations

import textwrap

from ..conftest import run_under_triton_interpreter

_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from tests.equivalence.cases import STEPPED, SURROGATES
    from spikelight.models import LSNN, RecurrentSpikingLayer
    from spikelight.monitor import Monitor
    from spikelight.neurons import ALIFNode
    F, H = 5, 12
    failures = []
    # the whole LSNN (leaky readout), neuron.backend=triton
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(16, 3, F, generator=gen) * 0.8 + 0.5) * 3.5
    y = torch.randint(0, 4, (3,), generator=gen)
    res = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        model = LSNN(lambda b=backend: STEPPED["alif_refractory"](SURROGATES["atan"](), False, b), in_features=F,
                     hidden=H, num_classes=4, readout_tau=20.0)
        out = model(x)
        torch.nn.functional.cross_entropy(out.membrane.mean(0), y).backward()
        res[backend] = (out, {n: p.grad for n, p in model.named_parameters()})
    o_r, o_t = res["torch"][0], res["triton"][0]
    ok = o_t.hidden["rec.neuron"].grad_fn.backend == "triton"
    ok = ok and torch.equal(o_t.hidden["rec.neuron"], o_r.hidden["rec.neuron"]) and o_r.hidden["rec.neuron"].sum() > 0
    ok = ok and torch.allclose(o_t.membrane, o_r.membrane, rtol=1e-5, atol=1e-6)
    for n, b in res["torch"][1].items():
        ok = ok and torch.allclose(res["triton"][1][n], b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
    if not ok:
        failures.append("lsnn model")
    # ALIF alone from bf16 input: the reference's spikes
    x = (torch.randn(10, 2, 3, 8, generator=gen) * 0.8 + 0.5) * 3.5
    tri = STEPPED["alif_refractory"](SURROGATES["sigmoid"](), False, "triton")(x.bfloat16().requires_grad_())
    ref = STEPPED["alif_refractory"](SURROGATES["sigmoid"](), False, "torch")(x.bfloat16())
    if tri.membrane.grad_fn.backend != "triton" or not torch.equal(tri.spikes, ref.spikes) or ref.spikes.sum() == 0:
        failures.append("alif bf16 input")
    # the incoming gradient of the final adaptation is autograd's tensor, shared with other branches:
    # the kernel must not write into it
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        layer = RecurrentSpikingLayer(3, 16, lambda b=backend: ALIFNode(tau=3.0, tau_adapt=6.0, beta=0.6, backend=b))
        p = torch.zeros(2, 16, requires_grad=True)
        other = p * 3.0  # its backward runs after the layer's, on the same gradient tensor
        out = layer((torch.rand(5, 2, 3) * 3).requires_grad_())
        r = torch.linspace(-1, 1, 32).view(2, 16)
        (((out.state.neuron.a + other) * r).sum() + out.spikes.sum()).backward()
        if not torch.allclose(p.grad, 3 * r):
            failures.append(f"{backend}: g_a overwritten")
    # a state monitor on neuron.backend=triton: that call runs fused (the kernels record no states)
    torch.manual_seed(0)
    model = LSNN(lambda: ALIFNode(tau=3.0, beta=0.5, backend="triton"), in_features=F, hidden=H)
    with Monitor(model, names=["rec.neuron"], record=("states",)) as mon:
        out = model(x[:, 0, 0, :F].unsqueeze(1).expand(10, 2, F).contiguous().requires_grad_())
    if out.hidden["rec.neuron"].grad_fn.backend != "fused" or "a" not in mon["rec.neuron"]:
        failures.append("monitor on triton")
    print(json.dumps({"cases": 5, "failures": failures}))
    """
)


def test_triton_lsnn_bf16_gradients_and_monitors_under_interpreter():
    result = run_under_triton_interpreter(_SCRIPT, timeout=600)
    assert result["cases"] == 5 and result["failures"] == [], result["failures"]


_BLOCKS_SCRIPT = textwrap.dedent(
    """
    import json, os, torch
    from tests.equivalence.cases import STEPPED, SURROGATES
    from spikelight.layers.recurrent import RecurrentSpikingLayer
    from spikelight.dynamics.triton.recurrent import launch
    T, F = 9, 4
    failures, cases = [], 0
    # several programs, the last one's rows masked (B=21), H with no power-of-two factor (37: unaligned rows, a
    # masked reduction tile) and one of 8 (40); every BLOCK_R the launch can pick, and the default one
    for name, sur in (("alif_refractory", "atan"), ("lif_soft_decay_input", "sigmoid"), ("official_alif", "triangle")):
        for H in (37, 40):
            gen = torch.Generator().manual_seed(H)
            x = (torch.randn(T, 21, F, generator=gen) * 0.8 + 0.5) * 3.5
            res = {}
            for block in ("torch", "", "4", "8", "16"):
                os.environ["SPIKELIGHT_TRITON_BLOCK_R"] = block if block != "torch" else ""
                torch.manual_seed(0)
                layer = RecurrentSpikingLayer(F, H, lambda: STEPPED[name](SURROGATES[sur](), False,
                                                                          "torch" if block == "torch" else "triton"))
                with torch.no_grad():
                    layer.rec.weight.mul_(2.0)
                xi = x.clone().requires_grad_()
                out = layer(xi)
                g = torch.randn(out.spikes.shape, generator=torch.Generator().manual_seed(1))
                ((out.spikes * g).sum() + 0.3 * (out.membrane * g).sum()).backward()
                res[block] = (out.spikes, xi.grad, layer.rec.weight.grad, out.spikes.grad_fn)
            ref = res.pop("torch")
            if ref[0].sum() == 0 or ref[0].mean() > 0.9:
                failures.append(f"{name} H={H}: no spikes to compare")
            for block, (s, gx, gw, fn) in res.items():
                cases += 1
                br = launch(21, H)["BLOCK_R"] if block == "" else int(block)
                ok = fn.backend == "triton" and torch.equal(s, ref[0])
                for a, b in ((gx, ref[1]), (gw, ref[2])):
                    ok = ok and torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
                if not ok:
                    failures.append(f"{name} H={H} BLOCK_R={br}")
    print(json.dumps({"cases": cases, "failures": failures}))
    """
)


def test_triton_recurrent_block_sizes_under_interpreter():
    """The persistent kernels with every BLOCK_R the launch picks (4, 8) and 16, several programs with the last
    one's rows masked, and H with and without a power-of-two factor (H_DIV 1 and 8): the reference's spikes,
    its gradients within 1e-5."""
    result = run_under_triton_interpreter(_BLOCKS_SCRIPT, timeout=900)
    assert result["cases"] == 24 and result["failures"] == [], result["failures"]
