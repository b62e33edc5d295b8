"""SpikingClassifier: the one LightningModule (encoder → model → readout, loss)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from spikelight.core.contract import (
    DataDrivenInit,
    HasParamGroups,
    ModelTraits,
    OnlineLearningRule,
    ReadoutLoss,
    needs_of,
    traits_of,
)
from spikelight.core.errors import ConfigError, NonFiniteGradientError, NonFiniteLossError
from spikelight.core.types import SpikeOutput
from spikelight.encoding import Encoder
from spikelight.losses import FiringRateRegularizer, SpikeLoss
from spikelight.readout import Readout
from spikelight.train.faults import written_checkpoints
from spikelight.train.grad_norm import clip_grad_norm, grad_norm, overflows_float32
from spikelight.train.resume import mend_loop_state

__all__ = ["SpikingClassifier", "NonFiniteLossError", "NonFiniteGradientError"]


def _refuse_spike_readers(model: nn.Module, traits: ModelTraits, readout: nn.Module, loss: nn.Module) -> None:
    """One line at build time for a readout / loss that reads spikes the model's output layer
    does not emit (``traits.output_spikes`` false)."""
    if traits.output_spikes:
        return
    for what, part in (("readout", readout), ("loss", loss)):
        if needs_of(part).spikes:
            raise ConfigError(
                f"{what}={type(part).__name__} needs output spikes, but {type(model).__name__}'s readout "
                "neurons do not spike; use readout=rate|last|membrane and loss=ce"
            )


def _refuse_membrane_losses(
    model: nn.Module, traits: ModelTraits, loss: nn.Module, regularizer: nn.Module | None
) -> None:
    """One line at build time for a loss the model cannot train (``traits.membrane_grad`` false:
    gradients reach it only through output spike times, as in event-driven BP)."""
    if traits.membrane_grad:
        return
    name = type(model).__name__
    if needs_of(loss).membrane:
        readout = loss.readout if isinstance(loss, ReadoutLoss) else None
        what = f"loss=ce through readout={type(readout).__name__}" if readout is not None else f"loss={type(loss).__name__}"
        raise ConfigError(
            f"{what} needs gradients through the output membrane, but {name} passes gradients only at spike "
            "times; use loss=spike_count|tet|mse_count|ce_rate|ce_count (or loss=ce with readout=rate|time_weighted)"
        )
    if regularizer is not None:
        raise ConfigError(
            f"regularizer={type(regularizer).__name__} is not supported by {name}: its gradients w.r.t. hidden "
            "spikes would be read as spike-time gradients; use regularizer=null"
        )


class SpikingClassifier(L.LightningModule):
    """Train / evaluate any spiking classifier.

    Args:
        model: ``nn.Module`` mapping x_seq [T, B, ...] → :class:`SpikeOutput`.
        encoder: maps a batch [B, ...] → [T, B, ...] (sequence data that is
            already time-major can use ``encoder=None``).
        readout: :class:`SpikeOutput` → class scores [B, C]; argmax predicts.
        loss: ``(SpikeOutput, y) -> scalar``.
        optimizer: factory ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``).
        scheduler: optional factory ``optimizer -> LRScheduler``.
        num_classes: for the accuracy metrics.
        regularizer: optional ``SpikeOutput -> scalar`` added to the training loss
            (e.g. :class:`~spikelight.losses.FiringRateRegularizer`), logged as ``train/loss_reg``.
        scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step``.
        learning: the learning rule: None / :class:`~spikelight.learning.BPTT` (autograd) or an
            online rule (:class:`~spikelight.core.contract.OnlineLearningRule`) such as
            :class:`~spikelight.learning.EProp`, which computes the gradients itself in the
            training step (Lightning manual optimisation; it clips to
            ``manual_gradient_clip_val`` and steps the scheduler itself).
        config: plain (resolved, JSON-like) run config stored in the checkpoint
            so it reloads with ``torch.load(weights_only=True)`` and ``eval.py``
            can rebuild the model.

    What it asks of the model, readout and loss is :mod:`spikelight.core.contract`: the model's
    :class:`~spikelight.core.contract.ModelTraits` (``takes_labels``: the training forward gets
    ``labels=y``; ``membrane_grad`` false: losses that train through the membrane are refused;
    ``output_spikes`` false: readouts / losses that read spikes are refused), its optional hooks
    (:class:`~spikelight.core.contract.DataDrivenInit`, run once on the first training batch;
    :class:`~spikelight.core.contract.HasParamGroups`, optimiser groups with an ``lr_scale``),
    the readout's and loss's ``needs``, and a :class:`~spikelight.core.contract.ReadoutLoss`
    (``loss=ce``) is composed with the readout. Event-driven BP uses all of it.
    ``SpikeOutput.emitted_spikes``, when set, is what the readout scores.
    """

    def __init__(
        self,
        model: nn.Module,
        encoder: Encoder | nn.Module | None,
        readout: Readout,
        loss: SpikeLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        num_classes: int = 10,
        config: dict | None = None,
        regularizer: FiringRateRegularizer | nn.Module | None = None,
        scheduler_interval: str = "epoch",
        learning: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("epoch", "step"):
            raise ConfigError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        traits = traits_of(model)
        _refuse_spike_readers(model, traits, readout, loss)
        if isinstance(loss, ReadoutLoss):  # loss=ce: the loss through this run's readout (a new module)
            loss = loss.bind(readout)
        _refuse_membrane_losses(model, traits, loss, regularizer)
        self.model = model
        self.model_traits = traits
        self.encoder = encoder
        self.readout = readout
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.regularizer = regularizer
        self.scheduler_interval = scheduler_interval
        self.learning = learning if isinstance(learning, OnlineLearningRule) else None
        self.manual_gradient_clip_val: float | None = None
        #: the run's command-line overrides, stored in its checkpoints (``ckpt_path=`` reuses them)
        self.run_overrides: list[str] | None = None
        if self.learning is not None:
            self.learning.attach(model, readout, loss, regularizer)
            self.automatic_optimization = False
        self.save_hyperparameters({"config": config or {}, "num_classes": num_classes})
        # micro = fraction of samples classified correctly (the number tutorials report).
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc_best = 0.0

    def setup(self, stage: str) -> None:
        # a sequence encoder guards the [B, T, F] layout with the data's sequence length
        steps = getattr(getattr(self.trainer, "datamodule", None), "seq_len", None)
        if steps is not None and getattr(self.encoder, "steps", 0) is None:
            self.encoder.steps = int(steps)

    # --- forward -----------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        return x if self.encoder is None else self.encoder(x)

    def forward(self, x: Tensor) -> SpikeOutput:
        """x: a data batch [B, ...] (or [T, B, ...] with no encoder) → SpikeOutput."""
        return self.model(self.encode(x))

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str, metric: MulticlassAccuracy) -> Tensor:
        x, y = batch
        if stage == "train" and self.model_traits.takes_labels:
            out = self.model(self.encode(x), labels=y)  # e.g. event-driven label-spike injection
        else:
            out = self(x)
        loss = self.loss_fn(out, y)
        if self.regularizer is not None:
            reg = self.regularizer(out)
            self.log(f"{stage}/loss_reg", reg, on_step=False, on_epoch=True, batch_size=y.shape[0], sync_dist=True)
            loss = loss + reg
        return self._log_step(stage, out, y, loss, metric)

    def _log_step(self, stage: str, out: SpikeOutput, y: Tensor, loss: Tensor, metric: MulticlassAccuracy) -> Tensor:
        if stage == "train":
            self._check_finite(loss, self.global_step)
        scores = self.readout(out.as_emitted())  # accuracy on what the network emitted
        metric(scores, y)
        bs = y.shape[0]
        train = stage == "train"
        # plain tensors averaged over an epoch must be synced across DDP ranks (metrics sync themselves);
        # the per-step training loss stays rank-local to avoid a collective every step
        self.log(f"{stage}/loss", loss, on_step=train, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=not train)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        for name, spikes in out.hidden.items():
            rate = spikes.detach().float().mean()
            self.log(f"{stage}/fr/{name}", rate, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # models with a data-driven initialisation (event-driven gains) run it once, on the first
        # training batch; the model's ``data_initialized`` buffer is checkpointed, so resuming skips it
        model = self.model
        if not isinstance(model, DataDrivenInit) or bool(model.data_initialized):
            return
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        with torch.no_grad():
            factors = model.data_init(self.encode(x))
        if self.trainer.world_size > 1:  # every rank starts from rank 0's initialisation
            for t in (*self.model.parameters(), *self.model.buffers()):
                t.data.copy_(self.trainer.strategy.broadcast(t.data, src=0))
        self.print(f"[spikelight] data-driven init on one batch of {x.shape[0]}: gain factors "
                   + ", ".join(f"{f:.3g}" for f in factors))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.learning is not None:
            return self._online_step(batch)
        return self._shared_step(batch, "train", self.train_acc)

    def _online_step(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """An online learning rule computes the gradients in one forward pass; then clip and step."""
        x, y = batch
        result = self.learning.gradients(self.model, self.encode(x), y, self.readout, self.loss_fn, self.regularizer)
        self._check_finite(result.loss, self.global_step)
        opt = self.optimizers()
        opt.zero_grad()
        self.learning.apply(self.model, result.grads)
        if self.trainer.world_size > 1:  # DDP averages autograd's gradients only; these are the rule's own
            self._average_gradients_over_processes()
        if self.manual_gradient_clip_val:
            self.configure_gradient_clipping(opt, self.manual_gradient_clip_val, "norm")
        self.learning.before_step(self.model)
        opt.step()
        self.learning.after_step(self.model, lr=opt.param_groups[0]["lr"])
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.scheduler_interval == "step":
            scheduler.step()
        return self._log_step("train", result.out, y, result.loss, self.train_acc)

    def _average_gradients_over_processes(self) -> None:
        """The mean of every gradient over the processes of a DDP run, in one all-reduce."""
        import torch.distributed as dist

        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads or not (dist.is_available() and dist.is_initialized()):
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.trainer.world_size
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    def on_train_epoch_end(self) -> None:
        self._raise_if_nonfinite()
        if self.learning is not None and self.scheduler_interval == "epoch":
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()

    # --- stop on a NaN / Inf training loss or gradient, without a host sync every step ---
    #: on an accelerator the checks read back only every this many steps
    #: (and at the end of each epoch); the error still names the first bad step
    FINITE_CHECK_EVERY = 50

    def _defer_finite_check(self, loss: Tensor) -> bool:
        # reading a CPU tensor costs nothing; on CUDA it would stall the launch queue every step
        return loss.device.type != "cpu"

    def _check_finite(self, loss: Tensor, step: int, what: str = "loss") -> None:
        """Raise :class:`NonFiniteLossError` naming the first step whose training loss
        (``what="loss"``) or gradient norm (``what="grad"``) was NaN/Inf. With several processes (DDP) only the
        gradient is checked: it is averaged over the processes (a NaN loss of one makes every process's gradient
        NaN), so all stop at the same step, where one stopping alone would leave the others waiting for it."""
        if what == "loss" and self._trainer is not None and self.trainer.world_size > 1:
            return
        if not self._defer_finite_check(loss):
            if not torch.isfinite(loss):
                self._raise_nonfinite(float(loss.detach()), step, what)
            return
        finite = torch.isfinite(loss.detach())  # before the cast: a finite float64 norm past 3.4e38 is not inf
        value = loss.detach().float()
        bad = self.__dict__.setdefault("_bad", {})
        if what not in bad:  # the first non-finite value: step (-1 = none yet), value
            bad[what] = (torch.full((), -1, dtype=torch.long, device=loss.device), torch.zeros((), device=loss.device))
        at, val = bad[what]
        new = (~finite) & (at < 0)
        at.copy_(torch.where(new, step, at))
        val.copy_(torch.where(new, value, val))
        if (step + 1) % self.FINITE_CHECK_EVERY == 0:
            self._raise_if_nonfinite()

    def _raise_if_nonfinite(self) -> None:
        for what, (at, val) in getattr(self, "_bad", {}).items():
            if (step := int(at)) >= 0:  # the host sync
                self._raise_nonfinite(float(val), step, what)

    def _check_finite_grads(self, step: int) -> None:
        """Stop before an optimizer step would write NaN/Inf gradients into the weights."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        norm = grad_norm(grads)  # summed in float64: a finite gradient past ~1.8e19 is not called inf
        self._check_finite(norm, step, "grad")
        clipped = self.manual_gradient_clip_val or (self._trainer is not None and self.trainer.gradient_clip_val)
        if norm.device.type == "cpu" and not clipped and not self.__dict__.get("_warned_huge") \
                and overflows_float32(norm):  # (on CUDA reading the norm would stall every step)
            self._warned_huge = True
            rank_zero_warn(f"gradient norm {float(norm):.3g} at step {step} without gradient clipping: Adam's "
                           "second moment will hold it for thousands of steps (those weights barely move); "
                           "set trainer.gradient_clip_val (said once per run)")

    def _last_good_checkpoint(self) -> str:
        """The newest checkpoint this run wrote (weights from before the bad step), if any."""
        found = written_checkpoints(self._trainer)
        return str(found[-1]) if found else ""

    def _raise_nonfinite(self, value: float, step: int, what: str = "loss") -> None:
        kept = self._last_good_checkpoint()
        kept = f"; last good checkpoint: {kept}" if kept else ""
        if what == "grad":
            raise NonFiniteGradientError(
                f"gradient norm is {value} at epoch {self.current_epoch}, step {step} (weights not updated){kept}; "
                "lower optimizer.lr, set trainer.gradient_clip_val, or check the surrogate / input scaling"
            )
        raise NonFiniteLossError(
            f"training loss is {value} at epoch {self.current_epoch}, step {step}{kept}; "
            "lower optimizer.lr, set trainer.gradient_clip_val, or check the input scaling"
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._check_finite_grads(self.global_step)

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping (``trainer.gradient_clip_val``), unchanged for every ordinary gradient. One
        case first: a gradient too large for float32's sum of squares (norm past 1e19; Lightning's norm would
        be inf and its factor 0, losing the step) is scaled to ``gradient_clip_val`` by its float64 norm
        (:mod:`spikelight.train.grad_norm`) — where the precision plugin clips the plain norm of these
        gradients (not DeepSpeed / FSDP; not a fused optimizer under AMP, whose gradients are still scaled
        here and which Lightning refuses to clip)."""
        plugin = self.trainer.precision_plugin
        plain = (type(plugin).clip_grad_by_norm is Precision.clip_grad_by_norm
                 and type(plugin).clip_gradients in (Precision.clip_gradients, MixedPrecision.clip_gradients)
                 # a fused optimizer unscales inside its step (Lightning's _optimizer_handles_unscaling)
                 and not (isinstance(plugin, MixedPrecision) and getattr(optimizer, "_step_supports_amp_scaling", False)))
        if gradient_clip_val and (gradient_clip_algorithm or "norm") == "norm" and plain:
            params = list(plugin.main_params(optimizer))
            if overflows_float32(grad_norm(p.grad for p in params if p.grad is not None)):
                clip_grad_norm(params, float(gradient_clip_val))
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        acc = self.trainer.callback_metrics.get("val/acc")
        if acc is not None and math.isfinite(float(acc)):
            self.val_acc_best = max(self.val_acc_best, float(acc))
        self.log("val/acc_best", self.val_acc_best, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.readout(self(x)).argmax(-1)

    # --- optimisation ------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self._param_groups())
        for group in optimizer.param_groups:  # a model's group with its own learning-rate factor
            if "lr_scale" in group:
                group["lr"] = group["lr"] * group["lr_scale"]
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def _param_groups(self) -> Any:
        """The model's ``param_groups()`` (dicts that may carry an ``lr_scale``) plus every other
        parameter of the module in one more group; plain ``parameters()`` otherwise."""
        if not isinstance(self.model, HasParamGroups):
            return self.parameters()
        groups = [dict(g, params=list(g["params"])) for g in self.model.param_groups()]
        seen = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in self.parameters() if id(p) not in seen]
        return [g for g in groups if g["params"]] + ([{"params": rest}] if rest else [])

    # --- exact resume ------------------------------------------------------------
    # Lightning does not checkpoint RNG state, but Poisson encoding and shuffling
    # draw from it: without this a resumed run sees different spikes.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["val_acc_best"] = self.val_acc_best
        if self.run_overrides is not None:
            checkpoint["overrides"] = list(self.run_overrides)
        # this process's device only: rank 0 writes the checkpoint, and its states of the other GPUs (which it never
        # draws on) are not theirs; every process has the same seed and draws as much, so rank 0's current-device
        # state is every process's own (as the CPU state is)
        checkpoint["rng_state"] = {
            "torch": torch.get_rng_state(),
            "cuda": [],  # (older checkpoints: every device's state, from rank 0)
            "cuda_device": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        }
        # the processes the training set was shared among: a resume inside an epoch continues each one's share
        sampler = getattr(self.trainer.train_dataloader, "sampler", None) if self._trainer is not None else None
        checkpoint["train_shards"] = int(getattr(sampler, "num_replicas", 1))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # before Lightning restores its loops: an epoch-end checkpoint resumes at the next epoch, one stopped inside
        # an epoch by max_steps in that epoch (train/resume.py)
        mend_loop_state(checkpoint)
        self.val_acc_best = float(checkpoint.get("val_acc_best", 0.0))
        self._resume_rng = checkpoint.get("rng_state")
        self._resume_shards = checkpoint.get("train_shards")  # (None: a checkpoint from before it was stored)

    def on_train_start(self) -> None:
        # after the sanity check (which draws random numbers too), before the first batch
        rng = getattr(self, "_resume_rng", None)
        if rng:
            torch.set_rng_state(rng["torch"])
            if rng.get("cuda_device") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(rng["cuda_device"])  # this process's current device
            elif rng.get("cuda") and torch.cuda.is_available():  # an older checkpoint: every device's, from rank 0
                if self.trainer.world_size > 1:
                    torch.cuda.set_rng_state(rng["cuda"][0])  # rank 0's own device (its other devices' never drawn on)
                else:
                    torch.cuda.set_rng_state_all(rng["cuda"])
            self._resume_rng = None
            self._skip_seen_batches()

    def _skip_seen_batches(self) -> None:
        """Resumed from a mid-epoch checkpoint (pre-emption): the epoch's sampler leaves
        out the batches already trained on, so the run continues exactly where it stopped."""
        trainer = self.trainer
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        batches = trainer.num_training_batches
        if not batches or batches == float("inf"):
            return
        steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
        done = (trainer.global_step % steps_per_epoch) * trainer.accumulate_grad_batches
        if not done:
            return
        before, now = getattr(self, "_resume_shards", None), getattr(sampler, "num_replicas", None)
        if before is not None and now is not None and int(before) != int(now):
            raise ConfigError(
                f"this checkpoint was written inside an epoch by a run whose training set was shared among {before} "
                f"process(es); this run shares it among {now}, so the rest of that epoch cannot be continued: resume "
                f"with trainer.devices (x trainer.num_nodes) giving {before} process(es), or from the checkpoint of an "
                "epoch's end (last.ckpt / epoch_*.ckpt written at it)")
        if hasattr(sampler, "skip_next"):
            sampler.skip_next(done * loader.batch_size)
        else:  # (Lightning's own warning about this is silenced: spikelight's samplers resume)
            rank_zero_warn(f"resumed inside an epoch, after {done} batches, but the training sampler "
                           f"({type(sampler).__name__}) cannot leave them out: this epoch sees them again. "
                           "spikelight's DataModules use EpochShuffleSampler, which can (also under DDP)")
