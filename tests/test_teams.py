"""Team rankings: brute-force team swings, linear swings, Sobol totals, costs, intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kpitree
from kpitree import Tree
from kpitree.errors import OptionError

TABLE_COLUMNS = [
    "impact",
    "impact_pct",
    "share",
    "rank",
    "ci_low",
    "ci_high",
    "p_first",
    "n_levers",
]

# profit rises with some levers and falls with others (cpc, handling, churn); Marketing's
# visits raise revenue and cost at once, and its levers interact (visits x conversion)
PROFIT = """
profit = revenue - cost
revenue = customers * arpa
customers = leads * win_rate + base * (1 - churn)
leads = visits * conversion
cost = visits * cpc + leads * handling
"""
BASELINES = {
    "visits": 10_000.0,
    "conversion": 0.02,
    "cpc": 1.5,
    "win_rate": 0.25,
    "handling": 30.0,
    "arpa": 1_000.0,
    "base": 100.0,
    "churn": 0.05,
}
OWNERS = {
    "visits": "Marketing",
    "conversion": "Marketing",
    "cpc": "Marketing",
    "win_rate": "Sales",
    "handling": "Sales",
    "arpa": "Success",
    "base": "Success",
    "churn": "Success",
}


@pytest.fixture(scope="module")
def profit() -> Tree:
    return Tree.from_formulas(
        PROFIT,
        baselines=BASELINES,
        owners=OWNERS,
        bounds={"conversion": (0, 1), "win_rate": (0, 1), "churn": (0, 1)},
    )


@pytest.fixture(scope="module")
def fitted_b2b() -> tuple[kpitree.FittedTree, pd.DataFrame]:
    history = kpitree.datasets.simulate_b2b()
    return kpitree.fit(kpitree.datasets.load_b2b(), history), history


def team_of(tree: Tree, lever: str) -> str:
    return tree.owner(lever) or "(no owner)"


def brute_force_tornado(
    tree: Tree,
    target: str,
    state: Mapping[str, float],
    ranges: Mapping[str, tuple[float, float]],
    params: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Team impacts by kpitree.evaluate: row per coefficient set (estimates, then draws).

    Each lever's better end is decided one at a time; then all of a team's levers go
    to their better ends versus their worse ends, the others staying in ``state``.
    """
    sets = (
        [dict(tree.parameters)]
        if params is None
        else [dict(tree.parameters), *params.to_dict("records")]
    )
    teams: dict[str, list[str]] = {}
    for lever in ranges:
        teams.setdefault(team_of(tree, lever), []).append(lever)
    impacts = []
    for coefficients in sets:
        base = dict(state) | coefficients
        rows = [base | {lever: end} for lever, ends in ranges.items() for end in ends]
        moved = kpitree.evaluate(tree, pd.DataFrame(rows), nodes=[target])[target].to_numpy()
        better, worse = {}, {}
        for i, (lever, (low, high)) in enumerate(ranges.items()):
            raises = moved[2 * i + 1] >= moved[2 * i]
            better[lever], worse[lever] = (high, low) if raises else (low, high)
        rows = []
        for names in teams.values():
            rows.append(base | {name: better[name] for name in names})
            rows.append(base | {name: worse[name] for name in names})
        ends = kpitree.evaluate(tree, pd.DataFrame(rows), nodes=[target])[target].to_numpy()
        impacts.append(ends[0::2] - ends[1::2])
    return pd.DataFrame(impacts, columns=list(teams))


def relative_ranges(values: Mapping[str, float], share: float) -> dict[str, tuple[float, float]]:
    return {k: (v * (1 - share), v * (1 + share)) for k, v in values.items()}


def lever_state(tree: Tree, target: str, at: Mapping[str, float] | pd.Series) -> dict[str, float]:
    given = dict(at)
    upstream = set(tree.upstream(target))
    levers = [name for name in tree.levers if name in upstream]
    return {k: float(given[k]) if k in given else float(tree.node(k).baseline) for k in levers}


# --- tornado ----------------------------------------------------------------------------


