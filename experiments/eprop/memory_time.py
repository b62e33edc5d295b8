"""Peak memory and time of one training step, BPTT vs e-prop, against sequence length.

    python experiments/eprop/memory_time.py [--hidden 400 --batch 32 --reps 3]

Each (learning rule, T) runs in its own process: build the seed's LSNN (ALIF, tau 20,
tau_adapt 200, beta 1.8, plain linear readout, CE on the mean readout), then training
steps on random sequences of 784/k steps of k inputs (T = 28, 196, 784 for k = 28, 4,
1). Reported: median step time (steps after the first) and the peak resident memory
of that process (ru_maxrss) above its resident size once the model, optimizer and
data exist, before the first step: what training steps add. Both rules pay the same
one-off costs (Adam's state appears in the first step for both).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(args: argparse.Namespace) -> None:
    import torch

    from spikelight.learning import EProp
    from spikelight.losses import ReadoutCrossEntropyLoss
    from spikelight.models import LSNN
    from spikelight.neurons import ALIFNode
    from spikelight.readout import RateReadout

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    T = 784 // args.k
    model = LSNN(lambda: ALIFNode(), in_features=args.k, hidden=args.hidden, readout_tau=None)
    readout = RateReadout()
    loss_fn = ReadoutCrossEntropyLoss().bind(readout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rule = EProp() if args.learning == "eprop" else None
    if rule is not None:
        rule.attach(model, readout, loss_fn, None)
    x = torch.rand(T, args.batch, args.k)
    y = torch.randint(0, 10, (args.batch,))

    def step() -> None:
        opt.zero_grad()
        if rule is None:
            loss_fn(model(x), y).backward()
        else:
            rule.apply(model, rule.gradients(model, x, y, readout, loss_fn, None).grads)
        opt.step()

    base = _rss_mb()
    times = []
    for _ in range(args.reps + 1):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"learning": args.learning, "T": T, "k": args.k, "step_s": statistics.median(times[1:]),
                      "rss_before_steps_mb": base, "peak_mb": peak, "steps_add_mb": peak - base}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--learning", default="bptt")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "eprop" / "results" / "memory_time.json")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for k in (28, 4, 1):
        for learning in ("bptt", "eprop"):
            cmd = [sys.executable, __file__, "--child", "--learning", learning, "--k", str(k), "--hidden",
                   str(args.hidden), "--batch", str(args.batch), "--reps", str(args.reps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print(row, flush=True)
            rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": date.today().isoformat(), "host": f"{platform.machine()}, {platform.processor() or 'cpu'}",
            "hidden": args.hidden, "batch": args.batch, "threads": args.threads}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
