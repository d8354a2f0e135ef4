"""State order, Markov-chain summaries and the regimes table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regimelab.regimes import (
    expected_durations,
    regimes_table,
    stationary_distribution,
    volatility_order,
    volatility_rule,
)


@pytest.mark.parametrize("columns, rule", [
    (["parkinson_20_1h", "log_return_1h", "log_return_4h"],
     {"statistic": "variance", "feature": "log_return_1h"}),
    (["rsi_14_1h", "hl_range_pct_1h", "parkinson_20_4h", "realized_vol_24_1h"],
     {"statistic": "mean", "feature": "realized_vol_24_1h"}),
    (["relative_volume_20_1h", "hl_range_pct_1h", "parkinson_20_1h"],
     {"statistic": "mean", "feature": "parkinson_20_1h"}),
    (["close_open_pct_1h", "hl_range_pct_1h"], {"statistic": "mean", "feature": "hl_range_pct_1h"}),
    (["rsi_14_1h", "my_own_column"], {"statistic": "trace", "feature": None}),
    # The regime set: the shortest half-life in time, of ewm_vol, else ewm_downside.
    (["ewm_return_24_1h", "ewm_downside_72_1h", "ewm_downside_24_1h", "ewm_sortino_24_1h"],
     {"statistic": "mean", "feature": "ewm_downside_24_1h"}),
    (["ewm_downside_24_1h", "ewm_vol_240_1h", "ewm_vol_72_1h"],
     {"statistic": "mean", "feature": "ewm_vol_72_1h"}),
    (["ewm_downside_72_1h", "ewm_downside_6_4h"],
     {"statistic": "mean", "feature": "ewm_downside_6_4h"}),
    (["parkinson_20_1h", "parkinson_20_4h"], {"statistic": "mean", "feature": "parkinson_20_1h"}),
])
def test_volatility_rule_prefers_return_variance_then_a_level(columns: list[str],
                                                              rule: dict) -> None:
    assert volatility_rule(columns) == rule


def covariances(diagonals: list[list[float]]) -> np.ndarray:
    return np.array([np.diag(d) for d in diagonals])


def test_order_by_return_variance() -> None:
    means = np.array([[0.0, 5.0], [0.0, 1.0], [0.0, 3.0]])
    covars = covariances([[4.0, 1.0], [1.0, 9.0], [2.0, 1.0]])
    order, rule = volatility_order(means, covars, ["parkinson_20_1h", "log_return_1h"])
    # The rule looks at the log-return column (variance 1, 9, 1), not the larger means.
    np.testing.assert_array_equal(order, [0, 2, 1])
    assert rule == {"statistic": "variance", "feature": "log_return_1h",
                    "values": [1.0, 1.0, 9.0]}


def test_order_by_volatility_level_mean() -> None:
    means = np.array([[0.0, 2.0], [1.0, -1.0], [0.5, 0.5]])
    covars = covariances([[1.0, 1.0], [9.0, 9.0], [4.0, 4.0]])
    order, rule = volatility_order(means, covars, ["rsi_14_1h", "parkinson_20_1h"])
    np.testing.assert_array_equal(order, [1, 2, 0])
    assert rule["statistic"] == "mean" and rule["values"] == [-1.0, 0.5, 2.0]


def test_a_shared_covariance_orders_by_a_level() -> None:
    means = np.array([[0.0, 2.0], [0.5, -1.0], [-0.5, 0.5]])
    covars = np.tile(np.diag([1.0, 4.0]), (3, 1, 1))  # tied: one matrix for every state
    order, rule = volatility_order(means, covars, ["log_return_1h", "parkinson_20_1h"])
    np.testing.assert_array_equal(order, [1, 2, 0])
    assert rule == {"statistic": "mean", "feature": "parkinson_20_1h",
                    "values": [-1.0, 0.5, 2.0]}
    assert volatility_rule(["log_return_1h", "parkinson_20_1h"], shared_covariance=True) == {
        "statistic": "mean", "feature": "parkinson_20_1h"}


def test_order_by_trace() -> None:
    means = np.zeros((3, 2))
    covars = covariances([[3.0, 3.0], [1.0, 2.0], [0.5, 0.5]])
    order, rule = volatility_order(means, covars, ["a", "b"])
    np.testing.assert_array_equal(order, [2, 1, 0])
    assert rule == {"statistic": "trace", "feature": None, "values": [1.0, 3.0, 6.0]}


def test_ties_fall_back_to_the_first_mean_then_the_index() -> None:
    means = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    covars = covariances([[1.0, 1.0]] * 3)
    order, _ = volatility_order(means, covars, ["log_return_1h", "x"])
    np.testing.assert_array_equal(order, [1, 2, 0])


def test_stationary_distribution_of_a_two_state_chain() -> None:
    a, b = 0.02, 0.05  # leave 0 with probability a, leave 1 with probability b
    transmat = np.array([[1 - a, a], [b, 1 - b]])
    np.testing.assert_allclose(stationary_distribution(transmat), [b / (a + b), a / (a + b)],
                               rtol=1e-12, atol=0)


def test_stationary_distribution_is_invariant() -> None:
    rng = np.random.default_rng(0)
    transmat = rng.dirichlet(np.ones(4), size=4)
    pi = stationary_distribution(transmat)
    np.testing.assert_allclose(pi @ transmat, pi, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pi.sum(), 1.0, rtol=0, atol=1e-12)


def test_expected_durations() -> None:
    transmat = np.array([[0.99, 0.01, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(expected_durations(transmat), [100.0, 4.0, np.inf], rtol=1e-12,
                               atol=0)


class RecordingModel:
    """A regime model with known outputs that records the sequences it is given."""

    n_states = 2

    def __init__(self) -> None:
        self.lengths: list[list[int]] = []

    def predict(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.lengths.append(lengths.tolist())
        return (X[:, 0] > 0).astype(np.int32)

    def predict_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-X[:, 0]))
        return np.column_stack([1.0 - p, p])

    def filter_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return np.column_stack([np.full(len(X), 0.25), np.full(len(X), 0.75)])

    def score(self, X: np.ndarray, lengths: np.ndarray) -> float:
        return 0.0


def split_frame(n: int, segments: list[int], start: str) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": pd.date_range(start, periods=n, freq="1h", tz="UTC"),
        "symbol": "SYN",
        "segment": np.repeat(segments, n // len(segments)),
        "x": np.linspace(-1.0, 1.0, n),
    })


def test_regimes_table_follows_the_contract() -> None:
    frames = {"train": split_frame(6, [0, 1], "2024-01-01"),
              "val": split_frame(4, [1], "2024-02-01"),
              "test": split_frame(4, [2, 3], "2024-03-01")}
    model = RecordingModel()
    table = regimes_table(model, frames, ["x"])
    assert list(table.columns) == ["timestamp", "symbol", "split", "segment", "state",
                                   "p_smooth_0", "p_smooth_1", "p_filter_0", "p_filter_1"]
    assert table["split"].tolist() == ["train"] * 6 + ["val"] * 4 + ["test"] * 4
    assert table["state"].dtype == np.int64
    # Each split is decoded on its own, cut at its segments.
    assert model.lengths == [[3, 3], [4], [2, 2]]
    pd.testing.assert_series_equal(table["timestamp"],
                                   pd.concat([f["timestamp"] for f in frames.values()],
                                             ignore_index=True))
    np.testing.assert_array_equal(table["segment"], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 3])
    x = pd.concat([f["x"] for f in frames.values()]).to_numpy()
    np.testing.assert_allclose(table["p_smooth_1"], 1.0 / (1.0 + np.exp(-x)), rtol=1e-12,
                               atol=0)
    np.testing.assert_array_equal(table["p_filter_1"], 0.75)
    np.testing.assert_array_equal(table["state"], (x > 0).astype(np.int64))
