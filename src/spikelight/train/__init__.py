"""Training on Lightning: the one LightningModule (:class:`SpikingClassifier`), callbacks
(plots, synaptic operations, gradient flow, pre-emption), checkpoint IO, loggers and figures."""

from spikelight.train.module import SpikingClassifier

__all__ = ["SpikingClassifier"]
