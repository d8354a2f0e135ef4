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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from regimelab.data.validate import VALUE_COLUMNS, infer_step
from regimelab.exceptions import InputDataError, ModelError
from regimelab.features import build_features
from regimelab.features.build import base_interval, symbol_features
from regimelab.features.catalog import select_features
from regimelab.forecast.apply import (
    DEFAULT_HORIZONS,
    Forecaster,
    horizon_answers,
    last_inputs,
    learned_columns,
)
from regimelab.forecast.vol_apply import VolModels, latest_volatility
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
        raise _interval_error(source, int(found.value), spec["base_timeframe"])
    result = build_features(bars, params=from_mapping(FeaturesParams, "features", spec["params"]))
    if result.spec["columns"] != spec["columns"]:
        missing = sorted(set(spec["columns"]) - set(result.spec["columns"]))
        raise ModelError(f"{source}: the model's features cannot be rebuilt from it "
                         f"(missing {', '.join(missing) or 'the same column order'})")
    return Scaler.from_dict(manifest["scaler"]).transform(result.table)


def regime_names(manifest: dict[str, Any], n_states: int) -> list[str]:
    """The name of each state from a model folder's manifest (``state k`` for a folder
    written before regimes had names)."""
    names = manifest.get("regime_names")
    if names is None or len(names) != n_states:
        return [f"state {k}" for k in range(n_states)]
    return [str(name) for name in names]


