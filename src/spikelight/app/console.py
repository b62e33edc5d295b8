"""Keep what a user cannot act on off the console.

Lightning's product tips, the ``log_every_n_steps`` warning on small data (the
plot callback records every step itself) and warnings about in-memory data
needing no workers. Called once by :mod:`spikelight.app.cli`.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet", "NOISE", "RankZero"]

# regexes of warning messages that say nothing actionable for spikelight runs
NOISE = (
    r".*LeafSpec.*",
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*log_every_n_steps.*",
    # DDP: val/acc_best is the max of an already synced metric; the training loss is
    # kept rank-local on purpose (spikelight.train.module) to avoid a collective every step
    r".*self.log\('val/acc_best'.*sync_dist=True.*",
    r".*self.log\('train/loss'.*sync_dist=True.*",
    # a resume into another folder: spikelight's resume line names both folders
    r".*The dirpath has changed from .* won't be reloaded.*",
    # a resume inside an epoch: spikelight's samplers leave out the batches already trained on (and
    # SpikingClassifier._skip_seen_batches says so where a sampler cannot)
    r".*resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable.*",
)


class _DropTips(logging.Filter):
    """Drop Lightning's advertising lines ("💡 Tip: ... litlogger / litmodels") and its note that a model
    summary callback was given."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        # spikelight's one-line model summary replaces Lightning's table (which Lightning then announces)
        return "Tip:" not in text and "Trainer already configured with model summary callbacks" not in text


_TIPS = _DropTips()


class RankZero(logging.Filter):
    """Pass records only in the rank-0 process (DDP workers would write their
    own ``train_ddp_process_<i>.log`` of duplicates); used by the run log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        return getattr(rank_zero_only, "rank", 0) == 0


def quiet() -> None:
    """Install the warning filters and the tip filter (idempotent)."""
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _TIPS not in logger.filters:
            logger.addFilter(_TIPS)
