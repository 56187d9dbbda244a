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
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import sympy

from .errors import FormulaError
from .syntax import (
    Call,
    Expr,
    Name,
    Neg,
    Num,
    Power,
    Product,
    Sum,
    check_constants,
    to_numpy,
    to_sympy,
)

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
        expr = to_sympy(self.root, table)
        if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise FormulaError("formula simplifies to a division by zero", text=self.text)
        return expr

    def to_numpy(self, variables: Mapping[str, str]) -> str:
        """Python source computing the formula with numpy, names replaced by ``variables``.

        The source contains only the given variable names, float literals,
        operators and ``_np.<ufunc>`` calls: never the formula's own text.
        """
        return to_numpy(self.root, variables)

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
        check_constants(root, text)  # without a number no part of a formula is constant
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
