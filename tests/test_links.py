"""Declaring regression links, and trees with named parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy

import kpitree
from kpitree import CycleError, DataError, FormulaError, SpecError, Tree
from kpitree.links import Link, Term, link_response, make_link, parse_link


@pytest.mark.parametrize(
    ("text", "response", "transform", "columns"),
    [
        ("win_rate ~ share_3plus + demo_rate", "win_rate", "linear", ["share_3plus", "demo_rate"]),
        ("logit(win_rate) ~ share_3plus", "win_rate", "logit", ["share_3plus"]),
        ("log(leads) ~ downloads + webinars", "leads", "log", ["downloads", "webinars"]),
        ("log(rev) ~ log(sqls) + log(deal_size)", "rev", "log-log", ["sqls", "deal_size"]),
        ("churn ~ lag(nps, 3) + close_days", "churn", "linear", ["nps_lag3", "close_days"]),
        ("log(y) ~ log(lag(x, 1))", "y", "log-log", ["x_lag1"]),
        ("解約率 ~ lag(NPS, 2)", "解約率", "linear", ["NPS_lag2"]),
    ],
)
def test_link_forms(text: str, response: str, transform: str, columns: list[str]) -> None:
    link = parse_link(text)
    assert link_response(text) == response
    assert link.transform == transform
    assert [term.column for term in link.terms] == columns
    assert parse_link(link.text(response)) == link  # the declaration round-trips


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("y = a + b", "is written `response ~"),
        ("y ~ a ~ b", "is written `response ~"),
        ("y ~ a - b", "joined by +"),
        ("y ~ a * b", "joined by +"),
        ("y ~ log(a)", "log-log form"),
        ("log(y) ~ log(a) + b", "log-log form"),
        ("logit(y) ~ log(a)", "log-log form"),
        ("exp(y) ~ a", "response of a link"),
        ("y + z ~ a", "response of a link"),
        ("y ~ lag(a)", "lag(node, periods)"),
        ("y ~ a + ", "empty predictor"),
        ("y ~ 3", "a node or lag(node, k)"),
    ],
)
def test_malformed_links(text: str, fragment: str) -> None:
    with pytest.raises(FormulaError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_link(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("y ~ lag(a, 1.5)", "whole number"), ("y ~ lag(a, 500)", "between 0 and"),
     ("y ~ a + a", "twice"), ("y ~ lag(a, 2) + lag(a, 2)", "twice")],
)  # fmt: skip
def test_invalid_lags_and_repeats(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        parse_link(text)


def test_fitted_forms_are_formulas_with_named_coefficients() -> None:
    link = make_link(["a", "b"], transform="linear", lags={"b": 2})
    assert link.coefficient_names("y") == ("y__const", "y__a", "y__b_lag2")
    assert link.formula("y") == "y__const + y__a * a + y__b_lag2 * b_lag2"
    logit = make_link(["a"], transform="logit").formula("y")
    assert logit == "1 / (1 + exp(-(y__const + y__a * a)))"
    assert make_link(["a"], transform="log").formula("y") == "exp(y__const + y__a * a)"
    loglog = make_link(["a", "b"], transform="log-log").formula("y")
    assert loglog == "exp(y__const + y__a * log(a) + y__b * log(b))"
    with pytest.raises(SpecError, match="unknown transform"):
        make_link(["a"], transform="probit")
    with pytest.raises(SpecError, match="not predictors"):
        make_link(["a"], lags={"b": 1})
    with pytest.raises(SpecError, match="at least one predictor"):
        Link(())
    assert str(Term("nps", 3)) == "lag(nps, 3)"


def test_links_in_a_tree() -> None:
    tree = Tree.from_formulas(
        """
        new_customers = sqls * win_rate
        logit(win_rate) ~ share_3plus + demo_rate
        sqls ~ lag(calls, 1) + connect_rate
        """
    )
    assert tree.links == ("win_rate", "sqls")
    assert tree.levers == ("share_3plus", "demo_rate", "calls", "connect_rate")
    assert tree.computed == ("new_customers",)
    assert tree.children("win_rate") == ("share_3plus", "demo_rate")
    assert tree.parents("calls") == ("sqls",)
    assert tree.node("win_rate").kind == "link" and tree.node("calls").kind == "lever"
    assert set(tree.upstream("new_customers")) == {
        "sqls", "win_rate", "share_3plus", "demo_rate", "calls", "connect_rate"
    }  # fmt: skip
    assert tree.graph.has_edge("share_3plus", "win_rate")
    assert "(link, not fitted)" in repr(tree)
    # an unfitted link is an input: evaluation reads its value
    value = kpitree.evaluate(tree, {"sqls": 50.0, "win_rate": 0.2}, nodes=["new_customers"])
    assert value.loc[0, "new_customers"] == pytest.approx(10.0)
    with pytest.raises(DataError, match=r"link 'win_rate' is missing .*fit the link"):
        kpitree.evaluate(tree, {"sqls": 50.0}, nodes=["new_customers"])


def test_with_link_returns_a_new_tree() -> None:
    tree = Tree.from_formulas("new_customers = sqls * win_rate", baselines={"win_rate": 0.2})
    linked = tree.with_link("win_rate", ["share_3plus", "nps"], transform="logit", lags={"nps": 3})
    assert linked.node("win_rate").link == parse_link("logit(win_rate) ~ share_3plus + lag(nps, 3)")
    assert linked.node("win_rate").baseline is None and tree.node("win_rate").link is None
    with pytest.raises(SpecError, match="defined by a formula"):
        tree.with_link("new_customers", ["x"])


def test_cycles_through_links_are_found() -> None:
    with pytest.raises(CycleError) as info:
        Tree.from_formulas("a = b * 2\nb ~ c\nc ~ a")
    assert info.value.cycle == ["a", "b", "c", "a"]


def test_links_round_trip_through_model_files(tmp_path: Path) -> None:
    tree = Tree.from_formulas(
        "new_customers = sqls * win_rate\nlogit(win_rate) ~ share_3plus + lag(nps, 2)",
        owners={"win_rate": "Field Sales"},
    )
    for suffix in (".yaml", ".json"):
        tree.save(tmp_path / f"m{suffix}")
        assert kpitree.load(tmp_path / f"m{suffix}") == tree
    assert "link: logit(win_rate) ~ share_3plus + lag(nps, 2)" in (tmp_path / "m.yaml").read_text()
    (tmp_path / "bad.yaml").write_text("nodes:\n  y:\n    link: 'z ~ a'\n")
    with pytest.raises(kpitree.ModelFileError, match="explains 'z', not this node"):
        kpitree.load(tmp_path / "bad.yaml")


def test_parameters_are_named_values_not_nodes(tmp_path: Path) -> None:
    nodes = [kpitree.Node("y", formula=kpitree.formula.parse_formula("y__const + y__x * x"))]
    tree = Tree(nodes, parameters={"y__const": 1.0, "y__x": 2.0})
    assert tree.nodes == ("y", "x") and tree.levers == ("x",)
    assert dict(tree.parameters) == {"y__const": 1.0, "y__x": 2.0}
    assert tree.children("y") == ("x",)  # parameters are not part of the tree's structure
    assert tree.formula("y") == sympy.Symbol("y__const") + sympy.Symbol("y__x") * sympy.Symbol("x")
    result = kpitree.evaluate(tree, {"x": [1.0, 3.0]}, nodes=["y"])
    assert result["y"].tolist() == [3.0, 7.0]
    draws = {"x": 2.0, "y__x": np.array([0.0, 1.0, 2.0])}  # coefficient draws, vectorised
    assert kpitree.evaluate(tree, draws, nodes=["y"])["y"].tolist() == [1.0, 3.0, 5.0]
    tree.save(tmp_path / "p.yaml")
    assert kpitree.load(tmp_path / "p.yaml") == tree
    assert tree.with_metadata("x", owner="Marketing").parameters == tree.parameters
    with pytest.raises(SpecError, match="both a node and a parameter"):
        Tree(nodes, parameters={"y": 1.0})
    assert Tree(nodes, parameters={"x": 1.0, "y__const": 0, "y__x": 1}).levers == ()
    with pytest.raises(SpecError, match="not finite"):
        Tree(nodes, parameters={"y__x": float("nan")})
