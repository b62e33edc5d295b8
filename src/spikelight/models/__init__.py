"""Model families. Each maps x_seq [T, B, ...] → SpikeOutput."""

from spikelight.core.types import SpikeOutput
from spikelight.layers.recurrent import LeakyReadout, RecurrentSpikingLayer
from spikelight.models.conv import ConvSNN
from spikelight.models.event_driven import EventDrivenSNN
from spikelight.models.fc_lif import FCLIF
from spikelight.models.lsnn import LSNN
from spikelight.models.mlp import MLP
from spikelight.models.rnn import RNNClassifier

__all__ = ["ConvSNN", "EventDrivenSNN", "FCLIF", "MLP", "LSNN", "LeakyReadout", "RecurrentSpikingLayer", "RNNClassifier", "SpikeOutput"]
