"""Cleaning raw bars: duplicates, invalid rows by reason, flat bars, gaps and limits.

Hand-made frames with a known answer: which rows go, under which reason, how
many bars each gap is missing, and when ingestion must refuse the data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regimelab.data import BARS_COLUMNS, ingest, validate_bars
from regimelab.data.validate import DROP_REASONS, infer_freq
from regimelab.exceptions import InputDataError, ParamsError

T0 = pd.Timestamp("2024-01-01T00:00:00Z").as_unit("ns")
HEADER = "timestamp,open,high,low,close,volume"


def hours(*offsets: float) -> pd.Series:
    return pd.Series([T0 + pd.Timedelta(hours=h) for h in offsets], dtype="datetime64[ns, UTC]")


def raw_frame(offsets: list[float], *, symbol: str = "BTCUSDT", file: str = "raw.csv",
              values: list[tuple[float, float, float, float, float]] | None = None
              ) -> pd.DataFrame:
    """Valid bars at ``T0 + offsets`` hours, as read_raw gives them, unless ``values`` says."""
    if values is None:
        values = [(100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i, 5.0 + i)
                  for i in range(len(offsets))]
    o, h, lo, c, v = (list(col) for col in zip(*values, strict=True))
    return pd.DataFrame({
        "timestamp": hours(*offsets), "symbol": symbol, "open": o, "high": h, "low": lo,
        "close": c, "volume": v, "_file": file,
    })


def write_csv_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def iso(offset: float) -> str:
    return (T0 + pd.Timedelta(hours=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- duplicates --------------------------------------------------------------------------------


def test_exact_duplicates_are_dropped_and_counted() -> None:
    raw = raw_frame([0, 1, 2, 3])
    raw = pd.concat([raw, raw.iloc[[1, 3, 3]]], ignore_index=True)
    result = validate_bars(raw)
    assert result.report["rows_in"] == 7
    assert result.report["duplicate_rows"] == 3
    assert result.report["rows_out"] == 4
    assert result.report["invalid_rows"] == 0
    pd.testing.assert_series_equal(result.bars["timestamp"], hours(0, 1, 2, 3),
                                   check_names=False)
    assert not result.bars.duplicated(["symbol", "timestamp"]).any()


def test_same_timestamp_for_two_symbols_is_not_a_duplicate() -> None:
    raw = pd.concat([raw_frame([0, 1], symbol="ETHUSDT"), raw_frame([0, 1])],
                    ignore_index=True)
    result = validate_bars(raw)
    assert result.report["duplicate_rows"] == 0
    assert result.bars["symbol"].tolist() == ["BTCUSDT", "BTCUSDT", "ETHUSDT", "ETHUSDT"]


def test_conflicting_duplicate_names_the_timestamp_and_file(tmp_path: Path) -> None:
    lines = [HEADER, f"{iso(0)},100,102,99,101,5", f"{iso(1)},101,103,100,102,6",
             f"{iso(2)},102,104,101,103,7", f"{iso(1)},101,103,100,102.5,6"]
    path = write_csv_lines(tmp_path / "btcusdt_1h.csv", lines)
    with pytest.raises(InputDataError, match=r"btcusdt_1h\.csv: 1 timestamp\(s\) appear more "
                       r"than once with different values: 2024-01-01T01:00:00Z \(BTCUSDT\)"):
        ingest(str(path))


def test_conflict_between_files_names_both_files(tmp_path: Path) -> None:
    write_csv_lines(tmp_path / "btcusdt-1h-2024-01.csv",
                    [HEADER, f"{iso(0)},100,102,99,101,5", f"{iso(1)},101,103,100,102,6"])
    write_csv_lines(tmp_path / "btcusdt-1h-2024-02.csv",
                    [HEADER, f"{iso(1)},101,103,100,102,7", f"{iso(2)},102,104,101,103,7"])
    with pytest.raises(InputDataError, match=r"2024-01\.csv, .*2024-02\.csv: .*"
                       r"2024-01-01T01:00:00Z"):
        ingest(str(tmp_path / "btcusdt-1h-*.csv"))


# --- invalid rows, by reason -------------------------------------------------------------------


def test_each_drop_reason_is_counted_once_per_row() -> None:
    nan, inf = np.nan, np.inf
    good = (100.0, 102.0, 99.0, 101.0, 5.0)
    cases: list[tuple[str | None, tuple[float, float, float, float, float]]] = [
        ("missing_or_non_numeric", (100.0, 102.0, 99.0, nan, 5.0)),
        ("missing_or_non_numeric", (100.0, 102.0, 99.0, 101.0, nan)),
        ("infinite", (100.0, inf, 99.0, 101.0, 5.0)),
        ("infinite", (100.0, 102.0, 99.0, 101.0, -inf)),
        ("non_positive_price", (0.0, 102.0, 0.0, 101.0, 5.0)),
        ("non_positive_price", (-1.0, 102.0, -2.0, 101.0, 5.0)),
        ("high_below_low", (100.0, 98.0, 99.0, 98.5, 5.0)),
        ("open_close_outside_range", (103.0, 102.0, 99.0, 101.0, 5.0)),
        ("open_close_outside_range", (100.0, 102.0, 99.0, 98.0, 5.0)),
        ("negative_volume", (100.0, 102.0, 99.0, 101.0, -0.5)),
        # Several problems at once: counted once, under the first reason in DROP_REASONS.
        ("missing_or_non_numeric", (-1.0, 98.0, 99.0, 150.0, nan)),
        ("non_positive_price", (-1.0, -3.0, -2.0, 5.0, -1.0)),
        ("high_below_low", (100.0, 90.0, 99.0, 150.0, -1.0)),
    ]
    n_good = 7
    values = [good] * n_good + [v for _, v in cases]
    offsets = list(range(len(values)))
    raw = raw_frame(offsets, values=values)
    raw.loc[len(raw)] = [pd.NaT, "BTCUSDT", *good, "raw.csv"]  # bad_timestamp
    # Shuffle so that counting does not depend on the order rows arrive in.
    raw = raw.sample(frac=1.0, random_state=0).reset_index(drop=True)

    result = validate_bars(raw, max_invalid_fraction=1.0)

    expected = dict.fromkeys(DROP_REASONS, 0)
    for reason, _ in cases:
        expected[reason] += 1
    expected["bad_timestamp"] = 1
    assert result.report["dropped"] == expected
    assert result.report["invalid_rows"] == len(cases) + 1 == sum(expected.values())
    assert result.report["rows_out"] == n_good
    assert result.report["rows_in"] == len(raw)
    np.testing.assert_allclose(result.report["invalid_fraction"], (len(cases) + 1) / len(raw),
                               rtol=1e-12, atol=0)
    pd.testing.assert_series_equal(result.bars["timestamp"], hours(*range(n_good)),
                                   check_names=False)


def test_bad_values_in_a_file_are_counted_under_their_reason(tmp_path: Path) -> None:
    lines = [HEADER] + [f"{iso(i)},100,102,99,101,5" for i in range(6)] + [
        f"{iso(6)},100,102,99,abc,5",        # non-numeric text
        f"{iso(7)},100,inf,99,101,5",        # infinite
        "yesterday,100,102,99,101,5",        # unparseable timestamp
        f"{iso(9)},100,102,99,101,-5",       # negative volume
    ]
    result = ingest(str(write_csv_lines(tmp_path / "btcusdt_1h.csv", lines)),
                    max_invalid_fraction=1.0)
    dropped = result.report["dropped"]
    assert {k: v for k, v in dropped.items() if v} == {
        "bad_timestamp": 1, "missing_or_non_numeric": 1, "infinite": 1, "negative_volume": 1}
    assert result.report["rows_out"] == 6
    assert np.isfinite(result.bars[["open", "high", "low", "close", "volume"]].to_numpy()).all()


def test_too_many_invalid_rows_stop_ingestion(tmp_path: Path) -> None:
    # 1 invalid row of 10: 10% invalid.
    lines = [HEADER] + [f"{iso(i)},100,102,99,101,5" for i in range(9)]
    lines.append(f"{iso(9)},100,98,99,101,5")
    path = write_csv_lines(tmp_path / "btcusdt_1h.csv", lines)
    with pytest.raises(InputDataError, match=r"btcusdt_1h\.csv: 10\.00% of rows are invalid "
                       r"\(high_below_low 1\), above ingest\.max_invalid_fraction = 0\.05"):
        ingest(str(path), max_invalid_fraction=0.05)
    with pytest.raises(InputDataError, match="above ingest.max_invalid_fraction = 0.01"):
        ingest(str(path))
    at_limit = ingest(str(path), max_invalid_fraction=0.1)
    assert at_limit.report["rows_out"] == 9
    assert at_limit.report["invalid_below_1pct"] is False


# --- zero-volume bars, regime column -----------------------------------------------------------


def test_zero_volume_flat_bars_are_counted_and_kept() -> None:
    values = [
        (100.0, 102.0, 99.0, 101.0, 5.0),
        (101.0, 101.0, 101.0, 101.0, 0.0),  # flat, no volume: counted
        (101.0, 101.0, 101.0, 101.0, 0.0),  # again, at the next hour: counted
        (101.0, 101.0, 101.0, 101.0, 3.0),  # flat with volume: not counted
        (101.0, 103.0, 100.0, 102.0, 0.0),  # no volume but moved: not counted
        (102.0, 104.0, 101.0, 103.0, 6.0),
    ]
    result = validate_bars(raw_frame(list(range(6)), values=values))
    assert result.report["zero_volume_flat_bars"] == 2
    assert result.report["symbols"]["BTCUSDT"]["zero_volume_flat_bars"] == 2
    assert result.report["rows_out"] == 6
    np.testing.assert_allclose(result.bars["volume"].to_numpy(), [5, 0, 0, 3, 0, 6],
                               rtol=0, atol=0)


def test_regime_column_passes_through_as_int64(tmp_path: Path) -> None:
    lines = ["timestamp,open,high,low,close,volume,regime"]
    lines += [f"{iso(i)},100,102,99,101,5,{r}" for i, r in enumerate([0, 0, 2, 1, 1])]
    # An invalid row without a regime: the column reads as float, the bars still hold int64.
    lines.append(f"{iso(5)},100,98,99,101,5,")
    result = ingest(str(write_csv_lines(tmp_path / "synth_1h.csv", lines)),
                    max_invalid_fraction=1.0)
    assert list(result.bars.columns) == [*BARS_COLUMNS, "regime"]
    assert result.bars["regime"].dtype == np.int64
    assert result.bars["regime"].tolist() == [0, 0, 2, 1, 1]


def test_missing_regime_on_a_valid_bar_is_an_error(tmp_path: Path) -> None:
    lines = ["timestamp,open,high,low,close,volume,regime"]
    lines += [f"{iso(i)},100,102,99,101,5,{r}" for i, r in enumerate(["0", "", "1"])]
    path = write_csv_lines(tmp_path / "synth_1h.csv", lines)
    with pytest.raises(InputDataError, match=r"synth_1h\.csv: column 'regime' has missing"):
        ingest(str(path))


def test_no_regime_column_unless_the_input_has_one(tmp_path: Path) -> None:
    lines = [HEADER, *[f"{iso(i)},100,102,99,101,5" for i in range(3)]]
    result = ingest(str(write_csv_lines(tmp_path / "btcusdt_1h.csv", lines)))
    assert list(result.bars.columns) == list(BARS_COLUMNS)


# --- gaps and the bar interval -----------------------------------------------------------------


def test_gaps_on_a_series_with_known_holes() -> None:
    # Hourly; 03:00 missing (1 bar), 10:00-14:00 missing (5 bars), 17:00-18:00 missing (2 bars).
    offsets = [0, 1, 2, 4, 5, 6, 7, 8, 9, 15, 16, 19, 20]
    result = validate_bars(raw_frame(offsets))
    report = result.report
    assert report["gaps"] == 3
    assert report["missing_bars"] == 8
    info = report["symbols"]["BTCUSDT"]
    assert info["freq"] == "1h"
    assert info["gaps"] == 3 and info["missing_bars"] == 8
    assert info["largest_gap_bars"] == 5
    assert info["largest_gap_start"] == T0 + pd.Timedelta(hours=10)
    assert info["largest_gap_end"] == T0 + pd.Timedelta(hours=14)
    assert info["first"] == T0 and info["last"] == T0 + pd.Timedelta(hours=20)
    gaps = result.gaps
    assert gaps["missing_bars"].tolist() == [1, 5, 2]
    pd.testing.assert_series_equal(gaps["last_before"], hours(2, 9, 16), check_names=False)
    pd.testing.assert_series_equal(gaps["first_after"], hours(4, 15, 19), check_names=False)
    pd.testing.assert_series_equal(gaps["first_missing"], hours(3, 10, 17), check_names=False)
    pd.testing.assert_series_equal(gaps["last_missing"], hours(3, 14, 18), check_names=False)
    # Gaps are reported, never bridged: no bar is invented.
    assert report["rows_out"] == len(offsets)


def test_gaps_are_per_symbol() -> None:
    raw = pd.concat([raw_frame([0, 1, 2, 3], symbol="BTCUSDT"),
                     raw_frame([10, 11, 13], symbol="ETHUSDT")], ignore_index=True)
    result = validate_bars(raw)
    assert result.gaps["symbol"].tolist() == ["ETHUSDT"]
    assert result.report["symbols"]["BTCUSDT"]["gaps"] == 0
    assert result.report["symbols"]["BTCUSDT"]["largest_gap_bars"] == 0
    assert result.report["symbols"]["ETHUSDT"]["largest_gap_bars"] == 1


def test_freq_auto_versus_explicit() -> None:
    # 2-hourly bars with one missing bar between 06:00 and 10:00.
    raw = raw_frame([0, 2, 4, 6, 10, 12])
    auto = validate_bars(raw)
    assert auto.report["symbols"]["BTCUSDT"]["freq"] == "2h"
    assert auto.report["gaps"] == 1 and auto.report["missing_bars"] == 1
    # Told the bars are hourly, every 2-hour step misses one bar, the 4-hour step three.
    hourly = validate_bars(raw, freq="1h")
    assert hourly.report["symbols"]["BTCUSDT"]["freq"] == "1h"
    assert hourly.report["gaps"] == 5
    assert hourly.report["missing_bars"] == 4 * 1 + 3
    assert hourly.report["symbols"]["BTCUSDT"]["largest_gap_bars"] == 3
    # An explicit interval equal to the data's finds what auto finds.
    explicit = validate_bars(raw, freq="2h")
    pd.testing.assert_frame_equal(explicit.gaps, auto.gaps)


def test_off_grid_bars_are_dropped() -> None:
    # A 03:30 candle among hourly ones would overlap its neighbours (and leak into the
    # 03:00 bar's 4h bucket): it is dropped as off_grid.
    result = validate_bars(raw_frame(list(range(200)) + [3.5]), max_invalid_fraction=0.01)
    assert result.report["dropped"]["off_grid"] == 1
    assert len(result.bars) == 200
    assert (result.bars["timestamp"].dt.minute == 0).all()


def test_grid_phase_comes_from_the_data() -> None:
    # Daily bars stamped 05:00 UTC (a market whose day starts there) are all on their grid.
    result = validate_bars(raw_frame([5 + 24 * d for d in range(30)]))
    assert result.report["dropped"]["off_grid"] == 0
    assert result.report["symbols"]["BTCUSDT"]["freq"] == "1d"


def test_missing_symbol_is_a_drop_reason() -> None:
    raw = raw_frame(list(range(200)))
    raw.loc[[3, 50], "symbol"] = None
    result = validate_bars(raw)
    assert result.report["dropped"]["missing_symbol"] == 2
    assert result.bars["symbol"].unique().tolist() == ["BTCUSDT"]


def test_infer_freq_takes_the_most_common_step() -> None:
    assert infer_freq(hours(0, 1, 2, 3, 5, 9, 10)) == pd.Timedelta(hours=1)
    assert infer_freq(hours(0, 4, 8, 12, 13)) == pd.Timedelta(hours=4)


def test_single_bar_needs_an_explicit_freq(tmp_path: Path) -> None:
    path = write_csv_lines(tmp_path / "btcusdt_1h.csv", [HEADER, f"{iso(0)},100,102,99,101,5"])
    with pytest.raises(InputDataError, match=r"btcusdt_1h\.csv: .*single .*ingest\.freq"):
        ingest(str(path))
    result = ingest(str(path), freq="1h")
    assert result.report["rows_out"] == 1 and result.report["gaps"] == 0


def test_bad_explicit_freq_names_the_key() -> None:
    with pytest.raises(ParamsError, match="ingest.freq: '1 hour'"):
        validate_bars(raw_frame([0, 1]), freq="1 hour")


# --- the raw file ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["btcusdt_1h.csv", "btcusdt_1h.csv.gz", "btcusdt_1h.parquet"])
def test_raw_file_is_never_modified(tmp_path: Path, name: str) -> None:
    # Unsorted, with a duplicate and an invalid row: everything ingest cleans.
    raw = raw_frame([3, 1, 0, 2, 4]).drop(columns="_file")
    raw = pd.concat([raw, raw.iloc[[3]]], ignore_index=True)
    raw.loc[4, "high"] = 1.0
    path = tmp_path / name
    if name.endswith(".parquet"):
        raw.to_parquet(path)
    else:
        raw.to_csv(path, index=False)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    result = ingest(str(path), max_invalid_fraction=1.0)
    assert result.report["rows_out"] == 4
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert path.stat().st_mtime_ns == mtime
    assert result.report["files"] == [{"path": path.as_posix(), "rows": 6, "sha256": before}]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
