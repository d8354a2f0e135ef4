"""Permutation importance of a sequence model's inputs.

A tree reads one row per bar, and scikit-learn's ``permutation_importance``
shuffles a column of that matrix. A sequence model reads a window of rows per
bar, so shuffling must reach every window the same way: input ``j`` is
shuffled across the rows of the split (the rows the windows are built from),
the windows are rebuilt from the shuffled matrix with the same run ids
(:func:`~regimelab.forecast.sequence.make_windows`), and every window then
sees the shuffled values at each of its positions. The score is the one the
trees' importance uses (balanced accuracy, or ROC AUC for the switch target,
computed from ``predict_proba`` as scikit-learn's scorers do), its drop
averaged over ``n_repeats`` seeded shuffles, so the two kinds sit side by
side in one table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from regimelab.exceptions import ParamsError
from regimelab.forecast.sequence import make_windows
from regimelab.forecast.trees import full_proba

#: The scorers both importances use, as functions of the labels and probabilities.
SCORERS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "balanced_accuracy": lambda y, proba, classes: float(
        balanced_accuracy_score(y, classes[proba.argmax(axis=1)])),
    "roc_auc": lambda y, proba, classes: float(roc_auc_score(y, proba[:, 1])),
}


def window_importance(estimator: Any, X: np.ndarray, runs: np.ndarray, rows: np.ndarray,
                      y: np.ndarray, *, window: int, classes: np.ndarray,
                      columns: list[str], scoring: str, n_repeats: int,
                      seed: int) -> dict[str, float]:
    """Mean drop in ``scoring`` when one input is shuffled across the windows.

    Parameters
    ----------
    estimator : SequenceClassifier
        A fitted sequence model (``predict_proba`` of windows, ``classes_``).
    X : ndarray of shape (n_samples, n_inputs)
        The input rows the windows are built from (the test split's rows, those
        without a target included, so each window holds the bars before it).
    runs : ndarray of shape (n_samples,)
        Their run ids (:func:`~regimelab.forecast.targets.run_ids`).
    rows : ndarray of shape (n_scored,)
        The positions in ``X`` of the rows scored (those with a known target).
    y : ndarray of shape (n_scored,)
        Their labels.
    window : int
        Rows per window.
    classes : ndarray of shape (n_classes,)
        The task's classes (the columns of the probabilities).
    columns : list of str
        The inputs' names, one per column of ``X``.
    scoring : str
        ``balanced_accuracy`` or ``roc_auc``.
    n_repeats : int
        Shuffles per input.
    seed : int
        Seed of the shuffles (input ``j``'s come from ``(seed, j)``).

    Returns
    -------
    dict of str to float
        Each input's mean drop in the score.
    """
    if scoring not in SCORERS:
        raise ParamsError(f"importance scoring: {scoring!r}; expected one of "
                          f"{', '.join(SCORERS)}")
    X = np.asarray(X, dtype=np.float64)
    if X.shape[1] != len(columns):
        raise ParamsError(f"importance: {X.shape[1]} input columns but {len(columns)} names")
    score = SCORERS[scoring]

    def scored(matrix: np.ndarray) -> float:
        windows = make_windows(matrix, runs, window)[rows]
        return score(y, full_proba(estimator, windows, classes), classes)

    baseline = scored(X)
    out: dict[str, float] = {}
    for j, name in enumerate(columns):
        rng = np.random.default_rng([seed, j])
        drops = []
        for _ in range(n_repeats):
            shuffled = X.copy()
            shuffled[:, j] = X[rng.permutation(len(X)), j]
            drops.append(baseline - scored(shuffled))
        out[name] = float(np.mean(drops))
    return out
