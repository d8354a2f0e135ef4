"""Batch features: no look-ahead at any timeframe, live/batch parity, gaps and segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regimelab.exceptions import FeatureError
from regimelab.features import build_features, latest_features
from regimelab.params import FeaturesParams

MULTI = FeaturesParams(set="v2", timeframes=("1h", "4h", "1d"), window=5, horizons=(3, 6),
                       macd=(2, 3, 2), ma_windows=(2, 4), rsi_window=4)


def bars_only(market: pd.DataFrame) -> pd.DataFrame:
    return market.drop(columns="regime")


def hourly(closes: list[float], start: str = "2024-01-01") -> pd.DataFrame:
    """Hourly bars whose high/low straddle the close, volume 1."""
    c = np.asarray(closes, dtype=float)
    return pd.DataFrame({
        "timestamp": pd.date_range(start, periods=len(c), freq="1h", tz="UTC"),
        "symbol": "X", "open": c, "high": c * 1.01, "low": c * 0.99, "close": c,
        "volume": 1.0,
    })


@pytest.mark.parametrize("cut", [1200, 1337, 2001])
def test_appending_future_bars_leaves_past_features_unchanged(market: pd.DataFrame,
                                                              cut: int) -> None:
    full = build_features(bars_only(market), params=MULTI).table
    past = build_features(bars_only(market).iloc[:cut], params=MULTI).table
    columns = [c for c in past.columns if c not in ("segment",)]
    merged = full.loc[full["timestamp"].isin(past["timestamp"]), columns].reset_index(drop=True)
    assert len(merged) == len(past)
    pd.testing.assert_frame_equal(merged, past[columns], check_exact=True)


def test_higher_timeframe_uses_only_closed_buckets() -> None:
    closes = [100.0 + i for i in range(48)]
    params = FeaturesParams(set="columns", columns=("log_return_4h",))
    table = build_features(hourly(closes), params=params).table.set_index("timestamp")
    # The 4h bucket [04:00, 08:00) closes with the 07:00 bar; the 07:00 row sees it,
    # the 06:00 row still sees the bucket [00:00, 04:00) against nothing before it.
    t7 = pd.Timestamp("2024-01-01 07:00", tz="UTC")
    np.testing.assert_allclose(table.loc[t7, "log_return_4h"], np.log(107.0 / 103.0),
                               rtol=1e-14, atol=0)
    t6 = pd.Timestamp("2024-01-01 06:00", tz="UTC")
    assert t6 not in table.index  # the first bucket has no previous close: no value yet
    t10 = pd.Timestamp("2024-01-01 10:00", tz="UTC")
    np.testing.assert_allclose(table.loc[t10, "log_return_4h"], np.log(107.0 / 103.0),
                               rtol=1e-14, atol=0)


def test_changing_a_bar_changes_no_earlier_feature(market: pd.DataFrame) -> None:
    bars = bars_only(market)
    base = build_features(bars, params=MULTI).table
    shocked = bars.copy()
    i = int(np.flatnonzero(bars["timestamp"] == base["timestamp"].iloc[len(base) // 2])[0])
    shocked.loc[i, ["close", "high"]] = shocked.loc[i, ["close", "high"]] * 1.3
    after = build_features(shocked, params=MULTI).table
    t = bars["timestamp"].iloc[i]
    cols = [c for c in base.columns if c != "segment"]
    before_t = base.loc[base["timestamp"] < t, cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(after.loc[after["timestamp"] < t, cols].reset_index(drop=True),
                                  before_t, check_exact=True)
    at_t = after["timestamp"] == t
    assert not np.allclose(after.loc[at_t, "log_return_1h"], base.loc[base["timestamp"] == t,
                                                                      "log_return_1h"])


@pytest.mark.parametrize("params", [FeaturesParams(), MULTI,
                                    FeaturesParams(timeframes=("1h", "4h"), max_gap=3)])
def test_latest_bar_equals_batch_row(market: pd.DataFrame, params: FeaturesParams) -> None:
    bars = bars_only(market)
    result = build_features(bars, params=params)
    table = result.table
    rng = np.random.default_rng(0)
    rows = rng.choice(len(table), size=12, replace=False)
    for row in sorted(rows):
        t = table["timestamp"].iloc[row]
        recent = bars.loc[bars["timestamp"] <= t]
        live = latest_features(recent, spec=result.spec)
        assert live["timestamp"].iloc[0] == t
        np.testing.assert_allclose(live[result.spec["columns"]].to_numpy()[0],
                                   table[result.spec["columns"]].to_numpy()[row],
                                   rtol=1e-12, atol=1e-15)


def test_latest_bar_without_enough_history_is_refused(market: pd.DataFrame) -> None:
    result = build_features(bars_only(market), params=FeaturesParams())
    with pytest.raises(FeatureError, match="latest bar"):
        latest_features(bars_only(market).iloc[:10], spec=result.spec)


def test_gaps_cut_segments_and_restart_windows() -> None:
    bars = hourly([100.0 + np.sin(i) for i in range(120)])
    bars = bars.drop(index=[50, 51, 52, 90]).reset_index(drop=True)  # a 3-bar and a 1-bar gap
    strict = build_features(bars, params=FeaturesParams(window=5, max_gap=0)).table
    assert strict["segment"].nunique() == 3
    # After each gap the window restarts: the first full row is window + 1 bars in.
    first = strict.groupby("segment")["timestamp"].min()
    assert first.iloc[1] == pd.Timestamp("2024-01-01 00:00", tz="UTC") + pd.Timedelta(hours=53 + 5)
    lenient = build_features(bars, params=FeaturesParams(window=5, max_gap=1)).table
    assert lenient["segment"].nunique() == 2  # the 1-bar gap is spanned, the 3-bar one is not
    # The bar right after the 1-bar gap has every feature: its windows span the gap.
    spans = lenient.loc[lenient["timestamp"] == pd.Timestamp("2024-01-01", tz="UTC")
                        + pd.Timedelta(hours=91)]
    assert len(spans) == 1


def test_segments_never_span_symbols(panel: pd.DataFrame) -> None:
    table = build_features(panel.drop(columns="regime"), params=FeaturesParams()).table
    assert (table.groupby("segment")["symbol"].nunique() == 1).all()
    assert table["segment"].is_monotonic_increasing
    assert list(table.columns[:3]) == ["timestamp", "symbol", "segment"]
    keys = table[["symbol", "timestamp"]]
    assert keys.equals(keys.sort_values(["symbol", "timestamp"]).reset_index(drop=True))


def test_true_regime_passes_through(market: pd.DataFrame) -> None:
    table = build_features(market, params=FeaturesParams()).table
    truth = market.set_index("timestamp")["regime"]
    np.testing.assert_array_equal(table["regime"].to_numpy(),
                                  truth.loc[table["timestamp"]].to_numpy())


def test_spec_describes_the_columns(market: pd.DataFrame) -> None:
    spec = build_features(bars_only(market), params=MULTI).spec
    assert spec["base_timeframe"] == "1h" and spec["timeframes"] == ["1h", "4h", "1d"]
    by_name = {f["name"]: f for f in spec["features"]}
    assert by_name["parkinson_5_1d"]["lookback_bars"] == 5 * 24 + 23
    assert spec["lookback_bars"] == max(f["lookback_bars"] for f in spec["features"])
    assert spec["columns"] == [f["name"] for f in spec["features"]]


def test_timeframe_finer_than_bars_is_refused(market: pd.DataFrame) -> None:
    daily = bars_only(market).iloc[::24].reset_index(drop=True)
    daily["timestamp"] = pd.date_range("2020-01-01", periods=len(daily), freq="1D", tz="UTC")
    with pytest.raises(FeatureError, match="features.timeframes: 1h"):
        build_features(daily, params=FeaturesParams(timeframes=("1h",)))
    with pytest.raises(FeatureError, match="not a whole multiple"):
        build_features(bars_only(market), params=FeaturesParams(timeframes=("90m",)))


def test_too_little_data_is_refused() -> None:
    with pytest.raises(FeatureError, match="no bar has every feature"):
        build_features(hourly([100.0, 101.0, 102.0]), params=FeaturesParams())


def test_incomplete_higher_timeframe_bucket_is_a_gap() -> None:
    # An outage 10:00-13:00 leaves the 4h buckets [08,12) and [12,16) with 2 of 4 hours.
    bars = hourly([100.0 * (1 + 0.01 * np.sin(i / 3)) for i in range(400)])
    bars = bars.drop(index=[10, 11, 12, 13]).reset_index(drop=True)
    params = FeaturesParams(set="columns", columns=("parkinson_5_4h", "relative_volume_5_4h",
                                                    "log_return_1h"))
    table = build_features(bars, params=params).table
    after = table.loc[table["timestamp"] > pd.Timestamp("2024-01-01 13:00", tz="UTC")]
    # The first row after the outage with a 4h value needs five complete buckets after it.
    first = after["timestamp"].min()
    assert first == pd.Timestamp("2024-01-01 16:00", tz="UTC") + pd.Timedelta(hours=4 * 5 - 1)
    # The same data with the outage filled in gives those rows the same values (no
    # half bucket ever entered a window).
    full = build_features(hourly([100.0 * (1 + 0.01 * np.sin(i / 3)) for i in range(400)]),
                          params=params).table.set_index("timestamp")
    np.testing.assert_allclose(after.set_index("timestamp")["parkinson_5_4h"],
                               full.loc[after["timestamp"], "parkinson_5_4h"],
                               rtol=1e-12, atol=0)


def test_embargo_keeps_validation_free_of_training_bars(market: pd.DataFrame) -> None:
    from regimelab.params import SplitParams
    from regimelab.split import split_features

    params = FeaturesParams(set="columns", columns=("parkinson_5_1d", "log_return_1h",
                                                    "close_vwap_ratio_5_4h"))
    bars = bars_only(market)
    result = build_features(bars, params=params)
    split = split_features(result.table, params=SplitParams(),
                           lookback_bars=result.spec["lookback_bars"],
                           base=pd.Timedelta(hours=1))
    val_start = split.report["val_start"]
    # Change every training bar's range and volume: no val or test row may move.
    changed = bars.copy()
    before = changed["timestamp"] < val_start
    changed.loc[before, "high"] *= 1.05
    changed.loc[before, "low"] *= 0.95
    changed.loc[before, "volume"] *= 3.0
    again = build_features(changed, params=params).table.set_index("timestamp")
    for name in ("val", "test"):
        frame = split.frames[name].set_index("timestamp")
        np.testing.assert_array_equal(again.loc[frame.index, result.spec["columns"]].to_numpy(),
                                      frame[result.spec["columns"]].to_numpy())
