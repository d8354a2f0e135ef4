"""Read raw OHLCV files of many shapes into one standard frame.

Handles CSV, gzip CSV and Parquet; a header with common aliases
(``time``/``date``/``datetime``, ``o``/``h``/``l``/``c``/``v``, ``Volume``, ...)
or no header at all (six columns, or Binance's twelve-column kline export);
timestamps as ISO-8601 with or without a zone, or epoch seconds,
milliseconds, microseconds or nanoseconds. Everything becomes UTC.
"""

from __future__ import annotations

import glob
import gzip
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from regimelab.exceptions import InputDataError

log = logging.getLogger(__name__)

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")

# Normalised header name (lower case, letters and digits only) -> standard name.
# Order matters: the first alias present in a file wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "opentime", "datetime", "date", "time", "ts", "unix",
                  "unixtime", "timestampms", "datems", "timems", "opentimems", "t"),
    "open": ("open", "o", "openprice", "op"),
    "high": ("high", "h", "highprice", "hi"),
    "low": ("low", "l", "lowprice", "lo"),
    "close": ("close", "c", "closeprice", "last", "cl"),
    "volume": ("volume", "v", "vol", "basevolume", "volumebase", "baseassetvolume"),
    "symbol": ("symbol", "ticker", "pair", "instrument", "asset", "coin"),
    "regime": ("regime",),
}

BINANCE_KLINE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "close_time",
                         "quote_volume", "trades", "taker_base_volume", "taker_quote_volume",
                         "ignore")
PLAIN_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
QUOTE_CURRENCIES = {"usd", "usdt", "usdc", "busd", "fdusd", "tusd", "dai", "eur", "quote"}
# Epoch values that decode before this are not timestamps of market data (they are
# more likely YYYYMMDD dates or row numbers), so they are refused rather than guessed.
EARLIEST = np.datetime64("1990-01-01", "ns")

# A timeframe at the end of a file name, optionally followed by a date, as in
# ``btcusdt_1h`` or Binance's archives ``BTCUSDT-1h-2024-01`` and ``BTCUSDT-1h-2024-01-15``.
_TIMEFRAME_SUFFIX = re.compile(r"[_\-.](\d+)(m|min|h|d|w)([_\-.][\d_\-.]*)?$", re.IGNORECASE)


def expand_paths(pattern: str) -> list[Path]:
    """Files named by ``pattern``, a path or a glob, sorted; none is an error."""
    if glob.has_magic(pattern):
        paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not paths:
            raise InputDataError(f"{pattern}: no file matches this pattern")
        return paths
    path = Path(pattern)
    if not path.exists():
        raise InputDataError(f"{path}: file not found")
    if not path.is_file():
        raise InputDataError(f"{path}: not a file")
    return [path]


def file_format(path: Path) -> str:
    """``'csv'`` or ``'parquet'`` from the file name; anything else is an error."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise InputDataError(f"{path}: unknown format; expected .csv, .csv.gz or .parquet")


def symbol_from_filename(path: Path) -> str:
    """``btcusdt_1h.csv.gz`` gives ``BTCUSDT``: the stem without a timeframe suffix, upper case.

    A date after the timeframe goes too, so Binance's monthly files
    ``BTCUSDT-1h-2024-01.csv``, ``BTCUSDT-1h-2024-02.csv``, ... are one symbol.
    """
    stem = path.name
    for ext in (".gz", ".csv", ".txt", ".parquet", ".pq"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    stem = _TIMEFRAME_SUFFIX.sub("", stem)
    return stem.upper()


def _normalise(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _looks_numeric(values: list[str]) -> bool:
    try:
        for v in values:
            float(v)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> pd.DataFrame:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except (OSError, EOFError) as exc:
        raise InputDataError(f"{path}: cannot be read ({exc})") from None
    if not first.strip():
        raise InputDataError(f"{path}: file is empty")
    fields = [f.strip().strip('"') for f in first.rstrip("\r\n").split(",")]
    # A header never has numbers for its price columns; the first field may be an
    # ISO timestamp in a file without a header, so it does not decide.
    headerless = len(fields) > 1 and _looks_numeric(fields[1:])
    try:
        if headerless:
            if len(fields) == len(BINANCE_KLINE_COLUMNS):
                names: tuple[str, ...] = BINANCE_KLINE_COLUMNS
            elif len(fields) == len(PLAIN_COLUMNS):
                names = PLAIN_COLUMNS
            else:
                raise InputDataError(
                    f"{path}: no header and {len(fields)} columns; expected a header, 6 columns "
                    "(timestamp, open, high, low, close, volume) or Binance's 12-column klines"
                )
            df = pd.read_csv(path, header=None, names=list(names), usecols=list(PLAIN_COLUMNS))
        else:
            df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(f"{path}: not a readable CSV ({first_line})") from None
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputDataError(
            f"{path}: not a readable Parquet file ({type(exc).__name__})"
        ) from None
    # A frame saved as df.set_index("timestamp").to_parquet() comes back with its
    # timestamps in the index; they are a column here like in every other format.
    if not isinstance(df.index, pd.RangeIndex) and not df.columns.isin(df.index.names).any():
        df = df.reset_index()
    return df


def _resolve_columns(df: pd.DataFrame, path: Path) -> dict[str, str]:
    """Map standard names to the frame's own column names."""
    by_norm: dict[str, str] = {}
    for col in df.columns:
        by_norm.setdefault(_normalise(col), col)
    found: dict[str, str] = {}
    for std, aliases in ALIASES.items():
        for alias in aliases:
            if alias in by_norm:
                found[std] = by_norm[alias]
                break
    if "volume" not in found:
        # Exports such as "Volume BTC" / "Volume USDT": the base-asset one, not the quote's.
        candidates = [(n, c) for n, c in by_norm.items() if n.startswith("volume")]
        base = [c for n, c in candidates if n[len("volume"):] not in QUOTE_CURRENCIES]
        if candidates:
            found["volume"] = (base or [c for _, c in candidates])[0]
    missing = [c for c in ("timestamp", *VALUE_COLUMNS) if c not in found]
    if missing:
        shown = ", ".join(map(str, df.columns[:12]))
        raise InputDataError(
            f"{path}: no recognisable {'/'.join(missing)} column "
            f"(columns found: {shown}); expected names such as timestamp, open, high, low, "
            "close, volume"
        )
    return found


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse timestamps into ``datetime64[ns, UTC]``; unparseable values become NaT.

    Numbers are epoch times whose unit is told by their size, per value
    (seconds < 1e11 <= milliseconds < 1e14 <= microseconds < 1e17 <= nanoseconds),
    so a file that switches from milliseconds to microseconds, as Binance's
    archives did in 2025, still parses; an epoch before 1990 is refused (NaT).
    Eight-digit whole numbers such as 20240131 are dates. Strings are ISO-8601;
    a string without a zone is taken as UTC.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    # Tell epochs from date strings on a sample: converting every ISO string to a
    # number first would cost more than parsing the dates.
    sample = pd.to_numeric(values.dropna().head(1000), errors="coerce")
    if values.dtype.kind in "iuf" or sample.notna().mean() > 0.5:
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        finite = x[np.isfinite(x)]
        if len(finite) and ((finite >= 19000101) & (finite <= 21001231)
                            & (finite == np.floor(finite))).all():
            dates = pd.Series(x, index=values.index).astype("Int64").astype("string")
            return pd.to_datetime(dates, format="%Y%m%d", utc=True,
                                  errors="coerce").astype("datetime64[ns, UTC]")
        magnitude = np.abs(x)
        with np.errstate(invalid="ignore"):
            scale = np.select(
                [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17],
                [1e9, 1e6, 1e3],
                default=1.0,
            )
            ns = x * scale
        ok = np.isfinite(ns) & (np.abs(ns) < 9.2e18)
        out = np.full(len(x), np.datetime64("NaT"), dtype="datetime64[ns]")
        out[ok] = np.round(ns[ok]).astype("int64").view("datetime64[ns]")
        out[out < EARLIEST] = np.datetime64("NaT")
        return pd.Series(out, index=values.index).dt.tz_localize("UTC")
    return parse_text_timestamps(values.astype("string").str.strip())


