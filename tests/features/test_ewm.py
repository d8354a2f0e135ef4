"""The truncated EWM kernel: known values, its window in time, and pandas' EWM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regimelab.features.ewm import SUPPORT, ewm, halflife_weights, window_mean


def gappy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` values on a grid where about one slot in five is missing (gaps of 1-3)."""
    rng = np.random.default_rng(seed)
    steps = np.where(rng.random(n) < 0.2, rng.integers(2, 5, n), 1)
    return np.cumsum(steps), rng.normal(size=n)


def direct(x: np.ndarray, slot: np.ndarray, t: int, weight: object, span: int) -> float:
    """The definition, bar by bar: present bars under ``span`` periods old, newest first."""
    num = den = 0.0
    for j in range(t, -1, -1):
        age = int(slot[t] - slot[j])
        if age >= span:
            break
        w = weight(age)
        num += w * x[j]
        den += w
    return num / den


@pytest.mark.parametrize("halflife", [1, 3, 8])
def test_equals_the_definition_exactly(halflife: int) -> None:
    """Same sums in the same order: bit for bit, so nothing depends on vector units."""
    slot, x = gappy(400, seed=halflife)
    weights = halflife_weights(halflife)
    got = ewm(x, slot, halflife)
    expected = [direct(x, slot, t, lambda a: weights[a], SUPPORT * halflife)
                for t in range(len(x))]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(weights, 2.0 ** (-np.arange(6 * halflife) / halflife),
                               rtol=1e-15, atol=0)


def test_matches_pandas_time_weighted_ewm_on_the_window() -> None:
    """pandas' ``ewm(halflife, times)`` over the window's bars is the same mean."""
    slot, x = gappy(300, seed=5)
    halflife, t = 4, 299
    inside = (slot[t] - slot < SUPPORT * halflife) & (np.arange(len(x)) <= t)
    times = pd.to_datetime(slot[inside], unit="h")
    expected = pd.Series(x[inside]).ewm(halflife=pd.Timedelta(hours=halflife),
                                        times=times).mean().iloc[-1]
    np.testing.assert_allclose(ewm(x, slot, halflife)[t], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("halflife", [2, 24])
def test_truncation_error_against_pandas_full_history(halflife: int) -> None:
    """Against an EWM over all history the dropped tail weighs at most 2^-SUPPORT.

    truncated - full = tail_share * (mean of the window - mean of the tail), so
    the difference is at most 2^-SUPPORT * (max - min).
    """
    n = 40 * halflife
    x = np.cumsum(np.random.default_rng(3).normal(size=n))  # persistent: the tail matters
    full = pd.Series(x).ewm(halflife=halflife).mean().to_numpy()
    ours = ewm(x, np.arange(n), halflife)
    late = slice(SUPPORT * halflife, n)
    diff = np.abs(ours[late] - full[late])
    assert diff.max() <= 2.0 ** -SUPPORT * (x.max() - x.min())
    assert diff.max() > 1e-6  # the tail was really dropped
    # Where the series has no more history than the window, the two agree.
    np.testing.assert_allclose(ours[:SUPPORT * halflife], full[:SUPPORT * halflife],
                               rtol=1e-12, atol=1e-12)


def test_window_is_support_halflives_of_time() -> None:
    """A bar 6H - 1 periods old counts; one 6H periods old does not, gap or no gap."""
    halflife = 2
    slot = np.array([0, 1, 2, 9, 12])  # the mean at slot 12 reads slots 1..12
    x = np.array([1e6, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(ewm(x, slot, halflife)[-1], 1.0, rtol=1e-15, atol=0)
    slot_in = np.array([1, 2, 3, 9, 12])
    assert ewm(x, slot_in, halflife)[-1] > 1e3


def test_a_missing_bar_weighs_nothing_but_time_passes() -> None:
    halflife = 3
    slot = np.array([0, 1, 4])  # slots 2 and 3 are missing
    x = np.array([2.0, 4.0, 8.0])
    w = 2.0 ** (-np.array([4, 3, 0]) / halflife)
    np.testing.assert_allclose(ewm(x, slot, halflife)[-1], (w @ x) / w.sum(), rtol=1e-14,
                               atol=0)


def test_columns_are_independent_and_nan_stays_in_its_windows() -> None:
    slot, x = gappy(200, seed=9)
    y = x.copy()
    y[50] = np.nan
    both = ewm(np.column_stack([x, y]), slot, 2)
    np.testing.assert_array_equal(both[:, 0], ewm(x, slot, 2))
    reached = (slot >= slot[50]) & (slot - slot[50] < 12)
    assert np.isnan(both[reached, 1]).all()
    np.testing.assert_array_equal(both[~reached, 1], both[~reached, 0])


def test_window_mean_is_the_plain_mean_of_present_bars() -> None:
    slot, x = gappy(120, seed=2)
    got = window_mean(x, slot, 10)
    for t in (0, 7, 60, 119):
        inside = (slot[t] - slot[: t + 1]) < 10
        np.testing.assert_allclose(got[t], x[: t + 1][inside].mean(), rtol=1e-13, atol=1e-15)


def test_a_gap_longer_than_the_window_starts_afresh() -> None:
    slot = np.array([0, 1, 2, 500, 501])
    x = np.array([5.0, 5.0, 5.0, 1.0, 3.0])
    got = ewm(x, slot, 2)
    assert got[3] == 1.0
    w = 2.0 ** -0.5
    np.testing.assert_allclose(got[4], (3.0 + w * 1.0) / (1.0 + w), rtol=1e-15, atol=0)
