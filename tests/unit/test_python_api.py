"""The Python API works without Hydra: build SpikingClassifier by hand, train with a plain Trainer."""

from functools import partial

import lightning as L
import torch

from spikelight.core.surrogate import ATan
from spikelight.data import DigitsDataModule
from spikelight.encoding import PoissonEncoder
from spikelight.losses import MSERateLoss
from spikelight.models import FCLIF
from spikelight.neurons import LIFNode
from spikelight.readout import RateReadout
from spikelight.train.module import SpikingClassifier


def test_train_without_hydra(tmp_path):
    L.seed_everything(0)
    module = SpikingClassifier(
        model=FCLIF(neuron=LIFNode(tau=2.0, surrogate=ATan())),
        encoder=PoissonEncoder(T=16),
        readout=RateReadout(),
        loss=MSERateLoss(),
        optimizer=partial(torch.optim.Adam, lr=5e-3),
    )
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)
    dm = DigitsDataModule()
    trainer.fit(module, datamodule=dm)
    (result,) = trainer.test(module, datamodule=dm, verbose=False)
    assert result["test/acc"] > 0.8  # chance is 0.1
    preds = module.predict_step(next(iter(dm.test_dataloader())), 0)
    assert preds.shape == (64,) and preds.dtype == torch.int64


def test_a_batch_without_time_axis_is_refused_in_one_line():
    """[B, 1, 28, 28] would otherwise pass as 8 time steps of one sample (issue 23)."""
    import pytest

    from spikelight.core.errors import ShapeError
    from spikelight.models import ConvSNN

    fc = FCLIF(neuron=LIFNode(tau=2.0))
    images = torch.rand(8, 1, 28, 28)
    for model, x in ((fc, images), (fc, images.flatten(1)),
                     (ConvSNN(neuron=partial(LIFNode, tau=2.0), in_shape=(1, 28, 28), layers=[{"conv": 4, "maxpool": 2}]), images)):
        with pytest.raises(ShapeError, match=r"got \[8, .*a batch of 8 samples without a time axis\? .*x.unsqueeze\(0\)$"):
            model(x)
    assert fc(PoissonEncoder(T=3)(images)).spikes.shape == (3, 8, 10)  # [T, B, 1, 28, 28] as documented
    assert fc(images.unsqueeze(0)).spikes.shape == (1, 8, 10)
