"""diagnose: the tables and figures a researcher reads to judge a regime model.

For each model: the transition matrix (a heatmap, and the consecutive state
pairs of the evaluated split for DVC's confusion templates), the
regime-coloured price over the full range and over the evaluated split,
filtered against smoothed posteriors, dwell-time histograms against the
geometric law the chain implies, each state's mean features (z-scores) and
which features separate the states. Plus the selection curves, and one long
CSV (``reports/diagnostics.csv``) with the numbers behind the figures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_selection import f_classif

from regimelab import metrics, plots
from regimelab.exceptions import ModelError
from regimelab.regimes import RegimeModel, stationary_distribution

log = logging.getLogger(__name__)

KEYS = ["symbol", "timestamp"]


def _pieces(table: pd.DataFrame) -> np.ndarray:
    """An id per gap-free run of one split: a segment that a split cut (the embargo
    lies between) counts as two, so no dwell spans the cut."""
    return pd.factorize(table["split"].astype(str) + "/" + table["segment"].astype(str))[0]


def transition_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """``from`` and ``to`` state of each pair of consecutive bars in one segment."""
    states = table["state"].to_numpy()
    segment = table["segment"].to_numpy()
    same = segment[1:] == segment[:-1]
    return pd.DataFrame({"from": states[:-1][same], "to": states[1:][same]})


def feature_profile(frame: pd.DataFrame, states: np.ndarray, columns: list[str], *,
                    n_states: int) -> tuple[pd.DataFrame, pd.Series]:
    """Each state's mean of every (scaled) feature (NaN for a state with no bars), and
    each feature's ANOVA F statistic across the states (larger separates more)."""
    X = frame[columns].to_numpy(dtype=np.float64)
    k = n_states
    means = pd.DataFrame([X[states == s].mean(axis=0) if (states == s).any()
                          else np.full(len(columns), np.nan) for s in range(k)],
                         index=[f"state {s}" for s in range(k)], columns=columns)
    present = np.unique(states)
    if len(present) < 2:
        return means, pd.Series(np.nan, index=columns)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_stat, _ = f_classif(X, states)
    return means, pd.Series(f_stat, index=columns)


def _long(model: str, kind: str, values: Mapping[tuple[str, str], float]
          ) -> list[dict[str, Any]]:
    return [{"model": model, "table": kind, "row": row, "column": col, "value": float(v)}
            for (row, col), v in values.items()]


def diagnostics_rows(name: str, model: RegimeModel, table: pd.DataFrame, means: pd.DataFrame,
                     importance: pd.Series) -> list[dict[str, Any]]:
    """The numbers behind the figures, in long form: model, table, row, column, value."""
    k = model.n_states
    transmat = model.transmat_
    run_states, run_lengths = metrics.runs(table["state"].to_numpy(), _pieces(table))
    rows = _long(name, "transmat", {(str(i), str(j)): transmat[i, j]
                                    for i in range(k) for j in range(k)})
    rows += _long(name, "stationary", {(str(i), "p"): v
                                       for i, v in enumerate(stationary_distribution(transmat))})
    dwell: dict[tuple[str, str], float] = {}
    for s in range(k):
        lengths = run_lengths[run_states == s]
        dwell[(str(s), "runs")] = len(lengths)
        dwell[(str(s), "mean_bars")] = lengths.mean() if len(lengths) else np.nan
        dwell[(str(s), "median_bars")] = np.median(lengths) if len(lengths) else np.nan
        dwell[(str(s), "max_bars")] = lengths.max() if len(lengths) else np.nan
        stay = transmat[s, s]
        dwell[(str(s), "expected_bars")] = 1.0 / (1.0 - stay) if stay < 1 else np.inf
    rows += _long(name, "dwell", dwell)
    rows += _long(name, "feature_mean", {(str(s), col): means.iloc[s][col]
                                         for s in range(k) for col in means.columns})
    rows += _long(name, "feature_f_statistic", {("all", col): v
                                                for col, v in importance.items()})
    return rows


def regime_names(table: pd.DataFrame, n_states: int) -> list[str] | None:
    """Each state's name, read off a regimes table's ``regime`` column (None without one)."""
    if "regime" not in table.columns:
        return None
    named = table.drop_duplicates("state").set_index("state")["regime"]
    return [str(named.get(k, f"state {k}")) for k in range(n_states)]


