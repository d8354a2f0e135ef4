"""The learned models (scikit-learn trees), their search spaces and pickle-free folders.

A model folder holds ``model.skops`` (skops' format: a zip of JSON and numpy
arrays whose loader builds only the types it is told to trust, never running
pickled code) and ``manifest.json`` (the input columns, the classes, the
tuned parameters, library versions).
"""

from __future__ import annotations

import io
import re
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import optuna
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from regimelab.exceptions import ModelError
from regimelab.forecast.apply import MODEL_FILE as MODEL_FILE
from regimelab.forecast.apply import full_proba as full_proba
from regimelab.forecast.apply import load_estimator as load_estimator
from regimelab.io import atomic_path, write_json

#: The learned models, by their params.yaml name.
TREE_MODELS = ("random_forest", "hist_gradient_boosting")


def suggest(trial: optuna.Trial | optuna.trial.FixedTrial, name: str, *,
            n_estimators: int) -> dict[str, Any]:
    """One point of ``name``'s search space. ``n_estimators`` (trees, or boosting
    iterations) is fixed by params: it bounds the stage's time, it is not tuned."""
    if name == "random_forest":
        return {"max_depth": trial.suggest_int("max_depth", 3, 10),
                "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 400, log=True),
                "max_features": trial.suggest_float("max_features", 0.3, 1.0),
                "max_samples": trial.suggest_float("max_samples", 0.3, 1.0),
                "n_estimators": n_estimators}
    return {"learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 4, 63, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 10, 400, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-3, 10.0, log=True),
            "max_iter": n_estimators}


def make_estimator(name: str, params: dict[str, Any], *, seed: int) -> Any:
    """An unfitted classifier ``name`` with ``params`` (one of :func:`suggest`'s points)."""
    if name == "random_forest":
        return RandomForestClassifier(**params, random_state=seed, n_jobs=1)
    if name == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(**params, early_stopping=False,
                                              random_state=seed)
    raise ModelError(f"forecast.models: {name!r} is not a learned model; expected one of "
                     f"{', '.join(TREE_MODELS)}")


#: Object ids skops writes into its schema and member names (``"__id__": N``, ``N.npy``).
_OBJECT_ID = re.compile(r'(?<="__id__": )\d+|(?<=")\d+(?=\.npy")')


def canonical_skops(data: bytes) -> bytes:
    """skops' bytes made reproducible: skops names objects and array files by
    ``id()`` and stamps members with the time; here ids are numbered by first use
    and every member is dated 1980-01-01, so the same model gives the same bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    schema = members.pop("schema.json").decode()
    numbers: dict[str, str] = {}
    for match in _OBJECT_ID.finditer(schema):
        numbers.setdefault(match.group(), str(len(numbers)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        files = {"schema.json": _OBJECT_ID.sub(lambda m: numbers[m.group()], schema).encode()}
        for name, payload in members.items():
            stem, _, ext = name.partition(".")
            files[f"{numbers.get(stem, stem)}.{ext}"] = payload
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name])
    return out.getvalue()


def save_estimator(estimator: Any, folder: str | Path, *, manifest: dict[str, Any]) -> None:
    """Write ``estimator`` with skops and ``manifest`` (plus library versions) to ``folder``."""
    folder = Path(folder)
    with atomic_path(folder / MODEL_FILE) as tmp:
        tmp.write_bytes(canonical_skops(sio.dumps(estimator)))
    write_json({**manifest, "scikit_learn_version": version("scikit-learn"),
                "skops_version": version("skops")}, folder / "manifest.json")
