"""The DSSM as train-dssm configures and trains it: fit on the training split, align its
states to the HMM's, describe it."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regimelab.exceptions import ModelError
from regimelab.families.base import Trained, decode_splits, describe_chain
from regimelab.families.dssm.model import RegimeDSSM
from regimelab.metrics import by_state
from regimelab.params import DSSMParams
from regimelab.regimes import align_states, volatility_order
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)


#: Distributions whose versions the fitted weights depend on (for the manifest).
LIBRARIES = ("torch", "lightning")


def make_dssm(n_states: int, *, dssm: DSSMParams, seed: int) -> RegimeDSSM:
    """A :class:`RegimeDSSM` configured from the ``dssm`` params."""
    settings = {k: v for k, v in asdict(dssm).items() if k != "init"}
    return RegimeDSSM(n_states, random_state=seed, **settings)


def _smoothed(regimes: pd.DataFrame, n_states: int) -> np.ndarray:
    return regimes[[f"p_smooth_{k}" for k in range(n_states)]].to_numpy()


def align_to_reference(model: RegimeDSSM, frame: pd.DataFrame, columns: list[str],
                       reference: pd.DataFrame) -> dict[str, Any] | None:
    """Renumber ``model``'s states to match the reference regimes table on ``frame``'s bars.

    Returns the rule for the manifest, or None (and leaves the volatility order)
    when the reference has another state count or does not cover these bars.
    """
    k = model.n_states
    if f"p_smooth_{k - 1}" not in reference.columns or f"p_smooth_{k}" in reference.columns:
        log.info("the HMM regimes have another state count: DSSM states stay in volatility "
                 "order")
        return None
    keys = ["symbol", "timestamp"]
    merged = frame[keys].merge(reference.loc[reference["split"] == "train"], on=keys,
                               how="left", validate="one_to_one")
    if merged["p_smooth_0"].isna().any():
        log.info("the HMM regimes do not cover the training bars: DSSM states stay in "
                 "volatility order")
        return None
    X, lengths = to_sequences(frame, columns)
    order, agreement = align_states(model.predict_proba(X, lengths), _smoothed(merged, k))
    model.permute(order)
    by_volatility, rule = volatility_order(model.means_, model.covars_, columns)
    values = np.empty(k)
    values[by_volatility] = rule["values"]
    return {"rule": "aligned to the HMM's states by Hungarian matching on the overlap of "
                    "smoothed posteriors over the training bars",
            "reference": "hmm", "agreement": agreement, "statistic": rule["statistic"],
            "feature": rule["feature"], "values": values.tolist()}


def train(
    frames: dict[str, pd.DataFrame], *, columns: list[str], n_states: int, dssm: DSSMParams,
    seed: int, init: Any = None, reference: pd.DataFrame | None = None,
    log_dir: str | Path | None = None, progress_bar: bool = False,
    bars: pd.DataFrame | None = None,
) -> Trained:
    """Fit on ``frames['train']`` (early stopping on ``val``) and decode every split.

    Parameters
    ----------
    frames : dict
        Scaled ``train``, ``val`` and ``test`` tables.
    columns : list of str
        The feature columns, in the spec's order.
    n_states : int
        The resolved state count.
    dssm : the ``dssm`` params
    seed : ``model.seed``
    bars : pandas.DataFrame, optional
        The clean bars: each state's name comes from its training bars' returns
        (:mod:`regimelab.naming`); without them the states are not named.
    init : fitted HMM, optional
        The starting point when ``dssm.init`` is 'hmm' (train-hmm's model, if it has
        ``n_states`` states and the same features); otherwise the DSSM fits its own.
    reference : pandas.DataFrame, optional
        The HMM's regimes table; the DSSM's states are renumbered to match it.
    log_dir : path, optional
        Where DVCLive writes the training curves.
    """
    X, lengths = to_sequences(frames["train"], columns)
    X_val, lengths_val = to_sequences(frames["val"], columns)
    if dssm.init == "hmm" and init is not None and (
            init.n_states != n_states or list(getattr(init, "feature_names_", columns))
            != list(columns)):
        log.info("train-hmm's model (%d states) does not have %d states and the same "
                 "features: the DSSM fits its own start", init.n_states, n_states)
        init = None
    model = make_dssm(n_states, dssm=dssm, seed=seed).fit(
        X, lengths, X_val=X_val, lengths_val=lengths_val,
        init=init if dssm.init == "hmm" else None, feature_names=columns, log_dir=log_dir,
        progress_bar=progress_bar)
    aligned = None if reference is None else align_to_reference(
        model, frames["train"], columns, reference)
    if aligned is not None:
        model.state_order_ = aligned
    decoded = decode_splits(model, frames, columns, bars=bars, seed=seed)
    ll_per_bar, regimes, occupancy = decoded.ll_per_bar, decoded.regimes, decoded.occupancy

    # Collapse is judged on the bars the model was fitted to: a rare regime (a crash) may
    # well be absent from a later split without any fault of the model.
    smallest = float(occupancy["train"].min())
    collapsed = np.flatnonzero(occupancy["train"] < dssm.min_occupancy).tolist()
    if collapsed:
        log.warning("DSSM state(s) %s hold less than dssm.min_occupancy = %g of the training "
                    "bars (smallest %.4f): they have collapsed; try fewer states "
                    "(model.n_states) or a smaller dssm.lr", collapsed, dssm.min_occupancy,
                    smallest)
    if not np.isfinite(list(ll_per_bar.values())).all():
        raise ModelError("train-dssm: the log-likelihood is not finite; try a smaller dssm.lr")
    metrics = {
        "n_states": n_states,
        "transition": dssm.transition,
        "emission": dssm.emission,
        "log_likelihood": "exact (forward algorithm over each gap-free sequence)",
        "log_likelihood_per_bar": ll_per_bar,
        "init_log_likelihood_per_bar": model.init_log_likelihood_ / len(X),
        "epochs": model.epochs_,
        "best_epoch": model.best_epoch_,
        "best_val_loss": model.best_val_loss_,
        "occupancy": {name: by_state(shares) for name, shares in occupancy.items()},
        "min_occupancy_train": smallest,
        "collapsed_states": ",".join(str(k) for k in collapsed),
        "collapsed_epochs": model.collapsed_epochs_,
        **describe_chain(model.transmat_),
        "state_order": model.state_order_,
        "regime_names": decoded.names_by_state,
    }
    log.info("DSSM K=%d: train %.4f, val %.4f, test %.4f nats/bar (start %.4f); %d epochs, "
             "best %d", n_states, ll_per_bar["train"], ll_per_bar["val"], ll_per_bar["test"],
             metrics["init_log_likelihood_per_bar"], model.epochs_, model.best_epoch_)
    return Trained(model=model, metrics=metrics, regimes=regimes, naming=decoded.naming)
