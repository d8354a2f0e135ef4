"""The jump model as train-jump configures and trains it."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import pandas as pd

from regimelab.exceptions import ParamsError
from regimelab.families.base import Trained, decode_splits, describe_chain
from regimelab.families.jump.model import RegimeJump
from regimelab.metrics import by_state
from regimelab.params import JumpParams
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)

#: Distributions whose versions the fitted centres depend on (for the manifest).
LIBRARIES = ("numba", "scikit-learn")


def resolve_penalty(jump: JumpParams, resolved: dict[str, Any]) -> float:
    """``jump.jump_penalty``, or for ``auto`` select-states' penalty calibrated for the
    resolved state count (the smallest whose validation regimes last
    ``select.min_dwell`` bars); for a count the scan did not reach, the nearest
    scanned count's, with a warning."""
    if jump.jump_penalty != "auto":
        return float(jump.jump_penalty)
    if resolved.get("jump_penalty") is None:
        raise ParamsError("jump.jump_penalty: 'auto', but select-states scanned no jump model "
                          "(select-states' metrics have no scan); rerun it or set a number")
    if resolved.get("jump_penalty_n_states") != resolved["n_states"]:
        log.warning("jump.jump_penalty: auto, but select-states did not scan %d states: taking "
                    "the penalty calibrated for %d (%g); put %d in select.grid.n_states to "
                    "calibrate its own", resolved["n_states"], resolved["jump_penalty_n_states"],
                    resolved["jump_penalty"], resolved["n_states"])
    return float(resolved["jump_penalty"])


def make_jump(n_states: int, *, jump: JumpParams, jump_penalty: float, seed: int
              ) -> RegimeJump:
    """A :class:`RegimeJump` configured from the ``jump`` params and a resolved penalty."""
    settings = {**asdict(jump), "jump_penalty": jump_penalty}
    return RegimeJump(n_states, random_state=seed, **settings)


def train(frames: dict[str, pd.DataFrame], *, columns: list[str], n_states: int,
          jump: JumpParams, jump_penalty: float, seed: int,
    bars: pd.DataFrame | None = None,
) -> Trained:
    """Fit on ``frames['train']`` and decode every split.

    Parameters
    ----------
    frames : dict
        Scaled ``train``, ``val`` and ``test`` tables.
    columns : list of str
        The feature columns, in the spec's order.
    n_states : int
        The resolved state count.
    jump : the ``jump`` params
    jump_penalty : the resolved penalty (see :func:`resolve_penalty`)
    seed : ``model.seed``
    bars : pandas.DataFrame, optional
        The clean bars: each state's name comes from its training bars' returns
        (:mod:`regimelab.naming`); without them the states are not named.
    """
    X, lengths = to_sequences(frames["train"], columns)
    model = make_jump(n_states, jump=jump, jump_penalty=jump_penalty, seed=seed).fit(
        X, lengths, feature_names=columns)
    decoded = decode_splits(model, frames, columns, bars=bars, seed=seed)
    regimes, shares = decoded.regimes, decoded.occupancy

    objective = {}
    for name, frame in frames.items():
        X_split, lengths_split = to_sequences(frame, columns)
        objective[name] = model.objective(X_split, lengths_split) / len(X_split)
    metrics = {
        "n_states": n_states,
        "jump_penalty": jump_penalty,
        "cont": jump.cont,
        "log_likelihood": "none: a jump model has no likelihood; objective_per_bar is its "
                          "loss (half the squared distance to the centre) plus the penalties",
        "objective_per_bar": objective,
        "n_iter": model.n_iter_,
        "converged": model.converged_,
        **describe_chain(model.transmat_),
        "occupancy": {name: by_state(values) for name, values in shares.items()},
        "state_order": model.state_order_,
        "regime_names": decoded.names_by_state,
    }
    log.info("jump model K=%d lambda=%g%s: objective per bar train %.4f, val %.4f, test %.4f; "
             "%d iterations", n_states, jump_penalty, " (continuous)" if jump.cont else "",
             objective["train"], objective["val"], objective["test"], model.n_iter_)
    return Trained(model=model, metrics=metrics, regimes=regimes, naming=decoded.naming)
