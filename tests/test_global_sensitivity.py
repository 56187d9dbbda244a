"""Sobol indices and Morris screening: SALib on the same design, analytic values, brute force."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from SALib.analyze import morris as morris_analyze
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import morris as morris_sample
from SALib.sample import sobol as sobol_sample
from scipy import stats
from scipy.stats import qmc
from tqdm.auto import tqdm

import kpitree
import kpitree.global_sensitivity as gs
from kpitree import Tree
from kpitree.errors import DataError, OptionError

SOBOL_COLUMNS = ["S1", "S1_conf", "ST", "ST_conf"]


# --- helpers: SALib on the same problem, evaluated by kpitree ----------------------------


def salib_sobol(
    tree: Tree,
    target: str,
    problem: dict[str, Any],
    n: int,
    seed: int,
    *,
    at: Mapping[str, Any] | None = None,
    transform: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """SALib's Saltelli design, the tree evaluated on every row, SALib's analysis.

    ``transform`` maps a lever to a quantile function applied to its design column
    (the problem's bounds are then (0, 1)). Returns the design, the outputs and a
    frame of S1, S1_conf, ST, ST_conf indexed by SALib's lever or group names.
    """
    problem = dict(problem)
    design = sobol_sample.sample(problem, n, calc_second_order=False, seed=seed)
    columns = dict(at or {})
    for j, name in enumerate(problem["names"]):
        column = design[:, j]
        columns[name] = transform[name](column) if transform and name in transform else column
    rows = pd.DataFrame({k: np.broadcast_to(v, len(design)) for k, v in columns.items()})
    output = kpitree.evaluate(tree, rows, nodes=[target])[target].to_numpy()
    found = sobol_analyze.analyze(problem, output, calc_second_order=False, seed=seed)
    names = list(pd.unique(np.array(problem.get("groups") or problem["names"])))
    frame = pd.DataFrame({k: np.asarray(found[k]) for k in SOBOL_COLUMNS}, index=names)
    return design, output, frame


def assert_same_indices(result: kpitree.SobolIndices, expected: pd.DataFrame) -> None:
    frame = result.to_frame()
    assert set(frame.index) == set(expected.index)
    for column in SOBOL_COLUMNS:
        np.testing.assert_allclose(
            frame.loc[expected.index, column].to_numpy(),
            expected[column].to_numpy(),
            rtol=1e-10,
            atol=1e-13,
            err_msg=column,
        )


def problem_of(names: Sequence[str], ranges: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    return {
        "num_vars": len(names),
        "names": list(names),
        "bounds": [list(ranges[name]) for name in names],
    }


# a tree with products, a sum, exp and a shared lever (c), levers owned by three teams
MIXED = """
y = u * v + w
u = a * b
v = c + d
w = exp(0.1 * c) * e
"""
MIXED_BASELINES = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}
MIXED_OWNERS = {"a": "Team 1", "b": "Team 1", "c": "Team 2", "d": "Team 2", "e": "Team 3"}
MIXED_RANGES = {"a": (0.5, 1.5), "b": (1.0, 3.0), "c": (2.0, 4.0), "d": (3.0, 5.0), "e": (4, 6)}


@pytest.fixture(scope="module")
def mixed() -> Tree:
    return Tree.from_formulas(MIXED, baselines=MIXED_BASELINES, owners=MIXED_OWNERS)


@pytest.fixture(scope="module")
def fitted_b2b() -> tuple[kpitree.FittedTree, pd.DataFrame]:
    history = kpitree.datasets.simulate_b2b()
    return kpitree.fit(kpitree.datasets.load_b2b(), history), history


# --- Sobol: SALib on an identical design --------------------------------------------------


@pytest.mark.parametrize(("n", "seed"), [(256, 5), (512, 123)])
def test_sobol_equals_salib_on_the_same_design(mixed: Tree, n: int, seed: int) -> None:
    levers = list(mixed.levers)
    problem = problem_of(levers, MIXED_RANGES)
    design, output, expected = salib_sobol(mixed, "y", problem, n, seed)
    result = kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=n, seed=seed, progress=False)
    assert_same_indices(result, expected)
    frame = result.to_frame()
    assert list(frame.columns) == ["owner", *SOBOL_COLUMNS]
    assert frame.index.name == "lever"
    assert frame["owner"].to_dict() == MIXED_OWNERS
    assert (np.diff(frame["ST"].to_numpy()) <= 0).all()  # largest total index first
    d = len(levers)
    assert result.n_evaluations == n * (d + 2) == len(design)
    # the variance reported is that of the A and B runs (SALib's normalisation)
    a_and_b = np.concatenate([output[0 :: d + 2], output[d + 1 :: d + 2]])
    assert result.variance == pytest.approx(np.var(a_and_b), rel=1e-12)
    assert result.basis == {
        "inputs": "5 levers: uniform explicit",
        "n": n,
        "groups": "none (one index per lever)",
        "seed": seed,
        "intervals": "95% bootstrap (100 resamples)",
    }


def test_the_design_is_salibs_sobol_sequence(mixed: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """kpitree draws A | B as SALib does: one scrambled Sobol' sequence in 2D dimensions."""
    n, seed, levers = 256, 9, list(mixed.levers)
    d = len(levers)
    lows = np.array([MIXED_RANGES[name][0] for name in levers])
    highs = np.array([MIXED_RANGES[name][1] for name in levers])
    base = qmc.Sobol(d=2 * d, scramble=True, seed=seed).random(n)
    a_expected = base[:, :d] * (highs - lows) + lows
    b_expected = base[:, d:] * (highs - lows) + lows
    design = sobol_sample.sample(
        problem_of(levers, MIXED_RANGES), n, calc_second_order=False, seed=seed
    )
    # SALib's rows per base point: A, then AB_i (A with column i from B), then B
    np.testing.assert_array_equal(design[0 :: d + 2], a_expected)
    np.testing.assert_array_equal(design[d + 1 :: d + 2], b_expected)
    for i in range(d):
        ab = a_expected.copy()
        ab[:, i] = b_expected[:, i]
        np.testing.assert_array_equal(design[1 + i :: d + 2], ab)

    seen: list[tuple[dict[str, np.ndarray], tuple[str, ...]]] = []
    original = gs.evaluate_array

    def spy(tree: Tree, frame: Any, outputs: tuple[str, ...], **kwargs: Any) -> np.ndarray:
        seen.append(({name: np.array(frame.columns[name]) for name in levers}, outputs))
        return original(tree, frame, outputs, **kwargs)

    monkeypatch.setattr(gs, "evaluate_array", spy)
    kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=n, seed=seed, progress=False)
    assert len(seen) == 2  # one block: the A pass, then the B pass; AB_i by the kernels
    (a_seen, a_outputs), (b_seen, b_outputs) = seen
    assert a_outputs[0] == "y" and b_outputs == ("y",)
    np.testing.assert_array_equal(np.column_stack([a_seen[k] for k in levers]), a_expected)
    np.testing.assert_array_equal(np.column_stack([b_seen[k] for k in levers]), b_expected)


