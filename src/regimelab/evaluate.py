"""evaluate: one metrics block per model (the HMM, the DSSM, a one-Gaussian baseline).

Each block describes the model on the validation and test splits in the same
units, so ``dvc metrics diff`` and ``dvc exp show`` line experiments up key by
key:

- fit: log-likelihood per bar on val and test (nats; AIC and BIC for the HMM).
  Only test is held out: validation chose the DSSM's early stopping and best
  checkpoint and breaks select-states' ties, so the file says so under
  ``held_out``;
- occupancy: each state's share of the evaluated split and the largest share;
- persistence: mean and median dwell (bars), switches per 1,000 bars,
  stickiness (the transition matrix's mean diagonal), posterior entropy;
- forecasts: the state 1 and 24 bars ahead from the filtered posterior and
  the transition matrix, against persistence;
- returns: per state, the forward log return's mean, volatility and Sharpe
  (annualised) at each horizon with circular block bootstrap 95% intervals
  (the block per horizon under ``bootstrap_block``), and a Kruskal-Wallis test
  across states on every h-th bar.

The state a forward return is grouped under is the **filtered** state at the
close of bar t (``argmax p_filter_t``), which a trader would have known then.
Grouping by the smoothed or Viterbi state would leak the return being
measured into the label.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score

from regimelab import metrics
from regimelab.exceptions import ModelError
from regimelab.params import EvaluateParams
from regimelab.regimes import HasInformationCriteria, HasObjective, RegimeModel
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)

KEYS = ["symbol", "timestamp"]
# What each split's figures may be read as: validation took part in choosing the model.
HELD_OUT = {"val": False, "test": True}
HELD_OUT_NOTE = ("val chose the DSSM's early stopping and best checkpoint and breaks "
                 "select-states' ties: it is not held out; only test is")


def bars_per_year(bars: pd.DataFrame) -> float:
    """Bars per year as the data has them: bars over the years each symbol spans, the
    median over symbols. Round-the-clock hourly bars give up to 8,766 (fewer with
    outages), a stock's daily bars about 252."""
    per_symbol = []
    for _, group in bars.groupby("symbol", sort=False):
        span = (group["timestamp"].iloc[-1] - group["timestamp"].iloc[0]).total_seconds()
        if span > 0:
            per_symbol.append((len(group) - 1) / (span / (365.25 * 86400.0)))
    return float(np.median(per_symbol)) if per_symbol else float("nan")


def forward_returns(rows: pd.DataFrame, bars: pd.DataFrame, horizon: int,
                    step: pd.Timedelta) -> np.ndarray:
    """``log(close_{t+h} / close_t)`` for each of ``rows``' bars, NaN where bar t+h is missing.

    ``step`` is the bar interval; a gap in the bars leaves the return out rather
    than measuring it over a longer time.
    """
    close = bars.set_index(KEYS)["close"]
    now = pd.MultiIndex.from_arrays([rows["symbol"], rows["timestamp"]])
    later = pd.MultiIndex.from_arrays([rows["symbol"], rows["timestamp"] + horizon * step])
    return np.log(close.reindex(later).to_numpy() / close.reindex(now).to_numpy())


def _proba(table: pd.DataFrame, kind: str, k: int) -> np.ndarray:
    return table[[f"p_{kind}_{i}" for i in range(k)]].to_numpy()


def bootstrap_blocks(returns: Mapping[int, np.ndarray], block: int | str) -> dict[int, int]:
    """Bars per bootstrap block at each horizon: ``evaluate.block``, or with ``auto``
    :func:`~regimelab.metrics.block_length` of that horizon's forward returns."""
    blocks = {}
    for h, fwd in returns.items():
        blocks[h] = metrics.block_length(fwd, horizon=h) if block == "auto" else int(block)
        if blocks[h] < metrics.BLOCK_HORIZONS * h:
            log.warning("evaluate.block = %d bars is under %d horizons of %d bars: the "
                        "intervals of overlapping h%d returns are too narrow", blocks[h],
                        metrics.BLOCK_HORIZONS, h, h)
    log.info("bootstrap blocks: %s", ", ".join(f"h{h} {b} bars" for h, b in blocks.items()))
    return blocks


