"""Why the tutorial-5 network "collapses": test-set statistics of a checkpoint.

For a spikelight checkpoint of `experiment=snntorch_tutorial5` it reports test
accuracy by plain spike-count argmax (snnTorch's rule), by spike count with
ties broken by membrane, and by mean output membrane; and how often the top
spike count is tied, split into all-silent outputs vs equal non-zero counts.

    python experiments/snntorch_tutorial5/analyze_ties.py <checkpoint.ckpt>
"""

from __future__ import annotations

import sys

import torch

from spikelight.app.cli import build_datamodule, load_trained


@torch.no_grad()
def main(path: str) -> None:
    module, cfg = load_trained(path)
    dm = build_datamodule(cfg)
    dm.setup("test")
    n = plain = tiebreak = by_mem = silent = tied_nonzero = 0
    spikes_total = 0.0
    mem_sum = torch.zeros(10)
    for x, y in dm.test_dataloader():
        out = module(x)
        counts, mem = out.spikes.sum(0), out.membrane.mean(0)
        top = counts.max(1, keepdim=True).values
        tied = (counts == top).sum(1) > 1
        plain += (counts.argmax(1) == y).sum().item()
        tiebreak += ((counts + 0.5 * torch.sigmoid(mem)).argmax(1) == y).sum().item()
        by_mem += (mem.argmax(1) == y).sum().item()
        silent += (top.squeeze(1) == 0).sum().item()
        tied_nonzero += (tied & (top.squeeze(1) > 0)).sum().item()
        spikes_total += counts.sum().item()
        mem_sum += mem.sum(0)
        n += y.numel()
    T = out.spikes.shape[0]
    print(f"checkpoint: {path}")
    print(f"test images: {n}, T={T}")
    print(f"accuracy  count argmax (snnTorch): {plain / n:.4f}")
    print(f"accuracy  count, ties by membrane: {tiebreak / n:.4f}")
    print(f"accuracy  mean membrane argmax:    {by_mem / n:.4f}")
    print(f"all 10 outputs silent:             {silent / n:.4f}")
    print(f"top count tied, non-zero:          {tied_nonzero / n:.4f}")
    print(f"mean spikes per output neuron:     {spikes_total / n / 10:.3f} of {T}")
    print(f"mean output membrane per class:    {[round(v, 2) for v in (mem_sum / n).tolist()]}")


if __name__ == "__main__":
    main(sys.argv[1])
