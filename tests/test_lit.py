"""SpikingClassifier bookkeeping that the end-to-end tests do not pin down."""

from types import SimpleNamespace

import torch

from spikelight.encoding import DirectEncoder
from spikelight.lit import SpikingClassifier
from spikelight.losses import MSERateLoss
from spikelight.models import FCLIF
from spikelight.neurons import LIFNode
from spikelight.readout import RateReadout


def test_val_acc_best_keeps_the_best_epoch():
    module = SpikingClassifier(FCLIF(LIFNode()), DirectEncoder(2), RateReadout(), MSERateLoss(), torch.optim.Adam)
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    for acc in (0.5, 0.8, 0.6):
        module._trainer = SimpleNamespace(sanity_checking=False, callback_metrics={"val/acc": torch.tensor(acc)})
        module.on_validation_epoch_end()
    assert module.val_acc_best == logged["val/acc_best"] == float(torch.tensor(0.8))
