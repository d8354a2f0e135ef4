"""Forecaster folders of any learned model: one save and one load for trees and sequence
models, and the inputs each expects.

A tree folder holds ``model.skops`` (:mod:`regimelab.forecast.trees`), a sequence
folder ``weights.safetensors`` (:mod:`regimelab.forecast.sequence`); both hold
``manifest.json``. Nothing in either is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from regimelab.forecast.sequence import (
    WEIGHTS_FILE,
    SequenceClassifier,
    Windows,
    load_sequence,
    make_windows,
    save_sequence,
)
from regimelab.forecast.trees import load_estimator, save_estimator


def save_forecaster(model: Any, folder: str | Path, *, manifest: dict[str, Any]) -> None:
    """Write a fitted tree or sequence model and ``manifest`` to ``folder``."""
    if isinstance(model, SequenceClassifier):
        save_sequence(model, folder, manifest=manifest)
    else:
        save_estimator(model, folder, manifest=manifest)


def load_forecaster(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """The model and manifest in ``folder``, as :func:`~regimelab.forecast.trees.
    load_estimator` returns them, for a tree or a sequence model alike. Give the model
    :func:`forecaster_inputs` of the manifest and the input rows."""
    if (Path(folder) / WEIGHTS_FILE).is_file():
        return load_sequence(folder)
    return load_estimator(folder)


def forecaster_inputs(manifest: dict[str, Any], X: np.ndarray,
                      runs: np.ndarray | None = None) -> np.ndarray | Windows:
    """What the model of ``manifest`` predicts from: the input matrix ``X`` (shape
    ``(n_samples, n_inputs)``, columns in ``manifest['inputs']`` order, rows in time
    order) for a tree, its windows for a sequence model. ``runs`` (one id per row,
    equal ids contiguous; default one run) says where the gap-free stretches start:
    no window reaches across one."""
    X = np.asarray(X, dtype=np.float64)
    if manifest.get("format") != "sequence":
        return X
    ids = np.zeros(len(X), dtype=np.int64) if runs is None else np.asarray(runs)
    return make_windows(X, ids, int(manifest["settings"]["window"]))
