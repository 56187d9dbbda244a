"""Goal seeking: the value of one lever that makes a node hit a value.

The cheapest mix of several levers is :mod:`kpitree.allocation`; back-calculated
targets per node are :mod:`kpitree.backcasting`.

>>> import kpitree
>>> from kpitree.targets import goal_seek
>>> tree = kpitree.Tree.from_formulas("new_customers = sqls * win_rate",
...     bounds={"win_rate": (0, 1), "sqls": (0, 200)}, baselines={"sqls": 80, "win_rate": 0.2})
>>> float(goal_seek(tree, "new_customers", 20, vary="win_rate"))
0.25
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sympy

from .compile import compile_tree
from .errors import OptionError, ScenarioError
from .evaluate import Inputs, evaluate_array, evaluate_columns
from .results import Result, number_text
from .roots import RTOL, NoRootError, root_near
from .sensitivity import State, one_state
from .syntax import to_sympy
from .tree import Tree, post_order

__all__ = ["GoalSeek", "goal_seek"]

BoundsSpec = Sequence[float | None] | None
_MAX_OPS = 400  # a composed path larger than this skips sympy.solve


# --- goal seek ---------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class GoalSeek(Result):
    """The value of ``vary`` that makes ``target`` equal ``requested`` (``float(result)``).

    ``method`` is ``"symbolic"`` (sympy solved the path from ``vary`` to ``target``) or
    ``"numeric"`` (brentq); ``achieved`` is the target evaluated at the answer.
    """

    target: str
    vary: str
    requested: float
    value: float
    achieved: float
    method: str
    current: float
    target_current: float
    owners: tuple[str | None, str | None] = (None, None)
    basis: Mapping[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return self.value

    def to_frame(self) -> pd.DataFrame:
        now = np.array([self.current, self.target_current])
        new = np.array([self.value, self.achieved])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(now != 0, new / now, np.nan)
        columns = {"owner": list(self.owners), "current": now, "new": new}
        frame = pd.DataFrame(columns, index=pd.Index([self.vary, self.target], name="node"))
        return frame.assign(change=new - now, ratio=ratio)

    def title(self) -> str:
        return (
            f"Goal seek: {self.vary} = {number_text(self.value)} makes {self.target} = "
            f"{number_text(self.requested)}"
        )

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        raise OptionError("a goal seek has no chart; see to_frame()", option="plot")


def goal_seek(
    tree: Tree,
    target: str,
    value: float,
    *,
    vary: str,
    at: State = None,
    bounds: BoundsSpec = None,
) -> GoalSeek:
    """The value of ``vary`` (a lever, or a computed node overridden as in a what-if) that
    makes ``target`` equal ``value``, every other input as in ``at``.

    Symbolic first: the nodes on the path from ``vary`` to ``target`` are composed (every
    other input a number, the rest of the tree never expanded) and sympy solves for
    ``vary``; real roots within ``bounds`` (default: the node's bounds) that evaluation
    confirms are kept, the nearest the current value wins. Otherwise brentq finds the
    root nearest the current value. A ``ScenarioError`` names the reachable range when
    no value within the bounds reaches ``value``.

    >>> import kpitree
    >>> tree = kpitree.Tree.from_formulas("leads = visits * rate",
    ...     baselines={"visits": 10_000, "rate": 0.02})
    >>> result = goal_seek(tree, "leads", 300, vary="visits")
    >>> result.value, result.method
    (15000.0, 'symbolic')
    """
    state = one_state(at)
    goal = _finite(value, "value")
    _check_upstream(tree, target, vary)
    low, high = _interval(tree, vary, bounds)
    response = _Response(tree, target, vary, state)
    current = response.current
    now = float(response(np.array([current]))[0])
    scale = max(abs(goal), abs(now), 1e-300)
    roots = _symbolic_roots(tree, target, vary, goal, state)
    valid = [r for r in roots if low <= r <= high and _close(response, r, goal, scale)]
    method = "symbolic" if valid else "numeric"
    if valid:
        answer = min(valid, key=lambda r: abs(r - current))
    else:
        answer = _numeric_root(response, target, vary, goal, (low, high))
    achieved = _evaluate_at(tree, state, target, {vary: answer})
    owners = (tree.owner(vary), tree.owner(target))
    basis = {
        "method": "sympy.solve on the composed path" if valid else "brentq",
        "bounds": f"[{low:g}, {high:g}]",
        "state": "baselines" if at is None else "given state",
    }
    return GoalSeek(target, vary, goal, answer, achieved, method, current, now, owners, basis)


class _Response:
    """``target`` as a vectorised function of ``vary``, other inputs as in the state."""

    def __init__(self, tree: Tree, target: str, vary: str, state: Inputs) -> None:
        fixed = frozenset() if tree.node(vary).is_input else frozenset({vary})
        self.compiled = compile_tree(tree, (target,), fixed=fixed)
        self.position = self.compiled.inputs.index(vary)
        self.values: list[Any] = [
            0.0 if name == vary else state.values_for(tree, name) for name in self.compiled.inputs
        ]
        if fixed:
            self.current = float(evaluate_array(tree, state, (vary,))[0, 0])
        else:
            self.current = float(state.values_for(tree, vary))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        values = list(self.values)
        values[self.position] = np.asarray(x, dtype=float)
        return self.compiled.run(values, len(x), check=False)[0]


def _check_upstream(tree: Tree, target: str, vary: str) -> None:
    tree.node(target)
    tree.node(vary)
    if vary == target or vary not in set(post_order((target,), tree.reads)):
        raise OptionError(f"vary: evaluating {target!r} does not read {vary!r}", option="vary")


def _interval(tree: Tree, name: str, bounds: BoundsSpec, option: str = "bounds") -> tuple:
    declared = tree.node(name).bounds or (-math.inf, math.inf)
    if bounds is None:
        return declared
    try:
        low, high = (
            math.inf * sign if v is None else float(v)
            for v, sign in zip(bounds, (-1, 1), strict=True)
        )
    except (TypeError, ValueError):
        raise OptionError(
            f"{option} of {name!r} must be (low, high), got {bounds!r}", option=option
        ) from None
    if not (declared[0] <= low <= high <= declared[1]):
        message = f"{option} of {name!r}: {bounds!r} is not an interval within {declared}"
        raise OptionError(message, option=option)
    return low, high


def _symbolic_roots(tree: Tree, target: str, vary: str, goal: float, state: Inputs) -> list:
    """Real roots of the composed path from ``vary`` to ``target`` (``[]`` if none found)."""
    path = _path(tree, target, vary)
    reads = {n for name in path for n in tree.reads(name)} - {vary, *path}
    known = tuple(sorted(n for n in reads if n not in tree.parameters))
    values = (
        dict(zip(known, evaluate_array(tree, state, known)[:, 0], strict=True)) if known else {}
    )
    values |= {n: tree.parameters[n] for n in reads if n in tree.parameters}
    x = sympy.Symbol("_x", real=True)
    composed: dict[str, sympy.Expr] = {vary: x}
    for name in path:
        formula = tree.node(name).formula
        assert formula is not None  # nodes reading vary are computed
        table = {n: composed[n] if n in composed else sympy.Float(values[n]) for n in formula.names}
        composed[name] = to_sympy(formula.root, table)
    expr = composed[target] - sympy.Float(goal)
    if sympy.count_ops(expr) > _MAX_OPS or _degree(expr, x) > 4:
        return []
    try:
        roots = sympy.solve(expr, x, rational=False, check=False)
    except Exception:  # sympy raises many kinds of errors when it has no method
        return []
    return [r for r in map(_real, roots) if r is not None]


def _degree(expr: sympy.Expr, x: sympy.Symbol) -> int:
    """The degree of a polynomial in ``x`` (0 otherwise): sympy is slow past quartics."""
    try:
        return int(sympy.Poly(expr, x).degree())
    except sympy.PolynomialError:
        return 0


def _path(tree: Tree, target: str, vary: str) -> list[str]:
    """The nodes between ``vary`` and ``target`` (target included), inputs first."""
    needed = set(post_order((target,), tree.reads, stop={vary}))
    moved = {vary}
    path = []
    for name in tree.order:
        if name in needed and name != vary and moved.intersection(tree.reads(name)):
            moved.add(name)
            path.append(name)
    return path


def _real(root: Any) -> float | None:
    try:
        number = complex(sympy.N(root))
    except (TypeError, ValueError):
        return None
    if abs(number.imag) > 1e-12 * max(abs(number.real), 1.0) or not math.isfinite(number.real):
        return None
    return number.real


def _close(response: _Response, x: float, goal: float, scale: float) -> bool:
    return bool(abs(float(response(np.array([x]))[0]) - goal) <= RTOL * scale)


def _numeric_root(
    response: _Response, target: str, vary: str, goal: float, interval: tuple[float, float]
) -> float:
    low, high = interval
    try:
        return root_near(response, response.current, low, high, value=goal)
    except NoRootError as error:
        lo, hi = error.reach
        message = (
            f"cannot reach {number_text(goal)} by moving {vary!r} within [{low:g}, {high:g}]: "
            f"it ranges from {number_text(lo)} to {number_text(hi)} there"
        )
        failure = ScenarioError(message, node=target)
        failure.reachable = (lo, hi)  # type: ignore[attr-defined]
        raise failure from None


def _evaluate_at(tree: Tree, state: Inputs, target: str, values: Mapping[str, Any]) -> float:
    fixed = frozenset(n for n in values if not tree.node(n).is_input)
    columns = dict(state.columns) | dict(values)
    return float(evaluate_columns(tree, columns, (target,), 1, fixed=fixed)[0, 0])


def _finite(value: Any, option: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise OptionError(f"{option} must be a finite number, got {value!r}", option=option)
    return number
