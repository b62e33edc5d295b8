"""The one place a backend is chosen (``neuron.backend``) and run.

    torch   the reference per-step loop (``BaseNode.multi_step``, the recurrent layer's loop):
            any neuron, any surrogate, any device
    fused   one autograd Function per neuron kind in plain PyTorch, any device
            (:mod:`spikelight.dynamics.fused`)
    native  the C loops on the CPU: fp32, no autocast, a C compiler (:mod:`spikelight.dynamics.native`)
    triton  GPU kernels, CUDA (:mod:`spikelight.dynamics.triton`)
    auto    the first of triton (CUDA tensors only), native, fused that can run the call; else torch

What each neuron has (a neuron written by a user — its ``charge`` only — or one whose
surrogate has its own ``forward`` has the reference loop only):

    ========================  =====  =====  ======  ====================================
    neuron                    torch  fused  native  triton
    ========================  =====  =====  ======  ====================================
    IF / LIF                  yes    yes    yes     yes (element-wise; fp32/bf16/fp16 I/O)
    Leaky (snnTorch)          yes    yes    no      yes (element-wise; fp32/bf16/fp16 I/O)
    ALIF                      yes    yes    yes     yes (persistent kernel; fp32, H <= 512)
    ALIF, lsnn_official       yes    yes    yes     yes (its own persistent kernels; fp32, H <= 512)
    dual-exponential          yes    yes    no      no
    recurrent layer (IF/LIF/  yes    yes    yes     yes (persistent kernels; fp32, H <= 512)
    ALIF), LSNN
    ========================  =====  =====  ======  ====================================

IF, LIF and ALIF run one autograd Function whether feed-forward or recurrent
(:class:`~spikelight.dynamics.fused.recurrent.RecurrentFunction`, W_rec None for a
feed-forward layer): its steps are written once per backend. ``auto`` never fails (it
falls back); an explicit backend that cannot run the call is refused in one line naming
the fix. One exception keeps runs alive: a state monitor (``record``) asks for every
step's state, which the Triton kernels do not write, so that call runs ``fused``.

A GPU never crashes a run that ``auto`` could run elsewhere: before ``auto`` first picks Triton for a
neuron kind, size and surrogate on a device, it runs the kernels once forward and backward on a tiny input
(:func:`triton_works`); if they fail to compile or launch, ``auto`` uses the next backend from then on, with
one warning line naming the cause. A failure later in the real call (:func:`guarded`; the recurrent
Function's backward) falls back the same way; an explicit ``neuron.backend=triton`` fails in one line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

from spikelight.core.errors import BackendError, ConfigError
from spikelight.core.surrogate import Surrogate
from spikelight.dynamics.fused.dual_exp import dual_exp_multi_step
from spikelight.dynamics.fused.leaky import leaky_multi_step
from spikelight.dynamics.fused.official import official_multi_step
from spikelight.dynamics.fused.recurrent import TRITON_FALLBACK, recurrent_multi_step
from spikelight.dynamics.native import library as native
from spikelight.dynamics.spec import ALIFSpec, DualExpSpec, KernelSpec, LeakySpec, LIFSpec

__all__ = [
    "BACKENDS", "TRITON_MAX_H", "check_backend", "why_not", "choose", "run_neuron", "run_recurrent", "guarded",
    "triton_works",
]  # fmt: skip

T_ = TypeVar("T_")

BACKENDS = ("auto", "torch", "fused", "native", "triton")

#: the persistent Triton kernels hold [BLOCK_R, H] tiles per program (BLOCK_R 4 or 8 rows). At H <= 512 (BLOCK_H
#: <= 512) they take at most 33,280 B of shared memory per block and compile with at most 16 B of register spills
#: (``python -m spikelight.dynamics.triton.aot``, sm_80 and sm_90, triton 3.8.0, 2026-12-06): within every NVIDIA
#: GPU's per-block limit from sm_80 on (the smallest, sm_86 / sm_89, is 101,376 B). BLOCK_H 1024 would take
#: 66,048 B (fits every GPU; spills 28-460 B at BLOCK_R 8, none at 4), 2048 131,584 B (not sm_86 / sm_89; KBs of
#: spills): registers, not shared memory, bound H. Table: docs/guides/speed.md, "The persistent recurrent kernels".
TRITON_MAX_H = 512

#: I/O dtypes the element-wise Triton kernels take (their state is fp32 inside)
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_backend(backend: str) -> str:
    """Validate a ``neuron.backend`` value."""
    if backend not in BACKENDS:
        raise ConfigError(f"neuron backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def _mm_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the recurrent product: autocast's, else the compute dtype (fp32 or wider)."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.promote_types(x.dtype, torch.float32)


def why_not(
    backend: str,
    spec: KernelSpec | None,
    surrogate: Surrogate,
    x: Tensor,
    recurrent: bool = False,
    record: bool = False,
    w_rec: Tensor | None = None,
) -> str | None:
    """Why ``backend`` cannot run this call (a phrase completing "<neuron> ..."), or None if it can.

    x: the input sequence [T, B, ..., H] (or one like it: device, dtype and the last axis count);
    recurrent: a recurrent layer (W_rec [H, H] given as ``w_rec``) rather than the neuron alone;
    record: a state monitor wants every step's state.
    """
    if backend == "torch":
        return None
    if spec is None:
        return "has no fused form (a neuron defined by its own charge/step)"
    if type(surrogate).forward is not Surrogate.forward:
        return f"uses surrogate {type(surrogate).__name__} with its own forward"
    steps_once = isinstance(spec, (LIFSpec, ALIFSpec))  # the neurons of the one recurrent Function
    if recurrent and not steps_once:
        return "has no fused recurrent form (IF, LIF and ALIF have)"
    compute = torch.promote_types(x.dtype, torch.float32)
    if backend == "fused":
        return None
    if backend == "native":
        if not steps_once:
            return f"has no C loops (IF, LIF and ALIF have; {type(spec).__name__[:-4]} runs fused)"
        if x.device.type != "cpu" or compute != torch.float32 or _mm_dtype(x) != compute:
            return "runs the C loops on fp32 CPU tensors without autocast only"
        if x.shape[-1] == 0:
            return "has no neurons in the last axis for the C loops"
        if w_rec is not None and not bool(torch.isfinite(w_rec).all()):
            return "has a non-finite W_rec (the C sums over spikes would not spread it as the product does)"
        if not native.available():
            return "needs a C compiler for its C loops (none found, or SPIKELIGHT_NATIVE=0)"
        return None
    if backend == "triton":
        return _why_not_triton(spec, surrogate, x, recurrent or isinstance(spec, ALIFSpec), record, w_rec, compute)
    raise ConfigError(f"neuron backend must be one of {BACKENDS}, got {backend!r}")


def _why_not_triton(spec, surrogate, x, persistent: bool, record: bool, w_rec, compute) -> str | None:
    from spikelight.dynamics.triton import neurons as tn  # imports triton: only when a GPU path is considered

    if isinstance(spec, DualExpSpec):
        return "has no Triton kernel for the dual-exponential neuron"
    if not tn.triton_available(x.device):
        return "needs a CUDA tensor and triton installed"
    if surrogate.kernel_form() is None:
        return f"has no in-kernel form of surrogate {type(surrogate).__name__}"
    if not persistent:
        return None if x.dtype in TRITON_DTYPES else f"takes fp32/bf16/fp16 input, got {x.dtype}"
    if compute != torch.float32 or (w_rec is not None and _mm_dtype(x) != compute):
        return "runs the persistent kernels in fp32 without autocast only"
    if not 0 < x.shape[-1] <= TRITON_MAX_H:
        return f"runs the persistent kernels on at most {TRITON_MAX_H} neurons in the last axis, got {x.shape[-1]}"
    if record:
        return "records no per-step states in its kernels (a state monitor is attached)"
    return None


def _auto_order(device: torch.device) -> tuple[str, ...]:
    """The backends ``auto`` tries, in order, for tensors on ``device``."""
    return ("triton", "native", "fused") if device.type == "cuda" else ("native", "fused")


def choose(
    requested: str,
    spec: KernelSpec | None,
    surrogate: Surrogate,
    x: Tensor,
    who: str,
    recurrent: bool = False,
    record: bool = False,
    w_rec: Tensor | None = None,
) -> str:
    """The backend that runs this call: ``torch``, ``fused``, ``native`` or ``triton``.

    ``auto`` decides here and never fails; an explicit choice that cannot run raises one line
    naming the fix (``who``: the neuron's class name). Arguments as :func:`why_not`.
    """
    check_backend(requested)
    if requested == "torch":
        return "torch"
    if requested == "auto":
        for backend in _auto_order(x.device):
            if why_not(backend, spec, surrogate, x, recurrent, record, w_rec) is None:
                if backend == "triton" and not triton_works(spec, surrogate, x, recurrent, who):
                    continue
                return backend
        return "torch"
    why = why_not(requested, spec, surrogate, x, recurrent, record, w_rec)
    if why is None:
        return requested
    if requested == "triton" and record and why_not("triton", spec, surrogate, x, recurrent, False, w_rec) is None:
        return "fused"  # a monitor's call: the kernels write no per-step states (module docstring)
    instead = "fused" if why_not("fused", spec, surrogate, x, recurrent, record, w_rec) is None else "torch"
    raise ConfigError(f"neuron.backend={requested}: {who} {why}; use neuron.backend=auto or {instead}")


_TRITON_PROBES: dict[tuple, bool] = {}


def _fallback_warning(who: str, cause: BaseException) -> None:
    text = str(cause).strip().splitlines()
    msg = f"{type(cause).__name__}: {text[0][:200]}" if text else type(cause).__name__
    warnings.warn(f"{who}: the Triton kernels failed ({msg}); neuron.backend=auto runs it on another backend",
                  RuntimeWarning, stacklevel=3)  # fmt: skip


def triton_works(spec: KernelSpec, surrogate: Surrogate, x: Tensor, recurrent: bool, who: str = "neuron") -> bool:
    """Whether the Triton kernels for this neuron kind, last-axis size H and surrogate compile and run on x's
    device: once per (spec, surrogate, H, device), forward and backward on a [2, 2, H] input. A failure is
    remembered (``auto`` skips Triton for it from then on) and reported in one warning line."""
    key = (spec, surrogate.kernel_form(), x.shape[-1], str(x.device), recurrent)
    known = _TRITON_PROBES.get(key)
    if known is not None:
        return known
    H, dev = x.shape[-1], x.device
    # its own generator: the probe runs once per process, sometimes after a resume restored the random state
    # (its draws from the global one would shift every later draw, the Poisson spikes among them)
    gen = torch.Generator(device=dev).manual_seed(0)
    try:
        with torch.enable_grad():
            ff = torch.randn(2, 2, H, device=dev, generator=gen).requires_grad_()
            alif = isinstance(spec, ALIFSpec)
            zero = torch.zeros(2, H, device=dev)
            state = (zero, zero, zero, zero) if alif else (zero,)
            beta = torch.ones(H, device=dev) if alif else None
            if recurrent:
                w = torch.randn(H, H, device=dev, generator=gen).requires_grad_()
                s, h, _, _ = run_recurrent("triton", ff, w, spec, surrogate, state, zero, beta=beta)
            else:
                s, h, _, _ = run_neuron("triton", spec, surrogate, ff, state, beta=beta)
            (s.float().sum() + h.float().sum()).backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        _TRITON_PROBES[key] = True
    except Exception as e:  # noqa: BLE001 - any failure of the kernels sends auto elsewhere
        _fallback_warning(who, e)
        _TRITON_PROBES[key] = False
    return _TRITON_PROBES[key]


def guarded(requested: str, backend: str, who: str, run: Callable[[str], T_]) -> T_:
    """``run(backend)``; if Triton fails there: under ``auto`` one warning line and ``run("fused")``,
    for an explicit ``neuron.backend=triton`` one line (:class:`BackendError`)."""
    if backend != "triton":
        return run(backend)
    token = TRITON_FALLBACK.set(requested != "triton")
    try:
        return run(backend)
    except Exception as e:
        if requested == "triton":
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise BackendError(f"neuron.backend=triton: {who}'s Triton kernels failed ({type(e).__name__}: {first}); "
                               f"use neuron.backend=auto or fused") from e  # fmt: skip
        _fallback_warning(who, e)
        return run("fused")
    finally:
        TRITON_FALLBACK.reset(token)


def run_neuron(
    backend: str,
    spec: KernelSpec,
    surrogate: Surrogate,
    x: Tensor,
    state: tuple[Tensor, ...],
    record: bool = False,
    beta: Tensor | None = None,
) -> tuple[Tensor, Tensor, tuple[Tensor, ...], tuple[Tensor, ...] | None]:
    """All T steps of a neuron on its own (no recurrence) on a fast backend.

    x: [T, B, ...] any float dtype (the element-wise Triton kernels read bf16 / fp16 as they are, the
    others compute in fp32 or wider); state: the neuron's state fields in order, each [B, ...] in the
    compute dtype (v; v, a, ref; m, s, g);
    beta: ALIF's per-neuron adaptation strength [H]. Returns (spikes [T, B, ...], membrane
    [T, B, ...], final state fields, per-step state fields stacked over time when ``record``).
    """
    elementwise_triton = backend == "triton" and isinstance(spec, (LIFSpec, LeakySpec))
    if not elementwise_triton:
        x = x.to(torch.promote_types(x.dtype, torch.float32))
    if isinstance(spec, (LIFSpec, ALIFSpec)):
        if elementwise_triton:
            return (*_triton_neuron(x, state[0], spec, surrogate), None)
        if isinstance(spec, ALIFSpec):
            return _run_alif(backend, x, None, spec, surrogate, state, state[3], beta, None, record)
        rec: list | None = [] if record else None
        s, h, v, _, _ = recurrent_multi_step(x, None, spec, surrogate, state[0], record=rec, backend=backend)
        return s, h, (v,), (tuple(rec) if rec is not None else None)
    if isinstance(spec, LeakySpec):
        if elementwise_triton:
            s, u, (u_T,) = _triton_neuron(x, state[0], spec, surrogate)
        else:
            s, u, u_T = leaky_multi_step(x, state[0].to(x.dtype), spec, surrogate)
        return s, u, (u_T,), ((u,) if record else None)  # Leaky's state after a step is U itself
    if isinstance(spec, DualExpSpec):
        rec = [] if record else None
        s, u, m, sy, g = dual_exp_multi_step(x, *state, spec, surrogate, rec)
        return s, u, (m, sy, g), (tuple(rec) if rec is not None else None)
    raise TypeError(f"no fast path for {type(spec).__name__}")


def _triton_neuron(x: Tensor, v0: Tensor, spec: LIFSpec | LeakySpec, surrogate: Surrogate):
    from spikelight.dynamics.triton.neurons import TritonNeuronFunction  # imports triton

    s, h, v = TritonNeuronFunction.apply(x, v0, spec, surrogate.kernel_form())
    return s, h, (v,)


def run_recurrent(
    backend: str,
    ff: Tensor,
    w_rec: Tensor,
    spec: LIFSpec | ALIFSpec,
    surrogate: Surrogate,
    state: tuple[Tensor, ...],
    z0: Tensor,
    beta: Tensor | None = None,
    tbptt: int | None = None,
    record: bool = False,
) -> tuple[Tensor, Tensor, tuple[Tensor, ...], tuple[Tensor, ...] | None]:
    """All T steps of a recurrent layer ``I_t = ff_t + z_{t-1} W_recᵀ`` on a fast backend.

    ff [T, B, H]; w_rec [H, H]; state: the neuron's fields ([B, H] each); z0 [B, H] the spikes before
    step 0. Returns (spikes, membrane [T, B, H], final state fields, per-step state fields or None).
    """
    if isinstance(spec, ALIFSpec):
        return _run_alif(backend, ff, w_rec, spec, surrogate, state, z0, beta, tbptt, record)
    rec: list[Any] | None = [] if record else None
    s, h, v, _, _ = recurrent_multi_step(
        ff, w_rec, spec, surrogate, state[0], None, None, z0, tbptt=tbptt, record=rec, backend=backend
    )
    return s, h, (v,), (tuple(rec) if rec is not None else None)


def _run_alif(backend, ff, w_rec, spec: ALIFSpec, surrogate, state, z0, beta, tbptt, record: bool) -> tuple:
    """An ALIF's T steps (alone: w_rec None; z0 its state's last spike): state (v, a, ref, z) in and out, the
    per-step states ``(v, a, ref, z)`` when ``record``. The ``lsnn_official`` convention runs its own loop."""
    rec: list[Any] | None = [] if record else None
    v0, a0, ref0 = state[0], state[1], state[2]
    if spec.lif.convention == "lsnn_official":
        s, h, v, a, ref = official_multi_step(ff, w_rec, spec, surrogate, v0, a0, ref0, z0, state[3], beta, tbptt, rec,
                                              backend)  # fmt: skip
    else:
        z_in = None if w_rec is None else z0  # alone, nothing reads the last spike
        s, h, v, a, ref = recurrent_multi_step(
            ff, w_rec, spec, surrogate, v0, a0, ref0, z_in, beta=beta, tbptt=tbptt, record=rec, backend=backend
        )
    states = None if rec is None else (*rec, s)
    return s, h, (v, a, ref, s[-1]), states
