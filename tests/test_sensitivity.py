"""Elasticities, tornado and Monte Carlo: hand-derived values, brute force, sampling error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import kpitree
from kpitree import DataError, Tree
from kpitree.errors import OptionError


@pytest.fixture(scope="module")
def fitted_b2b() -> tuple[kpitree.FittedTree, pd.DataFrame]:
    history = kpitree.datasets.simulate_b2b()
    return kpitree.fit(kpitree.datasets.load_b2b(), history), history


def lever_state(tree: Tree, at: pd.Series | dict[str, float]) -> dict[str, float]:
    """Every lever's value in the state ``at`` (a lever missing from it takes its baseline)."""
    given = dict(at)
    return {
        name: float(given[name]) if name in given else float(tree.node(name).baseline)
        for name in tree.levers
    }


def central_differences(
    tree: Tree, target: str, state: dict[str, float], names: list[str], rel: float = 1e-6
) -> np.ndarray:
    """d target / d name by central differences of kpitree.evaluate, in one call."""
    steps = np.array([rel * max(abs(state[name]), 1e-3) for name in names])
    rows = []
    for name, step in zip(names, steps, strict=True):
        rows += [state | {name: state[name] + step}, state | {name: state[name] - step}]
    moved = kpitree.evaluate(tree, pd.DataFrame(rows), nodes=[target])[target].to_numpy()
    return (moved[0::2] - moved[1::2]) / (2 * steps)


# --- elasticities -----------------------------------------------------------------------


def test_a_product_has_every_elasticity_one() -> None:
    tree = Tree.from_formulas(
        "revenue = visits * rate * deal_size",
        baselines={"visits": 1000, "rate": 0.1, "deal_size": 50},
        owners={"visits": "Marketing", "rate": "Sales", "deal_size": "Sales"},
        bounds={"rate": (0, 1)},
    )
    result = kpitree.elasticities(tree, "revenue")
    assert result.target_values.tolist() == [5000.0]
    assert result.derivatives.iloc[0].to_dict() == pytest.approx(
        {"visits": 0.1 * 50, "rate": 1000 * 50, "deal_size": 1000 * 0.1}, rel=1e-15
    )
    assert result.elasticity.iloc[0].tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-15)
    frame = result.to_frame()
    assert list(frame.columns) == ["owner", "value", "derivative", "elasticity"]
    assert frame.loc["rate"].tolist() == ["Sales", 0.1, pytest.approx(50_000.0), 1.0]
    assert frame["owner"].to_dict() == {
        "visits": "Marketing",
        "rate": "Sales",
        "deal_size": "Sales",
    }


@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        ("y = a + b", {"a": 30.0, "b": 10.0}, {"a": 30 / 40, "b": 10 / 40}),
        ("y = a - b", {"a": 30.0, "b": 10.0}, {"a": 30 / 20, "b": -10 / 20}),
        ("y = a / b", {"a": 3.0, "b": 4.0}, {"a": 1.0, "b": -1.0}),
        ("y = a ** 2 * sqrt(b)", {"a": 3.0, "b": 4.0}, {"a": 2.0, "b": 0.5}),
        ("y = log(a)", {"a": 5.0}, {"a": 1 / math.log(5.0)}),
        ("y = exp(a) * b", {"a": 0.3, "b": 2.0}, {"a": 0.3, "b": 1.0}),
        # y = (a + b) * a: dy/da = 2a + b, elasticity a (2a + b) / y
        ("y = s * a\ns = a + b", {"a": 2.0, "b": 6.0}, {"a": 2 * 10 / 16, "b": 6 * 2 / 16}),
    ],
)
def test_elasticities_by_hand(
    spec: str, values: dict[str, float], expected: dict[str, float]
) -> None:
    tree = Tree.from_formulas(spec, baselines=values)
    result = kpitree.elasticities(tree, "y")
    assert result.elasticity.iloc[0].to_dict() == pytest.approx(expected, rel=1e-13)
    assert result.values.iloc[0].to_dict() == values
    frame = result.to_frame()  # one state: sorted by absolute elasticity, largest first
    magnitudes = frame["elasticity"].abs().tolist()
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_the_elasticity_of_a_lever_by_itself_is_one(funnel: Tree) -> None:
    result = kpitree.elasticities(funnel, "win_rate")
    assert result.to_frame()[["value", "derivative", "elasticity"]].to_dict("index") == {
        "win_rate": {"value": 0.25, "derivative": 1.0, "elasticity": 1.0}
    }


