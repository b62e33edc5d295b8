"""Training-step time, spikelight vs the library each seed tutorial comes from, same process, same inputs.

Cases (forward + backward + Adam step, fp32, median of --reps after warm-up, the two
libraries' steps alternating):
  fc_lif:    784→10 LIF, Poisson T=100, B=128, MSE(rate)   — vs SpikingJelly 2.0 (multi-step, torch backend)
  tutorial5: 784-1000-10 Leaky, direct T=25, B=128, Σ_t CE(mem) — vs snnTorch 1.0 (tutorial loop)

    python experiments/benchmarks/train_step_cpu.py --threads 2 --reps 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


def bench(ours, theirs, reps: int) -> tuple[float, float]:
    """Median ms per step of each; the two alternate step by step so that drift
    of a shared machine hits both alike."""
    for _ in range(3):
        ours()
        theirs()
    t_ours, t_theirs = [], []
    for _ in range(reps):
        for step, times in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return statistics.median(t_ours) * 1e3, statistics.median(t_theirs) * 1e3


def fc_lif_steps(x, y):
    from spikingjelly.activation_based import encoding, functional, layer, neuron, surrogate

    from spikelight.encoding import PoissonEncoder
    from spikelight.losses import MSERateLoss
    from spikelight.models import FCLIF
    from spikelight.neurons import LIFNode
    from spikelight.surrogate import ATan

    torch.manual_seed(0)
    ours, enc, loss_fn = FCLIF(LIFNode(tau=2.0, surrogate=ATan())), PoissonEncoder(100), MSERateLoss()
    opt = torch.optim.Adam(ours.parameters(), 1e-3)

    def step_ours():
        opt.zero_grad()
        loss_fn(ours(enc(x)), y).backward()
        opt.step()

    sj = nn.Sequential(layer.Flatten(), layer.Linear(784, 10, bias=False), neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan()))
    functional.set_step_mode(sj, "m")
    sj_enc, sj_opt, onehot = encoding.PoissonEncoder(), torch.optim.Adam(sj.parameters(), 1e-3), F.one_hot(y, 10).float()

    def step_sj():
        sj_opt.zero_grad()
        x_seq = torch.stack([sj_enc(x) for _ in range(100)])
        F.mse_loss(sj(x_seq).mean(0), onehot).backward()
        sj_opt.step()
        functional.reset_net(sj)

    return step_ours, step_sj


def tutorial5_steps(x, y):
    import snntorch as snn

    from spikelight.encoding import DirectEncoder
    from spikelight.losses import CEMembranePerStepLoss
    from spikelight.models import MLP
    from spikelight.neurons import LeakyNode

    torch.manual_seed(0)
    ours, enc, loss_fn = MLP(lambda: LeakyNode(beta=0.95)), DirectEncoder(25), CEMembranePerStepLoss("sum")
    opt = torch.optim.Adam(ours.parameters(), 5e-4)

    def step_ours():
        opt.zero_grad()
        loss_fn(ours(enc(x)), y).backward()
        opt.step()

    fc1, fc2, lif1, lif2 = nn.Linear(784, 1000), nn.Linear(1000, 10), snn.Leaky(beta=0.95), snn.Leaky(beta=0.95)
    params = [*fc1.parameters(), *fc2.parameters()]
    sn_opt, xf = torch.optim.Adam(params, 5e-4), x.flatten(1)

    def step_snntorch():
        mem1, mem2, mems = lif1.init_leaky(), lif2.init_leaky(), []
        for _ in range(25):
            spk1, mem1 = lif1(fc1(xf), mem1)
            _, mem2 = lif2(fc2(spk1), mem2)
            mems.append(mem2)
        loss = sum(F.cross_entropy(m, y) for m in mems)
        sn_opt.zero_grad()
        loss.backward()
        sn_opt.step()

    return step_ours, step_snntorch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}")
    for case, make, anchor in (("fc_lif T=100 B=128", fc_lif_steps, "SpikingJelly"),
                               ("tutorial5 T=25 B=128", tutorial5_steps, "snnTorch")):
        ours, theirs = make(x, y)
        t_ours, t_theirs = bench(ours, theirs, args.reps)
        print(f"{case:22s} spikelight {t_ours:8.1f} ms   {anchor:12s} {t_theirs:8.1f} ms   ratio {t_theirs / t_ours:5.2f}x")


if __name__ == "__main__":
    main()
