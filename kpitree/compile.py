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

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .tree import post_order

if TYPE_CHECKING:
    from .tree import Tree

__all__ = [
    "BLOCK_ROWS", "CompiledTree", "FaultError", "NonFiniteError", "build_kernel", "compile_tree",
    "forward_lines",
]  # fmt: skip

#: rows evaluated per call of the generated function (tuned in benchmarks/)
BLOCK_ROWS = 32_768

Mode = Literal["guarded", "scalar", "plain", "diagnostic"]


class FaultError(ArithmeticError):
    """Internal: a guarded run met a bound violation or a floating-point fault."""


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
    nodes held fixed); ``outputs`` the rows of the array it returns; ``source`` the
    generated function of the fast, guarded path.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    source: str
    generate: Callable[[Mode], str] = field(repr=False)
    computed: tuple[str, ...] = field(repr=False)
    copies: tuple[tuple[int, int], ...] = field(repr=False)  # (output row, input) pairs
    kernels: dict[str, Callable[[list, np.ndarray], None]] = field(repr=False, default_factory=dict)

    def run(
        self,
        values: Sequence[np.ndarray | float],
        n_rows: int,
        *,
        check: bool = True,
        block_rows: int = BLOCK_ROWS,
    ) -> np.ndarray:
        """Evaluate on ``values`` (one per input: a float or an array of ``n_rows``).

        Returns an array of shape ``(len(outputs), n_rows)``. With ``check``, the run
        is guarded: an input or output outside its bounds, NaN in a bounded input, a
        division by zero, log of a non-positive number or overflow raises
        :class:`FaultError` (then :meth:`locate` names the node); without, values
        follow IEEE semantics (``inf``, ``nan``).
        """
        if check and n_rows == 1 and all(map(is_scalar, values)):
            return self._run_scalar([float(v) for v in values])
        values = _as_values(values)
        out = np.empty((len(self.outputs), n_rows))
        if not check:
            with np.errstate(all="ignore"):
                self._loop(self._kernel("plain"), values, out, block_rows)
            return out
        try:
            with np.errstate(divide="raise", invalid="raise", over="raise", under="ignore"):
                self._loop(self._kernel("guarded"), values, out, block_rows)
        except (FloatingPointError, ZeroDivisionError, OverflowError, _BoundError):
            raise FaultError from None
        return out

    def _run_scalar(self, values: list[float]) -> np.ndarray:
        """One state in plain Python floats: a what-if costs microseconds, not milliseconds."""
        out: list[float] = [0.0] * len(self.outputs)
        for j, i in self.copies:
            out[j] = values[i]
        try:
            with np.errstate(divide="raise", invalid="raise", over="raise", under="ignore"):
                self._kernel("scalar")(values, out)  # type: ignore[arg-type]
            return np.array(out, dtype=np.float64).reshape(-1, 1)
        except (FloatingPointError, ZeroDivisionError, OverflowError, TypeError, _BoundError):
            raise FaultError from None

    def locate(
        self, values: Sequence[np.ndarray | float], n_rows: int, *, block_rows: int = BLOCK_ROWS
    ) -> NonFiniteError | None:
        """The first node whose value is not finite while its inputs are, if any."""
        values = _as_values(values)
        scratch = np.empty((len(self.outputs), n_rows))
        try:
            with np.errstate(all="ignore"):
                self._loop(self._kernel("diagnostic"), values, scratch, block_rows)
        except NonFiniteError as fault:
            return fault
        return None

    def _kernel(self, mode: Mode) -> Callable[[list, np.ndarray], None]:
        kernel = self.kernels.get(mode)
        if kernel is None:
            source = self.source if mode == "guarded" else self.generate(mode)
            kernel = self.kernels[mode] = build_kernel(source, names=self.computed)
        return kernel

    def _loop(
        self,
        kernel: Callable[[list, np.ndarray], None],
        values: list,
        out: np.ndarray,
        block_rows: int,
    ) -> None:
        n_rows = out.shape[1]
        for j, i in self.copies:
            out[j] = values[i]
        arrays = [i for i, v in enumerate(values) if v.ndim]
        block = list(values)
        for start in range(0, n_rows, block_rows):
            stop = min(start + block_rows, n_rows)
            for i in arrays:
                block[i] = values[i][start:stop]
            try:
                kernel(block, out[:, start:stop])
            except NonFiniteError as fault:
                raise NonFiniteError(fault.node, fault.positions + start) from None


