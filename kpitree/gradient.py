"""Exact derivatives of one node with respect to many inputs, in one reverse pass.

Each node's *local* partial derivatives (with respect to the names its formula
reads) are taken symbolically with sympy, once per tree. :func:`compile_gradient`
then generates one kernel: the forward statements of :mod:`kpitree.compile`
(keeping every value), followed by a reverse pass that accumulates the adjoint of
each node from its parents' adjoints and local partials, from the target down to
the inputs (reverse-mode automatic differentiation over the DAG). The cost is a
small multiple of one evaluation whatever the number of inputs, and the tree is
never expanded into one expression.

Partials are printed by sympy's ``NumPyPrinter`` from expressions built from our
parsed syntax trees, over generated variable names: formula text never reaches the
Python compiler.

>>> from kpitree import Tree
>>> tree = Tree.from_formulas("revenue = customers * arpa")
>>> gradient = compile_gradient(tree, "revenue", ("customers", "arpa"))
>>> value, derivatives = gradient.run([np.array([10.0, 20.0]), 5.0], n_rows=2)
>>> value
array([ 50., 100.])
>>> derivatives
array([[ 5.,  5.],
       [10., 20.]])
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import sympy
from sympy.printing.numpy import NumPyPrinter

from .compile import CompiledTree, Mode, build_kernel, forward_lines
from .syntax import Expr, Name, Product, Sum
from .tree import Tree, post_order

__all__ = [
    "GRADIENT_BLOCK_ROWS", "Gradient", "check_faults", "compile_gradient", "local_partials",
]  # fmt: skip

#: rows per call of a gradient kernel: every value of the block stays alive (tuned in
#: benchmarks/bench_sensitivity.py)
GRADIENT_BLOCK_ROWS = 4096

_PRINTER = NumPyPrinter({"fully_qualified_modules": True})
_CSE_WORTH_IT = (sympy.Function, sympy.Pow)  # partials sharing these share a temporary


@dataclass(frozen=True)
class Gradient:
    """A compiled derivative of ``target`` with respect to ``wrt``.

    :meth:`run` takes one value per name in ``inputs`` (as
    :meth:`kpitree.compile.CompiledTree.run` does) and returns the target's values and
    an array of derivatives, one row per name in ``wrt``.
    """

    target: str
    wrt: tuple[str, ...]
    compiled: CompiledTree

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.compiled.inputs

    @property
    def source(self) -> str:
        return self.compiled.source

    def run(
        self,
        values: Sequence[np.ndarray | float],
        n_rows: int,
        *,
        check: bool = True,
        block_rows: int = GRADIENT_BLOCK_ROWS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(target values, derivatives)``: shapes ``(n_rows,)`` and ``(len(wrt), n_rows)``.

        With ``check``, bound violations, floating-point faults and non-finite
        derivatives raise :class:`~kpitree.compile.FaultError`; without, values follow
        IEEE semantics (see :func:`check_faults`).
        """
        result = self.compiled.run(values, n_rows, check=check, block_rows=block_rows)
        return result[0], result[1:]


def compile_gradient(tree: Tree, target: str, wrt: Sequence[str]) -> Gradient:
    """The cached :class:`Gradient` of ``target`` with respect to the inputs ``wrt``.

    ``wrt`` may hold levers and parameters (fitted coefficients); an input the target
    does not depend on gets a derivative of zero.
    """
    wrt = tuple(wrt)
    key = ("gradient", target, wrt)
    cached = tree._cache.get(key)
    if cached is None:
        tree.node(target)
        cached = tree._cache[key] = Gradient(target, wrt, _compile(tree, target, wrt))
    return cached


def local_partials(tree: Tree, name: str) -> Mapping[str, sympy.Expr]:
    """``{child: d name / d child}`` for a computed node, over real symbols named as nodes.

    >>> tree = Tree.from_formulas("leads = visits * rate")
    >>> dict(local_partials(tree, "leads"))
    {'visits': rate, 'rate': visits}
    """
    key = ("partials", name)
    cached = tree._cache.get(key)
    if cached is None:
        formula = tree.node(name).formula
        if formula is None:
            raise ValueError(f"{name!r} has no formula")
        symbols = {n: sympy.Symbol(n, real=True) for n in formula.names}
        cached = _sum_or_product_partials(formula.root, symbols)
        if cached is None:
            expression = formula.to_sympy(symbols)
            cached = {n: sympy.diff(expression, symbols[n]) for n in formula.names}
        tree._cache[key] = cached
    return cached


