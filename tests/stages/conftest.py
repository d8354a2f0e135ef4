"""Load stage scripts (``stages/*.py`` is not a package) so tests can call their ``main()``."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

STAGES = Path(__file__).resolve().parents[2] / "stages"


def load_stage(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"stage_{name}", STAGES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stage() -> Callable[[str], ModuleType]:
    return load_stage


def run_data_stages(d: Path) -> None:
    """featurize, split and scale on ``d``, which holds params.yaml and bars.parquet."""
    p = ["--params", str(d / "params.yaml")]
    load_stage("featurize").main([*p, "--bars", str(d / "bars.parquet"),
                                  "--features", str(d / "features.parquet"),
                                  "--spec", str(d / "spec.json"),
                                  "--metrics", str(d / "featurize.json")])
    load_stage("split").main([*p, "--features", str(d / "features.parquet"),
                              "--spec", str(d / "spec.json"), "--out", str(d / "split"),
                              "--metrics", str(d / "split.json")])
    load_stage("scale").main([*p, "--splits", str(d / "split"), "--spec", str(d / "spec.json"),
                              "--out", str(d / "scaled")])
