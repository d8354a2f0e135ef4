"""A griffe extension for the docs site: numpydoc's Sphinx roles as cross-references.

The docstrings are numpydoc, whose cross-references are Sphinx roles
(``:class:`~regimelab.regimes.RegimeModel```); mkdocstrings renders Markdown
and would show the role as typed. Each role becomes the link mkdocs-autorefs
makes for a documented object, and plain code where the target has no page
(``optional``: never a warning, so ``--strict`` still fails only on real
breakage). ``~`` keeps the last name only, as in Sphinx. On a numpydoc
``name : type`` line the type is rendered as code, where a link cannot go: a
role there keeps its name only.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`(?P<short>~?)(?P<target>[^`]+)`")


# "name : type" (numpydoc's parameter, attribute and return lines).
_TYPE_LINE = re.compile(r"^\s*\*{0,2}\w+(?:\s*,\s*\w+)*\s+:\s")


def _target(match: re.Match[str]) -> tuple[str, str]:
    target = match["target"].strip().removesuffix("()")
    return target, target.rsplit(".", 1)[-1] if match["short"] else target


def _autoref(match: re.Match[str]) -> str:
    target, title = _target(match)
    return f'<code><autoref identifier="{target}" optional hover>{title}</autoref></code>'


def _name(match: re.Match[str]) -> str:
    return _target(match)[1]


def rewrite(docstring: str) -> str:
    """``docstring`` with its Sphinx roles as links (or names, on a type line)."""
    return "\n".join(_ROLE.sub(_name if _TYPE_LINE.match(line) else _autoref, line)
                     for line in docstring.split("\n"))


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring's Sphinx roles once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
