"""One forecasting task end to end: baselines, walk-forward tuning, one refit, one test.

A task is a target kind at a horizon (``state_h24``, ``switch_h1``, ...). The
pre-test rows (train and val splits) are all that tuning and the final fit
see; the test split is scored once. The kinds:

- ``state``: the family's hindsight regime at t + h; persistence (the filtered
  regime at t) and the Markov chain (``p_filter A^h``) are the baselines;
- ``switch``: a switch of the hindsight path in t + 1 .. t + h (binary);
  persistence (the training rate of switches, the same for every bar) and the
  chain's ``1 - sum_i p_i A_ii^h``;
- ``bull_bear``: the dating's phase at t + h; persistence is the phase as
  confirmed at t (the chain of a regime model says nothing about it).

The baselines are scored on the same folds as the learned models, so the
model a user should deploy is chosen on the folds among all of them (the
``headline`` block: ``chosen``, and ``learned`` among the trees and sequence
models only), never on test. The sequence models
(:mod:`regimelab.forecast.sequence`) read windows of the same inputs; their
permutation importance shuffles an input across the test split's rows before
the windows are built (:mod:`regimelab.forecast.permutation`). Their training
rows are thinned to ``sequence.max_train_rows``; the folds choose, per task and
model, whether a thinned fit keeps at least ``sequence_min_class_rows`` of each
class (a switch within the next bar is rare), with the prior corrected afterwards
(:func:`~regimelab.forecast.tuning.fit_rows`), and the final fit uses that choice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss
from threadpoolctl import threadpool_limits

from regimelab.exceptions import InputDataError, ParamsError
from regimelab.forecast.baselines import (
    markov_proba,
    markov_switch_proba,
    persistence_proba,
    stay_rate,
)
from regimelab.forecast.permutation import window_importance
from regimelab.forecast.scoring import (
    class_scores,
    clipped,
    confusion_rows,
    importance,
    reliability,
    switch_scores,
)
from regimelab.forecast.sequence import (
    SEQUENCE_MODELS,
    SequenceSettings,
    Windows,
    make_windows,
)
from regimelab.forecast.targets import run_ids
from regimelab.forecast.trees import TREE_MODELS, full_proba
from regimelab.forecast.tuning import Fold, fit_rows, fold_rows, tune

log = logging.getLogger(__name__)

TARGET_KINDS = ("state", "switch", "bull_bear")
BASELINES = ("persistence", "markov")
#: The models tuned and fitted on the inputs (the rest are baselines).
LEARNED_MODELS = (*TREE_MODELS, *SEQUENCE_MODELS)
PRE_TEST = ("train", "val")


@dataclass(frozen=True)
class Settings:
    """What every task shares: the models, tuning budget, storage and seed."""

    models: tuple[str, ...]
    n_trials: int
    n_estimators: int
    max_train_rows: int | None
    storage: str
    seed: int
    importance_repeats: int
    sequence: SequenceSettings = field(default_factory=SequenceSettings)
    #: The class floor a sequence model's tuning tries against plain thinning (0: never).
    sequence_min_class_rows: int = 0


@dataclass
class TaskResult:
    """A task's metrics block, plot tables and fitted estimators."""

    report: dict[str, Any]
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)
    reliability: pd.DataFrame | None = None
    importance: pd.DataFrame | None = None
    estimators: dict[str, Any] = field(default_factory=dict)
    best_params: dict[str, Any] = field(default_factory=dict)


def _classes(kind: str, n_states: int) -> np.ndarray:
    return np.arange(n_states) if kind == "state" else np.array([0, 1])


def _current(table: pd.DataFrame, kind: str, n_states: int, fallback: int) -> np.ndarray:
    """The label persistence carries forward, known at t."""
    if kind == "state":
        filtered = table[[f"p_filter_{k}" for k in range(n_states)]].to_numpy()
        return filtered.argmax(axis=1)
    known = table["bull_bear_known"].to_numpy()
    return np.where(known >= 0, known, fallback)