def regimes(model: RegimeModel, table: pd.DataFrame, columns: list[str], *,
            smoothed: bool = False, names: list[str] | None = None) -> pd.DataFrame:
    """States and posteriors of every bar of a scaled feature table.

    Columns: ``timestamp``, ``symbol``, ``segment``, ``state_filtered`` (the most
    probable state given bars up to t: what was knowable at its close),
    ``state`` (the Viterbi path over the whole input), with ``names`` their
    names ``regime_filtered`` and ``regime``, ``p_filter_0..K-1``, and with
    ``smoothed`` the ``p_smooth_0..K-1`` given the whole input.
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
    if names is not None:
        named = np.asarray(names, dtype=object)
        out["regime_filtered"] = named[out["state_filtered"].to_numpy()]
        out["regime"] = named[out["state"].to_numpy()]
    for k in range(model.n_states):
        out[f"p_filter_{k}"] = filtered[:, k]
    if smoothed:
        proba = model.predict_proba(X, lengths)
        for k in range(model.n_states):
            out[f"p_smooth_{k}"] = proba[:, k]
    return out


def _interval_error(source: str, found_ns: int, trained: str) -> InputDataError:
    return InputDataError(
        f"{source}: bars are {format_timeframe(pd.Timedelta(found_ns, unit='ns'))} apart, but "
        f"the model was trained on {trained} bars; resample the input or train on this "
        "timeframe")


def latest_series(model: RegimeModel, manifest: dict[str, Any], symbol: str,
                  ts_ns: np.ndarray, cols: dict[str, np.ndarray], *, lookback: int,
                  as_of: pd.Timestamp | None = None, source: str = "input",
                  horizons: Sequence[int] = DEFAULT_HORIZONS,
                  forecaster: Forecaster | None = None, vol: VolModels | None = None
                  ) -> dict[str, Any]:
    """The regime of one symbol's last closed bar, from its last ``lookback`` bars, the
    next-regime forecasts and, given ``vol``, the volatility forecasts.

    The same features, scaler and filter as :func:`observations` and
    :func:`regimes`, on arrays: a request of a few hundred bars then costs a
    few milliseconds rather than pandas' fixed costs.

    Parameters
    ----------
    model, manifest
        A model folder's model and manifest.
    symbol : str
    ts_ns : ndarray of int64
        Clean bars' open times in nanoseconds (sorted, unique), as
        :func:`~regimelab.data.validate.clean_series` gives them.
    cols : dict
        Their ``open``, ``high``, ``low``, ``close`` and ``volume``.
    lookback : int
        Bars the filter reads, ending at the last one (the features' warm-up
        comes on top).
    as_of : pandas.Timestamp, optional
        The clock: a bar that closes after it is still forming and is left out.
    horizons : sequence of int
        Bars ahead of the chain's forecasts (the forecaster's own when it is given).
    forecaster : Forecaster, optional
        The forecast stage's learned models (:func:`~regimelab.forecast.apply.
        load_forecaster`), applied to the inputs of the last bar built from these bars.
    vol : VolModels, optional
        The forecast-vol stage's models (:func:`~regimelab.forecast.vol_apply.
        load_vol_models`), applied to the bars the filter's features read (the last
        ``lookback`` plus the warm-up, across gaps) and the last bar's filtered
        posteriors: :func:`~regimelab.forecast.vol_apply.latest_volatility`.

    Returns
    -------
    dict
        ``timestamp``, ``symbol``, ``state`` (the filtered state), ``p_filter_0..K-1``,
        ``bars`` (the bars of its gap-free run that the filter read),
        ``unclosed`` (bars left out because they had not closed by ``as_of``) and
        ``forecasts`` (:func:`~regimelab.forecast.apply.horizon_answers`) and
        ``volatility`` (:func:`~regimelab.forecast.vol_apply.latest_volatility`; None
        without ``vol``).
    """
    spec = manifest["feature_spec"]
    base_ns = int(parse_timeframe(spec["base_timeframe"]).value)
    max_gap = int(spec["max_gap"])
    warm_up = int(spec["lookback_bars"]) - 1  # a feature row needs this many bars before it
    unclosed = 0
    if as_of is not None:
        closed = int(np.searchsorted(ts_ns + base_ns, as_of.value, side="right"))
        unclosed = len(ts_ns) - closed
        if closed == 0:
            raise InputDataError(
                f"{source}: {symbol}: no bar has closed by {as_of.isoformat()} (the first opens "
                f"at {pd.Timestamp(int(ts_ns[0]), tz='UTC').isoformat()}); check the "
                "timestamps and the clock")
        ts_ns, cols = ts_ns[:closed], {c: v[:closed] for c, v in cols.items()}
    if len(ts_ns) < 2:
        raise InputDataError(f"{source}: {symbol}: a single bar; the model's features need "
                             f"{warm_up + 1} recent bars")
    found = infer_step(ts_ns)
    if found != base_ns:
        raise _interval_error(f"{source}: {symbol}", found, spec["base_timeframe"])
    keep_last = lookback + warm_up
    ts_ns, cols = ts_ns[-keep_last:], {c: v[-keep_last:] for c, v in cols.items()}
    defs = select_features(from_mapping(FeaturesParams, "features", spec["params"]))
    if [d.name for d in defs] != spec["columns"]:
        raise ModelError(f"{source}: the model's feature spec does not rebuild its columns "
                         f"{spec['columns']}")
    feats = symbol_features(ts_ns, cols, defs, base_ns=base_ns, max_gap=max_gap)
    last = [c for c in spec["columns"] if not np.isfinite(feats[c][-1])]
    if last:
        raise InputDataError(
            f"{source}: {symbol}: the last bar ({pd.Timestamp(int(ts_ns[-1]), tz='UTC')}) has "
            f"no {last[0]}: the features need {warm_up + 1} bars ending at it without a gap "
            f"over features.max_gap = {max_gap}; send more recent bars")
    keep = np.all([np.isfinite(feats[c]) for c in spec["columns"]], axis=0)
    kept = ts_ns[keep]
    # The filter reads the last gap-free run (a longer gap starts a new segment).
    breaks = np.flatnonzero(np.diff(kept) > (max_gap + 1) * base_ns)
    rows = np.flatnonzero(keep)[breaks[-1] + 1 if len(breaks) else 0:]
    scaler = Scaler.from_dict(manifest["scaler"])
    values = {c: feats[c][rows] for c in spec["columns"]}
    missing = [c for c in [*scaler.columns_, *manifest["features"]] if c not in values]
    if missing:
        raise ModelError(f"{source}: the model needs {missing[0]}, which its feature spec "
                         "does not build")
    scaled = scaler.transform_array(np.column_stack([values[c] for c in scaler.columns_]))
    values.update(zip(scaler.columns_, scaled.T))
    X = np.ascontiguousarray(np.column_stack([values[c] for c in manifest["features"]]))
    filtered = model.filter_proba(X, np.array([len(X)]))  # the filter alone: no Viterbi pass
    proba = filtered[-1]
    state = int(proba.argmax())
    learned = None
    if forecaster is not None:
        horizons = forecaster.horizons
        inputs = last_inputs(filtered, {c: values[c] for c in spec["columns"]}, cols["close"],
                             columns=spec["columns"], labeller=forecaster.labeller,
                             rows=forecaster.history, at=rows)
        learned = learned_columns(forecaster, inputs, rows=1)
    volatility = (None if vol is None
                  else latest_volatility(vol, symbol, ts_ns, cols, proba))
    return {"timestamp": pd.Timestamp(int(ts_ns[-1]), tz="UTC"), "symbol": symbol,
            "state": state, "regime": regime_names(manifest, model.n_states)[state],
            **{f"p_filter_{k}": float(p) for k, p in enumerate(proba)},
            "bars": len(X), "unclosed": unclosed,
            "forecasts": horizon_answers(proba, model.transmat_, horizons, learned),
            "volatility": volatility}


def latest_json(row: Mapping[str, Any], n_states: int) -> dict[str, Any]:
    """One :func:`latest_series` row as JSON: what ``regimelab now --json`` prints and
    ``POST /regime`` answers, per symbol (``volatility`` null without vol models)."""
    return {"symbol": str(row["symbol"]), "timestamp": row["timestamp"].isoformat(),
            "state": int(row["state"]), "regime": str(row["regime"]), "bars": int(row["bars"]),
            "unclosed": int(row["unclosed"]),
            "probabilities": [float(row[f"p_filter_{k}"]) for k in range(n_states)],
            "forecasts": row["forecasts"], "volatility": row.get("volatility")}


def latest(model: RegimeModel, bars: pd.DataFrame, manifest: dict[str, Any], *,
           lookback: int, as_of: pd.Timestamp | None = None, source: str = "input",
           horizons: Sequence[int] = DEFAULT_HORIZONS, forecaster: Forecaster | None = None,
           vol: VolModels | None = None) -> pd.DataFrame:
    """The regime of each symbol's last closed bar, from its last ``lookback`` bars (plus
    the features' warm-up before them).

    The filtered posterior at the last bar depends on the bars since its segment
    began; a lookback of a few hundred bars is where more history no longer
    changes it in practice (the chain forgets its start geometrically). With a
    lookback that covers the input, the row equals :func:`regimes`' last row.

    Parameters
    ----------
    bars : pandas.DataFrame
        Clean bars (the bars contract), e.g. ``ingest(path).bars``.
    as_of : pandas.Timestamp, optional
        The clock: bars that close after it are still forming and are left out.

    Returns
    -------
    pandas.DataFrame
        One row per symbol, the columns of :func:`latest_series`.

    Raises
    ------
    InputDataError
        If the last closed bar lacks a feature (too few bars, or a gap before it).
    """
    rows = []
    for symbol, group in bars.groupby("symbol", sort=True):
        ts_ns = group["timestamp"].to_numpy(dtype="datetime64[ns]").view("int64")
        cols = {c: group[c].to_numpy(dtype="float64") for c in VALUE_COLUMNS}
        rows.append(latest_series(model, manifest, str(symbol), ts_ns, cols,
                                  lookback=lookback, as_of=as_of, source=source,
                                  horizons=horizons, forecaster=forecaster, vol=vol))
    return pd.DataFrame(rows)
