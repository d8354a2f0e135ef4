"""Realised-volatility forecasts: known answers, causality, train-only fits, and the
regimes' value on a market whose volatility a regime chain drives."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from regimelab.exceptions import ParamsError
from regimelab.families.hmm.model import RegimeHMM
from regimelab.forecast.vol_metrics import diebold_mariano, qlike, vol_losses
from regimelab.forecast.volatility import (
    bar_variance,
    filtered_posteriors,
    forecast_volatility,
    forward_sum,
    har_windows,
    plot_tables,
)
from regimelab.params import FAMILY_KEYS, ForecastVolParams, from_mapping
from regimelab.synth import Regime, make_market

STEP = pd.Timedelta(hours=1)
COLUMNS = ["log_range"]


def _splits(bars: pd.DataFrame, fractions: tuple[float, float] = (0.6, 0.8)
            ) -> dict[str, pd.DataFrame]:
    """Train / val / test tables of one standardised feature, the log of the bar's range."""
    x = np.log(np.log(bars["high"] / bars["low"]).to_numpy())
    cut1, cut2 = (int(f * len(bars)) for f in fractions)
    x = (x - x[:cut1].mean()) / x[:cut1].std()
    table = pd.DataFrame({"timestamp": bars["timestamp"], "symbol": bars["symbol"],
                          "segment": 0, "log_range": x})
    return {"train": table.iloc[:cut1], "val": table.iloc[cut1:cut2], "test": table.iloc[cut2:]}


@pytest.fixture(scope="module")
def regime_market() -> pd.DataFrame:
    """6,000 hourly bars whose volatility switches between two regimes, a 4x apart."""
    regimes = (Regime("calm", 0.0, 0.004, 5.0), Regime("wild", 0.0, 0.016, 6.0))
    return make_market(6000, regimes=regimes, stickiness=0.98, random_state=3)


@pytest.fixture(scope="module")
def posteriors(regime_market: pd.DataFrame) -> pd.DataFrame:
    frames = _splits(regime_market)
    model = RegimeHMM(2, n_init=2, random_state=0)
    train = frames["train"]
    model.fit(train[COLUMNS].to_numpy(), np.array([len(train)]), feature_names=COLUMNS)
    return filtered_posteriors(model, frames, COLUMNS)


def test_regime_aware_har_beats_har_when_regimes_drive_volatility(
        regime_market: pd.DataFrame, posteriors: pd.DataFrame) -> None:
    result = forecast_volatility(regime_market, posteriors, params=ForecastVolParams(
        horizons=(1, 24)), step=STEP)
    for h in ("h1", "h24"):
        block = result.report["horizons"][h]
        assert block["models"]["har_regimes"]["qlike"] < block["models"]["har"]["qlike"]
    # 1,200 test bars hold ~25 regime runs: enough for a significant one-bar gain; at 24
    # bars the overlapping windows leave too few independent ones (p ~ 0.08 here).
    assert result.report["horizons"]["h1"]["diebold_mariano"]["har_regimes_vs_har"][
        "p_value"] < 0.05


def test_qlike_and_losses_match_hand_computed_values() -> None:
    actual = np.array([1.0, 4.0, 0.0])
    forecast = np.array([2.0, 4.0, 1.0])
    assert_allclose(qlike(actual, forecast), [math.log(2) + 0.5, math.log(4) + 1.0, 0.0],
                    rtol=1e-12, atol=1e-12)
    losses = vol_losses(actual, forecast)
    err = np.array([math.sqrt(2) - 1, 0.0, 1.0])
    assert_allclose(losses["rmse"], math.sqrt(np.mean(err**2)), rtol=1e-12, atol=0)
    assert_allclose(losses["mae"], err.mean(), rtol=1e-12, atol=0)
    assert_allclose(losses["mape"], (math.sqrt(2) - 1) / 2, rtol=1e-12, atol=0)  # a = 0 left out
    assert_allclose(losses["qlike"], (math.log(2) + 0.5 + math.log(4) + 1.0) / 3,
                    rtol=1e-12, atol=0)


def test_diebold_mariano_matches_a_hand_computed_statistic() -> None:
    base = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    alt = np.array([2.0, 1.5, 3.0, 0.0, 4.0, 7.0, 2.5, 5.0])
    d = base - alt
    n, h = d.size, 2
    c = d - d.mean()
    gamma0, gamma1 = c @ c / n, c[1:] @ c[:-1] / n
    long_run = gamma0 + 2 * 0.5 * gamma1  # Bartlett, bandwidth h - 1 = 1: weight 1 - 1/2
    stat = d.mean() / math.sqrt(long_run / n) * math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    result = diebold_mariano(base, alt, horizon=h, bandwidth=0)  # raised to h - 1
    assert result.bandwidth == 1.0
    assert_allclose(result.stat, stat, rtol=1e-10, atol=0)
    assert_allclose(result.p_value, stats.t.sf(stat, df=n - 1), rtol=1e-10, atol=0)
    assert result.p_value < 0.5  # the alternative's losses are smaller on average
    flipped = diebold_mariano(alt, base, horizon=h, bandwidth=1)
    assert_allclose(flipped.p_value, 1 - result.p_value, rtol=1e-10, atol=0)


