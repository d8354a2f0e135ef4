"""What the forecasters learn to predict: hindsight regimes and a bull/bear dating.

Two label sources, both known only in hindsight and so used as **targets**,
never as inputs:

- a trained family's hindsight path (Viterbi / most likely states, decoded per
  split with :func:`regimelab.regimes.regimes_table`): "which regime will this
  bar turn out to have been";
- a model-free dating of the price path in the style of Lunde and Timmermann
  (2004): a rise of ``bull_threshold`` from the last trough starts a bull
  market (dated from that trough), a fall of ``bear_threshold`` from the last
  peak starts a bear market (dated from that peak). It gives real data a truth
  that no regime model chose.

A labelled dataset is one Parquet table whose file metadata carry the
labeller's parameters (:func:`write_labelled`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from regimelab.exceptions import InputDataError, ParamsError
from regimelab.io import atomic_path
from regimelab.regimes import RegimeModel, regimes_table

#: Bull/bear codes of :func:`date_bull_bear`; -1 before the first threshold is crossed.
BEAR, BULL, UNKNOWN = 0, 1, -1
#: The Parquet metadata key that holds the labeller's parameters (JSON).
METADATA_KEY = b"regimelab.labels"


@dataclass(frozen=True)
class Dating:
    """A bull/bear dating of one price path, each array of shape ``(n_samples,)``.

    ``labels``: the phase each bar turned out to be in (hindsight: a bar's label
    is fixed only once a later bar crosses a threshold); ``known``: the phase as
    confirmed at the close of each bar (causal: the last threshold crossed up to
    and including that bar). ``UNKNOWN`` (-1) where no threshold has been crossed.
    ``move``: causal too, the log distance of the close from the running peak in
    a confirmed bull (<= 0), from the running trough in a confirmed bear (>= 0),
    0 before the first confirmation: how far the next threshold is.
    """

    labels: np.ndarray
    known: np.ndarray
    move: np.ndarray


def date_bull_bear(close: np.ndarray, *, bull_threshold: float,
                   bear_threshold: float) -> Dating:
    """Date bull and bear markets on one price path (Lunde-Timmermann).

    In a bull market the running peak is tracked; a close at or below
    ``peak * (1 - bear_threshold)`` confirms a bear market that began on the bar
    after the peak. In a bear market the running trough is tracked; a close at
    or above ``trough * (1 + bull_threshold)`` confirms a bull market that began
    on the bar after the trough. Before the first confirmation both are tracked
    from the first bar, and the bars up to the first turning point get the phase
    opposite to the first one confirmed. The last phase runs to the end.

    Parameters
    ----------
    close : ndarray of shape (n_samples,)
        Positive closing prices in time order.
    bull_threshold, bear_threshold : float
        Relative rise from a trough, fall from a peak, each in (0, 1).
    """
    for key, value in (("bull_threshold", bull_threshold), ("bear_threshold", bear_threshold)):
        if not 0 < value < 1:
            raise ParamsError(f"forecast.{key}: got {value!r}; expected a share in (0, 1)")
    p = np.asarray(close, dtype=np.float64)
    if p.ndim != 1 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise InputDataError("close: the bull/bear dating needs finite positive prices")
    labels = np.full(len(p), UNKNOWN, dtype=np.int8)
    known = np.full(len(p), UNKNOWN, dtype=np.int8)
    move = np.zeros(len(p))
    state, start, peak, trough = UNKNOWN, 0, 0, 0
    for t in range(len(p)):
        if state != BEAR and p[t] > p[peak]:
            peak = t
        if state != BULL and p[t] < p[trough]:
            trough = t
        if state != BEAR and p[t] <= p[peak] * (1.0 - bear_threshold):
            labels[start:peak + 1] = BULL
            state, start, trough = BEAR, peak + 1, t
        elif state != BULL and p[t] >= p[trough] * (1.0 + bull_threshold):
            labels[start:trough + 1] = BEAR
            state, start, peak = BULL, trough + 1, t
        known[t] = state
        if state != UNKNOWN:
            move[t] = np.log(p[t] / p[peak if state == BULL else trough])
    if state != UNKNOWN:
        labels[start:] = state
    return Dating(labels, known, move)


def dating_table(bars: pd.DataFrame, *, bull_threshold: float,
                 bear_threshold: float) -> pd.DataFrame:
    """``symbol``, ``timestamp``, ``bull_bear`` (hindsight), ``bull_bear_known`` and
    ``bull_bear_move`` (causal) for every bar, each symbol dated on its own closes."""
    parts = []
    for symbol, group in bars.groupby("symbol", sort=False):
        dating = date_bull_bear(group["close"].to_numpy(), bull_threshold=bull_threshold,
                                bear_threshold=bear_threshold)
        parts.append(pd.DataFrame({"symbol": symbol, "timestamp": group["timestamp"].array,
                                   "bull_bear": dating.labels,
                                   "bull_bear_known": dating.known,
                                   "bull_bear_move": dating.move}))
    return pd.concat(parts, ignore_index=True)


def hindsight_regimes(model: RegimeModel, frames: dict[str, pd.DataFrame],
                      columns: list[str]) -> pd.DataFrame:
    """The regimes table (see :func:`regimelab.regimes.regimes_table`) of every split:
    ``state`` is the hindsight path (decoded on the whole split), ``p_filter_k`` the
    causal posteriors."""
    return regimes_table(model, frames, columns)


def write_labelled(table: pd.DataFrame, path: str | Path, *, params: dict[str, Any]) -> None:
    """Write a labelled dataset to Parquet, atomically, with ``params`` (the labeller's
    settings, JSON) in the file's metadata under :data:`METADATA_KEY`."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = {**(arrow.schema.metadata or {}),
            METADATA_KEY: json.dumps(params, sort_keys=True).encode()}
    with atomic_path(path) as tmp:
        pq.write_table(arrow.replace_schema_metadata(meta), tmp, compression="zstd",
                       row_group_size=max(len(table), 1))


def read_labelled_params(path: str | Path) -> dict[str, Any]:
    """The labeller's parameters stored in a labelled dataset's metadata."""
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise InputDataError(f"{path}: no labeller parameters in the Parquet metadata")
    params: dict[str, Any] = json.loads(meta[METADATA_KEY])
    return params
