"""kpitree.attribute: additivity, symmetry, closed forms, residuals, roll-ups, rows.

Every expected value is computed here from :func:`kpitree.evaluate` or by hand:
successive differences for ``"sequential"``, the LMDI-I formula ``L(y1, y0) ln(x1/x0)``
for products, observed minus predicted for the residual inputs. Shapley values are
checked against brute-force enumeration in ``test_shapley.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

import kpitree
from kpitree import Tree
from kpitree.errors import DataError, OptionError, UnknownNodeError

METHODS = ["shapley", "lmdi", "sequential"]


def evaluated(tree: Tree, state: object, target: str) -> np.ndarray:
    return kpitree.evaluate(tree, state, nodes=[target])[target].to_numpy()  # type: ignore[arg-type]


def scale_of(tree: Tree, target: str, *states: object) -> np.ndarray:
    """Per row, the largest magnitude among the target and everything it is computed from."""
    names = [target, *tree.upstream(target)]
    found = [kpitree.evaluate(tree, s, nodes=names).abs().max(axis=1).to_numpy() for s in states]  # type: ignore[arg-type]
    return np.maximum.reduce(found) + 1e-300


def log_mean(a: float, b: float) -> float:
    return a if a == b else (a - b) / (math.log(a) - math.log(b))


# --- random trees -------------------------------------------------------------------------

# (template, operand kinds, result sign): "p" positive operand, "a" any, "l" a lever;
# the result is positive when every operand is ("all"), "always" or "never"
TEMPLATES = [
    ("{0} + {1}", "aa", "all"),
    ("{0} - {1}", "ll", "never"),
    ("{0} * {1}", "aa", "all"),
    ("{0} * {1} * {2}", "aaa", "all"),
    ("{0} / {1}", "ap", "all"),
    ("{0} * {1} / {2}", "aap", "all"),
    ("{0} + 2 * {1} - {2} / 2", "aal", "never"),
    ("({0} + {1}) * ({0} + {2})", "aaa", "all"),
    ("{0} ** 2 + {1}", "pa", "all"),
    ("log(1 + {0})", "p", "always"),
    ("sqrt({0}) * {1}", "pa", "all"),
    ("exp({0} / (1 + {0}))", "p", "always"),
    ("min({0}, {1})", "aa", "all"),
    ("max({0}, {1})", "aa", "all"),
]


@dataclass
class Case:
    formulas: dict[str, str]
    levers: list[str]
    before: pd.DataFrame
    after: pd.DataFrame
    target: str = "y"

    @property
    def tree(self) -> Tree:
        return Tree.from_formulas(self.formulas)

    def changed(self) -> set[str]:
        """Levers the target reads whose value differs in some row."""
        upstream = set(self.tree.upstream(self.target))
        return {x for x in self.levers if x in upstream and (self.before[x] != self.after[x]).any()}


@st.composite
def formulas_over(draw: st.DrawFn, levers: Sequence[str], max_nodes: int) -> dict[str, str]:
    """Nodes n0..nk over the levers and earlier nodes (a DAG), and ``y`` joining every
    node no other node reads by + or *."""
    positive, signed = list(levers), []
    formulas: dict[str, str] = {}
    for k in range(draw(st.integers(1, max_nodes))):
        text, kinds, result = draw(st.sampled_from(TEMPLATES))
        pools = {"p": positive, "a": positive + signed, "l": list(levers)}
        operands = []
        for kind in kinds:
            nodes = [n for n in reversed(pools[kind]) if n not in levers]
            from_nodes = nodes and draw(st.integers(0, 2)) == 0
            pool = nodes if from_nodes else [x for x in pools[kind] if x in levers]
            operands.append(draw(st.sampled_from(pool)))
        formulas[f"n{k}"] = text.format(*operands)
        is_positive = result == "always" or (
            result == "all" and all(o in positive for o in operands)
        )
        (positive if is_positive else signed).append(f"n{k}")
    unread = [n for n in formulas if not any(re.search(rf"\b{n}\b", f) for f in formulas.values())]
    formulas["y"] = unread[0]
    for name in unread[1:]:
        formulas["y"] += draw(st.sampled_from([" + ", " * "])) + name
    return formulas


@st.composite
def lever_states(
    draw: st.DrawFn, levers: Sequence[str], rows: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Positive levers changing by factors in [0.5, 2]; a few unchanged everywhere, a
    few more in some rows."""

    def some() -> set[str]:
        return set(draw(st.lists(st.sampled_from(list(levers)), max_size=2, unique=True)))

    unchanged = some()
    in_row = [some() if rows > 1 else set() for _ in range(rows)]
    before, after = {}, {}
    for name in levers:
        first = np.array([draw(st.floats(0.5, 2.0)) for _ in range(rows)])
        factor = [
            1.0 if name in unchanged or name in in_row[k] else draw(st.floats(0.5, 2.0))
            for k in range(rows)
        ]
        before[name], after[name] = first, first * np.array(factor)
    return pd.DataFrame(before), pd.DataFrame(after)


