"""Drift: how far recent bars have moved from the data a model was trained on.

Three views, each with a threshold:

- **features**: per feature, the population stability index (PSI, on ten
  quantile bins of the training data) and the two-sample Kolmogorov-Smirnov
  statistic, on the scaled observations;
- **fit**: the model's log-likelihood per bar on the recent bars against the
  training bars. A drop means the model no longer describes the market, which
  matters more than any one feature moving;
- **regimes**: the shift in state occupancy (total variation distance between
  the filtered-state shares) and in switching (switches per 1,000 bars).

Common reading of PSI: below 0.1 stable, 0.1 to 0.25 a moderate shift, above
0.25 a large one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from regimelab import metrics
from regimelab.regimes import RegimeModel
from regimelab.sequences import to_sequences

_BINS = 10
_FLOOR = 1e-4  # share given to an empty bin, so the PSI stays finite


@dataclass(frozen=True)
class Thresholds:
    """Beyond any of these, the report says drift (and the CLI exits 1)."""

    psi: float = 0.25
    ks: float = 0.2
    ll_drop: float = 1.0  # nats per bar
    occupancy_tv: float = 0.3


def psi(reference: np.ndarray, recent: np.ndarray, *, bins: int = _BINS) -> float:
    """Population stability index of ``recent`` against ``reference``, on the reference's
    quantile bins: ``sum (q - p) log(q / p)``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, reference, side="right"),
                    minlength=len(edges) + 1) / len(reference)
    q = np.bincount(np.searchsorted(edges, recent, side="right"),
                    minlength=len(edges) + 1) / len(recent)
    p, q = np.maximum(p, _FLOOR), np.maximum(q, _FLOOR)
    return float(((q - p) * np.log(q / p)).sum())


def _states(model: RegimeModel, table: pd.DataFrame, columns: list[str]
            ) -> tuple[float, np.ndarray, float]:
    X, lengths = to_sequences(table, columns)
    states = model.filter_proba(X, lengths).argmax(axis=1)
    shares = np.bincount(states, minlength=model.n_states) / len(states)
    return (model.score(X, lengths) / len(X), shares,
            metrics.switches_per_1000(states, table["segment"].to_numpy()))


def drift_report(model: RegimeModel, reference: pd.DataFrame, recent: pd.DataFrame, *,
                 columns: list[str], thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """Compare ``recent`` scaled observations with the ``reference`` (training) ones.

    Parameters
    ----------
    model : the fitted model
    reference, recent : pandas.DataFrame
        Scaled feature tables (``segment`` and ``columns``), e.g. the training split
        and :func:`~regimelab.inference.observations` of new bars.
    columns : list of str
    thresholds : Thresholds

    Returns
    -------
    dict
        ``features`` (PSI and KS per feature), ``fit``, ``regimes``, the
        ``thresholds``, the list of ``breaches`` and ``drift`` (any breach).
    """
    features = {}
    breaches = []
    for col in columns:
        ref, new = reference[col].to_numpy(), recent[col].to_numpy()
        ks = ks_2samp(ref, new)
        features[col] = {"psi": psi(ref, new), "ks": float(ks.statistic),
                         "ks_p_value": float(ks.pvalue)}
        if features[col]["psi"] > thresholds.psi:
            breaches.append(f"{col}: PSI {features[col]['psi']:.3f} > {thresholds.psi}")
        if features[col]["ks"] > thresholds.ks:
            breaches.append(f"{col}: KS {features[col]['ks']:.3f} > {thresholds.ks}")
    ll_ref, shares_ref, switches_ref = _states(model, reference, columns)
    ll_new, shares_new, switches_new = _states(model, recent, columns)
    fit = {"ll_per_bar_reference": ll_ref, "ll_per_bar_recent": ll_new,
           "ll_drop": ll_ref - ll_new}
    if fit["ll_drop"] > thresholds.ll_drop:
        breaches.append(f"log-likelihood per bar fell by {fit['ll_drop']:.3f} nats "
                        f"> {thresholds.ll_drop}")
    tv = float(0.5 * np.abs(shares_new - shares_ref).sum())
    regimes = {"occupancy_reference": {str(k): float(v) for k, v in enumerate(shares_ref)},
               "occupancy_recent": {str(k): float(v) for k, v in enumerate(shares_new)},
               "occupancy_tv": tv, "switches_per_1000_reference": switches_ref,
               "switches_per_1000_recent": switches_new}
    if tv > thresholds.occupancy_tv:
        breaches.append(f"regime occupancy moved by {tv:.3f} (total variation) "
                        f"> {thresholds.occupancy_tv}")
    return {"bars_reference": len(reference), "bars_recent": len(recent),
            "features": features, "fit": fit, "regimes": regimes,
            "thresholds": asdict(thresholds), "breaches": breaches, "drift": bool(breaches)}
