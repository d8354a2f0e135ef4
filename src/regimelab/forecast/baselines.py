"""The forecasts any learned model must beat: persistence and the family's Markov chain.

Both give probabilities, so that log loss and Brier compare like with like:

- persistence says the regime at t + h is the one known at t; its
  probability of staying is the share of training rows whose label did stay
  (its argmax is plain persistence);
- the Markov chain propagates the filtered posterior with the trained
  transition matrix, ``p_filter_t A^h``; its chance of at least one switch in
  the next h bars is ``1 - sum_i p_i A_ii^h``.
"""

from __future__ import annotations

import numpy as np


def stay_rate(current: np.ndarray, target: np.ndarray) -> float:
    """Share of rows whose ``target`` equals ``current`` (both shape ``(n_samples,)``)."""
    return float(np.mean(np.asarray(current) == np.asarray(target))) if len(target) else 1.0


def persistence_proba(current: np.ndarray, *, n_classes: int, stay: float) -> np.ndarray:
    """``stay`` on the current class and the rest spread evenly, shape
    ``(n_samples, n_classes)``."""
    current = np.asarray(current, dtype=np.int64)
    other = (1.0 - stay) / max(n_classes - 1, 1)
    proba = np.full((len(current), n_classes), other)
    proba[np.arange(len(current)), current] = stay
    return proba


def markov_proba(filtered: np.ndarray, transmat: np.ndarray, horizon: int) -> np.ndarray:
    """``p_filter_t A^h`` for each row, shape ``(n_samples, n_states)``."""
    return np.asarray(filtered) @ np.linalg.matrix_power(np.asarray(transmat), horizon)


def markov_switch_proba(filtered: np.ndarray, transmat: np.ndarray, horizon: int) -> np.ndarray:
    """The chain's chance of at least one switch in the next ``horizon`` bars,
    ``1 - sum_i p_i A_ii^h``, shape ``(n_samples,)``."""
    stay = np.diag(np.asarray(transmat)) ** horizon
    return 1.0 - np.asarray(filtered) @ stay
