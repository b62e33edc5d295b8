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
and the threads it starts afterwards, not for PyTorch's intra-op worker pool, whose threads already run. So
:func:`flush_denormals` also sets it in every thread of that pool where the pool is OpenMP's on Linux (how
PyTorch's x86 wheels are built; MKL's and oneDNN's threads are the same pool): it runs one OpenMP parallel
region (``GOMP_parallel`` of the runtime ``libtorch_cpu.so`` is linked to) whose body sets the mode
in each thread. Measured (2026-12-06, this VM, 2 threads): a product of subnormals and a matrix product
whose terms are subnormal were flushed in half their elements with the calling thread alone, in all of them
with the pool too. Elsewhere (macOS, Windows, another thread pool) only the calling thread is set, and a
run with several torch threads is flushed in part; with one thread per run (``OMP_NUM_THREADS=1``, how
``experiments/`` trains) everything is. An OpenMP pool belongs to the thread that started it: it is the
calling thread's pool that is set (torch work on another Python thread, e.g. a data-loading thread, runs
on its own pool, unset), and it is assumed to be the team of ``torch.get_num_threads()`` threads PyTorch's
regions reuse (``OMP_DYNAMIC`` / ``OMP_THREAD_LIMIT`` could leave some of it unset; nothing checks). ``train.py`` / ``eval.py`` flush (:func:`spikelight.app.cli.run_task`);
calling :func:`spikelight.app.cli.train` from Python does not, unless inside :func:`flush_denormals`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Iterator

import torch

from spikelight.core.errors import ConfigError

__all__ = ["flush_denormals", "flushing"]

_REGION_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # void (*fn)(void *data), as GOMP_parallel calls it


def flushing() -> bool:
    """True when subnormal float32 operands and results are read and written as 0 on this thread."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # subnormal
    return bool((tiny * 1.0).item() == 0.0)


@functools.cache
def _openmp_parallel():
    """``GOMP_parallel(fn, data, num_threads, flags)`` of the OpenMP runtime PyTorch runs its intra-op pool on,
    or None where there is none to find. Looked up through ``libtorch_cpu.so`` (the dynamic linker searches
    its dependencies), not by name: another package may have loaded its own OpenMP runtime (scikit-learn's
    libgomp), whose thread pool is not PyTorch's."""
    if not sys.platform.startswith("linux") or "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    libtorch = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        parallel = ctypes.CDLL(libtorch).GOMP_parallel
    except (OSError, AttributeError):
        return None
    parallel.argtypes = [_REGION_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    parallel.restype = None
    return parallel


def _set_mode(on: bool, threads: int) -> None:
    """Set the mode on this thread and, where it can be reached (:func:`_openmp_parallel`), in each thread of
    PyTorch's intra-op pool: one parallel region of ``threads`` threads (the team PyTorch's own regions reuse)
    whose body sets it."""
    torch.set_flush_denormal(on)
    parallel = _openmp_parallel()
    if parallel is None or threads < 2:
        return
    body = _REGION_BODY(lambda _data: torch.set_flush_denormal(on))  # each thread takes the GIL for this line
    parallel(body, None, threads, 0)


@contextlib.contextmanager
def flush_denormals(on: bool) -> Iterator[None]:
    """Within the block, set PyTorch's CPU flush-to-zero / denormals-are-zero mode to ``on``
    (:func:`torch.set_flush_denormal`) on the calling thread and in PyTorch's OpenMP intra-op pool (module
    docstring), then put the previous mode back. On a CPU without the mode (not SSE3) the block runs
    unchanged."""
    if not isinstance(on, bool):
        raise ConfigError(f"flush_denormal must be true or false, got {on!r}")
    before, threads = flushing(), torch.get_num_threads()
    _set_mode(on, threads)
    try:
        yield
    finally:
        # every thread the block may have set, if the run lowered the thread count inside it
        _set_mode(before, max(threads, torch.get_num_threads()))
