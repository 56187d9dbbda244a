"""Safe formula parser: formula text -> a small syntax tree -> sympy or numpy source.

Formula text comes from model files written by clients, so it is untrusted. It is
read by a whitelist tokenizer and a recursive-descent parser; no text ever reaches
``eval``, ``exec``, ``sympify`` or ``parse_expr``. The grammar::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary)*
    unary   := ('-' | '+') unary | power
    power   := atom ('**' unary)?
    atom    := NUMBER | NAME | FUNC '(' expr (',' expr)* ')' | '(' expr ')'

with ``FUNC`` one of ``log exp sqrt abs min max``. Names are identifiers, Unicode
included; ``E``, ``I``, ``N``, ``lambda`` are names like any other. Text is limited
in length and nesting, constant parts are checked (``1/0``, ``log(-1)``), and every
problem is a :class:`~kpitree.errors.FormulaError` with its position.

>>> f = parse_formula("leads * (1 - lambda) / 2")
>>> f.names
('leads', 'lambda')
>>> f.to_sympy()
leads*(1 - lambda)/2
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import sympy

from .errors import FormulaError

__all__ = ["FUNCTIONS", "MAX_DEPTH", "MAX_LENGTH", "Formula", "parse_formula"]

MAX_LENGTH = 10_000
MAX_DEPTH = 50

#: function name -> (minimum, maximum) number of arguments
FUNCTIONS: dict[str, tuple[int, int]] = {
    "log": (1, 1),
    "exp": (1, 1),
    "sqrt": (1, 1),
    "abs": (1, 1),
    "min": (2, 64),
    "max": (2, 64),
}

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

_DIGITS = r"\d(?:_?\d)*"
_TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
  | (?P<number>(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?\d+)?)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*|[-+*/(),])
  | (?P<bad>.)
    """,
    re.VERBOSE | re.DOTALL,
)


# --- syntax tree ------------------------------------------------------------------


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


# --- the public value -------------------------------------------------------------


@dataclass(frozen=True)
class Formula:
    """A parsed formula: its text, syntax tree and the names it uses.

    Build it with :func:`parse_formula`. ``names`` lists each name once, in order of
    first appearance.
    """

    text: str
    root: Expr
    names: tuple[str, ...]

    def to_sympy(self, symbols: Mapping[str, sympy.Symbol] | None = None) -> sympy.Expr:
        """The formula as a sympy expression, built with explicit constructors.

        ``symbols`` maps names to the symbols to use (plain ``Symbol(name)`` when
        omitted), so ``E`` stays a symbol and never becomes Euler's number.
        """
        table = dict(symbols or {})
        for name in self.names:
            table.setdefault(name, sympy.Symbol(name))
        expr = _to_sympy(self.root, table)
        if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise FormulaError("formula simplifies to a division by zero", text=self.text)
        return expr

    def to_numpy(self, variables: Mapping[str, str]) -> str:
        """Python source computing the formula with numpy, names replaced by ``variables``.

        The source contains only the given variable names, float literals,
        operators and ``_np.<ufunc>`` calls: never the formula's own text.
        """
        return _to_numpy(self.root, variables)

    def __str__(self) -> str:
        return self.text


