"""The forecast stage's models applied to new bars: ``regimelab forecast``, ``now`` and serve.

A forecast model folder (the stage's ``models/forecast``) holds one folder per
task and learned model (``<task>/<model>/``: a tree's ``model.skops`` or a
sequence model's ``weights.safetensors``, and ``manifest.json``) and
``headline.json``, the model each task chose on the walk-forward folds. A
task's forecaster is its ``learned`` headline model, a tree or a GRU, LSTM or
Transformer (the stage saves only the learned models; the chain is computed
here from the regime model). The inputs are built by the stage's own code
(:func:`~regimelab.forecast.inputs.build_inputs` and
:func:`~regimelab.forecast.labels.date_bull_bear`) with the settings the stage
stored in every manifest (``labeller``); a sequence model reads the window of
the last ``window`` input rows of the gap-free run ending at each bar, built
as the stage built it (:func:`~regimelab.forecast.sequence.make_windows`).

Nothing here imports the pipeline extra (Optuna, Lightning, ...): a core install
loads a tree with skops and scores it with scikit-learn, and loads a sequence
model's weights with safetensors and runs it with torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regimelab.exceptions import ModelError
from regimelab.forecast.baselines import markov_proba, markov_switch_proba
from regimelab.forecast.inputs import DATING_INPUTS, build_inputs, regime_age
from regimelab.forecast.labels import date_bull_bear, dating_table
from regimelab.forecast.targets import run_ids
from regimelab.io import read_json

log = logging.getLogger(__name__)

MODEL_FILE = "model.skops"
#: A sequence model's weights (:mod:`regimelab.forecast.sequence`, which is imported only
#: for a folder that holds one: a command that applies no sequence model loads no torch).
WEIGHTS_FILE = "weights.safetensors"
#: The stage's choice per task (its metrics' ``headline`` blocks), in the models folder.
HEADLINE_FILE = "headline.json"
#: Horizons of the chain's forecast when no forecast model folder is given
#: (``forecast.horizons``' default).
DEFAULT_HORIZONS = (1, 24)
#: The environment variable that names the forecast model folder for serve.
FORECAST_ENV = "REGIMELAB_FORECAST_MODEL"


def _forest_proba(forest: Any, X: np.ndarray) -> np.ndarray:
    """A random forest's ``predict_proba``, the trees summed in order as scikit-learn sums
    them with ``n_jobs=1`` (the same numbers), without its per-tree joblib dispatch:
    for one row, 50 trees took 4 ms through ``predict_proba`` and a tenth of that here."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    proba = np.zeros((len(X32), forest.n_classes_))
    for tree in forest.estimators_:
        proba += tree.predict_proba(X32, check_input=False)
    proba /= len(forest.estimators_)
    return proba


def full_proba(estimator: Any, X: Any, classes: np.ndarray) -> np.ndarray:
    """``predict_proba`` with one column per entry of ``classes`` (zeros for a class the
    estimator never saw), shape ``(n_samples, len(classes))``. ``X`` is what the
    estimator predicts from: a matrix, or a sequence model's windows."""
    single_output = getattr(estimator, "n_outputs_", 1) == 1
    if type(estimator).__name__ == "RandomForestClassifier" and single_output:
        proba = _forest_proba(estimator, X)
    else:
        proba = estimator.predict_proba(X)
    out = np.zeros((len(X), len(classes)))
    for j, c in enumerate(estimator.classes_):
        out[:, int(np.searchsorted(classes, c))] = proba[:, j]
    return out


