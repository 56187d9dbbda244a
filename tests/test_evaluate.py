"""Evaluating trees: known values, blocks, data errors naming nodes and rows."""

from __future__ import annotations

import re
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import kpitree
from kpitree import DataError, DataWarning, Tree, UnknownNodeError
from kpitree.compile import BLOCK_ROWS


def test_baseline_funnel_by_hand(funnel: Tree) -> None:
    row = kpitree.evaluate(funnel).iloc[0]
    # 5,000 visits x 2% = 100 leads; x 0.5 = 50 MQLs; x 0.4 = 20 SQLs; x 0.25 = 5 wins
    assert row["visits"] == 5000
    assert row["leads"] == pytest.approx(100)
    assert row["mqls"] == pytest.approx(50)
    assert row["sqls"] == pytest.approx(20)
    assert row["new_customers"] == pytest.approx(5)
    assert row["revenue"] == pytest.approx(10_000_000)
    assert list(row.index) == list(funnel.nodes)


def test_dataframe_inputs_keep_their_index_and_extra_columns_are_ignored(funnel: Tree) -> None:
    index = pd.period_range("2024-01", periods=3, freq="M", name="period")
    data = pd.DataFrame(
        {"sns": [1000, 2000, 0], "search": 3000, "ads": [1000, 0, 500],
         "leads": [-1.0, -1.0, -1.0], "comment": ["a", "b", "c"]},
        index=index,
    )  # fmt: skip
    result = kpitree.evaluate(funnel, data, nodes=["visits", "leads", "revenue"])
    assert result.index.equals(index)
    assert list(result.columns) == ["visits", "leads", "revenue"]
    assert result["visits"].tolist() == [5000, 5000, 3500]
    assert result["leads"].tolist() == pytest.approx([100, 100, 70])
    assert result["revenue"].tolist() == pytest.approx([1e7, 1e7, 7e6])


def test_mapping_inputs_broadcast_scalars(funnel: Tree) -> None:
    result = kpitree.evaluate(funnel, {"win_rate": np.array([0.1, 0.2, 0.3])}, nodes="revenue")
    assert result["revenue"].tolist() == pytest.approx([4e6, 8e6, 12e6])
    assert result.index.equals(pd.RangeIndex(3))


def test_tree_evaluate_delegates(funnel: Tree) -> None:
    expected = kpitree.evaluate(funnel, {"ads": 2000})
    pd.testing.assert_frame_equal(funnel.evaluate({"ads": 2000}), expected)


def test_many_blocks_match_plain_numpy(funnel: Tree) -> None:
    rng = np.random.default_rng(7)
    n = 3 * BLOCK_ROWS + 17
    inputs = {name: rng.uniform(0.1, 0.9, n) for name in funnel.levers}
    got = kpitree.evaluate(funnel, inputs)
    visits = inputs["sns"] + inputs["search"] + inputs["ads"]
    expected = (
        visits * inputs["request_rate"] * inputs["mql_rate"] * inputs["sql_rate"]
        * inputs["win_rate"] * inputs["deal_size"]
    )  # fmt: skip
    np.testing.assert_allclose(got["revenue"], expected, rtol=1e-14)
    np.testing.assert_array_equal(got["win_rate"], inputs["win_rate"])


def test_compiled_evaluator_is_cached_and_holds_no_user_text(funnel: Tree) -> None:
    assert funnel.compile() is funnel.compile()
    assert funnel.compile(["revenue"]) is not funnel.compile()
    source = funnel.compile().source
    assert all(name not in source for name in ("revenue", "sqls", "win_rate", "sns"))
    assert source.count(" = (") == len(funnel.computed)  # one statement per computed node


def test_evaluating_a_few_nodes_only_computes_what_they_need(funnel: Tree) -> None:
    compiled = funnel.compile(["leads"])
    assert compiled.inputs == ("sns", "search", "ads", "request_rate")  # depth first
    assert compiled.source.count(" = (") == 2  # visits and leads


