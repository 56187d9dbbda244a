"""One node's formula, solved for the common factor of its free inputs.

Back-calculation (:mod:`kpitree.backcasting`) meets a node's requirement by scaling the
inputs it does not hold by one factor: in closed form for sums and products, by a
symbolic solve of the node's own formula when that is quick, and by a bracketed root
otherwise. Never on the expanded tree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from .compile import compile_tree
from .errors import OptionError, ScenarioError
from .results import number_text
from .roots import RTOL, NoRootError, root_near
from .syntax import to_sympy
from .tree import Tree

__all__ = ["LocalSolver", "first_value", "local_solver", "option_error", "share_text"]

_MAX_OPS = 300  # larger local expressions skip sympy.solve and go straight to brentq
_LOG_SCALE = 50.0  # the numeric search scales free inputs by exp(-50) .. exp(50)


@dataclass(frozen=True)
class LocalSolver:
    """How one node's requirement is split: ``kind`` is "sum", "product" or "solve"."""

    node: str
    kind: str
    children: tuple[str, ...]
    free: tuple[str, ...]
    value_of: Callable[[Mapping[str, Any], int], np.ndarray]  # the node from its inputs
    coefficients: Mapping[str, float] = field(default_factory=dict)  # sum: d node / d input
    constant: float = 0.0
    power: float = 0.0  # product: the free factors' exponents, summed
    roots: tuple[Callable[..., Any], ...] = ()  # solve: the factor from (required, *inputs)

    @property
    def note(self) -> str | None:
        if self.kind == "product" and len(self.free) > 1 and self.power:
            root = "" if self.power == 1 else f"^(1/{self.power:g})"
            return f"{len(self.free)} free factors ({', '.join(self.free)}) each x ratio{root}"
        if self.kind == "solve":
            how = "symbolically" if self.roots else "numerically"
            return f"common factor of {', '.join(self.free)} solved {how}"
        return None

    def split(
        self, need: np.ndarray, values: Mapping[str, Any], shares: dict | None, n: int
    ) -> dict[str, np.ndarray]:
        if shares is not None:
            return self._mixed(need, values, shares, n)
        factor = self._factor(need, values, n)
        return {c: factor * values[c] for c in self.free}

    def _factor(self, need: np.ndarray, values: Mapping[str, Any], n: int) -> np.ndarray:
        with np.errstate(all="ignore"):
            if self.kind == "sum":
                held, moving = self._parts(values, n)
                factor = (need - held) / moving
                fixed = (moving == 0) & np.isclose(need, held, rtol=RTOL, atol=0)
                factor = np.where(fixed, 1.0, factor)  # nothing moves, nothing needs to
                reason = f"its held inputs already give {number_text(first_value(held))}"
            elif self.kind == "product":
                now = self.value_of(values, n)
                factor = (need / now) ** (1 / self.power) if self.power else np.ones(n)
                now_text = number_text(first_value(now))
                reason = f"it is {now_text} with its inputs scaled by any factor > 0"
            else:
                factor = self._solve(need, values, n)
                reason = "no factor > 0 on its free inputs gives it"
        ok = np.isfinite(factor) & (factor > 0)
        ok &= self._hits(np.where(ok, factor, 1.0), need, values, n)
        if not ok.all():
            raise self._unreachable(need, ~ok, reason)
        return factor

    def _parts(self, values: Mapping[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
        held = np.full(n, self.constant)
        moving = np.zeros(n)
        for child, a in self.coefficients.items():
            if child in self.free:
                moving = moving + a * values[child]
            else:
                held = held + a * values[child]
        return held, moving

    def _mixed(
        self, need: np.ndarray, values: Mapping[str, Any], shares: dict, n: int
    ) -> dict[str, np.ndarray]:
        if self.kind != "sum" or any(self.coefficients[c] <= 0 for c in self.free):
            message = f"mix: {self.node!r} is not a sum of its free inputs"
            raise option_error(message, "mix", self.node)
        held, _ = self._parts(values, n)
        free_part = need - held
        if (free_part < 0).any():
            reason = f"its held inputs already give {number_text(first_value(held))}"
            raise self._unreachable(need, free_part < 0, reason)
        return {c: shares.get(c, 0.0) * free_part / self.coefficients[c] for c in self.free}

    def _hits(self, factor: np.ndarray, need: np.ndarray, values: Mapping, n: int) -> np.ndarray:
        scaled = {c: values[c] * factor if c in self.free else values[c] for c in self.children}
        with np.errstate(all="ignore"):
            got = self.value_of(scaled, n)
        return np.abs(got - need) <= RTOL * np.maximum(np.abs(need), 1e-300)

    def _solve(self, need: np.ndarray, values: Mapping[str, Any], n: int) -> np.ndarray:
        inputs = [np.broadcast_to(np.asarray(values[c], dtype=float), n) for c in self.children]
        best = np.full(n, np.nan)
        for root in self.roots:
            found = np.broadcast_to(np.asarray(root(need, *inputs), dtype=complex), n)
            real = found.real
            ok = (np.abs(found.imag) <= 1e-9 * np.abs(real)) & (real > 0) & np.isfinite(real)
            ok &= self._hits(np.where(ok, real, 1.0), need, values, n)
            closer = ok & ~(np.abs(np.log(np.where(ok, real, 1.0))) >= np.abs(np.log(best)))
            best = np.where(closer, real, best)
        for i in np.flatnonzero(np.isnan(best)):
            at_draw = {c: v[i] for c, v in zip(self.children, inputs, strict=True)}
            best[i] = self._numeric(float(need[i]), at_draw)
        return best

    def _numeric(self, need: float, values: Mapping[str, float]) -> float:
        def value_at(log_factor: np.ndarray) -> np.ndarray:
            factor = np.exp(log_factor)
            scaled = {c: values[c] * factor if c in self.free else values[c] for c in values}
            return self.value_of(scaled, len(log_factor))

        try:
            return math.exp(root_near(value_at, 0.0, -_LOG_SCALE, _LOG_SCALE, value=need))
        except NoRootError:
            return math.nan

    def _unreachable(self, need: np.ndarray, bad: np.ndarray, reason: str) -> ScenarioError:
        shown = need[np.flatnonzero(bad)[0]]
        held = [c for c in self.children if c not in self.free]
        what = f"with {', '.join(held)} held, " if held else ""
        message = (
            f"{self.node!r} cannot reach the required {number_text(shown)} by scaling its free "
            f"inputs ({', '.join(self.free) or 'none'}): {what}{reason}{share_text(bad)}"
        )
        return ScenarioError(message, node=self.node)


def first_value(values: np.ndarray) -> float:
    return float(np.ravel(values)[0])


def local_solver(tree: Tree, name: str, held: frozenset[str]) -> LocalSolver:
    children = tree.children(name)
    free = tuple(c for c in children if c not in held)
    key = ("backcast", name, free)
    cached = tree._cache.get(key)
    if cached is None:
        cached = tree._cache[key] = _classify(tree, name, children, free)
    return cached  # type: ignore[no-any-return]


def _classify(
    tree: Tree, name: str, children: tuple[str, ...], free: tuple[str, ...]
) -> LocalSolver:
    symbols = {c: sympy.Symbol(f"_v{i}", real=True) for i, c in enumerate(children)}
    formula = tree.node(name).formula
    assert formula is not None  # only computed nodes are split
    table = {p: sympy.Float(tree.parameters[p]) for p in formula.names if p in tree.parameters}
    expr = to_sympy(formula.root, {**symbols, **table})
    value_of = _evaluator(tree, name)

    def local(kind: str, **details: Any) -> LocalSolver:
        return LocalSolver(name, kind, children, free, value_of, **details)

    variables = [symbols[c] for c in children]
    slopes = [sympy.diff(expr, v) for v in variables]
    if all(not slope.free_symbols for slope in slopes):
        coefficients = {c: float(s) for c, s in zip(children, slopes, strict=True)}
        constant = float(expr.xreplace(dict.fromkeys(variables, 0)))
        return local("sum", coefficients=coefficients, constant=constant)
    powers = _monomial(expr, symbols)
    if powers is not None:
        return local("product", power=sum(powers.get(c, 0.0) for c in free))
    return local("solve", roots=_symbolic_factor(expr, symbols, free))


def _monomial(expr: sympy.Expr, symbols: Mapping[str, sympy.Symbol]) -> dict[str, float] | None:
    """``{input: exponent}`` when ``expr`` is a number times powers of inputs, else None."""
    names = {symbol: name for name, symbol in symbols.items()}
    powers: dict[str, float] = {}
    for factor in sympy.Mul.make_args(expr):
        if factor.is_Number:
            continue
        base, exponent = factor.as_base_exp()
        if base not in names or not exponent.is_Number:
            return None
        powers[names[base]] = powers.get(names[base], 0.0) + float(exponent)
    return powers


def _symbolic_factor(
    expr: sympy.Expr, symbols: Mapping[str, sympy.Symbol], free: tuple[str, ...]
) -> tuple[Callable[..., Any], ...]:
    """The common factor of the free inputs as functions of (required, *inputs), or ()."""
    factor, need = sympy.Symbol("_s", positive=True), sympy.Symbol("_r", real=True)
    scaled = expr.xreplace({symbols[c]: factor * symbols[c] for c in free})
    if not free or sympy.count_ops(scaled) > _MAX_OPS or not _quick_to_solve(scaled, factor):
        return ()
    try:
        roots = sympy.solve(scaled - need, factor, rational=False, check=False)
    except Exception:  # sympy raises many kinds of errors when it has no method
        return ()
    arguments = (need, *symbols.values())
    usable = [r for r in roots if isinstance(r, sympy.Expr) and r.free_symbols <= set(arguments)]
    return tuple(sympy.lambdify(arguments, r, modules="numpy") for r in usable)


def _quick_to_solve(expr: sympy.Expr, factor: sympy.Symbol) -> bool:
    """Whether sympy solves ``expr = r`` for ``factor`` fast with symbolic coefficients:
    a polynomial of degree <= 2 in it, or one occurrence of it (an inversion). Others
    (``10 sqrt(a s) + a b s**2``...) can take sympy minutes: they go to brentq."""
    try:
        return bool(sympy.Poly(expr, factor).degree() <= 2)
    except sympy.PolynomialError:
        return expr.count(factor) == 1


def _evaluator(tree: Tree, name: str) -> Callable[[Mapping[str, Any], int], np.ndarray]:
    """The node's value from its inputs' values, by the compiled kernel of its formula."""
    compiled = compile_tree(tree, (name,), fixed=frozenset(tree.children(name)))

    def value_of(values: Mapping[str, Any], n: int) -> np.ndarray:
        given = [tree.parameters[c] if c in tree.parameters else values[c] for c in compiled.inputs]
        arrays = [np.broadcast_to(np.asarray(v, dtype=float), n) for v in given]
        return compiled.run(arrays, n, check=False)[0]

    return value_of


def option_error(message: str, option: str, node: str) -> OptionError:
    """An :class:`OptionError` that also names the node it is about."""
    error = OptionError(message, option=option)
    error.node = node  # type: ignore[attr-defined]
    return error


def share_text(bad: np.ndarray) -> str:
    return f" (in {int(bad.sum())} of {bad.size} draws of the rates)" if bad.size > 1 else ""
