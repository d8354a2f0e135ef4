"""Chronological train / val / test splits with an embargo, and walk-forward folds.

Splits cut the calendar, not each symbol, so every symbol's test period is the
same stretch of time. After each cut, ``embargo`` bars are left out, so no
validation or test row has a feature window that reaches back into the split
before it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regimelab.exceptions import SplitError
from regimelab.io import read_parquet
from regimelab.params import SplitParams

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitResult:
    """The three frames, the walk-forward folds and the report."""

    frames: dict[str, pd.DataFrame]
    folds: list[dict[str, Any]]
    report: dict[str, Any]


def read_splits(folder: str | Path) -> dict[str, pd.DataFrame]:
    """The train, val and test tables of a folder such as ``data/scaled``."""
    return {name: read_parquet(Path(folder) / f"{name}.parquet") for name in SPLITS}


def resolve_embargo(embargo: int | str, *, lookback_bars: int) -> int:
    """Bars left out after each cut: ``auto`` is the longest feature window.

    Raises
    ------
    SplitError
        If an explicit embargo is shorter than the longest feature window.
    """
    if embargo == "auto":
        return int(lookback_bars)
    if int(embargo) < lookback_bars:
        raise SplitError(
            f"split.embargo: {embargo} bars is shorter than the longest feature window "
            f"({lookback_bars} bars); use 'auto' or at least {lookback_bars}"
        )
    return int(embargo)


def _time_at_fraction(ts: np.ndarray, fraction: float) -> pd.Timestamp:
    """The timestamp below which ``fraction`` of the rows fall (rows sorted by time)."""
    ordered = np.sort(ts)
    index = min(int(np.floor(fraction * len(ordered))), len(ordered) - 1)
    return pd.Timestamp(ordered[index]).tz_localize("UTC")


def _describe(frame: pd.DataFrame) -> dict[str, Any]:
    if frame.empty:
        return {"rows": 0}
    return {
        "rows": len(frame),
        "start": frame["timestamp"].min(),
        "end": frame["timestamp"].max(),
        "segments": int(frame["segment"].nunique()),
        "symbols": int(frame["symbol"].nunique()),
    }


def walk_forward_folds(
    ts: pd.Series, *, n_folds: int, embargo: pd.Timedelta
) -> list[dict[str, Any]]:
    """Expanding-window folds over ``ts`` (the pre-test timestamps).

    The time range is cut at row quantiles into ``n_folds + 1`` chunks; fold
    ``k`` trains on chunks ``0..k-1`` and validates on chunk ``k`` after the
    embargo. Each fold is given by its date ranges and row counts.
    """
    if n_folds == 0:
        return []
    values = np.sort(ts.to_numpy(dtype="datetime64[ns]"))
    edges = [_time_at_fraction(values, k / (n_folds + 1)) for k in range(n_folds + 2)]
    edges[-1] = pd.Timestamp(values[-1]).tz_localize("UTC") + pd.Timedelta(1, unit="ns")
    folds = []
    for k in range(1, n_folds + 1):
        train = ts[ts < edges[k]]
        val = ts[(ts >= edges[k] + embargo) & (ts < edges[k + 1])]
        if train.empty or val.empty:
            raise SplitError(f"split.folds: fold {k} of {n_folds} would be empty; use fewer "
                             "folds or more data")
        folds.append({
            "fold": k,
            "train_start": train.min(), "train_end": train.max(), "train_rows": len(train),
            "val_start": val.min(), "val_end": val.max(), "val_rows": len(val),
        })
    return folds


def split_features(
    features: pd.DataFrame,
    *,
    params: SplitParams,
    lookback_bars: int,
    base: pd.Timedelta,
) -> SplitResult:
    """Split the feature table chronologically.

    Parameters
    ----------
    features : pandas.DataFrame
        The feature table (``timestamp``, ``symbol``, ``segment``, ...).
    params : SplitParams
        The ``split`` section.
    lookback_bars : int
        The longest feature window in base bars (``spec['lookback_bars']``).
    base : pandas.Timedelta
        The bar interval.

    Returns
    -------
    SplitResult
        ``frames['train' | 'val' | 'test']`` keep the feature table's columns
        and order.
    """
    embargo_bars = resolve_embargo(params.embargo, lookback_bars=lookback_bars)
    embargo = embargo_bars * base
    ts = features["timestamp"]
    if params.method == "fractions":
        values = ts.to_numpy(dtype="datetime64[ns]")
        val_start = _time_at_fraction(values, params.train)
        test_start = _time_at_fraction(values, params.train + params.val)
    else:
        val_start = pd.Timestamp(params.val_start)
        test_start = pd.Timestamp(params.test_start)
        val_start = val_start.tz_localize("UTC") if val_start.tz is None else val_start
        test_start = test_start.tz_localize("UTC") if test_start.tz is None else test_start
    masks = {
        "train": ts < val_start,
        "val": (ts >= val_start + embargo) & (ts < test_start),
        "test": ts >= test_start + embargo,
    }
    frames = {name: features.loc[mask].reset_index(drop=True) for name, mask in masks.items()}
    for name, frame in frames.items():
        if frame.empty:
            raise SplitError(
                f"split: the {name} split is empty (val starts {val_start}, test starts "
                f"{test_start}, embargo {embargo_bars} bars, data {ts.min()} to {ts.max()})"
            )
    folds = walk_forward_folds(ts[ts < test_start], n_folds=params.folds, embargo=embargo)
    embargoed = len(features) - sum(len(f) for f in frames.values())
    report = {
        "method": params.method,
        "embargo_bars": embargo_bars,
        "embargoed_rows": embargoed,
        "val_start": val_start,
        "test_start": test_start,
        **{name: _describe(frame) for name, frame in frames.items()},
        "folds": len(folds),
    }
    log.info("split: train %d, val %d, test %d rows; %d left out by the %d-bar embargo",
             len(frames["train"]), len(frames["val"]), len(frames["test"]), embargoed,
             embargo_bars)
    return SplitResult(frames=frames, folds=folds, report=report)
