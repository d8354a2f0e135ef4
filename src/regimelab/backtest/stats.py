"""Performance statistics of a backtest's returns, with honest intervals.

The definitions are the usual ones (empyrical's and quantstats'): simple
returns per bar, no risk-free rate, annualised with the bars per year the data
has (hourly crypto trades round the clock: about 8,766).

- annual return: compound (``equity_end ** (bars_per_year / n) - 1``);
- annual volatility: ``std * sqrt(bars_per_year)``;
- Sharpe: ``mean / std * sqrt(bars_per_year)``;
- Sortino: ``mean / sqrt(mean(min(r, 0) ** 2)) * sqrt(bars_per_year)``;
- maximum drawdown: the largest fall of equity from its running peak;
- Calmar: annual return over the absolute maximum drawdown;
- turnover: the sum of absolute changes of exposure per year (1 = one full
  position in or out); trades per year: the bars whose exposure changes, per
  year; time in market: the share of bars with a non-zero exposure.

Intervals come from a circular block bootstrap (:mod:`arch.bootstrap`, the
project's choice in :mod:`regimelab.metrics`), resampling every strategy and
buy-and-hold together, so a Sharpe difference keeps their dependence.

The Probabilistic Sharpe Ratio (Bailey & Lopez de Prado 2012, "The Sharpe
ratio efficient frontier", J. of Risk 15(2), eq. 11) is
``PSR(SR*) = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))``
with the per-bar Sharpe SR, skewness g3 and kurtosis g4 (3 for a normal). The
Deflated Sharpe Ratio (Bailey & Lopez de Prado 2014, "The deflated Sharpe
ratio", J. of Portfolio Management 40(5), eq. 2) is the PSR against the
Sharpe that the best of N unskilled trials would reach,
``SR* = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))``,
V the variance of the N trials' per-bar Sharpes and gamma Euler's constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from arch.bootstrap import CircularBlockBootstrap
from scipy import stats

EULER_GAMMA = 0.5772156649015329
LEVEL = 0.95


def _sharpe_per_bar(r: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe of each column, shape ``(n_columns,)`` (NaN for a constant one)."""
    sd = r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, r.mean(axis=0) / sd, np.nan)


def max_drawdown(pnl: np.ndarray) -> float:
    """The largest fall of ``cumprod(1 + pnl)`` from its running peak (<= 0)."""
    equity = np.cumprod(1.0 + np.r_[0.0, pnl])
    return float((equity / np.maximum.accumulate(equity) - 1.0).min())


def drawdown(pnl: np.ndarray) -> np.ndarray:
    """Equity's fall from its running peak at each bar, shape ``(n,)``."""
    equity = np.cumprod(1.0 + pnl)
    return equity / np.maximum.accumulate(np.maximum(equity, 1.0)) - 1.0


def performance(pnl: np.ndarray, held: np.ndarray, *, bars_per_year: float) -> dict[str, float]:
    """The point statistics of one strategy (see the module docstring).

    Parameters
    ----------
    pnl : ndarray of shape (n,)
        Simple returns per bar, after costs.
    held : ndarray of shape (n,)
        The exposure held over each bar.
    bars_per_year : float
    """
    n = len(pnl)
    years = n / bars_per_year
    growth = float(np.prod(1.0 + pnl))
    mean, sd = float(pnl.mean()), float(pnl.std(ddof=1))
    downside = float(np.sqrt(np.mean(np.minimum(pnl, 0.0) ** 2)))
    annual = growth ** (1.0 / years) - 1.0 if growth > 0 else -1.0
    mdd = max_drawdown(pnl)
    changes = np.abs(np.diff(np.r_[0.0, held]))
    return {
        "annual_return": annual,
        "annual_vol": sd * np.sqrt(bars_per_year),
        "sharpe": mean / sd * np.sqrt(bars_per_year) if sd > 0 else float("nan"),
        "sortino": mean / downside * np.sqrt(bars_per_year) if downside > 0 else float("nan"),
        "max_drawdown": mdd,
        "calmar": annual / abs(mdd) if mdd < 0 else float("nan"),
        "turnover": float(changes.sum() / years),
        "trades_per_year": float((changes > 1e-12).sum() / years),
        "time_in_market": float(np.mean(np.abs(held) > 1e-12)),
        "total_return": growth - 1.0,
    }


