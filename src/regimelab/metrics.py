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
    # + 0.0: hard labels give -0.0, which JSON would print as such.
    return float(-(proba * np.log(p)).sum(axis=1).mean()) + 0.0


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


# The block is never shorter than this many horizons: see block_length.
BLOCK_HORIZONS = 5
# Fewer returns than this cannot estimate their own autocorrelations.
_MIN_FOR_LENGTH = 30

_STATS = ("mean", "vol", "sharpe")
_CHUNK = 50  # resamples summarised at once: fewer numpy calls, bounded memory


def block_length(returns: np.ndarray, *, horizon: int) -> int:
    """The bootstrap block for ``horizon``-bar forward returns, in bars.

    Politis and White's automatic length for the circular block bootstrap
    (:func:`arch.bootstrap.optimal_block_length`, with Patton, Politis and
    White's correction): the larger of the lengths for the returns and for their
    squared deviations (the volatility's intervals depend on how the squares
    cluster), and never below :data:`BLOCK_HORIZONS` times the horizon.

    Why the floor: ``h``-bar returns taken at every bar overlap by ``h - 1``
    bars, so their autocovariance falls linearly to zero at lag ``h``. A block of
    ``b >= h`` bars loses the covariance across its ends, and the bootstrap
    variance of a mean falls short by about ``h / (3 b)`` of the true one: a
    third at ``b = h`` (SD 0.82 of the truth; a nominal 95% interval covers
    about 89%, and 86.7% was measured), a fifteenth at ``b = 5 h`` (SD 0.97;
    about 94%). Politis-White's length trades that bias against the
    bootstrap's variance and can land below the floor on a short or noisy
    series. NaN returns (a missing bar t+h) are left out.

    Parameters
    ----------
    returns : ndarray of shape (n_samples,)
    horizon : int

    Returns
    -------
    int
        ``max(BLOCK_HORIZONS * horizon, ceil(b))``, where Politis-White's ``b`` is
        at most ``min(3 sqrt(n), n / 3)``.
    """
    # arch (the pipeline's extra) is imported here, not with the module: drift monitoring
    # on an inference-only install uses this module's other functions.
    from arch.bootstrap import optimal_block_length

    floor = BLOCK_HORIZONS * horizon
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < _MIN_FOR_LENGTH or not r.std() > 0:
        return floor
    dev = r - r.mean()
    square = dev**2
    columns = [dev, square] if square.std() > 0 else [dev]
    lengths = optimal_block_length(np.column_stack(columns))["circular"].to_numpy()
    if not np.isfinite(lengths).any():
        return floor
    return max(floor, int(np.ceil(np.nanmax(lengths))))


