"""Compiled, vectorised numpy evaluation of a tree, in topological order.

:func:`compile_tree` turns the nodes a caller asks for into one generated Python
function with one numpy statement per needed node, in topological order. Each
intermediate is deleted after its last use, and :meth:`CompiledTree.run` calls the
function on blocks of rows, so the working set stays in cache and memory does not
grow with the number of intermediate nodes. The whole tree is never substituted
into one expression.

The generated source holds only generated variable names (``v0``, ``v1``...), float
literals, operators and ``_np.<ufunc>`` calls, printed from the parsed syntax tree
(see :meth:`kpitree.formula.Formula.to_numpy`): formula text never reaches the
Python compiler.

>>> from kpitree import Tree
>>> tree = Tree.from_formulas("leads = visits * rate")
>>> compiled = tree.compile(["leads"])
>>> compiled.inputs
('visits', 'rate')
>>> compiled.run([np.array([100.0, 200.0]), 0.1], n_rows=2)
array([[10., 20.]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .tree import Tree

__all__ = ["BLOCK_ROWS", "CompiledTree", "NonFiniteError", "compile_tree"]

#: rows evaluated per call of the generated function (tuned in benchmarks/)
BLOCK_ROWS = 4096


class NonFiniteError(ArithmeticError):
    """Internal: ``node`` produced a non-finite value at row ``positions`` (0-based)."""

    def __init__(self, node: str, positions: np.ndarray) -> None:
        super().__init__(node)
        self.node = node
        self.positions = positions


@dataclass(frozen=True)
class CompiledTree:
    """A generated evaluator for some nodes of a tree.

    ``inputs`` are the values :meth:`run` expects, in order (levers, and computed
    nodes held fixed); ``outputs`` the rows of the array it returns.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    source: str
    kernel: Callable[[list, np.ndarray], None] = field(repr=False)
    checked_source: Callable[[], str] = field(repr=False)  # generated only to diagnose a fault
    computed: tuple[str, ...] = field(repr=False)

    def run(
        self,
        values: Sequence[np.ndarray | float],
        n_rows: int,
        *,
        check: bool = True,
        block_rows: int = BLOCK_ROWS,
    ) -> np.ndarray:
        """Evaluate on ``values`` (one per input: a float or an array of ``n_rows``).

        Returns an array of shape ``(len(outputs), n_rows)``. With ``check`` a
        division by zero, log of a non-positive number or overflow raises
        :class:`NonFiniteError` naming the first node and rows at fault; without,
        values follow IEEE semantics (``inf``, ``nan``).
        """
        values = [v if isinstance(v, np.ndarray) else np.float64(v) for v in values]
        out = np.empty((len(self.outputs), n_rows))
        arrays = [i for i, v in enumerate(values) if np.ndim(v)]
        if not check:
            with np.errstate(all="ignore"):
                self._loop(self.kernel, values, arrays, out, block_rows)
            return out
        try:
            with np.errstate(divide="raise", invalid="raise", over="raise", under="ignore"):
                self._loop(self.kernel, values, arrays, out, block_rows)
        except (FloatingPointError, ZeroDivisionError, OverflowError):
            self._diagnose(values, arrays, n_rows, block_rows)
        return out

    def _loop(
        self,
        kernel: Callable[[list, np.ndarray], None],
        values: list,
        arrays: list[int],
        out: np.ndarray,
        block_rows: int,
    ) -> None:
        n_rows = out.shape[1]
        block = list(values)
        for start in range(0, n_rows, block_rows):
            stop = min(start + block_rows, n_rows)
            for i in arrays:
                block[i] = values[i][start:stop]
            kernel(block, out[:, start:stop])

    def _diagnose(self, values: list, arrays: list[int], n_rows: int, block_rows: int) -> None:
        """Re-run with a finiteness check after every node to name the culprit."""
        checked = _build_kernel(self.checked_source(), names=self.computed)
        scratch = np.empty((len(self.outputs), n_rows))
        block = list(values)
        with np.errstate(all="ignore"):
            for start in range(0, n_rows, block_rows):
                stop = min(start + block_rows, n_rows)
                for i in arrays:
                    block[i] = values[i][start:stop]
                try:
                    checked(block, scratch[:, start:stop])
                except NonFiniteError as fault:
                    raise NonFiniteError(fault.node, fault.positions + start) from None
        raise NonFiniteError("", np.array([0], dtype=np.intp))  # pragma: no cover - flags lied


