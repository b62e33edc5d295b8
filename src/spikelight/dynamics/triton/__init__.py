"""The ``triton`` backend: GPU kernels for IF / LIF / Leaky (element-wise over time) and the
persistent recurrent kernels (all T steps per launch)."""