def regime_block(table: pd.DataFrame, model: RegimeModel, *, returns: Mapping[int, np.ndarray],
                 per_year: float, step: pd.Timedelta, params: EvaluateParams,
                 blocks: Mapping[int, int], rng: np.random.Generator) -> dict[str, Any]:
    """Occupancy, persistence, forecasts and per-state returns on one split's regimes.

    Parameters
    ----------
    table : pandas.DataFrame
        One split of a regimes table (``state``, ``segment``, ``timestamp``,
        ``p_smooth_k``, ``p_filter_k``), in time order.
    model : the fitted model
    returns : dict
        Per horizon h, the forward h-bar log return of each of ``table``'s bars,
        shape ``(n_samples,)``.
    per_year : float
        Bars per year.
    step : pandas.Timedelta
        The bar interval.
    params : the ``evaluate`` params
    blocks : dict
        Per horizon, bars per bootstrap block (:func:`bootstrap_blocks`).
    rng : numpy.random.Generator
        Draws the bootstrap blocks.
    """
    k = model.n_states
    if f"p_filter_{k - 1}" not in table.columns or f"p_filter_{k}" in table.columns:
        raise ModelError(f"the regimes table does not have the model's {k} states; rerun the "
                         "training stages")
    states = table["state"].to_numpy()
    segment = table["segment"].to_numpy()
    filtered = _proba(table, "filter", k)
    live = filtered.argmax(axis=1)
    shares = np.bincount(states, minlength=k) / len(states)
    _, lengths = metrics.runs(states, segment)
    _, live_lengths = metrics.runs(live, segment)
    block: dict[str, Any] = {
        "n_states": k,
        "occupancy": metrics.by_state(shares),
        "largest_share": float(shares.max()),
        "largest_share_ok": bool(shares.max() <= params.max_share),
        "dwell_mean_bars": float(lengths.mean()),
        "dwell_median_bars": float(np.median(lengths)),
        "switches_per_1000": metrics.switches_per_1000(states, segment),
        # What a live user sees: the filtered state, known at each close.
        "filtered": {"dwell_mean_bars": float(live_lengths.mean()),
                     "dwell_median_bars": float(np.median(live_lengths)),
                     "switches_per_1000": metrics.switches_per_1000(live, segment)},
        "stickiness": float(np.diag(model.transmat_).mean()),
        "entropy_filtered": metrics.mean_entropy(filtered),
        "entropy_smoothed": metrics.mean_entropy(_proba(table, "smooth", k)),
        "forecast": {},
        "returns": {},
    }
    for h in params.horizons:
        acc = metrics.forecast_accuracy(filtered, states, segment, model.transmat_, h,
                                        timestamps=table["timestamp"].to_numpy(),
                                        step=step.to_timedelta64())
        block["forecast"][f"h{h}"] = {"accuracy": acc["model"],
                                      "persistence": acc["persistence"],
                                      "skill": acc["model"] - acc["persistence"]}
        fwd = returns[h]
        # Every h-th bar: h-bar returns that do not overlap, as the test assumes.
        apart = np.isfinite(fwd) & (np.arange(len(fwd)) % h == 0)
        block["returns"][f"h{h}"] = {
            "kruskal": metrics.kruskal_wallis(fwd[apart], live[apart]),
            # Whether the regimes separate volatility: the same test on the returns' size.
            "kruskal_abs": metrics.kruskal_wallis(np.abs(fwd[apart]), live[apart]),
            **metrics.state_return_stats(fwd, live, n_states=k, horizon=h,
                                         bars_per_year=per_year, block=blocks[h],
                                         n_boot=params.n_boot, rng=rng),
        }
    return block


def baseline_block(frames: Mapping[str, pd.DataFrame], columns: list[str], *,
                   returns: Mapping[int, np.ndarray], per_year: float,
                   params: EvaluateParams, blocks: Mapping[int, int],
                   rng: np.random.Generator) -> dict[str, Any]:
    """One Gaussian (full covariance) fitted on train: the fit any regime model must beat,
    and the unconditional returns that per-state returns are read against."""
    X = frames["train"][columns].to_numpy(dtype=np.float64)
    gaussian = multivariate_normal(X.mean(axis=0), np.cov(X, rowvar=False), allow_singular=True)
    block: dict[str, Any] = {
        "n_states": 1,
        "ll_per_bar": {name: float(gaussian.logpdf(
            frames[name][columns].to_numpy(dtype=np.float64)).mean()) for name in ("val", "test")},
        "returns": {},
    }
    for h in params.horizons:
        block["returns"][f"h{h}"] = {"0": metrics.return_stats(
            returns[h], horizon=h, bars_per_year=per_year, block=blocks[h],
            n_boot=params.n_boot, rng=rng)}
    return block