@st.composite
def random_cases(
    draw: st.DrawFn, max_levers: int = 6, max_nodes: int = 6, max_rows: int = 4
) -> Case:
    levers = [f"x{i}" for i in range(draw(st.integers(2, max_levers)))]
    formulas = draw(formulas_over(levers, max_nodes))
    before, after = draw(lever_states(levers, draw(st.integers(1, max_rows))))
    note(f"formulas={formulas}")
    return Case(formulas, levers, before, after)


# --- additivity ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(random_cases())
def test_every_method_is_exactly_additive_row_by_row(case: Case) -> None:
    tree = case.tree
    changed = case.changed()  # may be empty: nothing changes, nothing to attribute
    observed = evaluated(tree, case.after, "y") - evaluated(tree, case.before, "y")
    scale = scale_of(tree, "y", case.before, case.after)
    for method in METHODS:
        result = kpitree.attribute(tree, case.before, case.after, target="y", method=method)
        assert set(result.players) == changed
        assert result.contributions.shape == (len(changed), len(case.before))
        assert np.all(np.abs(result.total - observed) <= 1e-12 * scale)
        gap = np.abs(result.contributions.sum(axis=0) - observed)
        assert np.all(gap <= 1e-9 * scale), (method, gap / scale)
        # a lever that does not change in a row contributes nothing in that row
        for j, name in enumerate(result.players):
            still = (case.before[name] == case.after[name]).to_numpy()
            assert np.all(np.abs(result.contributions[j, still]) <= 1e-12 * scale[still])


@settings(max_examples=40, deadline=None)
@given(random_cases(max_levers=4, max_nodes=4, max_rows=2), st.data())
def test_sequential_is_the_successive_differences_along_the_order(
    case: Case, data: st.DataObject
) -> None:
    tree = case.tree
    changed = sorted(case.changed())
    assume(changed)
    order = data.draw(st.permutations(changed))
    result = kpitree.attribute(
        tree, case.before, case.after, target="y", method="sequential", order=order
    )
    state = case.before.copy()
    previous = evaluated(tree, state, "y")
    expected = {}
    for name in order:
        state[name] = case.after[name]
        current = evaluated(tree, state, "y")
        expected[name] = current - previous
        previous = current
    scale = scale_of(tree, "y", case.before, case.after)
    for j, name in enumerate(result.players):
        assert np.all(np.abs(result.contributions[j] - expected[name]) <= 1e-13 * scale), name


# --- symmetry and order independence ------------------------------------------------------


def rename(text: str, mapping: Mapping[str, str]) -> str:
    return re.sub(r"\b\w+\b", lambda m: mapping.get(m.group(0), m.group(0)), text)


@settings(max_examples=40, deadline=None)
@given(random_cases(max_levers=4, max_nodes=4, max_rows=2))
def test_symmetric_inputs_get_equal_shapley_and_lmdi_contributions(case: Case) -> None:
    """y = f(x0, x1, ...) + f(x1, x0, ...) with x0 and x1 moving alike: the two are
    interchangeable, so they must get the same contribution."""
    base = dict(case.formulas)
    top = base.pop("y")
    nodes = list(base)
    swap = {"x0": "x1", "x1": "x0"}
    formulas = {}
    for prefix, levers in (("p_", {}), ("q_", swap)):
        mapping = {n: prefix + n for n in nodes} | levers
        formulas |= {prefix + n: rename(f, mapping) for n, f in base.items()}
        formulas[prefix + "top"] = rename(top, mapping)
    formulas["y"] = "p_top + q_top"
    before, after = case.before.copy(), case.after.copy()
    before["x1"], after["x1"] = before["x0"], after["x0"]
    assume((before["x0"] != after["x0"]).any())
    tree = Tree.from_formulas(formulas)
    assume("x0" in tree)
    scale = scale_of(tree, "y", before, after)
    for method in ("shapley", "lmdi"):
        result = kpitree.attribute(tree, before, after, method=method)
        wide = result.wide()
        gap = np.abs(wide["x0"].to_numpy() - wide["x1"].to_numpy())
        assert np.all(gap <= 1e-10 * scale), method


@pytest.mark.parametrize("method", ["shapley", "lmdi"])
def test_equal_relative_changes_of_a_product_split_equally(method: str) -> None:
    tree = Tree.from_formulas("y = a * b * c")
    result = kpitree.attribute(
        tree, {"a": 2.0, "b": 10.0, "c": 1.0}, {"a": 3.0, "b": 15.0, "c": 1.0}, method=method
    )
    assert set(result.players) == {"a", "b"}
    contribution = dict(zip(result.players, result.contributions[:, 0], strict=True))
    assert contribution["a"] == pytest.approx(contribution["b"], rel=1e-14)
    assert contribution["a"] == pytest.approx((45 - 20) / 2, rel=1e-14)


