"""The trainer–model contract (spikelight.core.contract): declared traits, hooks by shape, what
readouts and losses need, and loss=ce composed with the readout without changing the loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelight import models
from spikelight.core.contract import (
    DataDrivenInit,
    HasParamGroups,
    ModelTraits,
    OnlineLearningRule,
    OutputNeeds,
    ReadoutLoss,
    needs_of,
    traits_of,
)
from spikelight.learning import BPTT, EProp
from spikelight.losses import CEMembranePerStepLoss, MSERateLoss, ReadoutCrossEntropyLoss
from spikelight.readout import CountReadout, MembraneReadout, RateReadout


def test_every_model_family_declares_its_traits():
    for name in ("FCLIF", "MLP", "ConvSNN", "LSNN", "EventDrivenSNN"):
        assert isinstance(vars(getattr(models, name)).get("traits"), ModelTraits), name
    assert traits_of(models.LSNN) == ModelTraits(output_spikes=False, ann_every_step=True)
    assert traits_of(models.EventDrivenSNN) == ModelTraits(takes_labels=True, membrane_grad=False)
    assert issubclass(models.EventDrivenSNN, HasParamGroups)


def test_a_plain_module_gets_the_defaults_and_old_style_attributes_still_count():
    assert traits_of(nn.Linear(2, 2)) == ModelTraits()
    assert not isinstance(nn.Linear(2, 2), DataDrivenInit | HasParamGroups)

    class OldStyle(nn.Module):
        takes_labels = True
        output_spikes = False

    assert traits_of(OldStyle()) == ModelTraits(takes_labels=True, output_spikes=False)

    class Wrong(nn.Module):
        traits = {"takes_labels": True}

    with pytest.raises(TypeError, match="Wrong.traits must be a spikelight.core.contract.ModelTraits"):
        traits_of(Wrong())


def test_data_init_hook_needs_both_the_method_and_the_buffer():
    class Init(nn.Module):
        def __init__(self, with_buffer: bool) -> None:
            super().__init__()
            if with_buffer:
                self.register_buffer("data_initialized", torch.tensor(False))

        def data_init(self, x_seq):
            return [1.0]

    assert isinstance(Init(True), DataDrivenInit) and not isinstance(Init(False), DataDrivenInit)


def test_readout_and_loss_needs():
    assert needs_of(RateReadout()) == OutputNeeds()
    assert needs_of(CountReadout("membrane")) == OutputNeeds(spikes=True, membrane=True)
    assert needs_of(CountReadout("none")) == OutputNeeds(spikes=True)
    assert needs_of(MembraneReadout()) == OutputNeeds(membrane=True)
    assert needs_of(MSERateLoss()) == OutputNeeds(spikes=True)
    assert needs_of(CEMembranePerStepLoss()) == OutputNeeds(membrane=True)

    class OldStyle(nn.Module):
        reads_membrane = True

    assert needs_of(OldStyle()) == OutputNeeds(membrane=True)


def test_bind_composes_without_changing_the_loss():
    loss, readout = ReadoutCrossEntropyLoss(), MembraneReadout("last")
    bound = loss.bind(readout)
    assert isinstance(loss, ReadoutLoss) and loss.readout is None and needs_of(loss) == OutputNeeds()
    assert bound is not loss and bound.readout is readout and needs_of(bound) == OutputNeeds(membrane=True)
    assert loss.bind(RateReadout()).readout is not readout  # one configured loss, several readouts
    with pytest.raises(RuntimeError, match="loss=ce needs a readout"):
        loss(None, torch.zeros(1, dtype=torch.long))


def test_online_rules_are_recognised_by_their_methods():
    assert isinstance(EProp(), OnlineLearningRule) and not isinstance(BPTT(), OnlineLearningRule)
