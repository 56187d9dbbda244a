"""A node of a KPI tree: its formula or regression link, and its metadata.

>>> node = Node("win_rate", owner="Field Sales", bounds=(0, None), baseline=0.22)
>>> node.bounds, node.kind
((0.0, inf), 'lever')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .formula import FUNCTIONS, Formula
from .links import Link

__all__ = ["NO_OWNER", "Bounds", "Node", "check_name"]

Bounds = tuple[float, float]

#: the team of nodes without an owner, in team rankings, grouped indices and plots
NO_OWNER = "(no owner)"


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a tree: a formula (``None`` for a lever) and its metadata.

    ``bounds`` is ``(low, high)`` with ``-inf``/``inf`` for an open side;
    ``baseline`` is today's actual value of a lever, used when an analysis is not
    given the lever's value.
    """

    name: str
    formula: Formula | None = None
    owner: str | None = None
    unit: str | None = None
    bounds: Bounds | None = None
    stage: str | None = None
    description: str | None = None
    baseline: float | None = None
    link: Link | None = None

    @property
    def is_lever(self) -> bool:
        """True for a lever: neither a formula nor a regression link defines the node."""
        return self.formula is None and self.link is None

    @property
    def is_input(self) -> bool:
        """True when evaluation reads the node's value: a lever or an unfitted link."""
        return self.formula is None

    @property
    def kind(self) -> str:
        """``"lever"``, ``"formula"``, ``"link"`` (declared) or ``"fitted link"``."""
        if self.link is not None:
            return "fitted link" if self.formula is not None else "link"
        return "lever" if self.formula is None else "formula"

    def __post_init__(self) -> None:
        check_name(self.name)
        texts = (self.owner, self.unit, self.stage, self.description)
        if texts == (None, None, None, None) and self.bounds is None and self.baseline is None:
            return  # nothing more to check: the common case in large generated trees
        for key, value in zip(("owner", "unit", "stage", "description"), texts, strict=True):
            if value is not None and not isinstance(value, str):
                message = f"{key} of {self.name!r} must be text, not {type(value).__name__}"
                raise SpecError(message, node=self.name)
        if self.bounds is not None:
            object.__setattr__(self, "bounds", _as_bounds(self.bounds, self.name))
        if self.baseline is not None:
            object.__setattr__(self, "baseline", _as_baseline(self))


def check_name(name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"{name!r} is not a valid node name (letters, digits, _)", node=str(name))
    if name in FUNCTIONS:
        raise SpecError(f"{name!r} is a function name and cannot name a node", node=name)


def _as_bounds(value: object, name: str) -> Bounds:
    try:
        pair: tuple[Any, ...] = tuple(value)  # type: ignore[arg-type]
        if len(pair) != 2 or isinstance(value, str):
            raise ValueError
        low = -math.inf if pair[0] is None else float(pair[0])
        high = math.inf if pair[1] is None else float(pair[1])
    except (TypeError, ValueError):
        message = f"bounds of {name!r} must be (low, high), got {value!r}"
        raise SpecError(message, node=name) from None
    if math.isnan(low) or math.isnan(high) or low > high:
        raise SpecError(f"bounds of {name!r} are not an interval: {value!r}", node=name)
    return (low, high)


def _as_baseline(node: Node) -> float:
    try:
        value = float(node.baseline)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        message = f"baseline of {node.name!r} must be a number, got {node.baseline!r}"
        raise SpecError(message, node=node.name) from None
    if not math.isfinite(value):
        raise SpecError(f"baseline of {node.name!r} is not finite: {value}", node=node.name)
    if node.bounds and not node.bounds[0] <= value <= node.bounds[1]:
        message = f"baseline {value} of {node.name!r} is outside its bounds {node.bounds}"
        raise SpecError(message, node=node.name)
    return value
