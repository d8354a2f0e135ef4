"""Validate and clean raw bars; report what was dropped and where the gaps are."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regimelab.data.readers import expand_paths, read_raw
from regimelab.exceptions import InputDataError
from regimelab.io import sha256_file
from regimelab.params import format_timeframe, parse_timeframe

log = logging.getLogger(__name__)

BARS_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")
KEY = ["symbol", "timestamp"]

# Each dropped row is counted once, under the first reason it meets, in this order.
DROP_REASONS = (
    "bad_timestamp",
    "missing_symbol",
    "missing_or_non_numeric",
    "infinite",
    "non_positive_price",
    "high_below_low",
    "open_close_outside_range",
    "negative_volume",
    "off_grid",
)


@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest` returns: the clean bars, the report and the gap table."""

    bars: pd.DataFrame
    report: dict[str, Any]
    gaps: pd.DataFrame


VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
NAT = np.iinfo(np.int64).min  # NaT, as int64 nanoseconds


def row_reasons(ts_missing: np.ndarray, symbol_missing: np.ndarray, values: np.ndarray
                ) -> np.ndarray:
    """Per row, the index into DROP_REASONS of its first problem, or -1 for a valid row.

    ``values`` has shape ``(n, 5)``: open, high, low, close, volume. The grid
    check (``off_grid``) needs the bar interval and is applied after.
    """
    prices = values[:, :4]
    o, h, lo, c, v = values.T
    with np.errstate(invalid="ignore"):
        checks = [
            ts_missing,
            symbol_missing,
            np.isnan(values).any(axis=1),
            np.isinf(values).any(axis=1),
            (prices <= 0).any(axis=1),
            h < lo,
            (o < lo) | (o > h) | (c < lo) | (c > h),
            v < 0,
        ]
    reason = np.full(len(values), -1, dtype=np.int64)
    for i in range(len(checks) - 1, -1, -1):
        reason[np.broadcast_to(checks[i], reason.shape)] = i
    return reason


def _invalid_reason(df: pd.DataFrame) -> np.ndarray:
    symbol = df["symbol"]
    return row_reasons(df["timestamp"].isna().to_numpy(),
                       (symbol.isna() | (symbol.astype(str).str.strip() == "")).to_numpy(),
                       df[list(VALUE_COLUMNS)].to_numpy(dtype="float64"))


def infer_step(ts_ns: np.ndarray) -> int:
    """The bar interval in nanoseconds: the most common positive step between sorted
    timestamps (int64 nanoseconds); a tie goes to the shorter step."""
    steps = np.diff(ts_ns)
    steps = steps[steps > 0]
    if len(steps) == 0:
        raise InputDataError("cannot infer the bar interval from a single timestamp; "
                             "set ingest.freq (e.g. 1h)")
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])  # the first maximum: the shortest of a tie


def off_grid(ts_ns: np.ndarray, step_ns: int) -> np.ndarray:
    """Whether each bar is off its grid: the interval and the most common phase within
    it (daily bars at 05:00 UTC have phase 5h)."""
    phase = ts_ns % step_ns
    values, counts = np.unique(phase, return_counts=True)
    return phase != values[np.argmax(counts)]


def infer_freq(timestamps: pd.Series) -> pd.Timedelta:
    """The bar interval: the most common positive step between sorted timestamps."""
    return pd.Timedelta(infer_step(timestamps.to_numpy(dtype="datetime64[ns]").view("int64")),
                        unit="ns")


