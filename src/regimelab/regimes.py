"""What both model families share: state order, Markov-chain summaries, the regimes table."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from regimelab.exceptions import FeatureError
from regimelab.features.catalog import FeatureDef, parse_feature
from regimelab.params import parse_timeframe
from regimelab.sequences import to_sequences

# Feature kinds whose level is a volatility (or its log), most direct first.
_VOLATILITY_LEVELS = ("log_range", "realized_vol", "ewm_vol", "parkinson", "ewm_downside",
                      "hl_range_pct")


class RegimeModel(Protocol):
    """The interface evaluate and diagnose rely on, whichever family is behind it.

    ``has_likelihood`` says whether ``score`` is a log-likelihood. A family
    without one (the jump models) raises in ``score`` and offers its own
    ``objective`` instead; nothing invents a likelihood for it.
    """

    n_states: int
    has_likelihood: bool

    @property
    def transmat_(self) -> np.ndarray:
        """Transition matrix, shape ``(n_states, n_states)``; for a model whose
        transitions depend on the past, the matrix they average to."""
        ...

    def predict(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...
    def predict_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...
    def filter_proba(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray: ...
    def score(self, X: np.ndarray, lengths: np.ndarray) -> float: ...

    def loglik_per_bar(self, X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """log p(x_t | x_1..t-1) of each bar, shape ``(n_samples,)``; like ``score``, only
        where the family has a likelihood (a class without one sets
        ``has_likelihood = False``)."""
        ...


@runtime_checkable
class HasObjective(Protocol):
    """A family without a likelihood: its own objective stands beside the empty
    likelihood rows (losses plus penalties, lower is better)."""

    def objective(self, X: np.ndarray, lengths: np.ndarray) -> float: ...


@runtime_checkable
class HasInformationCriteria(Protocol):
    """A family with a parameter count: AIC and BIC on the training split."""

    def aic(self, X: np.ndarray, lengths: np.ndarray) -> float: ...
    def bic(self, X: np.ndarray, lengths: np.ndarray) -> float: ...


def volatility_rule(columns: list[str], *, shared_covariance: bool = False) -> dict[str, Any]:
    """How states are ranked by volatility, given the feature columns.

    The state's variance of the base log return when that feature is there;
    otherwise its mean of a volatility level (realised, EWM or Parkinson
    volatility, log EWM downside deviation, high-low range); otherwise the
    trace of its covariance. With one covariance shared by every state
    (``tied``) a variance ranks nothing, so a level comes first. Of several
    columns of one kind the first counts, except that of the EWM kinds the
    shortest half-life (in time) does: it tracks the volatility of the bar itself.
    """
    kinds: dict[str, list[FeatureDef]] = {}
    for name in columns:
        try:
            d = parse_feature(name)
        except FeatureError:  # a column outside the catalogue cannot name a rule
            continue
        kinds.setdefault(d.kind, []).append(d)
    if "log_return" in kinds and not shared_covariance:
        return {"statistic": "variance", "feature": kinds["log_return"][0].name}
    for kind in _VOLATILITY_LEVELS:
        if kind in kinds:
            return {"statistic": "mean", "feature": min(kinds[kind], key=_horizon).name}
    return {"statistic": "trace", "feature": None}


def _horizon(d: FeatureDef) -> pd.Timedelta:
    """An EWM's half-life in time; zero (all alike, so the first wins) for other kinds."""
    if d.timed:
        return parse_timeframe(d.timeframe) * d.params[0]
    return pd.Timedelta(0)


