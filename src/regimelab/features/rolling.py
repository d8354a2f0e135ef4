"""Rolling-window arithmetic over exact windows.

Every function computes the value at ``t`` from the ``w`` values ending at
``t`` only (a strided view, no running sums), so the result at ``t`` does not
depend on how much history precedes the window. That is what makes the
latest-bar observation equal the batch row. Positions without a full window
are NaN; the caller masks windows that would cross a gap.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x: np.ndarray, w: int) -> np.ndarray | None:
    if len(x) < w:
        return None
    return sliding_window_view(x, w)


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[n - len(values):] = values
    return out


def rolling_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of the ``w`` values ending at each position, shape ``(n,)``."""
    win = _windows(x, w)
    return np.full(len(x), np.nan) if win is None else _pad(win.mean(axis=1), len(x))


def rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum of the ``w`` values ending at each position, shape ``(n,)``."""
    win = _windows(x, w)
    return np.full(len(x), np.nan) if win is None else _pad(win.sum(axis=1), len(x))


def rolling_std(x: np.ndarray, w: int, *, ddof: int = 1) -> np.ndarray:
    """Standard deviation (two-pass) of the ``w`` values ending at each position."""
    win = _windows(x, w)
    return np.full(len(x), np.nan) if win is None else _pad(win.std(axis=1, ddof=ddof), len(x))


def rolling_zscore(x: np.ndarray, w: int) -> np.ndarray:
    """``(x_t - mean) / std`` over the window ending at ``t``; 0 where the window is constant."""
    mean = rolling_mean(x, w)
    std = rolling_std(x, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - mean) / std
    return np.where(std == 0, 0.0, z)


def ema_weights(span: int) -> np.ndarray:
    """Weights of an exponential moving average with ``alpha = 2 / (span + 1)``, truncated.

    The support is ``4 * span`` bars, where the dropped tail weighs about
    ``exp(-8)``; the weights are renormalised to sum to one. A finite support
    keeps the feature a function of a fixed window, like every other one.
    Newest bar first, shape ``(4 * span,)``.
    """
    alpha = 2.0 / (span + 1.0)
    weights = (1.0 - alpha) ** np.arange(4 * span)
    return weights / weights.sum()


def rolling_ema(x: np.ndarray, span: int) -> np.ndarray:
    """Truncated EMA (see :func:`ema_weights`) ending at each position."""
    weights = ema_weights(span)
    win = _windows(x, len(weights))
    if win is None:
        return np.full(len(x), np.nan)
    return _pad(win @ weights[::-1], len(x))


def lag(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` shifted ``k`` steps later (NaN for the first ``k``)."""
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def run_position(breaks: np.ndarray) -> np.ndarray:
    """Position of each element inside its run; ``breaks[i]`` is True where a run starts.

    ``breaks[0]`` is treated as True.
    """
    n = len(breaks)
    idx = np.arange(n)
    starts = np.where(breaks, idx, 0)
    if n:
        starts[0] = 0
    return idx - np.maximum.accumulate(starts)
