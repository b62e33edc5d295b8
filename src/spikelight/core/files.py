"""Files replaced whole or not at all.

A file written in place is, for an instant, part old and part new: a process killed then (a session's end, an
out-of-memory kill) or a reader arriving then (another DDP rank, a second run sharing a cache) finds half a
file. Here the new contents go to a temporary file beside the target, which one ``os.replace`` then puts in
its place: at every instant the path holds the old file or the new one, whole.

Used for checkpoints (:class:`spikelight.train.faults.AtomicCheckpointIO`), ``metrics.csv`` rewrites
(:mod:`spikelight.train.loggers`, :func:`spikelight.app.rundir.continue_metrics_csv`), ``results.json``, the
event-data cache and the compiled C library.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["replaced_atomically", "atomic_open", "remove_leftovers"]

SUFFIX = ".tmp"  # of the temporary files: .<name>.<host>.<pid>.<random>.tmp
# the machine (a folder shared by several only removes its own machine's leftovers)
_HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"


@contextmanager
def replaced_atomically(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder to write the new file to (by any means: a compiler, ``open``);
    when the block ends without an exception it replaces ``path`` in one rename. On every exit the temporary file
    is gone: an exception leaves ``path`` as it was.

    ``durable``: also ``fsync`` the new file before the rename (an error there, e.g. a network file system's
    delayed write error, is raised and the old file kept) and the folder after it, where the system allows, so
    that the replacement survives a power loss, not just a killed process (checkpoints, logs); false for caches
    that can be rebuilt. The parent folder is created if missing; a file replaced keeps its permission bits.
    A process killed inside the block leaves its temporary file: :func:`remove_leftovers` clears them."""
    with _replaced(path, durable=durable, sync_file=durable) as tmp:
        yield tmp


@contextmanager
def _replaced(path: str | os.PathLike[str], *, durable: bool, sync_file: bool) -> Iterator[Path]:
    """:func:`replaced_atomically`; ``sync_file``: fsync the new file here (else its writer did)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # same folder (the rename stays on one file system); pid + random: processes and threads never share one
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}{SUFFIX}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {path}")
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        if sync_file:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        if durable:
            _fsync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, durable: bool = True, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing a whole new file, which replaces ``path`` only once the block ends without an
    exception (:func:`replaced_atomically`). ``mode``: ``"w"`` or ``"wb"`` (appending cannot be atomic);
    ``open_kwargs`` go to ``open`` (``newline=""`` for csv, ``encoding``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode must be 'w' or 'wb', not {mode!r}")
    with _replaced(path, durable=durable, sync_file=False) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f
        if durable:  # through the writer's own descriptor, before it closes
            f.flush()
            os.fsync(f.fileno())


def remove_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that processes killed while writing left in ``folder``: those written on this
    machine by a process no longer running, or by this process (call it before this process writes there: a
    process restarted in a container often has the killed one's process id); returns them."""
    removed = []
    for tmp in Path(folder).glob(f".*{SUFFIX}"):
        parts = tmp.name[: -len(SUFFIX)].rsplit(".", 3)  # ".<name>", "<host>", "<pid>", "<hex>"
        if len(parts) != 4 or parts[1] != _HOST or not parts[2].isdigit():
            continue
        if (pid := int(parts[2])) != os.getpid() and _running(pid):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: running
        return True
    return True


def _fsync_folder(path: Path) -> None:
    """Persist a rename in ``path``; a no-op where the system cannot open or sync a folder."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