@settings(max_examples=40, deadline=None)
@given(random_cases(max_rows=3), st.randoms(use_true_random=False))
def test_shapley_and_lmdi_ignore_declaration_and_column_order(case: Case, rng: object) -> None:
    tree = case.tree
    assume(case.changed())
    items = list(case.formulas.items())
    rng.shuffle(items)  # type: ignore[attr-defined]
    formulas = dict(items)
    # y = n1 + n3 * n4 read backwards (n4 * n3 + n1) is the same sum of products, but
    # its inputs are met in another order
    formulas["y"] = " ".join(reversed(formulas["y"].split(" ")))
    shuffled = Tree.from_formulas(formulas)
    columns = list(case.levers)
    rng.shuffle(columns)  # type: ignore[attr-defined]
    scale = scale_of(tree, "y", case.before, case.after)
    for method in ("shapley", "lmdi"):
        first = kpitree.attribute(tree, case.before, case.after, target="y", method=method)
        second = kpitree.attribute(
            shuffled, case.before[columns], case.after[columns], target="y", method=method
        )
        event(f"inputs reordered: {first.players != second.players}")
        assert set(first.players) == set(second.players)
        a, b = first.wide(), second.wide()[first.wide().columns]
        assert np.all(np.abs(a.to_numpy() - b.to_numpy()) <= 1e-12 * scale[:, None]), method


def test_sequential_depends_on_the_order_and_defaults_to_the_listed_inputs() -> None:
    tree = Tree.from_formulas("y = a * b + c")
    before, after = {"a": 2.0, "b": 10.0, "c": 1.0}, {"a": 3.0, "b": 15.0, "c": 4.0}

    def contributions(**options: object) -> dict[str, float]:
        result = kpitree.attribute(tree, before, after, method="sequential", **options)  # type: ignore[arg-type]
        return dict(zip(result.players, result.contributions[:, 0], strict=True))

    # a first: (3 - 2) * 10; then b at a = 3: 3 * (15 - 10)
    assert contributions(order=["a", "b", "c"]) == {"a": 10.0, "b": 15.0, "c": 3.0}
    # b first: 2 * 5; then a at b = 15: 1 * 15
    assert contributions(order=["b", "a", "c"]) == {"a": 15.0, "b": 10.0, "c": 3.0}
    # a partial order puts its names first; the others follow in the default order
    assert contributions(order=["b"]) == contributions(order=["b", "a", "c"])
    # names that do not change may be listed (they contribute nothing either way)
    tree_d = Tree.from_formulas("y = a * b + c * d")
    result = kpitree.attribute(
        tree_d, {**before, "d": 1.0}, {**after, "d": 1.0}, method="sequential", order=["d", "b"]
    )
    assert "d" not in result.players
    assert dict(zip(result.players, result.contributions[:, 0], strict=True)) == {
        "a": 15.0,
        "b": 10.0,
        "c": 3.0,
    }
    # the default order is the order of the result's inputs
    default = kpitree.attribute(tree, before, after, method="sequential")
    explicit = kpitree.attribute(tree, before, after, method="sequential", order=default.players)
    np.testing.assert_array_equal(default.contributions, explicit.contributions)


# --- LMDI: closed forms -------------------------------------------------------------------


def test_lmdi_on_a_product_with_a_divisor_is_the_log_mean_formula() -> None:
    tree = Tree.from_formulas("y = x1 * x2 * x3 / x4")
    before = {"x1": 2.0, "x2": 5.0, "x3": 0.3, "x4": 4.0}
    after = {"x1": 2.6, "x2": 4.0, "x3": 0.45, "x4": 2.5}
    y0 = 2.0 * 5.0 * 0.3 / 4.0
    y1 = 2.6 * 4.0 * 0.45 / 2.5
    weight = log_mean(y1, y0)
    expected = {k: weight * math.log(after[k] / before[k]) for k in ("x1", "x2", "x3")}
    expected["x4"] = -weight * math.log(after["x4"] / before["x4"])
    result = kpitree.attribute(tree, before, after, method="lmdi")
    got = dict(zip(result.players, result.contributions[:, 0], strict=True))
    assert got == pytest.approx(expected, rel=1e-13)
    assert sum(got.values()) == pytest.approx(y1 - y0, rel=1e-13)


