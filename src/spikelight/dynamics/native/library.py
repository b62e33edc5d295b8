"""The recurrent layer's CPU loops in C (``cpu_native.c``), compiled on first use, called through ctypes.

At LSNN sizes a step of the plain-PyTorch loops (:mod:`spikelight.dynamics.fused.steps`)
is ~15 ATen calls of a few microseconds each on [B, H] tensors, plus a dense
``[B, H] × [H, H]`` product with the spike vector; in C a step's element-wise work is
one pass over B·H numbers, and the recurrent current adds the rows of W_recᵀ of the
neurons that spiked (a spike is 0 or 1: no products, and at LSNN's 1–5% firing a
small fraction of the dense product's work). The backward keeps torch's product for
p_{t+1} W (dense) and does the step's element-wise work in one C call; dL/dW_rec sums
over the spikes that fired when they are sparse.

Needs a C compiler (``$CC``, else ``cc`` / ``gcc`` / ``clang``); the library is built once
per machine into ``$SPIKELIGHT_CACHE`` (default ``~/.cache/spikelight``; a few seconds). Without a compiler, or with ``SPIKELIGHT_NATIVE=0``, :func:`available` is False and
``neuron.backend=auto`` runs those loops (the same numbers up to the rounding of the recurrent sum).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

import torch
from torch import Tensor

from spikelight.core.files import replaced_atomically
from spikelight.dynamics.spec import StepArgs

__all__ = [
    "available", "library", "forward", "backward_step_args", "grad_w_sparse", "spike_linear", "mm_small_k",
    "ABI_VERSION", "FwdArgs", "BwdArgs", "FWD_CONSTS", "OfficialFwdArgs", "OfficialBwdArgs", "official_forward",
    "official_backward_args",
]

ABI_VERSION = 4
SOURCE = Path(__file__).with_name("cpu_native.c")
FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-std=c99"]
ARCH_FLAGS = ["-march=native"]  # this machine's vector width; the cache key names the CPU

log = logging.getLogger(__name__)

_F = ctypes.c_float
_P = ctypes.c_void_p
_I32 = ctypes.c_int32
_I64 = ctypes.c_int64


class FwdArgs(ctypes.Structure):
    _fields_ = [
        ("T", _I64), ("R", _I64), ("H", _I64),
        ("ff", _P), ("w_t", _P), ("z0", _P), ("v", _P), ("a", _P), ("ref", _P), ("beta", _P),
        ("h", _P), ("s", _P), ("u", _P), ("mask", _P), ("rec_v", _P), ("rec_a", _P), ("rec_ref", _P), ("cur", _P),
        ("tau", _F), ("v_rest", _F), ("thr", _F), ("rho", _F), ("keep", _F), ("vr", _F), ("soft", _F),
        ("charge", _I32), ("v_rest_zero", _I32), ("hard", _I32), ("vr_add", _I32), ("alif", _I32),
        ("adaptive", _I32), ("normalize", _I32), ("strict", _I32), ("refractory", _I32),
        ("spikes", _I64),
    ]  # fmt: skip


#: the FwdArgs fields filled from :class:`~spikelight.dynamics.spec.StepArgs` by name
FWD_CONSTS = ("tau", "v_rest", "thr", "rho", "keep", "vr", "soft", "charge", "v_rest_zero", "hard", "vr_add", "alif",
              "adaptive", "normalize", "strict", "refractory")  # fmt: skip


class BwdArgs(ctypes.Structure):
    _fields_ = [
        ("N", _I64), ("H", _I64),
        ("gI", _P), ("GS", _P), ("ga", _P), ("Dg", _P), ("h", _P), ("s", _P), ("g_h", _P), ("g_s", _P), ("beta", _P),
        ("t0", _I64),
        ("leak", _F), ("gain", _F), ("rho", _F), ("e0", _F), ("e1", _F), ("e_soft", _F), ("dbn", _F),
        ("hard", _I32), ("has_e", _I32), ("adaptive", _I32),
    ]  # fmt: skip


class OfficialFwdArgs(ctypes.Structure):
    """``off_fwd_args``: the lsnn_official convention's forward (``spikelight_official_forward``)."""

    _fields_ = [
        ("T", _I64), ("R", _I64), ("H", _I64),
        ("ff", _P), ("w_t", _P), ("z0", _P), ("zr0", _P), ("v", _P), ("a", _P), ("ref", _P), ("beta", _P),
        ("h", _P), ("s", _P), ("u", _P), ("A", _P), ("mask", _P), ("rec_v", _P), ("rec_a", _P), ("rec_ref", _P),
        ("cur", _P),
        ("tau", _F), ("thr", _F), ("rho", _F), ("keep", _F),
        ("charge", _I32), ("adaptive", _I32), ("refractory", _I32),
        ("spikes", _I64),
    ]  # fmt: skip


