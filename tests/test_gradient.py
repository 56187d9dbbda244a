"""Reverse-pass gradients: hand-derived derivatives, finite differences, fitted coefficients."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import kpitree
from kpitree import Tree
from kpitree.gradient import compile_gradient, local_partials


def gradient_at(
    tree: Tree, target: str, wrt: tuple[str, ...], values: Mapping[str, float]
) -> tuple[float, np.ndarray]:
    """Target value and derivatives at one state, by the scalar path and the array path.

    Both paths must agree (they run differently generated kernels); the scalar result is
    returned.
    """
    gradient = compile_gradient(tree, target, wrt)
    scalars = [float(values[name]) for name in gradient.inputs]
    value, derivatives = gradient.run(scalars, n_rows=1)
    arrays = [np.full(3, v) for v in scalars]
    value3, derivatives3 = gradient.run(arrays, n_rows=3)
    np.testing.assert_allclose(value3, np.full(3, value[0]), rtol=1e-14)
    np.testing.assert_allclose(
        derivatives3, np.repeat(derivatives.reshape(-1, 1), 3, axis=1), rtol=1e-13, atol=0
    )
    return float(value[0]), derivatives.reshape(-1)


# --- local partials -----------------------------------------------------------------


def test_local_partials_are_the_symbolic_derivatives_of_each_formula() -> None:
    tree = Tree.from_formulas(
        """
        leads = visits * rate
        p = 1 / (1 + exp(-(a + b * x)))
        y = x * x + log(visits) / b
        """
    )
    visits, rate, a, b, x = sympy.symbols("visits rate a b x", real=True)
    assert dict(local_partials(tree, "leads")) == {"visits": rate, "rate": visits}
    logistic = 1 / (1 + sympy.exp(-(a + b * x)))
    expected_p = {"a": logistic * (1 - logistic), "b": x * logistic * (1 - logistic)}
    expected_p["x"] = b * logistic * (1 - logistic)
    partials = local_partials(tree, "p")
    assert set(partials) == {"a", "b", "x"}
    for name, expected in expected_p.items():
        assert sympy.simplify(partials[name] - expected) == 0, name
    partials_y = local_partials(tree, "y")
    assert sympy.simplify(partials_y["x"] - 2 * x) == 0  # x used twice: both uses count
    assert sympy.simplify(partials_y["visits"] - 1 / (visits * b)) == 0
    assert sympy.simplify(partials_y["b"] + sympy.log(visits) / b**2) == 0


def test_local_partials_of_a_lever_is_an_error() -> None:
    tree = Tree.from_formulas("leads = visits * rate")
    with pytest.raises(ValueError, match="'visits' has no formula"):
        local_partials(tree, "visits")


# --- hand-derived derivatives on small trees ------------------------------------------

Expected = Callable[[dict[str, float]], dict[str, float]]


def _logistic(z: float) -> float:
    return 1 / (1 + math.exp(-z))


ANALYTIC: dict[str, tuple[str, str, dict[str, float], Expected]] = {
    "product": (
        "y = a * b * c", "y", {"a": 2.0, "b": 3.0, "c": 5.0},
        lambda v: {"a": v["b"] * v["c"], "b": v["a"] * v["c"], "c": v["a"] * v["b"]},
    ),
    "sum and difference": (
        "y = a + b - 2 * c", "y", {"a": 2.0, "b": 3.0, "c": 5.0},
        lambda v: {"a": 1.0, "b": 1.0, "c": -2.0},
    ),
    "division": (
        "y = a / b", "y", {"a": 3.0, "b": 4.0},
        lambda v: {"a": 1 / v["b"], "b": -v["a"] / v["b"] ** 2},
    ),
    "constant powers": (
        "y = a ** 3 * b ** 0.5 + c ** -2", "y", {"a": 1.5, "b": 9.0, "c": 2.0},
        lambda v: {
            "a": 3 * v["a"] ** 2 * math.sqrt(v["b"]),
            "b": v["a"] ** 3 * 0.5 / math.sqrt(v["b"]),
            "c": -2 * v["c"] ** -3,
        },
    ),
    "variable exponent": (
        "y = a ** b", "y", {"a": 2.0, "b": 3.0},
        lambda v: {"a": v["b"] * v["a"] ** (v["b"] - 1), "b": v["a"] ** v["b"] * math.log(v["a"])},
    ),
    "log exp sqrt": (
        "y = log(a) * exp(b) + sqrt(c)", "y", {"a": 2.0, "b": 0.7, "c": 6.25},
        lambda v: {
            "a": math.exp(v["b"]) / v["a"],
            "b": math.log(v["a"]) * math.exp(v["b"]),
            "c": 0.5 / math.sqrt(v["c"]),
        },
    ),
    "logit link": (
        "p = 1 / (1 + exp(-(a + b * x)))", "p", {"a": -1.2, "b": 2.5, "x": 0.3},
        lambda v: {
            "a": (p := _logistic(v["a"] + v["b"] * v["x"])) * (1 - p),
            "b": v["x"] * p * (1 - p),
            "x": v["b"] * p * (1 - p),
        },
    ),
    "diamond: a node read by two parents": (
        "y = u * v\nu = a + b\nv = a * c", "y", {"a": 2.0, "b": 3.0, "c": 5.0},
        # y = (a + b) * a * c: dy/da = a*c + (a + b)*c
        lambda v: {
            "a": v["a"] * v["c"] + (v["a"] + v["b"]) * v["c"],
            "b": v["a"] * v["c"],
            "c": (v["a"] + v["b"]) * v["a"],
        },
    ),
    "a node used twice in one formula": (
        "y = x * x", "y", {"x": 3.0},
        lambda v: {"x": 2 * v["x"]},
    ),
    "a computed node used twice": (
        "z = d * d + d\nd = a - b", "z", {"a": 5.0, "b": 2.0},
        lambda v: {
            "a": 2 * (v["a"] - v["b"]) + 1,
            "b": -(2 * (v["a"] - v["b"]) + 1),
        },
    ),
    "shared node at two depths": (
        # revenue = c * arpa + c * fee * c, c = leads * p: c is read by revenue twice
        # directly and once through 'upsell'
        "revenue = customers * arpa + upsell\nupsell = customers * fee * customers\n"
        "customers = leads * p",
        "revenue", {"leads": 100.0, "p": 0.2, "arpa": 50.0, "fee": 0.5},
        lambda v: {
            "leads": (v["arpa"] + 2 * v["fee"] * v["leads"] * v["p"]) * v["p"],
            "p": (v["arpa"] + 2 * v["fee"] * v["leads"] * v["p"]) * v["leads"],
            "arpa": v["leads"] * v["p"],
            "fee": (v["leads"] * v["p"]) ** 2,
        },
    ),
    "logistic funnel": (
        "wins = sqls * win_rate\nwin_rate = 1 / (1 + exp(-(c0 + c1 * share)))", "wins",
        {"sqls": 80.0, "c0": -2.0, "c1": 4.0, "share": 0.3},
        lambda v: {
            "sqls": (p := _logistic(v["c0"] + v["c1"] * v["share"])),
            "c0": v["sqls"] * p * (1 - p),
            "c1": v["sqls"] * v["share"] * p * (1 - p),
            "share": v["sqls"] * v["c1"] * p * (1 - p),
        },
    ),
    "max min abs away from ties, added": (
        "y = max(a, b) + 2 * abs(c) + min(b, c)", "y", {"a": 2.0, "b": 1.0, "c": -3.0},
        lambda v: {"a": 1.0, "b": 0.0, "c": -2.0 + 1.0},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ANALYTIC))
def test_reverse_pass_equals_hand_derived_derivatives(case: str) -> None:
    spec, target, values, expected = ANALYTIC[case]
    tree = Tree.from_formulas(spec)
    wrt = tuple(values)
    value, derivatives = gradient_at(tree, target, wrt, values)
    assert value == pytest.approx(kpitree.evaluate(tree, values)[target].iloc[0], rel=1e-14)
    by_hand = expected(values)
    assert dict(zip(wrt, derivatives, strict=True)) == pytest.approx(by_hand, rel=1e-12, abs=1e-14)


def test_min_max_inside_a_product() -> None:
    """A local partial holding Min/Max (d(max(a, b) * c)/dc = Max(a, b)) is printed by
    sympy as functools.reduce(numpy.maximum, ...): the kernel must be able to run it."""
    tree = Tree.from_formulas("y = max(a, b) * c + min(a, b) ** 2")
    values = {"a": 2.0, "b": 1.0, "c": 3.0}
    _, derivatives = gradient_at(tree, "y", ("a", "b", "c"), values)
    # y = a * c + b ** 2 while a > b
    assert derivatives.tolist() == pytest.approx([3.0, 2.0, 2.0], rel=1e-14)


def test_a_lever_as_the_target_has_derivative_one_by_itself_and_zero_otherwise() -> None:
    tree = Tree.from_formulas("y = a * b")
    value, derivatives = gradient_at(tree, "a", ("a", "b"), {"a": 3.0, "b": 7.0})
    assert value == 3.0
    assert derivatives.tolist() == [1.0, 0.0]
    gradient = compile_gradient(tree, "a", ("b", "a"))
    value_rows, derivative_rows = gradient.run([np.array([1.0, 2.0, 3.0])], n_rows=3)
    assert value_rows.tolist() == [1.0, 2.0, 3.0]
    assert derivative_rows.tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


def test_inputs_the_target_does_not_depend_on_get_zero(funnel: Tree) -> None:
    tree = Tree.from_formulas(
        """
        revenue = new_revenue + recurring
        new_revenue = wins * deal_size
        recurring = customers * arpa
        """
    )
    values = {"wins": 4.0, "deal_size": 100.0, "customers": 50.0, "arpa": 10.0}
    _, derivatives = gradient_at(tree, "new_revenue", ("arpa", "deal_size", "customers"), values)
    assert derivatives.tolist() == [0.0, 4.0, 0.0]
    gradient = compile_gradient(funnel, "sqls", ("win_rate", "deal_size", "sns"))
    n = 4
    inputs = {name: np.linspace(0.1, 0.4, n) for name in gradient.inputs}
    _, rows = gradient.run([inputs[name] for name in gradient.inputs], n_rows=n)
    assert rows.shape == (3, n)
    assert rows[0].tolist() == [0.0] * n and rows[1].tolist() == [0.0] * n
    # sqls = (sns + search + ads) * request_rate * mql_rate * sql_rate
    expected = inputs["request_rate"] * inputs["mql_rate"] * inputs["sql_rate"]
    np.testing.assert_allclose(rows[2], expected, rtol=1e-14)


def test_funnel_gradient_by_hand(funnel: Tree) -> None:
    values = {name: funnel.node(name).baseline for name in funnel.levers}
    wrt = funnel.levers
    value, derivatives = gradient_at(funnel, "revenue", wrt, values)
    assert value == pytest.approx(10_000_000)
    got = dict(zip(wrt, derivatives, strict=True))
    visits = values["sns"] + values["search"] + values["ads"]
    for channel in ("sns", "search", "ads"):  # every channel adds revenue per visit
        assert got[channel] == pytest.approx(value / visits, rel=1e-14)
    for rate in ("request_rate", "mql_rate", "sql_rate", "win_rate", "deal_size"):
        assert got[rate] == pytest.approx(value / values[rate], rel=1e-14)


# --- random trees against finite differences and an independent forward mode ----------


class Dual:
    """Forward-mode value with its gradient and a bound on the gradient's rounding scale."""

    def __init__(self, value: float, grad: dict[str, float], scale: dict[str, float]) -> None:
        self.value, self.grad, self.scale = value, grad, scale

    def combine(self, other: Dual, op: str) -> Dual:
        a, b = self.value, other.value
        keys = set(self.grad) | set(other.grad)
        ga = [self.grad.get(k, 0.0) for k in keys]
        gb = [other.grad.get(k, 0.0) for k in keys]
        sa = [self.scale.get(k, 0.0) for k in keys]
        sb = [other.scale.get(k, 0.0) for k in keys]
        if op == "+":
            value, grad = a + b, [x + y for x, y in zip(ga, gb, strict=True)]
            scale = [x + y for x, y in zip(sa, sb, strict=True)]
        elif op == "-":
            value, grad = a - b, [x - y for x, y in zip(ga, gb, strict=True)]
            scale = [x + y for x, y in zip(sa, sb, strict=True)]
        elif op == "*":
            value, grad = a * b, [x * b + a * y for x, y in zip(ga, gb, strict=True)]
            scale = [x * abs(b) + abs(a) * y for x, y in zip(sa, sb, strict=True)]
        else:
            value = a / b
            grad = [x / b - a * y / b**2 for x, y in zip(ga, gb, strict=True)]
            scale = [x / abs(b) + abs(a) * y / b**2 for x, y in zip(sa, sb, strict=True)]
        return Dual(value, dict(zip(keys, grad, strict=True)), dict(zip(keys, scale, strict=True)))


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[dict[str, tuple[str, str, str]], dict[str, float]]:
    """Nodes n0..nk, each ``a op b`` over earlier nodes or levers x0..xm (shared freely)."""
    n_levers = draw(st.integers(1, 4))
    names = [f"x{i}" for i in range(n_levers)]
    formulas = {}
    for k in range(draw(st.integers(1, 6))):
        left = draw(st.sampled_from(names))
        right = draw(st.sampled_from(names))
        formulas[f"n{k}"] = (left, draw(st.sampled_from("+-*/")), right)
        names.append(f"n{k}")
    values = {f"x{i}": draw(st.floats(0.5, 4.0)) for i in range(n_levers)}
    return formulas, values


