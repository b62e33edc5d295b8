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
