"""Regime names: one rule, from each state's training statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regimelab.naming import CALM_BELOW, VOLATILE_ABOVE, bar_returns, name_states


def episodes(laws: list[tuple[float, float]], *, n_episodes: int, length: int, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Returns and states of ``n_episodes`` runs per state, the states taking turns."""
    rng = np.random.default_rng(seed)
    states = np.tile(np.repeat(np.arange(len(laws)), length), n_episodes)
    mean = np.array([m for m, _ in laws])[states]
    vol = np.array([v for _, v in laws])[states]
    return mean + vol * rng.standard_normal(len(states)), states


def test_direction_and_volatility_words() -> None:
    # calm and rising; middling and flat; wild and falling hard
    returns, states = episodes([(0.002, 0.004), (0.0, 0.01), (-0.01, 0.04)], n_episodes=40,
                               length=100)
    result = name_states(returns, states, np.zeros(len(states)), n_states=3, seed=0,
                         n_boot=300)
    assert result["names"] == ["calm bull", "flat", "crash"]
    stats = result["states"]
    assert stats["0"]["ratio"] < CALM_BELOW and stats["2"]["ratio"] > VOLATILE_ABOVE
    assert stats["0"]["mean_lo"] > 0 and stats["1"]["mean_lo"] < 0 < stats["1"]["mean_hi"]
    assert stats["2"]["episodes"] == 40 and stats["2"]["bars"] == 4000


def test_a_volatile_state_that_does_not_fall_is_not_a_crash() -> None:
    returns, states = episodes([(0.0, 0.004), (0.004, 0.04)], n_episodes=40, length=100)
    names = name_states(returns, states, np.zeros(len(states)), n_states=2, seed=0,
                        n_boot=300)["names"]
    assert names == ["calm flat", "volatile bull"]


def test_few_episodes_cannot_give_a_direction() -> None:
    # One long rising run: its bars are many, but they are one episode.
    returns, states = episodes([(0.0, 0.01), (0.003, 0.01)], n_episodes=3, length=2000)
    stats = name_states(returns, states, np.zeros(len(states)), n_states=2, seed=0,
                        n_boot=300)
    assert stats["names"][1] == "flat 2"
    assert np.isnan(stats["states"]["1"]["mean_lo"])


def test_bootstrapping_episodes_not_bars() -> None:
    # Each episode has its own drift (a trend that lasts the episode) and no overall one:
    # bars inside an episode are not independent, so a bar bootstrap would call it a bull.
    rng = np.random.default_rng(3)
    drifts = rng.normal(0.0, 0.004, size=30)
    drifts -= drifts.mean() - 0.0003
    states = np.repeat(np.arange(30) % 2, 200)
    returns = np.repeat(drifts, 200) + 0.002 * rng.standard_normal(len(states))
    stats = name_states(returns, states, np.zeros(len(states)), n_states=2, seed=0,
                        n_boot=500)["states"]
    assert stats["0"]["mean_lo"] < 0 < stats["0"]["mean_hi"]


def test_two_alike_states_are_told_apart_by_rank() -> None:
    returns, states = episodes([(0.0, 0.01), (0.0, 0.0101)], n_episodes=30, length=100)
    names = name_states(returns, states, np.zeros(len(states)), n_states=2, seed=0,
                        n_boot=300)["names"]
    assert names == ["flat", "flat 2"]


def test_the_same_kinds_of_regimes_get_the_same_names() -> None:
    a = episodes([(0.002, 0.004), (-0.01, 0.04)], n_episodes=40, length=100, seed=1)
    b = episodes([(0.0025, 0.005), (-0.012, 0.05)], n_episodes=50, length=80, seed=2)
    names = [name_states(r, s, np.zeros(len(s)), n_states=2, seed=0, n_boot=300)["names"]
             for r, s in (a, b)]
    assert names[0] == names[1] == ["calm bull", "crash"]


def test_bar_returns_stop_at_a_gap() -> None:
    ts = pd.date_range("2024-01-01", periods=6, freq="1h", tz="UTC")
    bars = pd.DataFrame({"symbol": "X", "timestamp": ts,
                         "close": [100.0, 101.0, 102.0, 99.0, 100.0, 104.0]})
    frame = pd.DataFrame({"symbol": "X", "timestamp": ts[[1, 2, 4, 5]], "segment": [0, 0, 1, 1]})
    out = bar_returns(frame, bars)
    np.testing.assert_allclose(out[[1, 3]], np.log([102 / 101, 104 / 100]), rtol=1e-12, atol=0)
    assert np.isnan(out[0]) and np.isnan(out[2])


@pytest.mark.parametrize("n_states", [2, 4])
def test_every_state_gets_a_unique_name(n_states: int) -> None:
    rng = np.random.default_rng(n_states)
    states = rng.integers(0, n_states, size=5000)
    returns = rng.normal(0, 0.01, size=5000)
    names = name_states(returns, states, np.zeros(5000), n_states=n_states, seed=0,
                        n_boot=200)["names"]
    assert len(set(names)) == n_states