@settings(max_examples=40, deadline=None)
@given(random_dags())
def test_random_trees_match_finite_differences_and_forward_mode(
    case: tuple[dict[str, tuple[str, str, str]], dict[str, float]],
) -> None:
    formulas, values = case
    duals = {x: Dual(v, {x: 1.0}, {x: 1.0}) for x, v in values.items()}
    for name, (left, op, right) in formulas.items():
        a, b = duals[left], duals[right]
        # well-conditioned only: no cancellation, no blow-up, no tiny denominators
        assume(op != "-" or abs(a.value - b.value) >= 0.1 * (abs(a.value) + abs(b.value)))
        duals[name] = a.combine(b, op)
        assume(1e-4 <= abs(duals[name].value) <= 1e4)
    target = list(formulas)[-1]
    tree = Tree.from_formulas({name: f"{a} {op} {b}" for name, (a, op, b) in formulas.items()})
    levers = tuple(values)  # some may not reach the target, or not be nodes at all
    wrt = tuple(x for x in levers if x in tree)
    value, derivatives = gradient_at(tree, target, wrt, values)
    reference = duals[target]
    assert value == pytest.approx(reference.value, rel=1e-12)

    # central differences of kpitree.evaluate, every perturbed state in one call
    steps = {x: 1e-6 * values[x] for x in wrt}
    rows = []
    for x in wrt:
        rows += [values | {x: values[x] + steps[x]}, values | {x: values[x] - steps[x]}]
    moved = kpitree.evaluate(tree, pd.DataFrame(rows), nodes=[target])[target].to_numpy()
    for i, x in enumerate(wrt):
        exact = reference.grad.get(x, 0.0)
        scale = reference.scale.get(x, 0.0)
        if x not in reference.grad:
            assert derivatives[i] == 0.0, x  # does not reach the target
            assert moved[2 * i] == moved[2 * i + 1] == value
            continue
        assert abs(derivatives[i] - exact) <= 1e-9 * scale + 1e-300, (x, derivatives[i], exact)
        fd = (moved[2 * i] - moved[2 * i + 1]) / (2 * steps[x])
        tolerance = 1e-5 * (scale + abs(value) / values[x])
        assert abs(derivatives[i] - fd) <= tolerance, (x, derivatives[i], fd)


