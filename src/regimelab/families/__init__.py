"""Every model family, and the one registry that knows them by name.

A family is a package of the same shape under this one: ``model.py`` (the
estimator behind the shared interface of :class:`~regimelab.regimes.RegimeModel`
and its persistence), ``fit.py`` (configured from params.yaml and trained the
way its stage trains it) and ``infer.py`` (the recursions inference runs).
A model folder's ``manifest.json`` names its family in ``model``;
:data:`FAMILIES` maps that name to the class that loads it. Adding a family
touches its own folder and one line here.

Nothing is imported until a family is asked for, so loading an HMM never pays
torch's import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regimelab.regimes import RegimeModel


@dataclass(frozen=True)
class Family:
    """One model family: its manifest name, its short name and where its class lives."""

    name: str  # manifest["model"]
    key: str  # stage names, model folders and metrics blocks: train-hmm, models/hmm, ...
    estimator: str  # "package.module:Class", imported on first use
    description: str

    def load(self, folder: str | Path) -> RegimeModel:
        """The fitted model saved in ``folder`` by this family's ``save``."""
        module, cls = self.estimator.split(":")
        return getattr(importlib.import_module(module), cls).load(folder)


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("gaussian_hmm", "hmm", "regimelab.families.hmm.model:RegimeHMM",
           "Gaussian hidden Markov model (hmmlearn)"),
    Family("dssm", "dssm", "regimelab.families.dssm.model:RegimeDSSM",
           "deep state-space model: a regime chain with a GRU context (PyTorch)"),
    Family("jump", "jump", "regimelab.families.jump.model:RegimeJump",
           "statistical jump model: k-means-like centres and a penalty per switch"),
)}
