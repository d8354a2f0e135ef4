"""Losses of a volatility forecast and the Diebold–Mariano test between two forecasts.

Losses follow Patton (2011): QLIKE, ``log f + a / f`` for a forecast variance
``f`` and a realised variance ``a``, ranks forecasts consistently even when the
realised variance is a noisy proxy (MSE on variances does too; MAE and MAPE do
not, and are reported because users read them). ``log f + a / f`` differs from
the normalised ``a / f - log(a / f) - 1`` only by a term in ``a`` alone, so
differences between forecasts, and the test below, are the same; unlike the
normalised form it is finite on a bar whose realised variance is zero.

The Diebold–Mariano (1995) statistic is the mean loss differential over its
long-run standard error, with the small-sample correction of Harvey, Leybourne
and Newbold (1997) and a Student t reference with ``T - 1`` degrees of freedom.
The long-run variance is a Bartlett (Newey–West) kernel estimate from
``arch.covariance``: h-step forecasts of overlapping windows are autocorrelated
up to lag ``h - 1`` by construction, so the bandwidth is never below that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from arch.covariance.kernel import Bartlett
from scipy import stats


def qlike(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Per-observation QLIKE, ``log f + a / f``, shape ``(n,)``; both are variances."""
    f = np.asarray(forecast, dtype="float64")
    return np.log(f) + np.asarray(actual, dtype="float64") / f


def vol_losses(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and MAPE of the volatility (square root of each variance) and the mean
    QLIKE of the variance.

    Parameters
    ----------
    actual, forecast : numpy.ndarray of shape (n,)
        Realised and forecast variances over the same horizon; forecasts positive.
    """
    a = np.asarray(actual, dtype="float64")
    f = np.asarray(forecast, dtype="float64")
    err = np.sqrt(f) - np.sqrt(a)
    positive = a > 0
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "mape": float(np.mean(np.abs(err[positive]) / np.sqrt(a[positive]))),
        "qlike": float(np.mean(qlike(a, f))),
    }


@dataclass(frozen=True)
class DMResult:
    """A one-sided Diebold–Mariano test of "the alternative has the lower loss".

    ``stat``: the HLN-corrected statistic (positive when the alternative is better);
    ``p_value``: its one-sided p-value; ``bandwidth``: the Bartlett bandwidth in lags;
    ``mean_diff``: mean of baseline loss minus alternative loss; ``n``: observations.
    """

    stat: float
    p_value: float
    bandwidth: float
    mean_diff: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        """The result for a metrics file."""
        return {"stat": self.stat, "p_value": self.p_value, "bandwidth": self.bandwidth,
                "mean_diff": self.mean_diff, "n": self.n}


def diebold_mariano(loss_base: np.ndarray, loss_alt: np.ndarray, *, horizon: int,
                    bandwidth: float | None = None) -> DMResult:
    """Test whether ``loss_alt`` is smaller than ``loss_base`` on average.

    Parameters
    ----------
    loss_base, loss_alt : numpy.ndarray of shape (n,)
        Per-observation losses of the baseline and the alternative, in time order.
    horizon : int
        Forecast horizon ``h`` in bars (the HLN correction and the least bandwidth).
    bandwidth : float, optional
        Bartlett bandwidth in lags; None: Newey–West's automatic choice (arch), at
        least ``h - 1`` either way.

    Raises
    ------
    ValueError
        If the two series differ in length or have fewer than ``2 h + 1`` values.
    """
    d = np.asarray(loss_base, dtype="float64") - np.asarray(loss_alt, dtype="float64")
    n = d.size
    if np.shape(loss_base) != np.shape(loss_alt) or n < 2 * horizon + 1:
        raise ValueError(f"diebold_mariano: need two loss series of the same length and at "
                         f"least {2 * horizon + 1} values; got {np.shape(loss_base)} and "
                         f"{np.shape(loss_alt)}")
    chosen = float(Bartlett(d).bandwidth) if bandwidth is None else float(bandwidth)
    chosen = max(chosen, float(horizon - 1))
    long_run = float(Bartlett(d, bandwidth=chosen).cov.long_run[0, 0])
    mean = float(d.mean())
    if long_run > 0:
        dm = mean / math.sqrt(long_run / n)
    else:
        dm = math.copysign(math.inf, mean) if mean != 0 else 0.0
    h = horizon
    stat = dm * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    return DMResult(stat=stat, p_value=float(stats.t.sf(stat, df=n - 1)), bandwidth=chosen,
                    mean_diff=mean, n=n)