def test_a_reader_with_a_zero_partial_does_not_hide_other_paths() -> None:
    """u reaches y only through z = u / u (a zero partial): x's direct path still counts."""
    tree = Tree.from_formulas({"y": "x + z", "z": "u / u", "u": "x * 2"})
    value, derivatives = gradient_at(tree, "y", ("x",), {"x": 3.0})
    assert value == 4.0  # y = x + 1
    assert derivatives.tolist() == [1.0]


# --- rows -------------------------------------------------------------------------------


def test_vectorised_rows_equal_row_by_row_across_blocks(funnel: Tree) -> None:
    tree = Tree.from_formulas(
        """
        revenue = wins * deal_size + wins * wins
        wins = sqls * win_rate
        win_rate = 1 / (1 + exp(-(c0 + c1 * share)))
        sqls = sqrt(calls) * connect
        """
    )
    rng = np.random.default_rng(11)
    n = 11
    columns = {
        "deal_size": rng.uniform(50, 150, n),
        "c0": -2.0,  # a scalar broadcast over every row
        "c1": rng.normal(4, 1, n),
        "share": rng.uniform(0.1, 0.6, n),
        "calls": rng.uniform(100, 400, n),
        "connect": rng.uniform(0.2, 0.5, n),
    }
    gradient = compile_gradient(tree, "revenue", tuple(columns))
    vector = [columns[name] for name in gradient.inputs]
    for block_rows in (3, 4096):
        value, derivatives = gradient.run(vector, n_rows=n, block_rows=block_rows)
        for row in range(n):
            one = [float(np.broadcast_to(v, n)[row]) for v in vector]
            value_row, derivatives_row = gradient.run(one, n_rows=1)
            assert value[row] == pytest.approx(value_row[0], rel=1e-14)
            np.testing.assert_allclose(derivatives[:, row], derivatives_row[:, 0], rtol=1e-13)
    expected = kpitree.evaluate(tree, columns, nodes=["revenue"])["revenue"].to_numpy()
    np.testing.assert_allclose(value, expected, rtol=1e-14)


