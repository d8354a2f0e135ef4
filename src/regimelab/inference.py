"""Trained regimes applied to new bars: the observations rebuilt from the manifest, then
the states and posteriors of every bar, or of the last one.

A model folder's manifest holds the feature spec and the scaler it was trained
with, so new bars go through exactly what the training bars went through:
ingest's validation, :func:`~regimelab.features.build_features` with the same
params, and the saved scaler. Bars at another interval than the model's, or
bars from which the model's columns cannot be built, are refused.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from regimelab.exceptions import FeatureError, InputDataError, ModelError
from regimelab.features import build_features
from regimelab.features.build import base_interval
from regimelab.params import FeaturesParams, format_timeframe, from_mapping, parse_timeframe
from regimelab.regimes import RegimeModel
from regimelab.scaling import Scaler
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)


def observations(bars: pd.DataFrame, manifest: dict[str, Any], *, source: str = "input"
                 ) -> pd.DataFrame:
    """The scaled feature table of ``bars``, built as the model's training data was.

    Parameters
    ----------
    bars : pandas.DataFrame
        Clean bars (the bars contract), e.g. ``ingest(path).bars``.
    manifest : dict
        The model folder's ``manifest.json``.
    source : str
        Names the input in error messages.

    Raises
    ------
    InputDataError
        If the bars are at another interval than the model's.
    ModelError
        If the manifest's features cannot be rebuilt from them.
    """
    spec = manifest["feature_spec"]
    trained = parse_timeframe(spec["base_timeframe"])
    found = base_interval(bars)
    if found != trained:
        raise InputDataError(
            f"{source}: bars are {format_timeframe(found)} apart, but the model was trained on "
            f"{spec['base_timeframe']} bars; resample the input or train on this timeframe")
    result = build_features(bars, params=from_mapping(FeaturesParams, "features", spec["params"]))
    if result.spec["columns"] != spec["columns"]:
        missing = sorted(set(spec["columns"]) - set(result.spec["columns"]))
        raise ModelError(f"{source}: the model's features cannot be rebuilt from it "
                         f"(missing {', '.join(missing) or 'the same column order'})")
    return Scaler.from_dict(manifest["scaler"]).transform(result.table)


def regimes(model: RegimeModel, table: pd.DataFrame, columns: list[str], *,
            smoothed: bool = False) -> pd.DataFrame:
    """States and posteriors of every bar of a scaled feature table.

    Columns: ``timestamp``, ``symbol``, ``segment``, ``state_filtered`` (the most
    probable state given bars up to t: what was knowable at its close),
    ``state`` (the Viterbi path over the whole input), ``p_filter_0..K-1``, and
    with ``smoothed`` the ``p_smooth_0..K-1`` given the whole input.
    """
    X, lengths = to_sequences(table, columns)
    filtered = model.filter_proba(X, lengths)
    out = pd.DataFrame({
        "timestamp": table["timestamp"].array,
        "symbol": table["symbol"].array,
        "segment": table["segment"].to_numpy(),
        "state_filtered": filtered.argmax(axis=1).astype(np.int64),
        "state": model.predict(X, lengths).astype(np.int64),
    })
    for k in range(model.n_states):
        out[f"p_filter_{k}"] = filtered[:, k]
    if smoothed:
        proba = model.predict_proba(X, lengths)
        for k in range(model.n_states):
            out[f"p_smooth_{k}"] = proba[:, k]
    return out


def tail_bars(bars: pd.DataFrame, lookback: int) -> pd.DataFrame:
    """Each symbol's last ``lookback`` bars."""
    return bars.groupby("symbol", sort=False, group_keys=False).tail(lookback).reset_index(
        drop=True)


def latest(model: RegimeModel, bars: pd.DataFrame, manifest: dict[str, Any], *,
           lookback: int, source: str = "input") -> pd.DataFrame:
    """The regime of each symbol's last bar, from its last ``lookback`` bars (plus the
    features' warm-up before them).

    The filtered posterior at the last bar depends on the bars since its segment
    began; a lookback of a few hundred bars is where more history no longer
    changes it in practice (the chain forgets its start geometrically). With a
    lookback that covers the input, the row equals :func:`regimes`' last row.

    Returns
    -------
    pandas.DataFrame
        One row per symbol: ``timestamp``, ``symbol``, ``state`` (the filtered
        state), ``p_filter_0..K-1``, and ``bars`` (the bars of its gap-free run
        that the filter saw).
    """
    # A feature row needs lookback_bars bars ending at it: that many minus one of warm-up.
    recent = tail_bars(bars, lookback + int(manifest["feature_spec"]["lookback_bars"]) - 1)
    try:
        table = observations(recent, manifest, source=source)
    except FeatureError as exc:
        raise InputDataError(f"{source}: too few gap-free bars before the last one for the "
                             f"model's features ({exc}); send more recent bars") from None
    columns = manifest["features"]
    rows = []
    for _, group in table.groupby("symbol", sort=True):
        last_run = group.loc[group["segment"] == group["segment"].iloc[-1]]
        X, lengths = to_sequences(last_run, columns)
        last = model.filter_proba(X, lengths)[-1]  # the filter alone: no Viterbi pass
        row = {"timestamp": last_run["timestamp"].iloc[-1],
               "symbol": last_run["symbol"].iloc[-1], "state": int(last.argmax()),
               **{f"p_filter_{k}": float(p) for k, p in enumerate(last)},
               "bars": len(last_run)}
        rows.append(row)
    return pd.DataFrame(rows)