def diagnose(
    regimes: Mapping[str, pd.DataFrame], models: Mapping[str, RegimeModel],
    frames: Mapping[str, pd.DataFrame], *, columns: list[str], bars: pd.DataFrame,
    split: str, selection: dict[str, Any] | None, out: str | Path,
) -> pd.DataFrame:
    """Write every figure and pairs table under ``out``; return the diagnostics table.

    Parameters
    ----------
    regimes, models : dict
        Each model family's regimes table and fitted model (``hmm``, ``dssm``).
    frames : dict
        The scaled splits; the feature profile is taken on ``train``, where the
        states were fitted.
    columns : list of str
    bars : pandas.DataFrame
        The clean bars: the close drawn under the states.
    split : str
        The split that the zoomed chart, the posteriors and the pairs describe.
    selection : dict, optional
        select-states' metrics, for the selection curves.
    out : path
        A folder; files are named ``<model>_<figure>.png`` and ``<model>_pairs.csv``
        (``_zoom`` figures show ``split``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name, model in models.items():
        table = regimes[name]
        k = model.n_states
        if f"p_filter_{k - 1}" not in table.columns or f"p_filter_{k}" in table.columns:
            raise ModelError(f"the {name} regimes table does not have the model's {k} "
                             "states; rerun the training stages")
        merged = table.merge(bars[[*KEYS, "close"]], on=KEYS, how="left", validate="one_to_one")
        # Splits are cut at shared calendar times, so the first symbol's boundaries serve.
        first = merged.loc[merged["symbol"] == merged["symbol"].iloc[0]]
        starts = [(s, first.loc[first["split"] == s, "timestamp"].iloc[0])
                  for s in ("val", "test") if (first["split"] == s).any()]
        part = first.loc[first["split"] == split]
        label = f"{name.upper()} (K={k})"
        names = regime_names(table, k)
        plots.transition_heatmap(model.transmat_, title=f"{label}: transition matrix",
                                 path=out / f"{name}_transmat.png")
        transition_pairs(table.loc[table["split"] == split]).to_csv(
            out / f"{name}_pairs.csv", index=False)
        plots.regime_chart(first["timestamp"], first["close"].to_numpy(),
                           first["state"].to_numpy(), n_states=k, boundaries=starts,
                           title=f"{label}: {first['symbol'].iloc[0]}, hindsight states",
                           path=out / f"{name}_regimes.png", names=names)
        plots.regime_chart(part["timestamp"], part["close"].to_numpy(),
                           np.argmax(part[[f"p_filter_{i}" for i in range(k)]].to_numpy(),
                                     axis=1),
                           n_states=k, title=f"{label}: the {split} split, filtered states "
                                             "(what was known at each close)",
                           path=out / f"{name}_regimes_zoom.png", names=names)
        plots.posteriors(part["timestamp"],
                         part[[f"p_filter_{i}" for i in range(k)]].to_numpy(),
                         part[[f"p_smooth_{i}" for i in range(k)]].to_numpy(),
                         title=f"{label}: posteriors over the {split} split",
                         path=out / f"{name}_posteriors_zoom.png", names=names)
        run_states, run_lengths = metrics.runs(table["state"].to_numpy(), _pieces(table))
        plots.dwell_histograms(run_states, run_lengths, model.transmat_,
                               title=f"{label}: dwell times, every split",
                               path=out / f"{name}_dwell.png", names=names)
        train = table["split"] == "train"
        means, importance = feature_profile(frames["train"], table.loc[train, "state"].to_numpy(),
                                            columns, n_states=k)
        plots.feature_heatmap(means, title=f"{label}: mean feature per state (z-scores, train)",
                              path=out / f"{name}_feature_means.png")
        plots.importance_bars(importance, title=f"{label}: how well each feature separates "
                                                "the states (train)",
                              xlabel="ANOVA F statistic", path=out / f"{name}_importance.png")
        rows += diagnostics_rows(name, model, table, means, importance)
    if selection is not None:
        candidates = pd.DataFrame([c for c in selection["candidates"].values()
                                   if c.get("status") == "complete"])
        if len(candidates):
            plots.selection_curves(candidates, path=out / "select_states.png")
    return pd.DataFrame(rows, columns=["model", "table", "row", "column", "value"])