def _sum_or_product_partials(
    root: Expr, symbols: Mapping[str, sympy.Symbol]
) -> dict[str, sympy.Expr] | None:
    """The partials of ``a ± b ± ...`` or ``a * b * ...`` (distinct names), built directly.

    Most nodes of a KPI tree have one of these two shapes; building their partials
    without ``sympy.diff`` makes compiling a 5,000-node gradient several times faster.
    Other shapes return ``None`` (differentiate symbolically).
    """
    if isinstance(root, Name):
        return {root.name: sympy.Integer(1)}
    if isinstance(root, Sum) and all(isinstance(t, Name) for t in root.terms):
        signs: dict[str, int] = {}
        for term, sign in zip(root.terms, root.signs, strict=True):
            signs[term.name] = signs.get(term.name, 0) + sign  # type: ignore[attr-defined]
        return {name: sympy.Integer(sign) for name, sign in signs.items()}
    if isinstance(root, Product) and not any(root.divide):
        names = [f.name for f in root.factors if isinstance(f, Name)]
        if len(names) == len(root.factors) == len(set(names)):
            return {n: sympy.Mul(*(symbols[m] for m in names if m != n)) for n in names}
    return None


def _compile(tree: Tree, target: str, wrt: tuple[str, ...]) -> CompiledTree:
    needed = post_order((target,), tree.reads)
    parameters = tree.parameters
    inputs = tuple(n for n in needed if n in parameters or tree.node(n).is_input)
    computed = [n for n in needed if n not in inputs]
    variables = {name: f"v{i}" for i, name in enumerate([*inputs, *computed])}
    generate = partial(_generate, tree, target, wrt, inputs, computed, variables)
    source = generate("guarded")
    kernels = {"guarded": build_kernel(source, names=computed)}
    outputs = (target, *(f"d{target}/d{name}" for name in wrt))
    copies = ((0, inputs.index(target)),) if target in inputs else ()
    return CompiledTree(inputs, outputs, source, generate, tuple(computed), copies, kernels)


def _generate(
    tree: Tree,
    target: str,
    wrt: tuple[str, ...],
    inputs: tuple[str, ...],
    computed: list[str],
    variables: dict[str, str],
    mode: Mode,
) -> str:
    """Forward statements keeping every value, then the reverse pass into ``O[1:]``."""
    if mode == "diagnostic":
        mode = "plain"  # faults are located by kpitree.evaluate, not here
    lines = forward_lines(tree, (target,), inputs, computed, variables, mode, release=False)
    if len(lines) == 1:
        lines.append("    pass")
    slots = {name: j for j, name in enumerate(wrt, start=1)}
    in_place = mode != "scalar"  # a scalar kernel's O is a list of floats
    written = _reverse_lines(tree, target, slots, computed, variables, lines, in_place)
    lines.extend(f"    O[{j}] = 0.0" for name, j in slots.items() if name not in written)
    if mode in ("guarded", "scalar"):  # one sum while the block is in cache
        lines += ["    if not _np.isfinite(_np.sum(O)):", "        raise _BoundError"]
    return "\n".join(_released(lines)) + "\n"


_VARIABLE = re.compile(r"\b(?:[vaw]\d+|t\d+_\d+)\b")


def _released(lines: list[str]) -> list[str]:
    """``lines`` with each variable deleted right after its last use.

    The reverse pass reads forward values long after they are computed; freeing
    them as soon as possible keeps a block's working set in cache.
    """
    last: dict[str, int] = {}
    for i, line in enumerate(lines):
        for name in _VARIABLE.findall(line):
            last[name] = i
    dying: dict[int, list[str]] = {}
    for name, i in last.items():
        if not lines[i].startswith("    if "):  # a guard's raise line follows it
            dying.setdefault(i, []).append(name)
        else:
            dying.setdefault(i + 1, []).append(name)
    released = []
    for i, line in enumerate(lines):
        released.append(line)
        if i in dying and i > 1:
            released.append(f"    del {', '.join(sorted(dying[i]))}")
    return released


