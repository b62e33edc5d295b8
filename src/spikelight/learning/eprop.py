"""e-prop (Bellec et al., Nat. Commun. 2020): online gradients for recurrent spiking networks.

For the :class:`~spikelight.models.LSNN` (recurrent LIF / IF / ALIF layer, leaky readout),
one forward pass over time under ``torch.no_grad()`` gives every weight gradient;
nothing of the sequence is kept for a backward pass, so memory does not grow with T.

Per recurrent neuron j and input i (input pixels, other neurons' last spikes, a bias),
in this library's neuron equations (:mod:`spikelight.neurons.alif`; LIF is β = 0):

    h_t = α·v_{t-1} + c·I_t,    α = 1 − 1/τ,  c = 1/τ (decay_input) or 1
    ψ_t = σ'((h_t − A_t)/s)/s   (pseudo-derivative, 0 while refractory; s = v_th if normalize else 1)
    ε^h_t = α·r_{t-1}·ε^h_{t-1} + c·p_t          r = 1 (soft reset) or 1 − z (hard reset)
    e_t   = ψ_t·(ε^h_t − β·ε^a_{t-1})            (eligibility trace)
    ε^a_t = (ρ − (1−ρ)·β·ψ_t)·ε^a_{t-1} + (1−ρ)·ψ_t·ε^h_t
    ē_t   = κ·ē_{t-1} + (1−κ)·e_t                (the readout's filter, κ = exp(−1/τ_out))
    dE/dW_ji = Σ_t L_j^t·ē_ji^t,   L_j^t = Σ_k B_jk·∂E/∂logit_k^t

In the ``lsnn_official`` convention (:mod:`spikelight.neurons.alif`: the spike comes from v_{t-1}
against A_t = v_th + β b_t, normalised by A_t, and the reset −A_t z_{t-1} comes one step late) the
traces follow v_{t-1} and b_t (z_{t-1} detached in the reset, not in the adaptation, as above):

    ψ_t = σ'((v_{t-1} − A_t)/A_t)                (0 while refractory)
    ε^b_t = ρ·ε^b_{t-1} + (1−ρ)·e_{t-1}
    e_t   = ψ_t/A_t·ε^v_{t-1} − ψ_t·β·v_{t-1}/A_t²·ε^b_t
    ε^v_t = α·ε^v_{t-1} + c·p_t − β·z_{t-1}·ε^b_t

The traces are linear recurrences in the presynaptic activity p_t with coefficients from the
forward pass alone, so they are advanced K steps at a time (:mod:`spikelight.learning.trace_chunks`:
a backward sweep over the K steps' [B, H] coefficients, then one batched matrix product with the
K steps' p_t) instead of several passes over the [B, H, P] traces at every step: the same sums in
another order, 17× faster for B = 256, H = 220, P = 222 (one CPU thread; 8 ms a step against
136 ms), memory still independent of T.

B is W_outᵀ (``feedback=symmetric``), a fixed random matrix (``random``) or a matrix
that receives W_out's updates (``adaptive``, Kolen–Pollack). The readout weights get
their exact gradients, and the firing-rate regulariser adds
Σ_t 2c(f_j − f0)/(B·T)·e_t. These equal the gradients of BPTT through the
"autodiff-equivalent" graph — the same network with z_{t-1} detached where it
enters W_rec and the reset, and B in place of W_outᵀ on the way back
(:func:`reference_gradients`; tested to 1e-5).

Losses with a per-step learning signal are supported: cross-entropy of the readout
mean over all steps (``readout=rate``), over a last window (``readout=membrane
readout.window=k``) or of the last step (``readout=last``) — the signal is the same
at every step of the window, so the traces are summed over the window and multiplied
once at the end — and cross-entropy at every step (``loss=ce_membrane_per_step``).
Anything else is refused in one line when the run is built.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelight.core.errors import ConfigError
from spikelight.core.types import SpikeOutput
from spikelight.dynamics.spec import ALIFSpec, LIFSpec, StepArgs, step_args
from spikelight.learning.trace_chunks import TraceChunks
from spikelight.losses import CEMembranePerStepLoss, FiringRateRegularizer, ReadoutCrossEntropyLoss
from spikelight.models.lsnn import LSNN
from spikelight.readout import MembraneReadout, RateReadout

log = logging.getLogger(__name__)

__all__ = ["EProp", "EPropResult", "reference_gradients"]

FEEDBACKS = ("symmetric", "random", "adaptive")


@dataclass
class EPropResult:
    """What one e-prop pass returns: the model output (for metrics), the loss value and
    the gradients of W_in, b_in (or None), W_rec, W_out, b_out."""

    out: SpikeOutput
    loss: Tensor
    grads: dict[str, Tensor | None]
    trace_bytes: int


def _window(readout: nn.Module, loss: nn.Module, T: int) -> tuple[str, int]:
    """('window', w): CE of the readout's mean over the last w steps; ('step', T): CE every step."""
    if isinstance(loss, CEMembranePerStepLoss):
        return "step", T
    if not isinstance(loss, ReadoutCrossEntropyLoss):
        raise ConfigError(
            f"learning=eprop needs a loss with a per-step learning signal (loss=ce or ce_membrane_per_step), "
            f"got {type(loss).__name__}"
        )
    if isinstance(readout, RateReadout):
        return "window", T
    if isinstance(readout, MembraneReadout) and readout.mode in ("mean", "last"):
        if readout.mode == "last":
            return "window", 1
        return "window", T if readout.window is None else min(readout.window, T)
    raise ConfigError(
        f"learning=eprop with loss=ce needs readout=rate, last or membrane (mode mean|last), got "
        f"{type(readout).__name__}{'(mode=' + readout.mode + ')' if isinstance(readout, MembraneReadout) else ''}"
    )


