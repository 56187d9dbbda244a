"""Griffe extension for the API reference: read kpitree's reST-flavoured docstrings as Markdown.

kpitree's docstrings are written for ``help()`` and doctest: Sphinx roles
(``:func:`kpitree.load```), doctest blocks (``>>> ...``) and ``::`` literal blocks.
Rendered as Markdown, a ``>>>`` line would become a nested block quote and a role would
show its ``:class:`` prefix, so this extension rewrites each docstring, before
mkdocstrings renders it, into:

- a role -> an optional cross-reference (a link when the target is documented, plain
  code otherwise, never a strict-mode warning);
- a doctest block -> a fenced ``pycon`` code block, ``# doctest:`` flags removed;
- ``text::`` before an indented block -> ``text:`` (the indented block is already
  Markdown code).

Loaded by ``mkdocs.yml`` (``extensions: [docs/_ext/rst_docstrings.py:RstDocstrings]``); the
source files are never changed.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")
_DOCTEST_FLAG = re.compile(r"\s*#\s*doctest:.*$")


class RstDocstrings(griffe.Extension):
    """Rewrite every docstring of the ``kpitree`` package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "kpitree":
            return
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(obj.docstring.value, obj, pkg)


def _objects(root: griffe.Object) -> list[griffe.Object]:
    found: list[griffe.Object] = [root]
    for member in root.members.values():
        if not member.is_alias:
            found.extend(_objects(member))  # type: ignore[arg-type]
    return found


def to_markdown(text: str, obj: griffe.Object, pkg: griffe.Module) -> str:
    """The docstring ``text`` of ``obj`` as Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(_DOCTEST_FLAG.sub("", lines[i][len(indent) :]))
                i += 1
            if out and out[-1].strip():
                out.append("")
            out.extend([f"{indent}```pycon", *(indent + b for b in block), f"{indent}```", ""])
            continue
        if line.rstrip().endswith("::") and line.strip() != "::":
            line = line.rstrip()[:-1]
        out.append(_ROLE.sub(lambda m: _reference(m, obj, pkg), line))
        i += 1
    return "\n".join(out).rstrip() + "\n"


def _reference(match: re.Match[str], obj: griffe.Object, pkg: griffe.Module) -> str:
    target = match["target"]
    title = target.rsplit(".", 1)[-1] if match["tilde"] else target
    identifier = _identifier(target, obj, pkg)
    code = f"<code>{html.escape(title)}</code>"
    if identifier is None:
        return code
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def _identifier(target: str, obj: griffe.Object, pkg: griffe.Module) -> str | None:
    """The full path ``target`` names as seen from ``obj`` (``None`` when unknown)."""
    head, _, rest = target.partition(".")
    if head == pkg.name:
        path = target
    else:
        try:
            path = obj.resolve(head) + (f".{rest}" if rest else "")
        except (griffe.NameResolutionError, AttributeError):
            return None
    try:
        found = pkg[path.removeprefix(pkg.name + ".")] if path != pkg.name else pkg
    except (KeyError, griffe.AliasResolutionError):
        return path
    name = path.rsplit(".", 1)[-1]
    if found.is_module and name in found.members and not found[name].is_module:
        # kpitree.evaluate is a function re-exported over its module of the same name
        return f"{path}.{name}"
    return path
