"""The ``native`` backend: the recurrent / IF / LIF / ALIF loops in C on the CPU (``cpu_native.c``),
compiled on first use by the system C compiler and called through ctypes (:mod:`.library`)."""