def evaluate(
    regimes: Mapping[str, pd.DataFrame], models: Mapping[str, RegimeModel],
    frames: Mapping[str, pd.DataFrame], *, columns: list[str], bars: pd.DataFrame,
    step: pd.Timedelta, params: EvaluateParams, seed: int, truth: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The whole metrics file.

    Parameters
    ----------
    regimes : dict
        Each model family's regimes table (``hmm``, ``dssm``), every split.
    models : dict
        The fitted models, same keys.
    frames : dict
        The scaled ``train``, ``val`` and ``test`` tables.
    columns : list of str
        The feature columns.
    bars : pandas.DataFrame
        The clean bars, for forward returns.
    step : pandas.Timedelta
        The bar interval.
    params : the ``evaluate`` params
    seed : seeds the bootstrap
    truth : pandas.DataFrame, optional
        ``symbol``, ``timestamp``, ``regime``: a known regime (synthetic markets).
    """
    rng = np.random.default_rng(seed)
    split = params.split
    per_year = bars_per_year(bars)
    rows = next(iter(regimes.values()))
    rows = rows.loc[rows["split"] == split, KEYS].reset_index(drop=True)
    returns = {h: forward_returns(rows, bars, h, step) for h in params.horizons}
    blocks = bootstrap_blocks(returns, params.block)
    report: dict[str, Any] = {"split": split, "bars": len(rows), "bars_per_year": per_year,
                              "held_out": {**HELD_OUT, "note": HELD_OUT_NOTE},
                              "bootstrap_block": {f"h{h}": b for h, b in blocks.items()}}
    for name, model in models.items():
        table = regimes[name]
        part = table.loc[table["split"] == split].reset_index(drop=True)
        if not part[KEYS].equals(rows):
            raise ModelError(f"data/regimes: the {name} regimes cover other {split} bars than "
                             "the others; rerun the training stages")
        block: dict[str, Any] = {"ll_per_bar": {}}
        for s in ("val", "test"):
            X, lengths = to_sequences(frames[s], columns)
            if model.has_likelihood:
                block["ll_per_bar"][s] = model.score(X, lengths) / len(X)
            else:
                # Never an invented likelihood: the rows stay empty, and the family's
                # own objective per bar (lower is better) stands beside them.
                block["ll_per_bar"][s] = None
                if isinstance(model, HasObjective):
                    block.setdefault("objective_per_bar", {})[s] = (
                        model.objective(X, lengths) / len(X))
        if isinstance(model, HasInformationCriteria):
            X, lengths = to_sequences(frames["train"], columns)
            block["aic"], block["bic"] = model.aic(X, lengths), model.bic(X, lengths)
        block.update(regime_block(part, model, returns=returns, per_year=per_year, step=step,
                                  params=params, blocks=blocks, rng=rng))
        if truth is not None:
            merged = part[KEYS].merge(truth, on=KEYS, how="left", validate="one_to_one")
            block["truth"] = metrics.truth_scores(merged["regime"].to_numpy(),
                                                  part["state"].to_numpy())
        report[name] = block
    report["baseline"] = baseline_block(frames, columns, returns=returns, per_year=per_year,
                                        params=params, blocks=blocks, rng=rng)
    names = list(models)
    report["agreement"] = {}
    for i, a_name in enumerate(names):
        for b_name in names[i + 1:]:
            a, b = (regimes[m].loc[regimes[m]["split"] == split, "state"].to_numpy()
                    for m in (a_name, b_name))
            report["agreement"][f"{a_name}_{b_name}"] = {
                "ari": float(adjusted_rand_score(a, b)),
                "same_state_share": float(np.mean(a == b))}
    return report
