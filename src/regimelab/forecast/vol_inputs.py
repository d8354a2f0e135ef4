"""The inputs of the volatility forecasts, built from bars alone, and the models' arithmetic.

What the forecast-vol stage fits on and what :mod:`regimelab.forecast.vol_apply`
applies to new bars are built by these functions, so the two cannot drift apart:
the per-bar variance proxy, the HAR trailing means, the log-linear design and
its prediction, and GARCH(1,1)'s variance recursion with fixed parameters.

Only numpy, pandas and scipy: a core install (no ``arch``) applies the models.
The GARCH recursion is arch's (``arch_model(...).fix(params).forecast(start=0)``):
the same backcast (a weighted mean of the first 75 squared residuals, weights
``0.94^i``), the same recursion and analytic multi-step forecast. arch also
clips each variance to an EWMA band of 1e-6 to 1e6 times its level; that band
never binds on market returns and is not applied here (tests compare the two).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from scipy.signal import lfilter

#: Returns are scaled to percent for arch's optimiser, and variances scaled back.
GARCH_SCALE = 100.0
#: Log regressions floor a variance at this share of the median trailing-day variance
#: before test (a bar with no range would otherwise have a log of minus infinity).
FLOOR_SHARE = 1e-3
#: arch's backcast: the first 75 squared residuals, weighted ``0.94^i``.
BACKCAST_BARS = 75
BACKCAST_DECAY = 0.94
#: The HAR regressors: the trailing mean of the proxy over a day, a week and a month.
HAR_INPUTS = ("rv_d", "rv_w", "rv_m")


#: Named columns of equal length: a DataFrame, or a mapping of name to array (the
#: service's path, which builds no DataFrame).
Columns: TypeAlias = pd.DataFrame | Mapping[str, Any]


def bar_variance(bars: Columns, *, proxy: str, step: pd.Timedelta) -> np.ndarray:
    """The per-bar variance proxy of one symbol's bars (sorted by time), shape ``(n,)``.

    ``parkinson``: ``ln(high/low)^2 / (4 ln 2)``; ``squared_returns``: the squared log
    return from the previous close, NaN on the first bar and after a gap.
    """
    if proxy == "parkinson":
        hl = np.log(np.asarray(bars["high"], dtype="float64")
                    / np.asarray(bars["low"], dtype="float64"))
        return np.asarray(hl**2 / (4.0 * math.log(2.0)))
    r = np.diff(np.log(np.asarray(bars["close"], dtype="float64")), prepend=np.nan)
    ts = _values(bars["timestamp"])
    contiguous = np.diff(ts, prepend=ts[:1]) == step.to_timedelta64()
    return np.where(contiguous, r**2, np.nan)


def _values(column: Any) -> np.ndarray:
    """A column's values: a pandas Series' ``to_numpy()`` (Timestamps for a zoned time
    column), an array as it is."""
    return np.asarray(column.to_numpy() if hasattr(column, "to_numpy") else column)


def har_windows(step: pd.Timedelta, windows: tuple[int, ...] | str) -> tuple[int, int, int]:
    """The HAR day, week and month in bars: ``auto`` is 1, 7 and 30 days of bars (markets
    that trade every day); explicit windows are returned as given."""
    if windows != "auto":
        day, week, month = (int(w) for w in windows)
        return day, week, month
    day_, week_, month_ = (max(1, int(round(pd.Timedelta(days=d) / step))) for d in (1, 7, 30))
    return day_, week_, month_


def trailing_means(v: np.ndarray, windows: Sequence[int]) -> np.ndarray:
    """Mean of ``v`` over the last ``w`` bars up to and including t, for each window,
    shape ``(n, 3)``; at least half of each window must be present (NaN otherwise)."""
    s = pd.Series(v)
    return np.column_stack([s.rolling(w, min_periods=(w + 1) // 2).mean().to_numpy()
                            for w in windows])


def log_returns(bars: Columns) -> np.ndarray:
    """Close-to-close log returns of one symbol's bars (sorted by time), shape ``(n - 1,)``:
    GARCH's data (across a gap too, as in the fit)."""
    return np.diff(np.log(np.asarray(bars["close"], dtype="float64")))


