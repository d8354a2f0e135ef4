"""The forecast stage's files: model folders, best parameters and plot tables.

``<models>/<task>/<model>/`` holds each fitted learned model (trees: skops;
sequence models: safetensors; no pickle;
:func:`regimelab.forecast.folders.load_forecaster` loads either),
``<models>/best_params.json`` every task's tuned parameters and
``<models>/headline.json`` the model each task chose on the folds (its metrics'
``headline`` block). ``<plots>/confusion/<task>/persistence.csv`` and
``<plots>/confusion/<task>/learned.csv`` (``actual``, ``predicted`` per test bar:
DVC's confusion templates) for the baseline to beat and the learned model the
task chose on the folds (its name is the metrics' ``headline.learned.model``):
one file per model and task would put every test bar in git 40-odd times,
while the test scores of every model are in the metrics.
``<plots>/reliability/<task>.csv`` and ``<plots>/importance/<task>.csv`` hold
every model.
Both folders are built next to their target and swapped in whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from regimelab.forecast.apply import HEADLINE_FILE
from regimelab.forecast.folders import save_forecaster
from regimelab.forecast.run import Forecast
from regimelab.io import replace_dir, write_csv, write_json


def _fresh(target: str | Path) -> Path:
    staging = Path(target).with_name(f".{Path(target).name}.new")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def write_models(result: Forecast, folder: str | Path, *, labeller: dict[str, Any]) -> None:
    """Every task's fitted learned models and ``best_params.json``."""
    staging = _fresh(folder)
    best: dict[str, Any] = {}
    for task, task_result in result.tasks.items():
        best[task] = task_result.best_params
        for name, estimator in task_result.estimators.items():
            save_forecaster(estimator, staging / task / name, manifest={
                "task": task, "model": name, "kind": task_result.report["kind"],
                "horizon": task_result.report["horizon"],
                "classes": task_result.report["classes"], "inputs": result.report["inputs"],
                "params": task_result.best_params[name],
                # its fold log loss, trials, training rows and (sequence) class floor
                "tuning": task_result.report["tuning"][name], "labeller": labeller})
    write_json(best, staging / "best_params.json")
    # Which model each task chose on the folds: `regimelab forecast` applies the learned one.
    write_json({task: block["headline"] for task, block in result.report.items()
                if isinstance(block, dict) and "headline" in block},
               staging / HEADLINE_FILE)
    replace_dir(staging, folder)


def confusion_models(block: dict[str, Any]) -> dict[str, str]:
    """The confusion files of a task's metrics ``block``, by file name: ``persistence``
    and ``learned`` (the learned model with the lowest fold log loss), where run."""
    out = {}
    if "persistence" in block["models"]:
        out["persistence"] = "persistence"
    learned = block.get("headline", {}).get("learned")
    if learned is not None:
        out["learned"] = learned["model"]
    return out


def write_plots(result: Forecast, folder: str | Path) -> None:
    """Confusion rows of persistence and the learned headline model, reliability tables
    and permutation importances of every task."""
    staging = _fresh(folder)
    for task, task_result in result.tasks.items():
        for label, name in confusion_models(result.report[task]).items():
            write_csv(task_result.confusion[name], staging / "confusion" / task / f"{label}.csv")
        if task_result.reliability is not None:
            write_csv(task_result.reliability, staging / "reliability" / f"{task}.csv")
        if task_result.importance is not None:
            write_csv(task_result.importance, staging / "importance" / f"{task}.csv")
    replace_dir(staging, folder)
