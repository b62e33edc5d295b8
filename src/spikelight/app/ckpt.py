"""Find, open and vet checkpoints, each failure one line naming the fix.

- :func:`load_checkpoint`: ``torch.load(weights_only=True)`` (tensors and plain
  containers only: a downloaded checkpoint cannot run code); a missing file,
  a file that is not a checkpoint or a truncated one is a :class:`CheckpointError`.
- :func:`check_fits`: the checkpoint's weights against the model a config builds
  (a checkpoint of another model is refused before Lightning's long key list).
- :func:`resolve_ckpt_path`: ``ckpt_path=last`` (the newest checkpoint of the most
  recent run) and ``ckpt_path=<run folder>`` (the newest checkpoint of that run).
- :func:`run_overrides`: the command-line overrides a checkpoint's run was started with
  (``train.py`` stores them in every checkpoint; a resume reuses them).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikelight.core.errors import CheckpointError

__all__ = [
    "load_checkpoint", "check_fits", "newest_checkpoint", "resolve_ckpt_path", "run_overrides", "run_dir_of", "LAST",
    "OVERRIDES", "NOT_REUSED",
]

#: the ``ckpt_path`` value meaning "the newest checkpoint of the most recent run"
LAST = "last"
#: the checkpoint entry holding the run's command-line overrides (a list of strings)
OVERRIDES = "overrides"
#: overrides a resume never takes over from the run (it gives its own)
NOT_REUSED = ("ckpt_path",)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded on the CPU with ``weights_only=True``.

    Raises :class:`CheckpointError` for a missing file, a file that is not a
    PyTorch checkpoint (or is truncated), and one that needs arbitrary code to load.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"ckpt_path={path} does not exist")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if re.search(r"unsupported global", str(err), re.IGNORECASE):  # a GLOBAL opcode: it names a class or function
            raise CheckpointError(
                f"{path} holds Python objects that need code to load (refused: weights_only=True); "
                "only use checkpoints written by spikelight, or re-save its state_dict"
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({_short(err)}); give a .ckpt written by train.py") from None
    except Exception as err:  # noqa: BLE001 - torch raises RuntimeError / EOFError / IndexError / ... on foreign bytes
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another format: {type(err).__name__}); "
            "use another .ckpt of the run (checkpoints/last.ckpt or epoch_NNN.ckpt)"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is a torch file but not a Lightning checkpoint (no state_dict); give a .ckpt written by train.py")
    return ckpt


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0][:120] if text else type(err).__name__).rstrip(".")


def check_fits(module: nn.Module, ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` if ``ckpt['state_dict']`` does not fit ``module``
    (other parameter names or shapes: a checkpoint of another model or config)."""
    have = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(have) - set(got))
    extra = sorted(set(got) - set(have))
    shapes = sorted(k for k in set(have) & set(got) if have[k] != got[k])
    if not (missing or extra or shapes):
        return
    if shapes:
        k = shapes[0]
        what = f"{k} is {list(got[k])} there but {list(have[k])} here"
    elif missing:
        what = f"it lacks {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    else:
        what = f"it has {extra[0]}, unknown here" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
    saved = (ckpt.get("hyper_parameters") or {}).get("config") or {}
    model = (saved.get("model") or {}).get("_target_", "?") if isinstance(saved, dict) else "?"
    raise CheckpointError(
        f"{path} is a checkpoint of another model ({what}; saved model: {model}); "
        "resume with the overrides the run was trained with (see its config_resolved.yaml)"
    )


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The most recently written ``*.ckpt`` in ``run_dir/checkpoints`` (None if none)."""
    folder = run_dir / "checkpoints"
    found = [p for p in folder.glob("*.ckpt") if p.is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt")) if found else None


def resolve_ckpt_path(value: str, runs_dir: Path) -> str:
    """``ckpt_path`` as a file: ``last`` → the newest checkpoint among the runs in
    ``runs_dir`` (e.g. ``logs/train/runs``); a run folder → its newest checkpoint;
    anything else unchanged. Raises :class:`CheckpointError` if none is found."""
    if value == LAST:
        runs = [r for r in runs_dir.iterdir() if r.is_dir()] if runs_dir.is_dir() else []
        found = [c for c in map(newest_checkpoint, runs) if c is not None]
        if not found:
            raise CheckpointError(f"ckpt_path=last: no run in {runs_dir} has a checkpoint; give ckpt_path=<file.ckpt>")
        return str(max(found, key=lambda p: p.stat().st_mtime_ns))
    p = Path(value)
    if p.is_dir():
        newest = newest_checkpoint(p)
        if newest is None:
            raise CheckpointError(f"ckpt_path={value} is a folder without checkpoints/*.ckpt; give a run folder or a .ckpt file")
        return str(newest)
    return value


def run_overrides(path: str | os.PathLike, ckpt: dict[str, Any] | None = None) -> list[str] | None:
    """The command-line overrides the run of checkpoint ``path`` was started with: the checkpoint's
    ``overrides`` entry (written by ``train.py``); for a checkpoint from before it, the run folder's
    ``.hydra/overrides.yaml``. None when neither is there or the file cannot be read (the run
    itself reports an unreadable checkpoint)."""
    if ckpt is None:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError:
            return None
    stored = ckpt.get(OVERRIDES)
    if isinstance(stored, (list, tuple)) and all(isinstance(x, str) for x in stored):
        return list(stored)
    run = run_dir_of(str(path))
    saved = run / ".hydra" / "overrides.yaml" if run is not None else None
    if saved is None or not saved.is_file():
        return None
    import yaml

    try:
        lines = yaml.safe_load(saved.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(lines, list):
        return None
    return [str(x) for x in lines if not str(x).startswith(tuple(f"{k}=" for k in NOT_REUSED))]


def run_dir_of(ckpt_path: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt`` with
    ``<run>/.hydra``), or None if it is not inside one."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    run = ckpt.parent.parent
    if ckpt.is_file() and ckpt.parent.name == "checkpoints" and (run / ".hydra").is_dir():
        return run
    return None
