"""Compile every Triton kernel for real NVIDIA GPUs on a machine without one (issue 20).

``TRITON_INTERPRET=1`` (the equivalence tests' way of running the kernels on the CPU) runs them as NumPy
and never lowers them, so it misses what only the real compiler rejects or changes (a loop variable whose
type changes, a fused multiply-add where the reference rounds twice, registers spilled, shared memory over
a GPU's limit). Triton's compiler needs no GPU: for an explicit target it runs the whole pipeline to PTX
and a cubin (the ``ptxas`` shipped in the triton wheel); only loading the cubin needs a driver.

This module runs the project's own launch wrappers — :class:`~spikelight.dynamics.triton.neurons.TritonNeuronFunction`
and :class:`~spikelight.dynamics.fused.recurrent.RecurrentFunction` with ``backend="triton"``, forward and
backward — on CPU tensors, with a stub driver that reports a CUDA target and every kernel launch turned
into a compile-only warm-up: the exact specialisation a real launch compiles (argument types, integers
equal to 1 made constant, 16-byte alignment, the constexprs and options the wrappers pass; ``RECIP_DIV``,
which the wrappers set from ``x.is_cuda``, forced on as on a GPU). Nothing is launched; the outputs of
the "launches" are uninitialised memory, which the wrappers carry on with.

Per distinct specialisation it records: compile status (and the error), registers, spill bytes and
stack (``ptxas -v``), shared memory (Triton's metadata) against the target's per-block limit, and the
PTX, so a test can check the arithmetic: the forward kernels' element-wise step must round every
operation as the reference loop does (no ``fma``), or a membrane one ulp off could flip a spike.

It changes process-wide Triton state (the active driver, ``JITFunction.run``): run it in its own process,

    python -m spikelight.dynamics.triton.aot --arch 80,90 [--cases pairwise|all] [--json out.json]
    python -m spikelight.dynamics.triton.aot --part recurrent --cases all --hs 100,220,256,512 --batch 256 --table

(``make gpu-compile``; ``tests/gpu_compile/`` runs it for sm_80 and sm_90 in CI).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import re
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)  # interpreted kernels cannot be compiled: decided before triton loads

#: dynamic shared memory per block (opt-in maximum), bytes, by compute capability (CUDA programming guide)
SMEM_PER_BLOCK = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448, 100: 232448, 120: 101376}
REGS_PER_SM = 65536
#: the recurrent cases' batch sizes: the launch picks BLOCK_R from the batch (4 up to 64 rows, else 8)
BATCHES = (5, 100)
#: kernels whose element-wise arithmetic must round op by op like the reference loop (checked in their PTX)
FORWARD_KERNELS = ("_lif_fwd_kernel", "_leaky_fwd_kernel", "_rec_fwd_kernel", "_off_fwd_kernel")

_PTXAS = {
    "regs": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "stack": re.compile(r"(\d+) bytes stack frame"),
}


class _StubDriver:
    """Just enough of a Triton driver for ``JITFunction.run``: a device, a stream and a CUDA target."""

    def __init__(self, arch: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.arch, self.target = arch, GPUTarget("cuda", arch, 32)

    def get_current_device(self) -> int:
        return self.arch  # one JIT cache per target

    def get_current_stream(self, device=None) -> int:
        return 0

    def get_current_target(self):
        return self.target

    def is_active(self) -> bool:
        return True


def _resources(log: str, shared: int, num_warps: int, arch: int) -> dict:
    found = {key: (int(m.group(1)) if (m := pat.search(log)) else None) for key, pat in _PTXAS.items()}
    problems = []
    limit = SMEM_PER_BLOCK.get(arch)
    if limit is not None and shared > limit:
        problems.append(f"shared memory {shared} B > {limit} B per block on sm_{arch}")
    if found["regs"] is not None and found["regs"] * 32 * num_warps > REGS_PER_SM:
        problems.append(f"{found['regs']} registers x {32 * num_warps} threads > {REGS_PER_SM}")
    return {"shared": shared, **found, "problems": problems}


@contextlib.contextmanager
def compile_only(arch: int, records: dict):
    """Within this block every Triton launch compiles for ``sm_<arch>`` and launches nothing; one record per
    distinct specialisation is added to ``records`` (key: kernel name, argument types, constexprs, options)."""
    import triton
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import JITFunction

    triton.knobs.nvidia.dump_ptxas_log = True  # ptxas -v: registers, spills
    triton.knobs.compilation.always_compile = True  # every compile runs ptxas (and prints its log)
    triton.runtime.driver.set_active(_StubDriver(arch))
    real_run = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        if "RECIP_DIV" in kwargs:
            kwargs["RECIP_DIV"] = True  # the wrappers pass x.is_cuda
        bound = dict(zip(self.arg_names, args))
        bound.update({k: v for k, v in kwargs.items() if k in self.arg_names})
        spec = {}
        for p in self.params:
            v = bound.get(p.name)
            if p.is_constexpr:
                spec[p.name] = v
            else:
                ty, attr = native_specialize_impl(BaseBackend, v, False, True, True)
                spec[p.name] = f"={v}" if ty == "constexpr" else (f"{ty}:{attr}" if attr else ty)
        options = {k: v for k, v in kwargs.items() if k not in self.arg_names}
        key = json.dumps([self.fn.__name__, spec, options], sort_keys=True, default=str)
        if key in records:
            return None
        g = grid(bound) if callable(grid) else grid
        rec = {"kernel": self.fn.__name__, "arch": arch, "spec": spec, "options": options, "grid": list(g),
               "status": "OK"}  # fmt: skip
        log = io.StringIO()
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(log):
                k = real_run(self, *args, grid=grid, warmup=True, **kwargs)
            rec.update(_resources(log.getvalue(), k.metadata.shared, k.metadata.num_warps, arch))
            rec["ptx"] = k.asm["ptx"]
        except Exception as e:  # noqa: BLE001 - reported per specialisation
            rec.update(status="FAIL", error=f"{type(e).__name__}: {str(e).split(chr(10) * 3)[0][:2000]}")
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        records[key] = rec
        return None  # nothing launched

    JITFunction.run = run
    try:
        yield records
    finally:
        JITFunction.run = real_run


# --- what the wrappers can be asked to run -----------------------------------------------------------------


def _surrogates():
    from spikelight.core import surrogate as S

    return [S.Sigmoid(), S.ATan(), S.FastSigmoid(), S.Triangle(1.0, 0.3), S.PiecewiseQuadratic(), S.SoftSign(),
            S.LeakyKReLU(0.1, 1.0), S.Rectangle(), S.SpikeOperator()]  # fmt: skip


def _neuron_cases(all_cases: bool):
    import torch

    from spikelight.dynamics.spec import LeakySpec, LIFSpec

    lifs = [
        LIFSpec(None, False, 1.0, None, False),  # IF soft
        LIFSpec(None, False, 1.0, 0.0, True),  # IF hard, detached reset
        LIFSpec(2.0, True, 1.0, 0.0, False),  # LIF decay_input hard
        LIFSpec(2.0, False, 1.0, None, False),  # LIF soft
        LIFSpec(3.0, True, 0.5, -0.5, False, True),  # v_rest != 0, strict (snnTorch's comparison)
    ]
    kinds = lifs + [LeakySpec(0.9, 1.0, False), LeakySpec(0.9, 1.0, True)]
    dtypes = (torch.float32, torch.bfloat16, torch.float16)
    grads = ((0,), (0, 1, 2), (1,), (2,))
    sur = _surrogates()
    if all_cases:
        return list(itertools.product(kinds, dtypes, sur, grads))
    # pairwise-ish: every kind with every dtype, every surrogate and every gradient set at least once
    cases = [(k, dt, sur[i % len(sur)], grads[i % len(grads)]) for i, (k, dt) in enumerate(itertools.product(kinds, dtypes))]
    cases += [(kinds[2], torch.float32, s, (0, 1, 2)) for s in sur]
    return cases


def _recurrent_cases(all_cases: bool, hs=None, batches=BATCHES):
    from spikelight.dynamics.dispatch import TRITON_MAX_H
    from spikelight.dynamics.spec import ALIFSpec, LIFSpec

    lifs = [
        LIFSpec(None, False, 1.0, None, False),
        LIFSpec(2.0, True, 1.0, 0.0, False),
        LIFSpec(20.0, False, 1.0, None, True, True),
    ]
    alifs = [
        ALIFSpec(LIFSpec(20.0, True, 1.0, 0.0, False), 0.95, 0, False, False),
        ALIFSpec(LIFSpec(20.0, True, 1.0, 0.0, False), 0.95, 2, True, True),  # LSNN-like
        ALIFSpec(LIFSpec(20.0, False, 0.5, None, True, convention="eprop"), 0.9, 1, True, True),  # e-prop's order
    ]
    # H: a small block, the LSNN's 220 (rows not 16-aligned), an aligned one, the largest
    Hs = hs or ((20, 128, 220, TRITON_MAX_H) if not all_cases else (1, 20, 64, 100, 128, 220, 256, 300, TRITON_MAX_H))
    sur = _surrogates()
    cases = []
    for i, (spec, H) in enumerate(itertools.product(lifs + alifs, Hs)):
        # pairwise: every H with and without W_rec and under every batch's BLOCK_R (alternating by neuron)
        for rec in (True, False) if all_cases else ((i % 3) != 2,):
            for B in batches if all_cases else (batches[(i // len(Hs)) % len(batches)],):
                cases.append((spec, H, rec, sur[i % len(sur)], (None, 3)[i % 2], B))
    return cases


def _official_cases(all_cases: bool, hs=None, batches=BATCHES):
    from spikelight.dynamics.dispatch import TRITON_MAX_H
    from spikelight.dynamics.spec import ALIFSpec, LIFSpec

    specs = [
        ALIFSpec(LIFSpec(20.5, True, 0.01, None, False, convention="lsnn_official"), 0.9986, 5, True, True),  # Bellec
        ALIFSpec(LIFSpec(3.0, False, 0.8, None, True, convention="lsnn_official"), 0.9, 0, True, False),
    ]
    Hs = hs or ((20, 220, TRITON_MAX_H) if all_cases else (220, TRITON_MAX_H))
    sur = _surrogates()
    cases = []
    for i, (spec, H, rec) in enumerate(itertools.product(specs, Hs, (True, False))):
        for B in batches if all_cases else (batches[(i // 2 + i // 4) % len(batches)],):
            cases.append((spec, H, rec, sur[(i + 3) % len(sur)], (None, 3)[i % 2], B))
    return cases


def run_wrappers(arch: int, all_cases: bool = False, part: str = "all", hs=None, batches=BATCHES) -> list[dict]:
    """Compile (only) what the wrappers launch for ``sm_<arch>``; returns one record per specialisation.
    part: ``all``, ``neuron`` (the element-wise kernels) or ``recurrent`` (the persistent ones); hs: the
    recurrent layers' sizes instead of the default ones; batches: their batch sizes (BLOCK_R depends on it)."""
    import torch

    from spikelight.dynamics.fused.official import OfficialALIFFunction
    from spikelight.dynamics.fused.recurrent import RecurrentFunction
    from spikelight.dynamics.spec import ALIFSpec
    from spikelight.dynamics.triton.neurons import TritonNeuronFunction

    records: dict = {}
    torch.manual_seed(0)
    with compile_only(arch, records):
        for spec, dt, sur, which in _neuron_cases(all_cases) if part in ("all", "neuron") else ():
            x = torch.randn(5, 3, 40).to(dt).requires_grad_(True)
            v0 = torch.zeros(3, 40, requires_grad=True)
            outs = TritonNeuronFunction.apply(x, v0, spec, sur.kernel_form())
            sel = [outs[i] for i in which]
            torch.autograd.grad(sel, [x, v0], [torch.ones_like(o) for o in sel], allow_unused=True)
        for spec, H, rec, sur, tbptt, B in _recurrent_cases(all_cases, hs, batches) if part != "neuron" else ():
            alif = isinstance(spec, ALIFSpec)
            ff = torch.randn(6, B, H, requires_grad=True)
            w = torch.randn(H, H, requires_grad=True) if rec else None
            v0 = torch.zeros(B, H, requires_grad=True)
            a0 = torch.zeros(B, H, requires_grad=True) if alif else None
            ref0 = torch.zeros(B, H) if alif else None
            beta = torch.full((H,), 1.8) if alif and spec.adaptive else None
            outs = RecurrentFunction.apply(ff, w, v0, a0, ref0, None, beta, spec, sur, tbptt, torch.float32, None,
                                           "triton")  # fmt: skip
            sel = [o for o in outs[:4] if o is not None and o.requires_grad]
            ins = [t for t in (ff, w, v0, a0) if t is not None]
            torch.autograd.grad(sel, ins, [torch.ones_like(o) for o in sel], allow_unused=True)
        for spec, H, rec, sur, tbptt, B in _official_cases(all_cases, hs, batches) if part != "neuron" else ():
            # the lsnn_official convention's own kernels
            ff = torch.randn(6, B, H, requires_grad=True)
            w = torch.randn(H, H, requires_grad=True) if rec else None
            v0, a0 = torch.zeros(B, H, requires_grad=True), torch.zeros(B, H, requires_grad=True)
            z0, ref0 = torch.zeros(B, H, requires_grad=True), torch.zeros(B, H)
            beta = torch.full((H,), 1.8) if spec.adaptive else None
            outs = OfficialALIFFunction.apply(ff, w, v0, a0, ref0, z0, z0, beta, spec, sur, tbptt, None, "triton")
            sel = [o for o in outs[:4] if o.requires_grad]
            ins = [t for t in (ff, w, v0, a0, z0) if t is not None]
            torch.autograd.grad(sel, ins, [torch.ones_like(o) for o in sel], allow_unused=True)
    return list(records.values())


