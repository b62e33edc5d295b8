"""The ``fused`` backend: one ``torch.autograd.Function`` per neuron kind in plain PyTorch (any device).

Forward without autograd on preallocated buffers, a hand-written reverse-time backward. The
recurrent Function (:mod:`~spikelight.dynamics.fused.recurrent`) also drives the C
(:mod:`~spikelight.dynamics.native`) and Triton (:mod:`~spikelight.dynamics.triton`) loops.
"""
