"""The labelled dataset: one row per bar with its inputs and every target.

Columns: ``timestamp``, ``symbol``, ``split``, ``segment``; the inputs
(:mod:`regimelab.forecast.inputs`); ``state`` (the family's hindsight path),
``bull_bear`` (the hindsight dating), ``bull_bear_known`` (the dating as
confirmed at t: an input, and the bull/bear persistence forecast) and
``bull_bear_move`` (an input); then per horizon h
``state_h{h}``, ``switch_h{h}`` and ``bull_bear_h{h}`` (NaN where bar t + h is
missing) and ``target_time_h{h}`` (the time of bar t + h).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from regimelab.exceptions import InputDataError
from regimelab.forecast.inputs import build_inputs
from regimelab.forecast.labels import dating_table
from regimelab.forecast.targets import ahead_index, label_ahead, switch_within

KEYS = ["symbol", "timestamp"]


def label_dataset(regimes: pd.DataFrame, features: pd.DataFrame, bars: pd.DataFrame, *,
                  columns: Sequence[str], n_states: int, horizons: Sequence[int],
                  windows: Sequence[int], step: pd.Timedelta, bull_threshold: float,
                  bear_threshold: float) -> pd.DataFrame:
    """Build the labelled dataset (see the module notes).

    Parameters
    ----------
    regimes : pandas.DataFrame
        The family's regimes table of every split (:func:`~regimelab.forecast.labels.
        hindsight_regimes`), sorted by split, symbol and time.
    features : pandas.DataFrame
        The scaled feature rows of the same bars, same order.
    bars : pandas.DataFrame
        The clean bars (``close``), dated for bull and bear markets.
    columns : sequence of str
        Feature columns.
    n_states : int
        The family's state count.
    horizons : sequence of int
        Bars ahead.
    windows : sequence of int
        Trailing windows of the feature means.
    step : pandas.Timedelta
        The bar interval.
    bull_threshold, bear_threshold : float
        The dating's thresholds (:func:`~regimelab.forecast.labels.date_bull_bear`).
    """
    if not regimes[KEYS].reset_index(drop=True).equals(features[KEYS].reset_index(drop=True)):
        raise InputDataError("data/scaled: the scaled splits cover other bars than the "
                             "model's regimes; rerun the training stages")
    table = regimes[["timestamp", "symbol", "split", "segment", "state"]].reset_index(drop=True)
    inputs = build_inputs(regimes.reset_index(drop=True), features.reset_index(drop=True),
                          list(columns), n_states=n_states, windows=windows)
    dated = dating_table(bars, bull_threshold=bull_threshold, bear_threshold=bear_threshold)
    merged = table[KEYS].merge(dated, on=KEYS, how="left", validate="one_to_one")
    if merged["bull_bear"].isna().any():
        raise InputDataError("data/clean/bars.parquet: some feature rows have no bar; rerun "
                             "the pipeline from ingest")
    table = pd.concat([table, inputs], axis=1)
    table["bull_bear"] = merged["bull_bear"].to_numpy(dtype=np.int64)
    table["bull_bear_known"] = merged["bull_bear_known"].to_numpy(dtype=np.float64)
    table["bull_bear_move"] = merged["bull_bear_move"].to_numpy(dtype=np.float64)
    states = table["state"].to_numpy()
    for h in horizons:
        ahead = ahead_index(table, h, step)
        table[f"state_h{h}"] = label_ahead(states, ahead)
        table[f"switch_h{h}"] = switch_within(states, table, ahead)
        table[f"bull_bear_h{h}"] = label_ahead(table["bull_bear"].to_numpy(), ahead)
        table[f"target_time_h{h}"] = table["timestamp"] + h * step
    return table
