"""The deep state-space model as a plain ``nn.Module``.

K discrete regimes ``z_t`` and observations ``x_t`` (the scaled features).
Each regime has a mean ``mu_k`` and a full covariance ``L_k L_k^T``. A GRU
carries a context ``h_t`` that summarises the bars before t (``h_1 = 0``: a
segment starts with no past):

- ``p(z_1 = k) = softmax(start_logits)_k``;
- ``p(z_t = k | z_{t-1} = j, h_t) = softmax_k(trans_logits[j] + W_A h_t [j])``:
  a learned K x K chain, optionally modulated by the past (``transition='context'``);
- ``x_t | z_t = k, h_t ~ N(mu_k, L_k S_t^2 L_k^T + m I)`` with ``S_t = diag(exp(s(h_t)))``,
  ``|s| <= max_log_scale`` (``emission='scale'``): the past widens or narrows
  every regime's spread alike, along the regime's own whitened coordinates
  (the first is the first feature itself). ``m`` is ``min_covar``, the floor
  the Gaussian HMM adds to its covariances after every M-step: every
  covariance the model uses, at every bar, has its eigenvalues at least ``m``,
  so the two families are regularised alike and the context cannot buy
  likelihood by shrinking a near-duplicate feature's variance towards zero.
  With a floor and a scale head the covariance differs bar by bar, and each
  bar factorises it afresh (a batched Cholesky of K D x D matrices).

What the GRU reads after bar t is the bar's residual standardised by the
regime the filter believes in, ``sum_k P(z_t = k | x_1..t) C_k^{-1}(x_t - mu_k)``
with ``C_k`` the Cholesky factor of the regime's covariance with no context,
``L_k L_k^T + m I`` (``C_k = L_k`` when ``m = 0``),
and the log of the mean squared one. It sees surprises relative to the
current regime, not the level of the bars, so it models volatility
clustering inside a regime (like a GARCH on standardised innovations) and
cannot take over the regimes' job of telling calm from turbulent markets (a
GRU fed the raw bars can explain the regimes' persistence by itself).

The context is a deterministic function of past bars, so the latent chain is
discrete given it and the exact marginal likelihood comes from the forward
algorithm, run here in the same loop as the GRU. The output layers start at
zero, so an untrained DSSM is exactly the Gaussian HMM it is initialised from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)
# Floor inside the log of the GRU's squared-residual input.
_SQ_FLOOR = 1e-6


@dataclass(frozen=True)
class Pass:
    """One forward pass over padded windows.

    ``step_ll`` (B, T): log p(x_t | x_<t) per bar (0 on padding); ``filtered``
    (B, T, K): P(z_t | x_1..t); ``log_emit`` (B, T, K) and ``log_trans``
    (B, T, K, K), kept only when asked for.
    """

    step_ll: torch.Tensor
    filtered: torch.Tensor
    log_emit: torch.Tensor | None = None
    log_trans: torch.Tensor | None = None


class DSSMNet(nn.Module):
    """Regime chain, Gaussian emissions and the GRU context network.

    Parameters
    ----------
    n_states : int
        Number of regimes K.
    n_features : int
        Observation dimension D.
    hidden : int
        Size of the GRU's state.
    transition : {'static', 'context'}
        Whether the context modulates the transition matrix.
    emission : {'scale', 'static'}
        Whether the context scales the emissions' spread.
    max_log_scale : float
        Bound on the context's log-scale of each whitened coordinate.
    min_covar : float
        Added to the diagonal of every emission covariance, context included
        (0: no floor, the model of versions before the floor).
    """

    def __init__(self, n_states: int, n_features: int, *, hidden: int = 32,
                 transition: str = "static", emission: str = "scale",
                 max_log_scale: float = 1.0, min_covar: float = 0.0) -> None:
        super().__init__()
        self.n_states = n_states
        self.n_features = n_features
        self.transition = transition
        self.emission = emission
        self.max_log_scale = max_log_scale
        self.min_covar = float(min_covar)
        k, d = n_states, n_features
        self.start_logits = nn.Parameter(torch.zeros(k))
        self.trans_logits = nn.Parameter(torch.zeros(k, k))
        self.means = nn.Parameter(torch.zeros(k, d))
        # L_k = tril(chol_lower, -1) + diag(exp(chol_log_diag)): positive definite always.
        self.chol_lower = nn.Parameter(torch.zeros(k, d, d))
        self.chol_log_diag = nn.Parameter(torch.zeros(k, d))
        self.cell = nn.GRUCell(2 * d, hidden)
        self.trans_head = nn.Linear(hidden, k * k) if transition == "context" else None
        self.scale_head = nn.Linear(hidden, d) if emission == "scale" else None
        for head in (self.trans_head, self.scale_head):
            if head is not None:
                # Zero output layers: the untrained model is exactly its starting HMM.
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    @torch.no_grad()
    def init_from_hmm(self, startprob: np.ndarray, transmat: np.ndarray, means: np.ndarray,
                      covars: np.ndarray) -> None:
        """Set the regime parameters to a Gaussian HMM's (covars: full, shape (K, D, D)).

        ``L_k L_k^T = covars_k - min_covar I``, so that with the floor added back the
        covariance is the HMM's. The HMM's own floor keeps that positive when the
        floors are equal; an eigenvalue that would fall below ``1e-6 min_covar`` is
        raised to it (a change of at most that much).
        """
        tiny = np.finfo(np.float64).tiny
        self.start_logits.copy_(torch.as_tensor(np.log(np.maximum(startprob, tiny))))
        self.trans_logits.copy_(torch.as_tensor(np.log(np.maximum(transmat, tiny))))
        self.means.copy_(torch.as_tensor(means))
        cov = torch.as_tensor(covars, dtype=torch.float64)
        if self.min_covar > 0:
            eye = torch.eye(cov.shape[-1], dtype=torch.float64)
            chol, info = torch.linalg.cholesky_ex(cov - self.min_covar * eye)
            if bool((info != 0).any()) or bool(
                    (torch.diagonal(chol, dim1=-2, dim2=-1) ** 2 < 1e-6 * self.min_covar).any()):
                vals, vecs = torch.linalg.eigh(cov)
                vals = torch.clamp(vals - self.min_covar, min=1e-6 * self.min_covar)
                rest = (vecs * vals.unsqueeze(-2)) @ vecs.transpose(-1, -2)
                chol = torch.linalg.cholesky(0.5 * (rest + rest.transpose(-1, -2)))
        else:
            chol = torch.linalg.cholesky(cov)
        self.chol_log_diag.copy_(torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)))
        self.chol_lower.copy_(torch.tril(chol, diagonal=-1))

    def cholesky(self) -> torch.Tensor:
        """``L_k``, the learned factor before the floor, shape ``(K, D, D)``."""
        return torch.tril(self.chol_lower, diagonal=-1) + torch.diag_embed(
            torch.exp(self.chol_log_diag))

    def covariances(self) -> torch.Tensor:
        """Each regime's emission covariance with no context, ``L_k L_k^T + min_covar I``,
        shape ``(K, D, D)``."""
        chol = self.cholesky()
        cov = chol @ chol.transpose(-1, -2)
        if self.min_covar > 0:
            cov = cov + self.min_covar * torch.eye(self.n_features, dtype=cov.dtype,
                                                   device=cov.device)
        return cov

    def base_cholesky(self) -> torch.Tensor:
        """``C_k``, the Cholesky factor of :meth:`covariances`, shape ``(K, D, D)``;
        ``L_k`` itself (not refactorised) when there is no floor."""
        if self.min_covar > 0:
            return torch.linalg.cholesky(self.covariances())
        return self.cholesky()

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """``C_k^{-1} (x_t - mu_k)`` for every state, shape ``(..., K, D)``."""
        eye = torch.eye(self.n_features, dtype=x.dtype, device=x.device)
        inv = torch.linalg.solve_triangular(self.base_cholesky(), eye, upper=False)
        return torch.einsum("kij,...kj->...ki", inv, x.unsqueeze(-2) - self.means)

    def forward_pass(self, x: torch.Tensor, mask: torch.Tensor, *, keep_terms: bool = False
                     ) -> Pass:
        """The GRU and the scaled forward algorithm, bar by bar.

        Parameters
        ----------
        x : Tensor of shape (B, T, D)
            Windows, each starting at a bar of its sequence; padding at the end.
        mask : Tensor of shape (B, T), bool
            True on real bars, which come first in each window. ``step_ll`` is 0 on
            padding; ``filtered`` there is whatever the pass left and must be ignored.
        keep_terms : bool
            Also return the log emissions and log transitions of every bar.
        """
        batch, steps, d = x.shape
        k = self.n_states
        white = self.whiten(x)  # (B, T, K, D): computed once for every bar
        sq = white.pow(2)
        # What the GRU reads is the filter's average of both.
        # One view per bar: the backward of ``sq[:, t]`` would allocate the whole
        # (B, T, K, D) gradient at every bar, that of ``unbind`` stacks once.
        sq_steps = sq.unbind(1)
        both_steps = torch.cat([white, sq], dim=-1).unbind(1)
        log_det = (torch.log(torch.diagonal(self.base_cholesky(), dim1=-2, dim2=-1)).sum(-1)
                   if self.min_covar > 0 else self.chol_log_diag.sum(-1))
        const = -0.5 * d * LOG_2PI - log_det  # (K,)
        # With a floor, the context's covariance L_k S_t^2 L_k^T + m I is factorised bar by
        # bar; without one it is L_k S_t^2 L_k^T and the whitened bars above serve.
        refactor = self.scale_head is not None and self.min_covar > 0
        if refactor:
            chol = self.cholesky()
            floor = self.min_covar * torch.eye(d, dtype=x.dtype, device=x.device)
            diff_steps = (x.unsqueeze(-2) - self.means).unsqueeze(-1).unbind(1)  # (B, K, D, 1)
        start = torch.softmax(self.start_logits, dim=-1)
        static = torch.softmax(self.trans_logits, dim=-1)
        h = x.new_zeros(batch, self.cell.hidden_size)
        alpha = start.expand(batch, -1)
        norms, shifts, filtered, emits, transs = [], [], [], [], []
        # The loop is bound by the number of small tensor operations per bar (each costs
        # microseconds of dispatch; a float64 bmm of this size about 25), so it does only
        # what depends on the previous bar, with products written as mul and sum.
        # Padding follows the real bars: what is computed there is masked out below.
        for t in range(steps):
            if self.scale_head is None:
                log_emit = const - 0.5 * sq_steps[t].sum(-1)  # (B, K)
            elif refactor:
                s = self.max_log_scale * torch.tanh(self.scale_head(h) / self.max_log_scale)
                scaled = chol * torch.exp(s)[:, None, None, :]  # L_k S_t, (B, K, D, D)
                factor = torch.linalg.cholesky(scaled @ scaled.transpose(-1, -2) + floor)
                resid = torch.linalg.solve_triangular(factor, diff_steps[t], upper=False)
                log_emit = (-0.5 * d * LOG_2PI - 0.5 * resid.pow(2).sum((-2, -1))
                            - torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1))
            else:
                s = self.max_log_scale * torch.tanh(self.scale_head(h) / self.max_log_scale)
                spread = (sq_steps[t] * torch.exp(-2.0 * s).unsqueeze(1)).sum(-1)
                log_emit = const - 0.5 * spread - s.sum(-1, keepdim=True)
            if self.trans_head is None:
                trans = static
            else:
                trans = torch.softmax(self.trans_logits + self.trans_head(h).view(batch, k, k),
                                      dim=-1)
            # Each bar's emissions are shifted by their maximum so nothing underflows.
            shift = log_emit.max(dim=-1, keepdim=True).values
            if t == 0:
                prior = alpha
            elif self.trans_head is None:
                prior = alpha @ trans
            else:
                prior = (alpha.unsqueeze(-1) * trans).sum(1)
            new = prior * torch.exp(log_emit - shift)
            norm = new.sum(-1, keepdim=True)
            alpha = new / norm
            norms.append(norm)
            shifts.append(shift)
            filtered.append(alpha)
            if keep_terms:
                emits.append(log_emit)
                transs.append(torch.log(trans).expand(batch, k, k))
            # What the GRU reads: the bar's residual standardised by the believed regime.
            mixed = (alpha.unsqueeze(-1) * both_steps[t]).sum(1)  # (B, 2D)
            u = torch.cat([mixed[:, :d], torch.log(_SQ_FLOOR + mixed[:, d:])], dim=-1)
            h = self.cell(u, h)
        step_ll = (torch.log(torch.cat(norms, dim=1)) + torch.cat(shifts, dim=1))
        return Pass(torch.where(mask, step_ll, torch.zeros_like(step_ll)),
                    torch.stack(filtered, dim=1),
                    torch.stack(emits, dim=1) if keep_terms else None,
                    torch.stack(transs, dim=1) if keep_terms else None)

    def log_likelihood(self, x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact log-likelihood of the counted bars, and where the filter puts them.

        Parameters
        ----------
        x : Tensor of shape (B, T, D)
        mask : Tensor of shape (B, T), bool
        count : Tensor of shape (B, T), bool
            True on the bars whose ``log p(x_t | x_<t)`` counts (a window that starts
            inside a sequence uses its first bars only to warm up).

        Returns
        -------
        log_lik : Tensor of shape ()
            Sum over the counted bars, in nats.
        occupancy : Tensor of shape (K,)
            Filtered state probabilities summed over the counted bars.
        """
        result = self.forward_pass(x, mask)
        weights = count.to(result.step_ll.dtype)
        occupancy = (result.filtered * weights.unsqueeze(-1)).sum(dim=(0, 1))
        return (result.step_ll * weights).sum(), occupancy
