"""train-hmm: fit the chosen HMM on the training split and describe it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd

from regimelab import __version__
from regimelab.hmm import RegimeHMM
from regimelab.params import HMMParams
from regimelab.regimes import (
    RegimeModel,
    expected_durations,
    regimes_table,
    stationary_distribution,
)
from regimelab.selection import make_hmm
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedHMM:
    """What train-hmm writes: the model, its metrics, its regimes and its EM history."""

    model: RegimeHMM
    metrics: dict[str, Any]
    regimes: pd.DataFrame
    history: pd.DataFrame


def by_state(values: np.ndarray) -> dict[str, float]:
    """``{"0": v_0, "1": v_1, ...}``: flat keys that `dvc metrics diff` lines up."""
    return {str(k): float(v) for k, v in enumerate(values)}


def describe_chain(transmat: np.ndarray) -> dict[str, Any]:
    """Transition matrix, stationary distribution and expected durations, keyed by state."""
    return {
        "transmat": {str(i): by_state(row) for i, row in enumerate(transmat)},
        "stationary": by_state(stationary_distribution(transmat)),
        "expected_duration_bars": by_state(expected_durations(transmat)),
    }


def decode_splits(model: RegimeModel, frames: dict[str, pd.DataFrame], columns: list[str]
                  ) -> tuple[dict[str, float], pd.DataFrame, dict[str, np.ndarray]]:
    """What every trained model reports about each split, whichever family it is.

    Returns
    -------
    ll_per_bar : dict
        Log-likelihood per bar of each split, in nats.
    regimes : pandas.DataFrame
        The regimes table of every split.
    occupancy : dict
        Each split's share of bars per state (the most likely path), shape ``(K,)``.
    """
    ll_per_bar = {}
    for name, frame in frames.items():
        X, lengths = to_sequences(frame, columns)
        ll_per_bar[name] = model.score(X, lengths) / len(X)
    regimes = regimes_table(model, frames, columns)
    occupancy = {name: np.bincount(part["state"], minlength=model.n_states) / len(part)
                 for name, part in regimes.groupby("split", sort=False)}
    return ll_per_bar, regimes, occupancy


def train_hmm(
    frames: dict[str, pd.DataFrame], *, columns: list[str], n_states: int,
    covariance_type: str, hmm: HMMParams, seed: int,
) -> TrainedHMM:
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
    """
    X, lengths = to_sequences(frames["train"], columns)
    model = make_hmm(n_states, covariance_type, hmm=hmm, seed=seed).fit(
        X, lengths, feature_names=columns)
    ll_per_bar, regimes, shares = decode_splits(model, frames, columns)
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
    }
    history = pd.DataFrame({
        "iteration": np.arange(1, len(model.history_) + 1),
        "log_likelihood_per_bar": np.asarray(model.history_) / len(X),
    })
    log.info("HMM K=%d %s: train %.4f, val %.4f, test %.4f nats/bar; %d EM iterations%s",
             n_states, covariance_type, ll_per_bar["train"], ll_per_bar["val"],
             ll_per_bar["test"], model.n_iter_, "" if model.converged_ else " (not converged)")
    return TrainedHMM(model=model, metrics=metrics, regimes=regimes, history=history)


def manifest(*, spec: dict[str, Any], scaler: dict[str, Any], train_sha256: str,
             resolved: dict[str, Any], seed: int, family: str = "hmm") -> dict[str, Any]:
    """What inference needs to rebuild the observations the model saw.

    ``family`` ('hmm' or 'dssm') picks the library versions recorded with it.
    """
    libraries = ("hmmlearn",) if family == "hmm" else ("torch", "pytorch-lightning")
    return {
        "regimelab_version": __version__,
        **{f"{name.replace('-', '_')}_version": version(name) for name in libraries},
        "training_data_sha256": train_sha256,
        "seed": seed,
        "resolved": resolved,
        "feature_spec": spec,
        "scaler": scaler,
    }
