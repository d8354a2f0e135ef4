"""A core install (``pip install regimelab``, no extras) simulated in a subprocess.

As a module: :func:`core_distributions` (the distributions a core install brings:
the closure of pyproject.toml's ``dependencies`` over the installed packages'
requirements) and :func:`blocked_modules` (every installed top-level module
outside it). As a script, ``python tests/core_install.py SCRIPT ARGS...`` runs
SCRIPT with those modules (named in ``$REGIMELAB_BLOCKED``) refused by a
``sys.meta_path`` finder, so an import that a core install could not satisfy
fails as it would there.
"""

from __future__ import annotations

import os
import sys

BLOCKED_ENV = "REGIMELAB_BLOCKED"


def _run_blocked() -> None:
    import runpy
    from importlib.abc import MetaPathFinder

    blocked = frozenset(os.environ[BLOCKED_ENV].split(","))

    class Refuse(MetaPathFinder):
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name.partition(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (not in a core install)",
                                          name=name)

    sys.meta_path.insert(0, Refuse())
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":  # before anything else is imported
    _run_blocked()
    sys.exit()

import importlib.metadata  # noqa: E402
import tomllib  # noqa: E402
from pathlib import Path  # noqa: E402

from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def core_distributions() -> set[str]:
    """The installed distributions a core install of this checkout brings (normalised names)."""
    todo = [Requirement(r) for r in project()["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(Requirement(r) for r in requires)
    return seen


def blocked_modules() -> set[str]:
    """Installed top-level modules that no core distribution provides."""
    core = core_distributions()
    return {module for module, dists in importlib.metadata.packages_distributions().items()
            if module != "regimelab" and module not in sys.stdlib_module_names
            and not any(canonicalize_name(d) in core for d in dists)}


def environment() -> dict[str, str]:
    """The environment for a subprocess of :data:`SCRIPT`: this checkout's source first."""
    return {**os.environ, BLOCKED_ENV: ",".join(sorted(blocked_modules())),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT),
                                           *filter(None, [os.environ.get("PYTHONPATH")])])}