@pytest.mark.parametrize("groups", ["owner", "mapping"])
def test_grouped_sobol_equals_salib_with_groups(mixed: Tree, groups: str) -> None:
    levers = list(mixed.levers)
    mapping = {"a": "g2", "b": "g1", "c": "g2", "d": "g1", "e": "g2"}
    spec: str | dict[str, str] = "owner" if groups == "owner" else mapping
    names = MIXED_OWNERS if groups == "owner" else mapping
    problem = problem_of(levers, MIXED_RANGES) | {"groups": [names[k] for k in levers]}
    n, seed = 512, 17
    design, _, expected = salib_sobol(mixed, "y", problem, n, seed)
    result = kpitree.sobol(
        mixed, "y", ranges=MIXED_RANGES, n=n, groups=spec, seed=seed, progress=False
    )
    assert_same_indices(result, expected)
    frame = result.to_frame()
    assert list(frame.columns) == SOBOL_COLUMNS  # no owner column for groups
    assert frame.index.name == ("team" if groups == "owner" else "group")
    groups_count = len(set(names.values()))
    assert result.n_evaluations == n * (groups_count + 2) == len(design)
    assert result.basis["groups"] == ("by owner (team)" if groups == "owner" else "given mapping")


def test_a_lever_without_owner_forms_the_no_owner_group() -> None:
    tree = Tree.from_formulas(
        "y = a * b + c", baselines={"a": 1.0, "b": 1.0, "c": 1.0}, owners={"a": "Sales"}
    )
    ranges = {"a": (0.0, 1.0), "b": (1.0, 2.0), "c": (0.0, 3.0)}
    levers = list(tree.levers)
    problem = problem_of(levers, ranges) | {
        "groups": ["Sales" if k == "a" else "(no owner)" for k in levers]
    }
    _, _, expected = salib_sobol(tree, "y", problem, 256, 4)
    result = kpitree.sobol(tree, "y", ranges=ranges, n=256, groups="owner", seed=4, progress=False)
    assert set(result.to_frame().index) == {"Sales", "(no owner)"}
    assert_same_indices(result, expected)


@settings(max_examples=15, deadline=None)
@given(
    coefficients=st.lists(st.floats(-5, 5).filter(lambda c: abs(c) > 0.05), min_size=2, max_size=4),
    widths=st.lists(st.floats(0.1, 10), min_size=4, max_size=4),
    seed=st.integers(1, 2**31),
)
def test_sobol_equals_salib_on_random_polynomials(
    coefficients: list[float], widths: list[float], seed: int
) -> None:
    names = [f"x{i}" for i in range(len(coefficients))]
    terms = [f"{c!r} * {name}" for c, name in zip(coefficients, names, strict=True)]
    # a linear part plus one interaction, so S1 and ST differ
    tree = Tree.from_formulas(
        f"y = {' + '.join(terms)} + x0 * x1 ** 2", baselines=dict.fromkeys(names, 1.0)
    )
    ranges = {name: (1.0, 1.0 + w) for name, w in zip(names, widths, strict=False)}
    _, _, expected = salib_sobol(tree, "y", problem_of(list(tree.levers), ranges), 64, seed)
    result = kpitree.sobol(tree, "y", ranges=ranges, n=64, seed=seed, progress=False)
    assert_same_indices(result, expected)