def test_lmdi_on_a_sum_is_the_plain_differences() -> None:
    tree = Tree.from_formulas("y = a + b - c")
    result = kpitree.attribute(
        tree,
        pd.DataFrame({"a": [1.0, 5.0], "b": [2.0, 2.0], "c": [3.0, 1.0]}),
        pd.DataFrame({"a": [4.0, 5.0], "b": [1.5, 7.0], "c": [2.0, 3.0]}),
        method="lmdi",
    )
    assert result.wide().to_dict("list") == {"a": [3.0, 0.0], "b": [-0.5, 5.0], "c": [1.0, -2.0]}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(*[st.floats(0.5, 2.0) for _ in range(8)]),
        min_size=1,
        max_size=4,
    )
)
def test_lmdi_chained_through_the_funnel_is_the_flat_formula(
    funnel: Tree, factors: list[tuple[float, ...]]
) -> None:
    """Through a chain of products, LMDI-I at each node composes: each rate lever gets
    L(R1, R0) ln(x1 / x0) as if revenue were one product; the visit channels share
    visits' part in proportion to their own changes."""
    channels = ["sns", "search", "ads"]
    factors_of_revenue = ["request_rate", "mql_rate", "sql_rate", "win_rate", "deal_size"]
    levers = channels + factors_of_revenue
    base = {name: funnel.node(name).baseline for name in levers}
    before = pd.DataFrame([base] * len(factors))
    after = before * pd.DataFrame(factors, columns=levers)  # rates stay within (0, 1)
    r0, r1 = evaluated(funnel, before, "revenue"), evaluated(funnel, after, "revenue")
    result = kpitree.attribute(funnel, before, after, method="lmdi")
    v0, v1 = before[channels].sum(axis=1), after[channels].sum(axis=1)
    wide = result.wide().reindex(columns=levers, fill_value=0.0)  # unchanged: 0
    for row in range(len(factors)):
        weight = log_mean(r1[row], r0[row])
        for name in factors_of_revenue:
            expected = weight * math.log(after[name][row] / before[name][row])
            assert wide[name].iloc[row] == pytest.approx(expected, rel=1e-10, abs=1e-9)
        visits = weight * math.log(v1[row] / v0[row])
        for name in channels:
            if v1[row] == v0[row]:
                continue
            share = (after[name][row] - before[name][row]) / (v1[row] - v0[row])
            assert wide[name].iloc[row] == pytest.approx(visits * share, rel=1e-9, abs=1e-6)
        assert wide.iloc[row].sum() == pytest.approx(r1[row] - r0[row], rel=1e-10)


def test_lmdi_falls_back_to_the_local_shapley_split_where_a_value_is_not_positive() -> None:
    tree = Tree.from_formulas("y = a * b")
    before, after = {"a": -2.0, "b": 3.0}, {"a": -1.0, "b": 5.0}
    result = kpitree.attribute(tree, before, after, method="lmdi")
    got = dict(zip(result.players, result.contributions[:, 0], strict=True))
    # the two-player Shapley split: Δa (b0 + b1) / 2 and Δb (a0 + a1) / 2
    assert got == pytest.approx({"a": 1.0 * 8 / 2, "b": 2.0 * -3 / 2}, rel=1e-14)