def baseline_probas(kind: str, horizon: int, pre: pd.DataFrame, test: pd.DataFrame, *,
                    y_pre: np.ndarray, n_states: int, transmat: np.ndarray,
                    models: Sequence[str]) -> dict[str, np.ndarray]:
    """Each baseline's probabilities on the test rows, shape ``(n_test, n_classes)``."""
    out: dict[str, np.ndarray] = {}
    filtered = test[[f"p_filter_{k}" for k in range(n_states)]].to_numpy()
    if kind == "switch":
        if "persistence" in models:
            out["persistence"] = np.column_stack([np.full(len(test), 1 - y_pre.mean()),
                                                  np.full(len(test), y_pre.mean())])
        if "markov" in models:
            p = markov_switch_proba(filtered, transmat, horizon)
            out["markov"] = np.column_stack([1 - p, p])
        return out
    n_classes = len(_classes(kind, n_states))
    fallback = int(np.bincount(y_pre.astype(np.int64), minlength=n_classes).argmax())
    if "persistence" in models:
        stay = stay_rate(_current(pre, kind, n_states, fallback), y_pre)
        out["persistence"] = persistence_proba(_current(test, kind, n_states, fallback),
                                               n_classes=n_classes, stay=stay)
    if "markov" in models and kind == "state":
        out["markov"] = markov_proba(filtered, transmat, horizon)
    return out


def baseline_fold_loss(name: str, kind: str, horizon: int, pre: pd.DataFrame,
                       y_pre: np.ndarray, folds: Sequence[Fold], *, n_states: int,
                       transmat: np.ndarray, classes: np.ndarray) -> float:
    """A baseline's mean log loss over the walk-forward folds, as the learned models are
    scored in tuning (its one fitted number, persistence's stay rate, from each fold's
    training rows), so that the model chosen on the folds may be a baseline."""
    losses = []
    for fold in folds:
        if len(fold.train) == 0 or len(fold.val) == 0:
            continue
        proba = baseline_probas(kind, horizon, pre.iloc[fold.train], pre.iloc[fold.val],
                                y_pre=y_pre[fold.train], n_states=n_states,
                                transmat=transmat, models=(name,))[name]
        losses.append(log_loss(y_pre[fold.val], clipped(proba), labels=classes))
    return float(np.mean(losses)) if losses else float("inf")


def _sequence_importance(estimator: Any, table: pd.DataFrame, in_test: np.ndarray,
                         runs: np.ndarray, y_test: np.ndarray, *, inputs: list[str],
                         classes: np.ndarray, scoring: str,
                         settings: Settings) -> dict[str, float]:
    """:func:`~regimelab.forecast.permutation.window_importance` over the test split's
    rows (those without a target too: they are in the windows), scored on the rows
    with a known target."""
    split = (table["split"] == "test").to_numpy()
    scored = np.flatnonzero(in_test[split])
    return window_importance(estimator, table.loc[split, inputs].to_numpy(dtype=np.float64),
                             runs[split], scored, y_test, window=settings.sequence.window,
                             classes=classes, columns=inputs, scoring=scoring,
                             n_repeats=settings.importance_repeats, seed=settings.seed)


