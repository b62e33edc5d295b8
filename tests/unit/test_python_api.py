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
