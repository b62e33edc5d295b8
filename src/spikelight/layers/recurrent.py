"""The recurrent spiking layer (all-to-all recurrence, no self-connections) and the leaky
non-spiking readout of the LSNN (Bellec et al. 2018).

    x_seq [T, B, F] → RecurrentSpikingLayer → z [T, B, H] → LeakyReadout → logits [T, B, C]
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelight.core.types import NeuronOutput
from spikelight.dynamics import dispatch
from spikelight.dynamics.fused.recurrent import leaky_filter
from spikelight.dynamics.native.spike_linear import spike_linear, spike_linear_applies
from spikelight.layers.over_time import NeuronFactory, apply_over_time, make_neuron

__all__ = ["RecurrentState", "RecurrentSpikingLayer", "LeakyReadout"]


class RecurrentState(NamedTuple):
    """State of a recurrent layer: the neuron's state and the last spikes z_{t-1} [B, H]."""

    neuron: Any
    spikes: Tensor


def _detach(state: Any) -> Any:
    """Detach every tensor of a (nested) NamedTuple state."""
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(*(_detach(s) for s in state))


class RecurrentSpikingLayer(nn.Module):
    """Spiking layer with all-to-all recurrence and no self-connections.

    ``I_t = W_in x_t + W_rec z_{t-1}``; ``z_t`` from the neuron. The feed-forward
    part ``W_in x`` is computed for all T in one call; only the recurrent part is
    stepped. Initialisation as LSNN-official: W_in ~ N(0, 1)/√F, W_rec ~ N(0, 1)/√H,
    diagonal of W_rec zero (and kept zero: it is masked in every step).

    Args:
        in_features: F.  hidden: H.  neuron: neuron factory (or instance).
        bias: bias on the input projection.
        tbptt_steps: truncated BPTT: detach the state (neuron state and z) every
            this many steps, so gradients reach back at most that far through the
            recurrence; None = full BPTT.

    forward(x_seq [T, B, F], state=None) → NeuronOutput(spikes [T, B, H],
    membrane [T, B, H], RecurrentState, states).

    The steps run on the neuron's ``backend`` (:func:`spikelight.dynamics.dispatch.choose`): the fast
    paths run the whole sequence as one autograd Function for IF, LIF and ALIF neurons
    (:mod:`spikelight.dynamics.fused.recurrent`: same spikes, same gradients), ``torch`` (and
    any other neuron under ``auto``) the per-step loop below, the reference.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        neuron: NeuronFactory,
        bias: bool = False,
        tbptt_steps: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden <= 0:
            raise ValueError(f"model.hidden must be a positive integer (neurons in the recurrent layer), got {hidden!r}")
        if tbptt_steps is not None and (not isinstance(tbptt_steps, int) or tbptt_steps <= 0):
            raise ValueError(f"model.tbptt_steps must be a positive integer or null, got {tbptt_steps!r}")
        self.in_features, self.hidden, self.tbptt_steps = in_features, hidden, tbptt_steps
        self.fc = nn.Linear(in_features, hidden, bias=bias)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        self.register_buffer("rec_mask", 1.0 - torch.eye(hidden), persistent=False)
        self.neuron = make_neuron(neuron)
        with torch.no_grad():
            self.fc.weight.normal_().div_(math.sqrt(in_features))
            if self.fc.bias is not None:
                self.fc.bias.zero_()
            self.rec.weight.normal_().div_(math.sqrt(hidden)).mul_(self.rec_mask)

    def recurrent_weight(self) -> Tensor:
        """W_rec with its diagonal forced to zero, [H, H]."""
        return self.rec.weight * self.rec_mask

    def initial_state(self, x: Tensor) -> RecurrentState:
        """Fresh state for one step of hidden input x [B, H]."""
        return RecurrentState(self.neuron.initial_state(x), torch.zeros_like(x))

    def forward(self, x_seq: Tensor, state: RecurrentState | None = None) -> NeuronOutput:
        ff = apply_over_time(self.fc, x_seq)
        ff = ff.to(torch.promote_types(ff.dtype, torch.float32))  # neuron state in fp32 under autocast
        if state is None:
            state = self.initial_state(ff[0])
        neuron_state, z = state
        w_rec = self.recurrent_weight().to(ff.dtype)
        backend = self.backend(ff, w_rec)
        if backend != "torch" and ff.shape[0] > 0:
            return self.neuron(ff, result=self._forward_fast(backend, ff, w_rec, neuron_state, z))
        record = self.neuron.record_states
        spikes, membrane, history = [], [], []
        k = self.tbptt_steps
        # unbind once: indexing ff[t] in the loop would give T full-size gradient buffers in backward
        for t, ff_t in enumerate(ff.unbind(0)):
            if k is not None and t > 0 and t % k == 0:
                neuron_state, z = _detach(neuron_state), z.detach()
            current = ff_t + F.linear(z, w_rec)
            z, neuron_state, h = self.neuron.step(current, neuron_state)
            spikes.append(z)
            membrane.append(h)
            if record:
                history.append(neuron_state)
        states = type(neuron_state)(*(torch.stack(v) for v in zip(*history))) if history else None
        out = NeuronOutput(torch.stack(spikes), torch.stack(membrane), RecurrentState(neuron_state, z), states)
        return self.neuron(ff, result=out)  # through forward, so hooks and monitors see the sequence

    def backend(self, like: Tensor, w_rec: Tensor | None = None) -> str:
        """The backend this layer runs on for input like ``like`` [T, B, H] (its device and dtype):
        the neuron's ``backend`` through :func:`spikelight.dynamics.dispatch.choose`."""
        neuron = self.neuron
        spec = neuron._kernel_spec() if hasattr(neuron, "_kernel_spec") else None
        requested = getattr(neuron, "backend", "torch")
        record = bool(getattr(neuron, "record_states", False))
        return dispatch.choose(requested, spec, neuron.surrogate, like, type(neuron).__name__, recurrent=True,
                               record=record, w_rec=w_rec)  # fmt: skip

    def _forward_fast(self, backend: str, ff: Tensor, w_rec: Tensor, neuron_state: Any, z: Tensor) -> NeuronOutput:
        """All T steps as one autograd Function (same spikes and gradients as the loop in forward)."""
        neuron = self.neuron
        inputs = neuron._kernel_inputs(ff[0]) if hasattr(neuron, "_kernel_inputs") else {}
        spec, requested = neuron._kernel_spec(), getattr(neuron, "backend", "auto")
        s, h, final, states = dispatch.guarded(requested, backend, type(neuron).__name__, lambda b: dispatch.run_recurrent(
            b, ff, w_rec, spec, neuron.surrogate, tuple(neuron_state), z, tbptt=self.tbptt_steps,
            record=neuron.record_states, **inputs,
        ))  # fmt: skip
        state_type = type(neuron_state)
        out_states = None if states is None else state_type(*states)
        return NeuronOutput(s, h, RecurrentState(state_type(*final), s[-1]), out_states)

    def count_ops(self, args: tuple, out: NeuronOutput) -> tuple[float, float, float]:
        """Recurrent synaptic operations of one call (for SynOpCounter): each spike reaches
        the H − 1 other neurons at the next step; the equivalent RNN does H² MACs per step."""
        z = out.spikes
        T, B = z.shape[0], z.shape[1]
        return float(z[:-1].sum()) * (self.hidden - 1), 0.0, float(T * B * self.hidden * self.hidden)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, hidden={self.hidden}, tbptt_steps={self.tbptt_steps}"


