"""Exact Shapley values through the tree's structure, checked against brute force.

The reference is the definition itself: every one of the ``2^p`` coalitions evaluated
with :func:`kpitree.evaluate` (players in the coalition at their ``after`` values, the
others at ``before``), and each player's marginal contributions weighted by
``s! (p - s - 1)! / p!``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import kpitree
import kpitree.shapley as shapley_module
from kpitree import Tree
from kpitree.shapley import GameBuilder, NoExactPathError, shapley_values

# --- the reference: brute force over every coalition -------------------------------------


def coalition_inputs(
    before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], players: Sequence[str]
) -> dict[str, np.ndarray]:
    """Every input over ``2^p`` blocks of rows: block ``mask`` has player ``j`` at its
    ``after`` value when bit ``j`` of ``mask`` is set (rows inside a block: the states)."""
    p = len(players)
    masks = np.arange(2**p)
    columns = {}
    for name, first in before.items():
        first, second = np.asarray(first, float), np.asarray(after[name], float)
        if name in players:
            on = ((masks >> players.index(name)) & 1).astype(bool)[:, None]
            columns[name] = np.where(on, second[None, :], first[None, :]).ravel()
        else:
            columns[name] = np.tile(first, 2**p)
    return columns


def shapley_of_table(values: np.ndarray, p: int) -> np.ndarray:
    """Shapley values of the game ``values[mask, row]``: shape (players, rows)."""
    masks = np.arange(2**p)
    sizes = np.array([bin(m).count("1") for m in masks])
    weights = np.array(
        [math.factorial(s) * math.factorial(p - s - 1) / math.factorial(p) for s in range(p)]
    )
    phi = np.zeros((p, values.shape[1]))
    for j in range(p):
        without = masks[(masks >> j) & 1 == 0]
        gains = values[without | (1 << j)] - values[without]
        phi[j] = (weights[sizes[without]][:, None] * gains).sum(axis=0)
    return phi


def brute_force(
    tree: Tree,
    target: str,
    before: Mapping[str, np.ndarray],
    after: Mapping[str, np.ndarray],
    players: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """(coalition values ``(2^p, rows)``, Shapley values ``(p, rows)``) by enumeration."""
    n = len(np.asarray(next(iter(before.values()))))
    columns = coalition_inputs(before, after, list(players))
    values = kpitree.evaluate(tree, columns, nodes=[target])[target].to_numpy()
    values = values.reshape(2 ** len(players), n)
    return values, shapley_of_table(values, len(players))


def node_scale(tree: Tree, target: str, states: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """Per row, the largest magnitude of any value the target is computed from."""
    names = [target, *tree.upstream(target)]
    found = [kpitree.evaluate(tree, dict(state), nodes=names).abs().max(axis=1) for state in states]
    return np.maximum.reduce([f.to_numpy() for f in found]) + 1e-300


def test_the_weights_and_the_reference_on_a_hand_game() -> None:
    # y = a * b from (1, 10) to (2, 20): v(∅)=10, v(a)=20, v(b)=20, v(ab)=40
    values = np.array([[10.0], [20.0], [20.0], [40.0]])
    assert shapley_of_table(values, 2).ravel().tolist() == [15.0, 15.0]
    # three players, y = a + b * c: a gets Δa, b and c split Δ(bc) (hand: 0.5 Δb (c0 + c1))
    tree = Tree.from_formulas("y = a + b * c")
    before = {"a": np.array([1.0]), "b": np.array([2.0]), "c": np.array([3.0])}
    after = {"a": np.array([4.0]), "b": np.array([5.0]), "c": np.array([7.0])}
    _, phi = brute_force(tree, "y", before, after, ["a", "b", "c"])
    assert phi.ravel() == pytest.approx([3.0, 0.5 * 3 * (3 + 7), 0.5 * 4 * (2 + 5)], rel=1e-14)


# --- random trees -------------------------------------------------------------------------

# (formula template, what each operand may be, when the result is positive)
# operand kinds: "p" a positive value (lever or positive node), "a" anything, "l" a lever;
# result "all": positive when every operand is, "always", "never" (may be <= 0)
TEMPLATES = [
    ("{0} + {1}", "aa", "all"),
    ("{0} + {1} + {2}", "aaa", "all"),
    ("{0} - {1}", "ll", "never"),
    ("-{0} + 3 * {1}", "ll", "never"),
    ("{0} * {1}", "aa", "all"),
    ("{0} * {1} * {2}", "aaa", "all"),
    ("{0} / {1}", "ap", "all"),
    ("{0} * {1} / {2}", "aap", "all"),
    ("2 * {0} + {1} / 4", "aa", "all"),
    ("({0} + {1}) * ({0} + {2})", "aaa", "all"),
    ("{0} ** 2", "p", "always"),
    ("log(1 + {0})", "p", "always"),
    ("sqrt({0}) * {1}", "pa", "all"),
    ("exp({0} / (1 + {0}))", "p", "always"),
    ("min({0}, {1})", "aa", "all"),
    ("max({0}, {1}) * {2}", "aaa", "all"),
]


@dataclass
class Case:
    tree: Tree
    formulas: dict[str, str]
    target: str
    levers: list[str]
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]

    @property
    def players(self) -> list[str]:
        """Levers the target reads whose value changes in some row (in lever order)."""
        upstream = set(self.tree.upstream(self.target))
        return [x for x in self.levers if x in upstream and np.any(self.before[x] != self.after[x])]


@st.composite
def states(draw: st.DrawFn, levers: Sequence[str], rows: int) -> tuple[dict, dict]:
    """Positive levers changing by factors in [0.5, 2]; a few levers stay unchanged in
    every row, and a few more in some rows."""

    def some() -> set[str]:
        return set(draw(st.lists(st.sampled_from(list(levers)), max_size=2, unique=True)))

    unchanged = some()
    in_row = [some() if rows > 1 else set() for _ in range(rows)]
    before, after = {}, {}
    for name in levers:
        first = np.array([draw(st.floats(0.5, 2.0)) for _ in range(rows)])
        factor = np.array(
            [
                1.0 if name in unchanged or name in in_row[k] else draw(st.floats(0.5, 2.0))
                for k in range(rows)
            ]
        )
        before[name], after[name] = first, first * factor
    return before, after


@st.composite
def random_trees(
    draw: st.DrawFn, max_levers: int = 6, max_nodes: int = 6, max_rows: int = 2
) -> Case:
    """Nodes n0..nk over levers x0..xm and earlier nodes, shared freely (a DAG), built
    from +, -, *, /, powers, log, exp, sqrt, min and max; the target ``y`` is the sum or
    product of the nodes no other node reads."""
    levers = [f"x{i}" for i in range(draw(st.integers(2, max_levers)))]
    positive, signed = list(levers), []
    formulas = {}
    for k in range(draw(st.integers(1, max_nodes))):
        text, kinds, result = draw(st.sampled_from(TEMPLATES))
        pools = {"p": positive, "a": positive + signed, "l": levers}
        operands = []
        for kind in kinds:  # a node (latest first) a third of the time: deep trees
            nodes = [n for n in reversed(pools[kind]) if n not in levers]
            from_nodes = nodes and draw(st.integers(0, 2)) == 0
            pool = nodes if from_nodes else [x for x in pools[kind] if x in levers]
            operands.append(draw(st.sampled_from(pool)))
        name = f"n{k}"
        formulas[name] = text.format(*operands)
        is_positive = result == "always" or (
            result == "all" and all(o in positive for o in operands)
        )
        (positive if is_positive else signed).append(name)
    # the target joins every node no other node reads, so that the whole DAG counts
    unread = [n for n in formulas if not any(re.search(rf"\b{n}\b", f) for f in formulas.values())]
    target = "y"
    formulas[target] = unread[0]
    for name in unread[1:]:
        formulas[target] += draw(st.sampled_from([" + ", " * "])) + name
    rows = draw(st.integers(1, max_rows))
    before, after = draw(states(levers, rows))
    note(f"formulas={formulas}")
    return Case(Tree.from_formulas(formulas), formulas, target, levers, before, after)


@st.composite
def profile_friendly_trees(draw: st.DrawFn) -> Case:
    """Trees whose exact path never needs a table of more than one player: sums (which
    may share players) of pure sub-trees of sums, differences and products with disjoint
    factors (every lever used once inside a sub-tree), with constant multipliers."""
    n_levers = draw(st.integers(2, 8))
    levers = [f"x{i}" for i in range(n_levers)]
    formulas: dict[str, str] = {}
    tops = []
    for branch in range(draw(st.integers(1, 3))):
        chosen = draw(st.lists(st.sampled_from(levers), min_size=1, max_size=5, unique=True))
        terms = list(chosen)
        k = 0
        while len(terms) > 1:  # combine two random terms until one is left
            i = draw(st.integers(0, len(terms) - 1))
            left = terms.pop(i)
            j = draw(st.integers(0, len(terms) - 1))
            right = terms.pop(j)
            op = draw(st.sampled_from(["+", "-", "*", "* 0.5 *", "+ 2 *"]))
            name = f"b{branch}_{k}"
            formulas[name] = f"{left} {op} {right}"
            terms.append(name)
            k += 1
        tops.append(terms[0])
    formulas["y"] = " + ".join(tops) + " + 1"
    before, after = draw(states(levers, draw(st.integers(1, 2))))
    note(f"formulas={formulas}")
    return Case(Tree.from_formulas(formulas), formulas, "y", levers, before, after)


def exact_by_structure(case: Case, players: Sequence[str], **options: int) -> np.ndarray:
    """Shapley values from GameBuilder, in the order of ``players``."""
    n = len(case.before[case.levers[0]])
    builder = GameBuilder(case.tree, players, case.before, case.after, n, **options)
    game = builder.node(case.target)
    values = shapley_values(game)
    assert values.shape == (len(game.players), n)
    result = np.zeros((len(players), n))
    result[list(game.players)] = values
    return result


@settings(max_examples=60, deadline=None)
@given(random_trees(max_levers=8))
def test_attribute_shapley_equals_brute_force_on_random_dags(case: Case) -> None:
    players = case.players  # may be empty: then there is nothing to attribute
    result = kpitree.attribute(
        case.tree, case.before, case.after, target=case.target, method="shapley"
    )
    assert sorted(result.players) == sorted(players)
    players = list(result.players)
    assert result.basis["method"] == "shapley"  # exact: small tables within the budget
    assert result.stderr is None
    values, reference = brute_force(case.tree, case.target, case.before, case.after, players)
    scale = node_scale(case.tree, case.target, [case.before, case.after])
    assert np.all(np.abs(result.contributions - reference) <= 1e-9 * scale)
    # the game's values at the grand and empty coalitions are the two states
    assert np.all(np.abs(result.total - (values[-1] - values[0])) <= 1e-12 * scale)


@settings(max_examples=80, deadline=None)
@given(
    random_trees(max_levers=7),
    st.sampled_from([2, 4, 8, 64, shapley_module.MAX_TABLE_VALUES]),
    st.sampled_from([0, 1, 2, 3, shapley_module.SMALL_TABLE]),
)
def test_game_builder_is_exact_or_says_so_under_any_budget(
    case: Case, budget_per_row: int, small_table: int
) -> None:
    """Under small table budgets the builder switches to profiles (sums, disjoint
    products); whenever it answers, the answer is the brute-force Shapley value."""
    players = case.players
    n = len(case.before[case.levers[0]])
    with mock.patch.object(shapley_module, "SMALL_TABLE", small_table):
        try:
            phi = exact_by_structure(case, players, max_table_values=budget_per_row * n)
        except NoExactPathError:
            event("no exact path")
            return
    event(f"exact, {len(players)} players")
    _, reference = brute_force(case.tree, case.target, case.before, case.after, players)
    scale = node_scale(case.tree, case.target, [case.before, case.after])
    assert np.all(np.abs(phi - reference) <= 1e-9 * scale)


@settings(max_examples=50, deadline=None)
@given(profile_friendly_trees(), st.sampled_from([0, 1, 2, 3]))
def test_sums_and_disjoint_products_are_exact_through_profiles(
    case: Case, small_table: int
) -> None:
    players = case.players
    n = len(case.before[case.levers[0]])
    with mock.patch.object(shapley_module, "SMALL_TABLE", small_table):
        # a budget of two table rows: every game of two or more players is a profile
        phi = exact_by_structure(case, players, max_table_values=2 * n)
    _, reference = brute_force(case.tree, case.target, case.before, case.after, players)
    scale = node_scale(case.tree, case.target, [case.before, case.after])
    assert np.all(np.abs(phi - reference) <= 1e-9 * scale)
    total = (
        kpitree.evaluate(case.tree, case.after, nodes=["y"])["y"]
        - kpitree.evaluate(case.tree, case.before, nodes=["y"])["y"]
    ).to_numpy()
    assert np.all(np.abs(phi.sum(axis=0) - total) <= 1e-10 * scale)


# --- the games themselves -----------------------------------------------------------------


def one_row(values: Mapping[str, float]) -> dict[str, np.ndarray]:
    return {k: np.array([float(v)]) for k, v in values.items()}


def test_a_table_holds_every_coalition_value_bit_j_for_player_j() -> None:
    tree = Tree.from_formulas("y = (a + b) * c / d\nz = log(y) + a")
    before = one_row({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    after = one_row({"a": 1.5, "b": 2.5, "c": 5.0, "d": 2.0})
    players = ["a", "b", "c", "d"]
    builder = GameBuilder(tree, players, before, after, 1)
    for node in ("y", "z"):
        game = builder.node(node)
        assert game.players == (0, 1, 2, 3)
        assert game.table is not None
        values, _ = brute_force(tree, node, before, after, players)
        np.testing.assert_allclose(game.table, values, rtol=1e-14)


def test_a_table_over_some_players_uses_their_own_bits() -> None:
    tree = Tree.from_formulas("y = c * d")
    before = one_row({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    after = one_row({"a": 9.0, "b": 9.0, "c": 5.0, "d": 7.0})
    game = GameBuilder(tree, ["a", "b", "c", "d"], before, after, 1).node("y")
    assert game.players == (2, 3)  # c and d: bit 0 for c, bit 1 for d
    assert game.table.ravel().tolist() == [12.0, 20.0, 21.0, 35.0]  # type: ignore[union-attr]


def test_a_profile_holds_mean_values_and_marginals_per_coalition_size() -> None:
    tree = Tree.from_formulas("y = a * b + c * exp(d / 4) - min(a, c)")
    before = one_row({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    after = one_row({"a": 2.0, "b": 1.0, "c": 5.0, "d": 2.0})
    players = ["a", "b", "c", "d"]
    game = GameBuilder(tree, players, before, after, 1).node("y").profile()
    values, phi = brute_force(tree, "y", before, after, players)
    sizes = np.array([bin(m).count("1") for m in range(16)])
    for s in range(5):
        assert game.mean[s, 0] == pytest.approx(values[sizes == s, 0].mean(), rel=1e-13)  # type: ignore[index]
    for j in range(4):
        without = np.array([m for m in range(16) if not m >> j & 1])
        gains = values[without | (1 << j), 0] - values[without, 0]
        for s in range(4):
            expected = gains[sizes[without] == s].mean()
            assert game.marg[j, s, 0] == pytest.approx(expected, rel=1e-12, abs=1e-12)  # type: ignore[index]
    np.testing.assert_allclose(shapley_values(game), phi, rtol=1e-12)


def test_a_profile_product_of_disjoint_sums_equals_brute_force() -> None:
    # 3 x 3 players, every table limited to one player: mixing of the sizes only
    tree = Tree.from_formulas("y = u * v\nu = a + b + 2 * c\nv = d - e + f")
    rng = np.random.default_rng(3)
    names = list("abcdef")
    before = {k: rng.uniform(1, 2, size=3) for k in names}
    after = {k: before[k] * rng.uniform(0.5, 2, size=3) for k in names}
    builder = GameBuilder(tree, names, before, after, 3, max_table_values=6)
    game = builder.node("y")
    assert game.table is None  # a profile
    _, reference = brute_force(tree, "y", before, after, names)
    np.testing.assert_allclose(shapley_values(game), reference, rtol=1e-12)


def test_a_sum_of_products_sharing_players_is_exact_through_profiles() -> None:
    tree = Tree.from_formulas("y = a * b + b * c + c * a + a * b * c")
    before = one_row({"a": 1.0, "b": 2.0, "c": 3.0})
    after = one_row({"a": 2.0, "b": 3.0, "c": 1.0})
    builder = GameBuilder(tree, list("abc"), before, after, 1, max_table_values=4)
    with mock.patch.object(shapley_module, "SMALL_TABLE", 1):
        game = builder.node("y")
    assert game.table is None
    _, reference = brute_force(tree, "y", before, after, list("abc"))
    np.testing.assert_allclose(shapley_values(game), reference, rtol=1e-13)


@pytest.mark.parametrize(
    "spec",
    [
        "y = (a + b) * (a + c)",  # factors sharing a player
        "y = (a + b) / (c + d)",  # a divisor that changes
        "y = log(s)\ns = a + b + c",  # a function of a profile
    ],
)
def test_structures_without_an_exact_path_raise_under_a_small_budget(spec: str) -> None:
    tree = Tree.from_formulas(spec)
    names = [x for x in "abcd" if x in tree]
    before = one_row({k: 1.0 + i for i, k in enumerate(names)})
    after = one_row({k: 2.0 + i * i for i, k in enumerate(names)})
    builder = GameBuilder(tree, names, before, after, 1, max_table_values=2)
    with pytest.raises(NoExactPathError):
        builder.node("y")
    # with the default budget, the same games are tables and exact
    game = GameBuilder(tree, names, before, after, 1).node("y")
    _, reference = brute_force(tree, "y", before, after, names)
    np.testing.assert_allclose(shapley_values(game), reference, rtol=1e-13)


def test_no_player_gives_an_empty_answer_per_row() -> None:
    tree = Tree.from_formulas("y = a * b")
    state = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}
    game = GameBuilder(tree, [], state, state, 2).node("y")
    assert shapley_values(game).shape == (0, 2)


# --- the sampled path ---------------------------------------------------------------------


def sampled_case(spec: str, n_players: int, seed: int) -> tuple[Tree, dict, dict, list[str]]:
    tree = Tree.from_formulas(spec)
    rng = np.random.default_rng(seed)
    names = [f"x{i}" for i in range(1, n_players + 1)]
    before = {k: rng.uniform(1, 2, size=2) for k in names}
    after = {k: before[k] * rng.uniform(0.5, 2, size=2) for k in names}
    return tree, before, after, names


def xs(first: int, last: int) -> str:
    """``x1 + x2 + ... + x9``"""
    return " + ".join(f"x{i}" for i in range(first, last + 1))


@pytest.mark.parametrize(
    ("spec", "n_players"),
    [
        # log of a node that is a sum of 9 players: the sum is a profile, log needs a table
        (f"y = log(s)\ns = {xs(1, 9)}", 9),
        # a product of two large sums sharing players
        (f"y = u * v\nu = {xs(1, 9)}\nv = x1 + 2 * x2 + x10", 10),
        # a changing divisor of a disjoint product: sampled although a table would fit
        (f"y = ({xs(1, 5)}) / ({xs(6, 10)})", 10),
    ],
)
def test_the_sampled_estimate_is_within_its_standard_errors_and_still_additive(
    spec: str, n_players: int
) -> None:
    tree, before, after, names = sampled_case(spec, n_players, seed=n_players)
    result = kpitree.attribute(tree, before, after, target="y", n_permutations=400, seed=5)
    assert result.basis["method"] == "shapley (sampled)"
    assert result.stderr is not None
    assert result.stderr.shape == result.contributions.shape == (n_players, 2)
    players = list(result.players)
    assert sorted(players) == sorted(names)
    _, reference = brute_force(tree, "y", before, after, players)
    error = np.abs(result.contributions - reference)
    assert np.all(result.stderr > 0)
    assert np.all(error <= 4 * result.stderr + 1e-12), error / result.stderr
    # and the estimate is informative: its errors are small against the contributions
    assert np.all(result.stderr <= 0.2 * np.abs(reference).max(axis=0))
    # every permutation's marginals sum to the total, so their mean does too
    total = (
        kpitree.evaluate(tree, after, nodes=["y"])["y"]
        - kpitree.evaluate(tree, before, nodes=["y"])["y"]
    ).to_numpy()
    np.testing.assert_allclose(result.contributions.sum(axis=0), total, rtol=1e-12, atol=1e-14)
    frame = result.to_frame()
    assert "stderr" in frame.columns
    for (row, name), stderr in frame["stderr"].items():
        assert stderr == result.stderr[players.index(name), row]


def test_more_permutations_shrink_the_standard_error() -> None:
    tree, before, after, _ = sampled_case(f"y = log(s)\ns = {xs(1, 9)}", 9, seed=1)
    few = kpitree.attribute(tree, before, after, n_permutations=50, seed=2)
    many = kpitree.attribute(tree, before, after, n_permutations=800, seed=2)
    assert few.stderr is not None and many.stderr is not None
    ratio = np.median(few.stderr / many.stderr)
    assert 2.5 < ratio < 6.5  # sqrt(800 / 50) = 4
    again = kpitree.attribute(tree, before, after, n_permutations=50, seed=2)
    np.testing.assert_array_equal(few.contributions, again.contributions)  # seeded


def test_a_small_table_setting_sends_shared_factors_to_sampling_and_disjoint_ones_to_profiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shapley_module, "SMALL_TABLE", 1)
    before = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    after = {"a": 2.0, "b": 1.5, "c": 5.0, "d": 3.0}
    arrays = (one_row(before), one_row(after))

    disjoint = Tree.from_formulas("y = (a + b) * (c + d)")
    exact = kpitree.attribute(disjoint, before, after)
    assert exact.basis["method"] == "shapley"
    _, reference = brute_force(disjoint, "y", *arrays, list(exact.players))
    np.testing.assert_allclose(exact.contributions, reference, rtol=1e-13)

    shared = Tree.from_formulas("y = (a + b) * (a + c) + d")
    sampled = kpitree.attribute(shared, before, after, n_permutations=200)
    assert sampled.basis["method"] == "shapley (sampled)"
    _, reference = brute_force(shared, "y", *arrays, list(sampled.players))
    assert np.all(np.abs(sampled.contributions - reference) <= 4 * sampled.stderr + 1e-12)  # type: ignore[operator]
    # d enters additively: every permutation gives it exactly Δd
    assert sampled.contributions[list(sampled.players).index("d"), 0] == pytest.approx(-1.0)


# --- the bundled company: 21 players, 2^21 coalitions ---------------------------------------


@pytest.fixture(scope="module")
def company() -> tuple[kpitree.FittedTree, Tree, pd.DataFrame]:
    raw = kpitree.datasets.load_b2b()
    history = kpitree.datasets.simulate_b2b()
    fitted = kpitree.fit(raw, history)
    return fitted, raw, kpitree.with_lags(fitted, history)


@pytest.fixture(scope="module")
def company_change(
    company: tuple[kpitree.FittedTree, Tree, pd.DataFrame],
) -> tuple[kpitree.FittedTree, Tree, pd.Series, pd.Series]:
    fitted, raw, history = company
    return fitted, raw, history.iloc[-2], history.iloc[-1]


def test_the_fitted_company_shapley_equals_brute_force_over_all_coalitions(
    company_change: tuple[kpitree.FittedTree, Tree, pd.Series, pd.Series],
) -> None:
    """The value of a coalition, built without the library's residual machinery: its
    levers through the fitted links give predicted rates, each rate is shifted by its
    residual (observed - predicted in that state, on or off with its player), and the
    unfitted tree (rates as inputs) gives revenue."""
    fitted, raw, before_row, after_row = company_change
    links = list(fitted.links)
    levers = [n for n in fitted.upstream("revenue") if n in fitted.levers]

    def residuals(row: pd.Series) -> dict[str, np.ndarray]:
        predicted = kpitree.evaluate(fitted, row.to_frame().T, nodes=links).iloc[0]
        return {f"{k}__residual": np.array([row[k] - predicted[k]]) for k in links}

    before = {k: np.array([float(before_row[k])]) for k in levers} | residuals(before_row)
    after = {k: np.array([float(after_row[k])]) for k in levers} | residuals(after_row)
    players = [k for k in before if before[k][0] != after[k][0]]
    assert len(players) == 21

    result = kpitree.attribute(fitted, before_row, after_row, target="revenue")
    assert result.basis["method"] == "shapley"
    assert sorted(result.players) == sorted(players)

    columns = coalition_inputs(before, after, players)
    predicted = kpitree.evaluate(fitted, {k: columns[k] for k in levers}, nodes=links)
    rates = {k: predicted[k].to_numpy() + columns[f"{k}__residual"] for k in links}
    values = kpitree.evaluate(raw, {k: columns[k] for k in levers} | rates, nodes=["revenue"])
    values = values["revenue"].to_numpy()[:, None]
    # the grand coalition is the observed month, the empty one the month before
    observed = after_row["revenue"] - before_row["revenue"]
    assert values[-1, 0] - values[0, 0] == pytest.approx(observed, rel=1e-12)
    reference = dict(zip(players, shapley_of_table(values, len(players))[:, 0], strict=True))
    got = dict(zip(result.players, result.contributions[:, 0], strict=True))
    scale = abs(before_row["revenue"])
    for name in players:
        assert abs(got[name] - reference[name]) <= 1e-9 * scale, name
    assert result.contributions.sum() == pytest.approx(observed, rel=1e-10)


def test_the_table_budget_is_shared_by_the_rows() -> None:
    tree = Tree.from_formulas("y = u * v\nu = a + b\nv = c + d")
    state = one_row({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    builder = GameBuilder(tree, list("abcd"), state, state, 4)
    assert builder.max_table_rows == shapley_module.MAX_TABLE_VALUES // 4
    assert GameBuilder(tree, [], state, state, 10**9).max_table_rows == 2  # never below 2


def rename(text: str, mapping: Mapping[str, str]) -> str:
    return re.sub(r"\b\w+\b", lambda m: mapping.get(m.group(0), m.group(0)), text)


@settings(max_examples=40, deadline=None)
@given(random_trees(max_levers=4, max_nodes=4, max_rows=1))
def test_shapley_values_do_not_depend_on_the_players_numbering(case: Case) -> None:
    """The builder indexes players by position: renaming the levers so that their order
    reverses permutes the values and changes nothing else."""
    players = case.players
    forward = exact_by_structure(case, players)
    reverse = {x: f"z{len(case.levers) - i}" for i, x in enumerate(case.levers)}
    renamed = Case(
        Tree.from_formulas({k: rename(v, reverse) for k, v in case.formulas.items()}),
        case.formulas,
        case.target,
        [reverse[x] for x in case.levers],
        {reverse[k]: v for k, v in case.before.items()},
        {reverse[k]: v for k, v in case.after.items()},
    )
    backward = exact_by_structure(renamed, [reverse[x] for x in reversed(players)])
    scale = node_scale(case.tree, case.target, [case.before, case.after])
    assert np.all(np.abs(backward[::-1] - forward) <= 1e-12 * scale)


def test_a_one_player_profile_inside_a_sum_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """SMALL_TABLE = 0: every game is a profile, even one player lifted into a sum of one
    player (the hypergeometric mixing over an empty population)."""
    monkeypatch.setattr(shapley_module, "SMALL_TABLE", 0)
    tree = Tree.from_formulas("y = s + 1\ns = a + b")
    before, after = one_row({"a": 1.0, "b": 1.0}), one_row({"a": 1.0, "b": 0.5})
    game = GameBuilder(tree, ["b"], before, after, 1).node("y")
    assert shapley_values(game).tolist() == [[-0.5]]


def test_the_company_over_thousands_of_rows_is_exact_through_profiles(
    company: tuple[kpitree.FittedTree, Tree, pd.DataFrame],
) -> None:
    """With 3,000 rows the table budget per row allows 10 players, so the 15-player
    new-revenue branch is built from profiles: the same values as one row at a time
    (tables over every player)."""
    fitted, _, history = company
    history = history.iloc[3:]  # months with a lagged NPS
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(history) - 1, 3000)
    before = history.iloc[pick].reset_index(drop=True)
    after = history.iloc[pick + 1].reset_index(drop=True)
    together = kpitree.attribute(fitted, before, after, target="revenue")
    assert together.basis["method"] == "shapley"
    np.testing.assert_allclose(
        together.contributions.sum(axis=0),
        after["revenue"].to_numpy() - before["revenue"].to_numpy(),
        rtol=1e-9,
    )
    for row in (0, 1, 2999):
        alone = kpitree.attribute(fitted, before.iloc[row], after.iloc[row], target="revenue")
        expected = alone.contributions[:, 0]
        got = together.wide().iloc[row][list(alone.players)].to_numpy()
        assert np.all(np.abs(got - expected) <= 1e-12 * abs(before["revenue"].iloc[row]))