def parse_formula(text: str) -> Formula:
    """Parse formula text into a :class:`Formula`, or raise ``FormulaError``.

    >>> parse_formula("sns + search + ads").names
    ('sns', 'search', 'ads')
    >>> parse_formula("2 ^ x")
    Traceback (most recent call last):
    ...
    kpitree.errors.FormulaError: '^' is not an operator; use ** for powers (at character 2)
        2 ^ x
          ^
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula is {len(text)} characters long; the limit is {MAX_LENGTH}")
    parser = _Parser(text)
    root = parser.parse()
    if any(token.kind == "number" for token in parser.tokens):
        _check_constants(root, text)  # without a number no part of a formula is constant
    return Formula(text=text.strip(), root=root, names=tuple(parser.names))


# --- tokenizer and parser ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "name", "op" or "end"
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(text):
        kind, value, position = match.lastgroup, match.group(), match.start()
        if kind == "bad" or (kind == "name" and not value.isidentifier()):
            raise FormulaError(_unexpected(value[0]), text=text, position=position)
        if kind != "space":
            tokens.append(_Token(kind, value, position))  # type: ignore[arg-type]
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _unexpected(char: str) -> str:
    if char == "^":
        return "'^' is not an operator; use ** for powers"
    if char in "'\"":
        return "text strings are not allowed in formulas"
    if char in "[]{}.:;=<>!&|%@~`$\\":
        return f"unexpected character {char!r}; formulas use + - * / ** ( ) and functions"
    return f"unexpected character {char!r}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0
        self.names: dict[str, None] = {}  # in order of first use

    # helpers
    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, message: str, token: _Token | None = None) -> FormulaError:
        position = (token or self.token).position
        return FormulaError(message, text=self.text, position=position)

    def expect(self, op: str) -> None:
        if self.token.text != op or self.token.kind != "op":
            found = repr(self.token.text) if self.token.text else "the end of the formula"
            raise self.error(f"expected {op!r} but found {found}")
        self.advance()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"formula is nested more than {MAX_DEPTH} levels deep")

    # grammar
    def parse(self) -> Expr:
        if self.token.kind == "end":
            raise FormulaError("empty formula", text=self.text, position=0)
        root = self.expr()
        if self.token.kind != "end":
            raise self.error(self._stray(self.token))
        return root

    @staticmethod
    def _stray(token: _Token) -> str:
        if token.text == ")":
            return "unbalanced ')'"
        return f"missing operator before {token.text!r}"

    def expr(self) -> Expr:
        terms, signs = [self.term()], [1]
        while self.token.kind == "op" and self.token.text in "+-":
            signs.append(1 if self.advance().text == "+" else -1)
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else Sum(tuple(terms), tuple(signs))

    def term(self) -> Expr:
        factors, divide = [self.unary()], [False]
        while self.token.kind == "op" and self.token.text in ("*", "/"):
            divide.append(self.advance().text == "/")
            factors.append(self.unary())
        return factors[0] if len(factors) == 1 else Product(tuple(factors), tuple(divide))

    def unary(self) -> Expr:
        if self.token.kind == "op" and self.token.text in "+-":
            sign = self.advance().text
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return Neg(operand) if sign == "-" else operand
        return self.power()

    def power(self) -> Expr:
        base = self.atom()
        if self.token.kind == "op" and self.token.text == "**":
            self.advance()
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            return Power(base, exponent)
        return base

    def atom(self) -> Expr:
        token = self.token
        if token.kind == "number":
            self.advance()
            return Num(_number(token, self.text))
        if token.kind == "name":
            self.advance()
            if self.token.text == "(" and self.token.kind == "op":
                return self.call(token)
            if token.text in FUNCTIONS:
                raise self.error(
                    f"{token.text!r} is a function; call it as {token.text}(...)", token
                )
            self.names.setdefault(token.text, None)
            return Name(token.text)
        if token.kind == "op" and token.text == "(":
            self.advance()
            self.enter()
            inner = self.expr()
            self.depth -= 1
            self.expect(")")
            return inner
        if token.kind == "end":
            raise self.error("the formula ends where a value was expected")
        raise self.error(f"expected a number, a name or '(' but found {token.text!r}")

    def call(self, name: _Token) -> Expr:
        if name.text not in FUNCTIONS:
            allowed = ", ".join(FUNCTIONS)
            raise self.error(f"unknown function {name.text!r}; allowed: {allowed}", name)
        self.advance()  # "("
        self.enter()
        args = [self.expr()]
        while self.token.kind == "op" and self.token.text == ",":
            self.advance()
            args.append(self.expr())
        self.depth -= 1
        self.expect(")")
        low, high = FUNCTIONS[name.text]
        if not low <= len(args) <= high:
            wanted = "1 argument" if low == high == 1 else f"{low} to {high} arguments"
            raise self.error(f"{name.text}() takes {wanted}, got {len(args)}", name)
        return Call(name.text, tuple(args))


def _number(token: _Token, text: str) -> Fraction:
    literal = token.text.replace("_", "")
    exponent = literal.lower().partition("e")[2]
    if exponent and abs(int(exponent)) > 308:
        raise FormulaError("number is out of range", text=text, position=token.position)
    value = float(literal)
    if not math.isfinite(value):
        raise FormulaError("number is out of range", text=text, position=token.position)
    return Fraction(literal)


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


def _check_constants(node: Expr, text: str) -> bool:
    """Whether ``node`` is constant; every maximal constant part must be real and finite.

    One bottom-up pass: ``1/0``, ``log(-1)`` or ``10**400`` anywhere is an error.
    """
    if isinstance(node, Num):
        return True
    if isinstance(node, Name):
        return False
    flags = [_check_constants(child, text) for child in _children(node)]
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


def _to_sympy(node: Expr, symbols: Mapping[str, sympy.Symbol]) -> sympy.Expr:
    if isinstance(node, Num):
        return sympy.Rational(node.value.numerator, node.value.denominator)
    if isinstance(node, Name):
        return symbols[node.name]
    if isinstance(node, Neg):
        return -_to_sympy(node.operand, symbols)
    if isinstance(node, Sum):
        terms = [_to_sympy(t, symbols) for t in node.terms]
        return sympy.Add(*(t if s > 0 else -t for t, s in zip(terms, node.signs, strict=True)))
    if isinstance(node, Product):
        factors = [_to_sympy(f, symbols) for f in node.factors]
        pairs = zip(factors, node.divide, strict=True)
        return sympy.Mul(*(sympy.Pow(f, -1) if d else f for f, d in pairs))
    if isinstance(node, Power):
        base = _to_sympy(node.base, symbols)
        exponent = _to_sympy(node.exponent, symbols)
        if exponent.is_Number and base.is_Number and not _small_exponent(exponent):
            exponent = sympy.Float(exponent)  # keep huge exact powers from running away
        return sympy.Pow(base, exponent)
    return _SYMPY_FUNCTIONS[node.func](*(_to_sympy(a, symbols) for a in node.args))


def _small_exponent(exponent: sympy.Expr) -> bool:
    return bool(exponent.is_Rational and abs(exponent) <= _EXACT_POWER_LIMIT)


# --- numpy source -----------------------------------------------------------------


def _to_numpy(node: Expr, variables: Mapping[str, str]) -> str:
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