def _reverse_lines(
    tree: Tree,
    target: str,
    slots: Mapping[str, int],
    computed: list[str],
    variables: dict[str, str],
    lines: list[str],
    in_place: bool,
) -> set[str]:
    """Append the reverse pass to ``lines``; return the inputs whose output it writes.

    A node's adjoint is the sum over its readers of the reader's adjoint times the
    local partial; an adjoint with one unit term is an alias, not a copy. An input's
    derivative is written to its output row as soon as its last reader is done, so
    that few arrays are alive at once.
    """
    affected = _affected(tree, computed, set(slots))
    pending = _readers(tree, computed, affected, slots)
    terms: dict[str, list[str]] = {}
    adjoints: dict[str, str] = {target: "1"}
    written = set()
    if target in slots:
        lines.append(f"    O[{slots[target]}] = 1.0")
        written.add(target)
    for step, name in enumerate(reversed(computed)):
        if name != target:
            adjoints[name] = _accumulate(name, terms.get(name, []), f"a{step}", lines)
        if adjoints[name] != "0":
            partials = {c: d for c, d in local_partials(tree, name).items() if c in affected}
            for child, code in _print_partials(partials, variables, f"t{step}_", lines).items():
                terms.setdefault(child, []).append(_times(adjoints[name], code))
        for child in _distinct(tree.reads(name), pending):  # counted as in _readers
            pending[child] -= 1
            if not pending[child] and child in terms:
                lines.append(_output_line(slots[child], terms[child], in_place))
                written.add(child)
    return written


def _readers(
    tree: Tree, computed: list[str], affected: set[str], slots: Mapping[str, int]
) -> dict[str, int]:
    """How many computed nodes read each input in ``slots`` (each counted once)."""
    count = dict.fromkeys(slots, 0)
    for name in computed:
        if name in affected:
            for child in _distinct(tree.reads(name), count):
                count[child] += 1
    return count


def _distinct(names: Sequence[str], among: Mapping[str, int]) -> list[str]:
    """``names`` in ``among``, each once, in order (generated code is deterministic)."""
    return [name for name in dict.fromkeys(names) if name in among]


def _output_line(slot: int, terms: list[str], in_place: bool) -> str:
    """``O[slot] = sum of terms``; a single product is written in place."""
    if len(terms) == 1 and in_place:
        factors = _PRODUCT.fullmatch(terms[0])
        if factors:
            return f"    _np.multiply({factors[1]}, {factors[2]}, out=O[{slot}])"
    return f"    O[{slot}] = {' + '.join(terms)}"


_PRODUCT = re.compile(r"(\w+) \* \((\w+)\)")


def _affected(tree: Tree, computed: list[str], wrt: set[str]) -> set[str]:
    """Inputs in ``wrt`` and the computed nodes that depend on one of them."""
    affected = set(wrt)
    for name in computed:  # children come before their readers
        if any(child in affected for child in tree.reads(name)):
            affected.add(name)
    return affected


def _accumulate(name: str, terms: list[str], var: str, lines: list[str]) -> str:
    if not terms:
        return "0"
    if len(terms) == 1 and _is_atom(terms[0]):
        return terms[0]  # an alias or a constant: no statement
    lines.append(f"    {var} = {' + '.join(terms)}")
    return var


def _is_atom(code: str) -> bool:
    return code.isidentifier() or code.replace(".", "", 1).isdigit()


def _times(adjoint: str, partial_code: str) -> str:
    if adjoint == "1":
        return partial_code
    if partial_code == "1":
        return adjoint
    if partial_code == "-1":
        return f"(-{adjoint})"
    return f"{adjoint} * ({partial_code})"


def _print_partials(
    partials: Mapping[str, sympy.Expr], variables: Mapping[str, str], prefix: str, lines: list[str]
) -> dict[str, str]:
    """Numpy code per non-zero partial; subexpressions shared by several become temporaries."""
    nonzero = {c: _renamed(d, variables) for c, d in partials.items() if d != 0}
    if len(nonzero) > 1 and any(d.has(*_CSE_WORTH_IT) for d in nonzero.values()):
        symbols = sympy.numbered_symbols(prefix, real=True)
        shared, reduced = sympy.cse(list(nonzero.values()), symbols=symbols)
        for symbol, expression in shared:
            lines.append(f"    {symbol} = {_PRINTER.doprint(expression)}")
        nonzero = dict(zip(nonzero, reduced, strict=True))
    return {child: _PRINTER.doprint(d) for child, d in nonzero.items()}


def _renamed(expression: sympy.Expr, variables: Mapping[str, str]) -> sympy.Expr:
    free = expression.free_symbols
    return expression.xreplace({s: sympy.Symbol(variables[s.name], real=True) for s in free})


def check_faults(gradient: Gradient, derivatives: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The first input whose derivative is not finite, and the rows (0-based), if any."""
    bad = ~np.isfinite(derivatives)
    if not bad.any():
        return None
    j = int(np.flatnonzero(bad.any(axis=1))[0])
    return gradient.wrt[j], np.flatnonzero(bad[j])