class LeakyReadout(nn.Module):
    """Non-spiking leaky readout neurons (LSNN): ``ȳ_t = κ·ȳ_{t-1} + (1 − κ)·z_t``,
    ``logits_t = W ȳ_t + b``, κ = exp(−1/tau) (tau in steps; None = no filter, logits_t = W z_t + b).

    The filter is linear, so it runs on W z (C channels) instead of z (H): the same
    numbers, H/C times less work. forward(z [T, B, H], state [B, C] or None, backend="torch") →
    (logits [T, B, C], filter state [B, C]); ``backend`` is the recurrent layer's (LSNN passes it): any
    fast one runs the filter as one autograd Function (:func:`spikelight.dynamics.fused.recurrent.leaky_filter`,
    same numbers) instead of the loop, and ``native`` also sums the product W z over the spikes in C
    (the same values up to float rounding). W: Glorot-uniform, b: zero (as LSNN-official).
    """

    def __init__(self, hidden: int, num_classes: int, tau: float | None = 20.0) -> None:
        super().__init__()
        if tau is not None and not tau > 0:
            raise ValueError(f"model.readout_tau must be > 0 (steps) or null for no filter, got {tau}")
        self.tau = None if tau is None else float(tau)
        self.fc = nn.Linear(hidden, num_classes)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, z: Tensor, state: Tensor | None = None, backend: str = "torch") -> tuple[Tensor, Tensor]:
        fused = backend != "torch"
        if backend == "native" and spike_linear_applies(z, self.fc.weight):  # summed over the spikes (C)
            wz = spike_linear(z, self.fc.weight)
        else:
            wz = F.linear(z, self.fc.weight)
        if self.tau is None:
            return wz + self.fc.bias, wz[-1]
        kappa = math.exp(-1.0 / self.tau)
        if fused:  # the loop below as one autograd Function (same numbers; LSNN passes its layer's backend)
            y_seq, y = leaky_filter(wz, kappa, state)
            return y_seq + self.fc.bias, y
        y = torch.zeros_like(wz[0]) if state is None else state
        out = []
        for wz_t in wz.unbind(0):
            y = kappa * y + (1.0 - kappa) * wz_t
            out.append(y)
        return torch.stack(out) + self.fc.bias, y

    def count_ops(self, args: tuple, out: tuple[Tensor, Tensor]) -> tuple[float, float, float]:
        """The readout projects spikes (W z, accumulates) before filtering: spikes × C SOPs."""
        z = args[0]
        C = self.fc.out_features
        binary = bool(((z == 0) | (z == 1)).all())
        dense = z[..., 0].numel() * z.shape[-1] * C
        return (float(z.sum()) * C, 0.0, dense) if binary else (0.0, dense, dense)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"