def test_the_docstring_company_by_hand() -> None:
    tree = Tree.from_formulas(
        "revenue = leads * win_rate * deal_size",
        baselines={"leads": 100, "win_rate": 0.2, "deal_size": 50},
        owners={"leads": "Marketing", "win_rate": "Sales", "deal_size": "Sales"},
    )
    for method in ("tornado", "elasticity"):
        ranking = kpitree.rank_teams(tree, "revenue", ranges="±10%", method=method)
        frame = ranking.to_frame()
        # Sales: 1000 (1.1^2 - 0.9^2) = 400; Marketing: 1000 (1.1 - 0.9) = 200; the linear
        # swing is the same: 2 x 0.2 x 1000 for Sales
        assert frame["impact"].to_dict() == pytest.approx({"Sales": 400.0, "Marketing": 200.0})
        assert frame["impact_pct"].to_dict() == pytest.approx({"Sales": 40.0, "Marketing": 20.0})
        assert frame["share"].to_dict() == pytest.approx({"Sales": 2 / 3, "Marketing": 1 / 3})
        assert frame["rank"].tolist() == [1, 2]
        assert frame["n_levers"].to_dict() == {"Sales": 2, "Marketing": 1}
        assert ranking.target_value == 1000.0
        assert ranking.levers == {"Marketing": ("leads",), "Sales": ("win_rate", "deal_size")}


def test_tornado_ranking_equals_moving_each_teams_levers_together(profit: Tree) -> None:
    ranking = kpitree.rank_teams(profit, "profit")
    frame = ranking.to_frame()
    assert list(frame.columns) == TABLE_COLUMNS
    assert frame.index.name == "team"
    expected = brute_force_tornado(profit, "profit", BASELINES, relative_ranges(BASELINES, 0.1))
    np.testing.assert_allclose(
        frame["impact"].to_numpy(), expected.iloc[0][frame.index].to_numpy(), rtol=1e-12
    )
    base = kpitree.evaluate(profit, nodes=["profit"])["profit"].iloc[0]
    assert ranking.target_value == pytest.approx(base, rel=1e-14)
    np.testing.assert_allclose(frame["impact_pct"], 100 * frame["impact"] / abs(base), rtol=1e-14)
    np.testing.assert_allclose(frame["share"], frame["impact"] / frame["impact"].sum(), rtol=1e-14)
    assert frame["share"].sum() == pytest.approx(1.0, abs=1e-14)
    assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
    assert (np.diff(frame["impact"].to_numpy()) <= 0).all()
    assert frame["n_levers"].to_dict() == {"Marketing": 3, "Sales": 2, "Success": 3}
    assert ranking.detail is None
    assert ranking.basis == {
        "method": "tornado (each team's levers moved together across their ranges)",
        "ranges": "±10%",
        "target": f"profit = {base:,.0f}",
        "uncertainty": "none: the tree has no fitted links (intervals are NaN)",
    }
    assert frame[["ci_low", "ci_high", "p_first"]].isna().all().all()


def test_a_team_swing_includes_its_interactions_and_levers_that_lower_the_target(
    profit: Tree,
) -> None:
    """Sales moves win_rate up and handling cost down at once: the swing by hand."""
    ranges = {"win_rate": (0.2, 0.3), "handling": (20.0, 40.0)}
    frame = kpitree.rank_teams(profit, "profit", ranges=ranges).to_frame()
    assert list(frame.index) == ["Sales"]  # only the levers given move
    # leads = 200; profit = 200 win_rate 1000 + ... - 200 handling
    best = 200 * 0.3 * 1000 - 200 * 20.0
    worst = 200 * 0.2 * 1000 - 200 * 40.0
    assert frame.loc["Sales", "impact"] == pytest.approx(best - worst, rel=1e-13)
    assert frame.loc["Sales", "n_levers"] == 2
    # Marketing's levers interact: profit = visits (conversion 220 - 1.5) + const, so
    # the team swing is (14000 (0.04 220 - 1.5)) - (10000 (0.02 220 - 1.5)) = 73,200,
    # more than the one-at-a-time swings 4000 (0.02 220 - 1.5) + 10000 0.02 220 = 55,600
    marketing = {"visits": (10_000.0, 14_000.0), "conversion": (0.02, 0.04)}
    team = kpitree.rank_teams(profit, "profit", ranges=marketing).to_frame()
    swings = kpitree.tornado(profit, "profit", ranges=marketing).to_frame()["swing"]
    assert team.loc["Marketing", "impact"] == pytest.approx(73_200.0, rel=1e-13)
    assert swings.sum() == pytest.approx(55_600.0, rel=1e-13)
    expected = brute_force_tornado(profit, "profit", BASELINES, marketing)
    assert team.loc["Marketing", "impact"] == pytest.approx(expected.loc[0, "Marketing"])


