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

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

T_MAX, BATCH = 64, 128


def run_spikingjelly(epochs: int, train_batches: int | None, data_root: str, threads: int, log: Path) -> list[dict]:
    import torch
    from spikingjelly.activation_based.examples.conv_fashion_mnist import CSNN

    sys.path.insert(0, str(common.ROOT / "src"))
    from spikelight.data.base import EpochShuffleSampler

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = CSNN(T=4, channels=128)
    train_loader, test_loader = common.fashion_mnist_loaders(
        data_root, BATCH, sampler=lambda n: EpochShuffleSampler(n, seed=0))
    sampler = train_loader.sampler
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_MAX)
    rows = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        train_s = common.spikingjelly_train_epoch(net, train_loader, optimizer, net, train_batches)
        lr_scheduler.step()
        acc, test_s = common.spikingjelly_test(net, test_loader, net)
        rows.append({"epoch": epoch, "test_acc": acc, "train_s": train_s, "test_s": test_s})
        with open(log, "a") as f:
            f.write(f"spikingjelly epoch {epoch} test_acc {acc:.4f} train_s {train_s:.1f} test_s {test_s:.1f}\n")
    return rows


def main() -> None:
    ap = common.compare_parser(__file__, epochs=4)
    ap.add_argument("--train-batches", type=int, default=None, help="first K batches of every epoch (default: all)")
    args = ap.parse_args()
    log = common.prepare_compare(args)
    overrides = ["experiment=sj_conv_fashion_mnist", f"trainer.max_epochs={args.epochs}", f"scheduler.T_max={T_MAX}",
                 "callbacks=none"]
    if args.train_batches is not None:
        overrides.append(f"trainer.limit_train_batches={args.train_batches}")
    run_dir = common.ROOT / "logs" / "compare_sj_conv" / time.strftime("%Y%m%d-%H%M%S")
    with open(log, "a") as f:
        f.write(f"start {time.strftime('%Y-%m-%d %H:%M:%S')} epochs={args.epochs} train_batches={args.train_batches}\n")
    sj_rows, our_rows, our_s, wall = common.side_by_side(
        run_spikingjelly, (args.epochs, args.train_batches, args.data, args.threads, log), overrides, run_dir, args, log)
    common.write_accuracy_csv(log.parent / "accuracy.csv", our_rows, sj_rows, {
        "spikingjelly_test_acc": ("test_acc", ".4f"), "spikingjelly_train_s": ("train_s", ".0f"),
        "spikingjelly_test_s": ("test_s", ".0f")})
    sj_s = sum(r["train_s"] + r["test_s"] for r in sj_rows)
    summary = (f"epochs={args.epochs} train_batches={args.train_batches} wall={wall:.0f}s\n"
               f"spikelight   {common.final_best(our_rows)} process {our_s:.0f}s (train.py incl. start-up)\n"
               f"spikingjelly {common.final_best(sj_rows)} train+test {sj_s:.0f}s\n")
    print(summary, end="")
    with open(log, "a") as f:
        f.write(summary)


if __name__ == "__main__":
    main()