def _dynamics(neuron: nn.Module) -> StepArgs:
    """The step constants of a supported neuron (IF, LIF, ALIF: their traces are derived), read from the same
    record the fast paths run (:func:`spikelight.dynamics.spec.step_args`): α = ``leak``, the input factor
    ``gain``, ``rho``, ``refractory``, ``normalize`` / ``thr`` (the surrogate's scale), ``hard``."""
    spec_of = getattr(neuron, "_kernel_spec", None)
    spec = spec_of() if callable(spec_of) else None
    if not isinstance(spec, (LIFSpec, ALIFSpec)):
        raise ConfigError(
            f"learning=eprop supports neuron=lif, if and sfa/alif (their traces are derived), got {type(neuron).__name__}"
        )
    return step_args(spec)


class EProp(nn.Module):
    """Online e-prop for ``model=lsnn`` (``learning=eprop``); see the module docstring.

    An :class:`~spikelight.core.contract.OnlineLearningRule`: the trainer calls :meth:`attach`
    once, then per batch :meth:`gradients`, :meth:`apply`, :meth:`before_step`, the optimiser
    step and :meth:`after_step`.

    Args:
        feedback: ``symmetric`` (B = W_outᵀ), ``random`` (fixed N(0, 1), as the e-prop code)
            or ``adaptive`` (Kolen–Pollack: B receives W_out's every update; both decay by
            ``kp_decay``·lr per step).
        kp_decay: weight decay of W_out and B in ``adaptive`` mode.
        seed: seed of the random / initial feedback matrix.
    """

    def __init__(self, feedback: str = "symmetric", kp_decay: float = 0.01, seed: int = 0) -> None:
        super().__init__()
        if feedback not in FEEDBACKS:
            raise ConfigError(f"learning.feedback must be one of {FEEDBACKS}, got {feedback!r}")
        self.feedback, self.kp_decay, self.seed = feedback, float(kp_decay), int(seed)
        self.register_buffer("B", torch.empty(0))  # [H, C]; built when attached (saved in checkpoints)
        self._w_out_before: Tensor | None = None

    # --- set-up ---------------------------------------------------------------------------
    def attach(self, model: nn.Module, readout: nn.Module, loss: nn.Module, regularizer: nn.Module | None) -> None:
        """Check the run is one e-prop can train (one line otherwise) and build B."""
        if not isinstance(model, LSNN):
            raise ConfigError(f"learning=eprop trains model=lsnn (a recurrent layer and a leaky readout), "
                              f"got {type(model).__name__}")
        if model.dropout > 0:
            raise ConfigError("learning=eprop needs model.dropout=0 (the readout must see the spikes the traces saw)")
        if model.rec.tbptt_steps is not None:  # model=lsnn's default is 50: a BPTT setting, not an error here
            log.info("learning=eprop does not use model.tbptt_steps=%s (it never backpropagates through time)",
                     model.rec.tbptt_steps)
        if regularizer is not None and not isinstance(regularizer, FiringRateRegularizer):
            raise ConfigError(f"learning=eprop supports regularizer=firing_rate, got {type(regularizer).__name__}")
        _dynamics(model.rec.neuron)
        _window(readout, loss, T=1)
        H, C = model.rec.hidden, model.readout.fc.out_features
        if self.feedback == "symmetric":
            self.B = torch.empty(0)
        elif self.B.numel() == 0:
            gen = torch.Generator().manual_seed(self.seed)
            self.B = torch.randn(H, C, generator=gen)

    def feedback_matrix(self, model: LSNN) -> Tensor:
        """B [H, C]: the matrix that carries the output error back to the recurrent neurons."""
        w_out = model.readout.fc.weight
        return w_out.t() if self.feedback == "symmetric" else self.B.to(w_out)

    def before_step(self, model: LSNN) -> None:
        if self.feedback == "adaptive":
            self._w_out_before = model.readout.fc.weight.detach().clone()

    @torch.no_grad()
    def after_step(self, model: LSNN, lr: float) -> None:
        """Kolen–Pollack: B receives the update W_out just received; both decay."""
        if self.feedback != "adaptive" or self._w_out_before is None:
            return
        w = model.readout.fc.weight
        self.B.add_((w - self._w_out_before).t().to(self.B))
        decay = 1.0 - self.kp_decay * lr
        self.B.mul_(decay)
        w.mul_(decay)
        self._w_out_before = None

    # --- the online pass ---------------------------------------------------------------------
    @torch.no_grad()
    def gradients(
        self,
        model: LSNN,
        x_seq: Tensor,
        y: Tensor,
        readout: nn.Module,
        loss: nn.Module,
        regularizer: FiringRateRegularizer | None = None,
    ) -> EPropResult:
        """One online pass over x_seq [T, B, F]: the output, the loss and every gradient."""
        layer, neuron, ro = model.rec, model.rec.neuron, model.readout
        x = x_seq.flatten(2).to(torch.promote_types(x_seq.dtype, torch.float32))
        T, batch, n_in = x.shape
        H = layer.hidden
        dyn = _dynamics(neuron)
        sg_scale = dyn.thr if dyn.normalize else 1.0  # the surrogate's input is (h − A)/sg_scale
        kind, w = _window(readout, loss, T)
        w_in, b_in = layer.fc.weight, layer.fc.bias
        w_rec = layer.recurrent_weight()
        w_out, b_out = ro.fc.weight, ro.fc.bias
        fb = self.feedback_matrix(model)
        kappa = 0.0 if ro.tau is None else math.exp(-1.0 / ro.tau)
        P = n_in + H + (1 if b_in is not None else 0)
        dt = x.dtype
        onehot = F.one_hot(y, w_out.shape[0]).to(dt)
        beta = neuron.beta_per_neuron(H, x[0]) if dyn.adaptive else None

        state = neuron.initial_state(torch.zeros(batch, H, dtype=dt, device=x.device))
        z = torch.zeros(batch, H, dtype=dt, device=x.device)
        # the traces, K steps at a time (spikelight.learning.trace_chunks): per (b, j) a state S of
        # D traces per input — (ε^h, ε^a) here, (ε^v, ε^b, e) in LSNN-official's convention, the
        # filtered trace ē last for a per-step signal — and the sums the gradients need: output 0 the
        # task's (Σ over the window of ē, or Σ_t L_t ē_t), output 1 the regulariser's (Σ_t e_t)
        official = dyn.official  # LSNN-official's convention: traces of v_{t-1} and b_t (module docstring)
        D0 = (3 if dyn.adaptive else 1) if official else (2 if dyn.adaptive else 1)
        per_step = kind != "window"
        D = D0 + (1 if per_step else 0)
        chunks = self._trace_chunks(batch, H, P, D, 1 + (regularizer is not None), dt, x.device, per_step,
                                    (kind, official, dyn.adaptive, dyn.hard))
        g_w = torch.zeros(H, P, dtype=dt, device=x.device)
        g_out, g_bout = torch.zeros_like(w_out), torch.zeros_like(b_out)
        ybar = torch.zeros(batch, H, dtype=dt, device=x.device)
        ybar_sum = torch.zeros_like(ybar)
        logits, count = [], torch.zeros(batch, H, dtype=dt, device=x.device)
        ones = torch.ones(batch, 1, dtype=dt, device=x.device)
        loss_steps = x.new_zeros(())
        rho, leak, gain = dyn.rho, dyn.leak, dyn.gain
        for t in range(T):
            p = torch.cat([x[t], z] + ([ones] if b_in is not None else []), dim=1)  # presynaptic activity [B, P]
            current = F.linear(x[t], w_in, b_in) + F.linear(z, w_rec)
            threshold = neuron.threshold(state) if dyn.alif else neuron.v_threshold
            refractory = (state.ref > 0) if dyn.refractory else None
            z_prev, v_prev = z, state.v
            z, state, h = neuron.step(current, state)
            if official:
                psi = neuron.surrogate.derivative((v_prev - threshold) / threshold)
            else:
                psi = neuron.surrogate.derivative((h - threshold) / sg_scale) / sg_scale
            if refractory is not None:
                psi = psi.masked_fill(refractory, 0.0)
            # readout (leaky, non-spiking) and the learning signal
            ybar.mul_(kappa).add_(z, alpha=1.0 - kappa)
            logit = F.linear(ybar, w_out, b_out)
            logits.append(logit)
            count.add_(z)
            M, m, R, n, h_out, g_out_t = chunks.slot()
            if kind == "window":
                if t >= T - w:
                    ybar_sum.add_(ybar)
                last = max(t, T - w)  # e_t's weight in Σ_{t' in window} ē_t'
                h_out[0] = kappa ** (last - t) * (1.0 - kappa ** (T - last))
            else:
                scale = 1.0 / (batch * (T if loss.time_reduction == "mean" else 1))
                delta = (torch.softmax(logit, -1) - onehot) * scale  # dE/dlogit_t [B, C]
                loss_steps = loss_steps + F.cross_entropy(logit, y) * scale * batch
                g_out_t[0, D0] = delta @ fb.t()  # L_t on ē_t
                g_out.add_(delta.t() @ ybar)
                g_bout.add_(delta.sum(0))
            if regularizer is not None:
                h_out[1] = 1.0
            # the traces' step: S_t = M S_{t-1} + m p_t, e_t = R·S_{t-1} + n p_t (module docstring's equations)
            if official:
                A1 = psi / threshold  # e_t = ψ/A ε^v_{t-1} − ψ β v_{t-1}/A² ε^b_t
                M[0, 0] = leak  # ε^v_t = α ε^v_{t-1} + c p_t − β z_{t-1} ε^b_t
                m[0] = gain
                if dyn.adaptive:  # ε^b_t = ρ ε^b_{t-1} + (1−ρ) e_{t-1}
                    A2 = -psi * beta * v_prev / threshold**2
                    bz = -beta * z_prev
                    M[0, 1], M[0, 2] = bz * rho, bz * (1.0 - rho)
                    M[1, 1], M[1, 2] = rho, 1.0 - rho
                    R[0], R[1], R[2] = A1, A2 * rho, A2 * (1.0 - rho)
                    M[2, :3] = R[:3]
                else:
                    R[0] = A1
            else:
                a = leak * (1.0 - z_prev) if dyn.hard else leak  # ε^h_t = α r_{t-1} ε^h_{t-1} + c p_t
                M[0, 0] = a
                m[0] = gain
                R[0] = psi * a  # e_t = ψ (ε^h_t − β ε^a_{t-1})
                n.copy_(psi * gain)
                if dyn.adaptive:  # ε^a_t = (ρ − (1−ρ) β ψ) ε^a_{t-1} + (1−ρ) ψ ε^h_t
                    u = (1.0 - rho) * psi
                    M[1, 0] = u * a
                    M[1, 1] = rho - u * beta
                    m[1] = u * gain
                    R[1] = -psi * beta
            if per_step:  # ē_t = κ ē_{t-1} + (1−κ) e_t
                M[D0, :D0] = R[:D0] * (1.0 - kappa)
                M[D0, D0] = kappa
                m[D0] = n * (1.0 - kappa)
            chunks.push(p)
        chunks.finish()

        logits_t = torch.stack(logits)
        out = SpikeOutput(None, logits_t, {"rec.neuron": (count / T).unsqueeze(0)})
        if kind == "window":
            mean_logits = logits_t[T - w :].mean(0)
            delta = (torch.softmax(mean_logits, -1) - onehot) / batch  # dE/d(mean logits)
            task_loss = F.cross_entropy(mean_logits, y)
            g_w.add_(torch.einsum("bj,bjp->jp", (delta @ fb.t()) / w, chunks.O[:, :, 0]))
            g_out.add_(delta.t() @ ybar_sum / w)
            g_bout.add_(delta.sum(0))
        else:
            task_loss = loss_steps
            g_w.add_(chunks.O[:, :, 0].sum(0))
        total = task_loss
        if regularizer is not None:
            rate = count.sum(0) / (batch * T)  # spikes per step of each neuron
            total = total + regularizer.weight * (rate - regularizer.target).pow(2).sum()
            reg_e = chunks.O[:, :, 1].sum(0)  # Σ_b Σ_t e_t
            g_w.add_((2.0 * regularizer.weight * (rate - regularizer.target) / (batch * T)).unsqueeze(-1) * reg_e)
        trace_bytes = chunks.nbytes
        grads = {
            "w_in": g_w[:, :n_in],
            "w_rec": g_w[:, n_in : n_in + H] * layer.rec_mask,
            "b_in": g_w[:, -1] if b_in is not None else None,
            "w_out": g_out,
            "b_out": g_bout,
        }
        return EPropResult(out, total, grads, trace_bytes)

    def _trace_chunks(self, *shape_and_layout) -> TraceChunks:
        """The trace buffers of the last pass when this one has the same shapes and the same kind of
        coefficients (a training run: every batch), else new ones; zeroed for this pass."""
        key = shape_and_layout
        if getattr(self, "_chunks_key", None) != key:
            self._chunks = TraceChunks(*shape_and_layout[:-1])
            self._chunks_key = key
        self._chunks.reset()
        return self._chunks

    def apply(self, model: LSNN, grads: dict[str, Tensor | None]) -> None:
        """Write the gradients into the parameters' ``.grad`` (for the optimizer)."""
        pairs = {
            "w_in": model.rec.fc.weight,
            "b_in": model.rec.fc.bias,
            "w_rec": model.rec.rec.weight,
            "w_out": model.readout.fc.weight,
            "b_out": model.readout.fc.bias,
        }
        for name, param in pairs.items():
            if param is None:
                continue
            g = grads[name].to(param.dtype)
            param.grad = g.clone() if param.grad is None else param.grad.add_(g)

    def extra_repr(self) -> str:
        return f"feedback={self.feedback!r}, kp_decay={self.kp_decay}"