def test_lmdi_keeps_offsetting_factors_when_the_product_does_not_change() -> None:
    tree = Tree.from_formulas("y = a * b")
    result = kpitree.attribute(tree, {"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 1.0}, method="lmdi")
    got = dict(zip(result.players, result.contributions[:, 0], strict=True))
    assert got == pytest.approx({"a": 2 * math.log(2), "b": -2 * math.log(2)}, rel=1e-14)


def test_lmdi_is_finite_when_a_product_moves_by_a_rounding_error() -> None:
    tree = Tree.from_formulas("y = a * b")
    with np.errstate(all="ignore"):
        result = kpitree.attribute(tree, {"a": 0.3, "b": 0.6}, {"a": 0.2, "b": 0.9}, method="lmdi")
    got = dict(zip(result.players, result.contributions[:, 0], strict=True))
    assert got == pytest.approx({"a": 0.18 * math.log(2 / 3), "b": 0.18 * math.log(1.5)}, rel=1e-9)
    assert result.contributions.sum() == pytest.approx(result.total[0], abs=1e-16)


# --- residuals: the mechanism changed -------------------------------------------------------


@pytest.fixture(scope="module")
def company() -> tuple[kpitree.FittedTree, pd.DataFrame]:
    history = kpitree.datasets.simulate_b2b()
    fitted = kpitree.fit(kpitree.datasets.load_b2b(), history)
    return fitted, kpitree.with_lags(fitted, history)


def predicted_links(tree: kpitree.FittedTree, state: pd.DataFrame) -> pd.DataFrame:
    """Each fitted link's prediction from its predictors in ``state`` (links recomputed)."""
    return kpitree.evaluate(tree, state, nodes=list(tree.links))


def test_observed_links_become_residual_inputs_worth_observed_minus_predicted(
    company: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    fitted, history = company
    before, after = history.iloc[-3:-1], history.iloc[-2:]  # two consecutive pairs
    result = kpitree.attribute(fitted, before, after, target="revenue")
    links = list(fitted.links)
    assert len(links) == 6
    residuals = [f"{k}__residual" for k in links]
    assert set(residuals) <= set(result.players)
    frame = result.to_frame()
    for side, state in (("before", before), ("after", after)):
        expected = state[links].to_numpy() - predicted_links(fitted, state)[links].to_numpy()
        for k, name in enumerate(residuals):
            j = result.players.index(name)
            np.testing.assert_allclose(getattr(result, side)[j], expected[:, k], rtol=0, atol=1e-15)
    for k, name in enumerate(residuals):
        rows = frame.xs(name, level="input")
        assert set(rows["kind"]) == {"mechanism"}
        assert set(rows["owner"]) == {fitted.owner(links[k])}
    assert set(frame["kind"][frame["kind"] != "mechanism"]) == {"input"}
    assert result.basis["mechanism"] == ", ".join(links)

    # input + mechanism = the total = the observed change of revenue (identities hold)
    source = result.by_source()
    assert list(source.columns) == ["input", "mechanism"]
    observed = after["revenue"].to_numpy() - before["revenue"].to_numpy()
    np.testing.assert_allclose(source.sum(axis=1), observed, rtol=1e-10)
    np.testing.assert_allclose(result.total, observed, rtol=1e-10)
    mechanism = result.wide()[residuals].sum(axis=1)
    np.testing.assert_allclose(source["mechanism"], mechanism, rtol=1e-12)


def test_without_residuals_the_links_are_their_predictions(
    company: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    fitted, history = company
    before, after = history.iloc[-2], history.iloc[-1]
    result = kpitree.attribute(fitted, before, after, target="revenue", residuals=False)
    assert not any(name.endswith("__residual") for name in result.players)
    assert set(result.kinds) == {"input"}
    assert result.basis["mechanism"].startswith("none")
    modelled = evaluated(fitted, after.to_frame().T, "revenue") - evaluated(
        fitted, before.to_frame().T, "revenue"
    )
    np.testing.assert_allclose(result.total, modelled, rtol=1e-12)
    np.testing.assert_allclose(result.contributions.sum(), modelled, rtol=1e-10)
    assert abs(modelled[0] - (after["revenue"] - before["revenue"])) > 1.0  # links are not exact


def test_a_link_observed_at_its_prediction_contributes_no_mechanism_change(
    company: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    fitted, history = company
    before, after = history.iloc[[-2]].copy(), history.iloc[[-1]].copy()
    for state in (before, after):
        state["win_rate"] = predicted_links(fitted, state)["win_rate"].to_numpy()
    with_links = kpitree.attribute(fitted, before, after, target="revenue")
    assert "win_rate__residual" not in with_links.players  # zero on both sides
    assert "sql_rate__residual" in with_links.players
    # every link at its prediction: the same as ignoring the observed links
    for state in (before, after):
        state[list(fitted.links)] = predicted_links(fitted, state)[list(fitted.links)].to_numpy()
    at_prediction = kpitree.attribute(fitted, before, after, target="revenue")
    assert set(at_prediction.kinds) == {"input"}
    ignored = kpitree.attribute(fitted, before, after, target="revenue", residuals=False)
    assert at_prediction.players == ignored.players
    np.testing.assert_allclose(at_prediction.contributions, ignored.contributions, rtol=1e-12)


def test_by_source_without_mechanisms_is_one_input_column() -> None:
    tree = Tree.from_formulas("y = a * b")
    result = kpitree.attribute(tree, {"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 3.0})
    source = result.by_source()
    assert list(source.columns) == ["input"]
    assert source["input"].tolist() == [4.0]


def test_team_roll_up_of_the_company_keeps_mechanisms_apart(
    company: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    fitted, history = company
    result = kpitree.attribute(
        fitted, history.iloc[-2], history.iloc[-1], target="revenue", method="lmdi"
    )
    teams = result.by_team()
    wide = result.wide()
    expected: dict[str, float] = {}
    for name in result.players:
        team = fitted.owner(name.removesuffix("__residual"))
        label = f"{team} (mechanism)" if name.endswith("__residual") else team
        expected[label] = expected.get(label, 0.0) + float(wide[name].iloc[0])
    assert teams.iloc[0].to_dict() == pytest.approx(expected, rel=1e-12)
    assert teams.sum(axis=1).iloc[0] == pytest.approx(result.total[0], rel=1e-10)


# --- roll-ups -----------------------------------------------------------------------------


def test_by_team_sums_each_owners_inputs() -> None:
    tree = Tree.from_formulas(
        "revenue = customers * arpa + fees\ncustomers = leads * rate",
        owners={"leads": "Marketing", "rate": "Sales", "arpa": "Success", "fees": "Success"},
    )
    before = {"leads": 100.0, "rate": 0.1, "arpa": 50.0, "fees": 10.0}
    after = {"leads": 120.0, "rate": 0.1, "arpa": 60.0, "fees": 25.0}
    result = kpitree.attribute(tree, before, after, method="sequential", order=["leads", "arpa"])
    # leads first: 20 * 0.1 * 50 = 100; arpa at 12 customers: 12 * 10 = 120; fees: 15
    assert result.wide().iloc[0].to_dict() == {"leads": 100.0, "arpa": 120.0, "fees": 15.0}
    teams = result.by_team()
    assert teams.columns.name == "team"
    assert teams.iloc[0].to_dict() == {"Marketing": 100.0, "Success": 135.0}
    unowned = kpitree.attribute(Tree.from_formulas("y = a + b"), {"a": 1, "b": 1}, {"a": 2, "b": 4})
    assert unowned.by_team().iloc[0].to_dict() == {"(no owner)": 4.0}


@pytest.mark.parametrize("method", METHODS)
def test_by_node_of_a_pure_tree_sums_each_subtrees_inputs(funnel: Tree, method: str) -> None:
    levers = list(funnel.levers)
    rng = np.random.default_rng(7)
    before = pd.DataFrame({k: [funnel.node(k).baseline] * 3 for k in levers})
    after = before * rng.uniform(0.6, 1.5, size=before.shape)
    result = kpitree.attribute(funnel, before, after, method=method)
    nodes = result.by_node()
    wide = result.wide()
    assert set(nodes.columns) == set(funnel.computed)
    for node in funnel.computed:
        below = [x for x in funnel.upstream(node) if x in levers]
        np.testing.assert_allclose(nodes[node], wide[below].sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(nodes["revenue"], result.total, rtol=1e-10)


def test_by_node_of_a_dag_credits_a_shared_input_only_where_its_paths_meet() -> None:
    tree = Tree.from_formulas("y = m + n\nm = a * b\nn = a * c")
    result = kpitree.attribute(
        tree,
        {"a": 1.0, "b": 2.0, "c": 3.0},
        {"a": 2.0, "b": 3.0, "c": 5.0},
        method="sequential",
        order=["a", "b", "c"],
    )
    # a first: Δa (b0 + c0) = 5; then b at a = 2: 2; then c: 4
    assert result.wide().iloc[0].to_dict() == {"a": 5.0, "b": 2.0, "c": 4.0}
    assert result.by_node().iloc[0].to_dict() == {"m": 2.0, "n": 4.0, "y": 11.0}


def regions(values: Mapping[str, Sequence[float]], order: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(values, index=["north", "south", "east"]).loc[list(order)]
    return frame.rename_axis("region").reset_index()


def test_by_segment_matches_rows_by_the_segment_column() -> None:
    tree = Tree.from_formulas(
        "revenue = customers * arpa", owners={"customers": "Sales", "arpa": "Success"}
    )
    before = regions(
        {"customers": [10.0, 20.0, 30.0], "arpa": [5.0, 5.0, 5.0]}, ["north", "south", "east"]
    )
    after = regions(
        {"customers": [12.0, 20.0, 24.0], "arpa": [6.0, 4.0, 5.0]}, ["east", "north", "south"]
    )
    result = kpitree.attribute(tree, before, after, segment="region", method="shapley")
    assert list(result.index) == ["east", "north", "south"]  # the order of 'after'
    assert result.index.name == "region"
    segments = result.by_segment()
    # per-segment changes by hand: north 72 - 50, south 80 - 100, east 120 - 150
    assert segments["total"].to_dict() == {"east": -30.0, "north": 22.0, "south": -20.0}
    assert list(segments.index) == ["east", "north", "south"]  # largest change first
    # north: customers 10 -> 12, arpa 5 -> 6: Shapley 2 * 5.5 and 1 * 11
    assert segments.loc["north", ["Sales", "Success"]].tolist() == [11.0, 11.0]
    assert segments.loc["south", ["Sales", "Success"]].tolist() == [0.0, -20.0]
    assert segments.loc["east", ["Sales", "Success"]].tolist() == [-30.0, 0.0]
    # segments of 'before' that 'after' lacks are left out
    fewer = kpitree.attribute(tree, before, after.iloc[:2], segment="region")
    assert list(fewer.by_segment().index) == ["east", "north"]


def test_a_single_segment_keeps_its_label() -> None:
    tree = Tree.from_formulas("y = a * c")
    before = pd.DataFrame({"region": ["north"], "a": [1.0], "c": [2.0]})
    after = pd.DataFrame({"region": ["north"], "a": [2.0], "c": [3.0]})
    result = kpitree.attribute(tree, before, after, segment="region")
    assert list(result.by_segment().index) == ["north"]


def test_bad_segments_states_and_options_are_errors(funnel: Tree) -> None:
    tree = Tree.from_formulas("y = a * c")
    before = pd.DataFrame({"region": ["n", "s"], "a": [1.0, 2.0], "c": [2.0, 2.0]})
    after = pd.DataFrame({"region": ["s", "n"], "a": [2.0, 2.0], "c": [3.0, 3.0]})
    with pytest.raises(DataError) as missing:
        kpitree.attribute(tree, before.drop(columns="region"), after, segment="region")
    assert (missing.value.column, missing.value.reason) == ("region", "missing")
    with pytest.raises(DataError) as not_a_table:
        kpitree.attribute(tree, {"a": 1.0, "c": 2.0}, after, segment="region")
    assert not_a_table.value.reason == "missing"
    doubled = pd.concat([before, before.iloc[[0]]])
    with pytest.raises(DataError) as duplicates:
        kpitree.attribute(tree, doubled, after, segment="region")
    assert duplicates.value.reason == "duplicates"
    new = after.assign(region=["s", "w"])
    with pytest.raises(DataError) as unmatched:
        kpitree.attribute(tree, before, new, segment="region")
    assert unmatched.value.rows == ["w"]
    three = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": [1.0, 1.0, 1.0]})
    with pytest.raises(DataError) as length:
        kpitree.attribute(tree, before.drop(columns="region"), three)
    assert length.value.reason == "length"
    with pytest.raises(OptionError) as method:
        kpitree.attribute(tree, {"a": 1, "c": 2}, {"a": 2, "c": 2}, method="owen")  # type: ignore[arg-type]
    assert method.value.option == "method"
    for order in (["a", "nope"], ["y"]):  # unknown, and a computed node
        with pytest.raises(OptionError) as bad_order:
            kpitree.attribute(
                tree, {"a": 1, "c": 2}, {"a": 2, "c": 2}, method="sequential", order=order
            )
        assert bad_order.value.option == "order"
    with pytest.raises(UnknownNodeError):
        kpitree.attribute(funnel, {}, {"sns": 2000.0}, target="profit")


@pytest.mark.parametrize("method", METHODS)
def test_no_change_is_an_empty_attribution(method: str) -> None:
    tree = Tree.from_formulas("y = a * c")
    result = kpitree.attribute(tree, {"a": 1.0, "c": 2.0}, {"a": 1.0, "c": 2.0}, method=method)
    assert result.players == ()
    assert result.total.tolist() == [0.0]
    assert result.contributions.shape == (0, 1)
    assert result.to_frame().empty
    rows = kpitree.attribute(
        tree, pd.DataFrame({"a": [1.0, 2.0], "c": 2.0}), {"a": [1.0, 2.0], "c": 2.0}, method=method
    )
    assert rows.contributions.shape == (0, 2) and rows.total.tolist() == [0.0, 0.0]


# --- rows ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_many_rows_at_once_equal_one_row_at_a_time(funnel: Tree, method: str) -> None:
    rng = np.random.default_rng(11)
    levers = list(funnel.levers)
    before = pd.DataFrame(
        {k: funnel.node(k).baseline * rng.uniform(0.8, 1.2, 6) for k in levers},
        index=pd.period_range("2024-01", periods=6, freq="M"),
    )
    after = before * rng.uniform(0.7, 1.3, size=before.shape)
    after.iloc[2] = before.iloc[2]  # no change in one row
    after.loc[after.index[4], "win_rate"] = before["win_rate"].iloc[4]
    after.index = range(6)  # rows are matched by position; the result takes after's index
    together = kpitree.attribute(funnel, before, after, method=method)
    assert list(together.index) == list(range(6))
    wide = together.wide()
    for row in range(6):
        if row == 2:
            np.testing.assert_array_equal(wide.iloc[row].to_numpy(), 0.0)
            continue
        alone = kpitree.attribute(funnel, before.iloc[row], after.iloc[row], method=method)
        expected = alone.wide().iloc[0]
        np.testing.assert_allclose(wide.iloc[row][expected.index], expected, rtol=1e-11, atol=1e-9)
        assert together.total[row] == pytest.approx(alone.total[0], rel=1e-13)


def test_a_single_row_side_is_broadcast(funnel: Tree) -> None:
    levers = list(funnel.levers)
    base = {k: funnel.node(k).baseline for k in levers}
    after = pd.DataFrame(
        [base | {"sns": 1500.0}, base | {"win_rate": 0.3, "ads": 800.0}], index=["plan_a", "plan_b"]
    )
    repeated = pd.DataFrame([base, base], index=after.index)
    expected = kpitree.attribute(funnel, repeated, after)
    for before in (base, pd.Series(base), pd.DataFrame([base])):
        result = kpitree.attribute(funnel, before, after)
        assert list(result.index) == ["plan_a", "plan_b"]
        assert result.players == expected.players
        np.testing.assert_array_equal(result.contributions, expected.contributions)
    # and the other way round: one 'after' for several 'before' rows
    reverse = kpitree.attribute(funnel, after, base)
    np.testing.assert_allclose(reverse.total, -expected.total, rtol=1e-14)


# --- the result ---------------------------------------------------------------------------


def test_one_pairs_frame_is_sorted_by_contribution_with_every_column_consistent() -> None:
    tree = Tree.from_formulas(
        "revenue = customers * arpa - costs", owners={"customers": "Sales", "arpa": "Success"}
    )
    before, after = (
        {"customers": 100, "arpa": 10, "costs": 50},
        {"customers": 120, "arpa": 11, "costs": 80},
    )
    result = kpitree.attribute(tree, before, after)
    frame = result.to_frame()
    assert list(frame.columns) == [
        "owner",
        "kind",
        "before",
        "after",
        "change",
        "contribution",
        "share",
    ]
    assert frame.index.name == "input"
    # customers: 20 * (10 + 11) / 2 = 210, arpa: 1 * (100 + 120) / 2 = 110, costs: -30
    assert frame["contribution"].to_dict() == {"customers": 210.0, "arpa": 110.0, "costs": -30.0}
    assert list(frame.index) == ["customers", "arpa", "costs"]  # by |contribution|
    assert frame["owner"].tolist() == ["Sales", "Success", "(no owner)"]
    assert frame.loc["costs", ["before", "after", "change"]].tolist() == [50.0, 80.0, 30.0]
    assert frame["share"].to_numpy() == pytest.approx(np.array([210, 110, -30]) / 290)
    assert result.total.tolist() == [290.0] and result.start.tolist() == [950.0]
    title = result.title()
    assert title == "Attribution of the change of 'revenue': +290"
    assert title in result.summary() and result.summary() == repr(result)
    assert "Attribution of the change of &#x27;revenue&#x27;" in result._repr_html_()


def test_a_frame_of_several_rows_is_indexed_by_row_and_input() -> None:
    tree = Tree.from_formulas("y = a * b")
    before = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 3.0]}, index=["x", "w"])
    after = pd.DataFrame({"a": [2.0, 2.0], "b": [4.0, 5.0]}, index=["x", "w"])
    result = kpitree.attribute(tree, before, after, method="sequential", order=["a", "b"])
    frame = result.to_frame()
    assert frame.index.names == ["row", "input"]
    assert "stderr" not in frame.columns
    for j, name in enumerate(result.players):
        for k, row in enumerate(result.index):
            line = frame.loc[(row, name)]
            assert line["before"] == result.before[j, k] and line["after"] == result.after[j, k]
            assert line["change"] == result.after[j, k] - result.before[j, k]
            assert line["contribution"] == result.contributions[j, k]
            assert line["share"] == pytest.approx(result.contributions[j, k] / result.total[k])
    # a first then b: row x: 1 * 3 = 3 and 2 * 1 = 2; row w: a still, b: 2 * 2 = 4
    assert frame["contribution"].to_dict() == {
        ("w", "a"): 0.0,
        ("w", "b"): 4.0,
        ("x", "a"): 3.0,
        ("x", "b"): 2.0,
    }
    assert result.title() == "Attribution of the change of 'y' over 2 rows: +9"
    assert result.basis["rows"] == 2 and result.basis["method"] == "sequential"


def test_a_target_inside_the_tree_uses_only_its_own_inputs(funnel: Tree) -> None:
    result = kpitree.attribute(
        funnel, {}, {"sns": 2000.0, "deal_size": 1.0, "sql_rate": 0.5}, target="sqls", method="lmdi"
    )
    assert result.target == "sqls"
    assert set(result.players) == {"sns", "sql_rate"}
    base = evaluated(funnel, {}, "sqls")[0]
    after = evaluated(funnel, {"sns": 2000.0, "sql_rate": 0.5}, "sqls")[0]
    assert result.total[0] == pytest.approx(after - base, rel=1e-14)
    weight = log_mean(after, base)
    sql_rate = dict(zip(result.players, result.contributions[:, 0], strict=True))["sql_rate"]
    assert sql_rate == pytest.approx(weight * math.log(0.5 / 0.4), rel=1e-12)


def test_lmdi_keeps_offsetting_inputs_of_a_node_that_does_not_change() -> None:
    # leads do not move (sns +100, ads -100): the channels still moved revenue's mix of
    # inputs; LMDI passes them on at d revenue / d leads = rate at the midpoint (0.105),
    # which is also their Shapley value: 100 * (0.1 + 0.11) / 2
    tree = Tree.from_formulas("revenue = leads * rate\nleads = sns + ads")
    before, after = (
        {"sns": 300.0, "ads": 200.0, "rate": 0.1},
        {"sns": 400.0, "ads": 100.0, "rate": 0.11},
    )
    for method in ("lmdi", "shapley"):
        result = kpitree.attribute(tree, before, after, method=method)
        got = dict(zip(result.players, result.contributions[:, 0], strict=True))
        assert got == pytest.approx({"sns": 10.5, "ads": -10.5, "rate": 5.0}, rel=1e-9)
        assert result.contributions.sum() == pytest.approx(5.0, rel=1e-12)
