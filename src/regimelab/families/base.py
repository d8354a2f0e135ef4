"""What a training stage of any family produces and reports.

Each family's ``fit.train`` returns a :class:`Trained`; the stage script writes
its model folder, regimes table and metrics. The helpers here are what every
family reports in the same form: the regimes of every split, their occupancy,
the Markov-chain summary of the transition matrix, and the manifest that lets
inference rebuild the observations the model saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd

from regimelab import __version__
from regimelab.metrics import by_state
from regimelab.naming import bar_returns, name_states
from regimelab.regimes import (
    RegimeModel,
    expected_durations,
    regimes_table,
    stationary_distribution,
)
from regimelab.sequences import to_sequences


@dataclass(frozen=True)
class Trained:
    """What a training stage writes: the model, its metrics, its regimes table and,
    for families that have one, its optimisation history (one row per iteration)."""

    model: Any
    metrics: dict[str, Any]
    regimes: pd.DataFrame
    history: pd.DataFrame | None = None
    naming: dict[str, Any] | None = None


def describe_chain(transmat: np.ndarray) -> dict[str, Any]:
    """Transition matrix, stationary distribution and expected durations, keyed by state."""
    return {
        "transmat": {str(i): by_state(row) for i, row in enumerate(transmat)},
        "stationary": by_state(stationary_distribution(transmat)),
        "expected_duration_bars": by_state(expected_durations(transmat)),
    }


def name_regimes(model: RegimeModel, frame: pd.DataFrame, columns: list[str],
                 bars: pd.DataFrame, *, seed: int) -> dict[str, Any]:
    """Every state's name from the training split (see :mod:`regimelab.naming`): its bars
    are those of the model's hindsight path on ``frame``, their returns from ``bars``."""
    X, lengths = to_sequences(frame, columns)
    return name_states(bar_returns(frame, bars), model.predict(X, lengths),
                       frame["segment"].to_numpy(), n_states=model.n_states, seed=seed)


@dataclass(frozen=True)
class Decoded:
    """What every trained model reports about each split, whichever family it is.

    ``ll_per_bar``: log-likelihood per bar of each split in nats (empty for a
    family without a likelihood); ``regimes``: the regimes table of every split;
    ``occupancy``: each split's share of bars per state (the most likely path),
    shape ``(K,)``; ``naming``: :func:`name_regimes`' result, or None without bars.
    """

    ll_per_bar: dict[str, float]
    regimes: pd.DataFrame
    occupancy: dict[str, np.ndarray]
    naming: dict[str, Any] | None

    @property
    def names_by_state(self) -> dict[str, str]:
        """``{"0": "calm bull", ...}`` for the metrics file (empty without names)."""
        if self.naming is None:
            return {}
        return {str(k): name for k, name in enumerate(self.naming["names"])}


def decode_splits(model: RegimeModel, frames: dict[str, pd.DataFrame], columns: list[str],
                  *, bars: pd.DataFrame | None = None, seed: int = 0) -> Decoded:
    """Score, name and decode every split (see :class:`Decoded`).

    Given the clean ``bars``, the states are named from the training split
    (:func:`name_regimes`, its bootstrap seeded by ``seed``) and the regimes
    table carries each bar's ``regime``.
    """
    ll_per_bar = {}
    if model.has_likelihood:
        for name, frame in frames.items():
            X, lengths = to_sequences(frame, columns)
            ll_per_bar[name] = model.score(X, lengths) / len(X)
    naming = (None if bars is None
              else name_regimes(model, frames["train"], columns, bars, seed=seed))
    regimes = regimes_table(model, frames, columns,
                            names=None if naming is None else naming["names"])
    occupancy = {name: np.bincount(part["state"], minlength=model.n_states) / len(part)
                 for name, part in regimes.groupby("split", sort=False)}
    return Decoded(ll_per_bar, regimes, occupancy, naming)


def manifest(*, spec: dict[str, Any], scaler: dict[str, Any], train_sha256: str,
             resolved: dict[str, Any], seed: int, libraries: Sequence[str],
             naming: dict[str, Any] | None = None) -> dict[str, Any]:
    """What inference needs to rebuild the observations the model saw, and to name them.

    ``libraries`` are the distributions whose versions the family's results
    depend on (``hmmlearn``; ``torch`` and ``lightning``; ...);
    ``naming`` is :func:`name_regimes`' result (``regime_names`` in the manifest,
    one per state, and the statistics behind them).
    """
    named = {} if naming is None else {"regime_names": naming["names"], "regime_naming": naming}
    return {
        **named,
        "regimelab_version": __version__,
        **{f"{name.replace('-', '_')}_version": version(name) for name in libraries},
        "training_data_sha256": train_sha256,
        "seed": seed,
        "resolved": resolved,
        "feature_spec": spec,
        "scaler": scaler,
    }
