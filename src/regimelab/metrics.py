"""Statistics of a decoded regime path: persistence, certainty, forecasts, forward returns.

Every function takes plain arrays (a state path, posteriors, returns) and the
segment ids that cut the bars into gap-free runs, so evaluate and diagnose
compute the same figures for either model family. Nothing here looks ahead:
the per-state forward returns are grouped by the state known at the close of
bar t (the filtered one, by the caller's choice), and the forecasts use only
the filtered posterior at t.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import kruskal
from sklearn.metrics import adjusted_rand_score, confusion_matrix


def runs(states: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runs of one state: their states and lengths, shape ``(n_runs,)`` each.

    A run also ends where a segment ends (a gap), so no dwell spans an outage.
    """
    states, segment = np.asarray(states), np.asarray(segment)
    if len(states) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, (states[1:] != states[:-1])
                                  | (segment[1:] != segment[:-1])])
    return states[starts], np.diff(np.r_[starts, len(states)])


def switches_per_1000(states: np.ndarray, segment: np.ndarray) -> float:
    """Changes of state between consecutive bars of a segment, per 1,000 bars."""
    states, segment = np.asarray(states), np.asarray(segment)
    same_segment = segment[1:] == segment[:-1]
    changes = int(((states[1:] != states[:-1]) & same_segment).sum())
    return 1000.0 * changes / max(len(states), 1)


def mean_entropy(proba: np.ndarray) -> float:
    """Mean entropy of the posteriors in nats (0: certain; log K: no idea)."""
    p = np.clip(proba, 1e-300, 1.0)
    return float(-(proba * np.log(p)).sum(axis=1).mean())


def forecast_accuracy(filtered: np.ndarray, states: np.ndarray, segment: np.ndarray,
                      transmat: np.ndarray, horizon: int) -> dict[str, float]:
    """How often the state ``horizon`` bars ahead is predicted right.

    The model predicts ``argmax(p_filter_t A^h)``; persistence predicts that the
    regime stays ``argmax(p_filter_t)``. Pairs that cross a gap are left out.

    Parameters
    ----------
    filtered : ndarray of shape (n_samples, K)
    states : ndarray of shape (n_samples,)
        The decoded path: what is predicted.
    segment : ndarray of shape (n_samples,)
    transmat : ndarray of shape (K, K)
    horizon : int
    """
    n = len(states)
    if n <= horizon:
        return {"model": float("nan"), "persistence": float("nan"), "n": 0}
    ok = np.asarray(segment)[horizon:] == np.asarray(segment)[:-horizon]
    ahead = filtered[:-horizon] @ np.linalg.matrix_power(transmat, horizon)
    target = np.asarray(states)[horizon:][ok]
    model = ahead.argmax(axis=1)[ok]
    persistence = filtered[:-horizon].argmax(axis=1)[ok]
    return {"model": float(np.mean(model == target)) if ok.any() else float("nan"),
            "persistence": float(np.mean(persistence == target)) if ok.any() else float("nan"),
            "n": int(ok.sum())}


def block_bootstrap_indices(n: int, *, block: int, n_boot: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap: ``n_boot`` resamples of ``n`` indices, shape ``(n_boot, n)``.

    Blocks of ``block`` consecutive bars keep the serial dependence of returns
    (volatility clustering, overlapping multi-bar returns) that an iid bootstrap
    would destroy, so the intervals are not too narrow.
    """
    block = max(1, min(block, n))
    n_blocks = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    return (starts[..., None] + np.arange(block)).reshape(n_boot, -1)[:, :n]


def return_stats(returns: np.ndarray, *, horizon: int, bars_per_year: float, block: int,
                 n_boot: int, rng: np.random.Generator) -> dict[str, float]:
    """Mean, volatility and annualised Sharpe of ``horizon``-bar log returns, with
    moving-block bootstrap 95% intervals.

    ``returns`` are in time order. Annualised: the mean times ``bars_per_year /
    horizon``; the volatility times its square root; Sharpe = mean / volatility
    at that scale (no risk-free rate).
    """
    returns = np.asarray(returns, dtype=np.float64)
    n = len(returns)
    out: dict[str, float] = {"n": n}
    if n < 2:
        return {**out, **{k: float("nan") for k in (
            "mean", "mean_lo", "mean_hi", "vol", "vol_lo", "vol_hi", "sharpe", "sharpe_lo",
            "sharpe_hi")}}
    periods = bars_per_year / horizon

    def stats(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = sample.mean(axis=-1)
        std = sample.std(axis=-1, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = np.where(std > 0, mean / std * np.sqrt(periods), np.nan)
        return mean * periods, std * np.sqrt(periods), sharpe

    point = stats(returns)
    draws = [[], [], []]
    for chunk in range(0, n_boot, 100):  # bounded memory: 100 resamples at a time
        idx = block_bootstrap_indices(n, block=block, n_boot=min(100, n_boot - chunk), rng=rng)
        for acc, values in zip(draws, stats(returns[idx])):
            acc.append(values)
    for name, value, acc in zip(("mean", "vol", "sharpe"), point, draws):
        values = np.concatenate(acc)
        lo, hi = np.nanpercentile(values, [2.5, 97.5]) if np.isfinite(values).any() else (
            np.nan, np.nan)
        out.update({name: float(value), f"{name}_lo": float(lo), f"{name}_hi": float(hi)})
    return out


def kruskal_wallis(returns: np.ndarray, states: np.ndarray) -> dict[str, float]:
    """Kruskal-Wallis H test that the states' return distributions are the same.

    States with fewer than 5 returns are left out; with fewer than two states
    left there is no test (NaN).
    """
    groups = [returns[states == k] for k in np.unique(states)]
    groups = [g for g in groups if len(g) >= 5]
    if len(groups) < 2:
        return {"statistic": float("nan"), "p_value": float("nan"), "n_states": len(groups)}
    result = kruskal(*groups)
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue),
            "n_states": len(groups)}


def matched_accuracy(truth: np.ndarray, states: np.ndarray) -> float:
    """Share of bars whose state matches the truth after the best one-to-one relabelling
    (Hungarian matching on the confusion matrix)."""
    labels_t, truth_idx = np.unique(truth, return_inverse=True)
    labels_s, state_idx = np.unique(states, return_inverse=True)
    cm = confusion_matrix(truth_idx, state_idx,
                          labels=np.arange(max(len(labels_t), len(labels_s))))
    rows, cols = linear_sum_assignment(cm, maximize=True)
    return float(cm[rows, cols].sum() / len(truth))


def truth_scores(truth: np.ndarray, states: np.ndarray) -> dict[str, float]:
    """ARI and Hungarian-matched accuracy against a known regime."""
    return {"ari": float(adjusted_rand_score(truth, states)),
            "matched_accuracy": matched_accuracy(truth, states)}