def is_scalar(value: Any) -> bool:
    """True for a number or a 0-d array (fast for plain floats)."""
    return type(value) is float or np.ndim(value) == 0


def _as_values(values: Sequence[np.ndarray | float]) -> list[np.ndarray]:
    """Arrays as they are; scalars as 0-d arrays, which follow numpy's error state."""
    return [v if isinstance(v, np.ndarray) else np.asarray(v, dtype=np.float64) for v in values]


class _BoundError(Exception):
    """Raised by a guard in generated code; the caller locates the fault slowly."""


def compile_tree(
    tree: Tree, nodes: Sequence[str] | None = None, *, fixed: frozenset[str] = frozenset()
) -> CompiledTree:
    """The cached :class:`CompiledTree` computing ``nodes`` (all by default).

    Nodes in ``fixed`` are read as inputs instead of computed from their formula
    (how a what-if overrides a computed node).
    """
    outputs = tree.nodes if nodes is None else tuple(nodes)
    key = ("compiled", outputs, fixed)
    cached = tree._cache.get(key)
    if cached is None:
        for name in (*outputs, *fixed):
            tree.node(name)  # raises UnknownNodeError
        cached = tree._cache[key] = _compile(tree, outputs, fixed)
    return cached


def _compile(tree: Tree, outputs: tuple[str, ...], fixed: frozenset[str]) -> CompiledTree:
    needed = _needed(tree, outputs, fixed)
    parameters = tree.parameters
    is_input = {n: n in fixed or n in parameters or tree.node(n).is_input for n in needed}
    inputs = tuple(n for n in needed if is_input[n])
    computed = [n for n in needed if not is_input[n]]
    variables = {name: f"v{i}" for i, name in enumerate([*inputs, *computed])}
    generate = partial(_generate, tree, outputs, inputs, computed, variables)
    source = generate("guarded")
    kernels = {"guarded": build_kernel(source, names=computed)}  # the fast path, built now
    position = {name: i for i, name in enumerate(inputs)}
    copies = tuple((j, position[name]) for j, name in enumerate(outputs) if name in position)
    return CompiledTree(inputs, outputs, source, generate, tuple(computed), copies, kernels)


def _needed(tree: Tree, outputs: tuple[str, ...], fixed: frozenset[str]) -> list[str]:
    """The outputs and what they depend on (stopping at fixed nodes), depth first."""
    if not fixed and outputs == tree.nodes and not tree.parameters and not tree.links:
        return list(tree.order)  # the same walk, done when the tree was built
    return post_order(outputs, tree.reads, stop=fixed)


def _generate(
    tree: Tree,
    outputs: tuple[str, ...],
    inputs: tuple[str, ...],
    computed: list[str],
    variables: dict[str, str],
    mode: Mode,
) -> str:
    """The kernel's source: one statement per computed node, in the order given."""
    return "\n".join(forward_lines(tree, outputs, inputs, computed, variables, mode)) + "\n"


