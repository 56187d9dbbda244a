"""Where the funnel breaks: each node's gap against plan, and the walk from the target
down to the deepest node responsible.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas('''
...     sqls = mqls * sql_rate
...     mqls = leads * mql_rate
... ''', owners={"leads": "Marketing", "mql_rate": "Marketing", "sql_rate": "Inside Sales"})
>>> plan = {"leads": 1000, "mql_rate": 0.3, "sql_rate": 0.4}
>>> actual = {"leads": 1000, "mql_rate": 0.2, "sql_rate": 0.4}  # worse leads, same SQL rate
>>> found = bottlenecks(tree, actual, plan, target="sqls")
>>> found.path, found.table.loc[found.top, "owner"]
(('sqls', 'mqls', 'mql_rate'), 'Marketing')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .attribution import Attribution, attribution_result, shapley_contributions
from .change import RESIDUAL, Change, State, prepare_change
from .errors import OptionError
from .evaluate import evaluate_columns
from .results import Result
from .tree import Tree, post_order

__all__ = ["Bottlenecks", "bottlenecks"]


def bottlenecks(
    tree: Tree, actual: State, plan: State, *, target: str | None = None
) -> Bottlenecks:
    """Where the funnel breaks: each node's actual vs plan and how much of the target's
    gap it explains, walking from the target down to the deepest node responsible.

    The gap of the target is attributed exactly (Shapley) to the inputs; a node
    explains the part of its dominated inputs (those reaching the target only through
    it). From the target, the walk follows the child explaining most of the gap (in
    the gap's direction) until it reaches an input: so an SQL shortfall caused by
    fewer or worse leads points at marketing's inputs, not at inside sales.
    """
    found, mechanisms = prepare_change(tree, plan, actual, target)
    if len(found.index) != 1:
        raise OptionError("bottlenecks compares one actual state with one plan", option="actual")
    contributions, stderr, method = shapley_contributions(found, 500, 0)
    change = attribution_result(tree, found, contributions, stderr, method, mechanisms)
    target = found.target
    table = _gap_table(found, change)
    path = _walk(tree, table, target, float(change.total[0]))
    order = np.argsort(np.sign(change.total[0] or 1.0) * -table["explained"].fillna(0).to_numpy(),
                       kind="stable")  # fmt: skip
    gap = float(change.total[0])
    basis = {"target": target, "gap": f"{gap:+,.0f}" if abs(gap) >= 1e4 else f"{gap:+.4g}",
             "method": method}  # fmt: skip
    return Bottlenecks(target, table.iloc[order], tuple(path), change, tree, basis)


def _gap_table(found: Change, change: Attribution) -> pd.DataFrame:
    """Plan and actual of every node, as the model (with link residuals) computes them."""
    tree = found.tree
    nodes = [
        n
        for n in post_order((found.target,), tree.reads)
        if n not in tree.parameters and not n.endswith(RESIDUAL)
    ][::-1]
    values = {}
    for side, inputs in (("plan", found.before), ("actual", found.after)):
        computed = evaluate_columns(tree, inputs, nodes, 1)
        values[side] = dict(zip(nodes, computed[:, 0], strict=True))
    explained = change.by_node().iloc[0].to_dict() | dict(
        zip(change.players, change.contributions[:, 0], strict=True)
    )
    table = pd.DataFrame(
        {
            "owner": [tree.owner(n) for n in nodes],
            "plan": [values["plan"][n] for n in nodes],
            "actual": [values["actual"][n] for n in nodes],
        },
        index=pd.Index(nodes, name="node"),
    )
    table["gap"] = table["actual"] - table["plan"]
    with np.errstate(divide="ignore", invalid="ignore"):
        table["gap_pct"] = 100 * table["gap"] / table["plan"].abs()
    table["explained"] = [explained.get(n, np.nan) for n in nodes]
    table["share"] = table["explained"] / float(change.total[0]) if change.total[0] else np.nan
    return table


def _walk(tree: Tree, table: pd.DataFrame, target: str, gap: float) -> list[str]:
    path, node, direction = [target], target, 1.0 if gap >= 0 else -1.0
    while True:
        children = [c for c in dict.fromkeys(tree.reads(node)) if c in table.index]
        scored = [(direction * table.at[c, "explained"], c) for c in children
                  if np.isfinite(table.at[c, "explained"])]  # fmt: skip
        if not scored:
            return path
        best, node = max(scored)
        if best <= 0:
            return path
        path.append(node)


@dataclass(frozen=True, repr=False)
class Bottlenecks(Result):
    """Per node: plan, actual, gap and the part of the target's gap it explains.

    ``path`` is the walk from the target down to ``top``, the deepest node
    responsible; ``attribution`` is the underlying exact attribution of the gap.
    """

    target: str
    table: pd.DataFrame
    path: tuple[str, ...]
    attribution: Attribution
    tree: Tree = field(repr=False)
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "bottleneck_tree"

    @property
    def top(self) -> str:
        """The deepest node on the walk: where the gap comes from."""
        return self.path[-1]

    def title(self) -> str:
        owner = self.table.at[self.top, "owner"]
        team = f" ({owner})" if isinstance(owner, str) else ""
        return f"Bottleneck of {self.target!r}: {' -> '.join(self.path)}{team}"
