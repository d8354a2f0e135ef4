"""Regime names: one rule for every family, from each state's training statistics.

A state's name says what a trader would call it: its direction and its
volatility, read off the bars the model put in it on the training split
(the hindsight path):

- **direction**: ``bull`` or ``bear`` when the 95% interval of the state's mean
  bar return excludes zero (by its sign), ``flat`` otherwise. The interval
  comes from a bootstrap over the state's *episodes* (its runs of consecutive
  bars), the unit that is independent enough to resample: bars inside one
  episode share its trend, so resampling bars would make the interval far too
  narrow. A state seen in fewer than :data:`MIN_EPISODES` episodes is ``flat``:
  so few cannot tell a trend from one lucky run.
- **volatility**: the state's standard deviation of bar returns over the
  typical level, ``ratio``; the typical level is the geometric mean of the
  states' deviations weighted by their shares of the bars (the plain deviation
  of all bars would be dominated by the most volatile state). ``volatile``
  above :data:`VOLATILE_ABOVE` (1.4), ``calm`` below its inverse (0.71), no
  word in between. The most volatile state,
  if it is ``bear`` and its ratio is at least :data:`CRASH_ABOVE`, is
  ``crash``.

Names join the two (``calm bull``, ``volatile bear``, ``flat``, ``crash``).
Two states that would share a name are told apart by volatility rank: the
calmer keeps the name, the next gets ``2``, and so on. The rule depends only on
the statistics, so two experiments that find the same kinds of regimes give
them the same names; metric keys stay numeric so ``dvc metrics diff`` lines up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from arch.bootstrap import IIDBootstrap

#: Volatility ratio above which a state is volatile (1.4 times the typical level)...
VOLATILE_ABOVE = 1.4
#: ... and below which it is calm: the same factor the other way, symmetric in log.
CALM_BELOW = 1.0 / VOLATILE_ABOVE
#: Volatility ratio from which the most volatile bear state is a crash.
CRASH_ABOVE = 2.0
#: Fewer episodes than this cannot give a state a direction.
MIN_EPISODES = 5
#: Confidence level of the interval that decides the direction.
LEVEL = 0.95


def bar_returns(frame: pd.DataFrame, bars: pd.DataFrame) -> np.ndarray:
    """Each row's own log return, ``log(close_t / close_t-1)``, shape ``(n_rows,)``.

    ``frame`` holds ``symbol``, ``timestamp`` and ``segment`` (a feature table or
    split); the previous close is the previous bar of the same symbol in
    ``bars``. The first row of a segment has no return within it (NaN), so no
    return spans a gap.
    """
    close = bars.set_index(["symbol", "timestamp"])["close"]
    keys = pd.MultiIndex.from_arrays([frame["symbol"], frame["timestamp"]])
    now = close.reindex(keys).to_numpy()
    previous = close.groupby(level="symbol").shift(1).reindex(keys).to_numpy()
    out = np.log(now / previous)
    segment = frame["segment"].to_numpy()
    out[np.r_[True, segment[1:] != segment[:-1]]] = np.nan
    return out


def _direction_interval(returns: np.ndarray, run_of: np.ndarray, seed: int, n_boot: int
                        ) -> tuple[float, float]:
    """Bootstrap interval of the mean bar return, resampling whole episodes."""
    ok = np.isfinite(returns)
    sums = np.bincount(run_of[ok], weights=returns[ok])
    counts = np.bincount(run_of[ok]).astype(np.float64)
    keep = counts > 0
    sums, counts = sums[keep], counts[keep]
    if len(sums) < MIN_EPISODES:
        return float("nan"), float("nan")
    bootstrap = IIDBootstrap(sums, counts, seed=seed)
    lo, hi = bootstrap.conf_int(lambda s, c: np.array([s.sum() / c.sum()]), reps=n_boot,
                                method="percentile", size=LEVEL)[:, 0]
    return float(lo), float(hi)


def name_states(returns: np.ndarray, states: np.ndarray, segment: np.ndarray, *,
                n_states: int, seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """The name of every state, and the statistics behind it.

    Parameters
    ----------
    returns : ndarray of shape (n_samples,)
        Each bar's own log return (NaN where unknown), e.g. :func:`bar_returns`.
    states : ndarray of shape (n_samples,)
        The model's hindsight path on the same bars, states ``0..n_states-1``
        in volatility order.
    segment : ndarray of shape (n_samples,)
        Gap-free runs: an episode ends at a gap too.
    n_states : int
    seed, n_boot : int
        The episode bootstrap's seed and resamples.

    Returns
    -------
    dict
        ``names`` (one per state, in state order), ``rule`` (the thresholds),
        ``typical_vol`` and ``states``: per state ``mean`` and ``vol`` of bar
        returns, ``ratio`` (``vol`` over the typical level),
        the interval ``mean_lo``/``mean_hi``, ``episodes`` and ``bars``.
    """
    returns = np.asarray(returns, dtype=np.float64)
    states = np.asarray(states)
    starts = np.flatnonzero(np.r_[True, (states[1:] != states[:-1])
                                  | (segment[1:] != segment[:-1])])
    run_of = np.cumsum(np.isin(np.arange(len(states)), starts)) - 1
    stats: list[dict[str, Any]] = []
    for k in range(n_states):
        mask = states == k
        r = returns[mask]
        finite = r[np.isfinite(r)]
        lo, hi = _direction_interval(r, np.unique(run_of[mask], return_inverse=True)[1], seed,
                                     n_boot)
        vol = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
        stats.append({
            "mean": float(finite.mean()) if len(finite) else float("nan"),
            "vol": vol,
            "mean_lo": lo, "mean_hi": hi,
            "episodes": int(len(np.unique(run_of[mask]))),
            "bars": int(mask.sum()),
        })
    vols = np.array([s["vol"] for s in stats])
    shares = np.array([s["bars"] for s in stats], dtype=np.float64)
    ok = np.isfinite(vols) & (vols > 0)
    typical = float(np.exp(np.average(np.log(vols[ok]), weights=shares[ok]))) if ok.any() else 1.0
    for s, vol in zip(stats, vols):
        s["ratio"] = float(vol / typical)
    ratios = np.array([s["ratio"] for s in stats])
    most_volatile = int(np.nanargmax(ratios)) if np.isfinite(ratios).any() else -1
    words = []
    for k, s in enumerate(stats):
        direction = ("bull" if s["mean_lo"] > 0 else "bear" if s["mean_hi"] < 0 else "flat")
        if k == most_volatile and direction == "bear" and s["ratio"] >= CRASH_ABOVE:
            words.append("crash")
            continue
        level = ("calm" if s["ratio"] < CALM_BELOW else
                 "volatile" if s["ratio"] > VOLATILE_ABOVE else "")
        words.append(f"{level} {direction}".strip())
    names = []
    for k, word in enumerate(words):
        # States are in volatility order, so the calmer of two alike keeps the plain name.
        seen = words[:k].count(word)
        names.append(word if seen == 0 else f"{word} {seen + 1}")
    return {
        "names": names,
        "typical_vol": typical,
        "rule": {"direction": f"sign of the mean bar return when its {LEVEL:.0%} episode-"
                              "bootstrap interval excludes zero, else flat",
                 "calm_below": CALM_BELOW, "volatile_above": VOLATILE_ABOVE,
                 "crash_above": CRASH_ABOVE, "min_episodes": MIN_EPISODES},
        "states": {str(k): s for k, s in enumerate(stats)},
    }
