"""Spiking neuron base: charge → fire → reset, single- and multi-step.

A neuron is defined by its charge equation alone, ``h_t = charge(x_t, v_{t-1})``.
Fire and reset are shared (SpikingJelly conventions):

    s_t = Θ(h_t - v_threshold)                               (surrogate backward)
    v_t = h_t·(1 - s_t) + v_reset·s_t        if v_reset is a number (hard reset)
    v_t = h_t - v_threshold·s_t              if v_reset is None    (soft reset)

``detach_reset`` cuts the gradient through the ``s_t`` used in the reset.
``h`` is the membrane potential before reset ("membrane" in every output).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikelight.errors import ShapeError
from spikelight.surrogate import ATan, Surrogate

__all__ = ["NeuronOutput", "BaseNode", "fire_and_reset", "reset_state"]


class NeuronOutput(NamedTuple):
    """Result of a multi-step call.

    spikes:   [T, B, ...] 0/1 in the input dtype.
    membrane: [T, B, ...] potential before reset (h).
    v:        [B, ...]    state after the last step (pass back in to continue).
    """

    spikes: Tensor
    membrane: Tensor
    v: Tensor


def reset_state(h: Tensor, spike: Tensor, v_threshold: float, v_reset: float | None, detach_reset: bool) -> Tensor:
    """State after firing: hard reset to ``v_reset``, or soft (subtract threshold) if None."""
    s = spike.detach() if detach_reset else spike
    if v_reset is None:
        return h - v_threshold * s
    return h * (1.0 - s) + v_reset * s


def fire_and_reset(
    h: Tensor,
    v_threshold: float,
    v_reset: float | None,
    surrogate: Surrogate,
    detach_reset: bool,
) -> tuple[Tensor, Tensor]:
    """Spike on ``h >= v_threshold`` and reset. Returns ``(spike, v_next)``."""
    spike = surrogate(h - v_threshold)
    return spike, reset_state(h, spike, v_threshold, v_reset, detach_reset)


class BaseNode(nn.Module):
    """Base spiking neuron. Subclasses implement only :meth:`charge`.

    ``forward(x_seq)`` is multi-step: ``x_seq`` is ``[T, B, ...]`` and the state
    starts fresh every call unless passed in (no ``reset_net`` to forget); it
    returns :class:`NeuronOutput` (spikes, membrane, final state).
    :meth:`single_step` takes and returns explicit state. Neurons whose reset
    is not the standard one override :meth:`reset` as well.

    Args:
        v_threshold: firing threshold.
        v_reset: reset potential (hard reset); ``None`` = soft reset by
            subtracting ``v_threshold``.
        surrogate: surrogate spike function (default ``ATan(alpha=2)``).
        detach_reset: detach the spike used in the reset from the graph.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | None = None,
        detach_reset: bool = False,
    ) -> None:
        super().__init__()
        if v_reset is not None and not v_reset < v_threshold:
            raise ValueError(
                f"v_reset ({v_reset}) must be below v_threshold ({v_threshold}); "
                "use v_reset=null for soft reset"
            )
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = surrogate if surrogate is not None else ATan()
        if not isinstance(self.surrogate, Surrogate):
            raise TypeError(
                f"surrogate must be a spikelight.surrogate.Surrogate, got {type(self.surrogate).__name__}"
            )
        self.detach_reset = bool(detach_reset)

    # --- the one method a new neuron writes -------------------------------------
    def charge(self, x: Tensor, v: Tensor) -> Tensor:
        """Membrane update before firing: ``h_t = f(x_t, v_{t-1})``."""
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------
    def initial_state(self, x: Tensor) -> Tensor:
        """Resting state shaped like one step of input: ``v_reset`` (or 0 for soft reset)."""
        return torch.full_like(x, 0.0 if self.v_reset is None else self.v_reset)

    def reset(self, h: Tensor, spike: Tensor) -> Tensor:
        """State after firing (hard or soft reset, see module docstring)."""
        return reset_state(h, spike, self.v_threshold, self.v_reset, self.detach_reset)

    def step(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """charge → fire → reset for one step. Returns ``(spike, v_next, h)``."""
        h = self.charge(x, v)
        spike = self.surrogate(h - self.v_threshold)
        return spike, self.reset(h, spike), h

    def single_step(self, x: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step. x: [B, ...]; v: state or None (fresh). Returns ``(spike, v_next)``."""
        if v is None:
            v = self.initial_state(x)
        spike, v_next, _ = self.step(x, v)
        return spike, v_next

    def multi_step(self, x_seq: Tensor, v: Tensor | None = None) -> NeuronOutput:
        """Run all steps. x_seq: [T, B, ...]; v: initial state [B, ...] or None."""
        if x_seq.dim() < 2:
            raise ShapeError(
                f"{type(self).__name__} expects time-major input [T, B, ...], got shape {tuple(x_seq.shape)}"
            )
        if v is None:
            v = self.initial_state(x_seq[0])
        spikes, membrane = [], []
        for x in x_seq:
            spike, v, h = self.step(x, v)
            spikes.append(spike)
            membrane.append(h)
        return NeuronOutput(torch.stack(spikes), torch.stack(membrane), v)

    def forward(self, x_seq: Tensor, v: Tensor | None = None) -> NeuronOutput:
        """Multi-step call (what models use, so monitor hooks see spikes and membrane).

        x_seq [T, B, ...] → NeuronOutput(spikes, membrane [T, B, ...], v [B, ...]).
        """
        return self.multi_step(x_seq, v)

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"v_reset={self.v_reset}"
        return f"v_threshold={self.v_threshold}, {reset}, detach_reset={self.detach_reset}"
