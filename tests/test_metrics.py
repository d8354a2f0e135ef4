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


def garch_returns(rng: np.random.Generator, n_paths: int, n: int, *, alpha: float = 0.10,
                  beta: float = 0.85) -> np.ndarray:
    """GARCH(1,1) returns with unconditional variance 1 and mean 0, shape ``(n_paths, n)``:
    uncorrelated, with volatility clustering."""
    omega = 1.0 - alpha - beta
    z = rng.standard_normal((n_paths, n))
    out = np.empty((n_paths, n))
    var = np.ones(n_paths)
    for t in range(n):
        out[:, t] = np.sqrt(var) * z[:, t]
        var = omega + alpha * out[:, t] ** 2 + beta * var
    return out


def overlapping(returns: np.ndarray, horizon: int) -> np.ndarray:
    """Forward ``horizon``-bar sums from every bar: shape ``(n_paths, n - horizon + 1)``."""
    c = np.concatenate([np.zeros((len(returns), 1)), np.cumsum(returns, axis=1)], axis=1)
    return c[:, horizon:] - c[:, :-horizon]


def sd_of_mean(n: int, horizon: int) -> float:
    """The exact SD of the mean of ``n`` overlapping sums of ``horizon`` uncorrelated unit
    variance returns."""
    lag = np.arange(-horizon + 1, horizon)
    return float(np.sqrt(((n - np.abs(lag)) * (horizon - np.abs(lag))).sum()) / n)


def interval_coverage(fwd: np.ndarray, horizon: int, *, block: int | None, n_boot: int,
                      seed: int) -> tuple[float, float, list[int]]:
    """Share of 95% intervals of the mean that cover the true 0, the mean half-width over
    the exact SD of the mean, and the blocks (auto when ``block`` is None)."""
    rng = np.random.default_rng(seed)
    covered, half, blocks = [], [], []
    for x in fwd:
        b = metrics.block_length(x, horizon=horizon) if block is None else block
        s = metrics.return_stats(x, horizon=horizon, bars_per_year=horizon, block=b,
                                 n_boot=n_boot, rng=rng)
        covered.append(s["mean_lo"] <= 0.0 <= s["mean_hi"])
        half.append((s["mean_hi"] - s["mean_lo"]) / 2 / 1.959964)
        blocks.append(b)
    return float(np.mean(covered)), float(np.mean(half)) / sd_of_mean(fwd.shape[1], horizon), \
        blocks


def test_intervals_of_overlapping_day_returns_cover_the_mean() -> None:
    """24-hour returns taken every hour, with clustered volatility: blocks of 24 bars (the
    old default) make the interval about 0.8 of the width it needs; the automatic block
    covers as it says. 200 markets of 4,000 hourly bars (about 30 s)."""
    h = 24
    fwd = overlapping(garch_returns(np.random.default_rng(11), 200, 4000 + h - 1), h)
    coverage, width, blocks = interval_coverage(fwd, h, block=None, n_boot=400, seed=12)
    assert 0.90 <= coverage <= 0.99
    # The mean half-width against the exact SD of the mean: a precise check where the
    # coverage of 200 intervals is a noisy one (its SE is 1.7 points).
    assert 0.88 <= width <= 1.12
    assert min(blocks) >= metrics.BLOCK_HORIZONS * h
    # The old default on the same markets: intervals far too narrow.
    _, narrow, _ = interval_coverage(fwd[:100], h, block=h, n_boot=200, seed=12)
    assert narrow < 0.87


@pytest.mark.slow
@pytest.mark.parametrize("garch", [False, True])
def test_intervals_cover_the_mean_on_a_long_split(garch: bool) -> None:
    """As above at the size of the default data's test split (10,825 bars), 600 markets:
    about 80 s on an idle core."""
    h, n, rng = 24, 10825, np.random.default_rng(21)
    returns = (garch_returns(rng, 600, n + h - 1) if garch
               else rng.standard_normal((600, n + h - 1)))
    coverage, width, _ = interval_coverage(overlapping(returns, h), h, block=None,
                                           n_boot=400, seed=22)
    assert 0.90 <= coverage <= 0.99
    assert 0.88 <= width <= 1.12


def test_block_length_is_politis_white_above_the_floor() -> None:
    rng = np.random.default_rng(6)
    iid = rng.standard_normal(5000)
    assert metrics.block_length(iid, horizon=1) == metrics.BLOCK_HORIZONS
    assert metrics.block_length(iid, horizon=24) == metrics.BLOCK_HORIZONS * 24
    # A persistent series (AR(1) at 0.95) needs longer blocks than the floor.
    ar = np.empty(5000)
    ar[0] = iid[0]
    for t in range(1, 5000):
        ar[t] = 0.95 * ar[t - 1] + iid[t]
    assert metrics.block_length(ar, horizon=1) > 30
    # NaNs are left out; too short or constant a series gets the floor.
    assert metrics.block_length(np.r_[ar, np.nan], horizon=1) == metrics.block_length(
        ar, horizon=1)
    assert metrics.block_length(iid[:10], horizon=2) == 2 * metrics.BLOCK_HORIZONS
    assert metrics.block_length(np.ones(100), horizon=1) == metrics.BLOCK_HORIZONS


def test_the_same_seed_gives_the_same_intervals() -> None:
    returns = np.random.default_rng(7).normal(size=2000)
    states = np.repeat([0, 1], 1000)

    def stats(seed: int) -> dict:
        return metrics.state_return_stats(returns, states, n_states=2, horizon=1,
                                          bars_per_year=8760, block=50, n_boot=200,
                                          rng=np.random.default_rng(seed))

    assert stats(3) == stats(3)
    assert stats(3)["0"]["mean_lo"] != stats(4)["0"]["mean_lo"]


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