class OfficialBwdArgs(ctypes.Structure):
    """``off_bwd_args``: one reverse step of the lsnn_official convention (``spikelight_official_backward_step``)."""

    _fields_ = [
        ("N", _I64), ("H", _I64),
        ("gI", _P), ("GS", _P), ("V", _P), ("alpha", _P), ("Z", _P), ("D", _P), ("u", _P), ("A", _P), ("s", _P),
        ("zr0", _P), ("g_h", _P), ("g_s", _P), ("beta", _P),
        ("leak", _F), ("gain", _F), ("rho", _F), ("keep", _F),
        ("adaptive", _I32), ("detach", _I32),
    ]  # fmt: skip


_lib: ctypes.CDLL | None = None
_tried = False
_lock = threading.Lock()


def _cache_dir() -> Path:
    env = os.environ.get("SPIKELIGHT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spikelight"


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc.split()[0]):
            return cc
    return None


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model and feature flags (Linux), else the platform."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(lines))
    except OSError:
        return platform.processor() + platform.machine()


def _build(cc: str, out: Path) -> None:
    """Compile to a temporary name, then rename: processes racing (DDP ranks) each get a whole file."""
    with replaced_atomically(out, durable=False) as tmp:
        for arch in (ARCH_FLAGS, []):  # a compiler without -march=native still builds
            cmd = [*cc.split(), *FLAGS, *arch, str(SOURCE), "-o", str(tmp)]
            if subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0:  # ~30 s of CPU; more when loaded
                return
        raise OSError(f"{cc} could not compile {SOURCE.name}")


def library() -> ctypes.CDLL | None:
    """The loaded C library (built on first call), or None where it cannot be (no compiler, disabled)."""
    if _tried:
        return _lib
    with _lock:  # one build; other threads wait for it instead of running without it
        return _load()


def _load() -> ctypes.CDLL | None:
    global _lib, _tried
    if not _tried:
        try:
            _lib = _build_and_load()
        finally:
            _tried = True  # only now: a thread that finds it set also finds the library
    return _lib


def _build_and_load() -> ctypes.CDLL | None:
    if os.environ.get("SPIKELIGHT_NATIVE", "1") == "0" or not SOURCE.exists():
        return None
    cc = _compiler()
    if cc is None:
        return None
    try:
        version = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30).stdout
        key = hashlib.sha256("\0".join([SOURCE.read_text(), cc, version, *FLAGS, _cpu_id()]).encode()).hexdigest()
        path = _cache_dir() / f"cpu_native-{key[:20]}.so"
        if not path.exists():
            log.info("building spikelight's CPU kernels with %s (once per machine, a few seconds): %s", cc, path)
            try:
                _build(cc, path)
            except PermissionError:  # no shared temp-dir fallback: a library there could be anyone's
                log.warning("cannot write %s: the plain-PyTorch loops run instead; set SPIKELIGHT_CACHE to a "
                            "writable directory for the C ones", path.parent)  # fmt: skip
                return None
        lib = ctypes.CDLL(str(path))
        lib.spikelight_abi_version.restype = _I64
        if lib.spikelight_abi_version() != ABI_VERSION:
            return None
        lib.spikelight_forward.argtypes = [ctypes.POINTER(FwdArgs)]
        lib.spikelight_forward.restype = None
        lib.spikelight_backward_step.argtypes = [ctypes.POINTER(BwdArgs), _I64, _I32, _I32]
        lib.spikelight_backward_step.restype = None
        lib.spikelight_official_forward.argtypes = [ctypes.POINTER(OfficialFwdArgs)]
        lib.spikelight_official_forward.restype = None
        lib.spikelight_official_backward_step.argtypes = [ctypes.POINTER(OfficialBwdArgs), _I64, _I32]
        lib.spikelight_official_backward_step.restype = None
        lib.spikelight_grad_w_sparse.argtypes = [_P, _P, _I64, _I64, _I64, _P]
        lib.spikelight_spike_linear.argtypes = [_P, _P, _I64, _I64, _I64, _P]
        lib.spikelight_mm_small_k.argtypes = [_P, _P, _I64, _I64, _I64, _P]
        for fn in (lib.spikelight_grad_w_sparse, lib.spikelight_spike_linear, lib.spikelight_mm_small_k):
            fn.restype = None
        return lib
    except (OSError, subprocess.SubprocessError):
        return None


def available() -> bool:
    """True when the C loops can run here (a C compiler was found, ``SPIKELIGHT_NATIVE`` is not 0)."""
    return library() is not None