@settings(max_examples=25, deadline=None)
@given(
    shares=st.lists(st.floats(0.01, 0.6), min_size=8, max_size=8),
    scale=st.lists(st.floats(0.3, 3.0), min_size=8, max_size=8),
)
def test_tornado_ranking_equals_brute_force_at_random_states(
    profit: Tree, shares: list[float], scale: list[float]
) -> None:
    at = {k: v * s for (k, v), s in zip(BASELINES.items(), scale, strict=True)}
    at["churn"] = min(at["churn"], 0.3)
    at["conversion"] = min(at["conversion"], 0.05)
    at["win_rate"] = min(at["win_rate"], 0.6)
    ranges = {k: (v * (1 - s), v * (1 + s)) for (k, v), s in zip(at.items(), shares, strict=True)}
    frame = kpitree.rank_teams(profit, "profit", at=at, ranges=ranges).to_frame()
    expected = brute_force_tornado(profit, "profit", at, ranges).iloc[0]
    np.testing.assert_allclose(
        frame["impact"].to_numpy(), expected[frame.index].to_numpy(), rtol=1e-10
    )
    assert (frame["impact"] >= 0).all()  # better end minus worse end
    assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
    assert (np.diff(frame["impact"].to_numpy()) <= 0).all()


# --- elasticity and Sobol bases ---------------------------------------------------------


def test_elasticity_ranking_is_the_summed_linear_swing(profit: Tree) -> None:
    at = {"visits": 12_000.0, "win_rate": 0.3, "churn": 0.1}
    ranking = kpitree.rank_teams(profit, "profit", at=at, method="elasticity", ranges="±20%")
    frame = ranking.to_frame()
    state = lever_state(profit, "profit", at)
    derivatives = kpitree.elasticities(profit, "profit", at=state).derivatives.iloc[0]
    expected: dict[str, float] = {}
    for lever, value in state.items():
        width = 0.4 * value  # ±20%: high - low
        team = OWNERS[lever]
        expected[team] = expected.get(team, 0.0) + abs(derivatives[lever]) * width
    assert frame["impact"].to_dict() == pytest.approx(expected, rel=1e-12)
    # and by hand for Sales: d profit / d win_rate = leads arpa, d / d handling = -leads
    leads = 12_000 * 0.02
    sales = leads * 1_000 * 0.4 * 0.3 + leads * 0.4 * 30.0
    assert frame.loc["Sales", "impact"] == pytest.approx(sales, rel=1e-12)
    assert ranking.basis["method"] == "elasticity (linear swing: sum of |derivative| x range)"
    assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
    assert frame["share"].sum() == pytest.approx(1.0)


def test_elasticity_ranking_keeps_the_other_levers_at_the_given_state() -> None:
    tree = Tree.from_formulas(
        "y = a * b", baselines={"a": 1.0, "b": 1.0}, owners={"a": "A", "b": "B"}
    )
    at, ranges = {"b": 5.0}, {"a": (0.0, 1.0)}
    tornado = kpitree.rank_teams(tree, "y", at=at, ranges=ranges).to_frame()
    linear = kpitree.rank_teams(tree, "y", at=at, ranges=ranges, method="elasticity").to_frame()
    # y is linear in a: dy/da = b = 5 over a range of width 1, exactly as the team swing
    assert tornado.loc["A", "impact"] == pytest.approx(5.0)
    assert linear.loc["A", "impact"] == pytest.approx(5.0)