def parse_text_timestamps(text: pd.Series | list[str]) -> pd.Series | pd.DatetimeIndex:
    """Parse stripped date strings (ISO-8601, else any format pandas reads) into
    ``datetime64[ns, UTC]``; unparseable values become NaT. A Series gives a Series,
    a list a DatetimeIndex."""
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    if parsed.isna().mean() > 0.5:
        parsed = pd.to_datetime(text, utc=True, format="mixed", errors="coerce")
    # Dates such as 9999-12-31 parse at a coarser resolution but do not fit in
    # nanoseconds: they are bad timestamps (NaT), not an overflow.
    fits = (parsed >= pd.Timestamp("1678-01-01", tz="UTC")) & (
        parsed <= pd.Timestamp("2262-04-11", tz="UTC"))
    return parsed.where(fits).astype("datetime64[ns, UTC]")


def read_raw(path: Path, *, symbol: str | None = None) -> pd.DataFrame:
    """Read one raw file into standard columns, without dropping anything.

    Parameters
    ----------
    path : Path
        A CSV, CSV.gz or Parquet file.
    symbol : str, optional
        Symbol for a file without a ``symbol`` column; by default it comes
        from the file name.

    Returns
    -------
    pandas.DataFrame
        ``timestamp`` (UTC, NaT where it did not parse), ``symbol``, ``open``,
        ``high``, ``low``, ``close``, ``volume`` (float, NaN where not numeric)
        and ``regime`` when the file has one; one row per input row.
    """
    fmt = file_format(path)
    df = _read_csv(path) if fmt == "csv" else _read_parquet(path)
    if len(df) == 0:
        raise InputDataError(f"{path}: has a header but no rows")
    cols = _resolve_columns(df, path)
    out = pd.DataFrame({"timestamp": parse_timestamps(df[cols["timestamp"]])})
    if out["timestamp"].isna().all():
        raise InputDataError(
            f"{path}: column {cols['timestamp']!r}: no value parses as a timestamp "
            "(expected ISO-8601 or epoch seconds/milliseconds)"
        )
    if "symbol" in cols:
        out["symbol"] = df[cols["symbol"]].astype("string").str.strip().to_numpy(dtype=object)
    else:
        out["symbol"] = symbol if symbol is not None else symbol_from_filename(path)
    for name in VALUE_COLUMNS:
        raw = df[cols[name]]
        numeric = pd.to_numeric(raw, errors="coerce").astype("float64")
        if numeric.notna().sum() == 0:
            raise InputDataError(f"{path}: column {cols[name]!r} has no numeric values")
        out[name] = numeric.to_numpy()
    if "regime" in cols:
        out["regime"] = pd.to_numeric(df[cols["regime"]], errors="coerce").to_numpy()
    out["symbol"] = out["symbol"].astype(object)
    log.info("read %s: %d rows (%s)", path, len(out), fmt)
    return out