def fused_multiply_adds(ptx: str) -> int:
    """Fused multiply-adds in a kernel's PTX (fp32 ``fma``): where the reference rounds a product and a sum
    separately, one of these gives a different value (by an ulp)."""
    return len(re.findall(r"\bfma\.rn(?:\.ftz)?\.f32\b", ptx))


def resource_table(records: list[dict]) -> str:
    """A markdown table of the persistent kernels' resources: one row per kernel × BLOCK_H (× BLOCK_R, warps),
    per target the most registers and spill bytes (stores / loads) over the compiled specialisations, and
    the shared memory per block."""
    rows: dict = {}
    archs = sorted({r["arch"] for r in records})
    for r in records:
        if r["status"] != "OK" or "BLOCK_H" not in r["spec"]:
            continue
        key = (r["kernel"], r["spec"]["BLOCK_H"], r["spec"].get("BLOCK_R"), r["options"].get("num_warps"))
        cell = rows.setdefault(key, {}).setdefault(r["arch"], [0, 0, 0, 0, 0])
        cell[0] = max(cell[0], r["regs"] or 0)
        cell[1] = max(cell[1], r["spill_stores"] or 0)
        cell[2] = max(cell[2], r["spill_loads"] or 0)
        cell[3] = max(cell[3], r["shared"])
        cell[4] += 1
    head = "| kernel | BLOCK_H | BLOCK_R | warps | " + " | ".join(
        f"sm_{a} regs | sm_{a} spill st / ld B | sm_{a} shared B" for a in archs) + " | variants |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (kernel, bh, br, nw), cells in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        parts = []
        for a in archs:
            c = cells.get(a)
            parts.append(f"{c[0]} | {c[1]} / {c[2]} | {c[3]:,}" if c else "– | – | –")
        n = max(c[4] for c in cells.values())
        lines.append(f"| `{kernel}` | {bh} | {br} | {nw} | " + " | ".join(parts) + f" | {n} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compile spikelight's Triton kernels for GPUs (no GPU needed).")
    ap.add_argument("--arch", default="80,90", help="compute capabilities, comma-separated (default 80,90)")
    ap.add_argument("--cases", choices=("pairwise", "all"), default="pairwise")
    ap.add_argument("--part", choices=("all", "neuron", "recurrent"), default="all",
                    help="which kernels: the element-wise ones, the persistent (recurrent) ones, or all")
    ap.add_argument("--hs", default=None, help="the recurrent layers' sizes H, comma-separated (default: the cases')")
    ap.add_argument("--batch", default=None, help="the recurrent layers' batch sizes, comma-separated (default "
                    "5,100: BLOCK_R 4 and 8)")
    ap.add_argument("--table", action="store_true", help="print the persistent kernels' resources as markdown")
    ap.add_argument("--json", default=None, help="write every record here (PTX included)")
    a = ap.parse_args(argv)
    hs = tuple(int(h) for h in a.hs.split(",")) if a.hs else None
    import triton

    out = []
    t0 = time.perf_counter()
    for arch in (int(x) for x in a.arch.split(",")):
        recs = run_wrappers(arch, a.cases == "all", a.part, hs, tuple(int(b) for b in a.batch.split(",")) if a.batch
                            else BATCHES)
        out += recs
        for name in sorted({r["kernel"] for r in recs}):
            rs = [r for r in recs if r["kernel"] == name]
            ok = [r for r in rs if r["status"] == "OK"]
            regs = [r["regs"] for r in ok if r["regs"] is not None]
            spill = [(r["spill_stores"] or 0) + (r["spill_loads"] or 0) for r in ok]
            shared = [r["shared"] for r in ok]
            print(f"sm_{arch} {name:<18} {len(ok)}/{len(rs)} compiled, registers {min(regs, default=0)}-"
                  f"{max(regs, default=0)}, spills up to {max(spill, default=0)} B, shared up to "
                  f"{max(shared, default=0)} B")  # fmt: skip
    failed = [r for r in out if r["status"] != "OK" or r["problems"]]
    for r in failed:
        print(f"FAIL sm_{r['arch']} {r['kernel']} {r.get('error') or '; '.join(r['problems'])}")
    if a.table:
        print(resource_table(out))
    print(f"triton {triton.__version__}: {len(out)} specialisations, {len(failed)} failed, "
          f"{time.perf_counter() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
