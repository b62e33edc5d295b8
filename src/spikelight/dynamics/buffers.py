"""Reused CPU memory for the fused paths' ``[T, ...]`` sequences.

A fused recurrent call writes whole sequences (h, spikes, the surrogate input; the
gradient in backward): at LSNN sizes 22 MB each, allocated fresh every training step.
Fresh memory from the OS costs a page fault per 4 KB on first touch, about 5 ms per
22 MB here (2-core EPYC VM), more than the fused loop's own work on that buffer; the
reference loop's small per-step tensors are recycled by malloc and never pay it. So
large CPU buffers come from a pool of byte buffers kept mapped between calls: a
buffer is handed out again once no tensor uses it (its export count, seen as Python
references, is back to the pool's own).

At most ``max_free_bytes`` of unused buffers are kept; the rest go back to the OS.
"""

from __future__ import annotations

import math
import sys
import threading

import torch
from torch import Tensor

__all__ = ["BufferPool", "pool", "empty"]


class BufferPool:
    """Hands out CPU tensors on reused memory. ``empty(shape, dtype)`` like ``torch.empty``."""

    def __init__(self, min_bytes: int = 1 << 20, max_free_bytes: int = 1 << 30) -> None:
        self.min_bytes, self.max_free_bytes = min_bytes, max_free_bytes
        self._bufs: list[bytearray] = []  # least recently handed out first
        self._lock = threading.Lock()
        self._base = _refcounts([bytearray(1)])[0]  # the count of a buffer no tensor uses

    def empty(self, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> Tensor:
        """An uninitialised CPU tensor of ``shape`` (contents are whatever a previous user left)."""
        numel = math.prod(shape)
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if nbytes < self.min_bytes:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            free = [c <= self._base for c in _refcounts(self._bufs)]
            fits = [i for i, b in enumerate(self._bufs) if free[i] and nbytes <= len(b) <= nbytes * 5 // 4 + (1 << 20)]
            if fits:
                chosen = self._bufs.pop(fits[0])
                del free[fits[0]]
            else:
                chosen = bytearray(nbytes)
            # keep at most max_free_bytes of unused buffers: the least recently used go back to the OS
            free_bytes = sum(len(b) for b, f in zip(self._bufs, free) if f)
            keep = []
            for b, f in zip(self._bufs, free):
                if f and free_bytes > self.max_free_bytes:
                    free_bytes -= len(b)
                else:
                    keep.append(b)
            self._bufs = [*keep, chosen]
        return torch.frombuffer(chosen, dtype=dtype, count=numel).view(shape)

    def release(self) -> int:
        """Give every buffer no tensor uses back to the OS; returns the bytes released."""
        with self._lock:
            free = [c <= self._base for c in _refcounts(self._bufs)]
            released = sum(len(b) for b, f in zip(self._bufs, free) if f)
            self._bufs = [b for b, f in zip(self._bufs, free) if not f]
        return released

    def held_bytes(self) -> int:
        """Bytes the pool keeps mapped (in use and free)."""
        return sum(len(b) for b in self._bufs)


def _refcounts(bufs: list[bytearray]) -> list[int]:
    """Reference counts of the buffers, as seen from here: every tensor on a buffer adds one
    (torch.frombuffer keeps its exporter alive), so a count above an unused buffer's means in use."""
    return [sys.getrefcount(b) for b in bufs]


pool = BufferPool()


def empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``torch.empty`` that reuses pooled memory for large CPU tensors (see the module doc)."""
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    return pool.empty(shape, dtype)
