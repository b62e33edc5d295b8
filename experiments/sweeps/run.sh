#!/usr/bin/env bash
# Real sweeps on Fashion-MNIST sized for a 2-core CPU (see README.md here for the numbers).
#   bash experiments/sweeps/run.sh [fc_lif|lsnn|lsnn_seed1]...    (from the repo root; default: fc_lif lsnn)
# Each sweep runs into $SWEEPS (default /tmp/spikelight-sweeps) and its report/ is copied here.
set -euo pipefail
cd "$(dirname "$0")/../.."
SWEEPS=${SWEEPS:-/tmp/spikelight-sweeps}
HERE=experiments/sweeps
export WANDB_MODE=disabled OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
COMMON=(print_config=false accelerator=cpu logger=csv "++callbacks.spike_plots=null" trainer.max_epochs=1)
for name in "${@:-fc_lif lsnn}"; do
  for n in $name; do
    rm -rf "$SWEEPS/$n"
    case $n in
      fc_lif)  # LIF tau x ATan surrogate alpha; fc_lif (784-10), Poisson T=8, 100 batches of 128
        python train.py -m model=fc_lif data=fashion_mnist T=8 neuron.tau=2.0,5.0,10.0 surrogate.alpha=1.0,2.0,4.0 \
          trainer.limit_train_batches=100 trainer.limit_val_batches=8 trainer.limit_test_batches=20 \
          "${COMMON[@]}" hydra.sweep.dir="$SWEEPS/$n" ;;
      lsnn|lsnn_seed1)  # ALIF tau_adapt x beta; LSNN (28-220-10), row-by-row sequential Fashion-MNIST (28 steps)
        python train.py -m model=lsnn neuron=sfa data=sfmnist data.order=row data.batch_size=128 \
          neuron.tau_adapt=50.0,200.0 neuron.beta=0.5,1.8 optimizer.lr=5e-3 seed=$([ $n = lsnn ] && echo 0 || echo 1) \
          trainer.limit_train_batches=150 trainer.limit_val_batches=8 trainer.limit_test_batches=20 \
          "${COMMON[@]}" hydra.sweep.dir="$SWEEPS/$n" ;;
    esac
    python -m spikelight.sweep_report "$SWEEPS/$n" --no-wandb
    rm -rf "$HERE/$n" && cp -r "$SWEEPS/$n/report" "$HERE/$n"
  done
done