def _ptr(x: Tensor | None) -> int | None:
    """The address of a contiguous fp32 (or bool mask) CPU tensor's data; None for None / empty."""
    if x is None or x.numel() == 0:
        return None
    if not (x.is_contiguous() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bool)):
        raise ValueError(f"cpu_native takes contiguous fp32 CPU tensors, got {x.dtype} on {x.device}")
    return x.data_ptr()


def _check(what: str, pairs: list) -> None:
    """Shapes the C code relies on (it reads and writes by them, unchecked): one line naming the first wrong one."""
    for tensor, shape in pairs:
        if tensor is not None and tensor.numel() and tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"cpu_native.{what}: expected a tensor of shape {tuple(shape)}, got {tuple(tensor.shape)}")


def forward(
    ff: Tensor,
    w_t: Tensor | None,
    z0: Tensor | None,
    state: tuple[Tensor, Tensor | None, Tensor | None],
    beta: Tensor | None,
    out: tuple[Tensor, Tensor, Tensor | None, Tensor | None],
    rec: tuple[Tensor | None, ...],
    args: StepArgs,
) -> int:
    """Run all T steps (see ``spikelight_forward`` in cpu_native.c): fp32, contiguous, CPU.

    ff [T, R, H]; out = (h, s, u, mask) [T, R, H] written (u, mask: None unless adaptive / refractory);
    state = (v, a, ref) [R, H] updated in place to the final state; z0 [R, H]; w_t [H, H] = W_recᵀ
    contiguous or None; beta [H]; rec: the per-step state (v[, a, ref]) to record, or (None,). The step's
    constants come from ``args``. Returns the number of spikes written.
    """
    (v, a, ref), (h, s, u, mask) = state, out
    lib = library()
    assert lib is not None
    T, H = ff.shape[0], ff.shape[-1]
    step = ff.shape[1:]
    rec = (*rec, None, None, None)[:3]
    _check("forward", [(w_t, (H, H)), (z0, step), (v, step), (a, step), (ref, step), (beta, (H,)), (h, ff.shape),
                       (s, ff.shape), (u, ff.shape), (mask, ff.shape), *((r, ff.shape) for r in rec)])  # fmt: skip
    cur = torch.empty(H, dtype=torch.float32)
    fwd = FwdArgs(
        T, ff[0].numel() // H if T else 0, H,
        _ptr(ff), _ptr(w_t), _ptr(z0), _ptr(v), _ptr(a), _ptr(ref), _ptr(beta),
        _ptr(h), _ptr(s), _ptr(u), _ptr(mask), _ptr(rec[0]), _ptr(rec[1]), _ptr(rec[2]), _ptr(cur),
        **{name: getattr(args, name) for name in FWD_CONSTS},
    )  # fmt: skip
    lib.spikelight_forward(ctypes.byref(fwd))
    return int(fwd.spikes)


def backward_step_args(
    gI: Tensor,
    GS: Tensor,
    ga: Tensor,
    h: Tensor,
    s: Tensor,
    g_h: Tensor | None,
    g_s: Tensor | None,
    beta: Tensor | None,
    args: StepArgs,
    row: int | None = None,
) -> BwdArgs:
    """The argument block of ``spikelight_backward_step``; set ``Dg`` / ``t0`` per block of time steps.

    gI [T + 1, N] (row T: p_T); h, s, g_h, g_s [T, N]; GS, ga [N]; beta [H]. The constants of the
    reverse-time step (E = e0 + e1·h, F, the adaptation's dbn) are derived from ``args``. ``row``: the
    elements the C loop takes as one row (default H; all N of a step when no β couples them to a neuron index)."""
    leak, gain = args.leak, args.gain
    return BwdArgs(
        N=h[0].numel(), H=row or h.shape[-1], gI=_ptr(gI), GS=_ptr(GS), ga=_ptr(ga), h=_ptr(h), s=_ptr(s),
        g_h=_ptr(g_h), g_s=_ptr(g_s), beta=_ptr(beta),
        leak=leak, gain=gain, rho=args.rho, e0=args.vr * leak / gain, e1=-leak / gain,
        e_soft=-args.soft * leak / gain, dbn=(args.rho - 1.0) / gain,
        hard=args.hard, has_e=not args.detach, adaptive=args.adaptive,
    )  # fmt: skip


