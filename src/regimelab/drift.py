"""Drift: how far recent bars have moved from the data a model was trained on.

Three views, each with a threshold:

- **features**: per feature, the population stability index (PSI, on ten
  quantile bins of the training data) and the two-sample Kolmogorov-Smirnov
  statistic, on the scaled observations;
- **fit**: the model's per-bar predictive log-likelihood, log p(x_t | x_<t),
  each ranked among the training bars of its (filtered) regime, and the recent
  ranks' distribution against the training ones (KS statistic and PSI), in
  both directions. A bar's log-likelihood tracks how calm the market is as much
  as how well the model describes it: a market that has calmed into something
  the model never saw scores *higher* than its regime did in training, a wild
  one lower, and either is drift, while a volatile stretch of a regime the
  model knows is not. The mean per bar and its change are reported too. A
  model without a likelihood (``has_likelihood = False``) has no fit view
  (``fit`` is null);
- **regimes**: the shift in state occupancy (total variation distance between
  the filtered-state shares) and in switching (switches per 1,000 bars).

Common reading of PSI: below 0.1 stable, 0.1 to 0.25 a moderate shift, above
0.25 a large one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from regimelab import metrics
from regimelab.regimes import RegimeModel
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)

_BINS = 10
_FLOOR = 1e-4  # share given to an empty bin, so the PSI stays finite
# A regime with fewer training bars than this is ranked against all of them.
MIN_STATE_BARS = 50


@dataclass(frozen=True)
class Thresholds:
    """Beyond any of these, the report says drift (and the CLI exits 1)."""

    psi: float = 0.25
    ks: float = 0.2
    ll_psi: float = 0.25  # of the per-bar log-likelihoods, either direction
    ll_ks: float = 0.2
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
            ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, float]:
    """Per-bar log-likelihoods (None without a likelihood), filtered states, state shares
    and switching."""
    X, lengths = to_sequences(table, columns)
    states = model.filter_proba(X, lengths).argmax(axis=1)
    shares = np.bincount(states, minlength=model.n_states) / len(states)
    scores = (model.loglik_per_bar(X, lengths) if model.has_likelihood
              else None)
    return (scores, states, shares,
            metrics.switches_per_1000(states, table["segment"].to_numpy()))


def regime_ranks(reference: np.ndarray, reference_states: np.ndarray, scores: np.ndarray,
                 states: np.ndarray) -> np.ndarray:
    """Each bar's log-likelihood as its rank among the reference bars of its regime.

    The mid-rank share, in [0, 1], among the reference scores whose filtered
    state is the bar's (all reference scores when that state has fewer than
    :data:`MIN_STATE_BARS`). Reference bars ranked against themselves spread
    evenly over [0, 1] whatever the regimes' shares, and so do recent bars of
    the same law: a regime mix unlike the reference's is the regimes view's to
    report, not the fit's.

    Parameters
    ----------
    reference, reference_states : ndarray of shape (n_reference,)
    scores, states : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    ranks = np.empty(len(scores))
    everything = np.sort(reference)
    for k in np.unique(states):
        mine = states == k
        pool = np.sort(reference[reference_states == k])
        if len(pool) < MIN_STATE_BARS:
            pool = everything
        below = np.searchsorted(pool, scores[mine], side="left")
        at_most = np.searchsorted(pool, scores[mine], side="right")
        ranks[mine] = (below + at_most) / (2.0 * len(pool))
    return ranks


def fit_drift(reference: np.ndarray, reference_states: np.ndarray, recent: np.ndarray,
              recent_states: np.ndarray) -> dict[str, Any]:
    """How the recent bars' log-likelihoods compare with the reference ones, both ways.

    Each bar's log p(x_t | x_<t) is ranked among the reference bars of its
    filtered regime (:func:`regime_ranks`), and the recent ranks' distribution
    is compared with the reference's: a two-sample KS statistic and the PSI.
    Ranks that pile up high mean bars the model finds more likely than anything
    it was trained on in that regime (a market calmer than it has seen), ranks
    that pile up low the reverse; a volatile stretch of a regime the model
    knows keeps its ranks spread, though its log-likelihood per bar is low.

    Parameters
    ----------
    reference, reference_states : ndarray of shape (n_reference,)
        Per-bar log-likelihoods (nats) and filtered states of the training bars.
    recent, recent_states : ndarray of shape (n_samples,)
        The same of the recent bars.

    Returns
    -------
    dict
        ``ll_per_bar_reference`` and ``ll_per_bar_recent`` (means, nats),
        ``ll_drop`` (their difference, positive when the recent bars score lower
        on average), ``ll_rank_mean`` (the recent bars' mean rank: 0.5 as in
        training), ``ll_ks`` and ``ll_ks_p_value``, ``ll_psi`` and ``direction``:
        ``higher`` (the recent bars rank above the training bars of their
        regime) or ``lower``.
    """
    ref_ranks = regime_ranks(reference, reference_states, reference, reference_states)
    new_ranks = regime_ranks(reference, reference_states, recent, recent_states)
    ks = ks_2samp(ref_ranks, new_ranks)
    ref_mean, new_mean = float(reference.mean()), float(recent.mean())
    rank_mean = float(new_ranks.mean())
    return {"ll_per_bar_reference": ref_mean, "ll_per_bar_recent": new_mean,
            "ll_drop": ref_mean - new_mean, "ll_rank_mean": rank_mean,
            "ll_ks": float(ks.statistic), "ll_ks_p_value": float(ks.pvalue),
            "ll_psi": psi(ref_ranks, new_ranks),
            "direction": "higher" if rank_mean > float(ref_ranks.mean()) else "lower"}


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
        ``features`` (PSI and KS per feature), ``fit`` (:func:`fit_drift`; None
        for a model without a likelihood), ``regimes``, the ``thresholds``, the
        list of ``breaches`` and ``drift`` (any breach).
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
    ll_ref, states_ref, shares_ref, switches_ref = _states(model, reference, columns)
    ll_new, states_new, shares_new, switches_new = _states(model, recent, columns)
    fit = (None if ll_ref is None or ll_new is None
           else fit_drift(ll_ref, states_ref, ll_new, states_new))
    if fit is None:
        log.info("%s has no likelihood: drift reports features and regimes only",
                 type(model).__name__)
    else:
        moved = (f"per-bar log-likelihoods moved {fit['direction']} (mean rank in their "
                 f"regime {fit['ll_rank_mean']:.2f}, 0.5 in training; "
                 f"{fit['ll_per_bar_reference']:.3f} -> {fit['ll_per_bar_recent']:.3f} "
                 "nats per bar)")
        if fit["ll_ks"] > thresholds.ll_ks:
            breaches.append(f"{moved}: KS {fit['ll_ks']:.3f} > {thresholds.ll_ks}")
        if fit["ll_psi"] > thresholds.ll_psi:
            breaches.append(f"{moved}: PSI {fit['ll_psi']:.3f} > {thresholds.ll_psi}")
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
