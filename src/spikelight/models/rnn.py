"""Non-spiking recurrent baselines: LSTM and GRU on the same sequences, readouts and losses as the LSNN.

    x_seq [T, B, F] → nn.LSTM / nn.GRU (time-major) → h [T, B, H] → (dropout) → Linear → logits [T, B, C]

The comparison of the LSNN paper (Bellec et al. 2018: LSTM 98.5% on sequential MNIST) in one command,
``python train.py model=lstm`` (``model=gru``), through the same LightningModule. Like the LSNN's leaky
readout the output does not spike: ``SpikeOutput.spikes`` is None and ``membrane`` holds the per-step
class scores, which ``readout=rate|last|membrane`` reduce over time and ``loss=ce`` trains.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikelight.core.contract import ModelTraits
from spikelight.core.errors import ConfigError
from spikelight.core.types import SpikeOutput
from spikelight.models.base import check_features

__all__ = ["RNNClassifier", "CELLS"]

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RNNClassifier(nn.Module):
    """An LSTM or GRU read out by a linear layer at every step.

    Args:
        cell: ``lstm`` or ``gru`` (PyTorch's cells, their default initialisation).
        in_features: inputs per step (set from the data when null in the config).
        hidden: units per layer.
        num_layers: stacked recurrent layers.
        num_classes: outputs.
        dropout: dropout on the last layer's outputs before the readout (and between stacked layers).

    forward(x_seq [T, B, F], state=None) → SpikeOutput(spikes=None, membrane=logits [T, B, C],
    hidden={}, state=the cell's final state).
    """

    traits = ModelTraits(output_spikes=False)

    def __init__(
        self,
        cell: str = "lstm",
        in_features: int = 1,
        hidden: int = 128,
        num_layers: int = 1,
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"model.cell must be one of {tuple(CELLS)}, got {cell!r}")
        for name, val in (("hidden", hidden), ("num_layers", num_layers), ("in_features", in_features)):
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ConfigError(f"model.{name} must be a positive integer, got {val!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}")
        self.cell, self.in_features = cell, in_features
        self.rnn = CELLS[cell](in_features, hidden, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x_seq: Tensor, state=None) -> SpikeOutput:
        x = check_features(x_seq, self.in_features, type(self).__name__)
        h, state = self.rnn(x.to(torch.promote_types(x.dtype, torch.float32)), state)
        return SpikeOutput(spikes=None, membrane=self.fc(self.drop(h)), hidden={}, state=state)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}"
