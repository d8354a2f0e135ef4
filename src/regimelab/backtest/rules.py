"""Position rules learned on each fitting window, and their execution with delay and costs.

Every rule maps a refit's states to exposures using that refit's in-sample
statistics only (see :class:`~regimelab.backtest.walkforward.WalkForward`):

- ``risk_onoff``: long (1) the states whose in-sample mean next-bar return is
  positive, flat otherwise (short, -1, with ``short``);
- ``vol_target``: ``target_vol / (the state's in-sample volatility, annualised)``,
  capped at ``max_leverage``;
- ``mapping``: the user's exposure per regime name (``exposures``; a name with a
  numeric suffix such as ``calm bull 2`` falls back to ``calm bull``), else
  ``exposure_default``.

Execution (:func:`execute`): the exposure decided at the close of row t is held
over the return of row ``t + delay`` (close ``t + delay - 1`` to close
``t + delay``); each change of the held exposure costs ``cost_bps`` basis points
per unit. A gap in the bars is held through: nobody could trade while the
exchange was down, so the position set before the gap earns the return across
it, and the labels restart with the next segment.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from regimelab.backtest.walkforward import WalkForward

RULES = ("risk_onoff", "vol_target", "mapping")

_SUFFIX = re.compile(r"\s+\d+$")


def base_name(name: str) -> str:
    """A regime name without the numeric suffix of a second state of one kind."""
    return _SUFFIX.sub("", name)


def state_exposures(fit: dict[str, Any], *, rule: str, bars_per_year: float, short: bool = False,
                    target_vol: float = 0.5, max_leverage: float = 1.0,
                    exposures: dict[str, float] | None = None,
                    exposure_default: float = 0.0) -> np.ndarray:
    """One refit's exposure per state under ``rule``, shape ``(n_states,)``.

    A state never seen in sample (no mean, no volatility) gets 0.
    """
    mean = np.asarray(fit["mean"], dtype=np.float64)
    vol = np.asarray(fit["vol"], dtype=np.float64)
    if rule == "risk_onoff":
        out = np.where(mean > 0, 1.0, -1.0 if short else 0.0)
        out = np.where(np.isfinite(mean), out, 0.0)  # a state never seen: no view
    elif rule == "vol_target":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.minimum(target_vol / (vol * np.sqrt(bars_per_year)), max_leverage)
        if short:
            out = np.where(mean > 0, out, -out)
    elif rule == "mapping":
        table = exposures or {}
        out = np.array([table.get(name, table.get(base_name(name), exposure_default))
                        for name in fit["names"]], dtype=np.float64)
    else:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    return np.where(np.isfinite(out), out, 0.0)


def decided_exposure(walk: WalkForward, *, labels: np.ndarray | None = None,
                     **rule_settings: Any) -> np.ndarray:
    """The exposure decided at each row's close, shape ``(n_rows,)``: the row's label mapped
    through its refit's :func:`state_exposures`; NaN before the first refit."""
    labels = walk.labels if labels is None else labels
    # One row per refit, padded: with ``settings: past`` the state count may change.
    per_fit = [state_exposures(fit, **rule_settings) for fit in walk.fits]
    table = np.full((len(per_fit), max(len(e) for e in per_fit)), np.nan)
    for i, e in enumerate(per_fit):
        table[i, :len(e)] = e
    out = np.full(len(labels), np.nan)
    live = walk.refit_of >= 0
    out[live] = table[walk.refit_of[live], labels[live]]
    return out


def vol_threshold_exposure(trailing_vol: np.ndarray, points: list[int], *, quantile: float,
                           rolling: int | None) -> np.ndarray:
    """The baseline: long (1) while the trailing volatility is at or under its ``quantile``
    over the fitting window, flat above; NaN before the first refit, shape ``(n_rows,)``."""
    out = np.full(len(trailing_vol), np.nan)
    ends = points[1:] + [len(trailing_vol)]
    for a, b in zip(points, ends):
        lo = 0 if rolling is None else max(0, a - rolling)
        past = trailing_vol[lo:a]
        threshold = np.nanquantile(past, quantile)
        out[a:b] = np.where(trailing_vol[a:b] <= threshold, 1.0, 0.0)
    return out


def trailing_vol(returns: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of the last ``window`` log returns up to and including each row
    (NaN until ``window`` are known), shape ``(n_rows,)``."""
    r = np.log1p(np.asarray(returns, dtype=np.float64))
    out = np.full(len(r), np.nan)
    if len(r) < window:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(r, window)
    out[window - 1:] = np.std(windows, axis=1, ddof=1)
    return out


def execute(decided: np.ndarray, returns: np.ndarray, *, start: int, delay: int,
            cost_bps: float) -> tuple[np.ndarray, np.ndarray]:
    """Hold each decision ``delay`` rows later and charge costs on every change.

    Parameters
    ----------
    decided : ndarray of shape (n_rows,)
        Exposure decided at each row's close (NaN: none, held as 0).
    returns : ndarray of shape (n_rows,)
        Each row's simple return from the previous row's close.
    start : int
        The first row with a decision; the scored rows are ``start + 1 ..``.
    delay : int
        Rows from a decision to the return it first earns (1: the next bar).
    cost_bps : float
        Basis points of the traded notional per unit change of exposure.

    Returns
    -------
    pnl : ndarray of shape (n_rows - start - 1,)
        Each scored row's simple return after costs.
    held : ndarray of shape (n_rows - start - 1,)
        The exposure held over each scored row.
    """
    d = np.nan_to_num(np.asarray(decided, dtype=np.float64), nan=0.0)
    held_all = np.zeros(len(d))
    held_all[delay:] = d[:-delay]
    held = held_all[start + 1:]
    previous = np.r_[held_all[start], held[:-1]]
    cost = cost_bps * 1e-4 * np.abs(held - previous)
    pnl = held * returns[start + 1:] - cost
    return pnl, held