def test_target_is_the_sum_of_the_next_h_bars_and_never_crosses_a_gap() -> None:
    ts = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00",
                         "2024-01-01 05:00", "2024-01-01 06:00"], utc=True).to_numpy()
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert_allclose(forward_sum(v, ts, horizon=1, step=STEP), [2, 3, np.nan, 5, np.nan],
                    rtol=0, atol=0)
    assert_allclose(forward_sum(v, ts, horizon=2, step=STEP), [5, np.nan, np.nan, np.nan, np.nan],
                    rtol=0, atol=0)
    bars = pd.DataFrame({"timestamp": pd.Series(ts), "close": [1.0, math.e, 1.0, 1.0, math.e],
                         "high": [2.0, 1, 1, 1, 1], "low": [1.0, 1, 1, 1, 1]})
    assert_allclose(bar_variance(bars, proxy="squared_returns", step=STEP),
                    [np.nan, 1.0, 1.0, np.nan, 1.0], rtol=1e-12, atol=0)
    assert_allclose(bar_variance(bars, proxy="parkinson", step=STEP)[0],
                    math.log(2) ** 2 / (4 * math.log(2)), rtol=1e-12, atol=0)


def test_har_windows_are_a_day_a_week_and_a_month_of_bars() -> None:
    assert har_windows(pd.Timedelta(hours=1), "auto") == (24, 168, 720)
    assert har_windows(pd.Timedelta(days=1), "auto") == (1, 7, 30)
    assert har_windows(pd.Timedelta(days=1), (1, 5, 22)) == (1, 5, 22)


def test_forecasts_are_causal_and_fits_never_see_test(
        regime_market: pd.DataFrame, posteriors: pd.DataFrame) -> None:
    params = ForecastVolParams(horizons=(1, 24))
    before = forecast_volatility(regime_market, posteriors, params=params, step=STEP)
    test_times = posteriors.loc[posteriors["split"] == "test", "timestamp"]
    cut = test_times.iloc[len(test_times) // 2]
    changed = regime_market.copy()
    later = changed["timestamp"] > cut
    # Wider ranges (the HAR inputs) and other closes (GARCH's) after the cut.
    changed.loc[later, "high"] *= 1.05
    changed.loc[later, "close"] = changed.loc[later, ["low", "high"]].mean(axis=1)
    after = forecast_volatility(changed, posteriors, params=params, step=STEP)
    assert after.report["garch"] == before.report["garch"]
    for h in ("h1", "h24"):
        assert after.report["horizons"][h]["fits"] == before.report["horizons"][h]["fits"]
    models = ["garch", "har", "har_regimes", "garch_mz", "garch_regimes"]
    upto = before.forecasts["timestamp"] <= cut
    assert_allclose(after.forecasts.loc[upto, models].to_numpy(),
                    before.forecasts.loc[upto, models].to_numpy(), rtol=0, atol=0)
    for name in models:  # the test can fail: every model sees the later bars
        assert not np.allclose(after.forecasts.loc[~upto, name].to_numpy(),
                               before.forecasts.loc[~upto, name].to_numpy())


def test_garch_is_fitted_on_training_returns_only(
        regime_market: pd.DataFrame, posteriors: pd.DataFrame) -> None:
    params = ForecastVolParams(horizons=(1,), models=("garch",))
    base = forecast_volatility(regime_market, posteriors, params=params, step=STEP)
    train_end = posteriors.loc[posteriors["split"] == "train", "timestamp"].max()
    for mask, same in ((regime_market["timestamp"] > train_end, True),
                       (regime_market["timestamp"] <= train_end, False)):
        changed = regime_market.copy()
        changed.loc[mask, "close"] *= np.exp(np.random.default_rng(0).normal(0, 0.01, mask.sum()))
        fitted = forecast_volatility(changed, posteriors, params=params, step=STEP)
        assert (fitted.report["garch"] == base.report["garch"]) is same


def test_plot_tables_hold_volatility_per_horizon(
        regime_market: pd.DataFrame, posteriors: pd.DataFrame) -> None:
    result = forecast_volatility(regime_market, posteriors,
                                 params=ForecastVolParams(horizons=(1, 24)), step=STEP)
    tables = plot_tables(result.forecasts)
    assert list(tables) == ["h1", "h24"]
    h24 = result.forecasts[result.forecasts["horizon"] == 24]
    assert_allclose(tables["h24"]["actual"].to_numpy(), np.sqrt(h24["actual"].to_numpy()),
                    rtol=1e-12, atol=0)
    assert tables["h24"].columns[0] == "timestamp"


def test_family_keys_match_the_registry() -> None:
    from regimelab.families import FAMILIES

    assert sorted(f.key for f in FAMILIES.values()) == list(FAMILY_KEYS)


@pytest.mark.parametrize("values, message", [
    ({"family": "gaussian_hmm"}, "forecast_vol.family"),
    ({"horizons": [0]}, "forecast_vol.horizons"),
    ({"horizons": [1, 1]}, "forecast_vol.horizons"),
    ({"proxy": "garman"}, "forecast_vol.proxy"),
    ({"models": ["har", "egarch"]}, "forecast_vol.models"),
    ({"har_windows": [24, 168]}, "forecast_vol.har_windows"),
    ({"har_windows": [168, 24, 720]}, "forecast_vol.har_windows"),
    ({"dm_bandwidth": -1}, "forecast_vol.dm_bandwidth"),
    ({"horizon": [1]}, "forecast_vol.horizon: unknown key"),
])
def test_bad_params_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        from_mapping(ForecastVolParams, "forecast_vol", values)
