"""The whitelist formula parser: known parses, every rejection, and properties."""

from __future__ import annotations

import ast
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpitree.errors import FormulaError
from kpitree.formula import MAX_DEPTH, MAX_LENGTH, parse_formula

x, y, z = sympy.symbols("x y z")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x + y * z", x + y * z),
        ("(x + y) * z", (x + y) * z),
        ("x - y - z", x - y - z),
        ("x / y / z", x / y / z),
        ("x ** y ** z", x ** (y**z)),
        ("-x ** 2", -(x**2)),
        ("2 ** -1 * x", x / 2),
        ("x * 0.25", x / 4),
        ("1_000 * x", 1000 * x),
        ("1.5e3 * x", 1500 * x),
        (".5 * x", x / 2),
        ("+x", x),
        ("--x", x),
        ("log(x) + exp(y) + sqrt(z)", sympy.log(x) + sympy.exp(y) + sympy.sqrt(z)),
        ("abs(x - y)", sympy.Abs(x - y)),
        ("min(x, y, z) + max(x, 1)", sympy.Min(x, y, z) + sympy.Max(x, 1)),
        ("  x\t+\ty  ", x + y),
    ],
)
def test_parses_to_the_expected_sympy_expression(text: str, expected: sympy.Expr) -> None:
    assert parse_formula(text).to_sympy() == expected


@pytest.mark.parametrize("name", ["E", "I", "N", "S", "Q", "O", "lambda", "yield", "pi", "oo"])
def test_names_sympy_treats_specially_are_plain_symbols(name: str) -> None:
    expr = parse_formula(f"{name} * 2").to_sympy()
    assert expr == 2 * sympy.Symbol(name)
    assert expr.free_symbols == {sympy.Symbol(name)}


def test_unicode_names_work() -> None:
    formula = parse_formula("受注数 * 平均単価")
    assert formula.names == ("受注数", "平均単価")
    assert formula.to_sympy() == sympy.Symbol("受注数") * sympy.Symbol("平均単価")


def test_names_are_listed_once_in_order_of_first_use() -> None:
    assert parse_formula("b * a + b / c").names == ("b", "a", "c")


def test_numpy_source_uses_only_the_given_variables() -> None:
    formula = parse_formula("leads * (1 - churn) / max(a, 2) + log(b)")
    source = formula.to_numpy({"leads": "v0", "churn": "v1", "a": "v2", "b": "v3"})
    assert "leads" not in source and "churn" not in source
    assert source == "((v0 * (1.0 - v1) / _np.maximum(v2, 2.0)) + _np.log(v3))"


def test_numpy_source_powers() -> None:
    variables = {"x": "v0", "y": "v1"}
    assert parse_formula("x ** 2").to_numpy(variables) == "(v0 ** 2)"
    assert parse_formula("x ** -3").to_numpy(variables) == "(v0 ** -3)"
    assert parse_formula("x ** 0.5").to_numpy(variables) == "_np.power(v0, 0.5)"
    assert parse_formula("x ** y").to_numpy(variables) == "_np.power(v0, v1)"
    # a negative Python float to a fractional power is complex; numpy's power is nan
    with np.errstate(invalid="ignore"):
        value = eval(parse_formula("x ** 0.5").to_numpy(variables), {"_np": np, "v0": -4.0})
    assert math.isnan(value)