def run_task(table: pd.DataFrame, *, kind: str, horizon: int, inputs: list[str],
             n_states: int, transmat: np.ndarray, folds: Sequence[dict[str, Any]],
             settings: Settings) -> TaskResult:
    """Baselines, tuned tree models and their test scores for one task.

    Parameters
    ----------
    table : pandas.DataFrame
        The labelled dataset (:func:`~regimelab.forecast.dataset.label_dataset`).
    kind : str
        ``state``, ``switch`` or ``bull_bear``.
    horizon : int
        Bars ahead.
    inputs : list of str
        Input columns.
    n_states : int
        The family's state count.
    transmat : ndarray of shape (n_states, n_states)
        The family's transition matrix.
    folds : sequence of dict
        The split stage's walk-forward folds.
    settings : Settings
    """
    task = f"{kind}_h{horizon}"
    target = f"{kind}_h{horizon}"
    if not folds and any(m in LEARNED_MODELS for m in settings.models):
        raise ParamsError("split.folds: 0, but the forecast stage tunes its learned models "
                          "on the walk-forward folds; set split.folds >= 1")
    known = table[target].notna().to_numpy()
    in_pre = known & table["split"].isin(PRE_TEST).to_numpy()
    in_test = known & (table["split"] == "test").to_numpy()
    pre = table.loc[in_pre].reset_index(drop=True)
    test = table.loc[in_test].reset_index(drop=True)
    if pre.empty or test.empty:
        raise InputDataError(f"forecast {task}: no rows with a known target in the "
                             f"{'train/val' if pre.empty else 'test'} splits")
    classes = _classes(kind, n_states)
    y_pre = pre[target].to_numpy().astype(np.int64)
    y_test = test[target].to_numpy().astype(np.int64)
    probas = baseline_probas(kind, horizon, pre, test, y_pre=y_pre, n_states=n_states,
                             transmat=transmat, models=settings.models)
    result = TaskResult(report={})
    X_pre = pre[inputs].to_numpy(dtype=np.float64)
    X_test = test[inputs].to_numpy(dtype=np.float64)
    ts = pre["timestamp"].to_numpy(dtype="datetime64[ns]")
    target_times = pre[f"target_time_h{horizon}"].to_numpy(dtype="datetime64[ns]")
    fold_sets = fold_rows(ts, target_times, folds)
    importances: dict[str, dict[str, float]] = {}
    tuning: dict[str, Any] = {name: {"fold_log_loss": baseline_fold_loss(
        name, kind, horizon, pre, y_pre, fold_sets, n_states=n_states, transmat=transmat,
        classes=classes)} for name in probas}
    windows: tuple[Windows, Windows] | None = None
    scoring = "roc_auc" if kind == "switch" else "balanced_accuracy"
    runs = run_ids(table)
    if any(m in SEQUENCE_MODELS for m in settings.models):
        # Over the whole table (before the rows without a target are dropped), so a
        # window holds the bars just before t even where some have no target.
        every = make_windows(table[inputs].to_numpy(dtype=np.float64), runs,
                             settings.sequence.window)
        windows = every[np.flatnonzero(in_pre)], every[np.flatnonzero(in_test)]
    for name in (m for m in settings.models if m in LEARNED_MODELS):
        sequence = name in SEQUENCE_MODELS and windows is not None
        fit_pre: np.ndarray | Windows = windows[0] if sequence and windows else X_pre
        fit_test: np.ndarray | Windows = windows[1] if sequence and windows else X_test
        max_rows = settings.sequence.max_train_rows if sequence else settings.max_train_rows
        min_class_rows = settings.sequence_min_class_rows if sequence else 0
        tuned = tune(name, fit_pre, y_pre, fold_sets, task=task, classes=classes,
                     n_trials=settings.n_trials, n_estimators=settings.n_estimators,
                     storage=settings.storage, seed=settings.seed, max_rows=max_rows,
                     min_class_rows=min_class_rows, sequence=settings.sequence)
        estimator, rows = fit_rows(name, tuned.params, fit_pre, y_pre, np.arange(len(pre)),
                                   seed=settings.seed, max_rows=max_rows,
                                   min_class_rows=tuned.min_class_rows,
                                   sequence=settings.sequence)
        probas[name] = full_proba(estimator, fit_test, classes)
        if sequence:
            importances[name] = _sequence_importance(
                estimator, table, in_test, runs, y_test, inputs=inputs, classes=classes,
                scoring=scoring, settings=settings)
        else:
            importances[name] = importance(estimator, X_test, y_test, columns=inputs,
                                           scoring=scoring,
                                           n_repeats=settings.importance_repeats,
                                           seed=settings.seed)
        tuning[name] = {"fold_log_loss": tuned.value, "n_trials": tuned.n_trials,
                        "study": tuned.study, "train_rows": len(rows),
                        **({"class_floor": tuned.min_class_rows} if sequence else {})}
        result.estimators[name] = estimator
        result.best_params[name] = tuned.params
        log.info("%s %s: best fold log loss %.4f after %d trials", task, name, tuned.value,
                 tuned.n_trials)
    scores: dict[str, Any] = {}
    for name, proba in probas.items():
        scores[name] = (switch_scores(y_test, proba[:, 1]) if kind == "switch"
                        else class_scores(y_test, proba, classes))
        result.confusion[name] = confusion_rows(y_test, proba, classes)
    result.reliability = reliability(y_test, probas, classes)
    if importances:
        result.importance = pd.DataFrame({"input": inputs, **{
            name: [imp[c] for c in inputs] for name, imp in importances.items()}})
    result.report = {"kind": kind, "horizon": horizon, "classes": classes.tolist(),
                     "rows": {"train_val": len(pre), "test": len(test)},
                     "test_class_shares": {str(c): float(np.mean(y_test == c)) for c in classes},
                     "models": scores, "tuning": tuning, "importance": importances}
    return result


