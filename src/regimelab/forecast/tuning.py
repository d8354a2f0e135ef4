"""Walk-forward tuning with Optuna over the split stage's folds.

Each fold (``data/split/folds.json``: expanding window, embargo after the cut)
trains on rows before its cut and scores the rows of its validation chunk.
A training row is kept only if its **target** is known before the chunk
starts (bar t + h earlier than the chunk's first bar), so no fold trains on a
label that overlaps the bars it scores. The objective is the mean log loss
over folds (a proper score; lower is better). The study lives in an Optuna
RDB storage (SQLite among the stage's files by default, or a shared
PostgreSQL URL), named by the data and settings, so a rerun with the same
inputs resumes it and runs only the trials still missing.

A sequence model's class floor (:func:`thin`'s ``min_class_rows``) is one more
dimension of its search: 0 (plain thinning) or the configured floor, where the
floor changes some fold's training rows (:func:`floor_binds`; elsewhere both
values fit the same rows, and the floor stays off). The first two trials of a
new study are then enqueued at :data:`SEQUENCE_START` with the floor off and
then on, so the folds always compare both (given ``n_trials >= 2``); later
trials are sampled. On a tie the floor stays off (the earlier trial).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from sklearn.metrics import log_loss

from regimelab import __version__
from regimelab.forecast.scoring import clipped
from regimelab.forecast.sequence import (
    SEQUENCE_MODELS,
    SequenceSettings,
    Windows,
    make_sequence,
)
from regimelab.forecast.sequence import suggest as suggest_sequence
from regimelab.forecast.trees import full_proba, make_estimator, suggest
from regimelab.selection import open_storage

log = logging.getLogger(__name__)

#: The point of the sequence models' search space their first trials run at (the
#: middle of each range; :class:`~regimelab.forecast.sequence.SequenceClassifier`'s
#: defaults), once with the class floor off and once on.
SEQUENCE_START: dict[str, Any] = {"hidden": 16, "lr": 3e-3, "dropout": 0.1}
#: The Optuna parameter that holds a sequence trial's class floor.
FLOOR_PARAM = "class_floor"


@dataclass(frozen=True)
class Fold:
    """Row positions of one walk-forward fold: ``train`` and ``val``, int64 arrays."""

    train: np.ndarray
    val: np.ndarray


def fold_rows(timestamps: np.ndarray, target_times: np.ndarray,
              folds: Sequence[dict[str, Any]]) -> list[Fold]:
    """The rows of each fold of ``folds`` (the split stage's ``folds.json`` entries).

    Parameters
    ----------
    timestamps : ndarray of shape (n_samples,)
        Each row's bar time (datetime64[ns], UTC).
    target_times : ndarray of shape (n_samples,)
        The time of the last bar each row's target looks at (t + h).
    folds : sequence of dict
        ``train_end``, ``val_start``, ``val_end`` (ISO timestamps) per fold.
    """
    out = []
    for fold in folds:
        train_end, val_start, val_end = (
            pd.Timestamp(fold[key]).tz_convert("UTC").tz_localize(None).to_datetime64()
            for key in ("train_end", "val_start", "val_end"))
        train = (timestamps <= train_end) & (target_times < val_start)
        val = (timestamps >= val_start) & (timestamps <= val_end)
        out.append(Fold(np.flatnonzero(train), np.flatnonzero(val)))
    return out


def thin(rows: np.ndarray, max_rows: int | None, y: np.ndarray | None = None,
         min_class_rows: int = 0) -> np.ndarray:
    """Every k-th of ``rows`` so that at most ``max_rows`` remain (all without a cap):
    a deterministic subsample that keeps the whole time span.

    With labels ``y`` (indexed by row position) and ``min_class_rows``, each class
    present in ``rows`` then keeps at least ``min(min_class_rows, its rows)``: those
    it lacks are added, evenly spaced among its own rows, so a rare class (a switch
    within the next bar) is not thinned away. The result is sorted (time order).
    """
    if max_rows is None or len(rows) <= max_rows:
        return rows
    kept = rows[::-(-len(rows) // max_rows)]
    if y is None or min_class_rows <= 0:
        return kept
    labels = y[rows]
    extra = [kept]
    for c in np.unique(labels):
        of_class = rows[labels == c]
        want = min(min_class_rows, len(of_class))
        if np.count_nonzero(y[kept] == c) < want:
            picks = np.unique(np.round(np.linspace(0, len(of_class) - 1, want)).astype(np.int64))
            extra.append(of_class[picks])
    return np.unique(np.concatenate(extra))


def floor_binds(folds: Sequence[Fold], y: np.ndarray, max_rows: int | None,
                min_class_rows: int) -> bool:
    """Whether the class floor ``min_class_rows`` changes the :func:`thin` subsample of
    any fold's training rows (a class of some fold keeps fewer than the floor)."""
    return min_class_rows > 0 and any(
        len(thin(fold.train, max_rows, y, min_class_rows)) != len(thin(fold.train, max_rows))
        for fold in folds)


def prior_shift(y_pool: np.ndarray, y_fit: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``log(share in the pool / share in the fit)`` per class of ``classes``: added to a
    model's logits it turns probabilities learnt on the rebalanced rows ``y_fit`` back
    into those of the rows they were drawn from, ``y_pool`` (the prior correction of
    Saerens, Latinne and Decaestecker, 2002: ``p(c|x)`` scales by the ratio of priors).
    Zero for a class both hold at the same share."""
    pool = np.array([np.mean(y_pool == c) for c in classes])
    fit = np.array([np.mean(y_fit == c) for c in classes])
    with np.errstate(divide="ignore"):
        shift = np.log(pool) - np.log(fit)
    return np.where(np.isfinite(shift), shift, 0.0)


def make_model(name: str, params: dict[str, Any], *, seed: int,
               sequence: SequenceSettings | None = None) -> Any:
    """An unfitted tree (:func:`~regimelab.forecast.trees.make_estimator`) or sequence
    model (:func:`~regimelab.forecast.sequence.make_sequence`, with ``sequence``'s
    settings) ``name`` with ``params``."""
    if name in SEQUENCE_MODELS:
        return make_sequence(name, params, settings=sequence or SequenceSettings(), seed=seed)
    return make_estimator(name, params, seed=seed)


def suggest_params(trial: optuna.Trial | optuna.trial.FixedTrial, name: str, *,
                   n_estimators: int) -> dict[str, Any]:
    """One point of model ``name``'s search space (trees or sequence models)."""
    if name in SEQUENCE_MODELS:
        return suggest_sequence(trial, name)
    return suggest(trial, name, n_estimators=n_estimators)


def fit_rows(name: str, params: dict[str, Any], X: np.ndarray | Windows, y: np.ndarray,
             pool: np.ndarray, *, seed: int, max_rows: int | None, min_class_rows: int = 0,
             sequence: SequenceSettings | None = None) -> tuple[Any, np.ndarray]:
    """Model ``name`` with ``params`` fitted on the :func:`thin` subsample of the rows
    ``pool`` of ``X`` and ``y``; returns the model and the rows it saw.

    Where ``min_class_rows`` rebalanced the subsample (a class got rows that plain
    thinning would not keep), a sequence model's output bias is shifted by
    :func:`prior_shift`, so its probabilities are those of the pool's class shares
    again and the log loss it is tuned and scored on stays honest."""
    rows = thin(pool, max_rows, y, min_class_rows)
    estimator = make_model(name, params, seed=seed, sequence=sequence).fit(X[rows], y[rows])
    if name in SEQUENCE_MODELS and len(rows) > len(thin(pool, max_rows)):
        bias = estimator.net_.head.bias
        shift = prior_shift(y[pool], y[rows], estimator.classes_)
        with torch.no_grad():
            bias.add_(torch.from_numpy(shift).to(bias.dtype))
    return estimator, rows


def fit_score(name: str, params: dict[str, Any], X: np.ndarray | Windows, y: np.ndarray,
              folds: Sequence[Fold], *, classes: np.ndarray, seed: int,
              max_rows: int | None, min_class_rows: int = 0,
              sequence: SequenceSettings | None = None) -> float:
    """Mean log loss over ``folds`` of model ``name`` with ``params``. ``X`` is the input
    matrix of a tree model, the :class:`~regimelab.forecast.sequence.Windows` of a
    sequence model; each fold's training rows are subsampled by :func:`thin`."""
    losses = []
    for fold in folds:
        rows = thin(fold.train, max_rows, y, min_class_rows)
        if len(np.unique(y[rows])) < 2 or len(fold.val) == 0:
            continue
        estimator, _ = fit_rows(name, params, X, y, fold.train, seed=seed,
                                max_rows=max_rows, min_class_rows=min_class_rows,
                                sequence=sequence)
        proba = full_proba(estimator, X[fold.val], classes)
        losses.append(log_loss(y[fold.val], clipped(proba), labels=classes))
    return float(np.mean(losses)) if losses else float("inf")


def study_name(task: str, model: str, X: np.ndarray | Windows, y: np.ndarray,
               settings: dict[str, Any]) -> str:
    """A name only the same data, settings and regimelab version share."""
    digest = hashlib.sha256()
    digest.update(X.fingerprint() if isinstance(X, Windows)
                  else np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    digest.update(json.dumps({**settings, "version": __version__}, sort_keys=True).encode())
    return f"forecast-{task}-{model}-{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class Tuned:
    """The best parameters, their mean fold log loss, the number of finished trials, the
    study's name and the best trial's class floor."""

    params: dict[str, Any]
    value: float
    n_trials: int
    study: str
    #: The class floor the best trial fitted with (0: plain thinning).
    min_class_rows: int = 0


def tune(name: str, X: np.ndarray | Windows, y: np.ndarray, folds: Sequence[Fold], *,
         task: str, classes: np.ndarray, n_trials: int, n_estimators: int, storage: str,
         seed: int, max_rows: int | None, min_class_rows: int = 0,
         sequence: SequenceSettings | None = None) -> Tuned:
    """Search model ``name``'s space on the walk-forward ``folds`` (see the module notes).

    Trials already finished in the study (same name) count towards ``n_trials``. A
    sequence model takes its fixed settings from ``sequence`` and ``X`` as windows, and
    chooses its class floor, 0 or ``min_class_rows``, on the folds like any other
    parameter where the floor binds in some fold (:func:`floor_binds`; otherwise 0):
    :attr:`Tuned.min_class_rows`. A tree model thins with ``min_class_rows`` as given.
    """
    sequence_model = name in SEQUENCE_MODELS
    floors = ((0, min_class_rows)
              if sequence_model and floor_binds(folds, y, max_rows, min_class_rows) else ())
    fixed_floor = 0 if sequence_model else min_class_rows
    fixed = (asdict(sequence) if sequence is not None and name in SEQUENCE_MODELS else {})
    settings = {"task": task, "model": name, "n_estimators": n_estimators, "seed": seed,
                **({"sequence": fixed} if fixed else {}),
                **({"class_floors": list(floors), "start": SEQUENCE_START} if floors
                   else {"min_class_rows": fixed_floor} if fixed_floor else {}),
                "max_rows": max_rows, "folds": [[int(f.train[-1]) if len(f.train) else -1,
                                                 int(f.val[0]) if len(f.val) else -1]
                                                for f in folds]}
    study_id = study_name(task, name, X, y, settings)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=open_storage(storage), study_name=study_id,
                                direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    if floors and not study.get_trials(deepcopy=False):
        # Only into a new study: a resumed one already holds them (run or waiting).
        for floor in floors:
            study.enqueue_trial({**SEQUENCE_START, FLOOR_PARAM: floor})
    done = len(_finished(study))

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, name, n_estimators=n_estimators)
        floor = trial.suggest_categorical(FLOOR_PARAM, floors) if floors else fixed_floor
        return fit_score(name, params, X, y, folds, classes=classes, seed=seed,
                         max_rows=max_rows, min_class_rows=floor, sequence=sequence)

    if done < n_trials:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, n_trials=n_trials - done)
    else:
        log.info("%s: study %s already has %d trials; resumed with none to run", task,
                 study_id, done)
    finished = _finished(study)
    # The lowest fold log loss; on a tie the earliest trial (the floor off before on).
    best = min(finished, key=lambda t: (t.value if t.value is not None else float("inf"),
                                        t.number))
    params = suggest_params(optuna.trial.FixedTrial(best.params), name,
                            n_estimators=n_estimators)
    value = best.value if best.value is not None else float("inf")
    floor = int(best.params[FLOOR_PARAM]) if floors else fixed_floor
    return Tuned(params=params, value=float(value), n_trials=len(finished),
                 study=study_id, min_class_rows=floor)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's complete trials, in trial order."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