def garch_backcast(resids: np.ndarray) -> float:
    """arch's start of the variance recursion: ``sum_i w_i e_i^2`` over the first 75
    residuals ``e`` (percent), ``w_i`` proportional to ``0.94^i``."""
    tau = min(BACKCAST_BARS, resids.shape[0])
    w = BACKCAST_DECAY ** np.arange(tau)
    w = w / sum(w)
    return float(np.sum((resids[:tau] ** 2.0) * w))


def garch_variance(resids: np.ndarray, *, omega: float, alpha: float, beta: float,
                   backcast: float, horizon: int) -> np.ndarray:
    """GARCH(1,1)'s 1..H-step variance forecasts at each residual's close, fixed parameters.

    ``sigma2[0] = omega + (alpha + beta) backcast``,
    ``sigma2[t] = omega + alpha e[t-1]^2 + beta sigma2[t-1]``; the one-step forecast at t
    is ``sigma2[t+1]``, and ``f_k = omega + (alpha + beta) f_{k-1}`` after it.

    Parameters
    ----------
    resids : numpy.ndarray of shape (n,)
        Residuals ``100 r - mu`` (percent), in time order.
    omega, alpha, beta : float
        The fitted parameters (``omega`` in percent squared).
    backcast : float
        The recursion's start (:func:`garch_backcast` of the fit's residuals).
    horizon : int
        The largest step ``H``.

    Returns
    -------
    numpy.ndarray of shape (n, horizon)
        Column ``k - 1``: the k-step variance forecast (percent squared).
    """
    e2 = np.asarray(resids, dtype="float64") ** 2
    drive = omega + alpha * np.concatenate([[backcast], e2])
    # sigma2[t] = drive[t] + beta sigma2[t - 1], from sigma2[-1] = backcast: a first-order
    # linear filter (the order of the additions is arch's).
    sigma2 = lfilter([1.0], [1.0, -beta], drive, zi=np.array([beta * backcast]))[0]
    forecasts = np.empty((e2.size, horizon))
    forecasts[:, 0] = sigma2[1:]
    for k in range(1, horizon):
        forecasts[:, k] = omega + alpha * forecasts[:, k - 1] + beta * forecasts[:, k - 1]
    return forecasts


def garch_sums(returns: np.ndarray, params: dict[str, float], *, backcast: float,
               horizons: Sequence[int]) -> dict[int, np.ndarray]:
    """The h-bar variance forecast (log-return units) at every return's close: the sum of
    the 1..h-step forecasts of GARCH(1,1) with ``params`` (arch's names ``mu``, ``omega``,
    ``alpha[1]``, ``beta[1]``), ``{h: array (n,)}``."""
    resids = returns * GARCH_SCALE - params["mu"]
    variance = garch_variance(resids, omega=params["omega"], alpha=params["alpha[1]"],
                              beta=params["beta[1]"], backcast=backcast,
                              horizon=max(horizons))
    cumulative = variance.cumsum(axis=1) / GARCH_SCALE**2
    return {h: cumulative[:, h - 1] for h in horizons}


@dataclass(frozen=True)
class LogOLS:
    """``log y = X b + e`` by least squares; predictions ``exp(X b)`` times Duan's smearing
    factor ``mean(exp(e))`` from the fit."""

    coef: np.ndarray
    smear: float

    @classmethod
    def fit(cls, X: np.ndarray, log_y: np.ndarray) -> LogOLS:
        """Least squares of ``log_y`` ``(n,)`` on ``X`` ``(n, p)`` (numpy's lstsq)."""
        coef = np.linalg.lstsq(X, log_y, rcond=None)[0]
        return cls(coef=coef, smear=float(np.mean(np.exp(log_y - X @ coef))))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Forecast variances, shape ``(n,)``."""
        return np.asarray(np.exp(X @ self.coef) * self.smear)


def log_design(table: Columns, base: Sequence[str], posteriors: Sequence[str],
               floor: float) -> np.ndarray:
    """The regressions' design, shape ``(n, 1 + len(base) + len(posteriors))``: an
    intercept, the log of each ``base`` variance (floored at ``floor``) and each
    posterior as it is."""
    logs = [np.log(np.maximum(np.asarray(table[c], dtype="float64"), floor)) for c in base]
    extra = [np.asarray(table[c], dtype="float64") for c in posteriors]
    n = len(logs[0]) if logs else len(extra[0]) if extra else len(table)
    return np.column_stack([np.ones(n), *logs, *extra])
