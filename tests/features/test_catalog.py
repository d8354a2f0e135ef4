"""Known answers: each feature kind against a hand computation on a small frame."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from regimelab.exceptions import FeatureError
from regimelab.features.catalog import (
    FeatureDef,
    halflives_at,
    parse_feature,
    resolve_max_gap,
    select_features,
)
from regimelab.params import FeaturesParams

OPEN = [100.0, 101.0, 103.0, 102.0, 104.0, 103.5, 106.0]
HIGH = [101.5, 103.5, 104.0, 104.5, 105.0, 107.0, 108.0]
LOW = [99.0, 100.5, 101.0, 101.5, 102.5, 103.0, 105.5]
CLOSE = [101.0, 103.0, 102.0, 104.0, 103.5, 106.0, 107.5]
VOLUME = [10.0, 12.0, 0.0, 15.0, 9.0, 20.0, 11.0]
BARS = {k: np.array(v) for k, v in
        dict(open=OPEN, high=HIGH, low=LOW, close=CLOSE, volume=VOLUME).items()}
T = len(CLOSE) - 1  # the last bar, where every window below is full


def feature(name: str) -> np.ndarray:
    return parse_feature(name).compute(BARS)


def test_log_return_and_volume_change() -> None:
    np.testing.assert_allclose(feature("log_return_1h")[T], math.log(107.5 / 106.0),
                               rtol=1e-14, atol=0)
    assert np.isnan(feature("log_return_1h")[0])
    expected = math.log(1 + 11.0) - math.log(1 + 20.0)
    np.testing.assert_allclose(feature("log_volume_change_1h")[T], expected, rtol=1e-14, atol=0)
    # A zero-volume bar stays finite.
    assert np.isfinite(feature("log_volume_change_1h")[2])


def test_parkinson() -> None:
    w = 3
    hl = [math.log(HIGH[i] / LOW[i]) ** 2 for i in range(T - w + 1, T + 1)]
    expected = math.sqrt(sum(hl) / w / (4 * math.log(2)))
    np.testing.assert_allclose(feature("parkinson_3_1h")[T], expected, rtol=1e-13, atol=0)
    assert np.isnan(feature("parkinson_3_1h")[w - 2])
    assert np.isfinite(feature("parkinson_3_1h")[w - 1])


def test_return_zscore() -> None:
    r = [math.log(CLOSE[i] / CLOSE[i - 1]) for i in range(1, len(CLOSE))]
    window = r[-4:]
    expected = (window[-1] - statistics.mean(window)) / statistics.stdev(window)
    np.testing.assert_allclose(feature("return_zscore_4_1h")[T], expected, rtol=1e-12, atol=0)


def test_relative_volume_and_vwap() -> None:
    w = 3
    vols = VOLUME[T - w + 1:]
    np.testing.assert_allclose(feature("relative_volume_3_1h")[T], VOLUME[T] / (sum(vols) / w),
                               rtol=1e-14, atol=0)
    typical = [(HIGH[i] + LOW[i] + CLOSE[i]) / 3 for i in range(T - w + 1, T + 1)]
    vwap = sum(p * v for p, v in zip(typical, vols)) / sum(vols)
    np.testing.assert_allclose(feature("log_close_vwap_3_1h")[T], math.log(CLOSE[T] / vwap),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(feature("close_vwap_ratio_3_1h")[T], CLOSE[T] / vwap,
                               rtol=1e-14, atol=0)


def test_range_and_body() -> None:
    np.testing.assert_allclose(feature("hl_range_pct_1h")[T], 100 * (108.0 - 105.5) / 107.5,
                               rtol=1e-14, atol=0)
    np.testing.assert_allclose(feature("close_open_pct_1h")[T], 100 * (107.5 - 106.0) / 106.0,
                               rtol=1e-14, atol=0)


def test_log_range_is_the_log_of_each_bars_parkinson_volatility() -> None:
    values = FeatureDef("log_range", (), "1h").compute(BARS)
    expected = [math.log(math.log(h / lo) / math.sqrt(4 * math.log(2)))
                for h, lo in zip(HIGH, LOW)]
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=0)
    # A flat bar (high == low, inside an outage) is floored, not minus infinity.
    flat = {**BARS, "high": BARS["low"].copy()}
    values = FeatureDef("log_range", (), "1h").compute(flat)
    np.testing.assert_allclose(values, math.log(1e-8 / math.sqrt(4 * math.log(2))),
                               rtol=1e-12, atol=0)


def test_range_set_is_one_log_range_per_timeframe() -> None:
    defs = select_features(FeaturesParams(set="range", timeframes=("1h", "4h")))
    assert [d.name for d in defs] == ["log_range_1h", "log_range_4h"]
    assert resolve_max_gap(FeaturesParams(set="range")) == 0


def test_v2_kinds() -> None:
    changes = [CLOSE[i] - CLOSE[i - 1] for i in range(T - 2, T + 1)]
    gain = sum(max(c, 0) for c in changes) / 3
    loss = sum(max(-c, 0) for c in changes) / 3
    np.testing.assert_allclose(feature("rsi_3_1h")[T], 100 * gain / (gain + loss),
                               rtol=1e-13, atol=0)
    np.testing.assert_allclose(feature("momentum_2_1h")[T], math.log(CLOSE[T] / CLOSE[T - 2]),
                               rtol=1e-14, atol=0)
    r = [math.log(CLOSE[i] / CLOSE[i - 1]) for i in range(T - 1, T + 1)]
    np.testing.assert_allclose(feature("realized_vol_2_1h")[T],
                               math.sqrt(sum(x * x for x in r) / 2), rtol=1e-13, atol=0)
    sma2 = sum(CLOSE[T - 1:]) / 2
    sma3 = sum(CLOSE[T - 2:]) / 3
    np.testing.assert_allclose(feature("ma_ratio_2_3_1h")[T], math.log(sma2 / sma3),
                               rtol=1e-12, atol=0)
    logv = [math.log1p(v) for v in VOLUME[T - 2:]]
    z = (logv[-1] - statistics.mean(logv)) / statistics.stdev(logv)
    np.testing.assert_allclose(feature("volume_zscore_3_1h")[T], z, rtol=1e-12, atol=0)


def test_macd_is_a_truncated_ema_difference() -> None:
    closes = np.linspace(100.0, 140.0, 200) + np.sin(np.arange(200))
    bars = {"open": closes, "high": closes + 1, "low": closes - 1, "close": closes,
            "volume": np.ones(200)}

    def ema(x: np.ndarray, span: int) -> float:
        alpha = 2 / (span + 1)
        weights = [(1 - alpha) ** k for k in range(4 * span)]
        recent = x[::-1][: 4 * span]
        return sum(w * v for w, v in zip(weights, recent)) / sum(weights)

    line = parse_feature("macd_3_6_2_1h").compute(bars)
    t = 150
    np.testing.assert_allclose(line[t], (ema(closes[: t + 1], 3) - ema(closes[: t + 1], 6))
                               / closes[t], rtol=1e-10, atol=0)
    # The signal is the EMA of the line; the histogram is their difference.
    signal = parse_feature("macd_signal_3_6_2_1h").compute(bars)
    np.testing.assert_allclose(signal[t], ema(line[: t + 1], 2), rtol=1e-10, atol=0)
    hist = parse_feature("macd_hist_3_6_2_1h").compute(bars)
    np.testing.assert_allclose(hist[t], line[t] - signal[t], rtol=1e-12, atol=1e-15)
    assert parse_feature("macd_signal_3_6_2_1h").lookback == 4 * 6 + 4 * 2 - 1
    assert np.isnan(signal[4 * 6 + 4 * 2 - 3]) and np.isfinite(signal[4 * 6 + 4 * 2 - 2])


@pytest.mark.parametrize("name", ["log_return_1h", "parkinson_20_4h", "macd_hist_12_26_9_1d",
                                  "ma_ratio_10_50_15m"])
def test_names_round_trip(name: str) -> None:
    assert parse_feature(name).name == name


@pytest.mark.parametrize("name, message", [
    ("volatility_20_1h", "unknown feature"),
    ("parkinson_1h", "takes 1 integer parameter"),
    ("parkinson_20", "unknown feature"),
    ("log_return_5_1h", "takes 0 integer parameter"),
])
def test_bad_names(name: str, message: str) -> None:
    with pytest.raises(FeatureError, match=message):
        parse_feature(name)


def test_sets() -> None:
    v1 = select_features(FeaturesParams(set="v1", timeframes=("1h", "4h")))
    assert len(v1) == 16 and v1[0] == FeatureDef("log_return", (), "1h")
    assert {d.timeframe for d in v1} == {"1h", "4h"}
    v2 = select_features(FeaturesParams(set="v2"))
    names = [d.name for d in v2]
    assert names[:8] == [d.name for d in select_features(FeaturesParams())]
    assert {"rsi_14_1h", "macd_12_26_9_1h", "macd_signal_12_26_9_1h", "macd_hist_12_26_9_1h",
            "ma_ratio_10_50_1h", "realized_vol_72_1h", "momentum_6_1h",
            "volume_zscore_20_1h"} <= set(names)
    cols = select_features(FeaturesParams(set="columns", columns=("parkinson_20_1d",
                                                                  "log_return_1h")))
    assert [d.name for d in cols] == ["parkinson_20_1d", "log_return_1h"]
    with pytest.raises(FeatureError, match="more than once"):
        select_features(FeaturesParams(set="columns", columns=("log_return_1h",) * 2))


def ewm_by_hand(values: list[float], slots: list[int], h: int) -> float:
    """The EWM at the last bar, from the definition: weights 2^(-age/h), ages < 6 h."""
    last = slots[-1]
    pairs = [(2.0 ** (-(last - s) / h), v) for s, v in zip(slots, values) if last - s < 6 * h]
    return sum(w * v for w, v in pairs) / sum(w for w, _ in pairs)


def test_ewm_kinds_with_a_missing_bar() -> None:
    """Slot 3 of the grid is missing: the return over it counts per bar period. With a
    half-life of 1 the window at slot 7 is slots 2..7."""
    slots = [0, 1, 2, 4, 5, 6, 7]
    bars = {**BARS, "slot": np.array(slots, dtype=np.int64)}
    h = 1
    steps = [slots[i] - slots[i - 1] for i in range(1, len(slots))]
    r = [math.log(CLOSE[i] / CLOSE[i - 1]) for i in range(1, len(CLOSE))]
    mean = ewm_by_hand([x / s for x, s in zip(r, steps)], slots[1:], h)
    down2 = ewm_by_hand([min(x, 0.0) ** 2 / s for x, s in zip(r, steps)], slots[1:], h)
    sq = ewm_by_hand([x * x / s for x, s in zip(r, steps)], slots[1:], h)

    def value(name: str) -> float:
        return float(parse_feature(name).compute(bars)[T])

    assert steps[2] == 2 and down2 > 0
    np.testing.assert_allclose(value("ewm_return_1_1h"), mean, rtol=1e-12, atol=0)
    np.testing.assert_allclose(value("ewm_downside_1_1h"), math.log(math.sqrt(down2)),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(value("ewm_sortino_1_1h"), mean / math.sqrt(down2),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(value("ewm_vol_1_1h"), math.log(math.sqrt(sq)), rtol=1e-12,
                               atol=0)
    logv = [math.log1p(v) for v in VOLUME]
    level = sum(logv[2:]) / 5  # the five bars present in slots 2..7
    np.testing.assert_allclose(value("ewm_volume_1_1h"),
                               ewm_by_hand(logv, slots, h) - level, rtol=1e-12, atol=1e-15)
    assert parse_feature("ewm_return_24_1h").lookback == 6 * 24 + 1
    assert parse_feature("ewm_volume_24_1h").lookback == 6 * 24
    assert parse_feature("ewm_sortino_24_1h").timed and not parse_feature("rsi_14_1h").timed


def test_ewm_deviation_floor_keeps_a_rising_window_finite() -> None:
    closes = np.linspace(100.0, 120.0, 40)
    bars = {"open": closes, "high": closes, "low": closes, "close": closes,
            "volume": np.ones(40)}
    downside = parse_feature("ewm_downside_3_1h").compute(bars)[-1]
    sortino = parse_feature("ewm_sortino_3_1h").compute(bars)[-1]
    np.testing.assert_allclose(downside, math.log(1e-8), rtol=1e-15, atol=0)
    assert np.isfinite(sortino) and sortino > 0


def test_regime_set_and_auto_halflives() -> None:
    names = [d.name for d in select_features(FeaturesParams(set="regime"))]
    assert names == [f"{k}_{h}_1h" for k in ("ewm_return", "ewm_downside", "ewm_sortino")
                     for h in (24, 72, 240)]
    daily = select_features(FeaturesParams(set="regime", timeframes=("1d",), volume=True))
    assert [d.name for d in daily][-3:] == ["ewm_volume_5_1d", "ewm_volume_15_1d",
                                            "ewm_volume_45_1d"]
    assert halflives_at(FeaturesParams(), "4h") == (6, 18, 60)
    assert halflives_at(FeaturesParams(), "15m") == (96, 288, 960)
    assert halflives_at(FeaturesParams(halflives=(10, 30)), "1d") == (10, 30)
    # Explicit half-lives apply at every timeframe, in its own bars.
    two = select_features(FeaturesParams(set="regime", timeframes=("1h", "4h"), halflives=(4,)))
    assert [d.name for d in two] == ["ewm_return_4_1h", "ewm_downside_4_1h", "ewm_sortino_4_1h",
                                     "ewm_return_4_4h", "ewm_downside_4_4h", "ewm_sortino_4_4h"]


@pytest.mark.parametrize("params, expected", [
    (FeaturesParams(), 0),
    (FeaturesParams(set="v2"), 0),
    (FeaturesParams(set="columns", columns=("ewm_vol_24_1h",)), 0),
    (FeaturesParams(set="regime"), 48),
    (FeaturesParams(set="regime", timeframes=("4h", "1h")), 48),
    (FeaturesParams(set="regime", timeframes=("1d",)), 10),
    (FeaturesParams(set="regime", halflives=(12, 36)), 24),
    (FeaturesParams(set="regime", max_gap=3), 3),
])
def test_max_gap_auto(params: FeaturesParams, expected: int) -> None:
    assert resolve_max_gap(params) == expected
