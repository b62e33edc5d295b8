"""TorchScript-compiled vs plain-Python per-step loops of the fused recurrent Function (LSNN sizes).

    python experiments/benchmarks/recurrent_script_probe.py 6    # calls per variant, alternating

ALIF (120 LIF + 100 adaptive), T=784, H=220, B=8 and 32, 1 torch thread; prints the median
process-CPU ms of the forward and the backward of one call, compiled (script=True) and not.
"""

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
from spikelight.dynamics.fused.recurrent import RecurrentFunction  # noqa: E402
from spikelight.neurons import ALIFNode  # noqa: E402

T, H = 784, 220


def probe(B: int, calls: int) -> None:
    """Time one fused call (forward, then backward) with and without TorchScript, alternating."""
    torch.manual_seed(0)
    node = ALIFNode(tau=20.0, tau_adapt=200.0, beta=1.8, adaptive_fraction=100 / 220)
    spec = node._kernel_spec()
    ff = torch.rand(T, B, H) * 0.3
    w = (torch.randn(H, H) / H**0.5).fill_diagonal_(0)
    beta = node.beta_per_neuron(H, ff)
    v0, a0, ref0 = torch.zeros(B, H), torch.zeros(B, H), torch.zeros(B, H)

    def run(script: bool) -> tuple[float, float]:
        f, wl = ff.clone().requires_grad_(), w.clone().requires_grad_()
        t0 = time.process_time()
        s, h, *_ = RecurrentFunction.apply(
            f, wl, v0, a0, ref0, None, beta, spec, node.surrogate, None, "cpu", torch.float32, None, script
        )
        t1 = time.process_time()
        (s.sum() + h.sum() * 0.01).backward()
        return (t1 - t0) * 1e3, (time.process_time() - t1) * 1e3

    for sc in (True, False):  # warm-up (compiles the TorchScript loops)
        run(sc)
    res: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for rep in range(calls):
        for sc in (True, False) if rep % 2 == 0 else (False, True):
            res[sc].append(run(sc))
    for sc in (True, False):
        fw, bw = (statistics.median(r[i] for r in res[sc]) for i in (0, 1))
        print(f"B={B} script={sc}: forward {fw:.1f} ms CPU, backward {bw:.1f} ms CPU (median of {calls})")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for batch in (8, 32):
        probe(batch, int(sys.argv[1]) if len(sys.argv) > 1 else 6)
