"""Forward, backward and Viterbi recursions with transitions that may change every bar.

The DSSM's inference, in float64 numpy, for one gap-free sequence at a time.
When the transition matrix is the same at every bar, hmmlearn's compiled
recursions do the work; otherwise a numpy loop over the bars does.

Inputs of every function:

- ``log_start``: shape ``(K,)``, log p(z_1);
- ``log_trans``: shape ``(K, K)`` (the same every bar) or ``(T, K, K)``, where
  row t is log p(z_t | z_{t-1}) and row 0 is unused;
- ``log_emit``: shape ``(T, K)``, log p(x_t | z_t, past).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hmmlearn import _hmmc


@dataclass(frozen=True)
class Forward:
    """What the forward pass gives: the log-likelihood, the filtered posteriors and
    what the backward pass needs."""

    log_likelihood: float
    filtered: np.ndarray  # (T, K): P(z_t | x_1..t)
    scaling: np.ndarray  # (T,): normaliser of each bar, emissions shifted by their max
    emit: np.ndarray  # (T, K): shifted emission probabilities
    trans: np.ndarray  # (K, K) or (T, K, K)


def forward(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray) -> Forward:
    """Scaled forward pass; exact log-likelihood in nats and filtered posteriors."""
    shift = log_emit.max(axis=1, keepdims=True)
    emit = np.exp(log_emit - shift)
    start, trans = np.exp(log_start), np.exp(log_trans)
    if trans.ndim == 2:
        log_prob, filtered, scaling = _hmmc.forward_scaling(start, trans, emit)
        # hmmlearn's scaling holds 1 / normaliser.
        return Forward(float(log_prob + shift.sum()), filtered, 1.0 / scaling, emit, trans)
    n, k = emit.shape
    filtered = np.empty((n, k))
    norm = np.empty(n)
    alpha = start * emit[0]
    for t in range(n):
        if t:
            alpha = (alpha @ trans[t]) * emit[t]
        norm[t] = alpha.sum()
        alpha = alpha / norm[t]
        filtered[t] = alpha
    return Forward(float(np.log(norm).sum() + shift.sum()), filtered, norm, emit, trans)


def smooth(fwd: Forward) -> np.ndarray:
    """P(z_t | x_1..T), shape ``(T, K)``, from a forward pass and the backward pass."""
    if fwd.trans.ndim == 2:
        start = np.full(fwd.trans.shape[0], 1.0 / fwd.trans.shape[0])  # unused by the pass
        beta = _hmmc.backward_scaling(start, fwd.trans, fwd.emit, 1.0 / fwd.scaling)
    else:
        n, k = fwd.emit.shape
        beta = np.empty((n, k))
        beta[-1] = 1.0
        for t in range(n - 2, -1, -1):
            beta[t] = fwd.trans[t + 1] @ (fwd.emit[t + 1] * beta[t + 1]) / fwd.scaling[t + 1]
    post = fwd.filtered * beta
    return post / post.sum(axis=1, keepdims=True)


def viterbi(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray) -> np.ndarray:
    """Most likely state path, shape ``(T,)``."""
    if log_trans.ndim == 2:
        return _hmmc.viterbi(np.exp(log_start), np.exp(log_trans), log_emit)[1]
    n, k = log_emit.shape
    back = np.empty((n, k), dtype=np.int64)
    delta = log_start + log_emit[0]
    for t in range(1, n):
        scores = delta[:, None] + log_trans[t]
        back[t] = scores.argmax(axis=0)
        delta = scores[back[t], np.arange(k)] + log_emit[t]
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(delta.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path
