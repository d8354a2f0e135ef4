"""Truncated, renormalised exponentially weighted means over a window in time.

An EWM over all of history gives the latest bar a value that depends on how
much history it was handed. Here the mean at bar ``t`` reads only the bars
that opened less than ``support * H`` bar periods before it (``H`` the
half-life): with weights ``2 ** (-age / H)``, ``age = slot_t - slot_i`` in
whole bar periods,

    ewm_t = sum_i w(age_i) x_i / sum_i w(age_i),   0 <= age_i < support * H.

With ``support = 6`` the dropped tail weighs ``2 ** -6`` (1.6%) of an
infinite EWM's weight, and what is left is renormalised to sum to one. A
missing bar has no value and so no weight, while the bars around it still
age by the time it covered: the window is ``support * H`` periods of time,
not a count of bars.

The sums run in one fixed order (newest bar first) in compiled code without
fast-math, so they do not depend on the CPU's vector units or on how much
history precedes the window: the latest bar computed from a short lookback is
bit-for-bit the batch row.
"""

from __future__ import annotations

import numba
import numpy as np

SUPPORT = 6  # half-lives per window; the dropped tail weighs 2 ** -SUPPORT


def window_length(halflife: int, *, support: int = SUPPORT) -> int:
    """Bar periods in the window of an EWM with this half-life."""
    return support * halflife


def halflife_weights(halflife: int, *, support: int = SUPPORT) -> np.ndarray:
    """``2 ** (-age / halflife)`` for ``age = 0 .. support * halflife - 1``, newest first."""
    return np.exp2(-np.arange(window_length(halflife, support=support)) / halflife)


@numba.njit(cache=True)
def _one_sum(x: np.ndarray, weights: np.ndarray, t: int) -> float:  # pragma: no cover
    """``sum_a weights[a] x[t - a]`` over ``a = 0 .. min(t, L - 1)``, ascending."""
    s = 0.0
    for a in range(min(weights.shape[0], t + 1)):
        s += weights[a] * x[t - a]
    return s


@numba.njit(cache=True)
def _grid_sums(values: np.ndarray, weights: np.ndarray, out: np.ndarray
               ) -> None:  # pragma: no cover (compiled)
    """``out[k, t] = sum_a weights[a] values[k, t - a]`` for ``a = 0 .. min(t, L - 1)``.

    ``values`` (m, n) is on a gap-free grid (a missing bar holds 0). Every sum
    is accumulated over ``a`` in ascending order and nothing else. Eight
    neighbouring bars advance together in eight separate accumulators: their
    sums are independent, so running them side by side (or in vector lanes)
    reorders none of them.
    """
    m, n = values.shape
    span = weights.shape[0]
    for k in range(m):
        x = values[k]
        first = min(span - 1, n)  # windows cut short by the grid's start
        for t in range(first):
            out[k, t] = _one_sum(x, weights, t)
        t0 = first
        while t0 + 8 <= n:
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
            for a in range(span):
                w = weights[a]
                j = t0 - a
                s0 += w * x[j]
                s1 += w * x[j + 1]
                s2 += w * x[j + 2]
                s3 += w * x[j + 3]
                s4 += w * x[j + 4]
                s5 += w * x[j + 5]
                s6 += w * x[j + 6]
                s7 += w * x[j + 7]
            out[k, t0] = s0
            out[k, t0 + 1] = s1
            out[k, t0 + 2] = s2
            out[k, t0 + 3] = s3
            out[k, t0 + 4] = s4
            out[k, t0 + 5] = s5
            out[k, t0 + 6] = s6
            out[k, t0 + 7] = s7
            t0 += 8
        for t in range(t0, n):
            out[k, t] = _one_sum(x, weights, t)


def _means(x: np.ndarray, slot: np.ndarray, weights: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    flat = x.ndim == 1
    values = x[:, None] if flat else x
    slot = np.asarray(slot, dtype=np.int64)
    out = np.empty_like(values)
    if len(slot) == 0:
        return out[:, 0] if flat else out
    # No window reaches across a gap of a whole window: each side is its own grid.
    cuts = np.flatnonzero(np.diff(slot) >= len(weights)) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(slot)]):
        pos = slot[lo:hi] - slot[lo]
        grid = np.zeros((values.shape[1] + 1, pos[-1] + 1))
        grid[:-1, pos] = values[lo:hi].T
        grid[-1, pos] = 1.0  # present: the weights' sum is the last row's
        sums = np.empty_like(grid)
        _grid_sums(grid, np.ascontiguousarray(weights, dtype=np.float64), sums)
        out[lo:hi] = (sums[:-1, pos] / sums[-1, pos]).T
    return out[:, 0] if flat else out


def ewm(x: np.ndarray, slot: np.ndarray, halflife: int, *, support: int = SUPPORT
        ) -> np.ndarray:
    """Truncated, renormalised EWM of each column of ``x`` (see the module docstring).

    Parameters
    ----------
    x : ndarray of shape (n,) or (n, m)
        Values at each bar; a NaN spreads to every window that holds it.
    slot : ndarray of int64, shape (n,)
        Each bar's position on its timeframe's grid (open time // period),
        strictly increasing; a jump of more than 1 is a gap.
    halflife : int
        In bar periods.

    Returns
    -------
    ndarray, the shape of ``x``
        The EWM ending at each bar. The caller decides which bars have a full
        window behind them.
    """
    return _means(x, slot, halflife_weights(halflife, support=support))


def window_mean(x: np.ndarray, slot: np.ndarray, length: int) -> np.ndarray:
    """Plain mean of the bars that opened less than ``length`` periods before each bar.

    Missing bars are left out, as in :func:`ewm`; shapes as there.
    """
    return _means(x, slot, np.ones(length))
