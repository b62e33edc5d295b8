"""Flush subnormal floats to zero on the CPU while a run trains or tests (``flush_denormal: true``).

A gradient that fades over hundreds of recurrent steps ends in subnormal numbers (below 1.2e-38 in
float32), and x86 cores handle each of those through a slow microcode path. Measured on this project's
2-core VM (2026-12-06, torch 2.14.1, 1 thread; ``experiments/benchmarks/RESULTS-denormals.md``): a
``model=lstm`` training step (110 units, 256 sequences of 784 Fashion-MNIST pixels, loss at the last step)
took 31.0 s, 4.0 s with subnormals flushed. TensorFlow flushes them by default on the CPU (so the TF sources,
e.g. LSNN-official, ran this way); PyTorch does not.

Flushing changes only values whose magnitude is below the smallest normal number (1.2e-38 in float32,
2.2e-308 in float64): they become 0. ``flush_denormal=false`` keeps IEEE arithmetic.

The mode is a CPU register of each thread: :func:`torch.set_flush_denormal` sets it for the calling thread
and the threads it starts afterwards (Python threads), not for PyTorch's intra-op worker pool. With one torch
thread per run (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``: how ``experiments/`` trains) everything
is flushed; with more, the pool's share of each operation is not (a 2-thread product of subnormals: half of
the elements became 0). ``train.py`` / ``eval.py`` flush (:func:`spikelight.app.cli.run_task`); calling
:func:`spikelight.app.cli.train` from Python does not, unless inside :func:`flush_denormals`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from spikelight.core.errors import ConfigError

__all__ = ["flush_denormals", "flushing"]


def flushing() -> bool:
    """True when subnormal float32 operands and results are read and written as 0 on this thread."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # subnormal
    return bool((tiny * 1.0).item() == 0.0)


@contextlib.contextmanager
def flush_denormals(on: bool) -> Iterator[None]:
    """Within the block, set PyTorch's CPU flush-to-zero / denormals-are-zero mode to ``on``
    (:func:`torch.set_flush_denormal`: the calling thread and the threads it starts later, not PyTorch's
    intra-op pool), then put the previous mode back. On a CPU without the mode (not SSE3) the block runs
    unchanged."""
    if not isinstance(on, bool):
        raise ConfigError(f"flush_denormal must be true or false, got {on!r}")
    before = flushing()
    torch.set_flush_denormal(on)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
