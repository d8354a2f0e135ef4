"""Inputs known at the close of bar t: features, filtered posteriors, the regime's age.

Every column is a causal function of the bars up to t: the scaled features
(each causal by the features contract), their trailing means over
``windows`` bars inside the segment, the family's **filtered** posteriors
``p_filter_k`` and the age of the filtered regime (bars since the filtered
path last switched, counted inside the segment), and the bull/bear dating
**as confirmed at t** (``bull_bear_known``: -1, 0 bear, 1 bull) with the log
distance of the close from the running peak or trough (``bull_bear_move``),
both added by :func:`~regimelab.forecast.dataset.label_dataset` from the bars.
The age carries the dwell-time information a Markov chain throws away.
Hindsight quantities (smoothed posteriors, the Viterbi path, the dated
phases) never enter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from regimelab.forecast.targets import run_ids

#: The causal columns of the bull/bear dating among the inputs.
DATING_INPUTS = ("bull_bear_known", "bull_bear_move")


def regime_age(live: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Bars since the path ``live`` last changed (0 on the bar of a change), counted from
    the start of each run of equal ``runs`` ids. Shape ``(n_samples,)``, float64."""
    live = np.asarray(live)
    n = len(live)
    start = np.r_[True, (live[1:] != live[:-1]) | (runs[1:] != runs[:-1])] if n else np.zeros(
        0, dtype=bool)
    last = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return (np.arange(n) - last).astype(np.float64)


def input_columns(columns: Sequence[str], n_states: int, windows: Sequence[int]) -> list[str]:
    """The input columns :func:`build_inputs` makes, in order."""
    return [*columns, *(f"{c}_mean{w}" for w in windows for c in columns),
            *(f"p_filter_{k}" for k in range(n_states)), "regime_age", *DATING_INPUTS]


def build_inputs(table: pd.DataFrame, features: pd.DataFrame, columns: Sequence[str], *,
                 n_states: int, windows: Sequence[int]) -> pd.DataFrame:
    """The input matrix but the dating's columns, one row per row of ``table``.

    Parameters
    ----------
    table : pandas.DataFrame
        The regimes table (``split``, ``symbol``, ``segment``, ``p_filter_k``), sorted
        by split, symbol and time.
    features : pandas.DataFrame
        The scaled feature rows of the same bars in the same order.
    columns : sequence of str
        The feature columns.
    n_states : int
        The family's state count.
    windows : sequence of int
        Trailing windows (bars) of the feature means.

    Returns
    -------
    pandas.DataFrame
        Columns :func:`input_columns` but :data:`DATING_INPUTS`, float64.
    """
    runs = run_ids(table)
    out = {c: features[c].to_numpy(dtype=np.float64) for c in columns}
    grouped = pd.DataFrame(out).groupby(runs, sort=False)
    for w in windows:
        means = grouped.rolling(w, min_periods=1).mean().reset_index(level=0, drop=True)
        for c in columns:
            out[f"{c}_mean{w}"] = means[c].sort_index().to_numpy()
    filtered = table[[f"p_filter_{k}" for k in range(n_states)]].to_numpy(dtype=np.float64)
    for k in range(n_states):
        out[f"p_filter_{k}"] = filtered[:, k]
    out["regime_age"] = regime_age(filtered.argmax(axis=1), runs)
    return pd.DataFrame(out)[input_columns(columns, n_states, windows)[:-len(DATING_INPUTS)]]