@dataclass(frozen=True)
class Forecast:
    """What the forecast stage writes: the labelled dataset, each task's result and the
    metrics file."""

    dataset: pd.DataFrame
    tasks: dict[str, TaskResult]
    report: dict[str, Any]


def _headline(result: TaskResult) -> dict[str, Any]:
    """The model with the lowest fold log loss, baselines included (chosen before test is
    looked at), the best learned model the same way, and their test scores against
    persistence: balanced accuracy, or ROC AUC for switches."""
    tuning = result.report["tuning"]
    models = result.report["models"]
    key = "roc_auc" if result.report["kind"] == "switch" else "balanced_accuracy"
    block: dict[str, Any] = {"score": key}
    for label, pool in (("chosen", list(tuning)),
                        ("learned", [m for m in tuning if m in LEARNED_MODELS]),
                        # What `regimelab forecast`, `now` and the service apply: a tree
                        # loads on a core install, a sequence model needs the pipeline's.
                        ("tree", [m for m in tuning if m in TREE_MODELS])):
        if not pool:
            continue
        best = min(pool, key=lambda name: (tuning[name]["fold_log_loss"], name))
        block[label] = {"model": best, key: models[best][key]}
        for base in BASELINES:
            if base in models and models[best][key] is not None \
                    and models[base][key] is not None:
                block[label][f"gain_vs_{base}"] = models[best][key] - models[base][key]
    return block


def run_forecast(dataset: pd.DataFrame, *, inputs: list[str], n_states: int,
                 transmat: np.ndarray, horizons: Sequence[int], targets: Sequence[str],
                 folds: Sequence[dict[str, Any]], settings: Settings) -> Forecast:
    """Every task of ``targets`` x ``horizons`` on the labelled ``dataset`` (see
    :func:`run_task`), and the metrics file's blocks."""
    tasks = {}
    # One OpenMP thread: the boosted trees' histograms then sum in one order (the same
    # bytes on any machine), and on a shared 2-core machine one thread is also faster.
    with threadpool_limits(limits=1):
        for kind in targets:
            for h in horizons:
                tasks[f"{kind}_h{h}"] = run_task(dataset, kind=kind, horizon=h, inputs=inputs,
                                                 n_states=n_states, transmat=transmat,
                                                 folds=folds, settings=settings)
    report = {
        "split": "test",
        "held_out": {"test": True, "note": "tuning and the final fit used train and val "
                     "only; the test split was scored once"},
        "inputs": inputs,
        **{name: {**result.report, "headline": _headline(result)}
           for name, result in tasks.items()},
    }
    return Forecast(dataset=dataset, tasks=tasks, report=report)