def test_numpy_source_folds_constants() -> None:
    assert parse_formula("x * (2 ** 10 + 1 / 4)").to_numpy({"x": "v0"}) == "(v0 * 1024.25)"


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("", 0, "empty formula"),
        ("   ", 0, "empty formula"),
        ("x ^ 2", 2, "use ** for powers"),
        ("(x + y", 6, "expected ')'"),
        ("x + y)", 5, "unbalanced ')'"),
        ("2x", 1, "missing operator"),
        ("x y", 2, "missing operator"),
        ("x +", 3, "ends where a value was expected"),
        ("* x", 0, "expected a number, a name or '('"),
        ("foo(x)", 0, "unknown function 'foo'"),
        ("log(x, y)", 0, "takes 1 argument"),
        ("min(x)", 0, "takes 2 to 64 arguments"),
        ("log + 1", 0, "is a function"),
        ("x.real", 1, "unexpected character '.'"),
        ("x[0]", 1, "unexpected character '['"),
        ("x if y else z", None, None),
        ("'text'", 0, "text strings are not allowed"),
        ("x = 1", 2, "unexpected character '='"),
        ("lambda: 1", 6, "unexpected character ':'"),
        ("1e999 * x", 0, "out of range"),
        ("x * ²", 4, "unexpected character '²'"),
    ],
)
def test_rejects_text_outside_the_grammar(text: str, position: int | None, fragment: str) -> None:
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    if position is not None:
        assert info.value.position == position
        assert fragment in info.value.reason
    assert info.value.text == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x + 1 / 0", "divides by zero"),
        ("x / (1 - 1)", "divides by a constant that is zero"),
        ("(2 + a) / ((-1) + 1)", "divides by a constant that is zero"),
        ("x * log(0)", "no real value"),
        ("x + sqrt(-1)", "no real value"),
        ("x * (-8) ** (1 / 3)", "no real value"),
        ("x * 10 ** 400", "too large"),
        ("x + exp(1000)", "too large"),
    ],
)
def test_rejects_constant_parts_without_a_finite_real_value(text: str, fragment: str) -> None:
    with pytest.raises(FormulaError, match=fragment):
        parse_formula(text)


