"""e-prop's eligibility traces, advanced K steps at a time with matrix products.

Every trace e-prop keeps for a recurrent neuron j and a presynaptic input i (ε^h, ε^a, ε^v, ε^b,
the filtered trace ē) is, per batch sample b and neuron j, a linear recurrence over time whose
input is the presynaptic activity p_t[b, i]:

    S_t = M_t S_{t-1} + m_t p_t          S_t [D] per (b, j, i); M_t [D, D], m_t [D] per (b, j)
    e_t = R_t · S_{t-1} + n_t p_t        (the eligibility trace; R_t [D], n_t per (b, j))

and every gradient term is a sum over time of outputs  y_t = g_t · S_t + h_t e_t  (g_t [D], h_t per
(b, j)). Stepping S over all T steps costs a few passes over a [B, H, D, P] tensor per step
(P = inputs + H + bias): memory-bound, ~1 s per step for B = 256, H = 220 on two CPU cores.
Here the coefficients of K steps are collected first ([B, H] each: the neuron's forward pass does
not depend on the traces), then one backward sweep over those K steps gives, for every output and
for the state at the chunk's end, the coefficient of the state at its start (ν) and of each p_t (q):

    λ_{t1} = g_{t1};  ν_{t-1} = M_tᵀ λ_t + h_t R_t;  q_t = λ_t · m_t + h_t n_t;  λ_{t-1} = g_{t-1} + ν_{t-1}

so that  Σ_t y_t = ν_{t0} · S_{t0} + Σ_t q_t p_t  — one small matmul with S and one batched
product of the q's [B, H·n, K] with the p's [B, K, P]. The state at the chunk's end is the same
expression with g_{t1} = the unit vectors. The sums are exactly e-prop's (only their order
differs), memory is O(B·H·D·P + K·B·(H·n + P)), independent of T, and the buffers are allocated
once.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TraceChunks", "chunk_steps"]


def chunk_steps(P: int, D: int) -> int:
    """Steps per chunk: the [K, B, H, D, D] coefficients stay well below the [B, H, D, P] state."""
    return max(8, min(64, P // max(D * D, 1)))


class TraceChunks:
    """The state S [B, H, D, P] and the output sums O [B, H, n_out, P] of one e-prop pass.

    Per step, :meth:`slot` gives the step's coefficient buffers ``M`` [D, D, B, H], ``m`` / ``R``
    [D, B, H], ``n`` [B, H], ``h`` [n_out, B, H] and ``g`` [n_out, D, B, H] (None unless ``with_g``)
    for the caller to fill
    (index ``M[c, d]``: the weight of S_{t-1}[d] in S_t[c]); they start at zero and are not cleared,
    so a caller writes the same entries at every step. :meth:`push` records the presynaptic activity
    p [B, P] with them. Every K steps (and at :meth:`finish`) they are folded into S and O. (The
    per-step coefficients keep B·H last: the backward sweep runs on long rows.) :meth:`reset` starts
    another pass with the same buffers.
    """

    def __init__(self, batch: int, hidden: int, P: int, D: int, n_out: int, dtype: torch.dtype,
                 device: torch.device, with_g: bool = True, K: int | None = None) -> None:
        self.B, self.H, self.P, self.D, self.n_out = batch, hidden, P, D, n_out
        self.K = K = K or chunk_steps(P, D)
        n = D + n_out
        kw = {"dtype": dtype, "device": device}
        self.S = torch.zeros(batch, hidden, D, P, **kw)
        self._S_next = torch.empty_like(self.S)
        self.O = torch.zeros(batch, hidden, n_out, P, **kw)
        self._Qs = torch.empty(batch, hidden, D, K, **kw)  # q_t of the state's rows, step on the last axis
        self._Qo = torch.empty(batch, hidden, n_out, K, **kw)  # ... of the outputs' rows
        self._p = torch.empty(batch, K, P, **kw)
        self._M = torch.zeros(K, D, D, batch, hidden, **kw)
        self._m = torch.zeros(K, D, batch, hidden, **kw)
        self._R = torch.zeros(K, D, batch, hidden, **kw)
        self._n = torch.zeros(K, batch, hidden, **kw)
        self._h = torch.zeros(K, n_out, batch, hidden, **kw)  # the outputs' rows (the state's are 0)
        self._g = torch.zeros(K, n_out, D, batch, hidden, **kw) if with_g else None
        self._lam = torch.empty(n, D, batch, hidden, **kw)
        self._q = torch.empty(K, n, batch, hidden, **kw)
        self._k = 0

    def reset(self) -> None:
        """Zero traces and sums for a new pass (the coefficient buffers keep their layout of entries)."""
        self.S.zero_()
        self.O.zero_()
        self._k = 0

    @property
    def nbytes(self) -> int:
        bufs = (self.S, self._S_next, self.O, self._Qs, self._Qo, self._p, self._M, self._m, self._R, self._n,
                self._h, self._g, self._lam, self._q)
        return sum(b.numel() * b.element_size() for b in bufs if b is not None)

    def slot(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(M, m, R, n, h, g) of the next step: views of the chunk's buffers."""
        k = self._k
        return self._M[k], self._m[k], self._R[k], self._n[k], self._h[k], None if self._g is None else self._g[k]

    def push(self, p: Tensor) -> None:
        """Record the step whose coefficients were written into :meth:`slot`; fold the chunk in when full."""
        self._p[:, self._k].copy_(p)
        self._k += 1
        if self._k == self.K:
            self._fold()

    def finish(self) -> None:
        """Fold in the steps of a last, partial chunk."""
        if self._k:
            self._fold()

    def _fold(self) -> None:
        k, D, B, H = self._k, self.D, self.B, self.H
        lam, q = self._lam, self._q
        lam.zero_()
        for c in range(D):  # the state at the chunk's end: g = the unit vectors
            lam[c, c] = 1.0
        g = self._g
        if g is not None:
            lam[D:] = g[k - 1]
        for i in range(k - 1, -1, -1):
            h = self._h[i]  # [n_out, B, H] (the state's rows have none)
            # q_t = λ_t · m_t + h_t n_t
            q[i].zero_()
            torch.mul(h, self._n[i], out=q[i, D:])
            for d in range(D):
                q[i].addcmul_(lam[:, d], self._m[i, d])
            # ν_{t-1} = M_tᵀ λ_t + h_t R_t, i.e. ν[o, e] = Σ_d λ[o, d] M[d, e] + h[o] R[e];  λ_{t-1} = g_{t-1} + ν_{t-1}
            nu = (lam.unsqueeze(2) * self._M[i].unsqueeze(0)).sum(1)
            nu[D:].addcmul_(h.unsqueeze(1), self._R[i].unsqueeze(0))
            if i > 0 and g is not None:
                nu[D:].add_(g[i - 1])
            lam.copy_(nu)
        # Σ_t q_t p_t: [B, H·rows, k] @ [B, k, P]
        self._Qs[..., :k].copy_(q[:k, :D].permute(2, 3, 1, 0))
        self._Qo[..., :k].copy_(q[:k, D:].permute(2, 3, 1, 0))
        S, sums, S_next = self.S, self.O, self._S_next
        p = self._p[:, :k]
        # ν_{t0} · S_{t0}, read before S changes
        for o in range(self.n_out):
            for d in range(D):
                sums[:, :, o].addcmul_(lam[D + o, d].unsqueeze(-1), S[:, :, d])
        for c in range(D):
            torch.mul(lam[c, 0].unsqueeze(-1), S[:, :, 0], out=S_next[:, :, c])
            for d in range(1, D):
                S_next[:, :, c].addcmul_(lam[c, d].unsqueeze(-1), S[:, :, d])
        S_next.view(B, H * D, self.P).baddbmm_(self._Qs.view(B, H * D, self.K)[:, :, :k], p)
        sums.view(B, H * self.n_out, self.P).baddbmm_(self._Qo.view(B, H * self.n_out, self.K)[:, :, :k], p)
        self.S, self._S_next = S_next, S
        self._k = 0
