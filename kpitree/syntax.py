"""The syntax tree of a formula, and what is computed from it.

:mod:`kpitree.formula` parses text into these small frozen nodes; this module turns
them into a sympy expression (explicit constructors, never ``sympify``), into numpy
source over generated variable names, and checks their constant parts (``1/0``,
``log(-1)``) in float arithmetic.

>>> tree = Product((Name("leads"), Num(Fraction(1, 2))), (False, False))
>>> to_sympy(tree, {"leads": sympy.Symbol("leads")})
leads/2
>>> to_numpy(tree, {"leads": "v0"})
'(v0 * 0.5)'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import sympy

from .errors import FormulaError

__all__ = [
    "Call", "Expr", "Name", "Neg", "Num", "Power", "Product", "Sum",
    "check_constants", "to_numpy", "to_sympy",
]  # fmt: skip

_SYMPY_FUNCTIONS: dict[str, Callable[..., sympy.Expr]] = {
    "log": sympy.log,
    "exp": sympy.exp,
    "sqrt": sympy.sqrt,
    "abs": sympy.Abs,
    "min": sympy.Min,
    "max": sympy.Max,
}

_MATH_FUNCTIONS: dict[str, Callable[..., float]] = {
    "log": math.log,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "abs": abs,
    "min": min,
    "max": max,
}

_NUMPY_FUNCTIONS = {"log": "_np.log", "exp": "_np.exp", "sqrt": "_np.sqrt", "abs": "abs"}


@dataclass(frozen=True, slots=True)
class Num:
    value: Fraction


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Sum:
    """``terms[0] ± terms[1] ± ...``; ``signs[i]`` is +1 or -1."""

    terms: tuple[Expr, ...]
    signs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Product:
    """``factors[0] */ factors[1] */ ...``; ``divide[i]`` marks a divisor."""

    factors: tuple[Expr, ...]
    divide: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Power:
    base: Expr
    exponent: Expr


@dataclass(frozen=True, slots=True)
class Call:
    func: str
    args: tuple[Expr, ...]


Expr = Num | Name | Neg | Sum | Product | Power | Call


# --- walks over the syntax tree ---------------------------------------------------


def _children(node: Expr) -> tuple[Expr, ...]:
    if isinstance(node, Sum):
        return node.terms
    if isinstance(node, Product):
        return node.factors
    if isinstance(node, Power):
        return (node.base, node.exponent)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Neg):
        return (node.operand,)
    return ()


def _constant_value(node: Expr) -> float:
    """Value of a constant subtree in float arithmetic; raises on 1/0, log(-1)..."""
    if isinstance(node, Num):
        return float(node.value)
    if isinstance(node, Neg):
        return -_constant_value(node.operand)
    if isinstance(node, Sum):
        values = [s * _constant_value(t) for t, s in zip(node.terms, node.signs, strict=True)]
        return math.fsum(values)
    if isinstance(node, Product):
        result = 1.0
        for factor, divide in zip(node.factors, node.divide, strict=True):
            value = _constant_value(factor)
            result = result / value if divide else result * value
        return result
    if isinstance(node, Power):
        result = _constant_value(node.base) ** _constant_value(node.exponent)
        if isinstance(result, complex):
            raise ValueError("a negative number to a fractional power is not real")
        return result
    if not isinstance(node, Call):  # pragma: no cover - the grammar has no other node
        raise TypeError(f"unknown syntax node {node!r}")
    return _MATH_FUNCTIONS[node.func](*(_constant_value(arg) for arg in node.args))


def check_constants(node: Expr, text: str) -> bool:
    """Whether ``node`` is constant; every maximal constant part must be real and finite.

    One bottom-up pass: ``1/0``, ``log(-1)`` or ``10**400`` anywhere is an error.
    """
    if isinstance(node, Num):
        return True
    if isinstance(node, Name):
        return False
    flags = [check_constants(child, text) for child in _children(node)]
    if all(flags):
        _checked_value(node, text)
        return True
    if isinstance(node, Product):  # x / (1 - 1): a constant divisor that is zero
        for factor, divide, constant in zip(node.factors, node.divide, flags, strict=True):
            if divide and constant and _constant_value(factor) == 0:
                raise FormulaError("divides by a constant that is zero", text=text)
    return False


def _checked_value(node: Expr, text: str) -> float:
    try:
        value = _constant_value(node)
    except ZeroDivisionError:
        raise FormulaError("constant part divides by zero", text=text) from None
    except OverflowError:
        raise FormulaError("constant part is too large for a float", text=text) from None
    except ValueError:
        message = "constant part has no real value (log, sqrt or power of a negative number)"
        raise FormulaError(message, text=text) from None
    if not math.isfinite(value):
        raise FormulaError("constant part is too large for a float", text=text)
    return value


# --- sympy ------------------------------------------------------------------------

_EXACT_POWER_LIMIT = 64  # larger exact powers of constants would build huge integers


def to_sympy(node: Expr, symbols: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    if isinstance(node, Num):
        return sympy.Rational(node.value.numerator, node.value.denominator)
    if isinstance(node, Name):
        return symbols[node.name]
    if isinstance(node, Neg):
        return -to_sympy(node.operand, symbols)
    if isinstance(node, Sum):
        terms = [to_sympy(t, symbols) for t in node.terms]
        return sympy.Add(*(t if s > 0 else -t for t, s in zip(terms, node.signs, strict=True)))
    if isinstance(node, Product):
        factors = [to_sympy(f, symbols) for f in node.factors]
        pairs = zip(factors, node.divide, strict=True)
        return sympy.Mul(*(sympy.Pow(f, -1) if d else f for f, d in pairs))
    if isinstance(node, Power):
        base = to_sympy(node.base, symbols)
        exponent = to_sympy(node.exponent, symbols)
        if exponent.is_Number and base.is_Number and not _small_exponent(exponent):
            exponent = sympy.Float(exponent)  # keep huge exact powers from running away
        return sympy.Pow(base, exponent)
    return _SYMPY_FUNCTIONS[node.func](*(to_sympy(a, symbols) for a in node.args))


def _small_exponent(exponent: sympy.Expr) -> bool:
    return bool(exponent.is_Rational and abs(exponent) <= _EXACT_POWER_LIMIT)


# --- numpy source -----------------------------------------------------------------


def to_numpy(node: Expr, variables: Mapping[str, str]) -> str:
    return _emit(node, variables)[0]


def _emit(node: Expr, variables: Mapping[str, str]) -> tuple[str, bool]:
    """``(source, is_constant)`` of ``node``; constant parts are folded to one literal."""
    if isinstance(node, Num):
        return repr(float(node.value)), True
    if isinstance(node, Name):
        return variables[node.name], False
    parts = [_emit(child, variables) for child in _children(node)]
    if all(constant for _, constant in parts):
        return repr(_constant_value(node)), True
    sources = [source for source, _ in parts]
    return _combine(node, sources), False


def _combine(node: Expr, sources: list[str]) -> str:
    if isinstance(node, Neg):
        return f"(-{sources[0]})"
    if isinstance(node, Sum):
        text = sources[0] if node.signs[0] > 0 else f"-{sources[0]}"
        for part, sign in zip(sources[1:], node.signs[1:], strict=True):
            text += f" {'+' if sign > 0 else '-'} {part}"
        return f"({text})"
    if isinstance(node, Product):
        text = sources[0] if not node.divide[0] else f"1.0 / {sources[0]}"
        for part, divide in zip(sources[1:], node.divide[1:], strict=True):
            text += f" {'/' if divide else '*'} {part}"
        return f"({text})"
    if isinstance(node, Power):
        exponent = _small_integer(sources[1])
        if exponent is not None:  # numpy's fast paths; a float to an integer power is real
            return f"({sources[0]} ** {exponent})"
        # never `**`: a negative Python float to a fractional power would be complex
        return f"_np.power({sources[0]}, {sources[1]})"
    if not isinstance(node, Call):  # pragma: no cover - the grammar has no other node
        raise TypeError(f"unknown syntax node {node!r}")
    if node.func in ("min", "max"):
        return _balanced_reduce("_np.minimum" if node.func == "min" else "_np.maximum", sources)
    return f"{_NUMPY_FUNCTIONS[node.func]}({sources[0]})"


def _small_integer(source: str) -> int | None:
    """The integer a folded constant's source stands for, if it is one of at most 64."""
    try:
        value = float(source)
    except ValueError:
        return None  # not a constant
    return int(value) if value.is_integer() and abs(value) <= 64 else None


def _balanced_reduce(ufunc: str, args: list[str]) -> str:
    if len(args) == 1:
        return args[0]
    middle = len(args) // 2
    left = _balanced_reduce(ufunc, args[:middle])
    right = _balanced_reduce(ufunc, args[middle:])
    return f"{ufunc}({left}, {right})"
