"""SpikingClassifier bookkeeping that the end-to-end tests do not pin down."""

from types import SimpleNamespace

import pytest
import torch

from spikelight.core.errors import NonFiniteLossError
from spikelight.encoding import DirectEncoder
from spikelight.losses import MSERateLoss
from spikelight.models import FCLIF
from spikelight.neurons import LIFNode
from spikelight.readout import RateReadout
from spikelight.train.module import SpikingClassifier


def test_val_acc_best_keeps_the_best_epoch():
    module = SpikingClassifier(FCLIF(LIFNode()), DirectEncoder(2), RateReadout(), MSERateLoss(), torch.optim.Adam)
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    for acc in (0.5, 0.8, 0.6):
        module._trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val/acc": torch.tensor(acc)})
        module.on_validation_epoch_end()
    assert module.val_acc_best == logged["val/acc_best"] == float(torch.tensor(0.8))


def test_nonfinite_loss_check_defers_the_sync_but_names_the_first_bad_step(monkeypatch):
    # on an accelerator the loss is read back every FINITE_CHECK_EVERY steps only
    module = SpikingClassifier(FCLIF(LIFNode()), DirectEncoder(2), RateReadout(), MSERateLoss(), torch.optim.Adam)
    monkeypatch.setattr(module, "_defer_finite_check", lambda loss: True)
    monkeypatch.setattr(SpikingClassifier, "FINITE_CHECK_EVERY", 5)
    reads = []
    monkeypatch.setattr(module, "_raise_if_nonfinite", lambda real=module._raise_if_nonfinite: reads.append(1) or real())
    losses = [0.5, 0.4, float("inf"), float("nan"), 0.3]
    for step, value in enumerate(losses[:4]):
        module._check_finite(torch.tensor(value), step)  # steps 0-3: no read-back, no error yet
    assert reads == []
    with pytest.raises(NonFiniteLossError, match=r"training loss is inf at epoch 0, step 2;"):
        module._check_finite(torch.tensor(losses[4]), 4)
    assert reads == [1]


def test_nonfinite_loss_on_cpu_stops_at_once():
    module = SpikingClassifier(FCLIF(LIFNode()), DirectEncoder(2), RateReadout(), MSERateLoss(), torch.optim.Adam)
    module._check_finite(torch.tensor(1.0), 0)
    with pytest.raises(NonFiniteLossError, match="training loss is nan at epoch 0, step 1;"):
        module._check_finite(torch.tensor(float("nan")), 1)
