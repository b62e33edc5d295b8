# spikelight: `make demo` then `make test`. Everything runs inside .venv.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.14.1 torchvision==0.29.1
PYTEST  := $(BIN)/python -m pytest

.PHONY: install docs docs-serve docs-test demo train test test-slow test-gpu-compile gpu-compile gpu-check bench lint clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev,sweep,events]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install spikelight (+ dev tools, the Optuna sweeper, tonic)

demo: install  ## train the single-layer LIF on the built-in digits (offline; 40 s on 2 busy CPU cores, 2026-12-06)
	$(BIN)/python train.py experiment=demo_digits
	@echo "next: source $(VENV)/bin/activate, then the README's python train.py ... commands"

train: install  ## python train.py with ARGS="model=... neuron=..."
	$(BIN)/python train.py $(ARGS)

# make test spreads the tests over the cores (pytest-xdist; TEST_WORKERS=0 runs them in this process)
TEST_WORKERS ?= auto
test: install  ## fast tests (need no network or GPU), on every core
	$(PYTEST) -n $(TEST_WORKERS) --dist worksteal -m "not slow and not gpu_compile and not docs" -q

test-gpu-compile: install  ## compile every Triton kernel for sm_80 / sm_90 without a GPU (a few minutes; CI runs it)
	$(PYTEST) -m gpu_compile -q

gpu-check: install  ## on a CUDA machine: every backend against the reference on the GPU, then bench.py --device cuda (RESULTS-gpu.md/.json)
	$(BIN)/python experiments/benchmarks/gpu_check.py

gpu-compile: install  ## the same compile, as a report (registers, spills, shared memory per kernel)
	$(BIN)/python -m spikelight.dynamics.triton.aot --arch 80,90

test-slow: install  ## slow tests: train on real data to an accuracy bar
	$(PYTEST) -m slow -q

bench: install  ## CPU speed side by side with SpikingJelly / snnTorch (writes experiments/benchmarks/RESULTS.md, a few minutes)
	$(BIN)/python experiments/benchmarks/bench.py

lint: install  ## ruff, then the package's layers (import-linter contracts in pyproject.toml)
	$(BIN)/python -m ruff check src tests train.py eval.py experiments
	$(BIN)/lint-imports --no-cache

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed  ## build the site into site/, strictly: every page's code runs (offline data), a failing page, broken link or missing reference fails
	WANDB_MODE=disabled $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.docs-installed  ## serve the site at http://127.0.0.1:8000 and rebuild on edits
	WANDB_MODE=disabled $(BIN)/mkdocs serve

docs-test: docs  ## the built site in headless Chromium (Debian's chromium; skipped without it), page code failing the build
	$(PYTEST) -m docs -q

clean:
	rm -rf $(VENV) logs .pytest_cache
