"""The HMM as train-hmm and select-states configure and train it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from regimelab.exceptions import ModelError
from regimelab.families.base import Trained, decode_splits, describe_chain
from regimelab.families.hmm.model import RegimeHMM
from regimelab.metrics import by_state
from regimelab.params import COVARIANCE_TYPES, HMMParams
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)

#: Distributions whose versions the fitted parameters depend on (for the manifest).
LIBRARIES = ("hmmlearn",)


def candidate_seed(seed: int, n_states: int, covariance_type: str) -> int:
    """The restarts' seed for one candidate: the same in select-states and train-hmm."""
    entropy = [seed, n_states, COVARIANCE_TYPES.index(covariance_type)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def check_collinear(covariance_type: str, collinear: Sequence[Sequence[Any]] | None, *,
                    allow: bool) -> None:
    """Refuse a full (or tied) covariance over features that move together.

    ``collinear`` is the scaler's list of ``[a, b, correlation]`` pairs beyond its
    threshold on train (``scaler.json``): a full covariance over such a pair is
    nearly singular, and its log-likelihood grows without describing regimes.

    Raises
    ------
    ModelError
        Unless ``allow`` (``hmm.allow_collinear``) or the covariance is diagonal.
    """
    if covariance_type in ("full", "tied") and collinear and not allow:
        a, b, r = collinear[0]
        raise ModelError(
            f"covariance_type {covariance_type}: features {a} and {b} correlate at {r:+.4f} "
            "on train, so a full covariance over them is nearly singular; drop one "
            "(features.columns), use diag, or set hmm.allow_collinear: true")


def make_hmm(n_states: int, covariance_type: str, *, hmm: HMMParams, seed: int) -> RegimeHMM:
    """A :class:`RegimeHMM` configured from the ``hmm`` params for one candidate."""
    return RegimeHMM(n_states, covariance_type=covariance_type, n_init=hmm.n_init,
                     n_iter=hmm.n_iter, tol=hmm.tol, min_covar=hmm.min_covar,
                     stickiness=hmm.stickiness,
                     implementation=hmm.implementation, short_iter=hmm.short_iter,
                     n_continue=hmm.n_continue, min_state_bars=hmm.min_state_bars,
                     init_smoothing=hmm.init_smoothing,
                     random_state=candidate_seed(seed, n_states, covariance_type))


def train(
    frames: dict[str, pd.DataFrame], *, columns: list[str], n_states: int,
    covariance_type: str, hmm: HMMParams, seed: int,
    bars: pd.DataFrame | None = None, collinear: Sequence[Sequence[Any]] | None = None,
) -> Trained:
    """Fit on ``frames['train']`` and decode every split.

    Parameters
    ----------
    frames : dict
        Scaled ``train``, ``val`` and ``test`` tables.
    columns : list of str
        The feature columns, in the spec's order.
    n_states, covariance_type : the resolved model
    hmm : the ``hmm`` params
    seed : ``model.seed``
    bars : pandas.DataFrame, optional
        The clean bars: each state's name comes from its training bars' returns
        (:mod:`regimelab.naming`); without them the states are not named.
    collinear : list, optional
        The scaler's collinear pairs (see :func:`check_collinear`).
    """
    check_collinear(covariance_type, collinear, allow=hmm.allow_collinear)
    X, lengths = to_sequences(frames["train"], columns)
    model = make_hmm(n_states, covariance_type, hmm=hmm, seed=seed).fit(
        X, lengths, feature_names=columns)
    decoded = decode_splits(model, frames, columns, bars=bars, seed=seed)
    ll_per_bar, regimes, shares = decoded.ll_per_bar, decoded.regimes, decoded.occupancy

    occupancy = {name: by_state(values) for name, values in shares.items()}
    metrics = {
        "n_states": n_states,
        "covariance_type": covariance_type,
        "log_likelihood_per_bar": ll_per_bar,
        "aic": model.aic_,
        "bic": model.bic_,
        "n_parameters": model.n_parameters,
        "n_iter": model.n_iter_,
        "converged": model.converged_,
        "restart_ari": model.restart_ari_,
        "restarts": {str(r.index): {"log_likelihood_per_bar": (
            None if r.log_likelihood is None else r.log_likelihood / len(X)),
            "continued": r.continued, "failed": r.failed or ""} for r in model.restarts_},
        **describe_chain(model.transmat_),
        "occupancy": occupancy,
        "state_order": model.state_order_,
        "regime_names": decoded.names_by_state,
    }
    history = pd.DataFrame({
        "iteration": np.arange(1, len(model.history_) + 1),
        "log_likelihood_per_bar": np.asarray(model.history_) / len(X),
    })
    log.info("HMM K=%d %s: train %.4f, val %.4f, test %.4f nats/bar; %d EM iterations%s",
             n_states, covariance_type, ll_per_bar["train"], ll_per_bar["val"],
             ll_per_bar["test"], model.n_iter_, "" if model.converged_ else " (not converged)")
    return Trained(model=model, metrics=metrics, regimes=regimes, history=history,
                   naming=decoded.naming)
