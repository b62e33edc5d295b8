"""SpikingJelly's conv_fashion_mnist vs `train.py experiment=sj_conv_fashion_mnist`, same data and batches.

Runs both on Fashion-MNIST (Debian's dataset-fashion-mnist, real, offline) for
``--epochs`` epochs with seed 0, in two processes with ``--threads`` torch
threads each, and writes per-epoch test accuracy and time side by side to
``--out``.

SpikingJelly side: the example's own network class (``CSNN`` from
``spikingjelly.activation_based.examples.conv_fashion_mnist``, T=4, 128
channels) and its training loop (SGD lr 0.1 momentum 0.9, cosine T_max=64,
MSE(firing rate, one-hot), batch 128, drop_last, ``reset_net`` after every
batch, test set after every epoch). Two changes, both to make the comparison
exact, not to help either side: its batches come in spikelight's seeded order
(``EpochShuffleSampler``, seed 0) instead of ``shuffle=True``, and
``--train-batches`` caps an epoch at the first K batches of that order
(spikelight: ``trainer.limit_train_batches=K``), for CPUs where a full epoch
takes too long. The cosine schedule keeps T_max=64 on both sides: a short run
is the first epochs of the published 64-epoch recipe.

    nice -n 10 python experiments/conv/compare.py --epochs 4 --train-batches 64 --threads 1
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

T_MAX, BATCH = 64, 128


def run_spikingjelly(epochs: int, train_batches: int | None, data_root: str, threads: int, log: Path) -> list[dict]:
    import torch
    import torch.nn.functional as F
    import torchvision
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.examples.conv_fashion_mnist import CSNN

    sys.path.insert(0, str(ROOT / "src"))
    from spikelight.data.base import EpochShuffleSampler

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = CSNN(T=4, channels=128)
    tfm = torchvision.transforms.ToTensor()
    train = torchvision.datasets.FashionMNIST(data_root, train=True, transform=tfm, download=False)
    test = torchvision.datasets.FashionMNIST(data_root, train=False, transform=tfm, download=False)
    sampler = EpochShuffleSampler(len(train), seed=0)
    train_loader = torch.utils.data.DataLoader(train, batch_size=BATCH, sampler=sampler, drop_last=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=BATCH, shuffle=False, drop_last=False)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_MAX)
    rows = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        net.train()
        for k, (img, label) in enumerate(train_loader):
            if train_batches is not None and k >= train_batches:
                break
            optimizer.zero_grad()
            out_fr = net(img)
            loss = F.mse_loss(out_fr, F.one_hot(label, 10).float())
            loss.backward()
            optimizer.step()
            functional.reset_net(net)
        train_s = time.perf_counter() - t0
        lr_scheduler.step()
        net.eval()
        correct = n = 0
        with torch.no_grad():
            for img, label in test_loader:
                correct += (net(img).argmax(1) == label).sum().item()
                n += label.numel()
                functional.reset_net(net)
        test_s = time.perf_counter() - t0 - train_s
        rows.append({"epoch": epoch, "test_acc": correct / n, "train_s": train_s, "test_s": test_s})
        with open(log, "a") as f:
            f.write(f"spikingjelly epoch {epoch} test_acc {correct / n:.4f} train_s {train_s:.1f} test_s {test_s:.1f}\n")
    return rows


def timed_spikelight(overrides: list[str], run_dir: Path, threads: int, data_root: str, log: Path) -> tuple[list, float]:
    t0 = time.perf_counter()
    rows = run_spikelight(overrides, run_dir, threads, data_root, log)
    return rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-batches", type=int, default=None, help="first K batches of every epoch (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per library (both run in parallel)")
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "progress.log"
    prepare_fashion_mnist(args.data)
    overrides = ["experiment=sj_conv_fashion_mnist", f"trainer.max_epochs={args.epochs}", f"scheduler.T_max={T_MAX}",
                 "callbacks=none"]
    if args.train_batches is not None:
        overrides.append(f"trainer.limit_train_batches={args.train_batches}")
    run_dir = ROOT / "logs" / "compare_sj_conv" / time.strftime("%Y%m%d-%H%M%S")
    with open(log, "a") as f:
        f.write(f"start {time.strftime('%Y-%m-%d %H:%M:%S')} epochs={args.epochs} train_batches={args.train_batches}\n")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        sj = pool.submit(run_spikingjelly, args.epochs, args.train_batches, args.data, args.threads, log)
        ours = pool.submit(timed_spikelight, overrides, run_dir, args.threads, args.data, log)
        sj_rows, (our_rows, our_s) = sj.result(), ours.result()
    wall = time.perf_counter() - t0
    with open(out / "accuracy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "spikelight_test_acc", "spikingjelly_test_acc", "spikingjelly_train_s", "spikingjelly_test_s"])
        for a, b in zip(our_rows, sj_rows):
            w.writerow([a["epoch"] + 1, f"{a['test_acc']:.4f}", f"{b['test_acc']:.4f}", f"{b['train_s']:.0f}",
                        f"{b['test_s']:.0f}"])
    sj_s = sum(r["train_s"] + r["test_s"] for r in sj_rows)
    summary = (f"epochs={args.epochs} train_batches={args.train_batches} wall={wall:.0f}s\n"
               f"spikelight   final {our_rows[-1]['test_acc']:.4f} best {max(r['test_acc'] for r in our_rows):.4f} "
               f"process {our_s:.0f}s (train.py incl. start-up)\n"
               f"spikingjelly final {sj_rows[-1]['test_acc']:.4f} best {max(r['test_acc'] for r in sj_rows):.4f} "
               f"train+test {sj_s:.0f}s\n")
    print(summary, end="")
    with open(log, "a") as f:
        f.write(summary)


if __name__ == "__main__":
    main()
