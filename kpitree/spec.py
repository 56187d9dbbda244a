r"""Spec text: ``name = formula`` and ``response ~ predictors`` statements, by node.

>>> statements = parse_spec("leads = visits * rate  # marketing\nlogit(rate) ~ downloads")
>>> {name: type(s).__name__ for name, s in statements.items()}
{'leads': 'Formula', 'rate': 'Link'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import FormulaError, SpecError
from .formula import Formula, parse_formula
from .links import Link, link_response, parse_link
from .node import check_name

__all__ = ["parse_one", "parse_spec"]

_ASSIGNMENT = re.compile(r"^\s*(?P<name>[^\W\d]\w*)\s*=(?P<formula>.*)$")


def parse_one(name: str, text: object) -> Formula:
    check_name(name)
    if not isinstance(text, str):
        message = f"formula of {name!r} must be text, not {type(text).__name__}"
        raise SpecError(message, node=name)
    try:
        return parse_formula(text.strip())
    except FormulaError as err:
        raise err.with_node(name) from None


def parse_spec(spec: str | Mapping[str, str]) -> dict[str, Formula | Link]:
    """``name = formula`` and ``response ~ predictors`` statements, by node."""
    if isinstance(spec, Mapping):
        return {name: parse_one(name, text) for name, text in spec.items()}
    if not isinstance(spec, str):
        raise SpecError(f"a spec is text or a mapping, not {type(spec).__name__}")
    statements: dict[str, Formula | Link] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(spec.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        if not line.strip():
            continue
        name, statement = _statement(line, number, raw)
        if name in statements:
            message = f"node {name!r} is defined twice (lines {lines[name]} and {number})"
            raise SpecError(message, node=name)
        statements[name] = statement
        lines[name] = number
    if not statements:
        raise SpecError("the spec defines no node")
    return statements


def _statement(line: str, number: int, raw: str) -> tuple[str, Formula | Link]:
    if "~" in line:
        try:
            return link_response(line.strip()), parse_link(line.strip())
        except FormulaError as err:
            raise FormulaError(f"line {number}: {err.reason}", text=err.text) from None
    match = _ASSIGNMENT.match(line)
    if match is None:
        message = f"line {number} is neither `name = formula` nor a link `name ~ x + y`"
        raise SpecError(f"{message}: {raw.strip()!r}")
    return match["name"], parse_one(match["name"], match["formula"])