def test_limits_length_and_nesting() -> None:
    with pytest.raises(FormulaError, match="characters long"):
        parse_formula("x + " * (MAX_LENGTH // 4) + "x")
    deep = "(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FormulaError, match="nested more than"):
        parse_formula(deep)
    assert parse_formula("(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH).names == ("x",)
    with pytest.raises(FormulaError, match="nested more than"):
        parse_formula("-" * (MAX_DEPTH + 1) + "x")


def test_a_long_flat_sum_is_not_deep() -> None:
    text = " + ".join(f"x{i}" for i in range(1200))
    formula = parse_formula(text)
    assert len(formula.names) == 1200
    assert formula.to_sympy() == sympy.Add(*sympy.symbols("x0:1200"))


def test_a_formula_that_simplifies_to_division_by_zero_has_no_sympy_form() -> None:
    formula = parse_formula("x / (y - y)")
    with pytest.raises(FormulaError, match="division by zero"):
        formula.to_sympy()


def test_huge_exact_powers_do_not_run_away() -> None:
    # an exact rational power would have millions of digits
    value = parse_formula("1.0000001 ** 1000000 * x").to_sympy().coeff(x)
    assert float(value) == pytest.approx(1.0000001**1000000)


def test_code_injection_is_rejected_and_has_no_effect(tmp_path: Path) -> None:
    target = tmp_path / "x"
    attacks = [
        f"__import__('os').system('touch {target}')",
        f'__import__("os").system("touch {target}")',
        "().__class__.__bases__[0].__subclasses__()",
        "exec('import os')",
        "eval('1')",
        "open('/etc/passwd')",
        "x; import os",
        "x\nimport os",
        "lambda: os",
    ]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for attack in attacks:
            with pytest.raises(FormulaError):
                parse_formula(attack)
    finally:
        os.chdir(cwd)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# --- properties ---------------------------------------------------------------------

NAMES = ["a", "b", "c", "E", "I", "lambda", "受注"]


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> tuple[str, object]:
    """A random expression as (text, builder) where builder maps symbols to sympy."""
    leaf = depth >= 4 or draw(st.booleans())
    if leaf:
        if draw(st.booleans()):
            name = draw(st.sampled_from(NAMES))
            return name, lambda s, n=name: s[n]
        number = draw(st.integers(min_value=1, max_value=99))
        return str(number), lambda s, n=number: sympy.Integer(n)
    kind = draw(st.sampled_from(["+", "-", "*", "/", "neg", "call", "pow"]))
    left_text, left = draw(expressions(depth + 1))
    if kind == "neg":
        return f"-({left_text})", lambda s: -left(s)
    if kind == "call":  # exp of names only, so that constant parts stay within floats
        func = draw(st.sampled_from(["exp", "abs"] if left_text in NAMES else ["abs"]))
        sym = {"exp": sympy.exp, "abs": sympy.Abs}[func]
        return f"{func}({left_text})", lambda s: sym(left(s))
    if kind == "pow":
        power = draw(st.integers(min_value=1, max_value=2))
        return f"({left_text}) ** {power}", lambda s: left(s) ** power
    right_text, right = draw(expressions(depth + 1))
    space = draw(st.sampled_from(["", " ", "  "]))
    text = f"({left_text}){space}{kind}{space}({right_text})"
    ops = {
        "+": lambda p, q: p + q,
        "-": lambda p, q: p - q,
        "*": lambda p, q: p * q,
        "/": lambda p, q: p / q,
    }
    return text, lambda s: ops[kind](left(s), right(s))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_random_expression_trees_parse_to_the_same_sympy_expression(case) -> None:
    text, build = case
    symbols = {name: sympy.Symbol(name) for name in NAMES}
    try:
        expected = build(symbols)
    except ZeroDivisionError:  # pragma: no cover - sympy returns zoo instead
        return
    if expected.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) or _divides_by_constant_zero(text):
        with pytest.raises(FormulaError):
            parse_formula(text).to_sympy(symbols)
        return
    assert parse_formula(text).to_sympy(symbols) == expected


def _divides_by_constant_zero(text: str) -> bool:
    """Independently of kpitree: does some division have a constant divisor equal to 0?

    The generated texts are Python expressions, so the test reads them with ``ast`` and
    computes constant parts exactly with fractions (sympy would absorb ``1/(1/0)`` to 0).
    """

    def value(node: ast.AST) -> Fraction | None:
        if isinstance(node, ast.Constant):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp):
            inner = value(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
                return None
            ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.Pow):
                return left**right
            return ops[type(node.op)]
        return None  # a name or a function call

    tree = ast.parse(text.replace("lambda", "lambda_"), mode="eval")  # a keyword in Python
    return any(
        isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and value(node.right) == 0
        for node in ast.walk(tree)
    )


@settings(max_examples=200, deadline=None)
@given(expressions(), st.lists(st.floats(0.5, 3.0), min_size=len(NAMES), max_size=len(NAMES)))
def test_numpy_source_agrees_with_sympy_numerically(case, point) -> None:
    text = case[0]
    try:
        formula = parse_formula(text)
    except FormulaError:
        return
    names = dict(zip(NAMES, point, strict=True))
    variables = {name: f"v{i}" for i, name in enumerate(NAMES)}
    scope = {"_np": np, **{f"v{i}": np.float64(v) for i, v in enumerate(point)}}
    with np.errstate(all="ignore"):
        numeric = eval(formula.to_numpy(variables), scope)  # test-only: our own generated code
    try:
        symbolic = formula.to_sympy()
    except FormulaError:  # simplifies to x/0, such as 1/(a - a): numerically not finite too
        assert not math.isfinite(numeric)
        return
    reference = symbolic.subs({sympy.Symbol(n): v for n, v in names.items()})
    reference = complex(reference.evalf())
    if not math.isfinite(numeric) or abs(reference) > 1e12:
        return
    assert numeric == pytest.approx(reference.real, rel=1e-9, abs=1e-9)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([*"ab1.+-*/()^ ,'_e", "**", "log", "min", "E"]), max_size=30))
def test_random_text_gives_a_formula_or_a_formula_error(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        formula = parse_formula(text)
    except FormulaError as err:
        assert err.position is None or 0 <= err.position <= len(text)
        return
    assert isinstance(formula.to_sympy(), sympy.Expr)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_unicode_text_never_raises_anything_else(text: str) -> None:
    try:
        formula = parse_formula(text)
    except FormulaError as err:
        assert err.position is None or 0 <= err.position <= len(text)
        return
    assert all(name.isidentifier() and name in text for name in formula.names)
