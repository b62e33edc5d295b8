"""Speed side by side: spikelight (each backend) vs SpikingJelly 2.0, snnTorch and a plain loop.

Everything runs in one process on the same inputs; the contenders of a case
alternate call by call (order reversed every repetition), so drift of a
shared machine hits all alike. Reported: median wall time, peak memory of one
call, and for each of our rows the ratio ``anchor time / our time``.

    python experiments/benchmarks/bench.py                  # CPU part (make bench)
    python experiments/benchmarks/bench.py --device cuda    # GPU sizes as well (needs CUDA)

Writes ``experiments/benchmarks/RESULTS.md`` (``--out``) with hardware and date.

Peak memory: on CUDA ``max_memory_allocated`` during one call, minus what was
allocated before. On the CPU PyTorch allocates with ``malloc`` directly (so
``tracemalloc`` sees none of it): we return freed heap memory to the OS
(``malloc_trim``; the fused paths' pool of reused buffers is emptied first, so they count), reset the kernel's resident-set high-water mark
(``/proc/self/clear_refs``) and report ``VmHWM − VmRSS`` before the call, the
memory the call touched at its peak (inputs excluded, page-granular).

Adding a case (LSNN, conv, event-driven, ...): write one function
``def case_x(ctx: Ctx) -> list[Case]`` that builds the contenders and decorate
it with ``@bench_case``; nothing else changes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from spikelight.core.surrogate import ATan  # noqa: E402
from spikelight.dynamics import buffers  # noqa: E402
from spikelight.encoding import DirectEncoder, PoissonEncoder, SequenceEncoder  # noqa: E402
from spikelight.losses import CEMembranePerStepLoss, MSERateLoss, ReadoutCrossEntropyLoss  # noqa: E402
from spikelight.models import FCLIF, LSNN, MLP, ConvSNN  # noqa: E402
from spikelight.neurons import ALIFNode, DualExpNode, IFNode, LeakyNode, LIFNode  # noqa: E402
from spikelight.readout import RateReadout  # noqa: E402


# --- the harness ---------------------------------------------------------------------------------
@dataclass
class Case:
    """One benchmark: contenders (name → one call) compared on the same inputs.

    ours: contenders that are spikelight; anchors: the others, each ours is divided by.
    """

    name: str
    what: str
    contenders: dict[str, Callable[[], None]]
    ours: list[str]
    anchors: list[str]
    notes: str = ""
    reps: int | None = None  # timed calls per contender (None: --reps); for cases of seconds per call
    results: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name → (ms, CPU ms, MB)


@dataclass
class Ctx:
    device: torch.device
    reps: int
    warmup: int


CASES: list[tuple[str, Callable[[Ctx], list[Case]]]] = []


def bench_case(fn: Callable[[Ctx], list[Case]]) -> Callable[[Ctx], list[Case]]:
    """Register a case builder (its name without ``case_`` selects it with ``--cases``)."""
    CASES.append((fn.__name__.removeprefix("case_"), fn))
    return fn


_libc = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None


def _proc_kb(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_memory_mb(fn: Callable[[], None], device: torch.device) -> float:
    """Peak memory one call adds (see the module docstring)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if _libc is None:
        return float("nan")
    buffers.pool.release()  # the call allocates its reused [T, ...] buffers afresh, so they count
    _libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = _proc_kb("VmRSS")
    fn()
    return (_proc_kb("VmHWM") - base) / 1024


def time_once(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall ms, process CPU ms) of one call; on CUDA the wall time is CUDA-event time."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end), float("nan")
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def run_case(case: Case, ctx: Ctx) -> None:
    names = list(case.contenders)
    for _ in range(ctx.warmup):
        for n in names:
            case.contenders[n]()
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for rep in range(case.reps or ctx.reps):
        for n in names if rep % 2 == 0 else names[::-1]:
            times[n].append(time_once(case.contenders[n], ctx.device))
    for n in names:
        wall, cpu = zip(*times[n])
        case.results[n] = (statistics.median(wall), statistics.median(cpu), peak_memory_mb(case.contenders[n], ctx.device))


