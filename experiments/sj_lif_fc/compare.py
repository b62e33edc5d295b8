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

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402


def run_spikingjelly(epochs: int, data_root: str, threads: int, log: Path) -> list[dict]:
    import torch
    from spikingjelly.activation_based import encoding, functional, layer, neuron, surrogate
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    T, tau, lr, batch = 100, 2.0, 1e-3, 128
    net = nn.Sequential(
        layer.Flatten(), layer.Linear(28 * 28, 10, bias=False), neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan())
    )
    functional.set_step_mode(net, "m")
    train_loader, test_loader = common.fashion_mnist_loaders(data_root, batch)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    encoder = encoding.PoissonEncoder()
    rows = []

    def rate(img):  # the tutorial's encoding: T Poisson draws of the image
        return net(torch.stack([encoder(img) for _ in range(T)])).mean(0)  # [T, B, 1, 28, 28] -> [B, 10]

    for epoch in range(epochs):
        train_s = common.spikingjelly_train_epoch(net, train_loader, opt, rate)
        acc, _ = common.spikingjelly_test(net, test_loader, rate)
        rows.append({"epoch": epoch, "test_acc": acc, "train_s": train_s})
        with open(log, "a") as f:
            f.write(f"spikingjelly epoch {epoch} test_acc {acc:.4f} train_s {train_s:.1f}\n")
    return rows


def main() -> None:
    args = common.compare_parser(__file__, epochs=10).parse_args()
    log = common.prepare_compare(args)
    overrides = ["experiment=sj_lif_fc_mnist", "data=fashion_mnist", f"trainer.max_epochs={args.epochs}", "callbacks=none"]
    run_dir = common.ROOT / "logs" / "compare_sj_lif_fc" / time.strftime("%Y%m%d-%H%M%S")
    sj_rows, our_rows, _, wall = common.side_by_side(
        run_spikingjelly, (args.epochs, args.data, args.threads, log), overrides, run_dir, args, log)
    common.write_accuracy_csv(log.parent / "accuracy.csv", our_rows, sj_rows,
                              {"spikingjelly_test_acc": ("test_acc", ".4f")})
    print(f"epochs={args.epochs} wall={wall:.0f}s")
    print(f"spikelight   {common.final_best(our_rows)}")
    print(f"spikingjelly {common.final_best(sj_rows)}")


if __name__ == "__main__":
    main()