def test_logit_link_elasticity_by_hand() -> None:
    tree = Tree.from_formulas(
        "wins = sqls * win_rate\nwin_rate = 1 / (1 + exp(-(c0 + c1 * share)))",
        baselines={"sqls": 80.0, "c0": -2.0, "c1": 4.0, "share": 0.3},
    )
    p = 1 / (1 + math.exp(-(-2.0 + 4.0 * 0.3)))
    result = kpitree.elasticities(tree, "wins")
    # d log(wins) / d log(share) = share * c1 * (1 - p)
    assert result.elasticity.iloc[0]["share"] == pytest.approx(0.3 * 4.0 * (1 - p), rel=1e-13)
    assert result.elasticity.iloc[0]["sqls"] == pytest.approx(1.0, rel=1e-14)
    assert result.target_values.iloc[0] == pytest.approx(80 * p, rel=1e-14)


def test_fitted_company_elasticities_equal_finite_differences(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    result = kpitree.elasticities(tree, "revenue", at=at)
    levers = list(result.derivatives.columns)
    # every lever revenue depends on; 'nps' moves churn only through 'nps_lag3'
    assert set(levers) == set(tree.levers) - {"nps"}
    state = lever_state(tree, at)
    fd = central_differences(tree, "revenue", state, levers)
    np.testing.assert_allclose(result.derivatives.iloc[0].to_numpy(), fd, rtol=1e-6)
    revenue = kpitree.evaluate(tree, state, nodes=["revenue"])["revenue"].iloc[0]
    assert result.target_values.iloc[0] == pytest.approx(revenue, rel=1e-14)
    values = np.array([state[name] for name in levers])
    np.testing.assert_allclose(
        result.elasticity.iloc[0].to_numpy(), fd * values / revenue, rtol=1e-6
    )
    # revenue is almost all recurring: arpa and the starting base carry it
    # (recurring share x (1 + expansion rate) of revenue)
    recurring = kpitree.evaluate(tree, state, nodes=["recurring_revenue"]).iloc[0, 0]
    share = recurring * (1 + state["expansion_rate"]) / revenue
    assert result.elasticity.iloc[0]["arpa"] == pytest.approx(share, rel=1e-12)


def test_many_rows_give_a_multiindex_frame_equal_to_row_by_row_calls(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    rows = history.tail(4)
    result = kpitree.elasticities(tree, "revenue", at=rows)
    frame = result.to_frame()
    levers = list(result.derivatives.columns)
    assert frame.index.names == ["period", "lever"]
    assert frame.index.get_level_values("period").unique().equals(rows.index)
    assert len(frame) == len(rows) * len(levers)
    assert result.target_values.index.equals(rows.index)
    for period in rows.index:
        single = kpitree.elasticities(tree, "revenue", at=rows.loc[period])
        one = single.to_frame()
        for column in ("value", "derivative", "elasticity"):
            np.testing.assert_allclose(
                frame.loc[period, column].loc[levers].to_numpy(),
                one[column].loc[levers].to_numpy(),
                rtol=1e-13,
            )
        assert result.target_values.loc[period] == pytest.approx(
            single.target_values.iloc[0], rel=1e-14
        )
    unnamed = kpitree.elasticities(tree, "revenue", at=rows.reset_index(drop=True))
    assert unnamed.to_frame().index.names == ["row", "lever"]
    np.testing.assert_allclose(unnamed.derivatives.to_numpy(), result.derivatives.to_numpy())


def test_elasticities_with_respect_to_coefficients(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    parameters = list(tree.parameters)
    result = kpitree.elasticities(tree, "revenue", at=at, wrt=[*parameters, "nps"])
    assert list(result.derivatives.columns) == [*parameters, "nps"]
    state = lever_state(tree, at) | dict(tree.parameters)
    fd = central_differences(tree, "revenue", state, parameters)
    np.testing.assert_allclose(result.derivatives.iloc[0][parameters].to_numpy(), fd, rtol=1e-5)
    assert result.derivatives.iloc[0]["nps"] == 0.0  # revenue reads nps_lag3, not nps
    assert result.values.iloc[0][parameters].to_dict() == dict(tree.parameters)
    assert result.to_frame()["owner"].loc[parameters].isna().all()  # coefficients: no team
    one = kpitree.elasticities(tree, "revenue", at=at, wrt="win_rate__const")
    assert list(one.derivatives.columns) == ["win_rate__const"]
    assert one.derivatives.iloc[0, 0] == pytest.approx(
        result.derivatives.iloc[0]["win_rate__const"], rel=1e-14
    )


def test_wrt_a_computed_node_is_an_option_error(funnel: Tree) -> None:
    with pytest.raises(OptionError, match="'sqls' is computed") as caught:
        kpitree.elasticities(funnel, "revenue", wrt=["win_rate", "sqls"])
    assert caught.value.option == "wrt"


@pytest.mark.parametrize(
    ("at", "lever", "reason"),
    [
        ({"win_rate": np.nan}, "win_rate", "nan"),
        ({"win_rate": 1.5}, "win_rate", "out of bounds"),
        ({"win_rate": np.array([0.2, -0.1, 0.3])}, "win_rate", "out of bounds"),
        ({"sql_rate": np.array([0.2, 0.3, np.nan])}, "sql_rate", "nan"),
    ],
)
def test_bad_data_is_a_data_error_naming_the_lever(
    funnel: Tree, at: dict[str, object], lever: str, reason: str
) -> None:
    with pytest.raises(DataError, match=repr(lever)) as caught:
        kpitree.elasticities(funnel, "revenue", at=at)
    assert caught.value.node == lever
    assert caught.value.reason == reason


@pytest.mark.parametrize("spec", ["y = a * b", "y = a + b"])
def test_nan_in_an_unbounded_lever_is_a_data_error_naming_it(spec: str) -> None:
    tree = Tree.from_formulas(spec, baselines={"a": 1.0, "b": 2.0})
    with pytest.raises(DataError, match="'a'") as caught:
        kpitree.elasticities(tree, "y", at={"a": np.array([1.0, np.nan])})
    assert caught.value.node == "a"
    assert caught.value.rows == [1]


def test_an_infinite_derivative_is_a_data_error_naming_the_lever() -> None:
    tree = Tree.from_formulas("y = sqrt(x) + z", baselines={"x": 4.0, "z": 1.0})
    for at, rows in (
        ({"x": 0.0}, [0]),
        (pd.DataFrame({"x": [4.0, 0.0]}, index=["m1", "m2"]), ["m2"]),
    ):
        with pytest.raises(DataError, match="'x'") as caught:
            kpitree.elasticities(tree, "y", at=at)
        assert caught.value.node == "x"
        assert caught.value.rows == rows
        assert caught.value.reason == "not finite"


def test_elasticities_through_a_capacity_limit() -> None:
    tree = Tree.from_formulas(
        "revenue = min(demand, capacity) * price",
        baselines={"demand": 100.0, "capacity": 80.0, "price": 5.0},
    )
    result = kpitree.elasticities(tree, "revenue")
    assert result.elasticity.iloc[0].to_dict() == pytest.approx(
        {"demand": 0.0, "capacity": 1.0, "price": 1.0}, rel=1e-14
    )


# --- tornado ----------------------------------------------------------------------------


def brute_force_tornado(
    tree: Tree, target: str, at: dict[str, float] | pd.Series | None, ranges: pd.DataFrame
) -> pd.DataFrame:
    rows = {}
    for lever, (low, high) in ranges[["low", "high"]].iterrows():
        target_low = kpitree.what_if(tree, at, {lever: low}).loc[target, "scenario"]
        target_high = kpitree.what_if(tree, at, {lever: high}).loc[target, "scenario"]
        rows[lever] = (target_low, target_high, abs(target_high - target_low))
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["target_low", "target_high", "swing"]
    )


def test_tornado_equals_moving_one_lever_at_a_time(funnel: Tree) -> None:
    result = kpitree.tornado(funnel, "revenue")
    table = result.to_frame()
    assert list(table.columns) == [
        "owner", "low", "high", "target_low", "target_high", "swing", "basis",
    ]  # fmt: skip
    assert result.target_value == pytest.approx(kpitree.evaluate(funnel)["revenue"].iloc[0])
    assert set(table.index) == set(funnel.levers)
    for lever in funnel.levers:
        value = funnel.node(lever).baseline
        assert table.loc[lever, ["low", "high"]].tolist() == pytest.approx(
            [0.9 * value, 1.1 * value]
        )
    expected = brute_force_tornado(funnel, "revenue", None, table)
    for column in ("target_low", "target_high", "swing"):
        np.testing.assert_allclose(table[column], expected.loc[table.index, column], rtol=1e-12)
    swings = table["swing"].to_numpy()
    assert (np.diff(swings) <= 0).all()  # largest swing first
    # a channel moves revenue in proportion to its share of visits; the rates by 20%
    assert table.loc["win_rate", "swing"] == pytest.approx(0.2 * 1e7)
    assert table.loc["search", "swing"] == pytest.approx(0.2 * 1e7 * 3000 / 5000)
    assert table.loc["win_rate", "owner"] == "Field Sales"


def test_tornado_with_explicit_ranges_and_a_state(funnel: Tree) -> None:
    at = {"win_rate": 0.3, "sns": 2000.0}
    ranges = {"win_rate": (0.1, 0.5), "ads": (0, 3000), "mql_rate": "±50%"}
    table = kpitree.tornado(funnel, "revenue", at=at, ranges=ranges).to_frame()
    # revenue = 48e6 * win_rate = 2,400 per visit = 28.8e6 * mql_rate: swings 19.2e6
    # (win rate 0.1 to 0.5), 14.4e6 (MQL rate 0.25 to 0.75), 7.2e6 (ads 0 to 3,000)
    assert list(table.index) == ["win_rate", "mql_rate", "ads"]
    assert table["swing"].tolist() == pytest.approx([19.2e6, 14.4e6, 7.2e6])
    assert table.loc["mql_rate", ["low", "high"]].tolist() == pytest.approx([0.25, 0.75])
    expected = brute_force_tornado(funnel, "revenue", at, table)
    np.testing.assert_allclose(table["swing"], expected.loc[table.index, "swing"], rtol=1e-12)
    np.testing.assert_allclose(
        table["target_low"], expected.loc[table.index, "target_low"], rtol=1e-12
    )
    # revenue = 6000 visits * 0.02 * 0.5 * 0.4 * win_rate * 2e6 = 48e6 * win_rate
    assert table.loc["win_rate", "target_low"] == pytest.approx(48e6 * 0.1)
    assert table.loc["win_rate", "target_high"] == pytest.approx(48e6 * 0.5)


def test_tornado_on_the_fitted_company_with_history_ranges(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    result = kpitree.tornado(tree, "revenue", at=at, ranges=history)
    table = result.to_frame()
    state = lever_state(tree, at)
    assert result.target_value == pytest.approx(
        kpitree.evaluate(tree, state, nodes=["revenue"]).iloc[0, 0], rel=1e-14
    )
    expected = brute_force_tornado(tree, "revenue", at, table)
    for column in ("target_low", "target_high", "swing"):
        np.testing.assert_allclose(table[column], expected.loc[table.index, column], rtol=1e-12)
    assert (np.diff(table["swing"].to_numpy()) <= 0).all()
    assert result.basis["ranges"] == "history p10-p90 of period-over-period changes (36 periods)"


def test_tornado_over_bounds_by_hand_and_its_errors(funnel: Tree) -> None:
    ranges = {"win_rate": "bounds", "sql_rate": "bounds"}
    table = kpitree.tornado(funnel, "revenue", ranges=ranges).to_frame()
    # revenue = 4e7 * win_rate = 2.5e7 * sql_rate
    assert table[["low", "high", "target_low", "target_high", "swing"]].to_dict("index") == {
        "win_rate": pytest.approx(
            {"low": 0, "high": 1, "target_low": 0, "target_high": 4e7, "swing": 4e7}
        ),
        "sql_rate": pytest.approx(
            {"low": 0, "high": 1, "target_low": 0, "target_high": 2.5e7, "swing": 2.5e7}
        ),
    }
    assert list(table.index) == ["win_rate", "sql_rate"]
    with pytest.raises(OptionError, match="'deal_size'") as caught:
        kpitree.tornado(funnel, "revenue", ranges="bounds")  # deal size has no bounds
    assert caught.value.option == "ranges"
    with pytest.raises(OptionError, match="does not move the target") as caught:
        kpitree.tornado(funnel, "sqls", ranges={"win_rate": (0.1, 0.2)})
    assert caught.value.option == "ranges"
    with pytest.raises(DataError, match="'sns'") as data_error:
        kpitree.tornado(funnel, "revenue", at={"sns": np.nan})
    assert data_error.value.node == "sns" and data_error.value.reason == "nan"


def test_tornado_needs_one_state(funnel: Tree) -> None:
    rows = pd.DataFrame({"win_rate": [0.2, 0.3]})
    with pytest.raises(OptionError, match="2 rows") as caught:
        kpitree.tornado(funnel, "revenue", at=rows)
    assert caught.value.option == "at"
    with pytest.raises(OptionError) as caught:
        kpitree.tornado(funnel, "revenue", at={"win_rate": np.array([0.2, 0.3])})
    assert caught.value.option == "at"
    one = kpitree.tornado(funnel, "revenue", at=rows.iloc[[1]]).to_frame()
    assert one.loc["win_rate", "target_high"] == pytest.approx(1e7 / 0.25 * 0.33)


# --- Monte Carlo ------------------------------------------------------------------------

LINEAR = "y = 2 * a + 3 * b - c"


def test_monte_carlo_mean_and_variance_match_the_uniform_law() -> None:
    tree = Tree.from_formulas(LINEAR, baselines={"a": 10.0, "b": 20.0, "c": 5.0})
    n = 20_000
    result = kpitree.monte_carlo(tree, "y", n=n, seed=7, ranges={"a": (8, 12), "b": (10, 30)})
    samples = result.samples
    assert list(samples.columns) == ["y", "a", "b"]  # c stays at its baseline
    y = samples["y"].to_numpy()
    np.testing.assert_allclose(y, 2 * samples["a"] + 3 * samples["b"] - 5, rtol=1e-14)
    assert samples["a"].between(8, 12).all() and samples["b"].between(10, 30).all()
    # y = 2a + 3b - 5 with a ~ U(8, 12), b ~ U(10, 30), independent
    widths = np.array([2 * 4.0, 3 * 20.0])  # the scaled uniforms' widths
    mean = 2 * 10 + 3 * 20 - 5
    variance = float(np.sum(widths**2 / 12))
    mu4 = float(np.sum(widths**4 / 80) + 6 * np.prod(widths**2 / 12))  # 4th central moment
    se_mean = math.sqrt(variance / n)
    se_variance = math.sqrt((mu4 - variance**2 * (n - 3) / (n - 1)) / n)
    assert abs(y.mean() - mean) < 4 * se_mean
    assert abs(y.var(ddof=1) - variance) < 4 * se_variance
    frame = result.to_frame()
    assert frame.loc["mean", "y"] == pytest.approx(y.mean())
    assert frame.loc["std", "y"] == pytest.approx(y.std(ddof=1))
    # the levers are drawn independently
    assert abs(np.corrcoef(samples["a"], samples["b"])[0, 1]) < 4 / math.sqrt(n)
    assert result.probability(mean) == pytest.approx(np.mean(y >= mean))
    assert result.basis["levers"] == "a, b" and result.basis["coefficients"] == "fixed"


def test_monte_carlo_seeds() -> None:
    tree = Tree.from_formulas(LINEAR, baselines={"a": 10.0, "b": 20.0, "c": 5.0})
    ranges = {"a": (8, 12), "c": "±10%"}
    first = kpitree.monte_carlo(tree, "y", n=500, seed=1, ranges=ranges).samples
    again = kpitree.monte_carlo(tree, "y", n=500, seed=1, ranges=ranges).samples
    other = kpitree.monte_carlo(tree, "y", n=500, seed=2, ranges=ranges).samples
    pd.testing.assert_frame_equal(first, again)
    assert not np.isin(first["a"].to_numpy(), other["a"].to_numpy()).any()
    assert first["c"].between(4.5, 5.5).all()


def test_monte_carlo_with_scipy_distributions() -> None:
    tree = Tree.from_formulas(LINEAR, baselines={"a": 10.0, "b": 20.0, "c": 5.0})
    n = 20_000
    law = stats.norm(10, 2)
    result = kpitree.monte_carlo(tree, "y", n=n, seed=3, distributions={"a": law})
    a = result.samples["a"].to_numpy()
    assert list(result.samples.columns) == ["y", "a"]
    assert abs(a.mean() - 10) < 4 * 2 / math.sqrt(n)
    assert abs(a.std(ddof=1) - 2) < 4 * 2 / math.sqrt(2 * (n - 1))
    assert stats.kstest(a, law.cdf).pvalue > 1e-4
    np.testing.assert_allclose(result.samples["y"], 2 * a + 3 * 20 - 5, rtol=1e-14)


def test_monte_carlo_over_coefficients_only_matches_the_delta_method(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    n = 20_000
    result = kpitree.monte_carlo(tree, "revenue", n=n, seed=11, at=at)
    samples = result.samples
    parameters = list(tree.parameters)
    assert list(samples.columns) == ["revenue", *parameters]  # levers fixed
    assert result.basis["levers"] == "fixed" and result.basis["coefficients"] == "drawn"
    state = lever_state(tree, at)
    # brute force: the target is the tree evaluated at today's levers and each draw
    draws = pd.DataFrame(state, index=samples.index).join(samples[parameters])
    expected = kpitree.evaluate(tree, draws, nodes=["revenue"])["revenue"]
    np.testing.assert_allclose(samples["revenue"], expected, rtol=1e-13)
    # delta method: var = sum over links of g' cov g, g = d revenue / d coefficients
    gradient = dict(
        zip(
            parameters,
            central_differences(tree, "revenue", state | dict(tree.parameters), parameters),
            strict=True,
        )
    )
    variance = 0.0
    for fit in tree._fits.values():
        g = np.array([gradient[name] for name in fit.names])
        variance += float(g @ fit.cov @ g)
    delta_sd = math.sqrt(variance)
    sd = samples["revenue"].std(ddof=1)
    # standard error of a sample sd is about sd / sqrt(2 (n - 1)); allow 4 of them plus
    # 1% for the curvature of the logit links (measured at 0.3% with 200,000 draws)
    tolerance = 4 / math.sqrt(2 * (n - 1)) + 0.01
    assert sd / delta_sd == pytest.approx(1, abs=tolerance)
    base = kpitree.evaluate(tree, state, nodes=["revenue"])["revenue"].iloc[0]
    assert abs(samples["revenue"].mean() - base) < 4 * delta_sd / math.sqrt(n) + 1e-3 * delta_sd
    # the draws are the fitted coefficients' law: means within 4 standard errors
    for fit in tree._fits.values():
        drawn = samples[list(fit.names)].to_numpy()
        se = np.sqrt(np.diag(fit.cov) / n)
        assert (np.abs(drawn.mean(axis=0) - fit.estimates) < 4 * se).all(), fit.node


def test_monte_carlo_over_levers_and_coefficients_together(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    ranges = {"arpa": "±5%", "nps_lag3": (20.0, 40.0)}
    result = kpitree.monte_carlo(tree, "revenue", n=2_000, seed=5, at=at, ranges=ranges)
    samples = result.samples
    assert list(samples.columns) == ["revenue", "arpa", "nps_lag3", *tree.parameters]
    assert result.basis["levers"] == "arpa, nps_lag3"
    arpa = float(at["arpa"])
    assert samples["arpa"].between(0.95 * arpa, 1.05 * arpa).all()
    assert samples["nps_lag3"].between(20, 40).all()
    inputs = pd.DataFrame(lever_state(tree, at), index=samples.index)
    inputs.update(samples.drop(columns="revenue"))
    inputs = inputs.join(samples[list(tree.parameters)])
    expected = kpitree.evaluate(tree, inputs, nodes=["revenue"])["revenue"]
    np.testing.assert_allclose(samples["revenue"], expected, rtol=1e-13)


def test_monte_carlo_from_history_draws_observed_changes(funnel: Tree) -> None:
    rng = np.random.default_rng(2)
    win_rate = rng.uniform(0.2, 0.3, 24)
    history = pd.DataFrame({name: rng.uniform(0.5, 2.0, 24) for name in funnel.levers})
    history["win_rate"] = win_rate
    result = kpitree.monte_carlo(funnel, "revenue", n=4_000, seed=1, ranges=history)
    drawn = result.samples["win_rate"].to_numpy()
    changes = win_rate[1:] / win_rate[:-1] - 1
    assert drawn.min() >= 0.25 * (1 + changes.min()) - 1e-15
    assert drawn.max() <= 0.25 * (1 + changes.max()) + 1e-15
    # the draws' median is today's value moved by the median observed change
    assert np.median(drawn) == pytest.approx(0.25 * (1 + np.median(changes)), abs=0.02)
    others = result.samples.drop(columns=["revenue", "win_rate"])
    state = pd.DataFrame(others).assign(win_rate=drawn)
    expected = kpitree.evaluate(funnel, state, nodes=["revenue"])["revenue"]
    np.testing.assert_allclose(result.samples["revenue"], expected, rtol=1e-13)


def test_monte_carlo_needs_something_to_vary(
    funnel: Tree, fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame]
) -> None:
    with pytest.raises(OptionError, match="nothing varies") as caught:
        kpitree.monte_carlo(funnel, "revenue")
    assert caught.value.option == "ranges"
    tree, _ = fitted_b2b
    with pytest.raises(OptionError, match="nothing varies"):
        kpitree.monte_carlo(tree, "revenue", params=False)
    with pytest.raises(OptionError) as caught:
        kpitree.monte_carlo(funnel, "revenue", n=1, ranges="±10%")
    assert caught.value.option == "n"
    with pytest.raises(OptionError) as caught:
        kpitree.monte_carlo(funnel, "revenue", at=pd.DataFrame({"sns": [1.0, 2.0]}), ranges="±10%")
    assert caught.value.option == "at"
