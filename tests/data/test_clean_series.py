"""clean_series, the numpy path for a request's bars, keeps exactly what validate_bars keeps.

Random dirty series (shuffled, repeated, invalid and off-grid bars, missing
timestamps) go through both; the clean bars, the drop counts and the errors
must be the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regimelab.data import validate_bars
from regimelab.data.validate import NAT, VALUE_COLUMNS, clean_series
from regimelab.exceptions import InputDataError

T0 = pd.Timestamp("2024-01-01T00:00:00Z").value
HOUR = 3_600 * 10**9


def dirty_series(seed: int, n: int = 120) -> pd.DataFrame:
    """Hourly bars with every kind of problem ingest knows, shuffled."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pd.DataFrame({
        "ts": T0 + HOUR * np.arange(n),
        "open": close * (1 + rng.normal(0, 0.002, n)), "close": close,
        "volume": rng.gamma(2.0, 10.0, n),
    })
    frame["high"] = frame[["open", "close"]].max(axis=1) * 1.003
    frame["low"] = frame[["open", "close"]].min(axis=1) * 0.997
    rows = rng.choice(n, size=12, replace=False)
    frame.loc[rows[0], "close"] = -1.0  # non-positive
    frame.loc[rows[1], "high"] = frame.loc[rows[1], "low"] * 0.5  # high below low
    frame.loc[rows[2], "open"] = frame.loc[rows[2], "high"] * 2  # open outside the range
    frame.loc[rows[3], "volume"] = -3.0
    frame.loc[rows[4], "low"] = np.nan
    frame.loc[rows[5], "open"] = np.inf
    frame.loc[rows[6], "ts"] = NAT
    frame.loc[rows[7], "ts"] += HOUR // 2  # off the hourly grid
    frame.loc[rows[9], "volume"] = -0.0  # equal to 0.0 for duplicates
    # Exact duplicates: random rows, the row with a NaN (a duplicate), the row
    # without a timestamp (invalid twice, never a duplicate) and -0.0 against 0.0.
    repeats = pd.concat([frame.sample(4, random_state=seed), frame.loc[[rows[4], rows[6]]],
                         frame.loc[[rows[9]]].assign(volume=0.0)])
    frame = frame.drop(index=rows[8])  # a gap
    frame = pd.concat([frame, repeats], ignore_index=True)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def as_raw(frame: pd.DataFrame, symbol: str = "BTC") -> pd.DataFrame:
    ts = pd.to_datetime(frame["ts"].where(frame["ts"] != NAT), unit="ns", utc=True)
    return pd.DataFrame({"timestamp": ts.astype("datetime64[ns, UTC]"), "symbol": symbol,
                         **{c: frame[c].to_numpy() for c in VALUE_COLUMNS},
                         "_file": "request"})


def run_clean(frame: pd.DataFrame, **kwargs: object):
    return clean_series(frame["ts"].to_numpy(np.int64), frame[list(VALUE_COLUMNS)].to_numpy(),
                        symbol="BTC", source="request", **kwargs)


@pytest.mark.parametrize("seed", range(8))
def test_the_same_bars_and_counts_as_validate_bars(seed: int) -> None:
    frame = dirty_series(seed)
    expected = validate_bars(as_raw(frame), max_invalid_fraction=1.0)
    got = run_clean(frame)
    bars = expected.bars
    np.testing.assert_array_equal(
        got.timestamp, bars["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64"))
    for c in VALUE_COLUMNS:
        np.testing.assert_array_equal(got.columns[c], bars[c].to_numpy())
    assert got.dropped == expected.report["dropped"]
    assert got.duplicate_rows == expected.report["duplicate_rows"]
    assert sum(got.dropped.values()) >= 7  # the series really was dirty
    assert got.dropped["bad_timestamp"] == 2 and got.duplicate_rows >= 3


def test_an_explicit_interval_marks_the_same_bars_off_grid() -> None:
    frame = dirty_series(3)
    expected = validate_bars(as_raw(frame), freq="2h", max_invalid_fraction=1.0)
    got = run_clean(frame, freq="2h")
    assert got.dropped["off_grid"] == expected.report["dropped"]["off_grid"] > 40
    assert len(got) == len(expected.bars)


def test_a_repeated_timestamp_with_other_values_is_the_same_error() -> None:
    frame = dirty_series(5)
    clash = frame.loc[frame["ts"] != NAT].head(2).copy()
    clash["close"] *= 1.001
    clash["high"] *= 1.01
    frame = pd.concat([frame, clash], ignore_index=True)
    with pytest.raises(InputDataError) as batch:
        validate_bars(as_raw(frame), max_invalid_fraction=1.0)
    with pytest.raises(InputDataError) as series:
        run_clean(frame)
    assert str(series.value) == str(batch.value)
    assert "appear more than once with different values" in str(series.value)


def test_nothing_valid_is_an_empty_series_and_one_valid_bar_an_error() -> None:
    frame = pd.DataFrame({"ts": T0 + HOUR * np.arange(5), "open": 100.0, "high": 101.0,
                          "low": 99.0, "close": -1.0, "volume": 1.0})
    got = run_clean(frame)
    assert len(got) == 0 and got.dropped["non_positive_price"] == 5
    frame.loc[0, "close"] = 100.5
    with pytest.raises(InputDataError, match="single valid bar"):
        run_clean(frame)
    assert len(run_clean(frame, freq="1h")) == 1
