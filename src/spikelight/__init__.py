"""spikelight: Hydra + Lightning experiments for spiking neural networks."""

from spikelight.core import moved as _moved

__version__ = "0.1.0"

_moved.install()  # old module paths (before the layered package of 2026-12) keep importing
