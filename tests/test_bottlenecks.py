"""kpitree.bottlenecks: gaps against plan, explained exactly, and the walk to the cause."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import kpitree
from kpitree import Tree
from kpitree.errors import OptionError

FUNNEL = """
new_customers = sqls * win_rate
sqls = appointments * sql_rate
appointments = mqls * appointment_rate
mqls = leads * mql_rate
leads = sns + search + ads
"""
OWNERS = {
    "leads": "Marketing", "sns": "Marketing", "search": "Marketing", "ads": "Marketing",
    "mqls": "Marketing", "mql_rate": "Marketing", "appointments": "Inside Sales",
    "appointment_rate": "Inside Sales", "sqls": "Inside Sales", "sql_rate": "Inside Sales",
    "new_customers": "Field Sales", "win_rate": "Field Sales",
}  # fmt: skip
PLAN = {
    "sns": 200.0, "search": 500.0, "ads": 300.0, "mql_rate": 0.3,
    "appointment_rate": 0.5, "sql_rate": 0.6, "win_rate": 0.25,
}  # fmt: skip


@pytest.fixture
def funnel() -> Tree:
    return Tree.from_formulas(FUNNEL, owners=OWNERS)


def test_an_sql_shortfall_from_worse_leads_points_at_marketing(funnel: Tree) -> None:
    actual = PLAN | {"mql_rate": 0.2}  # marketing's leads qualify less; inside sales on plan
    found = kpitree.bottlenecks(funnel, actual, PLAN, target="sqls")
    assert found.path == ("sqls", "appointments", "mqls", "mql_rate")
    assert found.top == "mql_rate" and found.table.loc["mql_rate", "owner"] == "Marketing"
    # by hand: sqls = 1000 * rate * 0.5 * 0.6 goes from 90 to 60
    table = found.to_frame()
    assert table.loc["sqls", "plan"] == pytest.approx(90.0)
    assert table.loc["sqls", "actual"] == pytest.approx(60.0)
    assert table.loc["sqls", "gap"] == pytest.approx(-30.0)
    assert table.loc["mqls", "gap_pct"] == pytest.approx(-100 / 3)
    # one input changed: it explains the whole gap, and so does every node above it
    for node in found.path:
        assert table.loc[node, "explained"] == pytest.approx(-30.0)
        assert table.loc[node, "share"] == pytest.approx(1.0)
    assert np.isnan(table.loc["sql_rate", "explained"])  # on plan: explains nothing


def test_the_walk_follows_the_largest_part_of_the_gap(funnel: Tree) -> None:
    # inside sales' SQL rate falls a lot, marketing's traffic a little
    actual = PLAN | {"sql_rate": 0.4, "search": 450.0}
    found = kpitree.bottlenecks(funnel, actual, PLAN, target="new_customers")
    assert found.path == ("new_customers", "sqls", "sql_rate")
    table = found.to_frame()
    explained = table["explained"]
    # the two causes' Shapley parts add up to the gap exactly
    assert explained["sql_rate"] + explained["search"] == pytest.approx(table.loc[
        "new_customers", "gap"], rel=1e-12)  # fmt: skip
    # two-player Shapley by hand: v(sql) = 950*.15*.4*.25, v(search) = ...
    base, traffic = 1000 * 0.3 * 0.5, 950 * 0.3 * 0.5
    sql_part = 0.5 * ((0.4 - 0.6) * base + (0.4 - 0.6) * traffic) * 0.25
    assert explained["sql_rate"] == pytest.approx(sql_part, rel=1e-12)
    # the table is ranked: the largest shortfall first
    assert table.index[0] in ("new_customers", "sqls", "sql_rate")
    assert list(table["explained"].dropna()) == sorted(table["explained"].dropna())


def test_a_surplus_walks_towards_the_largest_gain(funnel: Tree) -> None:
    actual = PLAN | {"win_rate": 0.3, "ads": 290.0}
    found = kpitree.bottlenecks(funnel, actual, PLAN, target="new_customers")
    assert found.path == ("new_customers", "win_rate")
    assert found.table.loc["win_rate", "explained"] > 0


def test_fitted_company_against_its_baselines() -> None:
    company = kpitree.datasets.load_b2b()
    history = kpitree.datasets.simulate_b2b()
    fitted = kpitree.fit(company, history)
    plan = {name: fitted.node(name).baseline for name in fitted.levers}
    actual = dict(plan, icp_fit_share=0.35)  # worse lead fit: fewer MQLs
    found = kpitree.bottlenecks(fitted, actual, plan, target="revenue")
    assert found.top == "icp_fit_share" and "mql_rate" in found.path
    gap = kpitree.evaluate(fitted, actual)["revenue"][0] - kpitree.evaluate(fitted, plan)[
        "revenue"][0]  # fmt: skip
    assert found.table.loc["revenue", "gap"] == pytest.approx(gap, rel=1e-12)
    assert found.table.loc["revenue", "explained"] == pytest.approx(gap, rel=1e-9)


def test_one_state_each_and_the_plot(funnel: Tree) -> None:
    rows = pd.DataFrame([PLAN, PLAN])
    with pytest.raises(OptionError):
        kpitree.bottlenecks(funnel, rows, rows, target="sqls")
    found = kpitree.bottlenecks(funnel, PLAN | {"mql_rate": 0.2}, PLAN, target="sqls")
    ax = found.plot()
    boxes = {p.get_gid(): p for p in ax.patches if p.get_gid()}
    red = matplotlib.colors.to_rgba("#d62728")
    assert boxes["mql_rate"].get_facecolor()[:3] == pytest.approx(red[:3])
    assert boxes["sql_rate"].get_facecolor() == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert "Bottleneck of 'sqls': sqls -> appointments -> mqls -> mql_rate" in found.summary()
    plt.close("all")
