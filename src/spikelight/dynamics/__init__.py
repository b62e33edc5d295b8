"""Neuron dynamics and the backends that run them.

- :mod:`~spikelight.dynamics.reference`: pure per-step functions, the executable definition of
  every built-in neuron (what the reference loop runs and every fast path is held to).
- :mod:`~spikelight.dynamics.spec`: a neuron's parameters as one frozen record, and the named,
  typed constants every kernel derives from it (:class:`~spikelight.dynamics.spec.KernelArgs`).
- :mod:`~spikelight.dynamics.dispatch`: the one place a backend is chosen
  (``neuron.backend=auto|torch|fused|native|triton``) and run.
- backends: :mod:`~spikelight.dynamics.fused` (autograd Functions in plain PyTorch, any device),
  :mod:`~spikelight.dynamics.native` (C loops on the CPU, compiled on first use),
  :mod:`~spikelight.dynamics.triton` (GPU kernels).

Depends on :mod:`spikelight.core` only.
"""
