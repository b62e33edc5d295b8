"""Losses on a model's :class:`SpikeOutput` and integer labels ``y`` [B]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelight.core.contract import OutputNeeds, needs_of
from spikelight.core.types import SpikeOutput

__all__ = [
    "SpikeLoss",
    "MSERateLoss",
    "MSECountLoss",
    "CECountLoss",
    "CERateLoss",
    "CEMembranePerStepLoss",
    "ReadoutCrossEntropyLoss",
    "SpikeCountLoss",
    "FiringRateRegularizer",
]

_REDUCTIONS = ("mean", "sum")


class SpikeLoss(nn.Module):
    """Base: ``forward(out, y) -> scalar``. ``needs`` (:class:`~spikelight.core.contract.OutputNeeds`,
    none when not declared): ``spikes``, the loss reads output spikes (refused at build time for
    models whose output layer does not spike); ``membrane``, it trains through the output
    membrane (refused for models whose gradients flow only through spike times: event-driven BP)."""

    def forward(self, out: SpikeOutput, y: Tensor) -> Tensor:
        raise NotImplementedError


class _CrossEntropyPerStep(SpikeLoss):
    """Cross-entropy of one output tensor [T, B, C] (:meth:`scores`) at every step, reduced
    over time by ``sum`` or ``mean``."""

    def __init__(self, time_reduction: str = "mean") -> None:
        super().__init__()
        if time_reduction not in _REDUCTIONS:
            raise ValueError(f"time_reduction must be one of {_REDUCTIONS}, got {time_reduction!r}")
        self.time_reduction = time_reduction

    def scores(self, out: SpikeOutput) -> Tensor:
        raise NotImplementedError

    def forward(self, out: SpikeOutput, y: Tensor) -> Tensor:
        scores = self.scores(out)
        T = scores.shape[0]
        ce = F.cross_entropy(scores.flatten(0, 1), y.repeat(T), reduction="none")
        per_step = ce.view(T, -1).mean(1)
        return per_step.sum() if self.time_reduction == "sum" else per_step.mean()

    def extra_repr(self) -> str:
        return f"time_reduction={self.time_reduction!r}"


class MSERateLoss(SpikeLoss):
    """MSE between output firing rate [B, C] and a one-hot label (SpikingJelly tutorials).

    ``rate_on`` / ``rate_off`` are the target rates for the label and the other classes.
    """

    needs = OutputNeeds(spikes=True)

    def __init__(self, rate_on: float = 1.0, rate_off: float = 0.0) -> None:
        super().__init__()
        self.rate_on, self.rate_off = float(rate_on), float(rate_off)

    def forward(self, out: SpikeOutput, y: Tensor) -> Tensor:
        rate = out.spikes.mean(0)
        target = F.one_hot(y, rate.shape[-1]).to(rate.dtype) * (self.rate_on - self.rate_off) + self.rate_off
        return F.mse_loss(rate, target)


class CERateLoss(_CrossEntropyPerStep):
    """Cross-entropy of the output spikes at each step; ``mean`` over steps is
    snnTorch's ``ce_rate_loss``."""

    needs = OutputNeeds(spikes=True)

    def scores(self, out: SpikeOutput) -> Tensor:
        return out.spikes


class CEMembranePerStepLoss(_CrossEntropyPerStep):
    """Cross-entropy of the output membrane at each step (snnTorch tutorial 5 sums over
    steps: ``time_reduction=sum``)."""

    needs = OutputNeeds(membrane=True)

    def scores(self, out: SpikeOutput) -> Tensor:
        return out.membrane


class CECountLoss(SpikeLoss):
    """Cross-entropy on output spike counts (snnTorch ``ce_count_loss``)."""

    needs = OutputNeeds(spikes=True)

    def forward(self, out: SpikeOutput, y: Tensor) -> Tensor:
        return F.cross_entropy(out.spikes.sum(0), y)


class MSECountLoss(SpikeLoss):
    """snnTorch ``mse_count_loss``: MSE between spike counts [B, C] and target counts, divided by T.

    Targets are whole spikes, as snnTorch: ``int(T·correct_rate)`` for the label,
    ``int(T·incorrect_rate)`` for the other classes (snnTorch's defaults 1 and 0;
    its tutorials use 0.8 / 0.2). Value and gradient equal snnTorch's.
    """

    needs = OutputNeeds(spikes=True)

    def __init__(self, correct_rate: float = 1.0, incorrect_rate: float = 0.0) -> None:
        super().__init__()
        self.correct_rate, self.incorrect_rate = float(correct_rate), float(incorrect_rate)

    def forward(self, out: SpikeOutput, y: Tensor) -> Tensor:
        count = out.spikes.sum(0)
        T = out.spikes.shape[0]
        on = F.one_hot(y, count.shape[-1]).to(count.dtype)
        target = on * int(T * self.correct_rate) + (1 - on) * int(T * self.incorrect_rate)
        return F.mse_loss(count, target) / T