def load_estimator(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """The estimator and manifest in ``folder``; only types skops lists as untrusted-free
    for this estimator's class are built (nothing is unpickled)."""
    import skops.io as sio

    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: no {MODEL_FILE}; expected a forecast model folder")
    trusted = sio.get_untrusted_types(file=path)
    allowed = [t for t in trusted if t.startswith(("sklearn.", "numpy."))]
    if allowed != trusted:
        raise ModelError(f"{path}: holds types outside scikit-learn and numpy: "
                         f"{sorted(set(trusted) - set(allowed))}")
    return sio.load(path, trusted=allowed), read_json(Path(folder) / "manifest.json")


def load_task_model(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """The fitted model and manifest in a forecaster folder: a sequence model's
    (:func:`~regimelab.forecast.sequence.load_sequence`) where it holds
    ``weights.safetensors``, else a tree's (:func:`load_estimator`)."""
    if (Path(folder) / WEIGHTS_FILE).is_file():
        from regimelab.forecast.sequence import load_sequence

        return load_sequence(folder)
    return load_estimator(folder)


@dataclass(frozen=True)
class Task:
    """One task's forecaster: its name (``state_h24``), kind, horizon, classes, the
    model's name, the fitted estimator (a tree or a
    :class:`~regimelab.forecast.sequence.SequenceClassifier`) and, for a sequence
    model, its window (input rows one forecast reads; None for a tree: one row)."""

    name: str
    kind: str
    horizon: int
    classes: np.ndarray
    model: str
    estimator: Any
    window: int | None = None


@dataclass(frozen=True)
class Forecaster:
    """A forecast model folder: its tasks and the labeller's settings (input columns,
    windows, dating thresholds, horizons, the regime model's version)."""

    folder: str
    labeller: dict[str, Any]
    tasks: dict[str, Task]

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.labeller["horizons"])

    @property
    def history(self) -> int:
        """Input rows the last bar's forecasts read (the longest window; 1 for trees)."""
        return max(task.window or 1 for task in self.tasks.values())


def _chosen(headline: dict[str, Any], task: str, names: list[str]) -> str | None:
    """The task's learned headline model if it is among ``names`` (the model folders),
    else its best tree on the folds (a folder whose chosen model was not saved)."""
    for block in ("learned", "tree"):
        model = headline.get(task, {}).get(block, {}).get("model")
        if model in names:
            return str(model)
    return None


def load_forecaster(folder: str | Path, *, model_version: str | None = None) -> Forecaster:
    """Each task's chosen learned model in a forecast model folder.

    Parameters
    ----------
    folder : path
        The forecast stage's models folder (``models/forecast``).
    model_version : str, optional
        The regime model's version: refused unless it is the one the forecasters'
        inputs were built with.

    Raises
    ------
    ModelError
        If the folder holds no forecast models, or they were built on other regimes.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ModelError(f"--forecast-model {folder}: no such folder; expected the forecast "
                         "stage's models folder (models/forecast)")
    tasks: dict[str, Task] = {}
    labeller: dict[str, Any] | None = None
    headline = read_json(root / HEADLINE_FILE) if (root / HEADLINE_FILE).is_file() else {}
    unchosen = []
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        trees = sorted(p.name for p in task_dir.iterdir() if (p / MODEL_FILE).is_file())
        names = sorted([*trees, *(p.name for p in task_dir.iterdir()
                                  if (p / WEIGHTS_FILE).is_file())])
        if not names:
            continue
        name = _chosen(headline, task_dir.name, names)
        if name is None:  # a folder written before the stage wrote its choice
            name = (trees or names)[0]
            unchosen.append(f"{task_dir.name} {name}")
        estimator, manifest = load_task_model(task_dir / name)
        if labeller is not None and manifest["labeller"] != labeller:
            raise ModelError(f"{task_dir / name}: built with other inputs than the folder's "
                             "other models; rerun the forecast stage")
        labeller = manifest["labeller"]
        window = (int(manifest["settings"]["window"]) if manifest.get("format") == "sequence"
                  else None)
        tasks[task_dir.name] = Task(task_dir.name, manifest["kind"], int(manifest["horizon"]),
                                    np.asarray(manifest["classes"]), name, estimator, window)
    if unchosen:
        log.warning("%s: no choice in %s (rerun the forecast stage); using %s", folder,
                    HEADLINE_FILE, ", ".join(unchosen))
    if labeller is None:
        raise ModelError(f"--forecast-model {folder}: no forecast model in it; expected the "
                         "forecast stage's models folder (models/forecast)")
    if model_version is not None and labeller["model_version"] != model_version:
        raise ModelError(f"--forecast-model {folder}: its forecasters were trained on the "
                         f"regimes of model version {labeller['model_version']}, not "
                         f"{model_version}; pass that family's model folder or rerun the "
                         "forecast stage")
    return Forecaster(str(folder), labeller, tasks)


def forecast_inputs(regimes: pd.DataFrame, features: pd.DataFrame, bars: pd.DataFrame, *,
                    columns: Sequence[str], n_states: int,
                    labeller: dict[str, Any]) -> pd.DataFrame:
    """The forecasters' inputs for every row of ``regimes``, built as the stage built them.

    Parameters
    ----------
    regimes : pandas.DataFrame
        ``symbol``, ``timestamp``, ``segment`` and ``p_filter_k`` of the bars
        (:func:`regimelab.inference.regimes`), sorted by symbol and time.
    features : pandas.DataFrame
        The scaled feature rows of the same bars, same order.
    bars : pandas.DataFrame
        The clean bars (``close``), dated for bull and bear markets from their first bar.
    columns : sequence of str
        The feature columns.
    labeller : dict
        A forecast manifest's ``labeller``.

    Returns
    -------
    pandas.DataFrame
        The columns ``labeller["inputs"]``, one row per row of ``regimes``.
    """
    table = regimes.reset_index(drop=True).assign(split="input")
    inputs = build_inputs(table, features.reset_index(drop=True), list(columns),
                          n_states=n_states, windows=labeller["input_windows"])
    dated = dating_table(bars, bull_threshold=labeller["bull_threshold"],
                         bear_threshold=labeller["bear_threshold"])
    keys = ["symbol", "timestamp"]
    merged = table[keys].merge(dated, on=keys, how="left", validate="one_to_one")
    for c in DATING_INPUTS:
        inputs[c] = merged[c].to_numpy(dtype=np.float64)
    return inputs[labeller["inputs"]]


def input_runs(regimes: pd.DataFrame) -> np.ndarray:
    """The gap-free run of each row of ``regimes`` (``symbol``, ``segment``), as the
    stage's run ids: a sequence model's window never reaches across two."""
    return run_ids(regimes.reset_index(drop=True).assign(split="input"))


def last_inputs(filtered: np.ndarray, features: dict[str, np.ndarray], close: np.ndarray, *,
                columns: Sequence[str], labeller: dict[str, Any], rows: int = 1,
                at: np.ndarray | None = None) -> np.ndarray:
    """The forecasters' inputs at the last ``rows`` bars of one gap-free run, shape
    ``(min(rows, n), n_inputs)``: what :func:`forecast_inputs` gives for them when the
    run is the whole input, to the bit.

    ``filtered`` and ``features`` cover the run's ``n`` bars; ``close`` the bars the run
    ends with, from the first one the dating starts at; ``at`` the position in ``close``
    of each of the run's bars (default: its last ``n``).

    The same numbers as :func:`~regimelab.forecast.inputs.build_inputs` on arrays, for
    the service: its groupby over runs cost more than the rest of a request. The
    trailing means are pandas' rolling means over the whole run (a running sum: a mean
    of the last ``w`` rows alone differs in the last bits), the regime's age
    :func:`~regimelab.forecast.inputs.regime_age`, the dating
    :func:`~regimelab.forecast.labels.date_bull_bear`.
    """
    n, n_states = filtered.shape
    tail = min(rows, n)
    values = np.column_stack([np.asarray(features[c], dtype=np.float64) for c in columns])
    out = {c: values[n - tail:, j] for j, c in enumerate(columns)}
    for w in labeller["input_windows"]:
        means = pd.DataFrame(values).rolling(w, min_periods=1).mean().to_numpy()
        out.update({f"{c}_mean{w}": means[n - tail:, j] for j, c in enumerate(columns)})
    out.update({f"p_filter_{k}": filtered[n - tail:, k].astype(np.float64)
                for k in range(n_states)})
    out["regime_age"] = regime_age(filtered.argmax(axis=1), np.zeros(n, dtype=np.int64))[
        n - tail:]
    dating = date_bull_bear(close, bull_threshold=labeller["bull_threshold"],
                            bear_threshold=labeller["bear_threshold"])
    where = (np.arange(len(close) - n, len(close)) if at is None else np.asarray(at))[n - tail:]
    out["bull_bear_known"] = dating.known[where].astype(np.float64)
    out["bull_bear_move"] = dating.move[where].astype(np.float64)
    return np.column_stack([out[c] for c in labeller["inputs"]])


def chain_columns(filtered: np.ndarray, transmat: np.ndarray,
                  horizons: Sequence[int]) -> dict[str, np.ndarray]:
    """The Markov chain's forecasts: ``p_markov_h{h}_{k}`` (``p_filter A^h``) and
    ``p_switch_markov_h{h}`` (``1 - sum_i p_i A_ii^h``) for each horizon."""
    out: dict[str, np.ndarray] = {}
    for h in horizons:
        proba = markov_proba(filtered, transmat, h)
        for k in range(proba.shape[1]):
            out[f"p_markov_h{h}_{k}"] = proba[:, k]
        out[f"p_switch_markov_h{h}"] = markov_switch_proba(filtered, transmat, h)
    return out


def task_proba(task: Task, X: np.ndarray, runs: np.ndarray | None = None, *,
               rows: int | None = None) -> np.ndarray:
    """``task``'s probabilities, one column per class, for the last ``rows`` rows of the
    input rows ``X`` (default all): a tree reads each row, a sequence model the window
    of its last ``window`` rows inside its run (``runs``: one id per row, equal ids
    contiguous; default one run), the earlier rows of ``X`` being their history."""
    first = len(X) - (len(X) if rows is None else min(rows, len(X)))
    if task.window is not None:
        from regimelab.forecast.sequence import make_windows

        ids = np.zeros(len(X), dtype=np.int64) if runs is None else runs
        windows = make_windows(X, ids, task.window)
        return full_proba(task.estimator, windows[first:], task.classes)
    return full_proba(task.estimator, X[first:], task.classes)


def learned_columns(forecaster: Forecaster, X: np.ndarray, runs: np.ndarray | None = None,
                    *, rows: int | None = None) -> dict[str, Any]:
    """Each task's forecasts on the input rows ``X`` (the last ``rows`` of them, default
    all; ``runs`` as :func:`task_proba` takes them) and the model that made them:
    ``p_state_h{h}_{k}`` and ``model_state_h{h}``; ``p_switch_h{h}`` (a switch in the next
    h bars) and ``model_switch_h{h}``; ``p_bull_h{h}`` (the bull phase at t + h) and
    ``model_bull_bear_h{h}``."""
    out: dict[str, Any] = {}
    for task in forecaster.tasks.values():
        proba = task_proba(task, X, runs, rows=rows)
        h = task.horizon
        if task.kind == "state":
            for j, k in enumerate(task.classes):
                out[f"p_state_h{h}_{int(k)}"] = proba[:, j]
        else:
            out[f"p_{'switch' if task.kind == 'switch' else 'bull'}_h{h}"] = proba[:, 1]
        out[f"model_{task.kind}_h{h}"] = np.full(len(proba), task.model, dtype=object)
    return out


def horizon_answers(filtered: np.ndarray, transmat: np.ndarray, horizons: Sequence[int],
                    learned: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One bar's forecasts per horizon as JSON (``now --json``, ``POST /regime``):
    ``horizon``, the chain's ``markov`` probabilities and ``markov_switch``, and with a
    forecaster (``learned``: :func:`learned_columns` of that bar's one row) ``learned``
    and ``learned_model``, ``switch`` and ``switch_model``, ``bull`` and ``bull_model``,
    each where the forecaster has that task."""
    chain = chain_columns(filtered[None, :], transmat, horizons)
    k = len(filtered)
    out = []
    for h in horizons:
        answer: dict[str, Any] = {
            "horizon": int(h),
            "markov": [float(chain[f"p_markov_h{h}_{i}"][0]) for i in range(k)],
            "markov_switch": float(chain[f"p_switch_markov_h{h}"][0])}
        if learned is not None:
            if f"model_state_h{h}" in learned:
                answer["learned"] = [float(learned[f"p_state_h{h}_{i}"][0]) for i in range(k)]
                answer["learned_model"] = str(learned[f"model_state_h{h}"][0])
            if f"model_switch_h{h}" in learned:
                answer["switch"] = float(learned[f"p_switch_h{h}"][0])
                answer["switch_model"] = str(learned[f"model_switch_h{h}"][0])
            if f"model_bull_bear_h{h}" in learned:
                answer["bull"] = float(learned[f"p_bull_h{h}"][0])
                answer["bull_model"] = str(learned[f"model_bull_bear_h{h}"][0])
        out.append(answer)
    return out
