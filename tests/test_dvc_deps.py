"""Every stage lists, in dvc.yaml, each library file its script imports.

A stage whose code changes must run again: DVC knows only the deps it is told,
so a module imported but not listed (directly or through another module)
would let `dvc repro` keep outputs that the new code would not write.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_path(name: str) -> Path | None:
    """The file of module ``regimelab.a.b`` (a module or a package), or None."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path) -> set[str]:
    """The regimelab modules a file imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("regimelab")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module.split(".")[0] == "regimelab"):
            names.add(node.module)
            # `from regimelab.families.dssm import recursions` imports a module too.
            names |= {f"{node.module}.{a.name}" for a in node.names
                      if module_path(f"{node.module}.{a.name}")}
    return names


def registered() -> set[str]:
    """The modules of every registered family: ``regimelab.models.load_model`` imports
    whichever one a manifest names, so a stage that loads models may run any of them."""
    from regimelab.families import FAMILIES

    return {family.estimator.split(":")[0] for family in FAMILIES.values()}


def closure(script: Path) -> set[str]:
    """Library files (relative to the repository) that running ``script`` can load."""
    files: set[Path] = set()
    todo = list(imported(script))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            path = module_path(".".join(parts[:i]))
            if path is not None and path not in files:
                files.add(path)
                todo.extend(imported(path))
                if path == module_path("regimelab.models"):
                    todo.extend(registered())
    return {p.relative_to(ROOT).as_posix() for p in files}


def test_the_import_walk_finds_what_a_stage_imports() -> None:
    found = closure(ROOT / "stages" / "train_dssm.py")
    assert {"src/regimelab/__init__.py", "src/regimelab/families/dssm/infer.py",
            "src/regimelab/families/dssm/module.py", "src/regimelab/families/base.py"} <= found


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_lists_every_library_file_it_imports(name: str) -> None:
    stage = STAGES[name]
    script = re.search(r"python (stages/\S+\.py)", stage["cmd"])
    assert script, f"{name}: no `python stages/....py` in its cmd"
    deps = [d.rstrip("/") for d in stage["deps"]]
    assert script.group(1) in deps, f"{name}: its own script is not a dep"
    missing = sorted(f for f in closure(ROOT / script.group(1))
                     if not any(f == d or f.startswith(d + "/") for d in deps))
    assert not missing, f"{name}: dvc.yaml does not list {missing}"