def forward_lines(
    tree: Tree,
    outputs: Sequence[str],
    inputs: Sequence[str],
    computed: Sequence[str],
    variables: Mapping[str, str],
    mode: Mode,
    *,
    release: bool = True,
) -> list[str]:
    """The lines of ``def _kernel(L, O)`` computing ``computed`` and storing ``outputs``.

    ``guarded`` adds a bound check on each bounded input just before its first use
    (while its block is in cache) and on each bounded output; ``scalar`` is the same
    for plain Python floats; ``diagnostic`` checks every node's finiteness instead;
    ``plain`` checks nothing. With ``release``, each value is deleted after its last
    use; without, every value stays available to lines appended by the caller.
    """
    formulas = {name: tree.node(name).formula for name in computed}  # computed: all have one
    uses = {name: formula.names for name, formula in formulas.items() if formula is not None}
    last_use = _last_use(uses)
    slots: dict[str, list[int]] = {}
    for j, name in enumerate(outputs):
        slots.setdefault(name, []).append(j)
    guarded = mode in ("guarded", "scalar")
    scalar = mode == "scalar"
    guards = _input_guards(tree, inputs, variables, scalar) if guarded else {}
    lines = ["def _kernel(L, O):"]
    if inputs:  # one unpacking statement; inputs that are outputs are copied by the caller
        lines.append(f"    {', '.join(variables[name] for name in inputs)}, = L")
    if guards:
        read = {child for children in uses.values() for child in children}
        for name in inputs:
            if name in guards and name not in read:  # never read: guarded where loaded
                lines.extend(guards.pop(name))
    for step, name in enumerate(computed):
        children = uses[name]
        if guards:
            for child in children:
                lines.extend(guards.pop(child, ()))
        var = variables[name]
        lines.append(f"    {var} = {formulas[name].to_numpy(variables)}")  # type: ignore[union-attr]
        if mode == "diagnostic":
            inputs_of = ", ".join(variables[c] for c in children)
            lines.append(f"    _check(_names[{step}], {var}, {inputs_of})")
        if name in slots:
            if guarded:
                lines.extend(_guard(var, tree.node(name).bounds, scalar))
            lines.extend(f"    O[{j}] = {var}" for j in slots[name])
        dead = last_use.get(name) if release else None
        if dead:
            lines.append(f"    del {', '.join(variables[n] for n in dead)}")
    return lines


def _input_guards(
    tree: Tree, inputs: Sequence[str], variables: Mapping[str, str], scalar: bool
) -> dict[str, list[str]]:
    """Guard lines per bounded input, emitted just before the input's first reader."""
    guards = {
        name: _guard(variables[name], tree.node(name).bounds, scalar)
        for name in inputs
        if name not in tree.parameters  # parameters have no bounds
    }
    return {name: lines for name, lines in guards.items() if lines}


def _guard(var: str, bounds: tuple[float, float] | None, scalar: bool) -> list[str]:
    """``if not (low <= v.min() and v.max() <= high): raise``; NaN fails it too."""
    if bounds is None:
        return []
    low, high = bounds
    smallest, largest = (var, var) if scalar else (f"{var}.min()", f"{var}.max()")
    tests = []
    if math.isfinite(low):
        tests.append(f"{low!r} <= {smallest}")
    if math.isfinite(high):
        tests.append(f"{largest} <= {high!r}")
    if not tests:
        return []
    return [f"    if not ({' and '.join(tests)}):", "        raise _BoundError"]


def _last_use(uses: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """For each node (in evaluation order), the nodes whose last reader it is."""
    reader: dict[str, str] = {}
    for name, children in uses.items():
        for child in children:
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


def build_kernel(source: str, *, names: Sequence[str] = ()) -> Callable[[list, np.ndarray], None]:
    namespace: dict[str, object] = {
        "_np": np,
        "numpy": np,  # derivative code printed by sympy's NumPyPrinter (kpitree.gradient),
        "functools": functools,  # which writes min/max as functools.reduce(numpy.minimum, ...)
        "_check": _check,
        "_names": list(names),
        "_BoundError": _BoundError,
    }
    code = compile(source, "<kpitree-compiled>", "exec")
    exec(code, namespace)  # safe: source is generated from parsed syntax trees, see module doc
    return namespace["_kernel"]  # type: ignore[return-value]
