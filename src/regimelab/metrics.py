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


def by_state(values: np.ndarray) -> dict[str, float]:
    """``{"0": v_0, "1": v_1, ...}``: flat keys that ``dvc metrics diff`` lines up."""
    return {str(k): float(v) for k, v in enumerate(values)}


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
                      transmat: np.ndarray, horizon: int,
                      timestamps: np.ndarray | None = None,
                      step: np.timedelta64 | None = None) -> dict[str, float]:
    """How often the state ``horizon`` bars ahead is predicted right.

    The model predicts ``argmax(p_filter_t A^h)``; persistence predicts that the
    regime stays ``argmax(p_filter_t)``. Pairs that cross a gap are left out:
    those in two segments, and, given ``timestamps`` and the bar ``step``, those
    whose rows are not exactly ``horizon`` bars apart (a short gap inside a
    segment, with ``features.max_gap`` above 0).

    Parameters
    ----------
    filtered : ndarray of shape (n_samples, K)
    states : ndarray of shape (n_samples,)
        The decoded path: what is predicted.
    segment : ndarray of shape (n_samples,)
    transmat : ndarray of shape (K, K)
    horizon : int
    timestamps : ndarray of shape (n_samples,), optional
    step : timedelta, optional
    """
    n = len(states)
    if n <= horizon:
        return {"model": float("nan"), "persistence": float("nan"), "n": 0}
    segment = np.asarray(segment)
    ok = segment[horizon:] == segment[:-horizon]
    if timestamps is not None and step is not None:
        timestamps = np.asarray(timestamps)
        ok &= (timestamps[horizon:] - timestamps[:-horizon]) == horizon * step
    ahead = filtered[:-horizon] @ np.linalg.matrix_power(transmat, horizon)
    target = np.asarray(states)[horizon:][ok]
    model = ahead.argmax(axis=1)[ok]
    persistence = filtered[:-horizon].argmax(axis=1)[ok]
    return {"model": float(np.mean(model == target)) if ok.any() else float("nan"),
            "persistence": float(np.mean(persistence == target)) if ok.any() else float("nan"),
            "n": int(ok.sum())}


def block_bootstrap_indices(n: int, *, block: int, n_boot: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Circular moving-block bootstrap: ``n_boot`` resamples of ``n`` indices, shape
    ``(n_boot, n)``.

    Blocks of ``block`` consecutive bars keep the serial dependence of returns
    (volatility clustering, overlapping multi-bar returns) that an iid bootstrap
    would destroy, so the intervals are not too narrow. Blocks wrap around the
    end, so the first and last bars are drawn as often as the others.
    """
    block = max(1, min(block, n))
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    return ((starts[..., None] + np.arange(block)) % n).reshape(n_boot, -1)[:, :n]


_STATS = ("mean", "vol", "sharpe")


def _annualised(values: np.ndarray, weights: np.ndarray, periods: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, volatility and Sharpe of the weighted rows (weights 0/1), annualised."""
    count = weights.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (values * weights).sum(axis=-1) / count
        var = (((values - mean[..., None]) ** 2) * weights).sum(axis=-1) / (count - 1)
        std = np.sqrt(var)
        sharpe = np.where(std > 0, mean / std * np.sqrt(periods), np.nan)
    return mean * periods, std * np.sqrt(periods), sharpe


def state_return_stats(returns: np.ndarray, states: np.ndarray, *, n_states: int,
                       horizon: int, bars_per_year: float, block: int, n_boot: int,
                       rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Per state: mean, volatility and annualised Sharpe of ``horizon``-bar log returns,
    with circular moving-block bootstrap 95% intervals.

    The blocks are drawn on the whole series (returns and states together, in
    time order), and each resample's statistics are those of each state's bars
    in it, so a block never joins two episodes of a state that lay weeks apart,
    and the share of bars in each state varies as it would in another sample.
    Annualised: the mean times ``bars_per_year / horizon``; the volatility
    times its square root; Sharpe = mean / volatility (no risk-free rate).
    NaN returns (a missing bar t+h) are left out. A state with fewer than
    ``2 * block`` returns gets its point estimates but no intervals (NaN): so
    few blocks cannot say how far an estimate could move.

    Parameters
    ----------
    returns : ndarray of shape (n_samples,)
    states : ndarray of shape (n_samples,)
    """
    returns = np.asarray(returns, dtype=np.float64)
    states = np.asarray(states)
    periods = bars_per_year / horizon
    ok = np.isfinite(returns)
    values = np.where(ok, returns, 0.0)
    masks = np.stack([(states == k) & ok for k in range(n_states)])  # (K, n)
    point = _annualised(values, masks.astype(np.float64), periods)  # each (K,)
    draws: list[list[np.ndarray]] = [[] for _ in _STATS]
    n = len(returns)
    for chunk in range(0, n_boot if n else 0, 100):  # bounded memory: 100 resamples a time
        idx = block_bootstrap_indices(n, block=block, n_boot=min(100, n_boot - chunk), rng=rng)
        sample, weights = values[idx], masks[:, idx].astype(np.float64)  # (b, n), (K, b, n)
        for acc, stat in zip(draws, _annualised(sample[None], weights, periods)):
            acc.append(stat)  # (K, b)
    out: dict[str, dict[str, float]] = {}
    for k in range(n_states):
        count = int(masks[k].sum())
        row: dict[str, float] = {"n": count}
        for i, name in enumerate(_STATS):
            value = float(point[i][k]) if count >= 2 else float("nan")
            lo = hi = float("nan")
            if count >= 2 * block and draws[i]:
                boot = np.concatenate([d[k] for d in draws[i]])
                if np.isfinite(boot).any():
                    lo, hi = (float(v) for v in np.nanpercentile(boot, [2.5, 97.5]))
            row.update({name: value, f"{name}_lo": lo, f"{name}_hi": hi})
        out[str(k)] = row
    return out


def return_stats(returns: np.ndarray, *, horizon: int, bars_per_year: float, block: int,
                 n_boot: int, rng: np.random.Generator) -> dict[str, float]:
    """:func:`state_return_stats` of one series as a single state."""
    return state_return_stats(returns, np.zeros(len(returns), dtype=np.int64), n_states=1,
                              horizon=horizon, bars_per_year=bars_per_year, block=block,
                              n_boot=n_boot, rng=rng)["0"]


def kruskal_wallis(returns: np.ndarray, states: np.ndarray) -> dict[str, float]:
    """Kruskal-Wallis H test that the states' return distributions are the same.

    The test takes the returns as independent: pass non-overlapping ones (every
    h-th bar of h-bar returns). States with fewer than 5 returns are left out;
    with fewer than two states left there is no test (NaN).
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
