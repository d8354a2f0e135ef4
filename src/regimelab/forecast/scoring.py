"""How a forecast is scored on the test split, and the tables DVC plots.

Classes: accuracy, balanced accuracy, macro-F1, log loss and the multi-class
Brier score (mean squared distance of the probability vector to the one-hot
truth). The binary switch target adds ROC AUC and the positive rate.
Reliability: per confidence bin (the probability given to the predicted
class), the share of forecasts that were right. Permutation importance:
scikit-learn's, the drop in balanced accuracy (ROC AUC for the switch target)
when one input is shuffled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    roc_auc_score,
)

#: Probabilities are clipped to this floor before the log loss, so one confident miss
#: of a baseline does not make it infinite.
PROBA_FLOOR = 1e-6
#: Confidence bins of the reliability table.
RELIABILITY_BINS = 10


def clipped(proba: np.ndarray) -> np.ndarray:
    """``proba`` with every entry at least :data:`PROBA_FLOOR`, rows summing to one again."""
    floored = np.clip(proba, PROBA_FLOOR, 1.0)
    return floored / floored.sum(axis=1, keepdims=True)


def class_scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Scores of the probabilities ``proba`` (shape ``(n_samples, n_classes)``, columns in
    the order of ``classes``) against the labels ``y``."""
    pred = classes[proba.argmax(axis=1)]
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=classes,
                                   zero_division=0.0)),
        "log_loss": float(log_loss(y, clipped(proba), labels=classes)),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
    }


def switch_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """:func:`class_scores` of a binary target plus ``roc_auc`` of the positive class's
    probability (None when the test rows hold one class only) and ``positive_rate``."""
    classes = np.array([0.0, 1.0])
    both = np.column_stack([1.0 - proba, proba])
    scores: dict[str, float | None] = dict(class_scores(y, both, classes))
    scores["roc_auc"] = float(roc_auc_score(y, proba)) if len(np.unique(y)) == 2 else None
    scores["positive_rate"] = float(np.mean(y))
    return scores


def confusion_rows(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> pd.DataFrame:
    """``actual`` and ``predicted`` per test row, as DVC's confusion templates read them."""
    return pd.DataFrame({"actual": y.astype(np.int64),
                         "predicted": classes[proba.argmax(axis=1)].astype(np.int64)})


def reliability(y: np.ndarray, probas: dict[str, np.ndarray],
                classes: np.ndarray) -> pd.DataFrame:
    """One row per confidence bin: ``confidence`` (the bin's centre) and, per model, the
    share of its forecasts in that bin that were right (empty where none fell in it)."""
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    table: dict[str, Any] = {"confidence": np.round((edges[:-1] + edges[1:]) / 2, 6)}
    for name, proba in probas.items():
        confidence = proba.max(axis=1)
        right = classes[proba.argmax(axis=1)] == y
        bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, RELIABILITY_BINS - 1)
        count = np.bincount(bins, minlength=RELIABILITY_BINS)
        hits = np.bincount(bins, weights=right, minlength=RELIABILITY_BINS)
        with np.errstate(invalid="ignore", divide="ignore"):
            table[name] = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
    return pd.DataFrame(table)


def importance(estimator: Any, X: np.ndarray, y: np.ndarray, *, columns: list[str],
               scoring: str, n_repeats: int, seed: int) -> dict[str, float]:
    """Mean permutation importance of each input (the drop in ``scoring``, a scikit-learn
    scorer name)."""
    result = permutation_importance(estimator, X, y, scoring=scoring,
                                    n_repeats=n_repeats, random_state=seed, n_jobs=1)
    return {c: float(v) for c, v in zip(columns, result.importances_mean, strict=True)}
