"""Turn clean bars into the feature table, in batch or for the latest bar only.

Higher timeframes are built from the base bars in right-closed buckets
anchored at the Unix epoch (``4h`` buckets end at 04:00, 08:00, ... UTC). A
bucket is used at base bar ``t`` only once it has closed, that is when its end
is at or before the close of ``t``; until then bar ``t`` sees the previous
bucket. No window spans a gap of more than ``max_gap`` bars of its own
timeframe: a longer gap restarts the window, and at the base timeframe it
starts a new ``segment``. A window counted in time (the ``ewm_*`` kinds) has
a value once the run of bars it lies in began at least its lookback before
it; a bar missing inside it is simply absent.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from regimelab import __version__
from regimelab.data.validate import infer_freq
from regimelab.exceptions import FeatureError
from regimelab.features.catalog import (
    KINDS,
    FeatureDef,
    halflives_at,
    resolve_max_gap,
    select_features,
)
from regimelab.features.rolling import run_position
from regimelab.params import FeaturesParams, format_timeframe, from_mapping, parse_timeframe

log = logging.getLogger(__name__)

ID_COLUMNS = ("timestamp", "symbol", "segment")
LABEL_COLUMN = "regime"


@dataclass(frozen=True)
class FeatureResult:
    """The feature table and its spec (what ``featurize`` writes)."""

    table: pd.DataFrame
    spec: dict[str, Any]


def _ns(delta: pd.Timedelta) -> int:
    return int(delta.value)


def _resample(ts_ns: np.ndarray, cols: dict[str, np.ndarray], period_ns: int, base_ns: int,
              max_gap: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Aggregate sorted base bars into epoch-anchored buckets of ``period_ns``.

    A bucket missing more than ``max_gap`` of its base bars (an outage inside
    it, or data that starts or ends mid-bucket) is left out, so it counts as
    a gap at its timeframe exactly as a missing base bar does at the base.

    Returns the open times of the kept buckets and their open/high/low/close/volume.
    """
    bucket = (ts_ns // period_ns) * period_ns
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(bucket)] - 1
    counts = ends - starts + 1
    complete = (period_ns // base_ns) - counts <= max_gap
    out = {
        "open": cols["open"][starts],
        "high": np.maximum.reduceat(cols["high"], starts),
        "low": np.minimum.reduceat(cols["low"], starts),
        "close": cols["close"][ends],
        "volume": np.add.reduceat(cols["volume"], starts),
    }
    return bucket[starts][complete], {k: v[complete] for k, v in out.items()}


def symbol_features(
    ts_ns: np.ndarray,
    cols: dict[str, np.ndarray],
    defs: list[FeatureDef],
    *,
    base_ns: int,
    max_gap: int,
) -> dict[str, np.ndarray]:
    """All features of one symbol at its base bars (NaN where not defined).

    Parameters
    ----------
    ts_ns : ndarray of int64, shape (n,)
        The bars' open times in nanoseconds, sorted and unique.
    cols : dict
        ``open``, ``high``, ``low``, ``close`` and ``volume``, float64 arrays of shape (n,).
    """
    base_close = ts_ns + base_ns
    out: dict[str, np.ndarray] = {}
    by_tf: dict[str, list[FeatureDef]] = {}
    for d in defs:
        by_tf.setdefault(d.timeframe, []).append(d)
    for tf, tf_defs in by_tf.items():
        period = _ns(parse_timeframe(tf))
        if period == base_ns:
            tf_ts, tf_cols = ts_ns, cols
        else:
            tf_ts, tf_cols = _resample(ts_ns, cols, period, base_ns, max_gap)
        breaks = np.r_[True, np.diff(tf_ts) > (max_gap + 1) * period][: len(tf_ts)]
        pos = run_position(breaks)
        # Periods since the run began, for the windows that are spans of time.
        elapsed = (tf_ts - tf_ts[np.flatnonzero(breaks)][np.cumsum(breaks) - 1]) // period
        tf_cols = {**tf_cols, "slot": tf_ts // period}
        tf_close = tf_ts + period
        # The last bucket that has closed by each base bar's close; stale after a gap.
        idx = np.searchsorted(tf_close, base_close, side="right") - 1
        ok = idx >= 0
        ok[ok] &= (base_close[ok] - tf_close[idx[ok]]) < period
        for d in tf_defs:
            values = d.compute(tf_cols)
            values[(elapsed if d.timed else pos) < d.lookback - 1] = np.nan
            aligned = np.full(len(ts_ns), np.nan)
            aligned[ok] = values[idx[ok]]
            out[d.name] = aligned
    return out


def _check_timeframes(defs: list[FeatureDef], base: pd.Timedelta) -> None:
    for d in defs:
        period = parse_timeframe(d.timeframe, key="features.timeframes")
        if period < base or _ns(period) % _ns(base) != 0:
            raise FeatureError(
                f"features.timeframes: {d.timeframe} is not a whole multiple of the bars' "
                f"interval {format_timeframe(base)} (feature {d.name})"
            )


def base_interval(bars: pd.DataFrame) -> pd.Timedelta:
    """The bar interval shared by every symbol; symbols with different intervals are an error."""
    freqs = {str(s): infer_freq(g["timestamp"]) for s, g in bars.groupby("symbol", sort=True)}
    distinct = sorted(set(freqs.values()))
    if len(distinct) != 1:
        shown = ", ".join(f"{s} {format_timeframe(f)}" for s, f in freqs.items())
        raise FeatureError(f"bars: symbols have different intervals ({shown}); featurize one "
                           "interval at a time")
    return distinct[0]


def compute_table(
    bars: pd.DataFrame,
    defs: list[FeatureDef],
    *,
    base: pd.Timedelta,
    max_gap: int,
) -> pd.DataFrame:
    """Every base bar with its features, NaN rows kept; columns ``timestamp, symbol, ...``."""
    frames = []
    for symbol, group in bars.groupby("symbol", sort=True):
        ts_ns = group["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
        cols = {c: group[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close",
                                                                "volume")}
        feats = symbol_features(ts_ns, cols, defs, base_ns=_ns(base), max_gap=max_gap)
        # .array keeps the tz-aware values vectorised (to_numpy() would build Timestamps).
        frame = pd.DataFrame({"timestamp": group["timestamp"].array, "symbol": str(symbol)})
        if LABEL_COLUMN in group.columns:
            frame[LABEL_COLUMN] = group[LABEL_COLUMN].to_numpy()
        for name, values in feats.items():
            frame[name] = values
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["timestamp"] = table["timestamp"].astype("datetime64[ns, UTC]")
    return table


def assign_segments(table: pd.DataFrame, *, base: pd.Timedelta, max_gap: int) -> np.ndarray:
    """Segment ids 0..S-1: a new segment at each symbol and at each gap over ``max_gap`` bars."""
    ts = table["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
    sym = table["symbol"].to_numpy()
    breaks = np.ones(len(table), dtype=bool)
    if len(table) > 1:
        breaks[1:] = (sym[1:] != sym[:-1]) | (np.diff(ts) > (max_gap + 1) * _ns(base))
    return np.cumsum(breaks) - 1


def _span(d: FeatureDef, max_gap: int) -> int:
    """Periods of its timeframe before the latest bar's close that ``d`` may read.

    One period more than the lookback, for a bucket that has not closed yet.
    A window in time is bridged by at most ``max_gap`` missing bars before it
    (to the close its first return starts from); a window of bars, at each of
    its bars.
    """
    if d.timed:
        return d.lookback + 1 + max_gap
    return (d.lookback + 1) * (max_gap + 1)


def _history(defs: list[FeatureDef], max_gap: int) -> tuple[pd.Timedelta, pd.Timedelta]:
    """How much past the latest bar needs, and the boundary a lookback must start on."""
    periods = [parse_timeframe(d.timeframe) for d in defs]
    history = max(_span(d, max_gap) * p for d, p in zip(defs, periods))
    align = pd.Timedelta(math.lcm(*(_ns(p) for p in periods)), unit="ns")
    return history, align


def make_spec(params: FeaturesParams, defs: list[FeatureDef], base: pd.Timedelta
              ) -> dict[str, Any]:
    """The feature spec: enough to rebuild exactly these columns from new bars."""
    max_gap = resolve_max_gap(params)
    history, align = _history(defs, max_gap)
    features: list[dict[str, Any]] = []
    for d in defs:
        ratio = _ns(parse_timeframe(d.timeframe)) // _ns(base)
        # A window in time also holds the bars of a bridged gap before it, so
        # that the count of recent bars that inference keeps reaches its first close.
        lookback = d.lookback + max_gap + 1 if d.timed else d.lookback
        features.append({
            "name": d.name,
            "kind": d.kind,
            "params": list(d.params),
            "timeframe": d.timeframe,
            # The window's oldest bucket can start ratio - 1 base bars before the
            # lookback counted in whole buckets, when bar t is the first of its bucket.
            "lookback_bars": lookback * ratio + ratio - 1,
            "formula": KINDS[d.kind].doc,
        })
    spec: dict[str, Any] = {
        "columns": [d.name for d in defs],
        "base_timeframe": format_timeframe(base),
        "timeframes": sorted({d.timeframe for d in defs}, key=lambda t: parse_timeframe(t)),
        "max_gap": max_gap,
        "lookback_bars": max(f["lookback_bars"] for f in features),
        "history": format_timeframe(history),
        "align": format_timeframe(align),
        "features": features,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()},
        "regimelab_version": __version__,
    }
    if params.set == "regime":
        spec["halflives"] = {tf: list(halflives_at(params, tf)) for tf in params.timeframes}
    return spec


def build_features(bars: pd.DataFrame, *, params: FeaturesParams) -> FeatureResult:
    """Compute the feature table from clean bars.

    Parameters
    ----------
    bars : pandas.DataFrame
        Clean bars (the bars contract), sorted by symbol then timestamp.
    params : FeaturesParams
        The ``features`` section.

    Returns
    -------
    FeatureResult
        ``table``: ``timestamp``, ``symbol``, ``segment`` (and ``regime`` when the
        bars carry it), then one float column per feature, with the rows that
        lack a full window dropped; ``spec``: see :func:`make_spec`.
    """
    defs = select_features(params)
    base = base_interval(bars)
    _check_timeframes(defs, base)
    max_gap = resolve_max_gap(params)
    table = compute_table(bars, defs, base=base, max_gap=max_gap)
    names = [d.name for d in defs]
    values = table[names].to_numpy()
    keep = np.isfinite(values).all(axis=1)
    if not keep.any():
        runs = np.bincount(assign_segments(table, base=base, max_gap=max_gap))
        raise FeatureError(
            f"featurize: no bar has every feature: the longest window needs "
            f"{max(d.lookback for d in defs)} bars of its timeframe, but the longest run of "
            f"{format_timeframe(base)} bars without a gap over features.max_gap = "
            f"{max_gap} has {runs.max()}; raise features.max_gap (e.g. to span "
            "weekends) or shorten the windows"
        )
    table = table.loc[keep].reset_index(drop=True)
    table.insert(2, "segment", assign_segments(table, base=base, max_gap=max_gap))
    spec = make_spec(params, defs, base)
    spec["rows_in"] = len(bars)
    spec["rows_out"] = len(table)
    log.info("features: %d columns, %d of %d bars kept, %d segments", len(names), len(table),
             len(bars), int(table["segment"].max()) + 1)
    return FeatureResult(table=table, spec=spec)


def latest_features(bars: pd.DataFrame, *, spec: dict[str, Any]) -> pd.DataFrame:
    """The observation of each symbol's last bar, from a lookback of recent bars.

    Uses the same code as :func:`build_features` on the smallest window that
    gives the same value: ``spec['history']`` before the last close, starting on
    a bucket boundary of every timeframe.

    Parameters
    ----------
    bars : pandas.DataFrame
        Recent clean bars of one or more symbols (at least ``spec['history']``
        of them for each).
    spec : dict
        The feature spec written by ``featurize``.

    Returns
    -------
    pandas.DataFrame
        One row per symbol: ``timestamp``, ``symbol``, then ``spec['columns']``.
    """
    params = from_mapping(FeaturesParams, "features", spec["params"])
    defs = select_features(params)
    max_gap = resolve_max_gap(params)
    base = parse_timeframe(spec["base_timeframe"])
    history = parse_timeframe(spec["history"])
    align = _ns(parse_timeframe(spec["align"]))
    rows = []
    for symbol, group in bars.groupby("symbol", sort=True):
        last_close = group["timestamp"].iloc[-1] + base
        start_ns = ((_ns(last_close - pd.Timestamp(0, tz="UTC")) - _ns(history)) // align) * align
        start = pd.Timestamp(start_ns, unit="ns", tz="UTC")
        tail = group.loc[group["timestamp"] >= start]
        table = compute_table(tail, defs, base=base, max_gap=max_gap)
        last = table.iloc[[-1]]
        values = last[spec["columns"]].to_numpy()
        if not np.isfinite(values).all():
            missing = [c for c, v in zip(spec["columns"], values[0]) if not np.isfinite(v)]
            raise FeatureError(
                f"{symbol}: the latest bar {last['timestamp'].iloc[0]} lacks {missing[0]}: "
                f"it needs gap-free bars since {start} (features.max_gap = {max_gap})"
            )
        rows.append(last[["timestamp", "symbol", *spec["columns"]]])
    return pd.concat(rows, ignore_index=True)
