"""SpikingJelly's lif_fc_mnist tutorial vs `train.py experiment=sj_lif_fc_mnist`, same data.

Runs both on Fashion-MNIST (Debian's dataset-fashion-mnist, real, offline) for
``--epochs`` epochs with seed 0 and writes per-epoch test accuracy and epoch
time side by side to ``--out`` (CSV + markdown table).

SpikingJelly side: the tutorial's network and loop (Flatten → Linear(784→10,
no bias) → LIFNode(tau=2, ATan), PoissonEncoder, Adam 1e-3, MSE(rate,
one-hot), batch 128 with drop_last, T=100), in multi-step mode (same maths as
the tutorial's per-step loop, one call per batch), reset_net after each batch.

    python experiments/sj_lif_fc/compare.py --epochs 10 --threads 1
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, prepare_fashion_mnist, run_spikelight  # noqa: E402


def run_spikingjelly(epochs: int, data_root: str, threads: int, log: Path) -> list[dict]:
    import torch
    import torch.nn.functional as F
    import torchvision
    from spikingjelly.activation_based import encoding, functional, layer, neuron, surrogate
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    T, tau, lr, batch = 100, 2.0, 1e-3, 128
    net = nn.Sequential(
        layer.Flatten(), layer.Linear(28 * 28, 10, bias=False), neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan())
    )
    functional.set_step_mode(net, "m")
    tfm = torchvision.transforms.ToTensor()
    train = torchvision.datasets.FashionMNIST(data_root, train=True, transform=tfm, download=False)
    test = torchvision.datasets.FashionMNIST(data_root, train=False, transform=tfm, download=False)
    train_loader = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, drop_last=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=batch, shuffle=False, drop_last=False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    encoder = encoding.PoissonEncoder()
    rows = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        net.train()
        for img, label in train_loader:
            opt.zero_grad()
            x_seq = torch.stack([encoder(img) for _ in range(T)])  # [T, B, 1, 28, 28]
            out_fr = net(x_seq).mean(0)
            loss = F.mse_loss(out_fr, F.one_hot(label, 10).float())
            loss.backward()
            opt.step()
            functional.reset_net(net)
        train_s = time.perf_counter() - t0
        net.eval()
        correct = n = 0
        with torch.no_grad():
            for img, label in test_loader:
                x_seq = torch.stack([encoder(img) for _ in range(T)])
                correct += (net(x_seq).mean(0).argmax(1) == label).sum().item()
                n += label.numel()
                functional.reset_net(net)
        rows.append({"epoch": epoch, "test_acc": correct / n, "train_s": train_s})
        with open(log, "a") as f:
            f.write(f"spikingjelly epoch {epoch} test_acc {correct / n:.4f} train_s {train_s:.1f}\n")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per library (both run in parallel)")
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "progress.log"
    prepare_fashion_mnist(args.data)
    overrides = ["experiment=sj_lif_fc_mnist", "data=fashion_mnist", f"trainer.max_epochs={args.epochs}", "callbacks=none"]
    run_dir = ROOT / "logs" / "compare_sj_lif_fc" / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        sj = pool.submit(run_spikingjelly, args.epochs, args.data, args.threads, log)
        ours = pool.submit(run_spikelight, overrides, run_dir, args.threads, args.data, log)
        sj_rows, our_rows = sj.result(), ours.result()
    wall = time.perf_counter() - t0
    with open(out / "accuracy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "spikelight_test_acc", "spikingjelly_test_acc"])
        for a, b in zip(our_rows, sj_rows):
            w.writerow([a["epoch"] + 1, f"{a['test_acc']:.4f}", f"{b['test_acc']:.4f}"])
    best = lambda rows: max(r["test_acc"] for r in rows)  # noqa: E731
    print(f"epochs={args.epochs} wall={wall:.0f}s")
    print(f"spikelight   final {our_rows[-1]['test_acc']:.4f} best {best(our_rows):.4f}")
    print(f"spikingjelly final {sj_rows[-1]['test_acc']:.4f} best {best(sj_rows):.4f}")


if __name__ == "__main__":
    main()