def official_forward(
    ff: Tensor,
    w_t: Tensor | None,
    z0: Tensor | None,
    zr0: Tensor,
    state: tuple[Tensor, Tensor, Tensor],
    beta: Tensor | None,
    out: tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None],
    rec: tuple[Tensor | None, ...],
    args: StepArgs,
) -> int:
    """All T steps of the lsnn_official convention (``spikelight_official_forward``): fp32, contiguous, CPU.

    ff [T, R, H]; state = (v, a, ref) [R, H] updated in place; z0 (recurrence) / zr0 (reset) [R, H];
    out = (h, s, u, A, mask) [T, R, H] written (mask only with a refractory period); rec: (v, a, ref) per
    step or (None,). Returns the number of spikes."""
    (v, a, ref), (h, s, u, A, mask) = state, out
    lib = library()
    assert lib is not None
    T, H = ff.shape[0], ff.shape[-1]
    step = ff.shape[1:]
    rec = (*rec, None, None, None)[:3]
    _check("official_forward", [(w_t, (H, H)), (z0, step), (zr0, step), (v, step), (a, step), (ref, step),
                                (beta, (H,)), (h, ff.shape), (s, ff.shape), (u, ff.shape), (A, ff.shape),
                                (mask, ff.shape), *((r, ff.shape) for r in rec)])  # fmt: skip
    cur = torch.empty(H, dtype=torch.float32)
    fwd = OfficialFwdArgs(
        T, ff[0].numel() // H if T else 0, H,
        _ptr(ff), _ptr(w_t), _ptr(z0), _ptr(zr0), _ptr(v), _ptr(a), _ptr(ref), _ptr(beta),
        _ptr(h), _ptr(s), _ptr(u), _ptr(A), _ptr(mask), _ptr(rec[0]), _ptr(rec[1]), _ptr(rec[2]), _ptr(cur),
        tau=args.tau, thr=args.thr, rho=args.rho, keep=args.keep, charge=args.charge, adaptive=args.adaptive,
        refractory=args.refractory,
    )  # fmt: skip
    lib.spikelight_official_forward(ctypes.byref(fwd))
    return int(fwd.spikes)


def official_backward_args(gI, GS, V, alpha, Z, D, u, A, s, zr0, g_h, g_s, beta, args: StepArgs) -> OfficialBwdArgs:
    """The argument block of ``spikelight_official_backward_step`` (every [T, N] / [N] tensor fp32, contiguous)."""
    _check("official_backward_step", [(x, gI.shape) for x in (D, u, A, s, g_h, g_s)] + [(x, gI.shape[1:]) for x in
                                                                                          (GS, V, alpha, Z, zr0)])
    return OfficialBwdArgs(
        N=gI[0].numel(), H=gI.shape[-1], gI=_ptr(gI), GS=_ptr(GS), V=_ptr(V), alpha=_ptr(alpha), Z=_ptr(Z),
        D=_ptr(D), u=_ptr(u), A=_ptr(A), s=_ptr(s), zr0=_ptr(zr0), g_h=_ptr(g_h), g_s=_ptr(g_s), beta=_ptr(beta),
        leak=args.leak, gain=args.gain, rho=args.rho, keep=args.keep, adaptive=args.adaptive, detach=args.detach,
    )  # fmt: skip


def _call(what: str, shapes: list, *args) -> None:
    """``spikelight_<what>(*args)`` in the library, after checking the shapes the C code relies on."""
    lib = library()
    assert lib is not None
    _check(what, shapes)
    getattr(lib, f"spikelight_{what}")(*args)


def grad_w_sparse(g: Tensor, z: Tensor) -> Tensor:
    """``gᵀ z`` [n_g, n_z] from rows g [M, n_g], z [M, n_z], summed over the non-zero z only
    (dL/dW of ``z Wᵀ``; spikes make it a sum of rows of g). fp32, contiguous, CPU."""
    (M, n_z), n_g = z.shape, g.shape[1]
    gwT = torch.zeros(n_z, n_g, dtype=torch.float32)
    _call("grad_w_sparse", [(g, (M, n_g))], _ptr(g), _ptr(z), M, n_z, n_g, gwT.data_ptr())
    return gwT.t().contiguous()


def spike_linear(z: Tensor, w_t: Tensor, out: Tensor) -> Tensor:
    """``out = z Wᵀ`` (z [M, n_in], w_t = Wᵀ [n_in, n_out], out [M, n_out]) over the non-zero z only."""
    (M, n_in), n_out = z.shape, w_t.shape[1]
    _call("spike_linear", [(w_t, (n_in, n_out)), (out, (M, n_out))], _ptr(z), _ptr(w_t), M, n_in, n_out, _ptr(out))
    return out


def mm_small_k(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """``out = a b`` for a [M, K] with small K, b [K, N], out [M, N] (fp32, contiguous, CPU)."""
    (M, K), N = a.shape, b.shape[1]
    _call("mm_small_k", [(b, (K, N)), (out, (M, N))], _ptr(a), _ptr(b), M, K, N, _ptr(out))
    return out
