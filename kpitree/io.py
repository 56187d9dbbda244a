"""Model files: a tree as YAML or JSON, in and out, with an exact round trip.

The format (``format: kpitree/1``) holds the model's name and one entry per node::

    format: kpitree/1
    name: B2B company
    nodes:
      leads:
        formula: request_page_visits * request_rate
        owner: Marketing
      request_rate:
        owner: Marketing
        bounds: [0.0, 1.0]
        baseline: 0.02

A node without ``formula`` is a lever; ``bounds`` uses ``null`` for an open side.
A bare string is shorthand for a formula (``leads: visits * rate``). Files are
untrusted input: YAML is read with the safe loader, every key is checked, and each
problem is a :class:`~kpitree.errors.ModelFileError` naming the file and node.

>>> import tempfile, pathlib
>>> from kpitree import Tree
>>> tree = Tree.from_formulas("leads = visits * rate", owners={"leads": "Marketing"})
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.yaml"
>>> save(tree, path)
>>> load(path) == tree
True
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import FitError, ModelFileError, SpecError
from .fitting import FittedTree, LinkFit
from .formula import Formula
from .links import Link, link_response, parse_link
from .node import Node
from .spec import parse_one
from .tree import Tree

__all__ = ["FORMAT", "from_dict", "load", "save", "to_dict"]

FORMAT = "kpitree/1"
MAX_FILE_BYTES = 50 * 2**20
_NODE_KEYS = ("formula", "link", "owner", "unit", "stage", "description", "bounds", "baseline")
_TOP_KEYS = ("format", "name", "nodes", "parameters", "fits")


def to_dict(tree: Tree) -> dict[str, Any]:
    """The model-file content of ``tree`` as plain dicts, lists, strings and floats."""
    nodes: dict[str, dict[str, Any]] = {}
    for name in tree.nodes:
        node = tree.node(name)
        entry: dict[str, Any] = {}
        if node.formula is not None:
            entry["formula"] = node.formula.text
        if node.link is not None:
            entry["link"] = node.link.text(name)
        for key in ("owner", "unit", "stage", "description"):
            if getattr(node, key) is not None:
                entry[key] = getattr(node, key)
        if node.bounds is not None:
            entry["bounds"] = [None if math.isinf(b) else b for b in node.bounds]
        if node.baseline is not None:
            entry["baseline"] = node.baseline
        nodes[name] = entry
    content: dict[str, Any] = {"format": FORMAT}
    if tree.name is not None:
        content["name"] = tree.name
    content["nodes"] = nodes
    if tree.parameters:
        content["parameters"] = dict(tree.parameters)
    if isinstance(tree, FittedTree):
        content["fits"] = {node: fit.to_dict() for node, fit in tree.fits.items()}
    return content


def from_dict(content: Any, *, source: str = "<dict>") -> Tree:
    """The tree described by model-file ``content``; errors name ``source`` and the node."""
    if not isinstance(content, Mapping):
        raise ModelFileError("a model file holds a mapping at its top level", path=source)
    unknown = [key for key in content if key not in _TOP_KEYS]
    if unknown:
        message = f"unknown top-level key(s) {unknown}; expected {list(_TOP_KEYS)}"
        raise ModelFileError(message, path=source)
    version = content.get("format", FORMAT)
    if version != FORMAT:
        raise ModelFileError(f"unsupported format {version!r}; expected {FORMAT!r}", path=source)
    name = content.get("name")
    if name is not None and not isinstance(name, str):
        raise ModelFileError("'name' must be text", path=source)
    entries = content.get("nodes")
    if not isinstance(entries, Mapping) or not entries:
        raise ModelFileError("'nodes' must be a non-empty mapping of node -> entry", path=source)
    for key in entries:
        if not isinstance(key, str):
            message = (
                f"node name {key!r} is not text (YAML reads yes/no/on/off as booleans: quote it)"
            )
            raise ModelFileError(message, path=source)
    nodes = [_node(key, entry, source) for key, entry in entries.items()]
    parameters = content.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise ModelFileError("'parameters' must be a mapping of name -> number", path=source)
    try:
        tree = Tree(nodes, name=name, parameters=parameters)
    except SpecError as err:
        raise ModelFileError(str(err), path=source, node=err.node) from err
    fits = content.get("fits")
    return tree if fits is None else _fitted(tree, fits, source)


def _fitted(tree: Tree, fits: Any, source: str) -> FittedTree:
    if not isinstance(fits, Mapping):
        raise ModelFileError("'fits' must be a mapping of link -> fit", path=source)
    loaded = {}
    for node, content in fits.items():
        link = tree.node(node).link if node in tree else None
        if link is None or not isinstance(content, Mapping):
            raise ModelFileError("a fit belongs to a link node", path=source, node=str(node))
        try:
            loaded[node] = LinkFit.from_dict(node, link, content, tree.parameters)
        except (FitError, KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"malformed fit: {err}", path=source, node=node) from None
    nodes = [tree.node(name) for name in tree.nodes]
    return FittedTree(nodes, fits=loaded, name=tree.name, parameters=tree.parameters)


def save(tree: Tree, path: str | os.PathLike[str]) -> None:
    """Write ``tree`` to ``path`` as YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
    target = Path(path)
    content = to_dict(tree)
    if _kind(target) == "json":
        text = json.dumps(content, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    else:
        text = yaml.dump(content, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    target.write_text(text, encoding="utf-8")


def load(path: str | os.PathLike[str]) -> Tree:
    """Read a tree from a YAML or JSON model file (see the module doc for the format)."""
    source = Path(path)
    kind = _kind(source)
    try:
        if source.stat().st_size > MAX_FILE_BYTES:
            raise ModelFileError(f"file is larger than {MAX_FILE_BYTES} bytes", path=str(source))
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise ModelFileError(f"cannot read the file: {err.strerror}", path=str(source)) from None
    except UnicodeDecodeError:
        raise ModelFileError("the file is not UTF-8 text", path=str(source)) from None
    return from_dict(_parse_text(text, kind, str(source)), source=str(source))


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, with lists such as ``bounds: [0.0, 1.0]`` on one line."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ModelFileError("model files end in .yaml, .yml or .json", path=str(path))


def _parse_text(text: str, kind: str, source: str) -> Any:
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            message = f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            raise ModelFileError(message, path=source) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "malformed YAML"
        raise ModelFileError(f"invalid YAML{where}: {problem}", path=source) from None


def _node(name: str, entry: Any, source: str) -> Node:
    if entry is None:
        entry = {}
    elif isinstance(entry, str):
        entry = {"formula": entry}
    if not isinstance(entry, Mapping):
        message = f"entry must be a mapping or a formula, not {type(entry).__name__}"
        raise ModelFileError(message, path=source, node=name)
    unknown = [key for key in entry if key not in _NODE_KEYS]
    if unknown:
        message = f"unknown key(s) {unknown}; expected some of {list(_NODE_KEYS)}"
        raise ModelFileError(message, path=source, node=name)
    fields = dict(entry)
    try:
        formula: Formula | None = None
        if fields.get("formula") is not None:
            formula = parse_one(name, fields.pop("formula"))
        fields.pop("formula", None)
        link = _link(name, fields.pop("link", None))
        if fields.get("baseline") is not None and formula is not None:
            raise SpecError("a computed node cannot have a baseline", node=name)
        return Node(name, formula=formula, link=link, **fields)
    except SpecError as err:
        raise ModelFileError(_reason(err), path=source, node=name) from err


def _link(name: str, text: object) -> Link | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise SpecError("a link is text: `response ~ predictor + predictor`", node=name)
    response = link_response(text)
    if response != name:
        raise SpecError(f"the link explains {response!r}, not this node", node=name)
    return parse_link(text)


def _reason(err: SpecError) -> str:
    text = str(err)
    prefix = f"in the formula of {err.node!r}: "
    return text[len(prefix) :] if err.node and text.startswith(prefix) else text
