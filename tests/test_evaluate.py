"""evaluate's claims about causality: forward returns are grouped by the filtered state,
and the Kruskal-Wallis test reads returns that do not overlap."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from regimelab import metrics
from regimelab.evaluate import regime_block
from regimelab.params import EvaluateParams

STEP = pd.Timedelta("1h")
HORIZONS = (1, 24)
NO_INTERVALS = 10**9  # a block longer than any state: no bootstrap, only the estimates


def forward_sums(returns: np.ndarray, horizon: int) -> np.ndarray:
    """log(close_{t+h} / close_t) for every bar t: the next ``horizon`` bars' returns
    summed, NaN where bar t+h is past the end. ``returns[t]`` is bar t's own return."""
    c = np.r_[0.0, np.cumsum(returns)]
    out = np.full(len(returns), np.nan)
    out[:len(returns) - horizon] = c[horizon + 1:] - c[1:len(returns) - horizon + 1]
    return out


def regimes_table(smoothed: np.ndarray, filtered: np.ndarray, n_states: int) -> pd.DataFrame:
    """One gap-free split of a regimes table: ``state`` (the hindsight path) and the
    smoothed posteriors follow ``smoothed``, the filtered posteriors ``filtered``."""
    n = len(smoothed)
    table = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq=STEP,
                                                     tz="UTC"),
                          "segment": 0, "state": smoothed})
    for k in range(n_states):
        table[f"p_smooth_{k}"] = (smoothed == k).astype(float)
        table[f"p_filter_{k}"] = (filtered == k).astype(float)
    return table


def describe(table: pd.DataFrame, returns: np.ndarray, *, n_states: int, block: int,
             n_boot: int = 200, horizons: tuple[int, ...] = HORIZONS) -> dict:
    model = SimpleNamespace(n_states=n_states,
                            transmat_=np.full((n_states, n_states), 0.1 / (n_states - 1))
                            + np.eye(n_states) * (0.9 - 0.1 / (n_states - 1)))
    return regime_block(table, model, returns={h: forward_sums(returns, h) for h in horizons},
                        per_year=8766.0, step=STEP,
                        params=EvaluateParams(horizons=horizons, n_boot=n_boot),
                        blocks={h: block for h in horizons}, rng=np.random.default_rng(0))


def test_forward_returns_are_grouped_by_the_filtered_state() -> None:
    """A market with no predictable returns, labelled twice: in hindsight by the sign of
    the next day's move (what a smoothed or Viterbi path does, to a degree: it has seen
    the bars it labels), and causally by the sign of the past day's move. Grouped by the
    hindsight label the states' forward returns separate; grouped as evaluate must, by the
    filtered state, they cannot."""
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0, 0.01, size=3000)
    day_ahead = forward_sums(returns, 24)
    day_behind = np.r_[np.full(24, np.nan), np.convolve(returns, np.ones(24), "valid")[:-1]]
    hindsight = (np.nan_to_num(day_ahead) > 0).astype(int)
    causal = (np.nan_to_num(day_behind) > 0).astype(int)
    block = describe(regimes_table(hindsight, causal, 2), returns, n_states=2, block=120)
    for h in HORIZONS:
        fwd = forward_sums(returns, h)
        by_state = block["returns"][f"h{h}"]
        # The hindsight grouping separates the returns: intervals far apart.
        seen = metrics.state_return_stats(fwd, hindsight, n_states=2, horizon=h,
                                          bars_per_year=8766.0, block=120, n_boot=200,
                                          rng=np.random.default_rng(0))
        assert seen["1"]["mean_lo"] > seen["0"]["mean_hi"]
        # evaluate's grouping does not: each interval reaches past the other's estimate.
        zero, one = by_state["0"], by_state["1"]
        assert zero["mean_lo"] < one["mean"] < zero["mean_hi"]
        assert one["mean_lo"] < zero["mean"] < one["mean_hi"]
        assert zero["n"] + one["n"] == np.isfinite(fwd).sum()
        assert by_state["kruskal"]["p_value"] > 0.01


def test_kruskal_wallis_reads_returns_that_do_not_overlap() -> None:
    """Persistent regimes with nothing to do with the returns: at the 5% level the test
    must reject about 5% of the time. Read on every bar, 24-bar returns overlap by 23
    bars, and the test, which takes them as independent, rejects far more often."""
    rng = np.random.default_rng(4)
    rejected = []
    for _ in range(100):
        returns = rng.normal(0.0, 0.01, size=2400)
        # A sticky two-state chain (dwell about 100 bars), drawn apart from the returns.
        switches = rng.random(2400) < 0.01
        states = np.cumsum(switches) % 2
        block = describe(regimes_table(states, states, 2), returns, n_states=2,
                         block=NO_INTERVALS, horizons=(24,))
        test = block["returns"]["h24"]["kruskal"]
        rejected.append(test["p_value"] < 0.05)
    assert np.mean(rejected) <= 0.12