def test_memory_does_not_grow_with_intermediate_nodes() -> None:
    chain = "\n".join(f"n{i} = n{i - 1} * 1.0001 + a" for i in range(1, 400))
    tree = Tree.from_formulas(chain)
    rows = 50_000
    inputs = {"n0": np.ones(rows), "a": np.ones(rows)}
    tree.compile(["n399"])  # compiling allocates Python objects: not what is measured here
    tracemalloc.start()
    kpitree.evaluate(tree, inputs, nodes=["n399"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    one_column = rows * 8
    assert peak < 4 * one_column  # the output plus a few cache-sized blocks, not 400 columns


def test_missing_lever_without_baseline(funnel: Tree) -> None:
    tree = funnel.with_formula("deal_size", "price * seats")
    with pytest.raises(DataError) as info:
        kpitree.evaluate(tree, {"price": 10.0})
    assert info.value.column == "seats" and info.value.reason == "missing"
    assert "'seats' is missing" in str(info.value)


def test_nan_input_names_the_column_and_rows(funnel: Tree) -> None:
    data = pd.DataFrame({"ads": [1000, np.nan, 1000, np.nan]}, index=list("abcd"))
    with pytest.raises(DataError) as info:
        kpitree.evaluate(funnel, data)
    error = info.value
    assert (error.column, error.rows, error.reason) == ("ads", ["b", "d"], "nan")
    assert "lever 'ads' has NaN in 2 row(s), first [b, d]" in str(error)


def test_out_of_bounds_lever(funnel: Tree) -> None:
    with pytest.raises(DataError, match=r"'win_rate' is outside its bounds \[0, 1\]") as info:
        kpitree.evaluate(funnel, {"win_rate": [0.2, 1.5, -0.1]})
    assert info.value.rows == [1, 2] and info.value.reason == "out of bounds"
    assert str(info.value).endswith(": 1.5, -0.1")


def test_faults_in_later_blocks_are_found_with_their_row_labels(funnel: Tree) -> None:
    n = 3 * BLOCK_ROWS
    index = pd.RangeIndex(1000, 1000 + n)
    ads, win_rate = np.full(n, 1000.0), np.full(n, 0.25)
    ads[2 * BLOCK_ROWS + 7] = np.nan  # an unbounded lever: found through the result
    with pytest.raises(DataError) as info:
        kpitree.evaluate(funnel, pd.DataFrame({"ads": ads}, index=index), nodes=["revenue"])
    assert (info.value.column, info.value.rows) == ("ads", [1000 + 2 * BLOCK_ROWS + 7])
    win_rate[BLOCK_ROWS + 1] = 1.01  # a bounded lever: found by the guard
    frame = pd.DataFrame({"win_rate": win_rate}, index=index)
    with pytest.raises(DataError, match="outside its bounds") as info:
        kpitree.evaluate(funnel, frame, nodes=["revenue"])
    assert info.value.rows == [1000 + BLOCK_ROWS + 1]


def test_bounds_are_checked_just_before_first_use(funnel: Tree) -> None:
    lines = funnel.compile(["new_customers"]).source.splitlines()
    guards = [i for i, line in enumerate(lines) if line.startswith("    if not (0.0 <= ")]
    assert len(guards) == 3  # request_rate, sql_rate and win_rate are bounded in [0, 1]
    for i in guards:
        var = re.match(r"    if not \(0\.0 <= (v\d+)\.min\(\) and \1\.max\(\) <= 1\.0\):", lines[i])
        assert var is not None and lines[i + 1] == "        raise _BoundError"
        reads = [j for j, line in enumerate(lines) if re.match(rf"    v\d+ = .*\b{var[1]}\b", line)]
        assert reads[0] == i + 2  # the statement right after the guard is its first reader


def test_out_of_bounds_computed_node() -> None:
    tree = Tree.from_formulas("win_rate = wins / sqls", bounds={"win_rate": (0, 1)})
    with pytest.raises(DataError, match="node 'win_rate' is outside its bounds") as info:
        kpitree.evaluate(tree, {"wins": [5, 30], "sqls": [20, 20]})
    assert info.value.node == "win_rate" and info.value.rows == [1]


@pytest.mark.parametrize(
    ("spec", "inputs", "node", "fragment"),
    [
        ("sql_rate = sqls / mqls", {"sqls": [1, 2], "mqls": [4, 0]}, "sql_rate", "sqls=2, mqls=0"),
        ("y = log(x)", {"x": [1.0, -2.0]}, "y", "x=-2"),
        ("y = sqrt(x) + 1", {"x": [1.0, -4.0]}, "y", "x=-4"),
        ("y = exp(x)", {"x": [1.0, 1000.0]}, "y", "x=1000"),
        ("y = (a - b) ** 0.5", {"a": [1.0, 1.0], "b": [0.0, 2.0]}, "y", "a=1, b=2"),
    ],
)
def test_non_finite_results_name_node_row_and_inputs(spec, inputs, node, fragment) -> None:
    tree = Tree.from_formulas(spec)
    with pytest.raises(DataError) as info:
        kpitree.evaluate(tree, inputs)
    error = info.value
    assert (error.node, error.rows, error.reason) == (node, [1], "not finite")
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("spec", "inputs", "node"),
    [
        ("rate = sqls / mqls", {"sqls": 3.0, "mqls": 0.0}, "rate"),
        ("y = x ** 0.5 + 1", {"x": -4.0}, "y"),  # complex in Python floats, never returned
        ("y = abs(x ** 1.5)", {"x": -4.0}, "y"),
        ("y = exp(x) * 2", {"x": 1000.0}, "y"),
        ("y = x * 1e300", {"x": 1e10}, "y"),  # a silent inf in Python floats
        ("y = log(x)", {"x": 0.0}, "y"),
    ],
)
def test_single_states_fail_like_many_rows(spec, inputs, node) -> None:
    tree = Tree.from_formulas(spec)
    with pytest.raises(DataError) as info:
        kpitree.evaluate(tree, inputs)
    assert (info.value.node, info.value.rows, info.value.reason) == (node, [0], "not finite")
    many = {name: [1.0, value] for name, value in inputs.items()}
    with pytest.raises(DataError) as info:
        kpitree.evaluate(tree, many)
    assert (info.value.node, info.value.rows) == (node, [1])


def test_the_culprit_is_where_non_finite_values_start_not_where_they_spread() -> None:
    tree = Tree.from_formulas("top = ratio * 2 + other\nratio = a / b\nother = c * 3")
    n = 2 * BLOCK_ROWS + 10
    b = np.ones(n)
    b[BLOCK_ROWS + 5] = 0.0
    frame = pd.DataFrame({"a": 1.0, "b": b, "c": 1.0}, index=pd.RangeIndex(100, 100 + n))
    with pytest.raises(DataError) as info:
        kpitree.evaluate(tree, frame, nodes=["top"])
    assert info.value.node == "ratio"
    assert info.value.rows == [100 + BLOCK_ROWS + 5]


def test_warn_returns_ieee_values_with_warnings(funnel: Tree) -> None:
    tree = Tree.from_formulas("rate = wins / sqls", bounds={"sqls": (0, 100)})
    with pytest.warns(DataWarning) as record:
        result = kpitree.evaluate(tree, {"wins": [1.0, 1.0], "sqls": [0.0, 200.0]}, errors="warn")
    messages = [str(w.message) for w in record]
    assert any("outside its bounds" in m for m in messages)
    assert any("'rate' is not finite" in m for m in messages)
    assert result["rate"].tolist() == [np.inf, 0.005]
    assert record[0].filename == __file__  # attributed to the caller


def test_ignore_skips_every_check() -> None:
    tree = Tree.from_formulas("rate = wins / sqls", bounds={"rate": (0, 1)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = kpitree.evaluate(tree, {"wins": [1.0, 5.0], "sqls": [0.0, 2.0]}, errors="ignore")
    assert result["rate"].tolist() == [np.inf, 2.5]


def test_input_shape_and_type_errors(funnel: Tree) -> None:
    with pytest.raises(DataError, match="differ in length") as info:
        kpitree.evaluate(funnel, {"sns": [1, 2, 3], "ads": [1, 2]})
    assert info.value.column == "ads"
    with pytest.raises(DataError, match="'ads' is not numeric"):
        kpitree.evaluate(funnel, pd.DataFrame({"ads": ["x", "y"]}))
    with pytest.raises(UnknownNodeError, match="did you mean 'revenue'"):
        kpitree.evaluate(funnel, nodes=["revenu"])
    with pytest.raises(kpitree.errors.OptionError, match="errors must be") as info:
        kpitree.evaluate(funnel, errors="loud")  # type: ignore[arg-type]
    assert info.value.option == "errors"
    with pytest.raises(DataError, match="a DataFrame or a mapping, not list"):
        kpitree.evaluate(funnel, [1, 2, 3])  # type: ignore[arg-type]


def test_empty_frame_gives_an_empty_result(funnel: Tree) -> None:
    empty = pd.DataFrame({"ads": pd.Series([], dtype=float)})
    result = kpitree.evaluate(funnel, empty, nodes=["revenue"])
    assert result.shape == (0, 1)


@st.composite
def random_trees(draw: st.DrawFn) -> Tree:
    levers = [f"x{i}" for i in range(draw(st.integers(2, 5)))]
    names: list[str] = list(levers)
    lines = []
    for i in range(draw(st.integers(1, 8))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        constant = draw(st.sampled_from(["", " + 1", " * 0.5", " - 2"]))
        lines.append(f"n{i} = ({a} {op} {b}){constant}")
        names.append(f"n{i}")
    return Tree.from_formulas("\n".join(lines))


@settings(max_examples=60, deadline=None)
@given(random_trees(), st.integers(0, 2**32 - 1))
def test_random_trees_match_lambdified_expanded_formulas(tree: Tree, seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = {name: rng.uniform(1.0, 2.0, 5) for name in tree.levers}
    try:
        got = kpitree.evaluate(tree, inputs)
    except DataError as error:
        # evaluation follows formulas as written: with +, -, *, / on inputs in [1, 2] the only
        # way to a non-finite value is dividing by an exact zero such as x0 - x0
        assert error.reason == "not finite"
        assert "/" in str(tree.node(error.node).formula)
        assert re.search(r"=-?0(,|$)", str(error))
        return
    symbols = [tree.symbols[lever] for lever in tree.levers]
    for name in tree.computed:
        reference = sympy.lambdify(symbols, tree.expand(name), "numpy")
        expected = np.broadcast_to(reference(*(inputs[n] for n in tree.levers)), (5,))
        np.testing.assert_allclose(got[name], expected, rtol=1e-7, atol=1e-9)