def test_blocks_of_rows_give_the_same_indices(mixed: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streaming the design in blocks (here 4 x 256 rows) changes nothing."""
    n, seed = 1024, 21
    whole = kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=n, seed=seed, progress=False)
    monkeypatch.setattr(gs, "_BLOCK_VALUES", 1)  # the smallest block: 256 rows
    starts: list[int] = []
    run_block = gs._run_block

    def counting(plan: Any, base: np.ndarray, *args: Any) -> None:
        starts.append(len(base))
        run_block(plan, base, *args)

    monkeypatch.setattr(gs, "_run_block", counting)
    blocked = kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=n, seed=seed, progress=False)
    assert starts == [256] * 4
    pd.testing.assert_frame_equal(blocked.to_frame(), whole.to_frame(), rtol=1e-11)
    _, _, expected = salib_sobol(mixed, "y", problem_of(list(mixed.levers), MIXED_RANGES), n, seed)
    assert_same_indices(blocked, expected)


# a deep funnel with shared intermediates (leads and sqls feed both revenue and cost), a
# capacity limit and a log: each lever's kernel recomputes only what is downstream of it
DEEP = """
profit = revenue - cost
revenue = customers * arpa
customers = wins + retained
wins = min(sqls * win_rate, capacity)
sqls = mqls * sql_rate
mqls = leads * mql_rate
leads = visits * request_rate
visits = sns + search + ads
retained = base * (1 - churn)
cost = ad_cost + sales_cost
ad_cost = ads * cpc + leads * lead_cost
sales_cost = sqls * cost_per_sql + log(1 + sqls) * overhead
"""
DEEP_BASELINES = {
    "sns": 1000.0,
    "search": 3000.0,
    "ads": 1500.0,
    "request_rate": 0.05,
    "mql_rate": 0.5,
    "sql_rate": 0.4,
    "win_rate": 0.25,
    "capacity": 10.0,
    "arpa": 1000.0,
    "base": 200.0,
    "churn": 0.05,
    "cpc": 0.8,
    "lead_cost": 3.0,
    "cost_per_sql": 40.0,
    "overhead": 100.0,
}
DEEP_OWNERS = {
    "sns": "Marketing",
    "search": "Marketing",
    "ads": "Marketing",
    "request_rate": "Marketing",
    "mql_rate": "Marketing",
    "cpc": "Marketing",
    "lead_cost": "Marketing",
    "sql_rate": "Inside Sales",
    "cost_per_sql": "Inside Sales",
    "overhead": "Inside Sales",
    "win_rate": "Field Sales",
    "capacity": "Field Sales",
    "arpa": "Customer Success",
    "base": "Customer Success",
    "churn": "Customer Success",
}


@pytest.fixture(scope="module")
def deep() -> Tree:
    return Tree.from_formulas(
        DEEP,
        baselines=DEEP_BASELINES,
        owners=DEEP_OWNERS,
        bounds={"win_rate": (0, 1), "churn": (0, 1), "request_rate": (0, 1)},
    )


def test_partial_kernels_on_a_deep_funnel_equal_full_evaluation(deep: Tree) -> None:
    plan = gs._plan(deep, "profit", None, "±30%", None, None, 256)
    kernel_of = dict(zip((plan.levers[u[0]] for u in plan.units), plan.kernels, strict=True))
    # the premise: win rate's kernel reads sqls and cost from the A pass, not the visits
    assert {"sqls", "cost", "retained"} <= set(kernel_of["win_rate"].inputs)
    assert not {"sns", "ads", "mql_rate"} & set(kernel_of["win_rate"].inputs)
    assert set(kernel_of["cost_per_sql"].inputs) == {
        "revenue",
        "ad_cost",
        "sqls",
        "cost_per_sql",
        "overhead",
    }
    assert set(kernel_of["churn"].inputs) == {"wins", "base", "churn", "arpa", "cost"}

    levers = list(deep.levers)
    ranges = {k: (0.7 * v, 1.3 * v) for k, v in DEEP_BASELINES.items()}
    for seed, groups in ((3, None), (8, "owner")):
        problem = problem_of(levers, ranges)
        if groups:
            problem["groups"] = [DEEP_OWNERS[k] for k in levers]
        _, _, expected = salib_sobol(deep, "profit", problem, 512, seed)
        result = kpitree.sobol(
            deep, "profit", ranges="±30%", n=512, seed=seed, groups=groups, progress=False
        )
        assert_same_indices(result, expected)


def test_sobol_at_a_state_keeps_the_other_levers_there(deep: Tree) -> None:
    at = {"arpa": 1500.0, "sns": 4000.0, "capacity": 30.0, "churn": 0.2}
    ranges = {"win_rate": (0.1, 0.4), "ads": (500.0, 2500.0), "overhead": (0.0, 300.0)}
    names = [k for k in deep.levers if k in ranges]
    _, _, expected = salib_sobol(deep, "profit", problem_of(names, ranges), 256, 6, at=at)
    result = kpitree.sobol(deep, "profit", at=at, ranges=ranges, n=256, seed=6, progress=False)
    assert_same_indices(result, expected)
    assert list(result.to_frame().index.sort_values()) == sorted(ranges)


# --- Sobol: analytic values on standard test functions ----------------------------------


def within_intervals(
    result: kpitree.SobolIndices,
    s1: Mapping[str, float],
    st_: Mapping[str, float],
    floor: float = 0.01,
) -> None:
    frame = result.to_frame()
    for name in s1:
        s1_tol = max(3 * frame.loc[name, "S1_conf"], floor)
        st_tol = max(3 * frame.loc[name, "ST_conf"], floor)
        assert frame.loc[name, "S1"] == pytest.approx(s1[name], abs=s1_tol), name
        assert frame.loc[name, "ST"] == pytest.approx(st_[name], abs=st_tol), name
        # and the confidence half-widths are honest, not huge
        assert frame.loc[name, "S1_conf"] < 0.15 and frame.loc[name, "ST_conf"] < 0.15


def test_sobol_g_function_analytic_indices() -> None:
    a = [0.0, 1.0, 4.5, 9.0, 99.0]
    names = [f"x{i}" for i in range(1, 6)]
    factors = [f"(abs(4 * {x} - 2) + {ai}) / (1 + {ai})" for x, ai in zip(names, a, strict=True)]
    tree = Tree.from_formulas(f"g = {' * '.join(factors)}", baselines=dict.fromkeys(names, 0.5))
    result = kpitree.sobol(
        tree, "g", ranges=dict.fromkeys(names, (0.0, 1.0)), n=2048, seed=11, progress=False
    )
    v = np.array([1 / (3 * (1 + ai) ** 2) for ai in a])
    total = np.prod(1 + v) - 1
    s1 = v / total
    st_ = np.array([v[i] * np.prod(np.delete(1 + v, i)) for i in range(len(a))]) / total
    within_intervals(result, dict(zip(names, s1, strict=True)), dict(zip(names, st_, strict=True)))
    # x1 (a = 0) dominates and interacts: its total index clearly exceeds its first order
    assert st_[0] - s1[0] > 0.05
    frame = result.to_frame()
    assert frame.index[0] == "x1"
    assert frame.loc["x1", "ST"] > frame.loc["x1", "S1"]


def test_sobol_linear_model_analytic_indices() -> None:
    tree = Tree.from_formulas("y = 2 * a + 3 * b - c", baselines={"a": 0, "b": 0, "c": 0})
    ranges = {"a": (0.0, 1.0), "b": (0.0, 2.0), "c": (0.0, 3.0)}
    result = kpitree.sobol(tree, "y", ranges=ranges, n=1024, seed=2, progress=False)
    coefficient = {"a": 2.0, "b": 3.0, "c": -1.0}
    variance = {k: coefficient[k] ** 2 * (hi - lo) ** 2 / 12 for k, (lo, hi) in ranges.items()}
    share = {k: v / sum(variance.values()) for k, v in variance.items()}
    within_intervals(result, share, share)
    # the total variance is the sum of the parts
    assert result.variance == pytest.approx(sum(variance.values()), rel=0.05)
    assert list(result.to_frame().index) == ["b", "c", "a"]


def test_sobol_product_model_analytic_indices() -> None:
    # y = a b, a ~ U(1, 3), b ~ U(2, 4): V = 40/9, V_a = 3, V_b = 4/3, V_ab = 1/9
    tree = Tree.from_formulas("y = a * b", baselines={"a": 2.0, "b": 3.0})
    result = kpitree.sobol(
        tree, "y", ranges={"a": (1, 3), "b": (2, 4)}, n=1024, seed=5, progress=False
    )
    within_intervals(
        result, {"a": 27 / 40, "b": 12 / 40}, {"a": 28 / 40, "b": 13 / 40}, floor=0.005
    )


def test_sobol_with_scipy_distributions_equals_salib_through_ppf() -> None:
    tree = Tree.from_formulas("y = 2 * a + 3 * b - c", baselines={"a": 10, "b": 20, "c": 5})
    laws = {"a": stats.norm(10, 2), "b": stats.norm(20, 1)}
    n, seed = 512, 13
    problem = problem_of(["a", "b"], {"a": (0, 1), "b": (0, 1)})
    transform = {name: law.ppf for name, law in laws.items()}
    _, _, expected = salib_sobol(tree, "y", problem, n, seed, transform=transform)
    result = kpitree.sobol(tree, "y", distributions=laws, n=n, seed=seed, progress=False)
    assert_same_indices(result, expected)  # c stays at its baseline: only laws vary
    assert result.basis["inputs"] == "2 levers: norm(10, 2), norm(20, 1)"
    # analytic: variances 2^2 2^2 = 16 and 3^2 1^2 = 9
    big = kpitree.sobol(tree, "y", distributions=laws, n=2048, seed=1, progress=False)
    within_intervals(big, {"a": 16 / 25, "b": 9 / 25}, {"a": 16 / 25, "b": 9 / 25}, 0.005)


def test_sobol_distributions_and_ranges_together_equal_salib() -> None:
    tree = Tree.from_formulas("y = a * b + c", baselines={"a": 1.0, "b": 2.0, "c": 3.0})
    law = stats.lognorm(0.5, scale=2.0)
    n, seed = 256, 7
    problem = problem_of(["a", "b", "c"], {"a": (0, 1), "b": (0, 1), "c": (0, 1)})
    transform: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "a": law.ppf,
        "b": lambda u: u * (2.2 - 1.8) + 1.8,  # ±10% of 2
        "c": lambda u: u * (4.0 - 0.0) + 0.0,
    }
    _, _, expected = salib_sobol(tree, "y", problem, n, seed, transform=transform)
    result = kpitree.sobol(
        tree,
        "y",
        distributions={"a": law},
        ranges={"b": "±10%", "c": (0.0, 4.0)},
        n=n,
        seed=seed,
        progress=False,
    )
    assert_same_indices(result, expected)


# --- Sobol: team indices against brute-force integration --------------------------------

TEAM_TREE = "y = a * b + c * exp(d) + a * d"
TEAM_RANGES = {"a": (0.0, 2.0), "b": (1.0, 3.0), "c": (0.0, 1.0), "d": (0.0, 1.5)}
TEAM_OWNERS = {"a": "Red", "c": "Red", "b": "Blue", "d": "Blue"}


def brute_force_group_indices(grid: int = 48) -> dict[str, tuple[float, float]]:
    """Closed first-order and total indices per team, by the midpoint rule on a 4-D grid."""
    axes = []
    for name in "abcd":
        low, high = TEAM_RANGES[name]
        axes.append(low + (np.arange(grid) + 0.5) / grid * (high - low))
    a, b, c, d = np.meshgrid(*axes, indexing="ij", sparse=True)
    y = a * b + c * np.exp(d) + a * d
    variance = y.var()
    found = {}
    for team in ("Red", "Blue"):
        inside = tuple(i for i, name in enumerate("abcd") if TEAM_OWNERS[name] == team)
        outside = tuple(i for i in range(4) if i not in inside)
        first = y.mean(axis=outside).var() / variance  # Var(E[Y | X_g]) / Var(Y)
        total = 1 - y.mean(axis=inside).var() / variance  # 1 - Var(E[Y | X_~g]) / Var(Y)
        found[team] = (first, total)
    return found


def test_team_indices_equal_brute_force_integration() -> None:
    tree = Tree.from_formulas(
        TEAM_TREE, baselines={"a": 1, "b": 2, "c": 0.5, "d": 1}, owners=TEAM_OWNERS
    )
    result = kpitree.sobol(
        tree, "y", ranges=TEAM_RANGES, n=2048, groups="owner", seed=31, progress=False
    )
    exact = brute_force_group_indices()
    # the interaction a*d crosses the teams: first-order and total indices differ
    assert exact["Red"][1] - exact["Red"][0] > 0.01
    within_intervals(
        result,
        {team: first for team, (first, _) in exact.items()},
        {team: total for team, (_, total) in exact.items()},
        floor=0.01,
    )
    # a coarser grid agrees with the fine one: the brute force has converged
    coarse = brute_force_group_indices(24)
    for team in exact:
        assert coarse[team] == pytest.approx(exact[team], abs=2e-3)


# --- Sobol: history ranges on the fitted company ----------------------------------------


def empirical_ppf(values: np.ndarray, current: float, bounds: tuple[float, float]) -> Callable:
    """Today's value moved by a quantile of the observed period-over-period changes."""
    values = values[~np.isnan(values)]
    relative = bool((values > 0).all())
    changes = values[1:] / values[:-1] - 1 if relative else np.diff(values)

    def ppf(u: np.ndarray) -> np.ndarray:
        change = np.quantile(changes, u)
        return np.clip(current * (1 + change) if relative else current + change, *bounds)

    return ppf


def test_sobol_with_history_ranges_on_the_fitted_company(
    fitted_b2b: tuple[kpitree.FittedTree, pd.DataFrame],
) -> None:
    tree, history = fitted_b2b
    at = history.iloc[-1]
    n, seed = 256, 3
    result = kpitree.sobol(tree, "revenue", at=at, ranges=history, n=n, seed=seed, progress=False)
    levers = [name for name in tree.levers if name != "nps"]  # nps acts through nps_lag3
    assert set(result.to_frame().index) == set(levers)
    transform = {}
    for name in levers:
        column = history[name] if name in history else history["nps"].shift(3)
        current = float(at[name]) if name in at.index else float(tree.node(name).baseline)
        bounds = tree.node(name).bounds or (-math.inf, math.inf)
        transform[name] = empirical_ppf(column.to_numpy(dtype=float), current, bounds)
    problem = problem_of(levers, dict.fromkeys(levers, (0.0, 1.0)))
    state = {k: v for k, v in at.items() if k in tree.levers}
    _, _, expected = salib_sobol(tree, "revenue", problem, n, seed, at=state, transform=transform)
    assert_same_indices(result, expected)
    assert result.basis["inputs"].startswith("15 levers: history (")
    frame = result.to_frame()
    assert frame["S1"].between(-0.2, 1.2).all()
    assert frame["ST"].min() >= 0
    assert frame.loc["customers_start", "owner"] == "Customer Success"


def test_sobol_with_history_of_signed_and_gappy_series_equals_salib() -> None:
    """Absolute changes for a series that is not strictly positive; NaN rows skipped;
    draws clipped to the lever's bounds."""
    tree = Tree.from_formulas(
        "y = a * (10 + b) + c",
        baselines={"a": 2.0, "b": 1.0, "c": 0.9},
        bounds={"c": (0, 1)},
    )
    rng = np.random.default_rng(5)
    history = pd.DataFrame(
        {
            "a": rng.uniform(1.0, 3.0, 30),
            "b": rng.normal(0.0, 2.0, 30),  # crosses zero: absolute changes
            "c": rng.uniform(0.5, 1.0, 30),
        }
    )
    history.loc[[4, 11], "a"] = np.nan
    at = {"a": 2.0, "b": -1.0, "c": 0.95}
    n, seed = 256, 12
    result = kpitree.sobol(tree, "y", at=at, ranges=history, n=n, seed=seed, progress=False)
    transform = {
        name: empirical_ppf(
            history[name].to_numpy(), at[name], tree.node(name).bounds or (-math.inf, math.inf)
        )
        for name in "abc"
    }
    assert transform["c"](np.array([0.999]))[0] == 1.0  # c's draws reach its bound
    problem = problem_of(list("abc"), dict.fromkeys("abc", (0.0, 1.0)))
    _, _, expected = salib_sobol(tree, "y", problem, n, seed, transform=transform)
    assert_same_indices(result, expected)
    assert result.basis["inputs"] == (
        "3 levers: history (27 relative changes), history (29 absolute changes), "
        "history (29 relative changes)"
    )


@pytest.mark.parametrize(("resamples", "level"), [(50, 0.9), (300, 0.99)])
def test_sobol_bootstrap_options_equal_salib(mixed: Tree, resamples: int, level: float) -> None:
    levers = list(mixed.levers)
    problem = problem_of(levers, MIXED_RANGES)
    design = sobol_sample.sample(problem, 256, calc_second_order=False, seed=8)
    output = kpitree.evaluate(mixed, pd.DataFrame(design, columns=levers), nodes=["y"])["y"]
    found = sobol_analyze.analyze(
        problem,
        output.to_numpy(),
        calc_second_order=False,
        seed=8,
        num_resamples=resamples,
        conf_level=level,
    )
    expected = pd.DataFrame({k: found[k] for k in SOBOL_COLUMNS}, index=levers)
    result = kpitree.sobol(
        mixed,
        "y",
        ranges=MIXED_RANGES,
        n=256,
        seed=8,
        num_resamples=resamples,
        conf_level=level,
        progress=False,
    )
    assert_same_indices(result, expected)
    assert result.basis["intervals"] == f"{level:.0%} bootstrap ({resamples} resamples)"


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_lever_that_cannot_move_the_target_has_zero_indices() -> None:
    tree = Tree.from_formulas("y = min(a, 1) + b", baselines={"a": 2.5, "b": 1.0})
    alone = kpitree.sobol(tree, "y", ranges={"a": (2, 3)}, n=64, seed=1, progress=False)
    assert (alone.to_frame()[SOBOL_COLUMNS] == 0).all().all()
    assert alone.variance == 0
    both = kpitree.sobol(
        tree, "y", ranges={"a": (2, 3), "b": (0, 1)}, n=64, seed=1, progress=False
    ).to_frame()
    assert (both.loc["a", SOBOL_COLUMNS] == 0).all()
    assert list(both.index) == ["b", "a"]
    morris = kpitree.morris(tree, "y", ranges={"a": (2, 3)}, n=4, seed=1).to_frame()
    assert (morris[MORRIS_COLUMNS] == 0).all().all()


def test_a_constant_target_gives_zero_indices_without_warnings() -> None:
    tree = Tree.from_formulas("y = min(a, 1) + b", baselines={"a": 2.5, "b": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = kpitree.sobol(tree, "y", ranges={"a": (2, 3)}, n=64, seed=1, progress=False)
    assert (result.to_frame()[SOBOL_COLUMNS] == 0).all().all()


# --- Sobol: seeds, options, progress ----------------------------------------------------


def test_sobol_seeds(mixed: Tree) -> None:
    run = lambda seed: kpitree.sobol(  # noqa: E731
        mixed, "y", ranges=MIXED_RANGES, n=256, seed=seed, progress=False
    ).to_frame()
    pd.testing.assert_frame_equal(run(4), run(4), check_exact=True)
    first, other = run(4), run(5)
    for column in SOBOL_COLUMNS:
        levers = list(MIXED_OWNERS)
        assert not np.allclose(first.loc[levers, column], other.loc[levers, column])


@pytest.mark.parametrize("n", [1000, 3, 0, 1, -8, 256.0, "256"])
def test_sobol_n_must_be_a_power_of_two(mixed: Tree, n: Any) -> None:
    with pytest.raises(OptionError, match="power of two") as caught:
        kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=n, progress=False)
    assert caught.value.option == "n"


def test_sobol_option_errors(mixed: Tree) -> None:
    with pytest.raises(OptionError) as caught:
        kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=64, groups="team", progress=False)
    assert caught.value.option == "groups"
    with pytest.raises(OptionError, match=r"\['e'\]") as caught:
        kpitree.sobol(
            mixed,
            "y",
            ranges=MIXED_RANGES,
            n=64,
            groups={"a": "x", "b": "x", "c": "y", "d": "y"},
            progress=False,
        )
    assert caught.value.option == "groups"
    with pytest.raises(OptionError, match="no lever varies") as caught:
        kpitree.sobol(mixed, "y", ranges={}, n=64, progress=False)
    assert caught.value.option == "ranges"
    with pytest.raises(OptionError, match="ppf") as caught:
        kpitree.sobol(mixed, "y", distributions={"a": 3.0}, n=64, progress=False)
    assert caught.value.option == "distributions"
    with pytest.raises(OptionError, match="is computed") as caught:
        kpitree.sobol(mixed, "y", ranges={"u": (0, 1)}, n=64, progress=False)
    assert caught.value.option == "ranges"
    with pytest.raises(OptionError) as caught:
        kpitree.sobol(mixed, "y", at=pd.DataFrame({"a": [1.0, 2.0]}), n=64, progress=False)
    assert caught.value.option == "at"


def test_sobol_data_errors_name_the_lever(deep: Tree) -> None:
    # win rate drawn beyond its bound of 1 by its law: the error names it
    with pytest.raises(DataError, match="'win_rate'") as caught:
        kpitree.sobol(
            deep,
            "profit",
            distributions={"win_rate": stats.uniform(0.5, 1.0)},
            n=64,
            seed=1,
            progress=False,
        )
    assert caught.value.node == "win_rate"


def test_sobol_progress_writes_nothing_when_off_or_fast(
    mixed: Tree, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=256, seed=1, progress=False)
    kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=256, seed=1, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""

    # a bar shown at once (no delay) proves that progress=True does draw one...
    def eager(*args: Any, **kwargs: Any) -> Any:
        return tqdm(*args, **(kwargs | {"delay": 0, "file": sys.stderr}))

    monkeypatch.setattr(gs, "tqdm", eager)
    kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=256, seed=1, progress=True)
    assert "sobol" in capsys.readouterr().err
    # ...and that progress=False disables it, whatever the delay
    kpitree.sobol(mixed, "y", ranges=MIXED_RANGES, n=256, seed=1, progress=False)
    assert capsys.readouterr().err == ""


