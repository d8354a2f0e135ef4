"""Load a trained regime model from its folder, whichever family it is.

Every model folder holds a ``manifest.json`` whose ``model`` key names the
family (see :data:`regimelab.families.FAMILIES`). evaluate, diagnose and the
``regimelab`` commands call :func:`load_model` and then use only the shared
interface of :class:`~regimelab.regimes.RegimeModel` (``predict``,
``predict_proba``, ``filter_proba``, ``score``, ``n_states``, ``transmat_``),
so they never need to know which family they hold. Loading reads arrays and
JSON only; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from regimelab.exceptions import ModelError
from regimelab.families import FAMILIES
from regimelab.io import read_json
from regimelab.regimes import RegimeModel


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The model folder's ``manifest.json``; a missing or unreadable one is a ModelError."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise ModelError(f"{folder}: not a model folder (no manifest.json); expected the "
                         "output of a training stage, e.g. models/hmm")
    try:
        manifest = read_json(path)
    except ValueError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("model") not in FAMILIES:
        found = manifest.get("model") if isinstance(manifest, dict) else None
        raise ModelError(f"{path}: model is {found!r}; expected one of {', '.join(FAMILIES)}")
    return manifest


def model_version(folder: str | Path) -> str:
    """A short content hash of the model folder's files: it changes whenever the weights
    or the manifest do, so every prediction names the exact model that made it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def load_model(folder: str | Path) -> RegimeModel:
    """The fitted model saved in ``folder``.

    Raises
    ------
    ModelError
        If the folder holds no model, or its files cannot be read.
    """
    # Only the family asked for is imported: a DSSM pays torch's import, an HMM does not.
    return FAMILIES[read_manifest(folder)["model"]].load(folder)
