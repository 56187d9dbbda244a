"""The two states a change is measured between, ready for attribution.

Both sides are normalised to arrays of the inputs the target reads (one per row: a
period, a segment, a scenario; a single-row side is broadcast; with ``segment`` rows
are matched by that column). For a fitted tree whose states hold the observed values of
fitted link nodes, each such node gets an input ``<node>__residual`` (observed minus
what its link predicts), so that the model reproduces the data on both sides.

>>> from kpitree import Tree
>>> tree = Tree.from_formulas("revenue = customers * arpa")
>>> change, _ = prepare_change(tree, {"customers": 100, "arpa": 10},
...                            {"customers": 120, "arpa": 10}, "revenue")
>>> change.players, float(change.total[0])
(('customers',), 200.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError
from .evaluate import Inputs, evaluate_columns
from .tree import Tree, post_order

__all__ = ["RESIDUAL", "Change", "State", "evaluate_node", "prepare_change"]

State = Mapping[str, Any] | pd.Series | pd.DataFrame
RESIDUAL = "__residual"  # suffix of the input holding a fitted node's departure from its link


def prepare_change(
    tree: Tree,
    before: State,
    after: State,
    target: str | None,
    segment: str | None = None,
    residuals: bool = True,
) -> tuple[Change, tuple[str, ...]]:
    target = tree.top if target is None else target
    tree.node(target)
    first, second, index = _aligned(before, after, segment)
    model, mechanisms = _with_residuals(tree, first, second, target) if residuals else (tree, ())
    return Change.build(model, target, first, second, index), mechanisms


def _aligned(before: State, after: State, segment: str | None) -> tuple[Inputs, Inputs, pd.Index]:
    if segment is not None:
        before, after = (_by_segment(state, segment) for state in (before, after))
        missing = after.index.difference(before.index)
        if len(missing):
            message = f"segments {list(missing)[:5]} are in 'after' but not in 'before'"
            raise DataError(message, column=segment, rows=list(missing)[:5], reason="missing")
        before = before.loc[after.index]
    first, second = Inputs.from_user(before), Inputs.from_user(after)
    rows = {first.n_rows, second.n_rows} - {1}
    if len(rows) > 1:
        message = f"'before' has {first.n_rows} rows and 'after' {second.n_rows}"
        raise DataError(message, reason="length")
    index = second.index if second.n_rows >= first.n_rows else first.index
    if first.n_rows == second.n_rows > 1 and not first.index.equals(second.index):
        index = second.index  # rows are matched by position
    return first, second, index


def _by_segment(state: State, segment: str) -> pd.DataFrame:
    if not isinstance(state, pd.DataFrame) or segment not in state:
        raise DataError(f"segment column {segment!r} is missing", column=segment, reason="missing")
    if state[segment].duplicated().any():
        message = f"segment column {segment!r} has duplicates: aggregate the rows first"
        raise DataError(message, column=segment, reason="duplicates")
    return state.set_index(segment)


def _with_residuals(
    tree: Tree, first: Inputs, second: Inputs, target: str
) -> tuple[Tree, tuple[str, ...]]:
    """The tree with an input ``<node>__residual`` added to each observed fitted link
    the target depends on."""
    read = set(post_order((target,), tree.reads))
    fitted = [
        name
        for name in tree.links
        if name in read
        and tree.node(name).formula is not None
        and name in first.columns
        and name in second.columns
    ]
    model = tree
    for name in fitted:
        text = f"({tree.node(name).formula.text}) + {name}{RESIDUAL}"  # type: ignore[union-attr]
        model = model.with_formula(name, text)
        model = model.with_metadata(f"{name}{RESIDUAL}", owner=tree.owner(name))
    return model, tuple(fitted)


@dataclass(frozen=True)
class Change:
    """Everything the attribution methods share: inputs, players and values on both sides."""

    tree: Tree
    target: str
    index: pd.Index
    inputs: tuple[str, ...]
    players: tuple[str, ...]
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    total: np.ndarray
    start: np.ndarray

    @classmethod
    def build(
        cls, tree: Tree, target: str, first: Inputs, second: Inputs, index: pd.Index
    ) -> Change:
        n = len(index)
        needed = post_order((target,), tree.reads)
        inputs = tuple(
            name for name in needed if name in tree.parameters or tree.node(name).is_input
        )
        before = {name: _values(tree, first, name, n) for name in inputs}
        after = {name: _values(tree, second, name, n) for name in inputs}
        _fill_residuals(tree, first, second, before, after, n)
        players = tuple(name for name in inputs if np.any(before[name] != after[name]))
        values = [evaluate_node(tree, target, state, n) for state in (before, after)]
        return cls(tree, target, index, inputs, players, before, after, values[1] - values[0],
                   values[0])  # fmt: skip


def _values(tree: Tree, state: Inputs, name: str, n: int) -> np.ndarray:
    if name.endswith(RESIDUAL) and name not in state.columns:
        return np.zeros(n)  # filled by _fill_residuals
    return np.broadcast_to(np.asarray(state.values_for(tree, name), dtype=float), n).copy()


def _fill_residuals(
    tree: Tree,
    first: Inputs,
    second: Inputs,
    before: dict[str, np.ndarray],
    after: dict[str, np.ndarray],
    n: int,
) -> None:
    """Residual = observed value of the fitted node minus what its link predicts."""
    for name in [k for k in before if k.endswith(RESIDUAL)]:
        node = name[: -len(RESIDUAL)]
        for state, values in ((first, before), (second, after)):
            predicted = evaluate_node(tree, node, values, n)
            observed = np.broadcast_to(np.asarray(state.values_for(tree, node), float), n)
            values[name] = observed - predicted


def evaluate_node(tree: Tree, node: str, values: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    return evaluate_columns(tree, values, (node,), n)[0]
