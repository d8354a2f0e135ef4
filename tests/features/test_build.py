"""Batch features: no look-ahead at any timeframe, live/batch parity, gaps and segments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from regimelab.exceptions import FeatureError
from regimelab.features import build_features, latest_features
from regimelab.params import FeaturesParams
from regimelab.synth import make_market

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


# The regime set on the 3,000-bar market: half-lives short enough for it, a 4h
# timeframe, and max_gap auto (2 x 3 = 6 bars), which bridges its outages of up
# to 5 bars, so windows hold gaps.
REGIME = FeaturesParams(set="regime", timeframes=("1h", "4h"), halflives=(3, 8), volume=True)


def rows_after_gaps(table: pd.DataFrame, base: pd.Timedelta, within: int) -> list[int]:
    """Rows up to ``within`` bars after each gap: their windows hold the gap."""
    ts = table["timestamp"]
    after = np.flatnonzero(ts.diff().to_numpy()[1:] > base) + 1
    return sorted({int(i + k) for i in after for k in (0, 1, within // 2, within)
                   if i + k < len(table)})


def test_regime_set_bridges_short_outages(market: pd.DataFrame) -> None:
    result = build_features(bars_only(market), params=REGIME)
    assert result.spec["max_gap"] == 6 and result.spec["params"]["max_gap"] == "auto"
    assert result.spec["halflives"] == {"1h": [3, 8], "4h": [3, 8]}
    assert result.table["segment"].nunique() == 1  # every outage is at most 5 bars
    ts = result.table["timestamp"]
    assert (ts.diff() > pd.Timedelta(hours=1)).sum() == 4  # and each is inside the table
    by_name = {f["name"]: f for f in result.spec["features"]}
    # 6 x 8 periods + the close before them, + max_gap + 1 bridged, in 4h bars of 4 hours.
    assert by_name["ewm_sortino_8_4h"]["lookback_bars"] == (6 * 8 + 1 + 6 + 1) * 4 + 3
    assert result.spec["lookback_bars"] == by_name["ewm_sortino_8_4h"]["lookback_bars"]


@pytest.mark.parametrize("cut", [700, 1337, 2001])
def test_regime_appending_future_bars_leaves_past_features_unchanged(
        market: pd.DataFrame, cut: int) -> None:
    full = build_features(bars_only(market), params=REGIME).table
    past = build_features(bars_only(market).iloc[:cut], params=REGIME).table
    merged = full.loc[full["timestamp"].isin(past["timestamp"])].reset_index(drop=True)
    assert len(merged) == len(past) > 100
    pd.testing.assert_frame_equal(merged, past, check_exact=True)


def test_regime_changing_a_bar_changes_no_earlier_feature(market: pd.DataFrame) -> None:
    bars = bars_only(market)
    base = build_features(bars, params=REGIME).table
    shocked = bars.copy()
    i = int(np.flatnonzero(bars["timestamp"] == base["timestamp"].iloc[len(base) // 2])[0])
    shocked.loc[i, ["close", "high", "volume"]] = shocked.loc[i, ["close", "high", "volume"]] * 1.3
    after = build_features(shocked, params=REGIME).table
    t = bars["timestamp"].iloc[i]
    pd.testing.assert_frame_equal(after.loc[after["timestamp"] < t],
                                  base.loc[base["timestamp"] < t], check_exact=True)
    moved = after.loc[after["timestamp"] == t, "ewm_return_3_1h"].to_numpy()
    assert len(moved) == 1
    assert not np.array_equal(moved, base.loc[base["timestamp"] == t, "ewm_return_3_1h"])


def test_regime_latest_bar_equals_batch_row_exactly(market: pd.DataFrame) -> None:
    bars = bars_only(market)
    result = build_features(bars, params=REGIME)
    table, columns = result.table, result.spec["columns"]
    rng = np.random.default_rng(1)
    rows = sorted({*rng.choice(len(table), size=8, replace=False).tolist(),
                   *rows_after_gaps(table, pd.Timedelta(hours=1), within=24)})
    for row in rows:
        t = table["timestamp"].iloc[row]
        live = latest_features(bars.loc[bars["timestamp"] <= t], spec=result.spec)
        assert live["timestamp"].iloc[0] == t
        np.testing.assert_array_equal(live[columns].to_numpy()[0],
                                      table[columns].to_numpy()[row])


class Echo:
    """A stand-in model whose filtered probabilities are its observations, so
    ``latest_series`` hands back the last bar's (identity-scaled) features."""

    def __init__(self, n_states: int) -> None:
        self.n_states = n_states
        self.transmat_ = np.eye(n_states)  # `now` also answers the chain's forecasts

    def filter_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return X


@pytest.mark.parametrize("params", [REGIME, FeaturesParams(set="regime", halflives=(4,))])
def test_now_on_its_lookback_equals_batch_row(market: pd.DataFrame,
                                              params: FeaturesParams) -> None:
    from regimelab.inference import latest_series

    bars = bars_only(market)
    result = build_features(bars, params=params)
    table, columns = result.table, result.spec["columns"]
    n = len(columns)
    manifest = {"feature_spec": result.spec, "features": columns,
                "scaler": {"method": "standard", "clip": None, "columns": columns,
                           "center": [0.0] * n, "scale": [1.0] * n, "n_samples": 1}}
    ts_all = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    cols_all = {c: bars[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close",
                                                                 "volume")}
    rows = [0, 1, *rows_after_gaps(table, pd.Timedelta(hours=1), within=20), len(table) - 1]
    for row in rows:
        end = int(np.searchsorted(ts_all, table["timestamp"].iloc[row].value, side="right"))
        out = latest_series(Echo(n), manifest, "X", ts_all[:end],
                            {c: v[:end] for c, v in cols_all.items()}, lookback=3)
        assert out["timestamp"] == table["timestamp"].iloc[row]
        np.testing.assert_array_equal([out[f"p_filter_{k}"] for k in range(n)],
                                      table[columns].to_numpy()[row])


