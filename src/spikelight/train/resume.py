"""Resuming from a checkpoint written at an epoch's end: the next epoch trains, with or without ``trainer.max_steps``.

``last.ckpt`` and the best-validation checkpoint are written inside ``on_train_epoch_end``, after the epoch's
last batch and its validation: Lightning's loop state then reads "epoch processed, not yet completed". Without
``trainer.max_steps``, Lightning 2.6 resumes such a checkpoint by completing that epoch. With it (iteration-based
training, e.g. ``experiment=lsnn_smnist``'s 36,000 steps), Lightning counts every resume as a restart
(``_FitLoop.restarting``): it ends that epoch a second time without a batch and counts it processed again, so
each resume cost one epoch of ``trainer.max_epochs`` (measured: ``max_epochs=1`` then a resume with
``max_epochs=2`` trained nothing; an LSNN run resumed twice would have stopped two epochs short), and the counts
it saved from then on were off (processed ahead of started).

:func:`finish_epoch_end_state` rewrites the loop state of such a checkpoint, as it is loaded, to what it is:
that many epochs finished, the next one not begun — the state Lightning itself reaches without ``max_steps``.
Checkpoints written inside an epoch (``preempted.ckpt``, ``interval.ckpt``) are left to Lightning as they are.
One written after ``max_steps`` stopped the run inside an epoch (the epoch loop ended early: that epoch is
counted processed, its last batch not reached) was resumed by Lightning as an epoch ended — with a larger
``max_steps`` it trained the rest of that epoch and then counted the epoch once more, so ``max_epochs`` stopped
the run an epoch short (measured: 4 batches an epoch, ``max_steps=6`` then 12 with ``max_epochs=3`` trained 8
batches). :func:`reopen_epoch_stopped_early` counts that epoch unprocessed again, so Lightning resumes it
mid-epoch (measured: 12 batches, 4 per epoch, one validation each). :func:`mend_loop_state` applies whichever
fits. The test of "written at an epoch's end" reads the counts; a checkpoint whose counts an earlier
resume already put off (written before this fix) and that was written at validation's end of an epoch's last
batch would be read as that epoch finished (its epoch-end hooks not run). What stays: with
``max_steps`` Lightning still passes once through its "restarted after the last batch" branch at the resumed
epoch's start (no batch is trained), which advances the loggers' step by one per resume: a resume keeps the
metrics.csv rows up to the checkpoint's logger step, not its global step
(:func:`spikelight.app.rundir.logger_step`; before 2026-12-06 17:30 UTC the third resume dropped the
validation rows of an earlier epoch). Called from
:meth:`spikelight.train.module.SpikingClassifier.on_load_checkpoint`, which Lightning runs before it restores
the loops.
"""

from __future__ import annotations

__all__ = ["finish_epoch_end_state", "reopen_epoch_stopped_early", "mend_loop_state"]

_COUNTS = ("ready", "started", "processed", "completed")


def _loop_counts(checkpoint: dict) -> tuple[dict, dict] | None:
    """The fit loop's epoch progress and its epoch loop's batch progress in ``checkpoint`` (None if absent)."""
    fit = checkpoint.get("loops", {}).get("fit_loop")
    if not isinstance(fit, dict) or "epoch_progress" not in fit or "epoch_loop.batch_progress" not in fit:
        return None
    return fit["epoch_progress"], fit["epoch_loop.batch_progress"]


def finish_epoch_end_state(checkpoint: dict) -> bool:
    """If ``checkpoint`` was written at the end of an epoch (its last training batch done, that epoch processed
    but not counted complete), set the fit loop's epoch counts to the epochs finished (those completed + 1)
    and the epoch loop's batch counts to a new epoch's. Returns whether it changed anything."""
    counts = _loop_counts(checkpoint)
    if counts is None:
        return False
    epochs, batches = counts
    current = batches.get("current", {})
    at_epoch_end = bool(batches.get("is_last_batch")) and current.get("completed") == current.get("processed") > 0
    # written after the epoch was counted complete (at the end of a fit, or by hand) or inside it: not ours
    if not at_epoch_end or epochs["current"]["completed"] >= epochs["current"]["processed"]:
        return False
    finished = epochs["current"]["completed"] + 1
    for kind in ("total", "current"):
        epochs[kind].update(dict.fromkeys(_COUNTS, finished))
    batches["current"] = dict.fromkeys(_COUNTS, 0)
    batches["is_last_batch"] = False
    return True


def reopen_epoch_stopped_early(checkpoint: dict) -> bool:
    """If ``checkpoint`` was written after ``max_steps`` stopped the run inside an epoch (the epoch counted
    processed, its last batch not reached, every batch begun finished), count that epoch unprocessed, so that a
    resume trains the rest of it as one epoch. Returns whether it changed anything.

    The same counts follow any stop inside an epoch that runs the epoch's end (``trainer.should_stop`` set by
    EarlyStopping or ``max_time`` mid-epoch): those resume the same way. The stopped epoch's end hooks have run
    once already: train.log has two lines for that epoch and metrics.csv two ``train/loss_epoch`` rows (the
    first of its batches before the stop); ``time/epoch_s`` is logged for neither part (EpochTimeCallback)."""
    counts = _loop_counts(checkpoint)
    if counts is None:
        return False
    epochs, batches = counts
    current = batches.get("current", {})
    inside = not batches.get("is_last_batch") and current.get("completed") == current.get("processed") > 0
    if not inside or epochs["current"]["processed"] != epochs["current"]["completed"] + 1:
        return False
    for kind in ("total", "current"):
        epochs[kind]["processed"] = epochs[kind]["completed"]
    return True


def mend_loop_state(checkpoint: dict) -> bool:
    """Both of the above, as a checkpoint is loaded (at most one applies). Returns whether one did."""
    return finish_epoch_end_state(checkpoint) or reopen_epoch_stopped_early(checkpoint)
