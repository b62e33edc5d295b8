"""One prepared GPU check (``make gpu-check``): correctness of every backend on CUDA, then speed.

    python experiments/benchmarks/gpu_check.py [--quick]

1. Every fast backend on CUDA against the reference loop on the same device: IF / LIF / ALIF (every
   convention) / snnTorch Leaky / dual-exponential alone, and the recurrent layer, fp32 (spikes equal,
   gradients within 1e-5 relative) and under bf16 / fp16 autocast with fp32 state (spikes of the
   fast path equal the reference's under the same autocast).
2. ``experiments/benchmarks/bench.py --device cuda``: the LIF layer (T=100, B=128, N=4096) next to
   SpikingJelly and snnTorch, the tutorial-5 step, the LSNN step (T=784, B=256) next to the plain loop
   (and Norse where installed), the LIF-RSNN step next to snnTorch's RLeaky — written to ``RESULTS-gpu.md``.
3. The persistent recurrent kernels' launch options (docs/guides/speed.md, "Launch design"): the
   recurrent layer alone (T=784; B=32 and 256; H=220 ALIF and H=512 LIF) forward + backward on
   ``backend=triton`` with BLOCK_R = 4, 8, 16 (``SPIKELIGHT_TRITON_BLOCK_R``) and the launch's own
   choice, CUDA-event medians; spikes and gradients must be bit-identical across the options (the
   per-element arithmetic does not depend on BLOCK_R).
4. Writes ``experiments/benchmarks/RESULTS-gpu.json`` (every comparison, pass/fail, device, versions).

No network, no Hydra needed (``../shared/tools/gpu-carry`` prepares SpikingJelly / snnTorch wheels and
Fashion-MNIST for a lent GPU machine). On a machine without CUDA it says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _cases():
    from spikelight.core.surrogate import ATan, Sigmoid, Triangle
    from spikelight.neurons import ALIFNode, DualExpNode, IFNode, LeakyNode, LIFNode

    return {
        "if_soft": lambda b: IFNode(v_reset=None, surrogate=ATan(), backend=b),
        "lif_hard": lambda b: LIFNode(tau=2.0, surrogate=ATan(), backend=b),
        "lif_soft_detach": lambda b: LIFNode(tau=3.0, v_reset=None, detach_reset=True, surrogate=Sigmoid(), backend=b),
        "alif_spikelight": lambda b: ALIFNode(tau=3.0, tau_adapt=8.0, beta=0.5, refractory=2, surrogate=ATan(),
                                              backend=b),
        "alif_eprop": lambda b: ALIFNode(tau=4.0, tau_adapt=6.0, beta=0.7, decay_input=False, v_reset=None,
                                         v_threshold=0.9, refractory=1, convention="eprop", surrogate=Triangle(1.0, 0.3),
                                         backend=b),
        "alif_lsnn_official": lambda b: ALIFNode(tau=3.0, tau_adapt=7.0, beta=0.6, v_reset=None, v_threshold=0.8,
                                                 refractory=1, convention="lsnn_official",
                                                 surrogate=Triangle(1.0, 0.3), backend=b),
        "leaky": lambda b: LeakyNode(beta=0.9, backend=b),
        "dual_exp": lambda b: DualExpNode(tau_m=5.0, tau_s=3.0, tau_grad=2.5, backend=b),
    }


def _run(make, backend, x, layer: bool, autocast):
    from spikelight.layers.recurrent import RecurrentSpikingLayer

    torch.manual_seed(0)
    xx = x.clone().requires_grad_()
    with torch.autocast("cuda", dtype=autocast, enabled=autocast is not None):
        if layer:
            mod = RecurrentSpikingLayer(x.shape[-1], 96, lambda: make(backend)).cuda()
            out = mod(xx)
        else:
            mod = make(backend)
            out = mod(xx)
    g = torch.Generator(device="cuda").manual_seed(1)
    loss = (out.spikes.float() * torch.randn(out.spikes.shape, generator=g, device="cuda")).sum()
    loss = loss + 0.3 * (out.membrane.float() * torch.randn(out.membrane.shape, generator=g, device="cuda")).sum()
    loss.backward()
    node = out.membrane.grad_fn
    ran = getattr(node, "backend", type(node).__name__) if node is not None else "?"
    return out.spikes.detach(), xx.grad.detach(), ran


def correctness(quick: bool) -> list[dict]:
    rows = []
    T, B, F = (12, 4, 96) if quick else (40, 16, 300)
    gen = torch.Generator().manual_seed(0)
    for name, make in _cases().items():
        for layer in (False, True):
            if layer and name in ("leaky", "dual_exp"):
                continue
            x = ((torch.randn(T, B, F if not layer else 8, generator=gen) * 0.8 + 0.5) * 2).cuda()
            for autocast in (None, torch.bfloat16, torch.float16):
                s_ref, g_ref, _ = _run(make, "torch", x, layer, autocast)
                for backend in ("auto", "fused", "triton"):
                    row = {"case": name, "layer": layer, "autocast": str(autocast), "backend": backend}
                    try:
                        s, g, ran = _run(make, backend, x, layer, autocast)
                        rel = float((g - g_ref).abs().max() / g_ref.abs().max().clamp(min=1e-30))
                        exact = torch.equal(s, s_ref)
                        ok = exact and (rel < 1e-5 if autocast is None else rel < 2e-2)
                        row.update(ran=str(ran), spikes_equal=exact, grad_rel=rel, ok=ok)
                    except Exception as e:  # noqa: BLE001 - an explicit backend may refuse (one line): recorded
                        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                        row.update(ok=None, refused=msg)
                    rows.append(row)
                    flag = "ok " if row["ok"] else ("-- " if row["ok"] is None else "FAIL")
                    print(f"{flag} {name:<20} {'layer' if layer else 'alone':<5} {row['autocast']:<15} {backend:<6} "
                          f"{row.get('ran', '')} {row.get('grad_rel', row.get('refused', ''))}", flush=True)
    return rows


def launch_options(quick: bool, hs=(220, 512), batches=(32, 256)) -> list[dict]:
    """Forward + backward of the recurrent layer on backend=triton under each BLOCK_R (see the module docstring)."""
    import os

    from spikelight.dynamics.triton.recurrent import launch
    from spikelight.layers.recurrent import RecurrentSpikingLayer
    from spikelight.neurons import ALIFNode, LIFNode

    T = 64 if quick else 784
    makers = {220: lambda: ALIFNode(tau=20.0, tau_adapt=200.0, beta=1.8, adaptive_fraction=100 / 220, backend="triton"),
              512: lambda: LIFNode(tau=20.0, decay_input=False, backend="triton")}  # fmt: skip
    rows = []
    for H in hs:
        make = makers[H]
        for B in batches:
            gen = torch.Generator().manual_seed(0)
            x = (torch.rand(T, B, 1, generator=gen) * 2.0).cuda()
            ref = None
            for block in ("", "4", "8", "16"):
                os.environ["SPIKELIGHT_TRITON_BLOCK_R"] = block
                torch.manual_seed(0)
                layer = RecurrentSpikingLayer(1, H, make).cuda()
                with torch.no_grad():
                    layer.fc.weight.mul_(4.0)  # a few spikes per step
                xx = x.clone().requires_grad_()

                def call(layer=layer, xx=xx):
                    xx.grad, layer.rec.weight.grad = None, None
                    out = layer(xx)
                    out.spikes.sum().backward()
                    return out.spikes

                row = {"H": H, "B": B, "T": T, "BLOCK_R": int(block) if block else launch(B, H)["BLOCK_R"],
                       "default": block == ""}  # fmt: skip
                try:
                    s = call()
                    res = (s.detach().clone(), xx.grad.clone(), layer.rec.weight.grad.clone())
                    ms = []
                    for _ in range(3 if quick else 7):
                        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        a.record()
                        call()
                        b.record()
                        b.synchronize()
                        ms.append(a.elapsed_time(b))
                    ms.sort()
                    ref = res if ref is None else ref
                    same = all(torch.equal(u, v) for u, v in zip(res, ref))
                    row.update(ms=ms[len(ms) // 2], rate=float(res[0].mean()), identical=same, ok=same)
                except Exception as e:  # noqa: BLE001 - recorded
                    row.update(ok=False, error=str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
                rows.append(row)
                print(f"{'ok ' if row['ok'] else 'FAIL'} launch H={H} B={B} BLOCK_R={row['BLOCK_R']}"
                      f"{' (default)' if row['default'] else ''}: {row.get('ms', float('nan')):.2f} ms fwd+bwd, "
                      f"rate {row.get('rate', float('nan')):.3f} {row.get('error', '')}", flush=True)  # fmt: skip
    os.environ.pop("SPIKELIGHT_TRITON_BLOCK_R", None)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test of the check itself)")
    ap.add_argument("--no-bench", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False): run it on a GPU machine")
        return 2
    t0 = time.time()
    info = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    print(f"gpu-check on {info['device']} (torch {info['torch']}, triton {info['triton']})", flush=True)
    rows = correctness(a.quick)
    failed = [r for r in rows if r["ok"] is False]
    launch_rows = launch_options(a.quick)
    failed += [r for r in launch_rows if not r["ok"]]
    bench_rc = None
    if not a.no_bench:
        cmd = [sys.executable, str(HERE / "bench.py"), "--device", "cuda", "--threads", "1", "--reps", "7",
               "--cases", "lif_layer", "tutorial5", "lsnn", "lif_rsnn", "--out", str(HERE / "RESULTS-gpu.md")]
        bench_rc = subprocess.run(cmd).returncode
    out = {"info": info, "correctness": rows, "launch": launch_rows, "failed": len(failed), "bench_rc": bench_rc,
           "seconds": round(time.time() - t0)}
    (HERE / "RESULTS-gpu.json").write_text(json.dumps(out, indent=1))
    print(f"gpu-check: {len(rows)} comparisons, {len(failed)} failed; bench rc {bench_rc}; "
          f"{out['seconds']} s; wrote {HERE / 'RESULTS-gpu.json'}")
    return 1 if failed or bench_rc else 0


if __name__ == "__main__":
    sys.exit(main())