# --- Morris -----------------------------------------------------------------------------

MORRIS_COLUMNS = ["mu", "mu_star", "mu_star_conf", "sigma"]


def salib_morris(
    tree: Tree,
    target: str,
    problem: dict[str, Any],
    n: int,
    seed: int,
    num_levels: int = 4,
    at: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    design = morris_sample.sample(problem, n, num_levels=num_levels, seed=seed)
    rows = pd.DataFrame(design, columns=problem["names"])
    for name, value in (at or {}).items():
        rows[name] = value
    output = kpitree.evaluate(tree, rows, nodes=[target])[target].to_numpy()
    found = morris_analyze.analyze(
        problem, design, output, num_levels=num_levels, seed=seed, num_resamples=1000
    )
    frame = pd.DataFrame(
        {k: np.asarray(found[k], dtype=float) for k in MORRIS_COLUMNS}, index=list(found["names"])
    )
    return design, frame


def assert_same_morris(result: kpitree.MorrisIndices, expected: pd.DataFrame) -> None:
    frame = result.to_frame()
    assert set(frame.index) == set(expected.index)
    for column in MORRIS_COLUMNS:
        np.testing.assert_allclose(
            frame.loc[expected.index, column].to_numpy(dtype=float),
            expected[column].to_numpy(),
            rtol=1e-12,
            atol=1e-12,
            err_msg=column,
        )


@pytest.mark.parametrize(("num_levels", "seed"), [(4, 1), (6, 42)])
def test_morris_equals_salib_called_directly(deep: Tree, num_levels: int, seed: int) -> None:
    levers = list(deep.levers)
    ranges = {k: (0.9 * v, 1.1 * v) for k, v in DEEP_BASELINES.items()}
    design, expected = salib_morris(
        deep, "profit", problem_of(levers, ranges), 12, seed, num_levels
    )
    result = kpitree.morris(deep, "profit", n=12, num_levels=num_levels, seed=seed)
    assert_same_morris(result, expected)
    frame = result.to_frame()
    assert list(frame.columns) == ["owner", *MORRIS_COLUMNS]
    assert frame["owner"].to_dict() == DEEP_OWNERS
    assert (np.diff(frame["mu_star"].to_numpy()) <= 0).all()
    assert result.n_evaluations == len(design) == 12 * (len(levers) + 1)
    assert result.basis == {
        "ranges": "±10%",
        "trajectories": 12,
        "levels": num_levels,
        "groups": "none (one index per lever)",
        "seed": seed,
    }


def test_morris_grouped_by_owner_equals_salib(deep: Tree) -> None:
    levers = list(deep.levers)
    at = {"capacity": 50.0, "arpa": 800.0}
    ranges = {k: (0.8 * v, 1.2 * v) for k, v in (DEEP_BASELINES | at).items()}
    problem = problem_of(levers, ranges) | {"groups": [DEEP_OWNERS[k] for k in levers]}
    design, expected = salib_morris(deep, "profit", problem, 10, 5, at=None)
    result = kpitree.morris(deep, "profit", at=at, ranges="±20%", n=10, groups="owner", seed=5)
    assert_same_morris(result, expected)
    assert list(result.to_frame().columns) == MORRIS_COLUMNS
    assert result.to_frame().index.name == "team"
    assert result.n_evaluations == len(design) == 10 * (4 + 1)


@pytest.mark.parametrize("num_levels", [4, 6, 8])
def test_morris_on_a_linear_model(num_levels: int) -> None:
    """Each elementary effect is (change of y) / delta, where the lever stepped by
    delta (high - low), delta = num_levels / (2 (num_levels - 1)): so mu = c (high - low)."""
    coefficient = {"a": 2.0, "b": -3.0, "c": 0.5}
    ranges = {"a": (0.0, 10.0), "b": (5.0, 7.0), "c": (1.0, 5.0)}
    tree = Tree.from_formulas(
        "y = 2 * a - 3 * b + 0.5 * c",
        baselines={"a": 1, "b": 6, "c": 2},
        owners={"a": "X", "b": "X", "c": "Z"},
    )
    result = kpitree.morris(tree, "y", ranges=ranges, n=8, num_levels=num_levels, seed=3)
    frame = result.to_frame()
    for name, (low, high) in ranges.items():
        expected = coefficient[name] * (high - low)
        assert frame.loc[name, "mu"] == pytest.approx(expected, rel=1e-12)
        assert frame.loc[name, "mu_star"] == pytest.approx(abs(expected), rel=1e-12)
        assert frame.loc[name, "sigma"] == pytest.approx(0, abs=1e-9 * abs(expected))
        assert frame.loc[name, "mu_star_conf"] == pytest.approx(0, abs=1e-9 * abs(expected))
    assert list(frame.index) == ["a", "b", "c"]  # mu_star 20, 6, 2: largest first
    # the step SALib's trajectories take is delta (high - low), one lever at a time
    names = list(ranges)
    design = morris_sample.sample(
        problem_of(names, ranges), 8, num_levels=num_levels, seed=3
    ).reshape(8, len(names) + 1, len(names))
    steps = np.abs(np.diff(design, axis=1))
    delta = num_levels / (2 * (num_levels - 1))
    widths = np.array([high - low for low, high in ranges.values()])
    assert ((steps > 0).sum(axis=2) == 1).all()
    np.testing.assert_allclose(steps.max(axis=1), np.broadcast_to(delta * widths, (8, 3)))


def test_morris_seeds_and_nonlinearity() -> None:
    tree = Tree.from_formulas("y = a * b + c ** 2", baselines={"a": 1, "b": 1, "c": 1})
    ranges = {"a": (0, 1), "b": (0, 1), "c": (0, 1)}
    first = kpitree.morris(tree, "y", ranges=ranges, n=20, seed=2).to_frame()
    again = kpitree.morris(tree, "y", ranges=ranges, n=20, seed=2).to_frame()
    other = kpitree.morris(tree, "y", ranges=ranges, n=20, seed=3).to_frame()
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert not np.allclose(first.loc[list(ranges), "mu"], other.loc[list(ranges), "mu"])
    # an interaction or curvature makes the effects vary: sigma > 0 for every lever
    assert (first["sigma"] > 0).all()
    # c^2 on a grid: effects are ((x + d)^2 - x^2) / d = 2 x + d, all positive
    assert first.loc["c", "mu"] == pytest.approx(first.loc["c", "mu_star"])


def test_morris_option_errors(mixed: Tree) -> None:
    with pytest.raises(OptionError) as caught:
        kpitree.morris(mixed, "y", groups=["a"], n=4)  # type: ignore[arg-type]
    assert caught.value.option == "groups"
    with pytest.raises(OptionError, match="is not a node") as caught:
        kpitree.morris(mixed, "y", ranges={"zz": (0, 1)}, n=4)
    assert caught.value.option == "ranges"


def test_team_indices_bound_the_indices_of_their_levers(deep: Tree) -> None:
    """A team's closed first-order index covers its levers' first-order indices and
    their interactions: S1(team) >= sum of S1(lever), and ST(team) >= S1(team)."""
    by_lever = kpitree.sobol(deep, "revenue", n=1024, seed=4, progress=False).to_frame()
    by_team = kpitree.sobol(
        deep, "revenue", n=1024, seed=4, groups="owner", progress=False
    ).to_frame()
    # revenue does not read the cost levers: they are not analysed at all
    assert not {"cpc", "lead_cost", "cost_per_sql", "overhead"} & set(by_lever.index)
    assert set(by_team.index) == {DEEP_OWNERS[name] for name in by_lever.index}
    for team, row in by_team.iterrows():
        members = [name for name in by_lever.index if DEEP_OWNERS[name] == team]
        noise = 3 * (row["S1_conf"] + np.sqrt((by_lever.loc[members, "S1_conf"] ** 2).sum()))
        assert row["S1"] >= by_lever.loc[members, "S1"].sum() - max(noise, 0.01), team
        assert row["ST"] >= row["S1"] - 3 * (row["S1_conf"] + row["ST_conf"]), team