class ReadoutCrossEntropyLoss(SpikeLoss):
    """Cross-entropy of the run's readout scores [B, C] (``loss=ce``): whatever the readout
    predicts from is what is trained, e.g. the mean (``readout=rate``) or last
    (``readout=last``) readout potential of an LSNN, or the mean of its last 28 steps.

    The :class:`~spikelight.train.module.SpikingClassifier` composes it with its readout:
    ``loss.bind(readout)`` returns a new loss computed through ``readout`` and leaves ``loss``
    unbound (:class:`~spikelight.core.contract.ReadoutLoss`).
    """

    def __init__(self, readout: nn.Module | None = None) -> None:
        super().__init__()
        self._readout = readout

    @property
    def readout(self) -> nn.Module | None:
        """The readout it is bound to (None: not bound yet)."""
        return self._readout

    def bind(self, readout: nn.Module) -> ReadoutCrossEntropyLoss:
        """This loss through ``readout``: a new loss; this one is unchanged."""
        return type(self)(readout=readout)

    @property
    def needs(self) -> OutputNeeds:
        """Whatever the bound readout reads is trained: its spikes, its membrane if it reads one."""
        return OutputNeeds() if self._readout is None else needs_of(self._readout)

    def forward(self, out: SpikeOutput, y: Tensor) -> Tensor:
        if self._readout is None:
            raise RuntimeError("loss=ce needs a readout: SpikingClassifier binds it (or use loss = loss.bind(readout))")
        return F.cross_entropy(self._readout(out), y)


class SpikeCountLoss(SpikeLoss):
    """Spike-count loss with a one-sided error (event-driven BP, Zhu et al. 2022; their ``count``).

    c_j = Σ_t o_jt; target c* = ``desired_count`` for the label, ``undesired_count`` for the
    others; δ_j = (c_j − c*_j)/T, set to 0 where the label neuron fires more than desired or
    another fires less than undesired. L = ½ Σ_t Σ_j δ_j² = ½·T·Σ_j δ_j², so dL/do_jt = δ_j at
    every step, exactly the authors' gradient. ``reduction=sum`` over the batch is theirs
    (their learning rates are for it); ``mean`` divides by the batch size.
    """

    needs = OutputNeeds(spikes=True)

    def __init__(self, desired_count: float = 5.0, undesired_count: float = 1.0, reduction: str = "sum") -> None:
        super().__init__()
        if not 0 <= undesired_count < desired_count:
            raise ValueError(
                f"spike_count needs 0 <= undesired_count < desired_count, got {undesired_count} / {desired_count}"
            )
        if reduction not in _REDUCTIONS:
            raise ValueError(f"spike_count reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.desired_count, self.undesired_count = float(desired_count), float(undesired_count)
        self.reduction = reduction

    def forward(self, out: SpikeOutput, y: Tensor) -> Tensor:
        T = out.spikes.shape[0]
        count = out.spikes.sum(0)
        label = F.one_hot(y, count.shape[-1]).bool()
        target = torch.where(label, self.desired_count, self.undesired_count).to(count.dtype)
        delta = (count - target) / T
        satisfied = (label & (delta > 0)) | (~label & (delta < 0))
        delta = torch.where(satisfied, torch.zeros_like(delta), delta)
        loss = 0.5 * T * delta.pow(2).sum()
        return loss / count.shape[0] if self.reduction == "mean" else loss

    def extra_repr(self) -> str:
        return f"desired_count={self.desired_count}, undesired_count={self.undesired_count}, reduction={self.reduction!r}"


class FiringRateRegularizer(nn.Module):
    """Firing-rate regulariser (LSNN): ``weight · Σ_j (f_j − target)²`` over the neurons j of
    the chosen hidden layers, f_j = mean over batch and time of neuron j's spikes (spikes per
    step: 0.01 at 1 ms per step is 10 Hz).

    Args:
        weight: coefficient (LSNN sMNIST: 0.1).
        target: target spikes per step.
        layers: which ``SpikeOutput.hidden`` layers (exact names; None = all).
    """

    def __init__(self, weight: float = 0.1, target: float = 0.01, layers: list[str] | None = None) -> None:
        super().__init__()
        if weight < 0 or not 0.0 <= target <= 1.0:
            raise ValueError(f"regularizer needs weight >= 0 and target in [0, 1], got {weight}, {target}")
        self.weight, self.target = float(weight), float(target)
        self.layers = None if layers is None else list(layers)

    def forward(self, out: SpikeOutput) -> Tensor:
        names = list(out.hidden) if self.layers is None else self.layers
        missing = [n for n in names if n not in out.hidden]
        if missing:
            raise ValueError(f"regularizer.layers {missing} not in the model's spiking layers {list(out.hidden)}")
        total = sum((s.flatten(2).mean((0, 1)) - self.target).pow(2).sum() for s in (out.hidden[n] for n in names))
        return self.weight * total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, target={self.target}, layers={self.layers}"