# --- contenders ----------------------------------------------------------------------------------
def layer_call(layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor, after=None):
    """One forward + backward of a spiking layer: spikes = layer(x); spikes.backward(g)."""

    def call() -> None:
        x.grad = None
        layer(x).backward(g)
        if after is not None:
            after()

    return call


def plain_lif_loop(tau: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The loop a user writes by hand: h = v + (x − v)/tau, spike with a surrogate, hard reset to 0."""
    spike = ATan()

    def run(x: torch.Tensor) -> torch.Tensor:
        v, out = torch.zeros_like(x[0]), []
        for xt in x:
            h = v + (xt - v) / tau
            s = spike(h - 1.0)
            v = h * (1.0 - s)
            out.append(s)
        return torch.stack(out)

    return run


def _sj():
    from spikingjelly.activation_based import functional, neuron, surrogate

    return functional, neuron, surrogate


@bench_case
def case_lif_layer(ctx: Ctx) -> list[Case]:
    """LIF layer alone, forward + backward, fp32 (bf16 I/O too on the Triton backend)."""
    import snntorch as snn

    functional, sjn, sjs = _sj()
    sizes = [(32, 32, 2048), (20, 16, 512), (8, 4, 128)]
    if ctx.device.type == "cuda":
        sizes = [(100, 128, 4096), (500, 16, 4096), *sizes[:1]]
    cases = []
    for T, B, N in sizes:
        gen = torch.Generator().manual_seed(0)
        x = (torch.randn(T, B, N, generator=gen) * 0.7 + 0.6).to(ctx.device).requires_grad_()
        g = torch.randn(T, B, N, generator=gen).to(ctx.device)
        c: dict[str, Callable[[], None]] = {}
        ours = []
        backends = ["auto", "fused", "torch"] + (["triton"] if ctx.device.type == "cuda" else [])
        for backend in backends:
            node = LIFNode(tau=2.0, surrogate=ATan(), backend=backend)
            c[f"spikelight LIF {backend}"] = layer_call(lambda x, n=node: n(x).spikes, x, g)
            ours.append(f"spikelight LIF {backend}")
        if ctx.device.type == "cuda":
            node = LIFNode(tau=2.0, surrogate=ATan(), backend="triton")
            xb, gb = x.detach().bfloat16().requires_grad_(), g.bfloat16()
            c["spikelight LIF triton, bf16 I/O"] = layer_call(lambda x, n=node: n(x).spikes, xb, gb)
            ours.append("spikelight LIF triton, bf16 I/O")
        sj = sjn.LIFNode(tau=2.0, surrogate_function=sjs.ATan(), step_mode="m").to(ctx.device)
        c["SpikingJelly 2.0 LIFNode"] = layer_call(sj, x, g, after=lambda sj=sj: functional.reset_net(sj))
        c["plain loop"] = layer_call(plain_lif_loop(2.0), x, g)
        # snnTorch has no LIF of SJ's form: its Leaky (beta = 1 − 1/tau) in the tutorial loop, and ours
        leaky = snn.Leaky(beta=0.5).to(ctx.device)

        def snn_run(x: torch.Tensor, lif=leaky) -> torch.Tensor:
            mem, out = lif.init_leaky(), []
            for xt in x:
                s, mem = lif(xt, mem)
                out.append(s)
            return torch.stack(out)

        c["snnTorch 1.0 Leaky"] = layer_call(snn_run, x, g)
        leaky_ours = LeakyNode(beta=0.5, backend="auto")
        c["spikelight Leaky auto"] = layer_call(lambda x, n=leaky_ours: n(x).spikes, x, g)
        ours.append("spikelight Leaky auto")
        cases.append(
            Case(
                f"lif_layer T={T} B={B} N={N}",
                "LIF (tau=2, ATan, hard reset) layer alone, spikes.backward(g), input grad",
                c,
                ours,
                ["SpikingJelly 2.0 LIFNode", "snnTorch 1.0 Leaky", "plain loop"],
            )
        )
    return cases


@bench_case
def case_other_neurons(ctx: Ctx) -> list[Case]:
    """ALIF (feed-forward) and the dual-exponential neuron alone, forward + backward: auto (native C for
    ALIF on the CPU, fused for dual-exp) vs the reference loop (no other library has these neurons in this form)."""
    T, B, N = 32, 32, 2048
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(T, B, N, generator=gen) * 0.7 + 0.6).to(ctx.device).requires_grad_()
    g = torch.randn(T, B, N, generator=gen).to(ctx.device)
    makers = {
        "ALIF": lambda b: ALIFNode(tau=2.0, tau_adapt=20.0, beta=0.5, adaptive_fraction=0.5, backend=b),
        "dual_exp": lambda b: DualExpNode(tau_m=5.0, tau_s=3.0, backend=b),
    }
    cases = []
    for name, make in makers.items():
        c = {}
        for backend in ("auto", "torch"):
            node = make(backend)
            c[f"spikelight {name} {backend}"] = layer_call(lambda x, n=node: n(x).spikes, x, g)
        cases.append(Case(f"{name}_layer T={T} B={B} N={N}", f"{name} layer alone, spikes.backward(g), input grad", c,
                          [f"spikelight {name} auto"], [f"spikelight {name} torch"]))  # fmt: skip
    return cases


@bench_case
def case_fc_lif(ctx: Ctx) -> list[Case]:
    """SpikingJelly lif_fc_mnist training step: Poisson T=100, 784→10 LIF, MSE(rate), Adam."""
    functional, sjn, sjs = _sj()
    from spikingjelly.activation_based import encoding, layer

    dev = ctx.device
    x, y, c = _image_train_steps(
        dev, lambda b: FCLIF(LIFNode(tau=2.0, surrogate=ATan(), backend=b)), PoissonEncoder(100), MSERateLoss(), 1e-3)
    ours = list(c)
    sj = nn.Sequential(
        layer.Flatten(), layer.Linear(784, 10, bias=False), sjn.LIFNode(tau=2.0, surrogate_function=sjs.ATan())
    ).to(dev)
    functional.set_step_mode(sj, "m")
    sj_enc, sj_opt, onehot = encoding.PoissonEncoder(), torch.optim.Adam(sj.parameters(), 1e-3), F.one_hot(y, 10).float()

    def step_sj() -> None:  # the tutorial's loop, multi-step
        sj_opt.zero_grad()
        x_seq = torch.stack([sj_enc(x) for _ in range(100)])
        F.mse_loss(sj(x_seq).mean(0), onehot).backward()
        sj_opt.step()
        functional.reset_net(sj)

    c["SpikingJelly 2.0"] = step_sj
    return [
        Case(
            "fc_lif train step T=100 B=128",
            "encode + forward + backward + Adam step; Poisson draws included",
            c,
            ours,
            ["SpikingJelly 2.0"],
        )
    ]


@bench_case
def case_tutorial5(ctx: Ctx) -> list[Case]:
    """snnTorch tutorial 5 training step: 784-1000-10 Leaky, direct T=25, Σ_t CE(membrane), Adam."""
    import snntorch as snn

    dev = ctx.device
    x, y, c = _image_train_steps(dev, lambda b: MLP(lambda: LeakyNode(beta=0.95, backend=b)), DirectEncoder(25),
                                 CEMembranePerStepLoss("sum"), 5e-4)
    ours = list(c)
    fc1, fc2 = nn.Linear(784, 1000).to(dev), nn.Linear(1000, 10).to(dev)
    lif1, lif2 = snn.Leaky(beta=0.95).to(dev), snn.Leaky(beta=0.95).to(dev)
    opt, xf = torch.optim.Adam([*fc1.parameters(), *fc2.parameters()], 5e-4), x.flatten(1)

    def step_snntorch() -> None:  # the tutorial's loop
        mem1, mem2, mems = lif1.init_leaky(), lif2.init_leaky(), []
        for _ in range(25):
            spk1, mem1 = lif1(fc1(xf), mem1)
            _, mem2 = lif2(fc2(spk1), mem2)
            mems.append(mem2)
        loss = sum(F.cross_entropy(m, y) for m in mems)
        opt.zero_grad()
        loss.backward()
        opt.step()

    c["snnTorch 1.0"] = step_snntorch
    return [
        Case(
            "tutorial5 train step T=25 B=128",
            "forward + backward + Adam step, 784-1000-10",
            c,
            ours,
            ["snnTorch 1.0"],
        )
    ]


@bench_case
def case_conv(ctx: Ctx) -> list[Case]:
    """SpikingJelly conv_fashion_mnist training step: {conv-BN-IF-maxpool}x2, FC-IF, FC-IF, direct input T=4,
    MSE(rate), SGD momentum 0.9. SpikingJelly's own CSNN class against ours with its weights copied in."""
    functional, _, _ = _sj()
    from spikingjelly.activation_based.examples.conv_fashion_mnist import CSNN

    dev = ctx.device
    ch, B = (128, 128) if dev.type == "cuda" else (32, 16)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(B, 1, 28, 28, generator=gen).to(dev), torch.randint(0, 10, (B,), generator=gen).to(dev)
    torch.manual_seed(0)
    sj = CSNN(T=4, channels=ch).to(dev).train()
    where = {"0": "blocks.0.synapse.0", "1": "blocks.0.synapse.1", "4": "blocks.1.synapse.0",
             "5": "blocks.1.synapse.1", "9": "blocks.2.synapse.1", "11": "blocks.3.synapse.0"}
    c, ours = {}, []
    for backend in ("auto", "torch"):
        model = ConvSNN(partial(IFNode, surrogate=ATan(), backend=backend),
                        [{"conv": ch, "norm": "batch", "maxpool": 2}] * 2 + [{"fc": ch * 4 * 4}]).to(dev).train()
        model.load_state_dict({where[k.split(".")[1]] + "." + k.split(".", 2)[2]: v for k, v in sj.state_dict().items()})
        opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
        enc, onehot = DirectEncoder(4), F.one_hot(y, 10).float()

        def step(model=model, opt=opt, enc=enc, onehot=onehot) -> None:
            opt.zero_grad()
            F.mse_loss(model(enc(x)).spikes.mean(0), onehot).backward()
            opt.step()

        c[f"spikelight {backend}"] = step
        ours.append(f"spikelight {backend}")
    sj_opt, onehot = torch.optim.SGD(sj.parameters(), 0.1, momentum=0.9), F.one_hot(y, 10).float()

    def step_sj() -> None:  # the example's training loop
        sj_opt.zero_grad()
        F.mse_loss(sj(x), onehot).backward()
        sj_opt.step()
        functional.reset_net(sj)

    c["SpikingJelly 2.0"] = step_sj
    return [Case(f"conv train step T=4 B={B} channels={ch}", "SJ conv_fashion_mnist network; forward + backward + SGD",
                 c, ours, ["SpikingJelly 2.0"], reps=max(5, ctx.reps // 2))]


@bench_case
def case_event_driven(ctx: Ctx) -> list[Case]:
    """Event-driven (Zhu et al. 2022) MNIST training step, built from `experiment=event_driven_mnist` as train.py
    does: our backward (running products) against the authors' backward time loop (table lookups,
    ``event_backward_reference``) swapped into the same model. Neither SpikingJelly nor snnTorch has this method."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from spikelight.app.cli import build_module
    from spikelight.layers.event_driven import functions as edf

    dev = ctx.device
    B = 50 if dev.type == "cuda" else 16
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=event_driven_mnist"])
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp"
    torch.manual_seed(0)
    module = build_module(cfg).to(dev).train()
    opt = module.configure_optimizers()["optimizer"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, *cfg.data.in_shape, generator=gen).to(dev)
    y = torch.randint(0, cfg.num_classes, (B,), generator=gen).to(dev)
    module.model.data_init(module.encode(x))
    fast = edf.event_backward

    def authors(grad, spikes, delta_u, delta_u_g, ecfg, in_scale=1.0):
        syn_a, partial_a = edf.kernel_tables(ecfg, grad.shape[0], grad.device, grad.dtype)
        grad_in, grad_w = edf.event_backward_reference(grad, spikes, delta_u, delta_u_g, syn_a, partial_a, ecfg.max_dudt_inv)
        return grad_in * in_scale, grad_w

    def step_with(backward) -> Callable[[], None]:
        def step() -> None:
            edf.event_backward = backward
            try:
                opt.zero_grad(set_to_none=True)
                module.loss_fn(module.model(module.encode(x), labels=y), y).backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                opt.step()
            finally:
                edf.event_backward = fast

        return step

    c = {"spikelight": step_with(fast), "authors' backward loop": step_with(authors)}
    return [Case(f"event_driven train step MNIST net T={cfg.T} B={B}",
                 "the authors' MNIST net (conf/experiment/event_driven_mnist.yaml); forward + event-driven backward + optimizer",
                 c, ["spikelight"], ["authors' backward loop"], reps=max(5, ctx.reps // 2))]


@bench_case
def case_lsnn(ctx: Ctx) -> list[Case]:
    """LSNN training step (Bellec et al.): pixel-by-pixel sequences of 784 steps, 220 recurrent neurons
    (120 LIF + 100 ALIF), leaky readout, CE of the mean readout, BPTT, Adam. Anchor: our reference loop."""
    dev = ctx.device
    batches = [256] if dev.type == "cuda" else [32, 8]
    cases = []
    for B in batches:
        gen = torch.Generator().manual_seed(0)
        x, y = torch.rand(B, 784, 1, generator=gen).to(dev), torch.randint(0, 10, (B,), generator=gen).to(dev)
        c = _sequence_model_steps(
            dev, partial(ALIFNode, tau=20.0, tau_adapt=200.0, beta=1.8, adaptive_fraction=100 / 220), x, y
        )
        ours = ["spikelight auto"]
        anchors = ["plain BPTT loop (spikelight backend=torch)"]
        norse_step = _norse_lsnn_step(dev, x, y)
        if norse_step is not None:
            c["Norse 1.1 LSNNRecurrent"] = norse_step
            anchors.append("Norse 1.1 LSNNRecurrent")
        cases.append(
            Case(
                f"lsnn train step T=784 B={B} H=220",
                "forward + backward + Adam step; input: uniform random pixels, 1 per step. Norse's row: its "
                "LSNNRecurrent (220 adaptive neurons: no LIF/ALIF mix, current-based synapse, recurrent spikes two "
                "steps late, no gradient through the adaptation) and the same leaky readout and loss",
                c,
                ours,
                anchors,
                reps=max(5, ctx.reps // 2),
            )
        )
    return cases


@bench_case
def case_lif_rsnn(ctx: Ctx) -> list[Case]:
    """LIF-RSNN training step (``model=lsnn neuron=lif``: the LSNN case without adaptation): 784 steps, 220 recurrent
    LIF neurons, leaky readout, CE of the mean readout, BPTT, Adam. Anchors: our reference loop and snnTorch's
    ``RLeaky`` (all-to-all recurrence) in its loop, the same readout and loss."""
    dev = ctx.device
    batches = [256] if dev.type == "cuda" else [32, 8]
    cases = []
    for B in batches:
        gen = torch.Generator().manual_seed(0)
        x, y = torch.rand(B, 784, 1, generator=gen).to(dev), torch.randint(0, 10, (B,), generator=gen).to(dev)
        c = _sequence_model_steps(dev, partial(LIFNode, tau=20.0, decay_input=False, v_reset=0.0, surrogate=ATan()), x, y)
        c["snnTorch 1.0 RLeaky"] = _snntorch_rleaky_step(dev, x, y)
        cases.append(
            Case(
                f"lif_rsnn train step T=784 B={B} H=220",
                "forward + backward + Adam step; input: uniform random pixels, 1 per step; our LIF: h = 0.95 v + I, "
                "spike h >= 1, hard reset to 0 in the same step, W_rec without bias. snnTorch's row: Linear(1, 220, "
                "no bias) over all steps at once, then RLeaky(beta=0.95, reset_mechanism='zero', reset_delay=False, "
                "ATan) step by step (spike U > 1; its recurrent Linear has a bias; the reset is detached), our leaky "
                "readout and loss",
                c,
                ["spikelight auto"],
                ["plain BPTT loop (spikelight backend=torch)", "snnTorch 1.0 RLeaky"],
                reps=max(5, ctx.reps // 2),
            )
        )
    return cases


def _sequence_model_steps(dev: torch.device, neuron: Callable[..., nn.Module], x: torch.Tensor,
                          y: torch.Tensor) -> dict[str, Callable[[], None]]:
    """Adam training steps of ``model=lsnn`` (1 → 220 recurrent ``neuron(backend=...)``, leaky readout, CE of the
    mean readout) on x [B, 784, 1], y [B]: ours on ``auto`` and the plain BPTT loop (``backend=torch``)."""
    steps = {}
    for backend, name in (("auto", "spikelight auto"), ("torch", "plain BPTT loop (spikelight backend=torch)")):
        torch.manual_seed(0)
        model = LSNN(partial(neuron, backend=backend), in_features=1, hidden=220, num_classes=10, readout_tau=20.0)
        loss = ReadoutCrossEntropyLoss().bind(RateReadout())
        steps[name] = _train_step(model.to(dev), SequenceEncoder(784), loss, x, y, 1e-3)
    return steps


def _snntorch_rleaky_step(dev: torch.device, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """A training step of snnTorch's RLeaky (1 → 220, all-to-all recurrence) in its tutorial loop, with our
    leaky readout, the rate readout and CE (as the LIF-RSNN)."""
    import snntorch as snn

    from spikelight.layers.recurrent import LeakyReadout

    torch.manual_seed(0)
    fc = nn.Linear(1, 220, bias=False).to(dev)
    rlif = snn.RLeaky(beta=0.95, linear_features=220, reset_mechanism="zero", reset_delay=False).to(dev)
    readout = LeakyReadout(220, 10, 20.0).to(dev)
    opt = torch.optim.Adam([*fc.parameters(), *rlif.parameters(), *readout.parameters()], 1e-3)
    xt = x.transpose(0, 1).contiguous()  # [T, B, 1]

    def step() -> None:
        opt.zero_grad()
        cur = fc(xt)  # the input layer over all steps at once, as ours
        spk, mem = rlif.reset_mem()
        out = []
        for it in cur:
            spk, mem = rlif(it, spk, mem)
            out.append(spk)
        logits, _ = readout(torch.stack(out))
        torch.nn.functional.cross_entropy(logits.mean(0), y).backward()
        opt.step()

    return step


def _norse_lsnn_step(dev: torch.device, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None] | None:
    """A training step of Norse's LSNNRecurrent (1 → 220) with our leaky readout, rate readout and CE, or None
    where norse is not installed (its sdist carries no version: ``SETUPTOOLS_SCM_PRETEND_VERSION=1.1.0 pip
    install --no-build-isolation norse==1.1.0``). Norse's dt = 1 ms and tau_mem 20 ms, tau_adapt 200 ms."""
    try:
        from norse.torch import LSNNParameters, LSNNRecurrent
    except ImportError:
        return None
    from spikelight.layers.recurrent import LeakyReadout

    torch.manual_seed(0)
    p = LSNNParameters(tau_mem_inv=torch.as_tensor(1 / 20e-3), tau_adapt_inv=torch.as_tensor(1 / 200e-3),
                       tau_syn_inv=torch.as_tensor(1 / 1e-3))  # fmt: skip
    rec = LSNNRecurrent(1, 220, p=p, dt=1e-3).to(dev)
    readout = LeakyReadout(220, 10, 20.0).to(dev)
    params = list(rec.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, 1e-3)
    xt = x.transpose(0, 1).contiguous()  # [T, B, 1]

    def step() -> None:
        opt.zero_grad()
        z, _ = rec(xt)
        logits, _ = readout(z)
        torch.nn.functional.cross_entropy(logits.mean(0), y).backward()
        opt.step()

    return step


def _image_train_steps(dev: torch.device, make_model: Callable[[str], nn.Module], encoder, loss_fn, lr: float):
    """A batch of 128 random 28×28 images and labels (seed 0), and an Adam training step on it of
    ``make_model(backend)`` for every backend of ``dev`` (auto, torch; triton on CUDA), each model built
    after ``torch.manual_seed(0)``. Returns (x, y, {"spikelight <backend>": step})."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28, generator=gen).to(dev), torch.randint(0, 10, (128,), generator=gen).to(dev)
    steps = {}
    for backend in ["auto", "torch"] + (["triton"] if dev.type == "cuda" else []):
        torch.manual_seed(0)
        steps[f"spikelight {backend}"] = _train_step(make_model(backend).to(dev), encoder, loss_fn, x, y, lr)
    return x, y, steps


def _train_step(model: nn.Module, encoder, loss_fn, x, y, lr: float) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr)

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(encoder(x)), y).backward()
        opt.step()

    return step


# --- torch.compile probe (opt-in: minutes of compiling) -----------------------------------------
def compile_probe(device: torch.device, reps: int) -> str:
    """Inductor on the unrolled LIF forward vs our forward under auto (no grad), T=32 B=32 N=2048."""
    T, B, N = 32, 32, 2048
    x = torch.randn(T, B, N, device=device) * 0.7 + 0.6

    def lif_forward(x: torch.Tensor, tau: float):
        v, hs, ss = torch.zeros_like(x[0]), [], []
        for t in range(x.shape[0]):
            h = v + (x[t] - v) / tau
            s = (h >= 1.0).to(h.dtype)
            v = h * (1.0 - s)
            hs.append(h)
            ss.append(s)
        return torch.stack(ss), torch.stack(hs), v

    compiled = torch.compile(lif_forward)
    node = LIFNode(tau=2.0, backend="auto")
    with torch.no_grad():
        t0 = time.perf_counter()
        ref = compiled(x, 2.0)
        compile_s = time.perf_counter() - t0
        same = torch.equal(ref[0], node(x).spikes)
        fns = {"compiled": lambda: compiled(x, 2.0), "spikelight": lambda: node(x), "eager loop": lambda: lif_forward(x, 2.0)}
        times = {k: [] for k in fns}
        for _ in range(reps):
            for k, f in fns.items():
                times[k].append(time_once(f, device)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    return (
        f"torch.compile probe (LIF forward only, no grad, T={T} B={B} N={N}): first call (compile) "
        f"{compile_s:.1f} s; then compiled {med['compiled']:.2f} ms, spikelight (auto) {med['spikelight']:.2f} ms, "
        f"eager loop {med['eager loop']:.2f} ms; same spikes as spikelight: {same}"
    )


# --- report --------------------------------------------------------------------------------------
def table(case: Case) -> list[str]:
    """Median wall and CPU ms, peak MB; for our rows ``anchor / ours`` by wall time (CPU time)."""
    head = "| contender | wall ms | CPU ms | peak MB | " + " | ".join(f"{a} / this" for a in case.anchors) + " |"
    rows = [head, "|" + "---|" * (4 + len(case.anchors))]
    for n, (ms, cpu, mb) in case.results.items():
        ratios = []
        for a in case.anchors:
            wall_r, cpu_r = case.results[a][0] / ms, case.results[a][1] / cpu
            ratios.append((f"**{wall_r:.2f}×**" + ("" if cpu != cpu else f" ({cpu_r:.2f}×)")) if n in case.ours else "")
        name = f"**{n}**" if n in case.ours else n
        rows.append(f"| {name} | {ms:.2f} | {cpu:.2f} | {mb:.1f} | " + " | ".join(ratios) + " |")
    return rows


def machine(device: torch.device) -> list[str]:
    from importlib.metadata import version

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} cores; no GPU" if device.type == "cpu" else f"- CPU: {cpu}",
        f"- torch {torch.__version__}, spikingjelly {version('spikingjelly')}, snntorch {version('snntorch')}, "
        f"Python {platform.python_version()}",
    ]
    if device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name()}")
    return lines


def report(runs: list[tuple[int, list[Case]]], args, load: tuple[str, str], extra: list[str]) -> str:
    date = subprocess.run(["date"], capture_output=True, text=True).stdout.strip()
    out = [
        "# Benchmark results",
        "",
        f"Measured {date} with `{' '.join(['python', 'experiments/benchmarks/bench.py', *sys.argv[1:]])}`.",
        "",
        *machine(torch.device(args.device)),
        f"- load average (1, 5, 15 min) before: {load[0]}; after: {load[1]}. "
        + (
            "The cores were shared with other jobs, so absolute times are noisy; "
            if float(load[0].split()[0]) > 1.5
            else "The machine was otherwise idle (the load is this run's own); "
        )
        + "the ratios (contenders alternate call by call) are the numbers to read",
        f"- median of {args.reps} calls after {args.warmup} warm-up calls. wall = elapsed time; CPU = process CPU "
        "time (all threads; robust to waiting for a busy core, so the cleaner number with 1 thread); "
        "ratios `anchor / this` by wall time, by CPU time in brackets; peak memory of one call (see bench.py)",
        "",
    ]
    for threads, cases in runs:
        out += [f"# {threads} torch thread{'s' if threads > 1 else ''}", ""]
        for case in cases:
            reps = f"; median of {case.reps} calls" if case.reps else ""
            out += [f"## {case.name}", "", case.what + ("; " + case.notes if case.notes else "") + reps, "", *table(case), ""]
    out += extra
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, min(2, os.cpu_count() or 1)])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--cases", nargs="*", default=None, help=f"subset of {[n for n, _ in CASES]}")
    ap.add_argument("--compile-probe", action="store_true", help="also time torch.compile of the LIF forward")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda needs a CUDA GPU; run the CPU part without --device")
    ctx = Ctx(torch.device(args.device), args.reps, args.warmup)
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    runs: list[tuple[int, list[Case]]] = []
    for threads in dict.fromkeys(args.threads):
        torch.set_num_threads(threads)
        print(f"# {threads} torch threads", flush=True)
        cases: list[Case] = []
        for name, build in CASES:
            if args.cases is None or name in args.cases:
                for case in build(ctx):
                    run_case(case, ctx)
                    print("\n".join([f"## {case.name}", *table(case), ""]), flush=True)
                    cases.append(case)
        runs.append((threads, cases))
    extra = []
    if args.compile_probe:
        torch.set_num_threads(min(args.threads))
        extra = [f"{compile_probe(ctx.device, args.reps)} ({min(args.threads)} torch thread(s))", ""]
        print(extra[0])
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    Path(args.out).write_text(report(runs, args, (" ".join(load0), " ".join(load1)), extra))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
