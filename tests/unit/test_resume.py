"""An epoch-end checkpoint resumes at the next epoch (spikelight.train.resume): the loop state Lightning loads."""

from __future__ import annotations

import copy

from spikelight.train.resume import finish_epoch_end_state, mend_loop_state, reopen_epoch_stopped_early


def _ckpt(epochs: dict, batch_current: int, is_last: bool, epoch: int) -> dict:
    counts = lambda n: dict.fromkeys(("ready", "started", "processed", "completed"), n)  # noqa: E731
    return {
        "epoch": epoch,
        "loops": {"fit_loop": {
            "epoch_progress": {"total": dict(epochs), "current": dict(epochs)},
            "epoch_loop.batch_progress": {"total": counts(2365), "current": counts(batch_current),
                                          "is_last_batch": is_last},
        }},
    }  # fmt: skip


def _epochs(ckpt: dict) -> dict:
    """The fit loop's current epoch counts, checked equal to its totals (Lightning's restart reads ``total``)."""
    progress = ckpt["loops"]["fit_loop"]["epoch_progress"]
    assert progress["total"] == progress["current"], progress
    return progress["current"]


def test_a_checkpoint_written_at_an_epochs_end_reads_that_many_epochs_finished():
    # written inside on_train_epoch_end of epoch 13 (index 12): processed 13, completed 12
    ckpt = _ckpt({"ready": 13, "started": 13, "processed": 13, "completed": 12}, 215, True, 12)
    assert finish_epoch_end_state(ckpt)
    assert _epochs(ckpt) == dict.fromkeys(("ready", "started", "processed", "completed"), 13)
    batches = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    assert batches["current"]["ready"] == 0 and batches["is_last_batch"] is False
    assert batches["total"]["ready"] == 2365  # the run's totals stay


def test_the_counts_two_max_steps_resumes_left_behind_are_mended():
    # bellec_s0's last.ckpt after two resumes under Lightning 2.6 with max_steps (11 epochs trained)
    ckpt = _ckpt({"ready": 12, "started": 12, "processed": 13, "completed": 10}, 215, True, 10)
    assert finish_epoch_end_state(ckpt)
    assert set(_epochs(ckpt).values()) == {11}


def test_mid_epoch_and_completed_checkpoints_are_left_alone():
    mid = _ckpt({"ready": 4, "started": 4, "processed": 3, "completed": 3}, 100, False, 3)  # pre-emption
    done = _ckpt({"ready": 5, "started": 5, "processed": 5, "completed": 5}, 215, True, 5)  # counted complete
    for ckpt in (mid, done, {"state_dict": {}}):
        before = copy.deepcopy(ckpt)
        assert not finish_epoch_end_state(ckpt) and ckpt == before


def test_a_run_stopped_inside_an_epoch_by_max_steps_reopens_that_epoch():
    # Lightning 2.6 after max_steps=6 with 4 batches an epoch: epoch 1 processed, 2 of its batches done
    ckpt = _ckpt({"ready": 2, "started": 2, "processed": 2, "completed": 1}, 2, False, 1)
    assert reopen_epoch_stopped_early(ckpt)
    assert _epochs(ckpt) == {"ready": 2, "started": 2, "processed": 1, "completed": 1}
    assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == 2  # resumes at batch 2


def test_each_mend_applies_to_its_own_checkpoints_only():
    end = _ckpt({"ready": 13, "started": 13, "processed": 13, "completed": 12}, 215, True, 12)
    stopped = _ckpt({"ready": 2, "started": 2, "processed": 2, "completed": 1}, 2, False, 1)
    preempted = _ckpt({"ready": 4, "started": 4, "processed": 3, "completed": 3}, 100, False, 3)
    assert not reopen_epoch_stopped_early(copy.deepcopy(end)) and not finish_epoch_end_state(copy.deepcopy(stopped))
    before = copy.deepcopy(preempted)
    assert not mend_loop_state(preempted) and preempted == before
    assert mend_loop_state(end) and mend_loop_state(stopped)