# --- fitted trees: derivatives with respect to coefficients ----------------------------


@pytest.fixture(scope="module")
def fitted_b2b() -> tuple[kpitree.FittedTree, pd.Series]:
    history = kpitree.datasets.simulate_b2b()
    return kpitree.fit(kpitree.datasets.load_b2b(), history), history.iloc[-1]


def _state(tree: kpitree.FittedTree, at: pd.Series) -> dict[str, float]:
    """Every lever's value at ``at`` (a lever missing from it takes its baseline)."""
    return {
        name: float(at[name]) if name in at.index else float(tree.node(name).baseline)
        for name in tree.levers
    }


def test_derivatives_wrt_coefficients_equal_finite_differences(
    fitted_b2b: tuple[kpitree.FittedTree, pd.Series],
) -> None:
    tree, at = fitted_b2b
    state = _state(tree, at)
    parameters = dict(tree.parameters)
    wrt = tuple(parameters)
    value, derivatives = gradient_at(tree, "revenue", wrt, state | parameters)
    rows = []
    steps = {name: 1e-6 * max(abs(theta), 1.0) for name, theta in parameters.items()}
    for name in wrt:
        rows += [
            state | parameters | {name: parameters[name] + steps[name]},
            state | parameters | {name: parameters[name] - steps[name]},
        ]
    moved = kpitree.evaluate(tree, pd.DataFrame(rows), nodes=["revenue"])["revenue"].to_numpy()
    fd = (moved[0::2] - moved[1::2]) / (2 * np.array([steps[name] for name in wrt]))
    assert value == pytest.approx(kpitree.evaluate(tree, state)["revenue"].iloc[0], rel=1e-13)
    np.testing.assert_allclose(derivatives, fd, rtol=1e-5)
    assert np.all(np.abs(derivatives) > 0)  # every coefficient moves revenue


