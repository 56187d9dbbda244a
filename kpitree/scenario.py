"""What-if scenarios: change some levers (or override computed nodes), compare.

A change is a number (the new value) or text: ``"+10%"``/``"-5%"`` (relative),
``"*1.2"`` or ``"/2"`` (scaled), ``"+500"``/``"-500"`` (added), ``"=5000"`` (set).

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas("leads = visits * rate",
...                                   baselines={"visits": 10_000, "rate": 0.02})
>>> kpitree.what_if(tree, None, {"rate": "+10%"}).loc["leads"].round(9).tolist()
[200.0, 220.0, 20.0, 0.1]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .compile import is_scalar
from .errors import ScenarioError
from .evaluate import Errors, Inputs, evaluate_array
from .tree import Tree

__all__ = ["apply_change", "scenarios", "what_if"]

Change = float | int | str
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_CHANGE = re.compile(rf"^\s*(?P<op>[-+*/=]?)\s*(?P<number>{_NUMBER})\s*(?P<pct>%?)\s*$")


def what_if(
    tree: Tree,
    baseline: Mapping[str, float] | pd.Series | pd.DataFrame | None,
    changes: Mapping[str, Change],
    *,
    errors: Errors = "raise",
) -> pd.DataFrame:
    """Compare ``baseline`` with the scenario ``changes``; a row per node.

    ``baseline`` gives lever values (one state; ``None`` uses the tree's
    baselines). ``changes`` maps a node to a change; a change on a computed node
    overrides it. Columns: ``baseline``, ``scenario``, ``delta`` and ``pct_change``
    (``delta / |baseline|``, a fraction; ``nan`` where the baseline is zero).
    """
    return scenarios(tree, baseline, {"scenario": changes}, errors=errors)


def scenarios(
    tree: Tree,
    baseline: Mapping[str, float] | pd.Series | pd.DataFrame | None,
    named: Mapping[str, Mapping[str, Change]],
    *,
    errors: Errors = "raise",
) -> pd.DataFrame:
    """Several what-ifs against one baseline: a ``baseline`` column and one per scenario.

    With exactly one scenario, ``delta`` and ``pct_change`` columns follow.
    """
    state = _one_state(baseline)
    base_values = evaluate_array(tree, Inputs.from_user(state), tree.nodes, errors=errors)
    base = pd.Series(base_values[:, 0], index=list(tree.nodes))
    columns = {"baseline": base}
    for name, changes in named.items():
        columns[name] = _scenario_values(tree, state, base, changes, errors)
    table = pd.DataFrame(columns)
    table.index.name = "node"
    if len(named) == 1:
        scenario = table[next(iter(named))]
        table["delta"] = scenario - table["baseline"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = table["delta"] / table["baseline"].abs()
        table["pct_change"] = ratio.where(table["baseline"] != 0)
    return table


def apply_change(value: float, change: Change, *, node: str = "") -> float:
    """The value after ``change`` (see the module doc for the forms).

    >>> apply_change(200.0, "+10%"), apply_change(200.0, "*1.5"), apply_change(200.0, "-50")
    (220.00000000000003, 300.0, 150.0)
    """
    if isinstance(change, bool) or not isinstance(change, (int, float, str, np.number)):
        raise ScenarioError(f"change {change!r} is neither a number nor text", node=node)
    if not isinstance(change, str):
        return float(change)
    match = _CHANGE.match(change)
    if match is None:
        hint = "use a number, '+10%', '-5%', '*1.2', '/2', '+500' or '=5000'"
        raise ScenarioError(f"cannot read change {change!r}; {hint}", node=node)
    op, number, pct = match["op"], float(match["number"]), match["pct"]
    if pct:
        if op not in ("+", "-"):
            raise ScenarioError(f"a percentage change needs + or -: {change!r}", node=node)
        return value * (1 + (number if op == "+" else -number) / 100)
    if op == "*":
        return value * number
    if op == "/":
        if number == 0:
            raise ScenarioError(f"change {change!r} divides by zero", node=node)
        return value / number
    if op == "+":
        return value + number
    if op == "-":
        return value - number
    return number


def _one_state(baseline: Any) -> dict[Any, float]:
    if baseline is None:
        return {}
    if isinstance(baseline, pd.DataFrame):
        if len(baseline) != 1:
            message = f"a what-if baseline is one state; got {len(baseline)} rows"
            raise ScenarioError(message + " (use kpitree.evaluate for many rows)")
        return baseline.iloc[0].to_dict()
    state = dict(baseline)
    for name, value in state.items():
        if not is_scalar(value):
            raise ScenarioError(f"a what-if baseline is one state; {name!r} has many values")
    return state


def _scenario_values(
    tree: Tree,
    state: dict[Any, float],
    base: pd.Series,
    changes: Mapping[str, Change],
    errors: Errors,
) -> pd.Series:
    values = dict(state)
    fixed = set()
    for name, change in changes.items():
        node = tree.node(name)  # raises UnknownNodeError
        values[name] = apply_change(float(base[name]), change, node=name)
        if not node.is_input:
            fixed.add(name)
    frame = Inputs.from_user(values)
    result = evaluate_array(tree, frame, tree.nodes, errors=errors, fixed=frozenset(fixed))
    return pd.Series(result[:, 0], index=list(tree.nodes))
