"""Reading raw OHLCV files: every accepted shape gives the same clean bars.

One small hand-made series is written in each format and shape that ingest
accepts; each must come back as exactly the same bars. Then: where the symbol
comes from, several files and several symbols, and every unusable input
stopping with a one-line message that names the file and the problem.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from regimelab.data import BARS_COLUMNS, ingest, read_raw
from regimelab.data.readers import parse_timestamps, symbol_from_filename
from regimelab.exceptions import InputDataError

EPOCH_S = 1704067200 + 3600 * np.arange(6)  # 2024-01-01T00:00Z, hourly
TIMES = pd.to_datetime(EPOCH_S, unit="s", utc=True).as_unit("ns")
OPEN = [100.0, 101.5, 102.25, 101.0, 103.5, 104.0]
HIGH = [102.0, 103.0, 103.5, 104.0, 105.0, 104.5]
LOW = [99.5, 100.75, 100.5, 100.25, 103.0, 102.0]
CLOSE = [101.5, 102.25, 101.0, 103.5, 104.0, 102.5]
VOLUME = [10.5, 12.0, 0.25, 7.0, 8.5, 9.0]
N = len(EPOCH_S)


def expected_bars(symbol: str = "BTCUSDT") -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": pd.Series(TIMES, dtype="datetime64[ns, UTC]"),
        "symbol": [symbol] * N,
        "open": OPEN, "high": HIGH, "low": LOW, "close": CLOSE, "volume": VOLUME,
    })


def write_lines(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def value_fields(i: int) -> list[str]:
    return [repr(OPEN[i]), repr(HIGH[i]), repr(LOW[i]), repr(CLOSE[i]), repr(VOLUME[i])]


def rows(stamps: list[str], order: range | list[int] = range(N)) -> list[str]:
    return [",".join([stamps[i], *value_fields(i)]) for i in order]


def iso_z() -> list[str]:
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in TIMES]


def epoch(scale: int) -> list[str]:
    return [str(int(s) * scale) for s in EPOCH_S]


def binance_rows(stamps: list[str]) -> list[str]:
    # open_time, o, h, l, c, v, close_time, quote volume, trades, taker base, taker quote, ignore
    out = []
    for i in range(N):
        close_time = str(int(stamps[i]) + int(stamps[1]) - int(stamps[0]) - 1)
        out.append(",".join([stamps[i], *value_fields(i), close_time, "1234.5", "42", "5.0",
                             "600.25", "0"]))
    return out


def frame_with(timestamps: pd.Series | pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": timestamps, "open": OPEN, "high": HIGH, "low": LOW,
                         "close": CLOSE, "volume": VOLUME})


def _csv_iso_z(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", ["timestamp,open,high,low,close,volume",
                                              *rows(iso_z())])


def _csv_iso_naive(d: Path) -> Path:
    stamps = [t.strftime("%Y-%m-%d %H:%M:%S") for t in TIMES]
    return write_lines(d / "btcusdt_1h.csv", ["timestamp,open,high,low,close,volume",
                                              *rows(stamps)])


def _csv_gz(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv.gz", ["timestamp,open,high,low,close,volume",
                                                 *rows(iso_z())])


def _iso_plus_0200(d: Path) -> Path:
    local = TIMES.tz_convert("Etc/GMT-2")  # UTC+02:00
    stamps = [t.isoformat() for t in local]
    assert stamps[0] == "2024-01-01T02:00:00+02:00"
    return write_lines(d / "btcusdt_1h.csv", ["timestamp,open,high,low,close,volume",
                                              *rows(stamps)])


def _epoch_seconds(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", ["time,open,high,low,close,volume",
                                              *rows(epoch(1))])


def _epoch_ms_header(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", ["timestamp,open,high,low,close,volume",
                                              *rows(epoch(1000))])


def _headerless_epoch_ms(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", rows(epoch(1000)))


def _headerless_iso(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", rows(iso_z()))


def _binance_ms(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", binance_rows(epoch(1000)))


def _binance_us(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", binance_rows(epoch(1_000_000)))


def _binance_ms_then_us(d: Path) -> Path:
    # Binance's archives switched from milliseconds to microseconds in 2025.
    ms, us = binance_rows(epoch(1000)), binance_rows(epoch(1_000_000))
    return write_lines(d / "btcusdt_1h.csv", ms[:3] + us[3:])


def _binance_header(d: Path) -> Path:
    header = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
              "taker_buy_volume,taker_buy_quote_volume,ignore")
    return write_lines(d / "btcusdt_1h.csv", [header, *binance_rows(epoch(1000))])


def _aliases_capitalised(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", ["Date,Open,High,Low,Close,Volume",
                                              *rows(iso_z())])


def _aliases_short(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", ["time,o,h,l,c,v", *rows(epoch(1000))])


def _volume_base_and_quote(d: Path) -> Path:
    lines = ["date,open,high,low,close,Volume BTC,Volume USDT"]
    lines += [f"{row},{VOLUME[i] * 100 + 1}" for i, row in enumerate(rows(iso_z()))]
    return write_lines(d / "btcusdt_1h.csv", lines)


def _volume_quote_listed_first(d: Path) -> Path:
    lines = ["date,open,high,low,close,Volume USDT,Volume BTC"]
    values = [row.rsplit(",", 1) for row in rows(iso_z())]
    lines += [f"{head},{VOLUME[i] * 100 + 1},{vol}" for i, (head, vol) in enumerate(values)]
    return write_lines(d / "btcusdt_1h.csv", lines)


def _columns_reordered(d: Path) -> Path:
    lines = ["volume,close,timestamp,low,open,high"]
    stamps = iso_z()
    lines += [f"{VOLUME[i]!r},{CLOSE[i]!r},{stamps[i]},{LOW[i]!r},{OPEN[i]!r},{HIGH[i]!r}"
              for i in range(N)]
    return write_lines(d / "btcusdt_1h.csv", lines)


def _descending(d: Path) -> Path:
    return write_lines(d / "btcusdt_1h.csv", ["timestamp,open,high,low,close,volume",
                                              *rows(iso_z(), order=list(range(N))[::-1])])


def _parquet_naive(d: Path) -> Path:
    path = d / "btcusdt_1h.parquet"
    frame_with(TIMES.tz_localize(None)).to_parquet(path)
    return path


def _parquet_tz_aware(d: Path) -> Path:
    path = d / "btcusdt_1h.parquet"
    frame_with(TIMES.tz_convert("America/New_York")).to_parquet(path)
    return path


def _parquet_datetime_index(d: Path) -> Path:
    path = d / "btcusdt_1h.parquet"
    frame_with(TIMES).set_index("timestamp").to_parquet(path)
    return path


def _parquet_epoch_ms(d: Path) -> Path:
    path = d / "btcusdt_1h.parquet"
    frame_with(pd.Series(EPOCH_S * 1000, dtype="int64")).to_parquet(path)
    return path


SHAPES: dict[str, Callable[[Path], Path]] = {
    "csv-iso-z": _csv_iso_z,
    "csv-iso-naive": _csv_iso_naive,
    "csv-gz": _csv_gz,
    "iso-plus-0200": _iso_plus_0200,
    "epoch-seconds": _epoch_seconds,
    "epoch-ms-header": _epoch_ms_header,
    "headerless-epoch-ms": _headerless_epoch_ms,
    "headerless-iso": _headerless_iso,
    "binance-ms": _binance_ms,
    "binance-us": _binance_us,
    "binance-ms-then-us": _binance_ms_then_us,
    "binance-with-header": _binance_header,
    "aliases-Date-Open": _aliases_capitalised,
    "aliases-time-o-h-l-c-v": _aliases_short,
    "volume-base-and-quote": _volume_base_and_quote,
    "volume-quote-listed-first": _volume_quote_listed_first,
    "columns-reordered": _columns_reordered,
    "descending": _descending,
    "parquet-naive": _parquet_naive,
    "parquet-tz-aware": _parquet_tz_aware,
    "parquet-datetime-index": _parquet_datetime_index,
    "parquet-epoch-ms": _parquet_epoch_ms,
}


@pytest.mark.parametrize("write", SHAPES.values(), ids=SHAPES.keys())
def test_every_accepted_shape_gives_the_same_bars(tmp_path: Path,
                                                  write: Callable[[Path], Path]) -> None:
    path = write(tmp_path)
    result = ingest(str(path))
    pd.testing.assert_frame_equal(result.bars, expected_bars())
    assert result.report["rows_in"] == N
    assert result.report["rows_out"] == N
    assert result.report["gaps"] == 0
    assert result.report["symbols"]["BTCUSDT"]["freq"] == "1h"


def test_read_raw_keeps_every_row_and_marks_what_does_not_parse(tmp_path: Path) -> None:
    lines = ["timestamp,open,high,low,close,volume", *rows(iso_z())]
    lines[2] = lines[2].replace(iso_z()[1], "not a time")
    lines[3] = lines[3].replace(repr(CLOSE[2]), "n/a")
    raw = read_raw(write_lines(tmp_path / "x_1h.csv", lines))
    assert list(raw.columns) == list(BARS_COLUMNS)
    assert len(raw) == N
    assert raw["timestamp"].isna().tolist() == [False, True, False, False, False, False]
    assert raw["close"].isna().tolist() == [False, False, True, False, False, False]
    assert (raw["symbol"] == "X").all()


@pytest.mark.parametrize(("values", "expected"), [
    (pd.Series([1704067200, 1704070800]), ["2024-01-01T00:00Z", "2024-01-01T01:00Z"]),
    (pd.Series([1704067200000, 1704070800000]), ["2024-01-01T00:00Z", "2024-01-01T01:00Z"]),
    (pd.Series([1704067200000000, 1704070800000000]),
     ["2024-01-01T00:00Z", "2024-01-01T01:00Z"]),
    (pd.Series([1704067200 * 10**9, 1704070800 * 10**9]),
     ["2024-01-01T00:00Z", "2024-01-01T01:00Z"]),
    (pd.Series(["2024-01-01T05:30:00+05:30", "2023-12-31T20:00:00-05:00"]),
     ["2024-01-01T00:00Z", "2024-01-01T01:00Z"]),
    (pd.Series(["2024-01-01", "2024-01-01T01:00:00"]),
     ["2024-01-01T00:00Z", "2024-01-01T01:00Z"]),
], ids=["seconds", "milliseconds", "microseconds", "nanoseconds", "offsets", "naive-is-utc"])
def test_parse_timestamps_normalises_to_utc(values: pd.Series, expected: list[str]) -> None:
    parsed = parse_timestamps(values)
    assert parsed.dtype == "datetime64[ns, UTC]"
    pd.testing.assert_series_equal(
        parsed, pd.Series(pd.to_datetime(expected, utc=True), dtype="datetime64[ns, UTC]"))


# --- where the symbol comes from -------------------------------------------------------------


@pytest.mark.parametrize(("name", "symbol"), [
    ("btcusdt_1h.csv.gz", "BTCUSDT"),
    ("ethusdt-4h.csv", "ETHUSDT"),
    ("SOLUSDT-15m.parquet", "SOLUSDT"),
    ("BTCUSDT-1h-2024-01.csv", "BTCUSDT"),
    ("BTCUSDT-1h-2024-01-15.csv.gz", "BTCUSDT"),
    ("BTC-USD.csv", "BTC-USD"),
    ("eth_1d.txt", "ETH"),
])
def test_symbol_from_filename(name: str, symbol: str) -> None:
    assert symbol_from_filename(Path(name)) == symbol


def test_symbol_from_symbol_column(tmp_path: Path) -> None:
    lines = ["symbol,timestamp,open,high,low,close,volume"]
    lines += [f"ETHUSDT,{row}" for row in rows(iso_z())]
    result = ingest(str(write_lines(tmp_path / "btcusdt_1h.csv", lines)))
    pd.testing.assert_frame_equal(result.bars, expected_bars("ETHUSDT"))


def test_symbol_from_params_overrides_the_file_name(tmp_path: Path) -> None:
    path = _csv_gz(tmp_path)
    result = ingest(str(path), symbol="SOLUSDT")
    pd.testing.assert_frame_equal(result.bars, expected_bars("SOLUSDT"))
    assert list(result.report["symbols"]) == ["SOLUSDT"]


def test_glob_over_binance_monthly_files_is_one_symbol(tmp_path: Path) -> None:
    klines = binance_rows(epoch(1000))
    # The months overlap by one identical bar, as consecutive exports often do.
    write_lines(tmp_path / "BTCUSDT-1h-2024-02.csv", klines[2:])
    write_lines(tmp_path / "BTCUSDT-1h-2024-01.csv", klines[:3])
    result = ingest(str(tmp_path / "BTCUSDT-1h-*.csv"))
    pd.testing.assert_frame_equal(result.bars, expected_bars("BTCUSDT"))
    assert result.report["rows_in"] == N + 1
    assert result.report["duplicate_rows"] == 1
    assert [f["path"] for f in result.report["files"]] == [
        (tmp_path / "BTCUSDT-1h-2024-01.csv").as_posix(),
        (tmp_path / "BTCUSDT-1h-2024-02.csv").as_posix(),
    ]
    assert [f["rows"] for f in result.report["files"]] == [3, 4]


def test_glob_of_one_file_per_symbol(tmp_path: Path) -> None:
    header = "timestamp,open,high,low,close,volume"
    write_lines(tmp_path / "ethusdt_1h.csv", [header, *rows(iso_z())])
    write_lines(tmp_path / "btcusdt_1h.csv.gz", [header, *rows(iso_z())])
    write_lines(tmp_path / "notes.md", ["not matched by the glob"])
    result = ingest(str(tmp_path / "*usdt_1h.csv*"))
    expected = pd.concat([expected_bars("BTCUSDT"), expected_bars("ETHUSDT")],
                         ignore_index=True)
    pd.testing.assert_frame_equal(result.bars, expected)
    assert sorted(result.report["symbols"]) == ["BTCUSDT", "ETHUSDT"]


def test_multi_symbol_file_is_sorted_by_symbol_then_timestamp(tmp_path: Path) -> None:
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    stamps = iso_z()
    # Interleaved, newest first: ETH before BTC, so neither order survives by accident.
    for i in reversed(range(N)):
        for sym in ("ETHUSDT", "BTCUSDT"):
            lines.append(",".join([stamps[i], sym, *value_fields(i)]))
    result = ingest(str(write_lines(tmp_path / "mixed.csv", lines)))
    expected = pd.concat([expected_bars("BTCUSDT"), expected_bars("ETHUSDT")],
                         ignore_index=True)
    pd.testing.assert_frame_equal(result.bars, expected)
    # BTC's last bar and ETH's first are not neighbours in time: no gap across symbols.
    assert result.report["gaps"] == 0
    assert {s: v["rows"] for s, v in result.report["symbols"].items()} == {
        "BTCUSDT": N, "ETHUSDT": N}


# --- input that cannot be used ---------------------------------------------------------------

HEADER = "timestamp,open,high,low,close,volume"


def _missing(d: Path) -> tuple[str, str]:
    return str(d / "nope_1h.csv"), "file not found"


def _glob_without_match(d: Path) -> tuple[str, str]:
    return str(d / "*.csv"), "no file matches"


def _directory(d: Path) -> tuple[str, str]:
    (d / "folder.csv").mkdir()
    return str(d / "folder.csv"), "not a file"


def _empty(d: Path) -> tuple[str, str]:
    (d / "empty.csv").write_bytes(b"")
    return str(d / "empty.csv"), "file is empty"


def _empty_gz(d: Path) -> tuple[str, str]:
    with gzip.open(d / "empty.csv.gz", "wb"):
        pass
    return str(d / "empty.csv.gz"), "file is empty"


def _blank_lines(d: Path) -> tuple[str, str]:
    (d / "blank.csv").write_text("\n\n\n", encoding="utf-8")
    return str(d / "blank.csv"), "file is empty"


def _header_only(d: Path) -> tuple[str, str]:
    return str(write_lines(d / "header.csv", [HEADER])), "has a header but no rows"


def _header_only_parquet(d: Path) -> tuple[str, str]:
    path = d / "header.parquet"
    frame_with(TIMES).iloc[:0].to_parquet(path)
    return str(path), "has a header but no rows"


def _no_ohlc_columns(d: Path) -> tuple[str, str]:
    lines = ["timestamp,price,amount", *[f"{t},1.0,2.0" for t in iso_z()]]
    return str(write_lines(d / "ticks.csv", lines)), "no recognisable open/high/low/close/volume"


def _no_timestamp_column(d: Path) -> tuple[str, str]:
    lines = ["when,open,high,low,close,volume", *rows(iso_z())]
    return str(write_lines(d / "nowhen.csv", lines)), "no recognisable timestamp column"


def _non_numeric_prices(d: Path) -> tuple[str, str]:
    lines = [HEADER, *[f"{t},1.0,2.0,0.5,abc,3.0" for t in iso_z()]]
    return str(write_lines(d / "text.csv", lines)), "column 'close' has no numeric values"


def _unparseable_timestamps(d: Path) -> tuple[str, str]:
    lines = [HEADER, *rows([f"someday {i}" for i in range(N)])]
    return str(write_lines(d / "when.csv", lines)), "no value parses as a timestamp"


def _every_row_invalid(d: Path) -> tuple[str, str]:
    # high below low throughout: parseable, but not one usable bar.
    lines = [HEADER, *[f"{t},1.0,0.5,2.0,1.0,3.0" for t in iso_z()]]
    return str(write_lines(d / "upside_down.csv", lines)), "all 6 rows are invalid"


def _unknown_format(d: Path) -> tuple[str, str]:
    (d / "bars.json").write_text("[]", encoding="utf-8")
    return str(d / "bars.json"), "unknown format"


def _corrupt_parquet(d: Path) -> tuple[str, str]:
    (d / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    return str(d / "broken.parquet"), "not a readable Parquet file"


def _corrupt_gzip(d: Path) -> tuple[str, str]:
    (d / "broken.csv.gz").write_bytes(b"timestamp,open\n1,2\n")
    return str(d / "broken.csv.gz"), "cannot be read"


def _headerless_wrong_width(d: Path) -> tuple[str, str]:
    lines = [f"{row},1.0" for row in rows(epoch(1000))]
    return str(write_lines(d / "seven.csv", lines)), "no header and 7 columns"


BAD_INPUTS: dict[str, Callable[[Path], tuple[str, str]]] = {
    "missing-file": _missing,
    "glob-without-match": _glob_without_match,
    "directory": _directory,
    "empty-file": _empty,
    "empty-gzip": _empty_gz,
    "blank-lines": _blank_lines,
    "header-only": _header_only,
    "header-only-parquet": _header_only_parquet,
    "no-ohlc-columns": _no_ohlc_columns,
    "no-timestamp-column": _no_timestamp_column,
    "non-numeric-prices": _non_numeric_prices,
    "unparseable-timestamps": _unparseable_timestamps,
    "every-row-invalid": _every_row_invalid,
    "unknown-format": _unknown_format,
    "corrupt-parquet": _corrupt_parquet,
    "corrupt-gzip": _corrupt_gzip,
    "headerless-7-columns": _headerless_wrong_width,
}


@pytest.mark.parametrize("make", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_unusable_input_is_a_one_line_error_naming_file_and_problem(
        tmp_path: Path, make: Callable[[Path], tuple[str, str]]) -> None:
    path, problem = make(tmp_path)
    with pytest.raises(InputDataError, match=rf"^{re.escape(path)}: .*{re.escape(problem)}") as exc:
        ingest(path)
    assert "\n" not in str(exc.value)


def test_eight_digit_dates_are_dates(tmp_path: Path) -> None:
    lines = ["date,open,high,low,close,volume"]
    lines += [",".join([f"202401{day:02d}", *value_fields(i)]) for i, day in enumerate(range(1, 7))]
    bars = ingest(str(write_lines(tmp_path / "btcusdt_1d.csv", lines))).bars
    assert bars["timestamp"].tolist() == list(pd.date_range("2024-01-01", periods=6,
                                                            freq="1D", tz="UTC"))


def test_epochs_before_1990_are_refused() -> None:
    parsed = parse_timestamps(pd.Series([1704067200, 42, 631152000 - 1]))
    assert parsed.iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert parsed.iloc[1:].isna().all()
