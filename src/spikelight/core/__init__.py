"""The bottom layer: types every other layer speaks (``SpikeOutput``, ``NeuronOutput``, state
tuples), the error classes, the surrogate spike functions, the model contract, and files replaced
whole or not at all (:mod:`spikelight.core.files`).

Depends on torch only; every other part of spikelight may import it.
"""
