"""Regime-path statistics: known answers for runs, switches, entropy, forecasts and returns."""

from __future__ import annotations

import numpy as np
import pytest

from regimelab import metrics


def test_runs_end_at_a_state_change_and_at_a_gap() -> None:
    states = np.array([0, 0, 1, 1, 1, 0])
    segment = np.array([0, 0, 0, 1, 1, 1])
    run_states, lengths = metrics.runs(states, segment)
    np.testing.assert_array_equal(run_states, [0, 1, 1, 0])
    np.testing.assert_array_equal(lengths, [2, 1, 2, 1])
    # A change across the gap (bar 2 -> 3 stays 1 but a new segment starts) is no switch.
    assert metrics.switches_per_1000(states, segment) == pytest.approx(1000 * 2 / 6)


def test_entropy_is_zero_when_certain_and_log_k_when_not() -> None:
    assert metrics.mean_entropy(np.eye(3)) == pytest.approx(0.0, abs=1e-12)
    assert metrics.mean_entropy(np.full((5, 4), 0.25)) == pytest.approx(np.log(4), rel=1e-12)


def test_forecast_beats_persistence_on_a_deterministic_cycle() -> None:
    transmat = np.roll(np.eye(3), 1, axis=1)  # 0 -> 1 -> 2 -> 0
    states = np.arange(30) % 3
    filtered = np.eye(3)[states]
    segment = np.zeros(30, dtype=int)
    one = metrics.forecast_accuracy(filtered, states, segment, transmat, 1)
    assert one == {"model": 1.0, "persistence": 0.0, "n": 29}
    three = metrics.forecast_accuracy(filtered, states, segment, transmat, 3)
    assert three["model"] == 1.0 and three["persistence"] == 1.0
    # Pairs across a gap are left out.
    segment[15:] = 1
    assert metrics.forecast_accuracy(filtered, states, segment, transmat, 1)["n"] == 28


def test_block_bootstrap_draws_whole_blocks_that_wrap_around() -> None:
    rng = np.random.default_rng(0)
    idx = metrics.block_bootstrap_indices(50, block=7, n_boot=2000, rng=rng)
    assert idx.shape == (2000, 50)
    assert idx.min() >= 0 and idx.max() < 50
    blocks = idx[:, :49].reshape(2000, 7, 7)  # the first 7 blocks are whole
    np.testing.assert_array_equal(np.diff(blocks, axis=2) % 50, 1)
    # Circular: the ends are drawn as often as the middle.
    counts = np.bincount(idx.ravel(), minlength=50) / idx.size
    np.testing.assert_allclose(counts, 1 / 50, rtol=0.05, atol=0)


def test_state_stats_come_from_one_joint_resample() -> None:
    rng = np.random.default_rng(5)
    states = np.repeat([0, 1, 0, 2], [400, 300, 400, 30])
    returns = rng.normal(0.0, 0.01, size=len(states)) * (1 + states)
    returns[5] = np.nan  # a missing bar t+h
    stats = metrics.state_return_stats(returns, states, n_states=4, horizon=1,
                                       bars_per_year=8760, block=24, n_boot=200, rng=rng)
    assert [stats[str(k)]["n"] for k in range(4)] == [799, 300, 30, 0]
    calm = returns[(states == 0) & np.isfinite(returns)]
    assert stats["0"]["vol"] == pytest.approx(calm.std(ddof=1) * np.sqrt(8760), rel=1e-12)
    assert stats["0"]["vol_lo"] < stats["0"]["vol"] < stats["0"]["vol_hi"] < stats["1"]["vol_lo"]
    # 30 returns are fewer than two blocks: an estimate, but no interval.
    assert np.isfinite(stats["2"]["vol"]) and np.isnan(stats["2"]["vol_lo"])
    assert np.isnan(stats["3"]["mean"])


def test_return_stats_annualise_and_bracket_the_estimate() -> None:
    rng = np.random.default_rng(1)
    returns = rng.normal(0.001, 0.01, size=5000)
    stats = metrics.return_stats(returns, horizon=1, bars_per_year=8760, block=24, n_boot=300,
                                 rng=rng)
    assert stats["n"] == 5000
    assert stats["mean"] == pytest.approx(returns.mean() * 8760, rel=1e-12)
    assert stats["vol"] == pytest.approx(returns.std(ddof=1) * np.sqrt(8760), rel=1e-12)
    assert stats["sharpe"] == pytest.approx(stats["mean"] / stats["vol"], rel=1e-12)
    for name in ("mean", "vol", "sharpe"):
        assert stats[f"{name}_lo"] < stats[name] < stats[f"{name}_hi"]
    # At 24 bars the annualisation uses 8760 / 24 periods.
    day = metrics.return_stats(returns, horizon=24, bars_per_year=8760, block=24, n_boot=100,
                               rng=rng)
    assert day["mean"] == pytest.approx(returns.mean() * 365, rel=1e-12)


def test_blocks_widen_the_interval_of_clustered_returns() -> None:
    """Persistent returns (an AR(1) at 0.9): an iid bootstrap is far too sure of the mean."""
    rng = np.random.default_rng(2)
    noise = rng.normal(size=4000)
    series = np.empty(4000)
    series[0] = noise[0]
    for t in range(1, 4000):
        series[t] = 0.9 * series[t - 1] + noise[t]

    def width(block: int) -> float:
        s = metrics.return_stats(series, horizon=1, bars_per_year=1.0, block=block,
                                 n_boot=400, rng=np.random.default_rng(3))
        return s["mean_hi"] - s["mean_lo"]

    assert width(50) > 2.0 * width(1)


def test_too_few_returns_give_nan_not_an_error() -> None:
    stats = metrics.return_stats(np.array([0.01]), horizon=1, bars_per_year=8760, block=24,
                                 n_boot=100, rng=np.random.default_rng(0))
    assert stats["n"] == 1 and np.isnan(stats["sharpe"]) and np.isnan(stats["mean_lo"])


def test_kruskal_wallis_separates_shifted_groups() -> None:
    rng = np.random.default_rng(4)
    states = np.repeat([0, 1, 2], 300)
    same = rng.normal(size=900)
    assert metrics.kruskal_wallis(same, states)["p_value"] > 0.01
    shifted = same + 0.5 * states
    assert metrics.kruskal_wallis(shifted, states)["p_value"] < 1e-10
    assert np.isnan(metrics.kruskal_wallis(same, np.zeros(900, dtype=int))["p_value"])


def test_truth_scores_ignore_the_labels_names() -> None:
    truth = np.repeat([0, 1, 2], 10)
    relabelled = np.array([2, 0, 1])[truth]
    assert metrics.truth_scores(truth, relabelled) == {"ari": 1.0, "matched_accuracy": 1.0}
    noisy = relabelled.copy()
    noisy[:3] = 1
    assert metrics.matched_accuracy(truth, noisy) == pytest.approx(27 / 30)
