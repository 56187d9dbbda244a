"""Evaluate a tree over many rows: inputs in, one column per node out.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas("leads = visits * rate", bounds={"rate": (0, 1)})
>>> kpitree.evaluate(tree, {"visits": [1000, 2000], "rate": 0.05})
   leads  visits  rate
0   50.0  1000.0  0.05
1  100.0  2000.0  0.05
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .compile import CompiledTree, FaultError, NonFiniteError, compile_tree, is_scalar
from .errors import DataError, DataWarning, OptionError, warn
from .tree import Tree

__all__ = ["Inputs", "evaluate", "evaluate_array", "evaluate_columns"]

Errors = Literal["raise", "warn", "ignore"]
_SHOWN_ROWS = 5


def evaluate(
    tree: Tree,
    inputs: Mapping[str, Any] | pd.DataFrame | pd.Series | None = None,
    *,
    nodes: Sequence[str] | None = None,
    errors: Errors = "raise",
) -> pd.DataFrame:
    """Evaluate ``tree`` on ``inputs``; one column per node (or per name in ``nodes``).

    ``inputs`` is a DataFrame with a column per lever, or a mapping of scalars and
    arrays (scalars broadcast). A lever not given takes its baseline. Columns for
    computed nodes are ignored: evaluation recomputes them (override one with
    :func:`kpitree.what_if`). The result has the input's index.

    Bad data raises :class:`~kpitree.errors.DataError` naming the lever or node and
    the first offending rows: a missing lever, NaN, a value outside the node's
    bounds, a division by zero or log of a non-positive number. ``errors="warn"``
    emits a :class:`~kpitree.errors.DataWarning` instead and returns IEEE values
    (``nan``, ``inf``); ``errors="ignore"`` skips every check.

    >>> tree = Tree.from_formulas("sql_rate = sqls / mqls")
    >>> evaluate(tree, {"sqls": [3, 4], "mqls": [10, 0]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kpitree.errors.DataError: node 'sql_rate' is not finite (division by zero?) at row(s) [1]: ...
    """
    outputs = tuple(tree.nodes if nodes is None else _as_names(nodes))
    frame = Inputs.from_user(inputs)
    result = evaluate_array(tree, frame, outputs, errors=errors)
    return pd.DataFrame(result.T, index=frame.index, columns=list(outputs), copy=False)


def evaluate_array(
    tree: Tree,
    frame: Inputs,
    outputs: tuple[str, ...],
    *,
    errors: Errors = "raise",
    fixed: frozenset[str] = frozenset(),
) -> np.ndarray:
    """The checked evaluation behind :func:`evaluate`: an ``(outputs, rows)`` array.

    Nodes in ``fixed`` are read from ``frame`` instead of computed.
    """
    if errors not in ("raise", "warn", "ignore"):
        message = f"errors must be 'raise', 'warn' or 'ignore', not {errors!r}"
        raise OptionError(message, option="errors")
    compiled = compile_tree(tree, outputs, fixed=fixed)
    values = [frame.values_for(tree, name) for name in compiled.inputs]
    if errors == "ignore":
        return compiled.run(values, frame.n_rows, check=False)
    try:
        result = compiled.run(values, frame.n_rows)
        if _all_finite(result):
            return result
    except FaultError:
        pass
    return _explain(tree, compiled, values, frame, errors)


def evaluate_columns(
    tree: Tree,
    columns: Mapping[str, Any],
    outputs: Sequence[str],
    n_rows: int,
    *,
    fixed: frozenset[str] = frozenset(),
) -> np.ndarray:
    """:func:`evaluate_array` on named columns (floats, or arrays of ``n_rows``): the
    ``(outputs, rows)`` array the analyses build their states with."""
    inputs = Inputs(dict(columns), pd.RangeIndex(n_rows))
    return evaluate_array(tree, inputs, tuple(outputs), fixed=fixed)


@dataclass(frozen=True)
class Inputs:
    """User inputs normalised to named float arrays (or scalars) and an index."""

    columns: Mapping[Any, Any] | pd.DataFrame
    index: pd.Index

    @classmethod
    def from_user(cls, inputs: Mapping[str, Any] | pd.DataFrame | pd.Series | None) -> Inputs:
        if inputs is None:
            return cls({}, pd.RangeIndex(1))
        if isinstance(inputs, pd.DataFrame):
            return cls(inputs, inputs.index)
        if isinstance(inputs, pd.Series):
            return cls(inputs.to_dict(), pd.RangeIndex(1))
        if not isinstance(inputs, Mapping):
            message = f"inputs must be a DataFrame or a mapping, not {type(inputs).__name__}"
            raise DataError(message, reason="not a table")
        lengths = {name: np.size(v) for name, v in inputs.items() if not is_scalar(v)}
        sizes = set(lengths.values())
        if len(sizes) > 1:
            longest = max(lengths, key=lengths.__getitem__)
            shortest = min(lengths, key=lengths.__getitem__)
            message = (
                f"input arrays differ in length: {longest!r} has {lengths[longest]} rows, "
                f"{shortest!r} has {lengths[shortest]}"
            )
            raise DataError(message, column=shortest, reason="length")
        return cls(inputs, pd.RangeIndex(sizes.pop() if sizes else 1))

    @property
    def n_rows(self) -> int:
        return len(self.index)

    def values_for(self, tree: Tree, name: str) -> np.ndarray | float:
        """The float values of lever ``name`` (its baseline when not given).

        Values are checked against the node's bounds by the compiled evaluator itself.
        """
        if name not in self.columns:
            if name in tree.parameters:
                return tree.parameters[name]
            node = tree.node(name)
            if node.baseline is None:
                message = f"{node.kind} {name!r} is missing from the inputs and has no baseline"
                if node.kind == "link":
                    message += " (fit the link with kpitree.fit, or give its values)"
                raise DataError(message, node=name, column=name, reason="missing")
            return node.baseline
        raw = self.columns[name]
        if isinstance(raw, (float, int, np.floating)) and not isinstance(raw, bool):
            return float(raw)
        values = _as_float(raw, name)
        if values.ndim > 1:
            raise DataError(f"input {name!r} must be one-dimensional", column=name, node=name)
        return values if values.ndim else float(values)


def _all_finite(result: np.ndarray) -> bool:
    """One fast pass: a finite sum means no NaN or infinity (a huge sum double-checks)."""
    total = float(np.sum(result))
    return math.isfinite(total) or bool(np.isfinite(result).all())


def _as_names(nodes: Sequence[str] | str) -> list[str]:
    return [nodes] if isinstance(nodes, str) else list(nodes)


def _as_float(value: Any, name: str) -> np.ndarray:
    try:
        if isinstance(value, pd.Series):
            return value.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        message = f"input {name!r} is not numeric"
        raise DataError(message, node=name, column=name, reason="not numeric") from None


def _check_input(
    tree: Tree, name: str, values: np.ndarray, index: pd.Index, errors: Errors
) -> None:
    """Report NaN, infinities and out-of-bounds values of an input, with their rows."""
    bad = ~np.isfinite(values)
    if bad.any():
        kind = "NaN" if np.isnan(values).any() else "infinite values"
        _report(f"lever {name!r} has {kind}", name, bad, index, errors, reason="nan")
    _check_bounds(tree, name, values, index, errors, what="lever")


def _check_bounds(
    tree: Tree, name: str, values: np.ndarray, index: pd.Index, errors: Errors, what: str = "node"
) -> None:
    """Report the rows where ``values`` of ``name`` lie outside its bounds."""
    bounds = None if name in tree.parameters else tree.node(name).bounds
    if bounds is None:
        return
    low, high = bounds
    outside = (values < low) | (values > high)
    if outside.any():
        message = f"{what} {name!r} is outside its bounds [{low:g}, {high:g}]"
        _report(message, name, outside, index, errors, reason="out of bounds", values=values)


def _report(
    message: str,
    name: str,
    mask: np.ndarray,
    index: pd.Index,
    errors: Errors,
    *,
    reason: str,
    values: np.ndarray | None = None,
) -> None:
    positions = np.flatnonzero(np.broadcast_to(mask, (len(index),)))
    rows = _labels(index, positions)
    text = f"{message} in {positions.size} row(s), first {_row_text(rows)}"
    if values is not None:
        shown = np.broadcast_to(values, (len(index),))[positions[:_SHOWN_ROWS]]
        text += ": " + ", ".join(f"{v:g}" for v in shown)
    error = DataError(text, node=name, column=name, rows=rows, reason=reason)
    if errors == "raise":
        raise error
    warn(text, DataWarning)


def _row_text(rows: Sequence[Hashable]) -> str:
    return "[" + ", ".join(str(row) for row in rows) + "]"


def _labels(index: pd.Index, positions: np.ndarray) -> list[Hashable]:
    return [index[int(p)] for p in positions[:_SHOWN_ROWS]]


def _explain(
    tree: Tree, compiled: CompiledTree, values: list, frame: Inputs, errors: Errors
) -> np.ndarray:
    """The slow path after a fault: name the input, node or output at fault and its rows.

    Raises the first problem under ``errors="raise"``; warns about each and returns the
    IEEE values under ``"warn"``.
    """
    for name, value in zip(compiled.inputs, values, strict=True):
        _check_input(tree, name, np.asarray(value), frame.index, errors)
    fault = compiled.locate(values, frame.n_rows)
    if fault is not None:
        error = _fault_error(tree, fault, compiled, values, frame)
        if errors == "raise":
            raise error
        warn(str(error), DataWarning)
    result = compiled.run(values, frame.n_rows, check=False)
    for j, name in enumerate(compiled.outputs):
        if name not in compiled.inputs:
            _check_bounds(tree, name, result[j], frame.index, errors)
    return result


def _fault_error(
    tree: Tree, fault: NonFiniteError, compiled: CompiledTree, values: list, frame: Inputs
) -> DataError:
    """Describe a non-finite node: its formula and its inputs' values at the first bad row."""
    node = fault.node
    formula = str(tree.node(node).formula)
    rows = _labels(frame.index, fault.positions)
    context = _inputs_at(tree, node, compiled, values, int(fault.positions[0]))
    message = (
        f"node {node!r} is not finite ({_likely_cause(formula)}) at row(s) {_row_text(rows)}: "
        f"{node} = {formula} with {context}"
    )
    return DataError(message, node=node, rows=rows, reason="not finite")


def _inputs_at(tree: Tree, node: str, compiled: CompiledTree, values: list, position: int) -> str:
    """``a=1, b=0``: the values of ``node``'s inputs at row ``position``."""
    given = {
        name: (v[position] if np.ndim(v) else v)
        for name, v in zip(compiled.inputs, values, strict=True)
    }
    children = tree.children(node)
    sub = compile_tree(tree, children, fixed=frozenset(given) & set(tree.upstream(node)))
    shown = sub.run([given[name] for name in sub.inputs], 1, check=False)[:, 0]
    return ", ".join(f"{name}={value:g}" for name, value in zip(children, shown, strict=True))


def _likely_cause(formula: str) -> str:
    causes = []
    if "/" in formula:
        causes.append("division by zero")
    if "log(" in formula:
        causes.append("log of a number <= 0")
    if "sqrt(" in formula or "**" in formula:
        causes.append("root or power of a negative number")
    if "exp(" in formula or "**" in formula or "*" in formula:
        causes.append("overflow")
    return " or ".join(causes[:2]) + "?" if causes else "invalid operation"
