"""Targets at horizon ``h``: the label ``h`` bars ahead, and a switch within the next ``h``.

A target at bar t needs bar t + h in the same split and segment, exactly
``h`` bar intervals later; where it is missing (the end of a split, a gap)
the target is missing too and the row is left out of that task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: What identifies one unbroken run of bars in a regimes table.
RUN_KEYS = ["split", "symbol", "segment"]


def run_ids(table: pd.DataFrame) -> np.ndarray:
    """An id per row that changes wherever the split, symbol or segment does,
    shape ``(n_samples,)``."""
    changed = np.zeros(max(len(table) - 1, 0), dtype=bool)
    for key in RUN_KEYS:
        values = table[key].to_numpy()
        changed |= values[1:] != values[:-1]
    return np.r_[0, np.cumsum(changed)].astype(np.int64)[:len(table)]


def ahead_index(table: pd.DataFrame, horizon: int, step: pd.Timedelta) -> np.ndarray:
    """Row of bar t + ``horizon`` for each row of ``table``, or -1 where it is missing.

    Parameters
    ----------
    table : pandas.DataFrame
        ``split``, ``symbol``, ``segment``, ``timestamp``; rows sorted by split,
        symbol and time, as the regimes table has them.
    horizon : int
        Bars ahead, ``>= 1``.
    step : pandas.Timedelta
        The bar interval.

    Returns
    -------
    ndarray of shape (n_samples,), int64
    """
    n = len(table)
    runs = run_ids(table)
    ts = table["timestamp"].to_numpy(dtype="datetime64[ns]")
    idx = np.arange(n) + horizon
    ok = idx < n
    later = np.where(ok, idx, 0)
    ok &= runs[later] == runs
    ok &= (ts[later] - ts) == np.timedelta64(horizon * step.to_timedelta64())
    return np.where(ok, idx, -1).astype(np.int64)


def label_ahead(labels: np.ndarray, ahead: np.ndarray) -> np.ndarray:
    """``labels[t + h]`` as floats, NaN where bar t + h is missing (``ahead == -1``)
    or its label is unknown (negative)."""
    values = np.asarray(labels, dtype=np.float64)[np.where(ahead >= 0, ahead, 0)]
    return np.where((ahead >= 0) & (values >= 0), values, np.nan)


def switch_within(states: np.ndarray, table: pd.DataFrame, ahead: np.ndarray) -> np.ndarray:
    """1.0 if the path ``states`` changes at least once in bars t + 1 .. t + h, else 0.0;
    NaN where bar t + h is missing. Shape ``(n_samples,)``."""
    states = np.asarray(states)
    runs = run_ids(table)
    changed = np.r_[False, (states[1:] != states[:-1]) & (runs[1:] == runs[:-1])]
    count = np.cumsum(changed)
    later = np.where(ahead >= 0, ahead, 0)
    return np.where(ahead >= 0, (count[later] > count).astype(np.float64), np.nan)
