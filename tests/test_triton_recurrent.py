"""The persistent Triton kernels of the recurrent layer (kernels/triton_recurrent.py) against the loop.

Run on the CPU under ``TRITON_INTERPRET=1`` in a subprocess (the interpreter must be
chosen before triton is imported): every neuron kind of the recurrent tests (LIF
hard / soft / v_reset / strict, IF, ALIF adaptive / normalize / refractory), ATan and
Triangle, detach_reset, truncated BPTT, explicit initial state, the whole LSNN
with its readout, and ALIF on its own (no W_rec): identical spikes, membrane and final state within float rounding,
gradients of x, W_in, W_rec and the initial state within 1e-5 relative. The
interpreter runs a program's threads in order, so it cannot show a missing barrier;
that needs a GPU.
"""

from __future__ import annotations

import textwrap

from .conftest import run_under_triton_interpreter

_SCRIPT = textwrap.dedent(
    """
    import json, torch
    from tests.test_kernels import SURROGATES
    from tests.test_kernels_recurrent import NEURONS, _inputs, _leaves, F, H
    from spikelight.models import LSNN, RecurrentSpikingLayer
    from spikelight.neurons import ALIFState

    def run(neuron, sur, detach, backend, x, state, tbptt):
        torch.manual_seed(0)
        layer = RecurrentSpikingLayer(F, H, lambda: NEURONS[neuron](SURROGATES[sur](), detach, backend),
                                      tbptt_steps=tbptt)
        with torch.no_grad():
            layer.rec.weight.mul_(2.0)
        x = x.clone().requires_grad_()
        state = _leaves(state)
        out = layer(x, state)
        gen = torch.Generator().manual_seed(1)
        r = lambda t: torch.randn(t.shape, generator=gen)
        fin = out.state.neuron
        loss = (out.spikes * r(out.spikes)).sum() + 0.3 * (out.membrane * r(out.membrane)).sum()
        loss = loss + (fin.v * r(fin.v)).sum() + (out.state.spikes * r(out.state.spikes)).sum()
        if isinstance(fin, ALIFState):
            loss = loss + (fin.a * r(fin.a)).sum()
        loss.backward()
        grads = {"x": x.grad, "w_in": layer.fc.weight.grad, "w_rec": layer.rec.weight.grad}
        if state is not None:
            grads.update(v0=state.neuron.v.grad, z0=state.spikes.grad)
            if isinstance(state.neuron, ALIFState):
                grads["a0"] = state.neuron.a.grad
        return out, grads

    def same(ref, tri):
        (o_r, g_r), (o_t, g_t) = ref, tri
        ok = o_t.membrane.grad_fn.loops == "triton" and torch.equal(o_t.spikes, o_r.spikes)
        ok = ok and 0.05 < o_r.spikes.mean() < 0.7
        ok = ok and torch.allclose(o_t.membrane, o_r.membrane, rtol=1e-5, atol=1e-5)
        ok = ok and all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(o_t.state.neuron, o_r.state.neuron))
        for k, b in g_r.items():
            ok = ok and torch.allclose(g_t[k], b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
        return bool(ok)

    cases = [(n, "atan", False, None, True) for n in NEURONS]
    cases += [(n, "triangle", True, 5, False) for n in ("lif_hard", "if_soft", "alif_soft_normalize", "alif_refractory")]
    cases += [(n, "atan", False, 5, True) for n in ("alif_hard", "lif_vreset")]
    failures = []
    for neuron, sur, detach, tbptt, explicit in cases:
        x, state = _inputs(3, neuron, explicit_state=explicit)
        ref = run(neuron, sur, detach, "torch", x, state, tbptt)
        if not same(ref, run(neuron, sur, detach, "triton", x, state, tbptt)):
            failures.append(f"{neuron}/{sur}/detach={detach}/tbptt={tbptt}/state={explicit}")
    # the whole LSNN (leaky readout), neuron.backend=triton
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(16, 3, F, generator=gen) * 0.8 + 0.5) * 3.5
    y = torch.randint(0, 4, (3,), generator=gen)
    res = {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        model = LSNN(lambda b=backend: NEURONS["alif_refractory"](SURROGATES["atan"](), False, b), in_features=F,
                     hidden=H, num_classes=4, readout_tau=20.0)
        out = model(x)
        torch.nn.functional.cross_entropy(out.membrane.mean(0), y).backward()
        res[backend] = (out, {n: p.grad for n, p in model.named_parameters()})
    o_r, o_t = res["torch"][0], res["triton"][0]
    ok = torch.equal(o_t.hidden["rec.neuron"], o_r.hidden["rec.neuron"]) and o_r.hidden["rec.neuron"].sum() > 0
    ok = ok and torch.allclose(o_t.membrane, o_r.membrane, rtol=1e-5, atol=1e-6)
    for n, b in res["torch"][1].items():
        ok = ok and torch.allclose(res["triton"][1][n], b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
    if not ok:
        failures.append("lsnn model")
    # ALIF on its own (no W_rec; what auto runs for neuron=sfa feed-forward on CUDA)
    from spikelight.neurons import ALIFNode
    gen = torch.Generator().manual_seed(21)
    x = (torch.randn(10, 2, 3, 8, generator=gen) * 0.8 + 0.5) * 3.5
    st = ALIFState(torch.randn(2, 3, 8, generator=gen) * 0.3, torch.rand(2, 3, 8, generator=gen),
                   torch.randint(0, 3, (2, 3, 8), generator=gen).float())
    node = NEURONS["alif_refractory"](SURROGATES["sigmoid"](), False, "torch")
    outs = []
    for loops in ("reference", "triton"):
        xb = x.clone().requires_grad_()
        v0, a0 = st.v.clone().requires_grad_(), st.a.clone().requires_grad_()
        if loops == "reference":
            o = node(xb, ALIFState(v0, a0, st.ref))
        else:  # neuron.backend=triton: the recurrent layer's kernel without W_rec, from bf16 input too
            o = NEURONS["alif_refractory"](SURROGATES["sigmoid"](), False, "triton")(xb, ALIFState(v0, a0, st.ref))
            ok_bf16 = torch.equal(
                NEURONS["alif_refractory"](SURROGATES["sigmoid"](), False, "triton")(x.bfloat16()).spikes.float(),
                node(x.bfloat16()).spikes.float())
            if getattr(o.membrane.grad_fn, "loops", None) != "triton" or not ok_bf16:
                failures.append("alif triton backend not run / bf16 input")
        s, h, fin = o.spikes, o.membrane, o.state
        g = torch.Generator().manual_seed(2)
        loss = (s * torch.randn(s.shape, generator=g)).sum() + h.sum() * 0.2 + fin.v.sum() + (fin.a * 2).sum()
        loss.backward()
        outs.append((s, h, fin, (xb.grad, v0.grad, a0.grad)))
    (s_r, h_r, f_r, g_r), (s_t, h_t, f_t, g_t) = outs
    ok = torch.equal(s_t, s_r) and 0.05 < s_r.mean() < 0.7 and torch.allclose(h_t, h_r, rtol=1e-5, atol=1e-6)
    ok = ok and all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(f_t, f_r))
    ok = ok and all(torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item()) for a, b in zip(g_t, g_r))
    if not ok:
        failures.append("alif feed-forward")
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
    print(json.dumps({"cases": len(cases) + 3, "failures": failures}))
    """
)


def test_recurrent_triton_kernels_equal_reference_under_interpreter():
    result = run_under_triton_interpreter(_SCRIPT, timeout=600)
    assert result["cases"] == 19 and result["failures"] == [], result["failures"]
