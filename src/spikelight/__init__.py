"""spikelight: Hydra + Lightning experiments for spiking neural networks."""

__version__ = "0.1.0"