def psr(sharpe: float, *, n: int, skew: float, kurtosis: float, benchmark: float = 0.0
        ) -> float:
    """Probabilistic Sharpe Ratio: P(true per-bar Sharpe > ``benchmark``) given the
    estimate ``sharpe`` (per bar) from ``n`` returns with that skewness and (Pearson)
    kurtosis."""
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not denom > 0 or n < 2:
        return float("nan")
    return float(stats.norm.cdf((sharpe - benchmark) * np.sqrt(n - 1) / np.sqrt(denom)))


def expected_max_sharpe(trial_sharpes: np.ndarray) -> float:
    """``SR*`` of the Deflated Sharpe Ratio: the expected best per-bar Sharpe of
    ``N = len(trial_sharpes)`` trials without skill (0 for a single trial)."""
    trials = np.asarray(trial_sharpes, dtype=np.float64)
    trials = trials[np.isfinite(trials)]
    n = len(trials)
    if n < 2:
        return 0.0
    sd = float(trials.std(ddof=1))
    return sd * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n)
                 + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n * np.e)))


def deflated(pnl: np.ndarray, *, trial_sharpes: np.ndarray) -> dict[str, float]:
    """PSR against 0 and the Deflated Sharpe Ratio of one strategy among the trials."""
    r = np.asarray(pnl, dtype=np.float64)
    sr = float(_sharpe_per_bar(r[:, None])[0])
    skew = float(stats.skew(r))
    kurt = float(stats.kurtosis(r, fisher=False))
    return {"psr": psr(sr, n=len(r), skew=skew, kurtosis=kurt),
            "dsr": psr(sr, n=len(r), skew=skew, kurtosis=kurt,
                       benchmark=expected_max_sharpe(trial_sharpes)),
            "n_trials": int(np.isfinite(trial_sharpes).sum())}


def sharpe_intervals(series: Mapping[str, np.ndarray], *, benchmark: str, block: int,
                     n_boot: int, bars_per_year: float, seed: int = 0
                     ) -> dict[str, dict[str, float]]:
    """Bootstrap 95% intervals (percentile) of each series' annualised Sharpe and of its
    difference from ``benchmark``'s, all resampled together in circular blocks of
    ``block`` bars."""
    names = list(series)
    data = np.column_stack([series[name] for name in names])
    j = names.index(benchmark)
    draws = np.empty((n_boot, len(names)))
    sampler = CircularBlockBootstrap(block, data, seed=np.random.default_rng(seed))
    for i, (pos, _) in enumerate(sampler.bootstrap(n_boot)):
        draws[i] = _sharpe_per_bar(pos[0])
    draws *= np.sqrt(bars_per_year)
    point = _sharpe_per_bar(data) * np.sqrt(bars_per_year)
    tail = 100 * (1 - LEVEL) / 2
    out = {}
    for c, name in enumerate(names):
        lo, hi = np.nanpercentile(draws[:, c], [tail, 100 - tail])
        dlo, dhi = np.nanpercentile(draws[:, c] - draws[:, j], [tail, 100 - tail])
        out[name] = {"sharpe_lo": float(lo), "sharpe_hi": float(hi),
                     "sharpe_diff": float(point[c] - point[j]),
                     "sharpe_diff_lo": float(dlo), "sharpe_diff_hi": float(dhi)}
    return out


def describe(pnl: Mapping[str, np.ndarray], held: Mapping[str, np.ndarray], *,
             benchmark: str, trials: list[str], block: int, n_boot: int,
             bars_per_year: float, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every series' statistics, intervals and (for ``trials``) PSR and DSR."""
    intervals = sharpe_intervals(pnl, benchmark=benchmark, block=block, n_boot=n_boot,
                                 bars_per_year=bars_per_year, seed=seed)
    trial_sharpes = np.array([_sharpe_per_bar(pnl[t][:, None])[0] for t in trials])
    out = {}
    for name in pnl:
        row: dict[str, Any] = {**performance(pnl[name], held[name], bars_per_year=bars_per_year),
                               **intervals[name]}
        row.update(deflated(pnl[name], trial_sharpes=trial_sharpes if name in trials
                            else np.array([0.0])))
        out[name] = row
    return out
