"""Reading select-states' result: the chosen model, and what a fixed setting resolves to.

The training stages need only this: the search itself (:mod:`regimelab.selection`)
and its candidates' fits are select-states' business.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from regimelab.exceptions import ModelError
from regimelab.params import COVARIANCE_TYPES, ModelParams, SelectParams


def score_to_minimise(row: dict[str, Any], criterion: str) -> float:
    """An HMM candidate's criterion as a number to minimise (BIC for ``stability``)."""
    # With the stability criterion the HMM grid is a table, not the choice: Optuna is told BIC.
    if criterion == "stability":
        return row["bic"]
    return -row["val_ll_per_bar"] if criterion == "val_ll" else row[criterion]


def min_dwell_bars(select: SelectParams, base_timeframe: pd.Timedelta) -> int:
    """``select.min_dwell`` in bars: ``auto`` is a day of intraday bars (24 hourly), and
    5 bars (a trading week) for daily or longer bars."""
    if select.min_dwell != "auto":
        return int(select.min_dwell)
    day = pd.Timedelta(days=1)
    return max(1, round(day / base_timeframe)) if base_timeframe < day else 5


def choose(candidates: list[dict[str, Any]], *, criterion: str, tie_tolerance: float,
           n_train: int) -> dict[str, Any]:
    """The chosen candidate: best by ``criterion``, near-ties to the best validation fit.

    Candidates whose criterion is within ``tie_tolerance`` nats per training
    bar of the best tie; among them the highest validation log-likelihood per
    bar wins, then the fewest states. With ``criterion='val_ll'`` the near-ties
    go to the fewest parameters instead.
    """
    done = [c for c in candidates if c.get("status") == "complete"]
    if not done:
        raise ModelError("select-states: no candidate could be fitted; see the log for why")
    best = min(score_to_minimise(c, criterion) for c in done)
    # AIC and BIC are -2 log-likelihood + penalty: half their difference per bar is nats per bar.
    scale = 1.0 if criterion == "val_ll" else 2.0 * n_train
    tied = [c for c in done if (score_to_minimise(c, criterion) - best) / scale
            <= tie_tolerance]
    if criterion == "val_ll":
        return min(tied, key=lambda c: (c["n_parameters"], -c["val_ll_per_bar"],
                                        c["n_states"]))
    return min(tied, key=lambda c: (-c["val_ll_per_bar"], c["n_states"],
                                    COVARIANCE_TYPES.index(c["covariance_type"])))


def resolve_model(selection: dict[str, Any], model: ModelParams) -> dict[str, Any]:
    """The state count and covariance type to train, from ``model`` params and the selection.

    ``auto`` takes select-states' choice. A fixed value restricts the choice to
    the candidates that have it, so ``model.n_states=4`` gets the best
    covariance type at four states.
    """
    choice = selection["choice"]
    rows = [c for c in selection["candidates"].values() if c.get("status") == "complete"]
    # With the stability criterion the count is the scan's; the covariance type among the
    # HMMs of that count goes by BIC.
    criterion = "bic" if selection["criterion"] == "stability" else selection["criterion"]
    if model.n_states != "auto":
        rows = [c for c in rows if c["n_states"] == model.n_states]
    elif selection["criterion"] == "stability":
        rows = [c for c in rows if c["n_states"] == choice["n_states"]]
    if model.covariance_type != "auto":
        rows = [c for c in rows if c["covariance_type"] == model.covariance_type]
    if model.n_states == "auto" and model.covariance_type == "auto":
        picked = choice
    elif rows:
        picked = choose(rows, criterion=criterion,
                        tie_tolerance=selection["tie_tolerance"], n_train=selection["n_train"])
    else:
        # A fixed value outside the grid: take it as it is, the rest from the choice.
        picked = choice
    n_states = int(model.n_states if model.n_states != "auto" else picked["n_states"])
    cov = (model.covariance_type if model.covariance_type != "auto"
           else picked["covariance_type"])
    # A count the scan did not reach takes the penalty of the nearest count it did (the
    # fewer states on a tie): persistence calibrated at a neighbouring count.
    scan = {r["n_states"]: r for r in selection.get("scan", {}).values()
            if r.get("status") == "complete"}
    nearest = min(scan, key=lambda k: (abs(k - n_states), k)) if scan else None
    return {"n_states": n_states, "covariance_type": str(cov),
            "jump_penalty": None if nearest is None else scan[nearest]["jump_penalty"],
            "jump_penalty_n_states": nearest}
