"""Replay a stopped run from its last checkpoint and say what its non-finite gradient norm was.

Until 2026-12-06 the fault guard (``SpikingClassifier._check_finite_grads``) and Lightning's clipping took the
gradient norm in float32, which overflows once the gradient's elements pass ~1.8e19: "inf" could be a finite,
huge gradient. They now sum in float64 (``spikelight.train.grad_norm``), so a run stops only on an inf / nan
element. This script resumes the run's own command from a copy of its ``last.ckpt`` (the data order per epoch
is seeded, so the same batches come again), records every step's gradient norm in float64 (per parameter) and
in float32, and stops at the first step whose float32 norm overflows (``--stop overflow``, what the old guard
did) or whose gradient holds an inf / nan element (``--stop nonfinite``, what the guard does now). For that
step it writes what the gradient held (inf / nan elements, largest magnitude per parameter, the loss), the
same batch's gradient from the same weights on every backend in float32 and float64 (and with subnormal
floats kept, ``/ieee``), and where in time the gradient grew.

    python experiments/lsnn/diagnose_divergence.py logs/lsnn_sfa_bptt_s0/runs/<ts> [--set KEY=VALUE ...]
        [--stop overflow|nonfinite] [--out DIR]

Writes ``DIR/grad_norms.csv`` (step, loss, float64 and float32 norms), ``DIR/at_failure.json``,
``DIR/grad_by_step.csv`` and ``DIR/at_failure.ckpt`` (weights and batch of that step; not committed).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import runpy
import shutil
import sys
from pathlib import Path

import torch

from spikelight.app.ckpt import load_checkpoint, run_overrides
from spikelight.train.module import SpikingClassifier

ROOT = Path(__file__).resolve().parents[2]


def recompute(module: SpikingClassifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict[str, float]]:
    """The failing batch's gradient again from the same weights on every backend the recurrent neuron has on
    this machine, in float32 and float64: the float64 norm of each parameter's gradient and the loss."""
    import copy

    from spikelight.app.denormals import flush_denormals, flushing
    from spikelight.dynamics.dispatch import BACKENDS

    found = {}
    modes = [(flushing(), "")] + ([(False, "/ieee")] if flushing() else [])
    for backend in [b for b in BACKENDS if b != "auto"]:
        for dtype in (torch.float32, torch.float64):
            for flush, tag in modes:
                key = f"{backend}/{str(dtype)[6:]}{tag}"
                m = copy.deepcopy(module.model).to(dtype)  # the network alone (not the Trainer it is attached to)
                m.rec.neuron.backend = backend
                try:
                    with flush_denormals(flush):
                        loss = module.loss_fn(m(module.encode(x.to(dtype))), y)
                        loss.backward()
                except Exception as err:  # noqa: BLE001 - a backend this machine or neuron cannot run
                    found[key] = {"error": f"{type(err).__name__}: {err}"[:200]}
                    continue
                found[key] = {"loss": float(loss.detach()), **{
                    n: float(torch.linalg.vector_norm(p.grad.double())) for n, p in m.named_parameters()
                    if p.grad is not None}}
    return found