def _bar_grids(df: pd.DataFrame, reason: np.ndarray, *, freq: str, source: str
               ) -> dict[str, pd.Timedelta]:
    """Each symbol's bar interval; marks rows off its grid in ``reason`` (in place).

    The grid is the interval and the most common phase of the timestamps
    within it (daily bars at 05:00 UTC have phase 5h). A bar off the grid, such
    as a 03:30 candle among hourly ones, would overlap its neighbours, so it is
    dropped as ``off_grid``.
    """
    valid = reason < 0
    ts_ns = df["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    off_grid_reason = DROP_REASONS.index("off_grid")
    freqs: dict[str, pd.Timedelta] = {}
    for symbol, group in df.loc[valid].groupby("symbol", sort=True):
        if freq != "auto":
            f = parse_timeframe(freq, key="ingest.freq")
        elif len(group) < 2:
            raise InputDataError(f"{source}: symbol {symbol} has a single valid bar, so its "
                                 "interval cannot be inferred; set ingest.freq (e.g. 1h)")
        else:
            f = infer_freq(group["timestamp"])
        reason[group.index[off_grid(ts_ns[group.index], int(f.value))]] = off_grid_reason
        freqs[str(symbol)] = f
    return freqs


def find_gaps(bars: pd.DataFrame, freqs: dict[str, pd.Timedelta]) -> pd.DataFrame:
    """One row per gap: symbol, last bar before, first bar after, missing bars.

    Parameters
    ----------
    bars : pandas.DataFrame
        Clean bars sorted by symbol then timestamp.
    freqs : dict
        The bar interval of each symbol.
    """
    rows = []
    for symbol, group in bars.groupby("symbol", sort=True):
        ts = group["timestamp"].reset_index(drop=True)
        step = ts.diff()
        freq = freqs[str(symbol)]
        is_gap = step > freq
        for i in np.flatnonzero(is_gap.to_numpy()):
            missing = int(round(step.iloc[i] / freq)) - 1
            rows.append({
                "symbol": str(symbol),
                "last_before": ts.iloc[i - 1],
                "first_after": ts.iloc[i],
                "first_missing": ts.iloc[i - 1] + freq,
                "last_missing": ts.iloc[i] - freq,
                "missing_bars": max(missing, 1),
            })
    columns = ["symbol", "last_before", "first_after", "first_missing", "last_missing",
               "missing_bars"]
    return pd.DataFrame(rows, columns=columns)


def _conflict_text(files: list[str], keys: list[tuple[str, pd.Timestamp]]) -> str:
    shown = ", ".join(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')} ({s})" for s, t in keys[:5])
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return (f"{', '.join(sorted(set(files)))}: {len(keys)} timestamp(s) appear more than once "
            f"with different values: {shown}{more}")


def _conflicts_message(df: pd.DataFrame) -> str | None:
    dup = df.duplicated(KEY, keep=False)
    if not dup.any():
        return None
    clash = df.loc[dup]
    keys = clash.drop_duplicates(KEY)
    return _conflict_text(list(clash["_file"]), list(zip(keys["symbol"], keys["timestamp"])))


def validate_bars(
    raw: pd.DataFrame,
    *,
    freq: str = "auto",
    max_invalid_fraction: float = 0.01,
    source: str = "input",
) -> IngestResult:
    """Clean raw bars from :func:`~regimelab.data.readers.read_raw`.

    Sorts by symbol and timestamp, drops exact duplicate rows, refuses a
    timestamp repeated with different values, drops invalid rows (counted by
    reason, see ``DROP_REASONS``), counts zero-volume flat bars (kept) and
    finds the gaps.

    Parameters
    ----------
    raw : pandas.DataFrame
        Standard columns plus ``_file`` (the file each row came from).
    freq : str
        The bar interval (``1h``) or ``auto`` to infer it per symbol.
    max_invalid_fraction : float
        Above this share of invalid rows, ingestion stops: the data is more
        likely misread than dirty.
    source : str
        How to name the input in messages.
    """
    rows_in = len(raw)
    df = raw.sort_values(KEY, kind="stable", na_position="last").reset_index(drop=True)

    value_cols = [c for c in df.columns if c != "_file"]
    # Only rows that share a key can be exact duplicates; comparing every column of
    # every row would cost more than the rest of validation.
    exact_dup = pd.Series(False, index=df.index)
    shared_key = df["timestamp"].notna() & df.duplicated(KEY, keep=False)
    if shared_key.any():
        exact_dup[shared_key] = df.loc[shared_key].duplicated(value_cols, keep="first")
    df = df.loc[~exact_dup].reset_index(drop=True)
    conflict = _conflicts_message(df.loc[df["timestamp"].notna()])
    if conflict is not None:
        raise InputDataError(conflict)

    reason = _invalid_reason(df)
    freqs = _bar_grids(df, reason, freq=freq, source=source)
    dropped = {name: int((reason == i).sum()) for i, name in enumerate(DROP_REASONS)}
    invalid = int((reason >= 0).sum())
    clean = df.loc[reason < 0].drop(columns="_file").reset_index(drop=True)
    if clean.empty:
        detail = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
        raise InputDataError(f"{source}: all {rows_in} rows are invalid ({detail})")
    invalid_fraction = invalid / rows_in
    if invalid_fraction > max_invalid_fraction:
        detail = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
        raise InputDataError(
            f"{source}: {invalid_fraction:.2%} of rows are invalid ({detail}), above "
            f"ingest.max_invalid_fraction = {max_invalid_fraction}; check the columns were read "
            "right, or raise the limit"
        )

    if "regime" in clean.columns:
        if clean["regime"].isna().any():
            raise InputDataError(f"{source}: column 'regime' has missing values")
        clean["regime"] = clean["regime"].astype("int64")
    clean["symbol"] = clean["symbol"].astype(str)
    flat_zero = (
        (clean["volume"] == 0)
        & (clean["open"] == clean["high"])
        & (clean["high"] == clean["low"])
        & (clean["low"] == clean["close"])
    )

    symbols: dict[str, Any] = {}
    for symbol, group in clean.groupby("symbol", sort=True):
        ts = group["timestamp"]
        symbols[str(symbol)] = {
            "rows": len(group),
            "first": ts.iloc[0],
            "last": ts.iloc[-1],
            "freq": format_timeframe(freqs[str(symbol)]),
            "zero_volume_flat_bars": int(flat_zero.loc[group.index].sum()),
        }
    gaps = find_gaps(clean, freqs)
    for symbol, info in symbols.items():
        g = gaps.loc[gaps["symbol"] == symbol]
        info["gaps"] = int(len(g))
        info["missing_bars"] = int(g["missing_bars"].sum())
        if len(g):
            big = g.loc[g["missing_bars"].idxmax()]
            info["largest_gap_bars"] = int(big["missing_bars"])
            info["largest_gap_start"] = big["first_missing"]
            info["largest_gap_end"] = big["last_missing"]
        else:
            info["largest_gap_bars"] = 0

    report: dict[str, Any] = {
        "rows_in": rows_in,
        "rows_out": len(clean),
        "duplicate_rows": int(exact_dup.sum()),
        "invalid_rows": invalid,
        "invalid_fraction": invalid_fraction,
        "invalid_below_1pct": invalid_fraction < 0.01,
        "dropped": dropped,
        "zero_volume_flat_bars": int(flat_zero.sum()),
        "gaps": int(len(gaps)),
        "missing_bars": int(gaps["missing_bars"].sum()) if len(gaps) else 0,
        "symbols": symbols,
    }
    columns = [*BARS_COLUMNS, *(["regime"] if "regime" in clean.columns else [])]
    log.info("%s: %d rows in, %d out (%d duplicates, %d invalid), %d gaps", source, rows_in,
             len(clean), report["duplicate_rows"], invalid, len(gaps))
    return IngestResult(bars=clean[columns], report=report, gaps=gaps)


@dataclass(frozen=True)
class SeriesBars:
    """One symbol's clean bars as arrays, oldest first: what :func:`clean_series` returns."""

    symbol: str
    timestamp: np.ndarray  # int64 nanoseconds since the epoch, UTC; sorted and unique
    columns: dict[str, np.ndarray]  # open, high, low, close, volume (float64)
    dropped: dict[str, int]  # invalid rows by reason, as in the ingest report
    duplicate_rows: int

    def __len__(self) -> int:
        return len(self.timestamp)


def _exact_duplicates(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows equal in timestamp and every value to an earlier row, as pandas'
    ``duplicated`` sees them (NaN equals NaN, -0.0 equals 0.0); rows without a
    timestamp are never duplicates. O(n log n): a request of identical bars is
    no slower than another."""
    dup = np.zeros(len(ts), dtype=bool)
    shared = ts != NAT
    shared[shared] = np.isin(ts[shared], ts[shared][np.diff(ts[shared], prepend=NAT) == 0])
    rows = np.flatnonzero(shared)
    if len(rows):
        canonical = np.where(np.isnan(values[rows]), np.nan, values[rows] + 0.0)
        keys = np.column_stack([ts[rows], canonical.view(np.int64)])
        _, first = np.unique(keys, axis=0, return_index=True)  # first of each distinct row
        dup[rows] = True
        dup[rows[first]] = False
    return dup


def clean_series(ts_ns: np.ndarray, values: np.ndarray, *, symbol: str, freq: str = "auto",
                 source: str = "input", advice: str = "set ingest.freq (e.g. 1h)"
                 ) -> SeriesBars:
    """One symbol's raw bars cleaned as :func:`validate_bars` cleans them (with
    ``max_invalid_fraction=1``: invalid rows are dropped, never an error), in numpy.

    For short series such as a request's recent bars, where pandas' fixed costs
    would be most of the time; a test checks that it keeps the same bars.

    Parameters
    ----------
    ts_ns : ndarray of int64, shape (n,)
        Open times in nanoseconds since the epoch, UTC; :data:`NAT` where missing.
    values : ndarray of float64, shape (n, 5)
        Open, high, low, close, volume.
    symbol : str
    freq : str
        The bar interval (``1h``) or ``auto`` to infer it.
    source : str
        How to name the input in messages.
    advice : str
        What the message about a single valid bar tells the user to do.

    Raises
    ------
    InputDataError
        If a timestamp repeats with different values, or the interval cannot be
        inferred from a single valid bar.
    """
    order = np.argsort(np.where(ts_ns == NAT, np.iinfo(np.int64).max, ts_ns), kind="stable")
    ts, values = ts_ns[order], np.asarray(values, dtype="float64")[order]
    dup = _exact_duplicates(ts, values)
    ts, values = ts[~dup], values[~dup]
    clash = (ts[1:] == ts[:-1]) & (ts[1:] != NAT)
    if clash.any():
        keys = [(symbol, pd.Timestamp(int(t), tz="UTC")) for t in np.unique(ts[1:][clash])]
        raise InputDataError(_conflict_text([source], keys))
    reason = row_reasons(ts == NAT, np.array(not str(symbol).strip()), values)
    valid = np.flatnonzero(reason < 0)
    if len(valid):
        if freq != "auto":
            step = int(parse_timeframe(freq, key="ingest.freq").value)
        elif len(valid) < 2:
            raise InputDataError(f"{source}: symbol {symbol} has a single valid bar, so its "
                                 f"interval cannot be inferred; {advice}")
        else:
            step = infer_step(ts[valid])
        reason[valid[off_grid(ts[valid], step)]] = DROP_REASONS.index("off_grid")
    keep = reason < 0
    return SeriesBars(
        symbol=str(symbol), timestamp=ts[keep],
        columns={c: np.ascontiguousarray(values[keep, i]) for i, c in enumerate(VALUE_COLUMNS)},
        dropped={name: int((reason == i).sum()) for i, name in enumerate(DROP_REASONS)},
        duplicate_rows=int(dup.sum()))


def ingest(
    path: str,
    *,
    symbol: str | None = None,
    freq: str = "auto",
    max_invalid_fraction: float = 0.01,
) -> IngestResult:
    """Read the file or files that ``path`` names (a path or a glob) and clean them.

    Returns
    -------
    IngestResult
        ``bars`` with the bars contract (timestamp UTC, symbol, open, high,
        low, close, volume, plus ``regime`` when the input carries one),
        ``report`` for ``metrics/ingest.json`` and ``gaps``, one row per gap.
    """
    paths = expand_paths(path)
    frames = []
    files = []
    for p in paths:
        frame = read_raw(p, symbol=symbol)
        frame["_file"] = str(p)
        frames.append(frame)
        files.append({"path": Path(p).as_posix(), "rows": len(frame), "sha256": sha256_file(p)})
    has_regime = {"regime" in f.columns for f in frames}
    if len(has_regime) > 1:
        raise InputDataError(f"{path}: some files have a 'regime' column and some do not")
    raw = pd.concat(frames, ignore_index=True)
    source = str(paths[0]) if len(paths) == 1 else path
    result = validate_bars(raw, freq=freq, max_invalid_fraction=max_invalid_fraction,
                           source=source)
    result.report["files"] = files
    return result
