"""Synaptic operations (SOPs) and an energy estimate next to an equivalent ANN.

A spike into a layer costs one accumulate (AC) per synapse it reaches
(spikes × fan-out); an analog (non-binary) input costs one multiply-accumulate
(MAC) per synapse at every time step. The equivalent ANN runs each layer once
with MACs. Energies per operation, 45 nm CMOS, 32-bit float (Horowitz, ISSCC
2014, as used across the SNN literature): AC 0.9 pJ, MAC 4.6 pJ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spikelight.core.contract import CountsOps, traits_of

__all__ = ["SynOpCounter", "OpCount", "E_AC_PJ", "E_MAC_PJ"]

E_AC_PJ = 0.9
E_MAC_PJ = 4.6


@dataclass
class OpCount:
    """Totals over the samples seen; per-sample figures via the properties."""

    sops: float = 0.0
    macs: float = 0.0
    ann_macs: float = 0.0
    samples: int = 0

    @property
    def sops_per_sample(self) -> float:
        return self.sops / max(self.samples, 1)

    @property
    def snn_energy_nj(self) -> float:
        """Estimated energy per sample (nJ): SOPs × AC + analog-input MACs × MAC."""
        return (self.sops * E_AC_PJ + self.macs * E_MAC_PJ) / max(self.samples, 1) / 1e3

    @property
    def ann_energy_nj(self) -> float:
        """Same layers as a non-spiking ANN, one pass, all MACs (nJ per sample)."""
        return self.ann_macs * E_MAC_PJ / max(self.samples, 1) / 1e3


def _is_binary(x: Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


class SynOpCounter:
    """Count SOPs of every ``nn.Linear`` / ``nn.Conv2d`` in ``model`` while attached.

    The model's input must be time-major ``[T, B, ...]``; a layer called on a
    single step (the direct-input shortcut) counts as T identical steps.

    Layers that compute with their weights outside ``forward`` of an ``nn.Linear``
    (recurrent weights, a readout applied before a filter) report their own
    counts through ``count_ops(args, output) -> (sops, macs, ann_macs)`` (totals
    for the call; :class:`~spikelight.core.contract.CountsOps`), e.g.
    :class:`~spikelight.models.RecurrentSpikingLayer`. A model whose equivalent ANN
    must also run at every step (a sequence model, an RNN) declares it in its traits,
    ``ModelTraits(ann_every_step=True)`` (:mod:`spikelight.core.contract`).
    """

    def __init__(self, model: nn.Module) -> None:
        self.count = OpCount()
        self._T = self._B = 1
        self._ann_every_step = traits_of(model).ann_every_step
        self._handles = [model.register_forward_pre_hook(self._model_pre_hook)]
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                self._handles.append(mod.register_forward_hook(self._layer_hook))
            elif isinstance(mod, CountsOps):
                self._handles.append(mod.register_forward_hook(self._custom_hook))

    @torch.no_grad()
    def _custom_hook(self, module: nn.Module, args: tuple, out) -> None:
        sops, macs, ann_macs = module.count_ops(args, out)
        self.count.sops += float(sops)
        self.count.macs += float(macs)
        self.count.ann_macs += float(ann_macs)

    def _model_pre_hook(self, module: nn.Module, args: tuple) -> None:
        x = args[0]
        self._T, self._B = x.shape[0], x.shape[1]
        self.count.samples += self._B

    @torch.no_grad()
    def _layer_hook(self, module: nn.Module, args: tuple, out: Tensor) -> None:
        x = args[0]
        if isinstance(module, nn.Linear):
            n_calls = x[..., 0].numel()  # (time, batch) rows in this call
            fan_out = module.out_features
            macs_per_call = module.in_features * module.out_features
        else:
            n_calls = x.shape[0]
            k = module.kernel_size[0] * module.kernel_size[1]
            fan_out = module.out_channels * k / (module.stride[0] * module.stride[1] * module.groups)
            macs_per_call = out[0].numel() * (module.in_channels // module.groups) * k
        # one step for the whole batch = the direct-input shortcut: it stands for T steps
        repeat = self._T if n_calls == self._B else 1
        self.count.ann_macs += macs_per_call * (n_calls * repeat if self._ann_every_step else self._B)
        if _is_binary(x):
            self.count.sops += float(x.sum()) * fan_out * repeat
        else:
            self.count.macs += macs_per_call * n_calls * repeat

    def reset(self) -> None:
        self.count = OpCount()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> SynOpCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