def _annualised(count: np.ndarray, mean: np.ndarray, var: np.ndarray, periods: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, volatility and Sharpe from per-state counts, means and variances, annualised
    (NaN where a state has fewer than two returns)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        std = np.sqrt(var)
        sharpe = np.where(std > 0, mean / std * np.sqrt(periods), np.nan)
    few = count < 2
    return (np.where(few, np.nan, mean * periods), np.where(few, np.nan, std * np.sqrt(periods)),
            np.where(few, np.nan, sharpe))


def _moments(values: np.ndarray, codes: np.ndarray, n_bins: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and variance (ddof 1) of ``values`` in each bin ``codes``, each of
    shape ``(n_bins,)`` (NaN where a bin has too few values)."""
    count = np.bincount(codes, minlength=n_bins).astype(np.float64)
    total = np.bincount(codes, weights=values, minlength=n_bins)
    squares = np.bincount(codes, weights=values * values, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        var = np.maximum((squares - total * mean) / (count - 1), 0.0)
    return count, mean, var


def state_return_stats(returns: np.ndarray, states: np.ndarray, *, n_states: int,
                       horizon: int, bars_per_year: float, block: int, n_boot: int,
                       rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Per state: mean, volatility and annualised Sharpe of ``horizon``-bar log returns,
    with circular block bootstrap 95% intervals (percentile).

    The blocks (:class:`arch.bootstrap.CircularBlockBootstrap`, ``block`` bars
    each, see :func:`block_length`) are drawn on the whole series, returns and
    states together in time order, and each resample's statistics are those of
    each state's bars in it: a block never joins two episodes of a state that
    lay weeks apart, and the share of bars in each state varies as it would in
    another sample. Annualised: the mean times ``bars_per_year / horizon``; the
    volatility times its square root; Sharpe = mean / volatility (no risk-free
    rate). NaN returns (a missing bar t+h) are left out. A state with fewer than
    ``2 * block`` returns gets its point estimates but no intervals (NaN): so few
    blocks cannot say how far an estimate could move.

    Parameters
    ----------
    returns : ndarray of shape (n_samples,)
    states : ndarray of shape (n_samples,)
        Integers in ``[0, n_states)``.
    n_states : int
    horizon : int
        Bars per return.
    bars_per_year : float
    block : int
        Bars per bootstrap block.
    n_boot : int
        Bootstrap resamples.
    rng : numpy.random.Generator
        Draws the blocks: the same generator state gives the same intervals.

    Returns
    -------
    dict
        Per state ``"k"``: ``n`` and ``mean``, ``vol``, ``sharpe``, each with
        ``_lo`` and ``_hi``.
    """
    returns = np.asarray(returns, dtype=np.float64)
    ok = np.isfinite(returns)
    codes = np.where(ok, np.asarray(states, dtype=np.int64), n_states)  # NaN: left out
    values = np.where(ok, returns, 0.0)
    periods = bars_per_year / horizon
    count, mean, _ = (a[:n_states] for a in _moments(values, codes, n_states + 1))
    # Deviations from each state's mean: a sum of squares then never cancels against a
    # squared sum, in the estimate or in a resample.
    centre = np.append(np.where(count > 0, mean, 0.0), 0.0)  # (K + 1,): code K is 0
    deviations = values - centre[codes]
    count, mean, var = (a[:n_states] for a in _moments(deviations, codes, n_states + 1))
    point = _annualised(count, centre[:-1] + mean, var, periods)  # each (K,)
    with_interval = count >= 2 * block
    draws = np.full((len(_STATS), n_boot, n_states), np.nan)
    if with_interval.any():
        from arch.bootstrap import CircularBlockBootstrap  # the pipeline's: see block_length

        sampler = CircularBlockBootstrap(block, deviations, codes, seed=rng)
        resamples = sampler.bootstrap(n_boot)
        # One bincount for a chunk of resamples: resample i's state k is bin i (K + 1) + k.
        offset = np.repeat(np.arange(_CHUNK) * (n_states + 1), len(codes))
        for first in range(0, n_boot, _CHUNK):
            size = min(_CHUNK, n_boot - first)
            drawn = [next(resamples)[0] for _ in range(size)]
            dev = np.concatenate([d for d, _ in drawn])
            code = np.concatenate([c for _, c in drawn]) + offset[:len(dev)]
            c, m, v = (a.reshape(size, n_states + 1)[:, :n_states]
                       for a in _moments(dev, code, size * (n_states + 1)))
            for i, stat in enumerate(_annualised(c, centre[:-1] + m, v, periods)):
                draws[i, first:first + size] = stat
    out: dict[str, dict[str, float]] = {}
    for k in range(n_states):
        row: dict[str, float] = {"n": int(count[k])}
        for i, name in enumerate(_STATS):
            lo = hi = float("nan")
            boot = draws[i, :, k]
            if with_interval[k] and np.isfinite(boot).any():
                lo, hi = (float(v) for v in np.nanpercentile(boot, [2.5, 97.5]))
            row.update({name: float(point[i][k]), f"{name}_lo": lo, f"{name}_hi": hi})
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
