"""Targets set backwards, goal seek and allocation: hand-computed values, re-evaluation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kpitree
from kpitree import OptionError, ScenarioError, Tree, UnknownNodeError
from kpitree.allocation import allocate
from kpitree.backcasting import backcast
from kpitree.roots import root_near
from kpitree.targets import goal_seek

DEALS = """
new_customers = sqls * win_rate
sqls = mqls * sql_rate
"""


@pytest.fixture
def deals() -> Tree:
    return Tree.from_formulas(
        DEALS,
        owners={"mqls": "Marketing", "sqls": "Inside Sales", "new_customers": "Field Sales"},
        stages={"mqls": "shortlist", "new_customers": "decision"},
        bounds={"win_rate": (0, 1), "sql_rate": (0, 1), "mqls": (0, None)},
        baselines={"mqls": 150, "sql_rate": 0.4, "win_rate": 0.25},
    )


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return kpitree.datasets.simulate_b2b()


def lever_values(tree: Tree, result: kpitree.Backcast) -> dict[str, float]:
    """The required value of every lever listed in a back-calculation."""
    table = result.to_frame()
    return {n: float(table.loc[n, "required"]) for n in table.index if n in tree.levers}


def evaluate_at(tree: Tree, values: dict[str, float], node: str) -> float:
    return float(kpitree.evaluate(tree, values, nodes=[node])[node].iloc[0])


# --- backcast: hand-computed funnels --------------------------------------------------------


def test_twenty_contracts_need_eighty_sqls_and_two_hundred_mqls(deals: Tree) -> None:
    result = backcast(deals, "new_customers", 20)
    frame = result.to_frame()
    assert list(frame.columns) == [
        "owner", "stage", "baseline", "required", "change", "ratio", "held",
    ]  # fmt: skip
    assert list(frame.index) == ["new_customers", "win_rate", "sqls", "sql_rate", "mqls"]
    assert frame["required"].to_dict() == pytest.approx(
        {"new_customers": 20, "win_rate": 0.25, "sqls": 80, "sql_rate": 0.4, "mqls": 200},
        rel=1e-12,
    )
    assert frame["baseline"].to_dict() == pytest.approx(
        {"new_customers": 15, "win_rate": 0.25, "sqls": 60, "sql_rate": 0.4, "mqls": 150},
        rel=1e-12,
    )
    assert frame.loc["mqls", "change"] == pytest.approx(50)
    assert frame.loc["sqls", "ratio"] == pytest.approx(80 / 60)
    assert frame["held"].to_dict() == {
        "new_customers": False, "win_rate": True, "sqls": False, "sql_rate": True, "mqls": False,
    }  # fmt: skip
    assert frame.loc["mqls", ["owner", "stage"]].tolist() == ["Marketing", "shortlist"]
    assert result.achieved == pytest.approx(20, rel=1e-12)
    assert result.conflicts == ()


def test_visits_split_by_baseline_mix(funnel: Tree) -> None:
    # leads = visits * request_rate (held, 0.02); visits = sns + search + ads (1:3:1)
    result = backcast(funnel, "leads", 150)
    required = result.required
    assert required["visits"] == pytest.approx(150 / 0.02)
    assert required[["sns", "search", "ads"]].tolist() == pytest.approx([1500, 4500, 1500])
    assert set(result.to_frame().index) == {
        "leads", "request_rate", "visits", "sns", "search", "ads",
    }  # fmt: skip


def test_visits_split_by_an_explicit_mix(funnel: Tree) -> None:
    mix = {"visits": {"sns": 0.2, "search": 0.5, "ads": 0.3}}
    result = backcast(funnel, "leads", 150, mix=mix)
    assert result.required[["sns", "search", "ads"]].tolist() == pytest.approx([1500, 3750, 2250])
    assert evaluate_at(funnel, lever_values(funnel, result), "leads") == pytest.approx(150)
    assert "sns 20%" in result.basis["mix"]


@pytest.mark.parametrize(
    ("mix", "option"),
    [
        ({"visits": {"sns": 0.5, "search": 0.4}}, "mix"),  # sums to 0.9
        ({"visits": {"sns": 1.2, "search": -0.2}}, "mix"),  # outside [0, 1]
        ({"visits": {"request_rate": 1.0}}, "mix"),  # not an input of visits
        ({"leads": {"request_rate": 1.0}}, "mix"),  # held
        ({"sns": {"sns": 1.0}}, "mix"),  # a lever
    ],
)
def test_a_bad_mix_is_an_option_error(funnel: Tree, mix: dict, option: str) -> None:
    with pytest.raises(OptionError) as caught:
        backcast(funnel, "leads", 150, mix=mix)
    assert caught.value.option == option


def test_mix_of_a_product_is_refused(funnel: Tree) -> None:
    with pytest.raises(OptionError, match="not a sum"):
        backcast(funnel, "mqls", 100, hold=["mql_rate"], mix={"leads": {"visits": 1.0}})


def test_held_rates_given_in_hold(funnel: Tree) -> None:
    # mql_rate has no bounds, so it is free unless held; win_rate held at another value
    result = backcast(funnel, "new_customers", 30, hold={"win_rate": 0.3, "mql_rate": "+0%"})
    required = result.required
    assert required["win_rate"] == 0.3 and required["mql_rate"] == 0.5
    assert required["sqls"] == pytest.approx(100)
    assert required["mqls"] == pytest.approx(250)
    assert required["leads"] == pytest.approx(500)
    assert required[["sns", "search", "ads"]].tolist() == pytest.approx([5000, 15000, 5000])
    assert result.to_frame().loc["win_rate", "change"] == pytest.approx(0.05)
    assert "win_rate=0.3" in result.basis["held"]
    as_list = backcast(funnel, "new_customers", 30, hold=["mql_rate"])
    assert as_list.required["sqls"] == pytest.approx(120)  # win_rate at its 0.25


def test_a_change_text_holds_a_rate_relative_to_its_state(funnel: Tree) -> None:
    result = backcast(funnel, "sqls", 100, hold={"sql_rate": "+25%", "mql_rate": None})
    assert result.required["sql_rate"] == pytest.approx(0.5)
    assert result.required["mqls"] == pytest.approx(200)


def test_k_free_factors_each_take_the_kth_root(funnel: Tree) -> None:
    # revenue = new_customers * deal_size, deal_size unbounded: both free
    base = evaluate_at(funnel, {}, "revenue")
    result = backcast(funnel, "revenue", 1.44 * base, hold=["mql_rate"])
    ratio = result.to_frame()["ratio"]
    assert ratio["deal_size"] == pytest.approx(1.2)
    assert ratio["new_customers"] == pytest.approx(1.2)
    assert ratio["sns"] == pytest.approx(1.2)
    assert "2 free factors" in result.basis["factors"] and "1/2" in result.basis["factors"]
    assert evaluate_at(funnel, lever_values(funnel, result), "revenue") == pytest.approx(
        1.44 * base, rel=1e-9
    )


def test_other_formulas_are_solved_symbolically_on_the_node_alone() -> None:
    tree = Tree.from_formulas("y = a * b + c", baselines={"a": 2.0, "b": 3.0, "c": 4.0})
    result = backcast(tree, "y", 28.0, hold=["c"])  # 6 s^2 + 4 = 28: s = 2
    assert result.required[["a", "b", "c"]].tolist() == pytest.approx([4, 6, 4], rel=1e-12)
    assert "solved symbolically" in result.basis["factors"]


def test_other_formulas_are_solved_numerically_when_sympy_would_be_slow() -> None:
    tree = Tree.from_formulas("y = sqrt(a) * 10 + a * b", baselines={"a": 4.0, "b": 2.0})
    result = backcast(tree, "y", 60.0)
    s = result.required["a"] / 4.0  # a and b both scale by s: 20 sqrt(s) + 8 s^2 = 60
    assert 20 * math.sqrt(s) + 8 * s**2 == pytest.approx(60, rel=1e-12)
    assert result.required["b"] == pytest.approx(2 * s)
    assert "solved numerically" in result.basis["factors"]
    rates = pd.DataFrame({"b": [1.5, 2.0, 2.5]})
    drawn = backcast(tree, "y", 60.0, hold=["b"], history=rates, n_draws=20)
    b = rates["b"].to_numpy()
    assert sorted(set(drawn.samples["a"].round(9))) == pytest.approx(
        sorted(((-10 + np.sqrt(100 + 240 * b)) / (2 * b)) ** 2)  # 10 sqrt(a) + a b = 60
    )


def test_a_node_needed_by_several_parents_gets_the_largest_requirement() -> None:
    # y = x + z, z = x * w: the sum asks x for 2x, z's product asks x for sqrt(2) x
    tree = Tree.from_formulas("y = x + z\nz = x * w", baselines={"x": 10.0, "w": 1.0})
    result = backcast(tree, "y", 40.0)
    assert result.conflicts == ("x",)
    assert result.required["x"] == pytest.approx(20)
    assert result.achieved == pytest.approx(20 + 20 * math.sqrt(2))
    assert result.achieved >= 40 and "largest requirement" in result.basis["conflicts"]


# --- backcast on the bundled company --------------------------------------------------------


def test_company_revenue_up_twenty_percent_is_hit_by_the_required_levers(company: Tree) -> None:
    base = evaluate_at(company, {}, "revenue")
    result = backcast(company, "revenue", 1.2 * base)
    assert evaluate_at(company, lever_values(company, result), "revenue") == pytest.approx(
        1.2 * base, rel=1e-9
    )
    ratio = result.to_frame()["ratio"]
    assert ratio[["recurring_revenue", "expansion_revenue", "new_revenue"]].tolist() == (
        pytest.approx([1.2, 1.2, 1.2])
    )
    assert ratio[["deal_size", "sns_visits", "arpa", "customers_start"]].tolist() == (
        pytest.approx([math.sqrt(1.2)] * 4)
    )
    frame = result.to_frame()
    assert frame.loc[frame["held"], "ratio"].tolist() == pytest.approx([1.0] * 7)
    assert "demo_rate" not in frame.index  # below a held rate: not listed


def test_company_with_prices_held_every_volume_grows_by_the_goal(company: Tree) -> None:
    base = evaluate_at(company, {}, "revenue")
    result = backcast(company, "revenue", 1.2 * base, hold=["deal_size", "arpa"])
    free = result.to_frame().query("not held")
    assert free["ratio"].tolist() == pytest.approx([1.2] * len(free))
    teams = result.by_team()
    assert teams.index.names == ["team", "node"]
    assert list(dict.fromkeys(teams.index.get_level_values("team"))) == [
        "Management", "Field Sales", "Inside Sales", "Marketing", "Customer Success",
    ]  # fmt: skip
    assert teams.loc[("Inside Sales", "sqls"), "required"] == pytest.approx(59.4 * 1.2)


def test_fitted_company_holds_linked_rates_and_overrides_them(
    company: Tree, history: pd.DataFrame
) -> None:
    fitted = kpitree.fit(company, history)
    state = history.iloc[-1]
    base = float(kpitree.evaluate(fitted, history.iloc[[-1]])["revenue"].iloc[0])
    result = backcast(fitted, "revenue", 1.1 * base, at=state, hold={"win_rate": 0.3})
    frame = result.to_frame()
    assert frame.loc["win_rate", "held"] and frame.loc["win_rate", "required"] == 0.3
    assert "share_3plus_proposals" not in frame.index
    levers = {n: state.get(n, fitted.node(n).baseline) for n in fitted.levers}
    levers |= lever_values(fitted, result)
    scenario = kpitree.what_if(fitted, levers, {"win_rate": 0.3})
    assert scenario.loc["revenue", "scenario"] == pytest.approx(1.1 * base, rel=1e-9)


# --- backcast: errors -----------------------------------------------------------------------


def test_a_sum_whose_held_part_exceeds_the_requirement_is_unreachable() -> None:
    tree = Tree.from_formulas("y = a + b", baselines={"a": 50, "b": 100})
    with pytest.raises(ScenarioError, match="held inputs already give 100") as caught:
        backcast(tree, "y", 80, hold=["b"])
    assert caught.value.node == "y"


def test_a_required_value_outside_bounds_is_unreachable() -> None:
    tree = Tree.from_formulas(
        "y = nps * k", baselines={"nps": 50, "k": 0.5}, bounds={"nps": (-100, 100), "k": (0, 1)}
    )
    with pytest.raises(ScenarioError, match="outside its bounds") as caught:
        backcast(tree, "y", 75)
    assert caught.value.node == "nps"


def test_a_node_with_every_input_held_cannot_move() -> None:
    tree = Tree.from_formulas("y = a * b", baselines={"a": 2, "b": 3})
    with pytest.raises(ScenarioError, match="scaling its free inputs") as caught:
        backcast(tree, "y", 7, hold=["a", "b"])
    assert caught.value.node == "y"


def test_unknown_and_misplaced_names(deals: Tree) -> None:
    with pytest.raises(UnknownNodeError):
        backcast(deals, "new_custmers", 20)
    with pytest.raises(UnknownNodeError):
        backcast(deals, "new_customers", 20, hold=["sql_rat"])
    with pytest.raises(OptionError, match="not upstream") as caught:
        backcast(deals, "sqls", 20, hold=["win_rate"])
    assert caught.value.node == "win_rate"
    with pytest.raises(OptionError, match="finite"):
        backcast(deals, "sqls", math.nan)


# --- backcast with history: P50 and P90 -----------------------------------------------------


def stable_history(tree: Tree, periods: int = 120, noise: float = 0.01) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rates = {n: tree.node(n).baseline for n in ("win_rate", "sql_rate")}
    return pd.DataFrame(
        {n: r * (1 + noise * rng.standard_normal(periods)) for n, r in rates.items()}
    )


def test_history_gives_p50_near_the_point_value_and_p90_above(deals: Tree) -> None:
    result = backcast(deals, "new_customers", 20, history=stable_history(deals))
    frame = result.to_frame()
    free = frame[~frame["held"]]
    assert (free["required_p90"] >= free["required_p50"]).all()
    assert free["required_p50"].tolist() == pytest.approx(free["required"].tolist(), rel=0.01)
    assert frame.loc["mqls", "required_p90"] > frame.loc["mqls", "required"] * 1.005
    assert frame.loc[frame["held"], "required_p90"].isna().all()
    assert result.samples.shape == (1000, 3)
    # with the rates drawn, 90% of draws need at most the P90 volume
    assert (result.samples["mqls"] <= frame.loc["mqls", "required_p90"]).mean() >= 0.9


def test_history_draws_are_reproducible_with_a_seed(deals: Tree) -> None:
    rates = stable_history(deals, noise=0.05)
    first = backcast(deals, "new_customers", 20, history=rates, n_draws=200, seed=3)
    again = backcast(deals, "new_customers", 20, history=rates, n_draws=200, seed=3)
    other = backcast(deals, "new_customers", 20, history=rates, n_draws=200, seed=4)
    pd.testing.assert_frame_equal(first.to_frame(), again.to_frame())
    assert (
        first.to_frame().loc["mqls", "required_p90"] != other.to_frame().loc["mqls", "required_p90"]
    )


def test_history_keeps_correlated_rates_together(deals: Tree) -> None:
    # in every period win_rate * sql_rate = 0.1: whole rows are drawn, so mqls needs 200
    rates = pd.DataFrame({"win_rate": [0.2, 0.25, 0.5], "sql_rate": [0.5, 0.4, 0.2]})
    result = backcast(deals, "new_customers", 20, history=rates, n_draws=50)
    assert result.samples["mqls"].to_numpy() == pytest.approx(np.full(50, 200.0))


def test_history_on_the_company(company: Tree, history: pd.DataFrame) -> None:
    base = evaluate_at(company, {}, "revenue")
    result = backcast(company, "revenue", 1.2 * base, history=history, n_draws=500)
    free = result.to_frame().query("not held")
    assert (free["required_p90"] >= free["required_p50"] - 1e-9).all()
    assert "drawn from 36 periods" in result.basis["uncertainty"]


def test_history_errors(deals: Tree) -> None:
    with pytest.raises(OptionError, match="no column"):
        backcast(deals, "new_customers", 20, history=pd.DataFrame({"other": [1.0, 2.0]}))
    with pytest.raises(OptionError, match="n_draws"):
        backcast(deals, "new_customers", 20, history=stable_history(deals), n_draws=1)
    with pytest.raises(kpitree.DataError) as caught:
        backcast(deals, "new_customers", 20, history=pd.DataFrame({"win_rate": [0.2, None]}))
    assert caught.value.column == "win_rate"


def test_funnel_plot_draws_baseline_and_required(deals: Tree) -> None:
    result = backcast(deals, "new_customers", 20, history=stable_history(deals))
    ax = result.plot()
    bars = {bar.get_gid(): bar.get_width() for bar in ax.patches}
    assert bars == pytest.approx(
        {"new_customers baseline": 15, "sqls baseline": 60, "mqls baseline": 150,
         "new_customers required": 20, "sqls required": 80, "mqls required": 200}
    )  # fmt: skip
    assert [t.get_text() for t in ax.get_yticklabels()] == ["new_customers", "sqls", "mqls"]
    assert any("P90" in text.get_text() for text in ax.texts)
    assert len(kpitree.plot.funnel(result, held=True).get_yticklabels()) == 5


# --- hypothesis: random funnels --------------------------------------------------------------


@st.composite
def funnels(draw: st.DrawFn) -> tuple[Tree, float]:
    """A random funnel: stages of volume * rate (sometimes * a free factor), a sum of
    channels at the bottom, positive baselines, and a goal a factor away from today."""
    depth = draw(st.integers(1, 4))
    positive = st.floats(1.0, 1e5)
    rates = st.floats(0.01, 0.99)
    lines, baselines, bounds = [], {}, {}
    for i in range(depth):
        factors = [f"v{i + 1}", f"r{i}"]
        baselines[f"r{i}"], bounds[f"r{i}"] = draw(rates), (0, 1)
        if draw(st.booleans()):
            factors.append(f"k{i}")
            baselines[f"k{i}"] = draw(positive)
        lines.append(f"v{i} = " + " * ".join(factors))
    channels = [f"c{j}" for j in range(draw(st.integers(1, 4)))]
    lines.append(f"v{depth} = " + " + ".join(channels))
    baselines |= {c: draw(positive) for c in channels}
    tree = Tree.from_formulas("\n".join(lines), baselines=baselines, bounds=bounds)
    return tree, draw(st.floats(0.2, 5.0))


@given(funnels())
def test_backcast_then_evaluate_returns_the_requested_value(case: tuple[Tree, float]) -> None:
    tree, factor = case
    goal = factor * evaluate_at(tree, {}, "v0")
    result = backcast(tree, "v0", goal)
    assert evaluate_at(tree, lever_values(tree, result), "v0") == pytest.approx(goal, rel=1e-9)


# --- goal seek ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "baselines", "vary", "value", "expected"),
    [
        ("y = 3 * x + 2", {"x": 1.0}, "x", 20.0, 6.0),
        ("revenue = customers * arpa", {"customers": 100, "arpa": 5000}, "customers", 6e5, 120),
        ("cpa = cost / leads", {"cost": 1e6, "leads": 500}, "leads", 1600.0, 625.0),
        ("cpa = cost / leads", {"cost": 1e6, "leads": 500}, "cost", 1600.0, 8e5),
        (
            "deals = sqls * win_rate\nwin_rate = 1 / (1 + exp(-(-2 + 3 * demo_rate)))",
            {"sqls": 80, "demo_rate": 0.5},
            "demo_rate",
            30.0,
            (math.log(30 / 50) + 2) / 3,  # logit(30 / 80) = log(30 / 50)
        ),
    ],
)
def test_goal_seek_is_consistent_with_evaluate(
    spec: str, baselines: dict, vary: str, value: float, expected: float
) -> None:
    tree = Tree.from_formulas(spec, baselines=baselines)
    target = tree.outputs[0]
    result = goal_seek(tree, target, value, vary=vary)
    assert result.method == "symbolic"
    assert float(result) == pytest.approx(expected, rel=1e-12)
    assert evaluate_at(tree, {vary: float(result)}, target) == pytest.approx(value, rel=1e-9)
    assert result.achieved == pytest.approx(value, rel=1e-9)


def test_goal_seek_falls_back_to_brentq_without_a_closed_form() -> None:
    tree = Tree.from_formulas(
        "y = x * exp(x) + log(x)", baselines={"x": 1.0}, bounds={"x": (0, None)}
    )
    result = goal_seek(tree, "y", 5.0, vary="x")
    assert result.method == "numeric"
    assert evaluate_at(tree, {"x": result.value}, "y") == pytest.approx(5.0, rel=1e-9)
    assert result.value * math.exp(result.value) + math.log(result.value) == pytest.approx(5.0)


def test_goal_seek_picks_the_root_nearest_the_current_value() -> None:
    tree = Tree.from_formulas("y = (x - 3) ** 2", baselines={"x": 4.5})
    assert goal_seek(tree, "y", 1.0, vary="x").value == pytest.approx(4.0)
    assert goal_seek(tree, "y", 1.0, vary="x", at={"x": 1.0}).value == pytest.approx(2.0)
    assert goal_seek(tree, "y", 1.0, vary="x", bounds=(None, 3)).value == pytest.approx(2.0)


def test_goal_seek_on_a_computed_node_overrides_it(funnel: Tree) -> None:
    result = goal_seek(funnel, "revenue", 3e7, vary="sqls")
    assert result.value == pytest.approx(3e7 / 2e6 / 0.25)
    frame = result.to_frame()
    assert list(frame.index) == ["sqls", "revenue"]
    assert list(frame.columns) == ["owner", "current", "new", "change", "ratio"]
    assert frame.loc["sqls", "owner"] == "Inside Sales"
    assert kpitree.what_if(funnel, None, {"sqls": result.value}).loc["revenue", "scenario"] == (
        pytest.approx(3e7, rel=1e-9)
    )


def test_goal_seek_on_the_fitted_company(company: Tree, history: pd.DataFrame) -> None:
    fitted = kpitree.fit(company, history)
    state = history.iloc[-1]
    base = float(kpitree.evaluate(fitted, history.iloc[[-1]])["revenue"].iloc[0])
    result = goal_seek(fitted, "revenue", 1.005 * base, vary="share_3plus_proposals", at=state)
    moved = history.iloc[[-1]].assign(share_3plus_proposals=result.value)
    assert kpitree.evaluate(fitted, moved)["revenue"].iloc[0] == pytest.approx(
        1.005 * base, rel=1e-9
    )


def test_goal_seek_out_of_reach_names_the_range(deals: Tree) -> None:
    with pytest.raises(ScenarioError, match=r"ranges from 0 to 150") as caught:
        goal_seek(deals, "sqls", 200, vary="sql_rate")  # 150 mqls * sql_rate in [0, 1]
    assert caught.value.node == "sqls"
    assert caught.value.reachable == pytest.approx((0, 150))
    with pytest.raises(ScenarioError, match=r"within \[0, 0.5\]"):
        goal_seek(deals, "sqls", 100, vary="sql_rate", bounds=(0, 0.5))


def test_goal_seek_options(deals: Tree) -> None:
    with pytest.raises(OptionError, match="does not read"):
        goal_seek(deals, "sqls", 10, vary="win_rate")
    with pytest.raises(UnknownNodeError):
        goal_seek(deals, "sqls", 10, vary="mql")
    with pytest.raises(OptionError, match="not an interval"):
        goal_seek(deals, "sqls", 10, vary="sql_rate", bounds=(0, 2))
    result = goal_seek(deals, "sqls", 75, vary="mqls")
    assert "Goal seek: mqls = 187.5" in result.summary()
    with pytest.raises(OptionError):
        result.plot()


def test_root_near_prefers_the_root_nearest_the_start() -> None:
    square = lambda x: (x - 3) ** 2  # noqa: E731
    assert root_near(square, 10.0, -math.inf, math.inf, value=4.0) == pytest.approx(5.0)
    assert root_near(square, -10.0, -math.inf, math.inf, value=4.0) == pytest.approx(1.0)


# --- allocation -------------------------------------------------------------------------------


@pytest.fixture
def linear() -> Tree:
    # per unit of y: a costs 0.5 (room +10 y), c costs 1 (room +100 y), b costs 2 (room +15 y)
    return Tree.from_formulas(
        "y = 2 * a + 3 * b + c",
        owners={"a": "Marketing", "b": "Sales", "c": "Success"},
        bounds={"a": (0, 10), "b": (0, 10), "c": (0, 100)},
        baselines={"a": 5, "b": 5, "c": 0},
    )


COSTS = {"a": 1.0, "b": 6.0, "c": 1.0}


@pytest.mark.parametrize(
    ("value", "planned", "cost"),
    [
        (30, {"a": 7.5, "b": 5, "c": 0}, 2.5),  # a alone
        (50, {"a": 10, "b": 5, "c": 15}, 20),  # a to its bound, then c
        (140, {"a": 10, "b": 5 + 5 / 3, "c": 100}, 115),  # a, c to their bounds, then b
    ],
)
def test_allocation_uses_the_cheapest_lever_per_unit_first(
    linear: Tree, value: float, planned: dict, cost: float
) -> None:
    result = allocate(linear, "y", levers=["a", "b", "c"], costs=COSTS, value=value)
    frame = result.to_frame()
    assert list(frame.columns) == ["owner", "current", "planned", "change", "unit_cost", "cost"]
    assert frame["planned"].to_dict() == pytest.approx(planned, rel=1e-7, abs=1e-7)
    assert result.total_cost == pytest.approx(cost, rel=1e-7)
    assert result.achieved >= value - 1e-9 * value
    assert evaluate_at(linear, frame["planned"].to_dict(), "y") == pytest.approx(result.achieved)
    teams = result.by_team()
    assert teams["cost"].sum() == pytest.approx(cost, rel=1e-7)
    assert teams.loc["Marketing", "levers_moved"] == 1


def test_allocation_moves_a_lever_down_when_that_helps() -> None:
    tree = Tree.from_formulas(
        "y = a - d", baselines={"a": 10, "d": 10}, bounds={"a": (0, None), "d": (0, 10)}
    )
    result = allocate(tree, "y", levers=["a", "d"], costs={"a": 3, "d": 1}, value=5)
    assert result.to_frame()["planned"].to_dict() == pytest.approx({"a": 10, "d": 5})
    assert result.total_cost == pytest.approx(5)


def test_allocation_on_a_product_splits_the_effort() -> None:
    tree = Tree.from_formulas(
        "y = a * b", baselines={"a": 1, "b": 1}, bounds={"a": (0, None), "b": (0, None)}
    )
    result = allocate(tree, "y", levers=["a", "b"], costs={"a": 1, "b": 1}, value=4)
    # minimise u + w with (1 + u)(1 + w) = 4: u = w = 1
    assert result.to_frame()["planned"].tolist() == pytest.approx([2, 2], rel=1e-6)
    assert result.total_cost == pytest.approx(2, rel=1e-6)


def test_allocation_with_a_budget_maximises_the_target(linear: Tree) -> None:
    result = allocate(linear, "y", levers=["a", "b", "c"], costs=COSTS, budget=20)
    assert result.to_frame()["planned"].to_dict() == pytest.approx(
        {"a": 10, "b": 5, "c": 15}, rel=1e-7
    )
    assert result.total_cost <= 20 * (1 + 1e-12)
    assert result.achieved == pytest.approx(50, rel=1e-9)
    assert "within a budget of 20" in result.title()


def test_allocation_out_of_reach_is_an_error(linear: Tree) -> None:
    with pytest.raises(ScenarioError, match="the most they reach is 150") as caught:
        allocate(linear, "y", levers=["a", "b", "c"], costs=COSTS, value=200)
    assert caught.value.node == "y"


def test_allocation_on_the_company(company: Tree) -> None:
    base = evaluate_at(company, {}, "revenue")
    levers = ["sns_visits", "ad_visits", "deal_size", "arpa"]
    costs = {"sns_visits": 100, "ad_visits": 300, "deal_size": 50, "arpa": 2000}
    result = allocate(company, "revenue", levers=levers, costs=costs, value=1.01 * base)
    # revenue per visit: 0.02 * 0.45 * 0.4 * 0.55 * 0.22 * 180,000 = 78.4 for 100 per visit,
    # the cheapest per unit of revenue (arpa: 997.9 for 2,000; deal size 13.1 for 50)
    per_visit = 0.02 * 0.45 * 0.4 * 0.55 * 0.22 * 180_000
    frame = result.to_frame()
    assert frame.loc["sns_visits", "change"] == pytest.approx(0.01 * base / per_visit, rel=1e-7)
    assert frame.loc[["ad_visits", "deal_size", "arpa"], "change"].tolist() == [0, 0, 0]
    assert result.by_team().index[0] == "Marketing"
    ax = result.plot()
    assert ax.patches[0].get_gid() == "Marketing"


def test_allocation_options(linear: Tree, funnel: Tree) -> None:
    levers = ["a", "b", "c"]
    with pytest.raises(OptionError, match="either value"):
        allocate(linear, "y", levers=levers, costs=COSTS)
    with pytest.raises(OptionError, match="either value"):
        allocate(linear, "y", levers=levers, costs=COSTS, value=1, budget=1)
    with pytest.raises(OptionError, match="no cost"):
        allocate(linear, "y", levers=levers, costs={"a": 1}, value=30)
    with pytest.raises(OptionError, match="not an input"):
        allocate(funnel, "revenue", levers=["sqls"], costs={"sqls": 1}, value=1)
    with pytest.raises(OptionError, match="costs nothing"):
        unbounded = Tree.from_formulas("y = a", baselines={"a": 1})
        allocate(unbounded, "y", levers=["a"], costs={"a": 0}, budget=5)
    with pytest.raises(OptionError, match="outside them today"):
        allocate(linear, "y", levers=levers, costs=COSTS, value=30, bounds={"a": (6, 10)})
    assert allocate(linear, "y", levers=levers, costs=COSTS, value=10).total_cost == 0
    narrow = allocate(linear, "y", levers=levers, costs=COSTS, value=30, bounds={"a": (0, 6)})
    assert narrow.to_frame()["planned"].to_dict() == pytest.approx({"a": 6, "b": 5, "c": 3})
