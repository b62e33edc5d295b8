"""The bottom layer: types every other layer speaks (``SpikeOutput``, ``NeuronOutput``, state
tuples), the error classes, the surrogate spike functions and the model contract.

Depends on torch only; every other part of spikelight may import it.
"""