def by_step(module: SpikingClassifier, x: torch.Tensor, y: torch.Tensor, out: Path) -> dict[str, float | int]:
    """Where in time the gradient grew: with the plain loop in float64, the norm of dL/dI_t (the recurrent
    layer's input current, over the batch and neurons) at every step, into ``out/grad_by_step.csv``; and
    the sequence of the batch that carries most of it."""
    import copy

    net = copy.deepcopy(module.model).double()
    net.rec.neuron.backend = "torch"
    kept = {}

    def keep(_m, _i, o: torch.Tensor) -> None:
        o.retain_grad()
        kept["current"] = o

    net.rec.fc.register_forward_hook(keep)
    result = net(module.encode(x.double()))
    module.loss_fn(result, y).backward()
    g = kept["current"].grad  # [T, B, H]
    per_step = g.pow(2).sum(dim=(1, 2)).sqrt()
    with open(out / "grad_by_step.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "norm_dL_dI"])
        w.writerows([t, float(v)] for t, v in enumerate(per_step))
    per_seq = g.pow(2).sum(dim=(0, 2)).sqrt()
    b = int(per_seq.argmax())
    spikes = next(iter(result.hidden.values()))[:, b]  # [T, H]
    fired = (spikes.sum(1) > 0).nonzero()
    return {
        "sequence": b,
        "its_share_of_the_norm": float(per_seq[b] / per_seq.norm()),
        "next_largest_sequence_norm": float(per_seq.sort(descending=True).values[1]),
        "its_first_nonzero_pixel_step": int((x[b].reshape(-1) > 0).nonzero()[0]),
        "its_first_spike_step": int(fired[0]) if len(fired) else -1,
        "norm_at_step_0": float(per_step[0]),
        "norm_at_last_step": float(per_step[-1]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the diverged run's folder (logs/<task>/runs/<timestamp>)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides for what changed since the run (e.g. model.tbptt_steps=null: a run started "
                         "before model=lsnn's default window became 50)")
    ap.add_argument("--stop", choices=("overflow", "nonfinite"), default="overflow",
                    help="overflow: at the first float32-norm overflow (the old guard); nonfinite: at the first "
                         "inf / nan element (the guard now)")
    ap.add_argument("--out", type=Path, default=None, help="default: experiments/lsnn/divergence/<task>")
    args = ap.parse_args()
    ckpt = args.run / "checkpoints" / "last.ckpt"
    stored = run_overrides(str(ckpt), load_checkpoint(str(ckpt)))
    task = next(o.split("=", 1)[1] for o in stored if o.startswith("task_name="))
    out = args.out or ROOT / "experiments" / "lsnn" / "divergence" / task
    out.mkdir(parents=True, exist_ok=True)
    copy = out / "replayed_from.ckpt"
    shutil.copyfile(ckpt, copy)  # outside the run folder: the replay writes a folder of its own

    rows = out / "grad_norms.csv"
    names: list[str] = []
    writer = None
    handle = open(rows, "w", newline="")
    real_check = SpikingClassifier._check_finite_grads

    def check(self: SpikingClassifier, step: int) -> None:
        nonlocal writer, names
        params = [(n, p) for n, p in self.named_parameters() if p.grad is not None]
        if writer is None:
            names = [n for n, _ in params]
            writer = csv.writer(handle)
            writer.writerow(["step", "loss", "norm_f64", "norm_f32", *[f"norm_f64/{n}" for n in names]])
        per = [float(torch.linalg.vector_norm(p.grad.detach().double())) for _, p in params]
        total = math.sqrt(sum(v * v for v in per))
        f32 = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach().float())
                                                          for _, p in params])))
        loss = getattr(self, "_diagnosed_loss", None)
        writer.writerow([step, "" if loss is None else float(loss), total, f32, *per])
        handle.flush()
        stop = not math.isfinite(total) if args.stop == "nonfinite" else not math.isfinite(f32)
        if stop:
            report = {
                "step": step,
                "norm_f32": f32,
                "norm_f64": total,
                "loss": None if loss is None else float(loss),
                "parameters": {
                    n: {
                        "inf": int(torch.isinf(p.grad).sum()),
                        "nan": int(torch.isnan(p.grad).sum()),
                        "max_abs": float(p.grad.detach().double().abs().max()),
                        "norm_f64": float(torch.linalg.vector_norm(p.grad.detach().double())),
                        "weight_max_abs": float(p.detach().abs().max()),
                    }
                    for n, p in params
                },
            }
            x, y = self._diagnosed_batch
            torch.save({"state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()},
                        "x": x.detach().clone(), "y": y.detach().clone()}, out / "at_failure.ckpt")
            report["backends"] = recompute(self, x, y)
            report["in_time"] = by_step(self, x, y, out)
            (out / "at_failure.json").write_text(json.dumps(report, indent=1))
            print(f"[diagnose] step {step}: float32 norm {f32}, float64 norm {total:.4g}; {out / 'at_failure.json'}",
                  flush=True)
            handle.close()
            raise SystemExit(f"[diagnose] stopped at step {step} (--stop {args.stop})")
        real_check(self, step)

    real_step = SpikingClassifier.training_step

    def training_step(self: SpikingClassifier, batch, batch_idx: int):
        loss = real_step(self, batch, batch_idx)
        self._diagnosed_loss = float(loss.detach())
        self._diagnosed_batch = batch
        return loss

    SpikingClassifier._check_finite_grads = check
    SpikingClassifier.training_step = training_step
    keep = [o for o in stored if not o.startswith(("task_name=", "ckpt_path="))]
    sys.argv = ["train.py", *keep, *args.set, f"task_name=diagnose_{task}", f"ckpt_path={copy}"]
    print("[diagnose] python " + " ".join(sys.argv), flush=True)
    try:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    finally:
        if not handle.closed:
            handle.close()


if __name__ == "__main__":
    main()