class _FeedbackLinear(torch.autograd.Function):
    """logits = ȳ W_outᵀ + b, with the gradient to ȳ carried by B instead of W_outᵀ."""

    @staticmethod
    def forward(ctx, ybar: Tensor, w_out: Tensor, b_out: Tensor, fb: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(ybar, fb)
        return F.linear(ybar, w_out, b_out)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        ybar, fb = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        return grad @ fb.t(), g2.t() @ ybar.reshape(-1, ybar.shape[-1]), g2.sum(0), None


def reference_gradients(
    model: LSNN,
    x_seq: Tensor,
    y: Tensor,
    readout: nn.Module,
    loss: nn.Module,
    regularizer: FiringRateRegularizer | None,
    feedback: Tensor,
) -> dict[str, Tensor | None]:
    """BPTT through e-prop's autodiff-equivalent graph (slow; for tests and validation):
    z_{t-1} detached where it enters W_rec and the reset, B in place of W_outᵀ on the way back.
    The model is not changed: the reset is detached in a (shallow) copy of its neuron, which
    shares its parameters and buffers."""
    layer, ro = model.rec, model.readout
    neuron = copy.copy(layer.neuron)
    neuron.detach_reset = True
    x = x_seq.flatten(2).to(torch.promote_types(x_seq.dtype, torch.float32))
    with torch.enable_grad():
        ff = layer.fc(x)
        w_rec = layer.recurrent_weight()
        state = neuron.initial_state(ff[0])
        z = torch.zeros_like(ff[0])
        spikes = []
        for ff_t in ff.unbind(0):
            z, state, _ = neuron.step(ff_t + F.linear(z.detach(), w_rec), state)
            spikes.append(z)
        s = torch.stack(spikes)
        kappa = 0.0 if ro.tau is None else math.exp(-1.0 / ro.tau)
        ybar, filtered = torch.zeros_like(s[0]), []
        for z_t in s.unbind(0):
            ybar = kappa * ybar + (1.0 - kappa) * z_t
            filtered.append(ybar)
        logits = _FeedbackLinear.apply(torch.stack(filtered), ro.fc.weight, ro.fc.bias, feedback)
        out = SpikeOutput(None, logits, {"rec.neuron": s})
        if isinstance(loss, ReadoutCrossEntropyLoss):
            total = F.cross_entropy(readout(out), y)
        else:
            total = loss(out, y)
        if regularizer is not None:
            total = total + regularizer(out)
        params = [layer.fc.weight, layer.fc.bias, layer.rec.weight, ro.fc.weight, ro.fc.bias]
        grads = torch.autograd.grad(total, [p for p in params if p is not None])
    it = iter(grads)
    return {
        "w_in": next(it),
        "b_in": next(it) if layer.fc.bias is not None else None,
        "w_rec": next(it),
        "w_out": next(it),
        "b_out": next(it),
    }
