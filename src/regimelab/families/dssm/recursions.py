"""Forward, backward and Viterbi recursions with transitions that may change every bar.

The DSSM's inference, in float64, for one gap-free sequence at a time, in
compiled loops of the project's own (numba): one kernel serves a transition
matrix that is the same at every bar and one per bar, and relies on no
library's private internals.

Inputs of every function:

- ``log_start``: shape ``(K,)``, log p(z_1);
- ``log_trans``: shape ``(K, K)`` (the same every bar) or ``(T, K, K)``, where
  row t is log p(z_t | z_{t-1}) and row 0 is unused;
- ``log_emit``: shape ``(T, K)``, log p(x_t | z_t, past).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class Forward:
    """What the forward pass gives: the log-likelihood, the filtered posteriors and
    what the backward pass needs."""

    log_likelihood: float
    filtered: np.ndarray  # (T, K): P(z_t | x_1..t)
    scaling: np.ndarray  # (T,): normaliser of each bar, emissions shifted by their max
    emit: np.ndarray  # (T, K): shifted emission probabilities
    trans: np.ndarray  # (K, K) or (T, K, K)


def _per_bar(trans: np.ndarray) -> np.ndarray:
    """Transitions as ``(T, K, K)`` or, when the same every bar, ``(1, K, K)``: the
    kernels read row ``t`` of the first and row 0 of the second."""
    return np.ascontiguousarray(trans[None] if trans.ndim == 2 else trans, dtype=np.float64)


@numba.njit(cache=True, nogil=True)
def _forward(start: np.ndarray, trans: np.ndarray, emit: np.ndarray, filtered: np.ndarray,
             norm: np.ndarray) -> None:  # pragma: no cover (compiled)
    n, k = emit.shape
    varying = trans.shape[0] > 1
    alpha = np.empty(k)
    for j in range(k):
        alpha[j] = start[j] * emit[0, j]
    for t in range(n):
        if t:
            row = t if varying else 0
            for j in range(k):
                total = 0.0
                for i in range(k):
                    total += filtered[t - 1, i] * trans[row, i, j]
                alpha[j] = total * emit[t, j]
        total = 0.0
        for j in range(k):
            total += alpha[j]
        norm[t] = total
        for j in range(k):
            filtered[t, j] = alpha[j] / total


@numba.njit(cache=True, nogil=True)
def _backward(trans: np.ndarray, emit: np.ndarray, norm: np.ndarray, beta: np.ndarray
              ) -> None:  # pragma: no cover (compiled)
    n, k = emit.shape
    varying = trans.shape[0] > 1
    for j in range(k):
        beta[n - 1, j] = 1.0
    for t in range(n - 2, -1, -1):
        row = t + 1 if varying else 0
        for i in range(k):
            total = 0.0
            for j in range(k):
                total += trans[row, i, j] * emit[t + 1, j] * beta[t + 1, j]
            beta[t, i] = total / norm[t + 1]


@numba.njit(cache=True, nogil=True)
def _viterbi(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray,
             path: np.ndarray) -> None:  # pragma: no cover (compiled)
    n, k = log_emit.shape
    varying = log_trans.shape[0] > 1
    back = np.zeros((n, k), dtype=np.int64)
    delta = log_start + log_emit[0]
    new = np.empty(k)
    for t in range(1, n):
        row = t if varying else 0
        for j in range(k):
            # The first best predecessor, as numpy's argmax takes it.
            best, arg = delta[0] + log_trans[row, 0, j], 0
            for i in range(1, k):
                score = delta[i] + log_trans[row, i, j]
                if score > best:
                    best, arg = score, i
            back[t, j] = arg
            new[j] = best + log_emit[t, j]
        delta[:] = new
    last = 0
    for j in range(1, k):
        if delta[j] > delta[last]:
            last = j
    path[n - 1] = last
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]


def forward(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray) -> Forward:
    """Scaled forward pass; exact log-likelihood in nats and filtered posteriors."""
    shift = log_emit.max(axis=1, keepdims=True)
    emit = np.exp(log_emit - shift)
    trans = np.exp(log_trans)
    n, k = emit.shape
    filtered, norm = np.empty((n, k)), np.empty(n)
    _forward(np.exp(np.asarray(log_start, dtype=np.float64)), _per_bar(trans), emit,
             filtered, norm)
    return Forward(float(np.log(norm).sum() + shift.sum()), filtered, norm, emit, trans)


def smooth(fwd: Forward) -> np.ndarray:
    """P(z_t | x_1..T), shape ``(T, K)``, from a forward pass and the backward pass."""
    beta = np.empty_like(fwd.emit)
    _backward(_per_bar(fwd.trans), fwd.emit, fwd.scaling, beta)
    post = fwd.filtered * beta
    return post / post.sum(axis=1, keepdims=True)


def viterbi(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray) -> np.ndarray:
    """Most likely state path, shape ``(T,)``."""
    path = np.empty(len(log_emit), dtype=np.int64)
    _viterbi(np.asarray(log_start, dtype=np.float64), _per_bar(log_trans),
             np.ascontiguousarray(log_emit, dtype=np.float64), path)
    return path
