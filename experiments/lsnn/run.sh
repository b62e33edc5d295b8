#!/bin/bash
# One experiments/lsnn run in the background: one core, one torch thread, its own task_name so that
# `ckpt_path=last` finds its own last checkpoint. A run cut off (the session ended) is continued by
# running the same line again with RESUME=1: it restarts from logs/lsnn_<name>/runs/*/checkpoints/last.ckpt.
#   experiments/lsnn/run.sh NAME [hydra overrides ...]          (RESUME=1 to continue)
# Every run: sequential Fashion-MNIST, pixel by pixel (784 steps), full epochs, test at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; shift
mkdir -p experiments/lsnn/logs
resume=()
if [ "${RESUME:-0}" = 1 ]; then resume=(ckpt_path=last); fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=disabled
nohup .venv/bin/python train.py data=sfmnist data.order=pixel task_name="lsnn_$name" print_config=false \
  'callbacks=[default,epoch_time]' \
  "$@" "${resume[@]}" >> "experiments/lsnn/logs/$name.log" 2>&1 &
echo "$name: pid $! (log experiments/lsnn/logs/$name.log)"