def volatility_order(means: np.ndarray, covars: np.ndarray, columns: list[str]
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """Permutation putting states in ascending volatility, and the rule used.

    Parameters
    ----------
    means : ndarray of shape (n_states, n_features)
    covars : ndarray of shape (n_states, n_features, n_features)
    columns : list of str
        Feature names, in the order of the columns of ``means``.

    Returns
    -------
    order : ndarray of shape (n_states,)
        ``order[i]`` is the old index of the state that becomes state ``i``.
    rule : dict
        ``statistic``, ``feature`` and the sorted ``values``, for the manifest.
    """
    shared = len(covars) > 1 and bool((covars == covars[0]).all())
    rule = volatility_rule(columns, shared_covariance=shared)
    if rule["statistic"] == "variance":
        j = columns.index(rule["feature"])
        values = covars[:, j, j]
    elif rule["statistic"] == "mean":
        values = means[:, columns.index(rule["feature"])]
    else:
        values = np.trace(covars, axis1=1, axis2=2)
    # Ties (identical states) fall back to the first feature's mean, then the old index.
    order = np.lexsort((np.arange(len(values)), means[:, 0], values))
    return order, {**rule, "values": values[order].tolist()}


def align_states(posteriors: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """Renumber one model's states to match a reference model's, by posterior overlap.

    The overlap of state i with reference state j is ``sum_t p_t(i) q_t(j)``; the
    Hungarian algorithm picks the one-to-one matching with the most overlap.

    Parameters
    ----------
    posteriors : ndarray of shape (n_samples, K)
        This model's state probabilities.
    reference : ndarray of shape (n_samples, K)
        The reference model's, on the same bars.

    Returns
    -------
    order : ndarray of shape (K,)
        ``order[j]`` is the state of this model that becomes state ``j``.
    agreement : float
        Share of the probability mass on matched pairs (1: the two agree on every bar).
    """
    overlap = posteriors.T @ reference
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    order = np.empty(len(cols), dtype=np.int64)
    order[cols] = rows
    return order, float(overlap[rows, cols].sum() / overlap.sum())


def stationary_distribution(transmat: np.ndarray) -> np.ndarray:
    """The left eigenvector of ``transmat`` for eigenvalue 1, shape ``(n_states,)``."""
    k = transmat.shape[0]
    # Solve pi (P - I) = 0 with sum(pi) = 1 as a least-squares system: stable for
    # nearly reducible chains, where an eigen-solver can return a complex vector.
    a = np.vstack([transmat.T - np.eye(k), np.ones(k)])
    b = np.r_[np.zeros(k), 1.0]
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def expected_durations(transmat: np.ndarray) -> np.ndarray:
    """Expected dwell in bars, ``1 / (1 - p_kk)``, shape ``(n_states,)``; inf if absorbing."""
    stay = np.diag(transmat)
    with np.errstate(divide="ignore"):
        return np.where(stay < 1.0, 1.0 / (1.0 - stay), np.inf)


def regimes_table(model: RegimeModel, frames: dict[str, pd.DataFrame], columns: list[str],
                  *, names: list[str] | None = None) -> pd.DataFrame:
    """The regimes contract for every bar of every split.

    Columns: ``timestamp``, ``symbol``, ``split``, ``segment``, ``state`` (the
    most likely path), ``regime`` (its name, given ``names``: one per state,
    see :mod:`regimelab.naming`), ``p_smooth_0..K-1`` (given the whole split)
    and ``p_filter_0..K-1`` (given bars up to and including t: causal).
    """
    parts = []
    for name, frame in frames.items():
        X, lengths = to_sequences(frame, columns)
        smooth = model.predict_proba(X, lengths)
        filtered = model.filter_proba(X, lengths)
        part = pd.DataFrame({
            "timestamp": frame["timestamp"].array,
            "symbol": frame["symbol"].array,
            "split": name,
            "segment": frame["segment"].to_numpy(),
            "state": model.predict(X, lengths).astype(np.int64),
        })
        if names is not None:
            part["regime"] = np.asarray(names, dtype=object)[part["state"].to_numpy()]
        for k in range(model.n_states):
            part[f"p_smooth_{k}"] = smooth[:, k]
        for k in range(model.n_states):
            part[f"p_filter_{k}"] = filtered[:, k]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
