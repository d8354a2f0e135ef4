"""The forecast stage's files: model folders, best parameters and plot tables.

``<models>/<task>/<model>/`` holds each fitted learned model (trees: skops;
sequence models: safetensors; no pickle;
:func:`regimelab.forecast.folders.load_forecaster` loads either),
``<models>/best_params.json`` every task's tuned parameters and
``<models>/headline.json`` the model each task chose on the folds (its metrics'
``headline`` block). ``<plots>/confusion/<task>/<model>.csv``
(``actual``, ``predicted``: DVC's confusion templates),
``<plots>/reliability/<task>.csv`` and ``<plots>/importance/<task>.csv``.
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
                "params": task_result.best_params[name], "labeller": labeller})
    write_json(best, staging / "best_params.json")
    # Which model each task chose on the folds: `regimelab forecast` applies the learned one.
    write_json({task: block["headline"] for task, block in result.report.items()
                if isinstance(block, dict) and "headline" in block},
               staging / HEADLINE_FILE)
    replace_dir(staging, folder)


def write_plots(result: Forecast, folder: str | Path) -> None:
    """Confusion rows, reliability tables and permutation importances of every task."""
    staging = _fresh(folder)
    for task, task_result in result.tasks.items():
        for name, rows in task_result.confusion.items():
            write_csv(rows, staging / "confusion" / task / f"{name}.csv")
        if task_result.reliability is not None:
            write_csv(task_result.reliability, staging / "reliability" / f"{task}.csv")
        if task_result.importance is not None:
            write_csv(task_result.importance, staging / "importance" / f"{task}.csv")
    replace_dir(staging, folder)