def test_regime_gaps_within_max_gap_are_bridged_by_time() -> None:
    closes = [100.0 * np.exp(0.01 * np.sin(i / 2.0)) for i in range(80)]
    bars = hourly(closes).drop(index=[40, 41]).reset_index(drop=True)  # a 2-bar outage
    params = FeaturesParams(set="regime", halflives=(2,))  # max_gap auto: 4
    table = build_features(bars, params=params).table.set_index("timestamp")
    assert table["segment"].nunique() == 1
    # At 43:00 the window is 32:00..43:00: present bars 32..39, 42, 43; the 42:00
    # return covers three periods and enters as one per-bar observation.
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    hours = [*range(32, 40), 42, 43]
    r = {h: np.log(closes[h] / closes[h - 1]) for h in hours}
    r[42] = np.log(closes[42] / closes[39]) / 3
    w = {h: 2.0 ** (-(43 - h) / 2) for h in hours}
    expected = sum(w[h] * r[h] for h in hours) / sum(w.values())
    np.testing.assert_allclose(table.loc[t0 + pd.Timedelta(hours=43), "ewm_return_2_1h"],
                               expected, rtol=1e-12, atol=0)


def test_regime_gap_over_max_gap_cuts_a_segment_and_restarts_windows() -> None:
    closes = [100.0 * np.exp(0.01 * np.sin(i / 2.0)) for i in range(120)]
    bars = hourly(closes).drop(index=range(40, 46)).reset_index(drop=True)  # 6 > max_gap 4
    table = build_features(bars, params=FeaturesParams(set="regime", halflives=(2,))).table
    assert table["segment"].nunique() == 2
    # Each run needs 12 periods of returns: its first row is 12 hours after its first bar.
    first = table.groupby("segment")["timestamp"].min()
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    assert list(first) == [t0 + pd.Timedelta(hours=12), t0 + pd.Timedelta(hours=46 + 12)]
    bridged = build_features(bars, params=FeaturesParams(set="regime", halflives=(2,),
                                                         max_gap=6)).table
    assert bridged["segment"].nunique() == 1 and len(bridged) == len(bars) - 12


def test_v1_and_v2_are_unchanged_by_max_gap_auto(market: pd.DataFrame) -> None:
    for params in (FeaturesParams(), MULTI):
        auto = build_features(bars_only(market), params=params)
        zero = build_features(bars_only(market), params=dataclasses.replace(params, max_gap=0))
        assert auto.spec["max_gap"] == 0 and "halflives" not in auto.spec
        pd.testing.assert_frame_equal(auto.table, zero.table, check_exact=True)
        assert {k: v for k, v in auto.spec.items() if k != "params"} == \
            {k: v for k, v in zero.spec.items() if k != "params"}


@pytest.mark.parametrize("params", [
    FeaturesParams(set="regime", halflives=(2,)),  # max_gap auto: 4
    FeaturesParams(set="regime", timeframes=("4h",), halflives=(2,), max_gap=1, volume=True),
])
def test_live_equals_batch_where_a_window_edge_meets_a_gap(params: FeaturesParams) -> None:
    """Many short outages, so that windows start inside, just before and just after
    gaps and 4h buckets are cut short by them. Every bar through ``latest_series``
    (the `now` path), and for ``latest_features`` every bar whose lookback starts
    near a gap: each has the batch row exactly, or is refused where batch has none."""
    from regimelab.exceptions import InputDataError
    from regimelab.inference import latest_series

    bars = make_market(900, n_regimes=2, n_gaps=25, max_gap_bars=3, random_state=0
                       ).drop(columns="regime")
    result = build_features(bars, params=params)
    columns = result.spec["columns"]
    table = result.table.set_index("timestamp")[columns]
    n = len(columns)
    manifest = {"feature_spec": result.spec, "features": columns,
                "scaler": {"method": "standard", "clip": None, "columns": columns,
                           "center": [0.0] * n, "scale": [1.0] * n, "n_samples": 1}}
    ts = bars["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    cols = {c: bars[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close",
                                                          "volume")}
    hour = pd.Timedelta(hours=1)
    missing = pd.date_range(bars["timestamp"].iloc[0], bars["timestamp"].iloc[-1], freq="1h"
                            ).difference(bars["timestamp"])
    history = pd.Timedelta(result.spec["history"])
    checked = 0
    for i, t in enumerate(bars["timestamp"]):
        expected = table.loc[t].to_numpy(dtype="float64") if t in table.index else None
        try:
            out = latest_series(Echo(n), manifest, "X", ts[: i + 1],
                                {c: v[: i + 1] for c, v in cols.items()}, lookback=1)
            np.testing.assert_array_equal([out[f"p_filter_{k}"] for k in range(n)], expected)
        except InputDataError:
            assert expected is None, f"now refused {t}, which batch has"
        start = t + hour - history
        if np.abs((missing - start) / hour).min() <= 1:
            checked += 1
            try:
                live = latest_features(bars.iloc[: i + 1], spec=result.spec)
                np.testing.assert_array_equal(live[columns].to_numpy()[0], expected)
            except FeatureError:
                assert expected is None, f"latest_features refused {t}, which batch has"
    assert checked > 50 and len(table) > 600