def test_sobol_ranking_is_the_team_total_index(profit: Tree) -> None:
    at = {"churn": 0.2, "arpa": 1_500.0}
    ranking = kpitree.rank_teams(
        profit, "profit", at=at, method="sobol", n=512, seed=3, progress=False
    )
    frame = ranking.to_frame()
    indices = kpitree.sobol(
        profit, "profit", at=at, n=512, seed=3, groups="owner", progress=False
    ).to_frame()
    total, half = indices["ST"], indices["ST_conf"]
    assert set(frame.index) == set(indices.index) == {"Marketing", "Sales", "Success"}
    for team in frame.index:
        assert frame.loc[team, "impact"] == total[team]
        assert frame.loc[team, "impact_pct"] == pytest.approx(100 * total[team], rel=1e-15)
        assert frame.loc[team, "share"] == pytest.approx(total[team] / total.sum(), rel=1e-15)
        assert frame.loc[team, "ci_low"] == pytest.approx(total[team] - half[team], rel=1e-15)
        assert frame.loc[team, "ci_high"] == pytest.approx(total[team] + half[team], rel=1e-15)
    assert frame["p_first"].isna().all()
    assert frame["rank"].tolist() == [1, 2, 3]
    assert (np.diff(frame["impact"].to_numpy()) <= 0).all()
    assert frame["n_levers"].to_dict() == {"Marketing": 3, "Sales": 2, "Success": 3}
    assert isinstance(ranking.detail, kpitree.SobolIndices)
    pd.testing.assert_frame_equal(ranking.detail.to_frame(), indices)
    assert ranking.basis["method"] == "sobol (total index of the team's levers)"
    assert ranking.basis["uncertainty"] == (
        "sampling: 95% bootstrap (100 resamples) of the total indices (n=512)"
    )


def test_n_levers_counts_the_levers_that_move_for_tornado_and_elasticity(profit: Tree) -> None:
    ranges = {"win_rate": (0.2, 0.3), "visits": (9_000.0, 11_000.0)}
    for method in ("tornado", "elasticity"):
        ranking = kpitree.rank_teams(profit, "profit", ranges=ranges, method=method)
        assert ranking.levers == {"Sales": ("win_rate",), "Marketing": ("visits",)}
        assert ranking.to_frame()["n_levers"].to_dict() == {"Sales": 1, "Marketing": 1}


def test_n_levers_counts_the_levers_that_move_for_sobol(profit: Tree) -> None:
    ranges = {"win_rate": (0.2, 0.3), "visits": (9_000.0, 11_000.0)}
    ranking = kpitree.rank_teams(
        profit, "profit", ranges=ranges, method="sobol", n=256, progress=False
    )
    assert ranking.levers == {"Sales": ("win_rate",), "Marketing": ("visits",)}
    assert ranking.to_frame()["n_levers"].to_dict() == {"Sales": 1, "Marketing": 1}


