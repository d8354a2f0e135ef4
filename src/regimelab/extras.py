"""What ``pip install 'regimelab[pipeline]'`` adds to the core install.

The core (``pip install regimelab``) is what inference and serving import:
``regimelab infer``, ``now``, ``drift``, ``serve`` and ``history`` on a trained
model of any family. The ``pipeline`` extra adds what training, model selection,
plots and the backtest import: the stage scripts of dvc.yaml need it. A stage
started without it ends with one line naming the missing packages and the
command that installs them, not an ImportError's traceback.
"""

from __future__ import annotations

import importlib.util

from regimelab.exceptions import MissingDependencyError

#: The ``pipeline`` extra's packages, by the name they are imported under.
PIPELINE_MODULES = ("arch", "dvc", "dvclive", "joblib", "lightning", "matplotlib", "optuna")
INSTALL_PIPELINE = "pip install 'regimelab[pipeline]'"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses the name: as good as absent
        return False


def missing_pipeline() -> list[str]:
    """The pipeline extra's modules that cannot be imported here (found, not imported)."""
    return [module for module in PIPELINE_MODULES if not _installed(module)]


def require_pipeline(what: str) -> None:
    """Raise :class:`MissingDependencyError` if ``what`` (a stage) cannot run here for
    want of the pipeline extra."""
    missing = missing_pipeline()
    if missing:
        raise MissingDependencyError(
            f"{what} needs regimelab's pipeline dependencies ({', '.join(missing)} not "
            f"installed): {INSTALL_PIPELINE}")
