"""User-facing errors. Their message is one line that names the fix; ``train.py``
prints it as ``error: ...`` and exits with code 2 instead of a traceback."""

from __future__ import annotations

__all__ = [
    "SpikelightError",
    "ConfigError",
    "ShapeError",
    "DatasetNotFoundError",
    "DatasetCorruptError",
    "CheckpointError",
    "UntrustedTargetError",
    "NonFiniteLossError",
    "NonFiniteGradientError",
]


class SpikelightError(Exception):
    """Base of every error a user can fix from the command line."""


class ConfigError(SpikelightError, ValueError):
    """A configuration value is missing or invalid."""


class ShapeError(SpikelightError, ValueError):
    """A tensor has the wrong shape for the layer it is fed to."""


class DatasetNotFoundError(SpikelightError, FileNotFoundError):
    """A dataset is missing and could not be downloaded."""


class DatasetCorruptError(SpikelightError, ValueError):
    """A dataset file exists but is truncated, corrupt or inconsistent."""


class CheckpointError(SpikelightError, ValueError):
    """A checkpoint is missing, not a checkpoint, untrusted, or of another model."""


class UntrustedTargetError(ConfigError):
    """A ``_target_`` outside the libraries spikelight configures, not opted in."""


class NonFiniteLossError(SpikelightError, RuntimeError):
    """The training loss became NaN or infinite."""


class NonFiniteGradientError(NonFiniteLossError):
    """A gradient became NaN or infinite (the loss was finite)."""


class BackendError(SpikelightError, RuntimeError):
    """An explicitly requested backend failed to run (e.g. a Triton kernel did not compile or launch)."""