def compile_tree(
    tree: Tree, nodes: Sequence[str] | None = None, *, fixed: frozenset[str] = frozenset()
) -> CompiledTree:
    """The cached :class:`CompiledTree` computing ``nodes`` (all by default).

    Nodes in ``fixed`` are read as inputs instead of computed from their formula
    (how a what-if overrides a computed node).
    """
    outputs = tuple(tree.nodes if nodes is None else nodes)
    for name in (*outputs, *fixed):
        tree.node(name)  # raises UnknownNodeError
    key = ("compiled", outputs, fixed)
    cached = tree._cache.get(key)
    if cached is None:
        cached = _compile(tree, outputs, fixed)
        tree._cache[key] = cached
    return cached


def _compile(tree: Tree, outputs: tuple[str, ...], fixed: frozenset[str]) -> CompiledTree:
    needed = _needed(tree, outputs, fixed)
    is_input = {n: n in fixed or tree.node(n).is_lever for n in needed}
    inputs = tuple(n for n in needed if is_input[n])
    computed = [n for n in needed if not is_input[n]]
    variables = {name: f"v{i}" for i, name in enumerate(needed)}
    source = _generate(tree, outputs, inputs, computed, variables, check=False)
    checked = partial(_generate, tree, outputs, inputs, computed, variables, check=True)
    return CompiledTree(inputs, outputs, source, _build_kernel(source), checked, tuple(computed))


def _needed(tree: Tree, outputs: tuple[str, ...], fixed: frozenset[str]) -> list[str]:
    """The outputs and what they depend on (stopping at fixed nodes), in topological order."""
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in fixed:
            stack.extend(tree.children(name))
    return [name for name in tree.order if name in seen]


def _generate(
    tree: Tree,
    outputs: tuple[str, ...],
    inputs: tuple[str, ...],
    computed: list[str],
    variables: dict[str, str],
    *,
    check: bool,
) -> str:
    last_use = _last_use(tree, computed)
    slots: dict[str, list[int]] = {}
    for j, name in enumerate(outputs):
        slots.setdefault(name, []).append(j)
    lines = ["def _kernel(L, O):"]
    for i, name in enumerate(inputs):
        lines.append(f"    {variables[name]} = L[{i}]")
        lines.extend(f"    O[{j}] = {variables[name]}" for j in slots.get(name, ()))
    for step, name in enumerate(computed):
        formula = tree.node(name).formula
        var = variables[name]
        lines.append(f"    {var} = {formula.to_numpy(variables)}")  # type: ignore[union-attr]
        if check:
            inputs_of = ", ".join(variables[c] for c in tree.children(name))
            lines.append(f"    _check(_names[{step}], {var}, {inputs_of})")
        lines.extend(f"    O[{j}] = {var}" for j in slots.get(name, ()))
        dead = [variables[n] for n in last_use.get(name, ())]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    return "\n".join(lines) + "\n"


def _last_use(tree: Tree, computed: list[str]) -> dict[str, list[str]]:
    """For each computed node, the variables whose last reader it is."""
    reader: dict[str, str] = {}
    for name in computed:
        for child in tree.children(name):
            reader[child] = name
    dead: dict[str, list[str]] = {}
    for child, name in reader.items():
        dead.setdefault(name, []).append(child)
    return dead


def _check(node: str, value: np.ndarray | float, *inputs: np.ndarray | float) -> None:
    """Raise where ``value`` is not finite although every input of the node is."""
    fault = ~np.isfinite(value)
    for given in inputs:
        fault = fault & np.isfinite(given)
    if np.any(fault):
        raise NonFiniteError(node, np.flatnonzero(np.atleast_1d(fault)))


def _build_kernel(source: str, *, names: Sequence[str] = ()) -> Callable[[list, np.ndarray], None]:
    namespace: dict[str, object] = {"_np": np, "_check": _check, "_names": list(names)}
    code = compile(source, "<kpitree-compiled>", "exec")
    exec(code, namespace)  # safe: source is generated from parsed syntax trees, see module doc
    return namespace["_kernel"]  # type: ignore[return-value]
