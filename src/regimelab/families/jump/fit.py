"""The jump model as train-jump configures and trains it."""

from __future__ import annotations

import logging
from dataclasses import asdict

import pandas as pd

from regimelab.families.base import Trained, decode_splits, describe_chain
from regimelab.families.jump.model import RegimeJump
from regimelab.metrics import by_state
from regimelab.params import JumpParams
from regimelab.sequences import to_sequences

log = logging.getLogger(__name__)

#: Distributions whose versions the fitted centres depend on (for the manifest).
LIBRARIES = ("numba", "scikit-learn")


def make_jump(n_states: int, *, jump: JumpParams, seed: int) -> RegimeJump:
    """A :class:`RegimeJump` configured from the ``jump`` params."""
    return RegimeJump(n_states, random_state=seed, **asdict(jump))


def train(frames: dict[str, pd.DataFrame], *, columns: list[str], n_states: int,
          jump: JumpParams, seed: int) -> Trained:
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
    seed : ``model.seed``
    """
    X, lengths = to_sequences(frames["train"], columns)
    model = make_jump(n_states, jump=jump, seed=seed).fit(X, lengths, feature_names=columns)
    _, regimes, shares = decode_splits(model, frames, columns)
    objective = {}
    for name, frame in frames.items():
        X_split, lengths_split = to_sequences(frame, columns)
        objective[name] = model.objective(X_split, lengths_split) / len(X_split)
    metrics = {
        "n_states": n_states,
        "jump_penalty": jump.jump_penalty,
        "cont": jump.cont,
        "log_likelihood": "none: a jump model has no likelihood; objective_per_bar is its "
                          "loss (half the squared distance to the centre) plus the penalties",
        "objective_per_bar": objective,
        "n_iter": model.n_iter_,
        "converged": model.converged_,
        **describe_chain(model.transmat_),
        "occupancy": {name: by_state(values) for name, values in shares.items()},
        "state_order": model.state_order_,
    }
    log.info("jump model K=%d lambda=%g%s: objective per bar train %.4f, val %.4f, test %.4f; "
             "%d iterations", n_states, jump.jump_penalty, " (continuous)" if jump.cont else "",
             objective["train"], objective["val"], objective["test"], model.n_iter_)
    return Trained(model=model, metrics=metrics, regimes=regimes)
