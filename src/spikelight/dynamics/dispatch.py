"""Fused multi-step neuron kernels and the choice between them (``neuron.backend``).

    torch   the reference loop of :meth:`BaseNode.multi_step` (any neuron, any surrogate)
    fused   one ``torch.autograd.Function`` per neuron kind in plain PyTorch, any device
            (the CPU fast path; :mod:`spikelight.dynamics.fused.neurons`)
    triton  Triton kernels, CUDA, fp32 / bf16 / fp16 I/O, built-in surrogates
            (:mod:`spikelight.dynamics.triton.neurons`)
    auto    triton on CUDA where it applies, else fused where the neuron has a
            fused form, else torch (measured: fused is faster than the loop on
            CPU at every size tried, see experiments/benchmarks/RESULTS.md)

A neuron has a fused form when it returns a spec from ``_kernel_spec()``
(IF, LIF, Leaky, ALIF, dual-exponential do, unless a subclass changed their
dynamics; ALIF's Triton kernel is the recurrent layer's without W_rec (fp32 state,
at most 512 neurons in the last axis); the dual-exponential neuron has none:
``auto`` runs it fused on every device). A neuron written
by a user (its ``charge`` only) has none and runs the reference loop under
``auto``; asking such a neuron for ``fused`` / ``triton`` is refused in one line.

The recurrent layer (LSNN) follows its neuron's ``backend`` the same way
(:func:`select_recurrent_backend`): ``auto`` / ``fused`` run the whole
sequence, recurrence included, as one autograd Function
(:mod:`spikelight.dynamics.fused.recurrent`) for IF, LIF and ALIF neurons; ``torch`` is
the reference per-step loop. On CUDA (fp32, a built-in surrogate) that Function's
loops are two persistent Triton kernels (:mod:`spikelight.dynamics.triton.recurrent`;
``triton`` asks for them explicitly, refused in one line where they cannot run). On the CPU (fp32, no autocast) its per-step loops run
in C (:mod:`spikelight.dynamics.native.library`, built on first use where a C compiler
is; else TorchScript), with the recurrent product summed over the spikes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikelight.core.errors import ConfigError
from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.fused.neurons import leaky_multi_step, lif_multi_step
from spikelight.dynamics.fused.recurrent import TRITON_MAX_H, recurrent_loops, recurrent_multi_step
from spikelight.dynamics.spec import ALIFSpec, DualExpSpec, KernelSpec, LeakySpec, LIFSpec

__all__ = [
    "BACKENDS",
    "LIFSpec",
    "LeakySpec",
    "ALIFSpec",
    "DualExpSpec",
    "KernelSpec",
    "check_backend",
    "select_backend",
    "select_recurrent_backend",
    "run_fused",
    "recurrent_multi_step",
    "recurrent_loops",
]

BACKENDS = ("auto", "fused", "triton", "torch")


def check_backend(backend: str) -> str:
    """Validate a ``neuron.backend`` value."""
    if backend not in BACKENDS:
        raise ConfigError(f"neuron backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def _no_fused_reason(spec: KernelSpec | None, surrogate: Surrogate) -> str | None:
    if spec is None:
        return "has no fused form (a neuron defined by its own charge/step)"
    if type(surrogate).forward is not Surrogate.forward:
        return f"uses surrogate {type(surrogate).__name__} with its own forward"
    return None


def _no_triton_reason(spec: KernelSpec, surrogate: Surrogate, x: Tensor) -> str | None:
    from spikelight.dynamics.triton import neurons as tn

    if isinstance(spec, DualExpSpec):
        return "has no Triton kernel for the dual-exponential neuron"
    if not tn.triton_available(x.device):
        return "needs a CUDA tensor and triton installed"
    if x.dtype not in tn.DTYPES:
        return f"takes fp32/bf16/fp16 input, got {x.dtype}"
    if tn.triton_surrogate(surrogate) is None:
        return f"has no in-kernel form of surrogate {type(surrogate).__name__}"
    if isinstance(spec, ALIFSpec) and x.shape[-1] > TRITON_MAX_H:  # the recurrent layer's kernel, no W_rec
        return f"runs ALIF on at most {TRITON_MAX_H} neurons in the last axis, got {x.shape[-1]}"
    return None


def select_backend(requested: str, spec: KernelSpec | None, surrogate: Surrogate, x: Tensor, who: str) -> str:
    """The backend that runs: ``torch``, ``fused`` or ``triton``.

    ``auto`` never fails (it falls back); an explicit ``fused`` / ``triton`` that
    cannot run raises one line naming the fix. ``who`` names the neuron class.
    """
    check_backend(requested)
    if requested == "torch":
        return "torch"
    why = _no_fused_reason(spec, surrogate)
    if why is not None:
        if requested == "auto":
            return "torch"
        raise ConfigError(f"neuron.backend={requested}: {who} {why}; use neuron.backend=auto or torch")
    if requested == "fused":
        return "fused"
    if requested == "triton":
        why = _no_triton_reason(spec, surrogate, x)
        if why is not None:
            raise ConfigError(f"neuron.backend=triton {why}; use neuron.backend=auto or fused")
        return "triton"
    if x.device.type == "cuda" and _no_triton_reason(spec, surrogate, x) is None:
        return "triton"
    return "fused"


def select_recurrent_backend(requested: str, spec: KernelSpec | None, surrogate: Surrogate, who: str) -> str:
    """The backend a recurrent layer runs with its neuron: ``torch`` (the loop) or ``fused`` (one
    autograd Function; with ``triton`` requested its loops are the persistent Triton kernels, which
    :func:`~spikelight.dynamics.fused.recurrent.recurrent_multi_step` checks can run).

    ``auto`` falls back to the loop for a neuron without a fused recurrent form; an
    explicit ``fused`` / ``triton`` that cannot run raises one line naming the fix.
    """
    check_backend(requested)
    if requested == "torch":
        return "torch"
    why = _no_fused_reason(spec, surrogate)
    if why is None and not isinstance(spec, (LIFSpec, ALIFSpec)):
        why = "has no fused recurrent form (IF, LIF and ALIF have)"
    if why is not None:
        if requested == "auto":
            return "torch"
        raise ConfigError(f"neuron.backend={requested}: {who} {why}; use neuron.backend=auto or torch")
    return "fused"  # triton too: the fused Function runs its loops as the persistent Triton kernels


def run_fused(
    backend: str, spec: KernelSpec, surrogate: Surrogate, x: Tensor, v0: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Run all T steps on a fused backend.

    x: [T, B, ...] any float dtype; v0: [B, ...] initial membrane (compute dtype).
    Returns (spikes [T, B, ...] in x's dtype, h [T, B, ...] and v_T [B, ...] in the
    compute dtype: fp32, or fp64 for fp64 input).
    """
    if backend == "triton":
        from spikelight.dynamics.triton import neurons as tn

        fn = tn.TritonLIFFunction if isinstance(spec, LIFSpec) else tn.TritonLeakyFunction
        return fn.apply(x, v0, spec, tn.triton_surrogate(surrogate))
    compute = torch.promote_types(x.dtype, torch.float32)
    run = lif_multi_step if isinstance(spec, LIFSpec) else leaky_multi_step
    s, h, v = run(x.to(compute), v0.to(compute), spec, surrogate)
    return s.to(x.dtype), h, v
