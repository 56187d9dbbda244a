"""Declaring, validating and querying trees."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import sympy

import kpitree
from kpitree import CycleError, FormulaError, SpecError, Tree, UnknownNodeError


def test_text_and_mapping_specs_declare_the_same_tree(funnel: Tree) -> None:
    from_text = Tree.from_formulas("leads = visits * rate  # marketing\n\nvisits = a + b\n")
    from_mapping = Tree.from_formulas({"leads": "visits * rate", "visits": "a + b"})
    assert from_text == from_mapping
    assert hash(from_text) == hash(from_mapping)
    assert from_text.nodes == ("leads", "visits", "rate", "a", "b")


def test_queries_on_the_funnel(funnel: Tree) -> None:
    assert funnel.levers == (
        "deal_size", "win_rate", "sql_rate", "mql_rate", "request_rate", "sns", "search", "ads"
    )  # fmt: skip
    assert funnel.computed == ("revenue", "new_customers", "sqls", "mqls", "leads", "visits")
    assert funnel.outputs == ("revenue",)
    assert funnel.top == "revenue"
    assert funnel.children("new_customers") == ("sqls", "win_rate")
    assert funnel.children("win_rate") == ()
    assert funnel.parents("sqls") == ("new_customers",)
    assert funnel.parents("revenue") == ()
    assert set(funnel.upstream("sqls")) == {
        "mqls", "sql_rate", "leads", "mql_rate", "visits", "request_rate", "sns", "search", "ads"
    }  # fmt: skip
    assert funnel.downstream("leads") == ("mqls", "sqls", "new_customers", "revenue")
    assert funnel.owner("sqls") == "Inside Sales"
    assert funnel.owner("visits") is None


def test_upstream_is_in_topological_order(funnel: Tree) -> None:
    upstream = funnel.upstream("revenue")
    position = {name: i for i, name in enumerate(upstream)}
    for name in upstream:
        for child in funnel.children(name):
            assert position[child] < position[name]


def test_graph_edges_go_from_child_to_parent_and_it_is_frozen(funnel: Tree) -> None:
    graph = funnel.graph
    assert isinstance(graph, nx.DiGraph)
    assert set(graph.predecessors("leads")) == {"visits", "request_rate"}
    assert graph.has_edge("sns", "visits") and not graph.has_edge("visits", "sns")
    assert graph.number_of_edges() == 13
    with pytest.raises(nx.NetworkXError):
        graph.add_edge("revenue", "sns")


def test_formula_and_expand_are_sympy(funnel: Tree) -> None:
    s = funnel.symbols
    assert funnel.formula("visits") == s["sns"] + s["search"] + s["ads"]
    assert funnel.formula("win_rate") == s["win_rate"]
    expected = (
        (s["sns"] + s["search"] + s["ads"])
        * s["request_rate"] * s["mql_rate"] * s["sql_rate"] * s["win_rate"] * s["deal_size"]
    )  # fmt: skip
    assert sympy.expand(funnel.expand("revenue") - expected) == 0
    assert funnel.expand("sns") == s["sns"]


def test_special_names_are_kpis_not_constants() -> None:
    tree = Tree.from_formulas("E = I * N + S - Q / O\nlambda = E * 2\n受注数 = lambda + 1")
    assert tree.levers == ("I", "N", "S", "Q", "O")
    value = kpitree.evaluate(tree, {"I": 2, "N": 3, "S": 4, "Q": 10, "O": 5})
    assert value.loc[0, "E"] == 2 * 3 + 4 - 10 / 5
    assert value.loc[0, "受注数"] == (2 * 3 + 4 - 10 / 5) * 2 + 1
    assert tree.expand("lambda").free_symbols == {sympy.Symbol(n) for n in "INSQO"}


def test_metadata_is_stored_and_bounds_are_intervals(funnel: Tree) -> None:
    tree = Tree.from_formulas(
        "leads = visits * rate",
        owners={"leads": "Marketing"},
        units={"visits": "visits/month"},
        bounds={"rate": (0, 1), "visits": (0, None)},
        stages={"leads": "shortlist"},
        descriptions={"rate": "request rate"},
        baselines={"rate": 0.02},
        name="mini",
    )
    rate = tree.node("rate")
    assert rate.bounds == (0.0, 1.0) and rate.baseline == 0.02 and rate.is_lever
    assert rate.description == "request rate"
    assert tree.node("visits").bounds == (0.0, math.inf)
    assert tree.node("visits").unit == "visits/month"
    assert tree.node("leads").stage == "shortlist"
    assert tree.name == "mini"


def test_derived_trees_leave_the_original_untouched(funnel: Tree) -> None:
    changed = funnel.with_metadata("visits", owner="Marketing", unit="visits")
    assert changed.owner("visits") == "Marketing" and funnel.owner("visits") is None
    rebased = funnel.with_baselines({"win_rate": 0.3})
    assert rebased.node("win_rate").baseline == 0.3
    assert funnel.node("win_rate").baseline == 0.25
    redefined = funnel.with_formula("sqls", "appointments * sql_rate")
    assert redefined.children("sqls") == ("appointments", "sql_rate")
    assert "appointments" in redefined.levers
    assert redefined.outputs == ("revenue", "mqls")  # a declared formula is never dropped
    assert funnel.children("sqls") == ("mqls", "sql_rate")
    with pytest.raises(AttributeError):
        funnel.nodes = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        funnel.node("sqls").owner = "x"  # type: ignore[misc]


def test_redefining_a_lever_as_a_formula(funnel: Tree) -> None:
    tree = funnel.with_formula("win_rate", "proposals_3plus * 0.5")
    assert "win_rate" in tree.computed
    assert tree.node("win_rate").baseline is None
    assert tree.node("win_rate").bounds == (0.0, 1.0)


def test_cycle_error_names_the_cycle() -> None:
    with pytest.raises(CycleError) as info:
        Tree.from_formulas("a = b + 1\nb = c * 2\nc = a - x")
    assert info.value.cycle == ["a", "b", "c", "a"]  # each formula uses the next
    assert str(info.value).endswith("uses the next): a -> b -> c -> a")
    assert isinstance(info.value, ValueError)


def test_self_reference_is_rejected() -> None:
    with pytest.raises(CycleError, match="defined in terms of itself") as info:
        Tree.from_formulas("leads = leads * 2")
    assert info.value.node == "leads" and info.value.cycle == ["leads", "leads"]


def test_node_defined_twice_names_both_lines() -> None:
    with pytest.raises(SpecError, match=r"defined twice \(lines 1 and 3\)") as info:
        Tree.from_formulas("a = b\nc = d\na = e")
    assert info.value.node == "a"


@pytest.mark.parametrize(
    ("spec", "error", "fragment"),
    [
        ("a = ", FormulaError, "empty formula"),
        ("a = foo(b)", FormulaError, "unknown function 'foo'"),
        ("a = b ^ 2", FormulaError, "use \\*\\* for powers"),
        ("a b c", SpecError, "is neither `name = formula` nor a link"),
        ("1a = b", SpecError, "is neither `name = formula` nor a link"),
        ("log = b", SpecError, "function name"),
        ("# nothing", SpecError, "defines no node"),
    ],
)
def test_malformed_specs(spec: str, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        Tree.from_formulas(spec)


def test_formula_errors_name_the_node() -> None:
    with pytest.raises(FormulaError) as info:
        Tree.from_formulas("leads = visits * (rate")
    assert info.value.node == "leads"
    assert info.value.position == 14 and info.value.text == "visits * (rate"
    assert str(info.value).startswith("in the formula of 'leads': expected ')'")


@pytest.mark.parametrize(
    ("bounds", "fragment"),
    [((1, 0), "not an interval"), ((0,), "must be \\(low, high\\)"), ("ab", "must be"),
     ((float("nan"), 1), "not an interval")],
)  # fmt: skip
def test_bounds_must_be_intervals(bounds: object, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment) as info:
        Tree.from_formulas("a = b * c", bounds={"c": bounds})
    assert info.value.node == "c"


def test_metadata_errors() -> None:
    with pytest.raises(UnknownNodeError, match="did you mean 'rate'") as info:
        Tree.from_formulas("a = b * rate", owners={"rat": "Marketing"})
    assert info.value.node == "rat" and isinstance(info.value, KeyError)
    with pytest.raises(SpecError, match="computed by a formula"):
        Tree.from_formulas("a = b * c", baselines={"a": 1.0})
    with pytest.raises(SpecError, match="outside its bounds"):
        Tree.from_formulas("a = b * c", bounds={"c": (0, 1)}, baselines={"c": 2.0})
    with pytest.raises(SpecError, match="not finite"):
        Tree.from_formulas("a = b * c", baselines={"c": float("nan")})
    with pytest.raises(SpecError, match="must be text"):
        Tree.from_formulas("a = b * c", owners={"c": 3})
    with pytest.raises(SpecError, match="unknown metadata"):
        Tree.from_formulas("a = b").with_metadata("b", colour="red")


def test_unknown_node_queries(funnel: Tree) -> None:
    with pytest.raises(UnknownNodeError, match="did you mean 'sqls'"):
        funnel.parents("sql")
    with pytest.raises(UnknownNodeError):
        funnel.formula("nope")
    assert str(UnknownNodeError("x")) == "unknown node 'x'"  # not KeyError's quoting


def test_top_requires_a_single_output() -> None:
    tree = Tree.from_formulas("a = x + y\nb = x * y")
    assert tree.outputs == ("a", "b")
    with pytest.raises(SpecError, match="2 top nodes"):
        _ = tree.top


def test_repr_and_html_show_nodes_formulas_and_owners(funnel: Tree) -> None:
    text = repr(funnel)
    assert text.splitlines()[0] == "Tree: 14 nodes (6 formulas, 8 levers); top: revenue"
    assert "sqls * win_rate" in text and "(lever)" in text and "Inside Sales" in text
    html = funnel._repr_html_()
    assert html.count("<tr") == 15 and "Inside Sales" in html and "background" in html


def test_html_is_escaped() -> None:
    tree = Tree.from_formulas("a = b", owners={"a": "<script>alert(1)</script>"})
    html = tree._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_to_frame_holds_numbers_not_strings(funnel: Tree) -> None:
    frame = funnel.to_frame()
    assert frame.loc["win_rate", "low"] == 0.0 and frame.loc["win_rate", "high"] == 1.0
    assert frame.loc["deal_size", "baseline"] == 2_000_000
    assert frame.loc["sqls", "kind"] == "formula" and frame.loc["sns", "kind"] == "lever"
    assert list(frame.index) == list(funnel.nodes)


def test_a_lever_nothing_reads_is_not_a_top_kpi() -> None:
    company = kpitree.datasets.load_b2b()
    fitted = kpitree.fit(company, kpitree.datasets.simulate_b2b())
    # the fitted churn link reads nps_lag3: nps itself is read by nothing
    assert set(fitted.outputs) == {"revenue", "nps"}
    assert fitted.top == "revenue"
    two = Tree.from_formulas("revenue = a * b\ncost = c * d")
    with pytest.raises(SpecError, match="2 top nodes"):
        _ = two.top
