"""What-if scenarios on levers and on computed nodes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import kpitree
from kpitree import DataError, ScenarioError, Tree, UnknownNodeError
from kpitree.scenario import apply_change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (5000, 5000.0), (0.5, 0.5), ("=250", 250.0), ("250", 250.0), ("+10%", 220.0),
        ("-25%", 150.0), ("*1.5", 300.0), ("/4", 50.0), ("+500", 700.0), ("-50", 150.0),
        (" * 2 ", 400.0), ("+1e3", 1200.0),
    ],
)  # fmt: skip
def test_change_forms(change: object, expected: float) -> None:
    assert apply_change(200.0, change) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("change", ["x5", "10%", "*", "+-5", "/0", True, None, [1]])
def test_unreadable_changes(change: object) -> None:
    with pytest.raises(ScenarioError) as info:
        apply_change(1.0, change, node="win_rate")  # type: ignore[arg-type]
    assert info.value.node == "win_rate" and "win_rate" in str(info.value)


def test_what_if_on_a_lever_by_hand(funnel: Tree) -> None:
    table = kpitree.what_if(funnel, None, {"win_rate": "+10%", "ads": 2000})
    assert list(table.columns) == ["baseline", "scenario", "delta", "pct_change"]
    assert list(table.index) == list(funnel.nodes)
    # visits 5,000 -> 6,000; win rate 0.25 -> 0.275: revenue 10M -> 6000*.02*.5*.4*.275*2M
    assert table.loc["revenue", "baseline"] == pytest.approx(10_000_000)
    assert table.loc["revenue", "scenario"] == pytest.approx(13_200_000)
    assert table.loc["revenue", "delta"] == pytest.approx(3_200_000)
    assert table.loc["revenue", "pct_change"] == pytest.approx(0.32)
    assert table.loc["sqls", "pct_change"] == pytest.approx(0.2)
    assert table.loc["deal_size", "delta"] == 0


def test_what_if_overrides_a_computed_node(funnel: Tree) -> None:
    table = kpitree.what_if(funnel, None, {"leads": "*1.2"})
    assert table.loc["leads", "scenario"] == pytest.approx(120)
    assert table.loc["revenue", "scenario"] == pytest.approx(12_000_000)
    assert table.loc["visits", "delta"] == 0  # upstream of the override is unchanged


def test_what_if_against_a_given_baseline(funnel: Tree) -> None:
    state = pd.Series({"sns": 0.0, "search": 0.0, "ads": 10_000.0})
    table = kpitree.what_if(funnel, state, {"request_rate": "=0.01"})
    assert table.loc["revenue", "baseline"] == pytest.approx(20_000_000)
    assert table.loc["revenue", "scenario"] == pytest.approx(10_000_000)
    one_row = pd.DataFrame([state])
    from_frame = kpitree.what_if(funnel, one_row, {"request_rate": "=0.01"})
    pd.testing.assert_frame_equal(from_frame, table)


def test_pct_change_is_relative_to_the_size_of_the_baseline() -> None:
    tree = Tree.from_formulas("profit = revenue - cost", baselines={"revenue": 100, "cost": 200})
    table = kpitree.what_if(tree, None, {"revenue": "+150", "cost": 0.0})
    assert table.loc["profit", "baseline"] == -100
    assert table.loc["profit", "delta"] == 350
    assert table.loc["profit", "pct_change"] == pytest.approx(3.5)
    assert table.loc["cost", "pct_change"] == -1.0
    zero = Tree.from_formulas("y = x * 2", baselines={"x": 0.0})
    assert math.isnan(kpitree.what_if(zero, None, {"x": 1}).loc["y", "pct_change"])


def test_scenarios_side_by_side(funnel: Tree) -> None:
    table = kpitree.scenarios(
        funnel, None, {"more ads": {"ads": "+1000"}, "better close": {"win_rate": 0.5}}
    )
    assert list(table.columns) == ["baseline", "more ads", "better close"]
    assert table.loc["revenue"].tolist() == pytest.approx([10e6, 12e6, 20e6])


def test_scenario_errors(funnel: Tree) -> None:
    with pytest.raises(UnknownNodeError, match="did you mean 'win_rate'"):
        kpitree.what_if(funnel, None, {"winrate": "+10%"})
    with pytest.raises(DataError, match="'win_rate' is outside its bounds") as info:
        kpitree.what_if(funnel, None, {"win_rate": "*5"})
    assert info.value.column == "win_rate"
    with pytest.raises(ScenarioError, match="one state; got 2 rows"):
        kpitree.what_if(funnel, pd.DataFrame({"ads": [1.0, 2.0]}), {"ads": 3})
    with pytest.raises(ScenarioError, match="'ads' has many values"):
        kpitree.what_if(funnel, {"ads": [1.0, 2.0]}, {"ads": 3})
