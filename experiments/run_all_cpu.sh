#!/usr/bin/env bash
# The CPU experiments of experiments/lsnn and experiments/eprop, one after the other (hours on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY experiments/run_configs.py --runs experiments/lsnn/runs.json --out experiments/lsnn/results
$PY experiments/run_configs.py --runs experiments/eprop/runs.json --out experiments/eprop/results
$PY experiments/eprop/memory_time.py --reps 2