def test_the_three_methods_agree_on_a_clear_order() -> None:
    """One team's levers dominate a linear target: every basis ranks it first."""
    tree = Tree.from_formulas(
        "y = 10 * a + 8 * b + c + 0.5 * d",
        baselines={"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0},
        owners={"a": "Big", "b": "Big", "c": "Small", "d": "Small"},
    )
    for method in ("tornado", "elasticity", "sobol"):
        frame = kpitree.rank_teams(tree, "y", method=method, n=256, progress=False).to_frame()
        assert list(frame.index) == ["Big", "Small"], method
    swing = kpitree.rank_teams(tree, "y").to_frame()["impact"]
    # linear: team swing = sum of |coefficient| x 0.2
    assert swing.to_dict() == pytest.approx({"Big": 18 * 0.2, "Small": 1.5 * 0.2})
    total = kpitree.rank_teams(tree, "y", method="sobol", n=1024, progress=False).to_frame()
    # uniform ±10% ranges of equal width: variance shares 164 / 165.25 and 1.25 / 165.25
    assert total.loc["Big", "impact"] == pytest.approx(164 / 165.25, abs=0.02)
    assert total.loc["Small", "impact"] == pytest.approx(1.25 / 165.25, abs=0.01)


# --- costs ------------------------------------------------------------------------------


def test_costs_give_cost_and_impact_per_cost(profit: Tree) -> None:
    costs = {
        "visits": 100.0,
        "conversion": 50.0,
        "cpc": 10.0,
        "win_rate": 80.0,
        "handling": 5.0,
        "arpa": 200.0,
        "base": 1.0,
        "churn": 20.0,
    }
    frame = kpitree.rank_teams(profit, "profit", costs=costs).to_frame()
    assert list(frame.columns) == [*TABLE_COLUMNS, "cost", "impact_per_cost"]
    assert frame["cost"].to_dict() == {"Marketing": 160.0, "Sales": 85.0, "Success": 221.0}
    np.testing.assert_allclose(frame["impact_per_cost"], frame["impact"] / frame["cost"])
    plain = kpitree.rank_teams(profit, "profit").to_frame()
    pd.testing.assert_frame_equal(frame[TABLE_COLUMNS], plain)  # costs change no impact


def test_a_team_with_a_lever_missing_a_cost_has_no_cost(profit: Tree) -> None:
    costs = {"visits": 100.0, "cpc": 10.0, "win_rate": 80.0, "handling": 5.0}
    frame = kpitree.rank_teams(profit, "profit", costs=costs, method="elasticity").to_frame()
    assert frame.loc["Sales", "cost"] == 85.0
    assert frame.loc["Sales", "impact_per_cost"] == pytest.approx(frame.loc["Sales", "impact"] / 85)
    for team in ("Marketing", "Success"):  # conversion / every Success lever has no cost
        assert math.isnan(frame.loc[team, "cost"])
        assert math.isnan(frame.loc[team, "impact_per_cost"])


@pytest.mark.parametrize("name", ["nope", "revenue", "leads"])
def test_costs_for_something_that_is_not_a_lever_is_an_option_error(
    profit: Tree, name: str
) -> None:
    with pytest.raises(OptionError, match=repr(name)) as caught:
        kpitree.rank_teams(profit, "profit", costs={"visits": 1.0, name: 2.0})
    assert caught.value.option == "costs"


def test_costs_for_a_lever_that_does_not_move_the_target(profit: Tree) -> None:
    with pytest.raises(OptionError) as caught:  # arpa does not move cost
        kpitree.rank_teams(profit, "cost", costs={"arpa": 1.0})
    assert caught.value.option == "costs"


# --- fitted company: coefficient-draw intervals -----------------------------------------


def test_tornado_intervals_over_coefficient_draws_equal_brute_force(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    ranking = kpitree.rank_teams(tree, "revenue", at=at, n_draws=20, seed=4, level=0.8)
    frame = ranking.to_frame()
    state = lever_state(tree, "revenue", at)
    ranges = relative_ranges(state, 0.1)
    for lever, (low, high) in ranges.items():  # ±10% stays within every lever's bounds
        bounds = tree.node(lever).bounds or (-math.inf, math.inf)
        assert bounds[0] <= low and high <= bounds[1], lever
    draws = tree.sample_params(20, seed=4)
    expected = brute_force_tornado(tree, "revenue", state, ranges, params=draws)
    teams = list(frame.index)
    np.testing.assert_allclose(
        frame["impact"].to_numpy(), expected.iloc[0][teams].to_numpy(), rtol=1e-10
    )
    over_draws = expected.iloc[1:][teams].to_numpy()
    np.testing.assert_allclose(frame["ci_low"], np.quantile(over_draws, 0.1, axis=0), rtol=1e-10)
    np.testing.assert_allclose(frame["ci_high"], np.quantile(over_draws, 0.9, axis=0), rtol=1e-10)
    firsts = np.bincount(over_draws.argmax(axis=1), minlength=len(teams)) / 20
    np.testing.assert_allclose(frame["p_first"].to_numpy(), firsts)
    assert ranking.basis["uncertainty"] == "80% interval over 20 coefficient draws"


def test_elasticity_intervals_over_coefficient_draws_equal_brute_force(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    frame = kpitree.rank_teams(
        tree, "revenue", at=at, method="elasticity", n_draws=30, seed=2
    ).to_frame()
    state = lever_state(tree, "revenue", at)
    draws = tree.sample_params(30, seed=2)
    rows = pd.concat([pd.DataFrame([dict(tree.parameters)]), draws], ignore_index=True).assign(
        **state
    )
    derivatives = kpitree.elasticities(tree, "revenue", at=rows, wrt=list(state)).derivatives
    impacts = pd.DataFrame(0.0, index=rows.index, columns=list(frame.index))
    for lever, value in state.items():
        impacts[team_of(tree, lever)] += derivatives[lever].abs() * 0.2 * abs(value)
    np.testing.assert_allclose(frame["impact"], impacts.iloc[0][frame.index], rtol=1e-10)
    over_draws = impacts.iloc[1:][frame.index].to_numpy()
    np.testing.assert_allclose(frame["ci_low"], np.quantile(over_draws, 0.05, axis=0), rtol=1e-10)
    np.testing.assert_allclose(frame["ci_high"], np.quantile(over_draws, 0.95, axis=0), rtol=1e-10)


@pytest.mark.parametrize("method", ["tornado", "elasticity", "sobol"])
def test_intervals_on_the_fitted_company(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame], method: str
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    options = {"at": at, "method": method, "n": 256, "progress": False}
    ranking = kpitree.rank_teams(tree, "revenue", seed=7, **options)
    frame = ranking.to_frame()
    assert set(frame.index) == {"Marketing", "Inside Sales", "Field Sales", "Customer Success"}
    assert frame["n_levers"].to_dict() == {
        "Marketing": 5,
        "Inside Sales": 2,
        "Field Sales": 3,
        "Customer Success": 5,
    }
    assert (frame["ci_low"] <= frame["impact"]).all()
    assert (frame["impact"] <= frame["ci_high"]).all()
    assert (frame["ci_low"] < frame["ci_high"]).all()  # non-degenerate
    assert frame["share"].sum() == pytest.approx(1.0)
    assert frame["rank"].tolist() == [1, 2, 3, 4]
    if method == "sobol":
        assert frame["p_first"].isna().all()
    else:
        assert frame["p_first"].sum() == pytest.approx(1.0)
        assert frame["p_first"].between(0, 1).all()
        # revenue is mostly recurring: Customer Success leads in every draw
        assert frame.loc["Customer Success", "p_first"] == 1.0
    assert frame.index[0] == "Customer Success"
    again = kpitree.rank_teams(tree, "revenue", seed=7, **options).to_frame()
    pd.testing.assert_frame_equal(frame, again, check_exact=True)
    other = kpitree.rank_teams(tree, "revenue", seed=8, **options).to_frame()
    assert not np.allclose(other.loc[frame.index, "ci_low"], frame["ci_low"])
    if method != "sobol":  # the estimates do not depend on the draws
        np.testing.assert_allclose(other.loc[frame.index, "impact"], frame["impact"], rtol=1e-14)


def test_an_unfitted_tree_has_no_intervals(profit: Tree) -> None:
    for method in ("tornado", "elasticity"):
        ranking = kpitree.rank_teams(profit, "profit", method=method, n_draws=50)
        frame = ranking.to_frame()
        assert frame[["ci_low", "ci_high", "p_first"]].isna().all().all()
        assert ranking.basis["uncertainty"] == (
            "none: the tree has no fitted links (intervals are NaN)"
        )
    # declared but unfitted links are inputs: still no draws
    company = kpitree.datasets.load_b2b()
    frame = kpitree.rank_teams(company, "revenue").to_frame()
    assert frame[["ci_low", "ci_high", "p_first"]].isna().all().all()


# --- option errors ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Tornado", "shapley", "", None])
def test_bad_method_is_an_option_error(profit: Tree, method: object) -> None:
    with pytest.raises(OptionError, match="method must be") as caught:
        kpitree.rank_teams(profit, "profit", method=method)  # type: ignore[arg-type]
    assert caught.value.option == "method"


def test_other_option_errors(
    profit: Tree, fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame]
) -> None:
    tree, history = fitted_b2b
    with pytest.raises(OptionError) as caught:
        kpitree.rank_teams(tree, "revenue", at=history.iloc[-1], n_draws=1)
    assert caught.value.option == "n_draws"
    with pytest.raises(OptionError) as caught:
        kpitree.rank_teams(profit, "profit", at=pd.DataFrame({"visits": [1.0, 2.0]}))
    assert caught.value.option == "at"
    with pytest.raises(OptionError) as caught:
        kpitree.rank_teams(profit, "profit", ranges={"revenue": (0, 1)})
    assert caught.value.option == "ranges"
    with pytest.raises(OptionError) as caught:
        kpitree.rank_teams(profit, "profit", method="sobol", n=100, progress=False)
    assert caught.value.option == "n"
