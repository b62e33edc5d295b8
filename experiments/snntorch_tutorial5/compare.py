"""snnTorch tutorial 5's own code vs `train.py experiment=snntorch_tutorial5`, same data.

Fashion-MNIST (Debian's dataset-fashion-mnist, real, offline), seed 0, both in
parallel with ``--threads`` torch threads each. snnTorch side: the tutorial's
Net (Linear 784→1000 → Leaky(beta=0.95) → Linear 1000→10 → Leaky), 25 steps,
the static image every step, loss = Σ_t CE(mem2[t], y), Adam 5e-4 (0.9, 0.999),
batch 128 with drop_last. Each epoch it evaluates all 10k test images and
records, besides the tutorial's spike-count accuracy, diagnostics that explain
a collapse: accuracy by mean output membrane, the share of test images whose
top spike count is tied, and the mean output spike count.

    python experiments/snntorch_tutorial5/compare.py --epochs 10 --threads 1
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


def run_snntorch(epochs: int, data_root: str, threads: int, log: Path) -> list[dict]:
    import snntorch as snn
    import torch
    import torchvision
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    T, beta, batch = 25, 0.95, 128

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif1 = nn.Linear(784, 1000), snn.Leaky(beta=beta)
            self.fc2, self.lif2 = nn.Linear(1000, 10), snn.Leaky(beta=beta)

        def forward(self, x):
            mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            spk2_rec, mem2_rec = [], []
            for _ in range(T):
                spk1, mem1 = self.lif1(self.fc1(x), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                spk2_rec.append(spk2)
                mem2_rec.append(mem2)
            return torch.stack(spk2_rec), torch.stack(mem2_rec)

    tfm = torchvision.transforms.Compose([torchvision.transforms.ToTensor(), torchvision.transforms.Normalize((0,), (1,))])
    train_loader, test_loader = common.fashion_mnist_loaders(data_root, batch, tfm)
    net = Net()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    rows = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        net.train()
        for data, targets in train_loader:
            spk_rec, mem_rec = net(data.view(batch, -1))
            loss = torch.zeros(())
            for step in range(T):
                loss += loss_fn(mem_rec[step], targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
        train_s = time.perf_counter() - t0
        net.eval()
        n = correct = correct_mem = tied = 0
        count_sum = 0.0
        with torch.no_grad():
            for data, targets in test_loader:
                spk, mem = net(data.view(data.size(0), -1))
                counts = spk.sum(0)
                correct += (counts.argmax(1) == targets).sum().item()  # tutorial: spk_rec.sum(0).max(1)
                correct_mem += (mem.mean(0).argmax(1) == targets).sum().item()
                top = counts.max(1, keepdim=True).values
                tied += ((counts == top).sum(1) > 1).sum().item()
                count_sum += counts.sum().item()
                n += targets.numel()
        row = {"epoch": epoch, "test_acc": correct / n, "test_acc_membrane": correct_mem / n,
               "tied_top_count": tied / n, "mean_output_spikes": count_sum / n / 10, "train_s": train_s}
        rows.append(row)
        with open(log, "a") as f:
            f.write("snntorch " + json.dumps(row) + "\n")
    return rows


def main() -> None:
    ap = common.compare_parser(__file__, epochs=10)
    ap.add_argument("--ours", nargs="*", default=[], help="extra overrides for our run (e.g. a stable variant)")
    ap.add_argument("--tag", default="reproduction")
    ap.add_argument("--skip-snntorch", action="store_true")
    args = ap.parse_args()
    log = common.prepare_compare(args)
    overrides = ["experiment=snntorch_tutorial5", "data=fashion_mnist", f"trainer.max_epochs={args.epochs}",
                 "callbacks=none", *args.ours]
    run_dir = common.ROOT / "logs" / "compare_snntorch_tutorial5" / f"{args.tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    their_rows, our_rows, _, _ = common.side_by_side(
        None if args.skip_snntorch else run_snntorch, (args.epochs, args.data, args.threads, log), overrides, run_dir,
        args, log)
    common.write_accuracy_csv(log.parent / f"accuracy_{args.tag}.csv", our_rows, their_rows, {
        "snntorch_test_acc": ("test_acc", ".4f"), "snntorch_acc_by_membrane": ("test_acc_membrane", ".4f"),
        "snntorch_tied_top_count": ("tied_top_count", ".4f")})
    print(f"overrides: {' '.join(overrides)}")
    for name, rows in (("spikelight", our_rows), ("snntorch", their_rows)):
        if rows:
            accs = [r["test_acc"] for r in rows]
            print(f"{name:10s} " + " ".join(f"{a:.4f}" for a in accs) + f"  best {max(accs):.4f}")


if __name__ == "__main__":
    main()
