"""The regime scan: reproducible, distinct, lasting regimes, and the state count it chooses."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from regimelab.params import JumpParams, SelectParams
from regimelab.scan import (
    block_resample,
    choose_n_states,
    median_dwell,
    scan_state_count,
    separation,
)
from regimelab.synth import make_realistic_market


def log_range(bars) -> np.ndarray:
    """Each bar's log range, standardised: the range set's one feature."""
    x = np.log(np.log(bars["high"] / bars["low"]).to_numpy())
    return ((x - x.mean()) / x.std())[:, None]


@pytest.fixture(scope="module")
def market() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A realistic 3-regime market of 12,000 hourly bars: train, validation and truth."""
    bars = make_realistic_market(12_000, n_regimes=3, random_state=11)
    X = log_range(bars)
    n = int(0.75 * len(X))
    return X[:n], np.array([n]), X[n:], np.array([len(X) - n]), bars["regime"].to_numpy()[n:]


def test_block_resample_draws_blocks_and_cuts_them_at_gaps() -> None:
    X = np.arange(1000, dtype=np.float64)[:, None]
    lengths = np.array([300, 700])
    X_r, lengths_r = block_resample(X, lengths, n_blocks=10, rng=np.random.default_rng(0))
    assert lengths_r.sum() == len(X_r) == 1000  # 10 blocks of 100 bars
    start = 0
    for n in lengths_r:
        piece = X_r[start:start + n, 0]
        # consecutive bars of one original sequence: never across the gap at 300
        np.testing.assert_array_equal(np.diff(piece), 1.0)
        assert piece[0] >= 300 or piece[-1] < 300
        start += n
    again = block_resample(X, lengths, n_blocks=10, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again[0], X_r)


def test_separation_in_within_state_standard_deviations() -> None:
    one = SimpleNamespace(n_states=3, means_=np.array([[0.0], [3.0], [4.0]]),
                          covars_=np.array([[[1.0]], [[1.0]], [[4.0]]]))
    # pooled variance 0.25 * 1 + 0.25 * 1 + 0.5 * 4 = 2.5: the closest pair is 1 / sqrt(2.5)
    np.testing.assert_allclose(separation(one, np.array([0.25, 0.25, 0.5])), 1.0 / np.sqrt(2.5),
                               rtol=1e-12, atol=0)
    # Two features moving together: a step along their common direction is cheap, a step
    # across it is expensive (Mahalanobis, not Euclidean).
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    two = SimpleNamespace(n_states=2, means_=np.array([[0.0, 0.0], [1.0, -1.0]]),
                          covars_=np.stack([cov, cov]))
    delta = np.array([1.0, -1.0])
    np.testing.assert_allclose(separation(two, np.array([0.5, 0.5])),
                               np.sqrt(delta @ np.linalg.inv(cov) @ delta), rtol=1e-12, atol=0)


def test_median_dwell_counts_runs_within_sequences() -> None:
    states = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 1])
    assert median_dwell(states, np.array([10])) == 2.5  # runs 3, 2, 4, 1
    assert median_dwell(states, np.array([4, 6])) == 1.0  # runs 3, 1 | 1, 4, 1: a gap ends a run


def test_choose_the_largest_reproducible_distinct_count() -> None:
    rows = [{"n_states": 2, "stability": 1.0, "separation": 3.0},
            {"n_states": 3, "stability": 0.97, "separation": 1.5},
            {"n_states": 4, "stability": 0.99, "separation": 0.4},  # reproducible, not distinct
            {"n_states": 5, "stability": 0.6, "separation": 1.2}]
    assert choose_n_states(rows, min_stability=0.9, min_separation=1.0) == (3, True)
    assert choose_n_states(rows, min_stability=0.9, min_separation=0.3) == (4, True)
    assert choose_n_states(rows, min_stability=1.01, min_separation=0.0) == (2, False)


def test_the_true_count_is_reproducible_and_distinct_and_one_more_is_not(market) -> None:
    X, lengths, X_val, lengths_val, _ = market
    select = SelectParams(resamples=2)
    jump = JumpParams(n_init=4)
    rows = {k: scan_state_count(X, lengths, X_val, lengths_val, n_states=k, select=select,
                                jump=jump, min_dwell=24, seed=0) for k in (3, 4)}
    assert rows[3]["stability"] >= 0.95 and rows[3]["separation"] >= 1.0
    assert rows[4]["stability"] < 0.95 or rows[4]["separation"] < 1.0
    assert choose_n_states(list(rows.values()), min_stability=0.95,
                           min_separation=1.0) == (3, True)


def test_the_penalty_is_the_smallest_whose_regimes_last(market) -> None:
    X, lengths, X_val, lengths_val, truth = market
    select = SelectParams(resamples=1, penalties=(0.0, 1.0, 2.0, 5.0, 20.0))
    row = scan_state_count(X, lengths, X_val, lengths_val, n_states=3, select=select,
                           jump=JumpParams(n_init=4), min_dwell=24, seed=0)
    dwell = row["penalties"]
    assert list(dwell) == ["0", "1", "2", "5", "20"]
    assert dwell["0"] < 24  # no penalty: the labels flicker bar to bar
    assert row["min_dwell_reached"] and row["median_dwell_val"] >= 24
    chosen = row["jump_penalty"]
    assert all(dwell[f"{p:g}"] < 24 for p in select.penalties if p < chosen)
    assert row["median_dwell_val"] == dwell[f"{chosen:g}"]


def test_a_dwell_no_penalty_reaches_takes_the_largest_and_says_so(market) -> None:
    X, lengths, X_val, lengths_val, _ = market
    select = SelectParams(resamples=1, penalties=(0.0, 0.5))
    row = scan_state_count(X, lengths, X_val, lengths_val, n_states=3, select=select,
                           jump=JumpParams(n_init=2), min_dwell=10_000, seed=0)
    assert not row["min_dwell_reached"] and row["jump_penalty"] == 0.5