def test_fitted_logit_link_derivatives_by_hand(
    fitted_b2b: tuple[kpitree.FittedTree, pd.Series],
) -> None:
    tree, at = fitted_b2b
    state = _state(tree, at)
    theta = dict(tree.parameters)
    share, demo = state["share_3plus_proposals"], state["demo_rate"]
    z = (
        theta["win_rate__const"]
        + theta["win_rate__share_3plus_proposals"] * share
        + theta["win_rate__demo_rate"] * demo
    )
    p = _logistic(z)
    wrt = (
        "win_rate__const", "win_rate__share_3plus_proposals", "win_rate__demo_rate",
        "share_3plus_proposals", "demo_rate", "mql_rate__const", "sns_visits",
    )  # fmt: skip
    value, derivatives = gradient_at(tree, "win_rate", wrt, state | theta)
    assert value == pytest.approx(p, rel=1e-14)
    slope = p * (1 - p)
    expected = [
        slope, share * slope, demo * slope,
        theta["win_rate__share_3plus_proposals"] * slope, theta["win_rate__demo_rate"] * slope,
        0.0, 0.0,
    ]  # fmt: skip
    np.testing.assert_allclose(derivatives, expected, rtol=1e-13, atol=0)


def test_compiled_gradient_is_cached_per_target_and_wrt(funnel: Tree) -> None:
    gradient = compile_gradient(funnel, "revenue", ("win_rate",))
    assert compile_gradient(funnel, "revenue", ["win_rate"]) is gradient
    assert compile_gradient(funnel, "revenue", ("sql_rate",)) is not gradient
    assert gradient.wrt == ("win_rate",) and gradient.target == "revenue"
    assert "win_rate" not in gradient.source and "revenue" not in gradient.source
