"""Lever ranges and marginals: rules, bounds, explicit ranges, history, distributions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import kpitree
from kpitree import Tree
from kpitree.errors import DataError, OptionError
from kpitree.ranges import lever_ranges, marginals


@pytest.fixture
def tree() -> Tree:
    return Tree.from_formulas(
        "margin = sqls * win_rate * deal_size - cost",
        bounds={"win_rate": (0, 1), "sqls": (0, None), "deal_size": (0, None)},
        baselines={"sqls": 80, "win_rate": 0.95, "deal_size": 1000, "cost": -50},
    )


VALUES = {"sqls": 80.0, "win_rate": 0.95, "deal_size": 1000.0, "cost": -50.0}
LEVERS = ["sqls", "win_rate", "deal_size", "cost"]


def history_of(values: dict[str, Any]) -> pd.DataFrame:
    """Monthly history, rows in time order."""
    n = len(next(iter(values.values())))
    return pd.DataFrame(values, index=pd.period_range("2024-01", periods=n, freq="M"))


def p10_p90(changes: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(changes, [0.1, 0.9])
    return float(low), float(high)


# --- rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "share", "basis"),
    [("±10%", 0.10, "±10%"), ("+-5%", 0.05, "±5%"), ("10%", 0.10, "±10%"),
     ("+/-2.5%", 0.025, "±2.5%"), (" ± 20 % ", 0.20, "±20%")],
)  # fmt: skip
def test_relative_rules_move_every_lever_by_a_share_of_its_value(
    tree: Tree, rule: str, share: float, basis: str
) -> None:
    levers = ["sqls", "deal_size", "cost"]  # none of these reaches a bound
    table = lever_ranges(tree, levers, VALUES, rule)
    assert list(table.index) == levers and table.index.name == "lever"
    assert list(table.columns) == ["low", "high", "basis"]
    for name in levers:
        value = VALUES[name]
        low, high = sorted((value * (1 - share), value * (1 + share)))
        assert table.loc[name, "low"] == pytest.approx(low, rel=1e-15)
        assert table.loc[name, "high"] == pytest.approx(high, rel=1e-15)
        assert table.loc[name, "basis"] == basis
    # a negative value: low is still below high
    assert table.loc["cost", "low"] == pytest.approx(-50 * (1 + share))
    assert table.loc["cost", "high"] == pytest.approx(-50 * (1 - share))


def test_the_default_rule_is_plus_minus_ten_percent(tree: Tree) -> None:
    pd.testing.assert_frame_equal(
        lever_ranges(tree, LEVERS, VALUES), lever_ranges(tree, LEVERS, VALUES, "±10%")
    )


def test_rules_are_clipped_to_bounds_and_the_basis_says_so(tree: Tree) -> None:
    table = lever_ranges(tree, LEVERS, VALUES, "±10%")
    assert table.loc["win_rate", "low"] == pytest.approx(0.855)
    assert table.loc["win_rate", "high"] == 1.0  # 1.045 is outside [0, 1]
    assert table.loc["win_rate", "basis"] == "±10% (clipped to bounds)"
    assert table.loc["sqls", "basis"] == "±10%"
    low_side = Tree.from_formulas("y = rate * n", bounds={"rate": (0.5, 1)})
    clipped = lever_ranges(low_side, ["rate"], {"rate": 0.52}, "±20%")
    assert clipped.loc["rate", ["low", "high"]].tolist() == pytest.approx([0.5, 0.624])
    assert clipped.loc["rate", "basis"] == "±20% (clipped to bounds)"


def test_bounds_rule_uses_declared_bounds(tree: Tree) -> None:
    table = lever_ranges(tree, ["win_rate"], VALUES, "bounds")
    assert table.loc["win_rate"].tolist() == [0.0, 1.0, "bounds"]


@pytest.mark.parametrize("lever", ["sqls", "cost"])  # open upper bound; no bounds at all
def test_bounds_rule_on_an_unbounded_lever_is_an_option_error(tree: Tree, lever: str) -> None:
    with pytest.raises(OptionError, match=repr(lever)) as caught:
        lever_ranges(tree, [lever], VALUES, "bounds")
    assert caught.value.option == "ranges"


def test_a_rule_that_is_not_one_is_an_option_error(tree: Tree) -> None:
    for bad in ("plus ten", "10", "-10%", "bound"):
        with pytest.raises(OptionError) as caught:
            lever_ranges(tree, ["sqls"], VALUES, bad)
        assert caught.value.option == "ranges"
    with pytest.raises(OptionError) as caught:
        lever_ranges(tree, ["sqls"], VALUES, 5)  # type: ignore[arg-type]
    assert caught.value.option == "ranges"


# --- explicit ranges --------------------------------------------------------------------


def test_explicit_ranges_move_only_the_listed_levers(tree: Tree) -> None:
    table = lever_ranges(
        tree, LEVERS, VALUES, {"win_rate": (0.5, 1.0), "cost": (-80, -20), "sqls": "±25%"}
    )
    assert list(table.index) == ["sqls", "win_rate", "cost"]  # in lever order
    assert table.loc["win_rate"].tolist() == [0.5, 1.0, "explicit"]
    assert table.loc["cost"].tolist() == [-80.0, -20.0, "explicit"]
    assert table.loc["sqls"].tolist() == [60.0, 100.0, "±25%"]
    assert table["low"].dtype == np.float64 and table["high"].dtype == np.float64


@pytest.mark.parametrize(
    "spec",
    [(0.5, 1.2), (-0.1, 0.5), (0.6, 0.5), (float("nan"), 0.5), (0.1, float("inf")), (0.5,),
     "nonsense", 0.5],
)  # fmt: skip
def test_explicit_ranges_outside_bounds_or_reversed_are_option_errors(
    tree: Tree, spec: object
) -> None:
    with pytest.raises(OptionError, match="win_rate") as caught:
        lever_ranges(tree, LEVERS, VALUES, {"win_rate": spec})
    assert caught.value.option == "ranges"


def test_an_explicit_range_on_the_bounds_themselves_is_fine(tree: Tree) -> None:
    table = lever_ranges(tree, LEVERS, VALUES, {"win_rate": (0, 1), "sqls": (0, 1e9)})
    assert table.loc["win_rate", ["low", "high"]].tolist() == [0.0, 1.0]
    assert table.loc["sqls", ["low", "high"]].tolist() == [0.0, 1e9]


@pytest.mark.parametrize(("name", "reason"), [("margin", "computed"), ("churn", "not a node")])
def test_ranges_for_a_non_lever_are_option_errors(tree: Tree, name: str, reason: str) -> None:
    with pytest.raises(OptionError, match=reason) as caught:
        lever_ranges(tree, LEVERS, VALUES, {name: (0, 1)})
    assert caught.value.option == "ranges"


# --- history ----------------------------------------------------------------------------


def test_history_ranges_are_p10_p90_of_observed_changes(tree: Tree) -> None:
    rng = np.random.default_rng(5)
    n = 30
    sqls = 80 * np.exp(np.cumsum(rng.normal(0, 0.1, n)))
    deal_size = 1000 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    cost = np.cumsum(rng.normal(0, 5, n))  # crosses zero: absolute changes
    win_rate = np.clip(rng.uniform(0.2, 0.3, n), 0, 1)
    win_rate[7] = 0.0  # a zero: absolute changes
    history = history_of({"sqls": sqls, "deal_size": deal_size, "cost": cost, "win_rate": win_rate})
    assert (cost < 0).any() and (cost > 0).any()
    values = {"sqls": 90.0, "win_rate": 0.5, "deal_size": 1100.0, "cost": -50.0}
    table = lever_ranges(tree, LEVERS, values, history)
    for name, series in (("sqls", sqls), ("deal_size", deal_size)):
        low, high = p10_p90(series[1:] / series[:-1] - 1)  # pct_change
        assert table.loc[name, "low"] == pytest.approx(values[name] * (1 + low), rel=1e-13)
        assert table.loc[name, "high"] == pytest.approx(values[name] * (1 + high), rel=1e-13)
        assert table.loc[name, "basis"] == "history p10-p90"
    for name, series in (("cost", cost), ("win_rate", win_rate)):
        low, high = p10_p90(np.diff(series))  # absolute diff
        assert table.loc[name, "low"] == pytest.approx(values[name] + low, rel=1e-13)
        assert table.loc[name, "high"] == pytest.approx(values[name] + high, rel=1e-13)
    assert (table["basis"] == "history p10-p90").all()  # nothing reached a bound


def test_history_ranges_are_clipped_to_bounds(tree: Tree) -> None:
    win_rate = np.array([0.5, 0.7, 0.6, 0.9, 0.5, 0.8, 0.9, 0.6])
    history = history_of({"win_rate": win_rate})
    table = lever_ranges(tree, ["win_rate"], {"win_rate": 0.95}, history)
    low, high = p10_p90(win_rate[1:] / win_rate[:-1] - 1)
    assert 0.95 * (1 + high) > 1  # the unclipped range would leave the bounds
    assert table.loc["win_rate", "low"] == pytest.approx(0.95 * (1 + low), rel=1e-13)
    assert table.loc["win_rate", "high"] == 1.0
    assert table.loc["win_rate", "basis"] == "history p10-p90 (clipped to bounds)"


def test_a_history_series_in_a_mapping_and_missing_values(tree: Tree) -> None:
    sqls = np.array([80.0, np.nan, 88.0, 84.0, 92.0, 90.0])
    table = lever_ranges(tree, LEVERS, VALUES, {"sqls": pd.Series(sqls), "cost": (-60, -40)})
    observed = sqls[~np.isnan(sqls)]  # a missing month is skipped, not a change
    low, high = p10_p90(observed[1:] / observed[:-1] - 1)
    assert table.loc["sqls", ["low", "high"]].tolist() == pytest.approx(
        [80 * (1 + low), 80 * (1 + high)], rel=1e-13
    )
    assert list(table.index) == ["sqls", "cost"]


def test_a_missing_history_column_is_a_data_error_naming_it(tree: Tree) -> None:
    history = history_of({"sqls": [80.0, 81, 82], "win_rate": [0.2, 0.3, 0.25]})
    with pytest.raises(DataError, match="'deal_size'") as caught:
        lever_ranges(tree, LEVERS, VALUES, history)
    assert caught.value.column == "deal_size" and caught.value.node == "deal_size"
    with pytest.raises(DataError, match="'cost'") as caught:
        marginals(tree, ["cost"], VALUES, history)
    assert caught.value.column == "cost"


def test_a_history_too_short_is_a_data_error(tree: Tree) -> None:
    history = history_of({"sqls": [80.0, 81.0]})
    with pytest.raises(DataError, match="'sqls'") as caught:
        lever_ranges(tree, ["sqls"], VALUES, history)
    assert caught.value.reason == "too short"


@pytest.fixture(scope="module")
def fitted_b2b() -> tuple[kpitree.FittedTree, pd.DataFrame]:
    history = kpitree.datasets.simulate_b2b()
    return kpitree.fit(kpitree.datasets.load_b2b(), history), history


def test_a_lagged_lever_takes_its_source_column(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    assert "nps_lag3" in tree.levers and "nps_lag3" not in history.columns
    values = {name: float(history[name].iloc[-1]) for name in tree.levers if name != "nps_lag3"}
    values["nps_lag3"] = float(history["nps"].iloc[-4])  # three months earlier
    table = lever_ranges(tree, list(tree.levers), values, history)
    nps = history["nps"].to_numpy()
    assert (nps > 0).all()
    # nps_lag3's history is nps three months earlier: its last three values are not yet seen
    shifted = nps[:-3]
    low, high = p10_p90(shifted[1:] / shifted[:-1] - 1)
    assert table.loc["nps_lag3", "low"] == pytest.approx(values["nps_lag3"] * (1 + low), rel=1e-13)
    assert table.loc["nps_lag3", "high"] == pytest.approx(
        values["nps_lag3"] * (1 + high), rel=1e-13
    )
    # every other lever straight from its own column
    for name in ("sns_visits", "demo_rate", "arpa", "nps"):
        series = history[name].to_numpy()
        low, high = p10_p90(series[1:] / series[:-1] - 1)
        assert table.loc[name, "low"] == pytest.approx(values[name] * (1 + low), rel=1e-13), name
        assert table.loc[name, "high"] == pytest.approx(values[name] * (1 + high), rel=1e-13)


# --- marginals --------------------------------------------------------------------------


def test_uniform_marginals_map_zero_and_one_to_the_range(tree: Tree) -> None:
    laws = marginals(tree, LEVERS, VALUES, "±10%")
    table = lever_ranges(tree, LEVERS, VALUES, "±10%")
    assert list(laws) == LEVERS
    u = np.array([0.0, 0.25, 0.5, 1.0])
    for name in LEVERS:
        low, high = table.loc[name, "low"], table.loc[name, "high"]
        drawn = laws[name].ppf(u)
        assert drawn[0] == pytest.approx(low, rel=1e-15)
        assert drawn[-1] == pytest.approx(high, rel=1e-15)
        np.testing.assert_allclose(drawn, low + u * (high - low), rtol=1e-15)
        assert laws[name].basis == f"uniform {table.loc[name, 'basis']}"
    assert laws["win_rate"].basis == "uniform ±10% (clipped to bounds)"


def test_explicit_ranges_give_uniform_marginals_for_listed_levers_only(tree: Tree) -> None:
    laws = marginals(tree, LEVERS, VALUES, {"win_rate": (0.2, 0.4)})
    assert list(laws) == ["win_rate"]
    assert laws["win_rate"].ppf(np.array([0.0, 0.5, 1.0])).tolist() == pytest.approx(
        [0.2, 0.3, 0.4]
    )


def test_scipy_distributions_are_used_through_their_ppf(tree: Tree) -> None:
    beta = stats.beta(9.5, 0.5)
    lognormal = stats.lognorm(0.2, scale=80)
    u = np.linspace(0.01, 0.99, 9)
    only = marginals(tree, LEVERS, VALUES, distributions={"win_rate": beta, "sqls": lognormal})
    assert list(only) == ["win_rate", "sqls"]  # without ranges nothing else varies
    np.testing.assert_array_equal(only["win_rate"].ppf(u), beta.ppf(u))
    np.testing.assert_array_equal(only["sqls"].ppf(u), lognormal.ppf(u))
    assert only["win_rate"].basis == "beta(9.5, 0.5)"
    assert only["sqls"].basis == "lognorm(0.2, scale=80)"
    mixed = marginals(tree, LEVERS, VALUES, "±10%", {"win_rate": beta})
    assert set(mixed) == set(LEVERS)
    np.testing.assert_array_equal(mixed["win_rate"].ppf(u), beta.ppf(u))
    assert mixed["sqls"].ppf(np.array([0.0, 1.0])).tolist() == pytest.approx([72.0, 88.0])


def test_bad_distributions_are_option_errors(tree: Tree) -> None:
    with pytest.raises(OptionError, match="'margin' is computed") as caught:
        marginals(tree, LEVERS, VALUES, distributions={"margin": stats.norm()})
    assert caught.value.option == "distributions"
    with pytest.raises(OptionError, match="ppf") as caught:
        marginals(tree, LEVERS, VALUES, distributions={"sqls": np.random.default_rng(0)})
    assert caught.value.option == "distributions"


def test_history_marginals_are_the_empirical_changes(tree: Tree) -> None:
    rng = np.random.default_rng(9)
    sqls = 80 * np.exp(np.cumsum(rng.normal(0, 0.1, 25)))
    cost = np.cumsum(rng.normal(0, 5, 25)) - 3  # non-positive values: absolute changes
    win_rate = rng.uniform(0.6, 0.99, 25)
    history = history_of({"sqls": sqls, "cost": cost, "win_rate": win_rate})
    assert (cost <= 0).any()
    laws = marginals(tree, ["sqls", "cost", "win_rate"], VALUES, history)
    u = np.linspace(0, 1, 21)
    relative = sqls[1:] / sqls[:-1] - 1
    np.testing.assert_allclose(laws["sqls"].ppf(u), 80 * (1 + np.quantile(relative, u)), rtol=1e-14)
    absolute = np.diff(cost)
    np.testing.assert_allclose(laws["cost"].ppf(u), -50 + np.quantile(absolute, u), rtol=1e-14)
    assert laws["sqls"].basis == "history (24 relative changes)"
    assert laws["cost"].basis == "history (24 absolute changes)"
    # drawn win rates stay inside its bounds: large rises from 0.95 are clipped at 1
    rate_changes = win_rate[1:] / win_rate[:-1] - 1
    expected = np.clip(0.95 * (1 + np.quantile(rate_changes, u)), 0, 1)
    np.testing.assert_allclose(laws["win_rate"].ppf(u), expected, rtol=1e-14)
    assert laws["win_rate"].ppf(np.array([1.0]))[0] == 1.0
    # the median of the draws is the median observed change applied to today's value
    assert laws["sqls"].ppf(np.array([0.5]))[0] == pytest.approx(80 * (1 + np.median(relative)))
