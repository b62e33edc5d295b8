#!/usr/bin/env bash
# The CPU experiments of experiments/lsnn and experiments/eprop, one after the other (about 1.5 h on 2 cores).
# Each run is short (a limited number of batches per epoch, see runs.json): these compare settings at equal
# budget; they are not converged accuracies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY experiments/eprop/memory_time.py --reps 2
$PY experiments/run_configs.py --runs experiments/lsnn/runs.json --out experiments/lsnn/results --only row_seed_sfa row_seed_lif row_bellec_alif row_bellec_lif
$PY experiments/run_configs.py --runs experiments/eprop/runs.json --out experiments/eprop/results --only eprop_row_sfa eprop_row_lif
$PY experiments/run_configs.py --runs experiments/lsnn/runs.json --out experiments/lsnn/results
$PY experiments/run_configs.py --runs experiments/eprop/runs.json --out experiments/eprop/results
