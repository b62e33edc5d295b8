"""Recurrent spiking networks: the LSNN of Bellec et al. (LIF + adaptive neurons) trained with BPTT.

    x_seq [T, B, F] → RecurrentSpikingLayer (W_in, W_rec without self-connections, neuron)
                    → spikes z [T, B, H] → (dropout) → LeakyReadout → logits [T, B, C]

The readout neurons do not spike: ``SpikeOutput.spikes`` is None and
``SpikeOutput.membrane`` holds their potential, the per-step class scores.
Readouts reduce it over time (``readout=rate``: mean over all steps, ``last``:
the last step, ``membrane`` with ``mode``/``window``: e.g. the mean of the last 28
steps as in the LSNN paper).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelight.core.contract import ModelTraits
from spikelight.core.types import SpikeOutput
from spikelight.layers.over_time import NeuronFactory
from spikelight.layers.recurrent import LeakyReadout, RecurrentSpikingLayer, RecurrentState
from spikelight.models.base import check_features

__all__ = ["LSNNState", "LSNN"]


class LSNNState(NamedTuple):
    """State of an :class:`LSNN`: the recurrent layer's and the readout filter's."""

    rec: RecurrentState
    readout: Tensor


class LSNN(nn.Module):
    """Long short-term memory spiking network (Bellec et al. 2018): one recurrent spiking
    layer (LIF, or adaptive neurons with ``neuron=sfa``) and leaky non-spiking readout neurons.

    Args:
        neuron: neuron factory for the recurrent layer.
        in_features: inputs per step (1 for pixel-by-pixel, 28 row-by-row, 80 threshold crossing).
        hidden: recurrent neurons.
        num_classes: readout neurons.
        readout_tau: readout membrane time constant in steps (None = plain linear readout per step).
        dropout: dropout probability on the spikes read out (not on the recurrence).
        dropout_shared: one dropout mask per neuron for all time steps (else a new mask every step).
        tbptt_steps: truncated BPTT window (see :class:`RecurrentSpikingLayer`); also truncates
            the readout filter. None = full BPTT.
        bias: bias on the input projection.

    forward(x_seq [T, B, F], state=None) → SpikeOutput(spikes=None, membrane=logits [T, B, C],
    hidden={"rec.neuron": z [T, B, H]}, state=LSNNState).
    """

    #: the readout neurons do not spike; its equivalent ANN is an RNN over the same steps (SOP counts)
    traits = ModelTraits(output_spikes=False, ann_every_step=True)

    def __init__(
        self,
        neuron: NeuronFactory,
        in_features: int = 1,
        hidden: int = 220,
        num_classes: int = 10,
        readout_tau: float | None = 20.0,
        dropout: float = 0.0,
        dropout_shared: bool = True,
        tbptt_steps: int | None = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        self.in_features = in_features
        self.dropout, self.dropout_shared = float(dropout), bool(dropout_shared)
        self.rec = RecurrentSpikingLayer(in_features, hidden, neuron, bias=bias, tbptt_steps=tbptt_steps)
        self.readout = LeakyReadout(hidden, num_classes, readout_tau)

    def _drop(self, z: Tensor) -> Tensor:
        if not self.training or self.dropout == 0.0:
            return z
        if not self.dropout_shared:
            return F.dropout(z, self.dropout, training=True)
        keep = torch.empty_like(z[:1]).bernoulli_(1.0 - self.dropout) / (1.0 - self.dropout)
        return z * keep

    def forward(self, x_seq: Tensor, state: LSNNState | None = None) -> SpikeOutput:
        x = check_features(x_seq, self.in_features, type(self).__name__)
        rec_out = self.rec(x, None if state is None else state.rec)
        z = self._drop(rec_out.spikes)
        readout_state = None if state is None else state.readout
        k = self.rec.tbptt_steps
        backend = self.rec.backend(z)  # the readout follows the recurrent layer's backend
        if k is None or k >= z.shape[0]:
            logits, readout_state = self.readout(z, readout_state, backend=backend)
        else:  # truncate the readout filter like the recurrence
            chunks = []
            for part in z.split(k):
                out, readout_state = self.readout(part, readout_state, backend=backend)
                chunks.append(out)
                readout_state = readout_state.detach()
            logits = torch.cat(chunks)
        return SpikeOutput(
            spikes=None,
            membrane=logits,
            hidden={"rec.neuron": rec_out.spikes},
            state=LSNNState(rec_out.state, readout_state),
        )
