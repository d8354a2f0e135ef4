"""What ``pip install regimelab`` brings: a core for inference and serving, and the
``pipeline`` extra for the stages, each declaring what its code imports."""

from __future__ import annotations

import ast
import functools
import glob
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from regimelab.extras import INSTALL_PIPELINE, PIPELINE_MODULES
from regimelab.families import FAMILIES
from tests import core_install

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "regimelab"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIPELINE_ONLY = {"dvc", "dvclive", "optuna", "lightning", "matplotlib", "arch"}
#: What inference and serving run: the CLI, the service, the store and its migrations,
#: and every family's model class.
CORE_ROOTS = ["regimelab.cli", "regimelab.serve", "regimelab.store",
              # Imported by regimelab.forecast.apply for a folder with a sequence model.
              "regimelab.forecast.sequence",
              *(family.estimator.partition(":")[0] for family in FAMILIES.values())]
CORE_FILES = [PACKAGE / "migrations/env.py", *sorted(PACKAGE.glob("migrations/versions/*.py"))]


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


CORE = names(PYPROJECT["project"]["dependencies"])
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
PIPELINE = names(EXTRAS["pipeline"])


def imports(path: Path) -> tuple[set[str], set[str]]:
    """The modules ``path`` imports at module level (not for type checking only) and
    those it imports inside functions."""
    top: set[str] = set()
    nested: set[str] = set()

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                continue
            found = (top if not inside else nested)
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.add(child.module)
                if child.module == "regimelab":  # from regimelab import metrics
                    found.update(f"regimelab.{alias.name}" for alias in child.names)
            visit(child, inside or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(path.read_text()), False)
    return top, nested


def module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def core_files() -> list[Path]:
    """The source files that inference and serving load: the roots, what they import at
    module level, and the packages above each."""
    todo = list(CORE_ROOTS)
    seen: set[str] = set()
    files = list(CORE_FILES)
    for path in CORE_FILES:
        todo.extend(imports(path)[0])
    while todo:
        module = todo.pop()
        if not module.startswith("regimelab") or module in seen:
            continue
        seen.add(module)
        todo.extend(module.rpartition(".")[0] for _ in [0] if "." in module)
        path = module_file(module)
        if path is not None:
            files.append(path)
            todo.extend(imports(path)[0])
    return files


@functools.cache
def provided_by() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def distributions(module: str) -> set[str]:
    """The installed distributions that provide top-level ``module`` (empty: stdlib/ours)."""
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top == "regimelab":
        return set()
    provided = provided_by().get(top)
    assert provided, f"{module}: no installed distribution provides it"
    return {canonicalize_name(d) for d in provided}


def test_the_core_leaves_the_pipeline_to_its_extra() -> None:
    assert PIPELINE_ONLY <= PIPELINE and not CORE & PIPELINE
    assert "regimelab[pipeline]" in EXTRAS["dev"]  # make test and make repro install .[dev]
    assert ".[dev]" in (ROOT / "Makefile").read_text()
    # torch: a range here; the exact build is constraints.txt's, installed first.
    (torch,) = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]
                if Requirement(r).name == "torch"]
    assert torch.specifier and all(s.operator != "==" for s in torch.specifier)
    assert "torch==" in (ROOT / "constraints.txt").read_text()
    # regimelab.extras names every pipeline distribution by a module it provides.
    assert {d for m in PIPELINE_MODULES for d in distributions(m)} == PIPELINE


def test_inference_and_serving_import_only_the_core() -> None:
    files = core_files()
    assert PACKAGE / "families/dssm/model.py" in files and PACKAGE / "drift.py" in files
    # The sequence forecasters are applied on a core install; their training is not.
    assert PACKAGE / "forecast/sequence.py" in files
    assert PACKAGE / "forecast/sequence_fit.py" not in files
    for path in files:
        top, nested = imports(path)
        for module in top:
            assert distributions(module) <= CORE, f"{path.relative_to(ROOT)}: {module}"
        for module in nested:  # imported where training needs it: core or pipeline
            assert distributions(module) & (CORE | PIPELINE) or not distributions(module), (
                f"{path.relative_to(ROOT)}: {module}")


def test_every_import_of_the_library_and_the_stages_is_declared() -> None:
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        for module in set().union(*imports(path)):
            found = distributions(module)
            assert not found or found & (CORE | PIPELINE), f"{path.relative_to(ROOT)}: {module}"


def test_the_package_data_holds_the_store_migrations() -> None:
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["regimelab"]
    shipped = {Path(p) for pattern in patterns
               for p in glob.glob(pattern, root_dir=PACKAGE)}
    scripts = {p.relative_to(PACKAGE) for p in (PACKAGE / "migrations").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert Path("migrations/env.py") in scripts and scripts <= shipped


@pytest.mark.parametrize("stage", ["train_hmm", "select_states"])
def test_a_stage_on_an_inference_only_install_is_one_line(stage: str) -> None:
    proc = subprocess.run([sys.executable, str(core_install.SCRIPT),
                           str(ROOT / "stages" / f"{stage}.py"), "--help"],
                          capture_output=True, text=True, check=False,
                          env=core_install.environment(), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {ROOT / 'stages' / stage}.py needs regimelab's pipeline")
    assert "lightning" in line and line.endswith(INSTALL_PIPELINE)
