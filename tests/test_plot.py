"""Tree drawing: layered layout, crossings, team colours, value labels and the drawn figure."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from itertools import combinations, pairwise

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd
import pytest
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

import kpitree
from kpitree import plot

SPEC = """
revenue = new_revenue + recurring
new_revenue = customers * deal_size
customers = sqls * win_rate
"""
OWNERS = {
    "revenue": "Management",
    "new_revenue": "Field Sales",
    "customers": "Field Sales",
    "sqls": "Inside Sales",
    "win_rate": "Field Sales",
    "deal_size": "Field Sales",
    "recurring": "Customer Success",
}
LAYERS = {
    "revenue": 0,
    "new_revenue": 1,
    "recurring": 1,
    "customers": 2,
    "deal_size": 2,
    "sqls": 3,
    "win_rate": 3,
}


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture
def sales() -> kpitree.Tree:
    return kpitree.Tree.from_formulas(
        SPEC, owners=OWNERS, bounds={"win_rate": (0, 1)}, units={"deal_size": "JPY"}
    )


def random_tree_graph(n: int, seed: int) -> nx.DiGraph:
    """A random rooted tree (edges child -> parent) whose nodes are inserted shuffled."""
    rng = random.Random(seed)
    parent = {f"n{i}": f"n{rng.randrange(i)}" for i in range(1, n)}
    names = [f"n{i}" for i in range(n)]
    rng.shuffle(names)
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from((child, parent[child]) for child in names if child in parent)
    return graph


def crossings(graph: nx.DiGraph, x: dict[str, float], y: dict[str, float]) -> int:
    """Pairs of edges between the same two layers whose ends are in opposite orders."""
    assert all(round(y[p] - y[c], 9) == 1 for c, p in graph.edges), "edges span one layer"
    return sum(
        (x[c1] - x[c2]) * (x[p1] - x[p2]) < 0
        for (c1, p1), (c2, p2) in combinations(graph.edges, 2)
        if y[c1] == y[c2]
    )


def boxes(ax: plt.Axes) -> dict[str, FancyBboxPatch]:
    return {p.get_gid(): p for p in ax.patches if isinstance(p, FancyBboxPatch)}


def legend_texts(ax: plt.Axes) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


# --- layout -----------------------------------------------------------------------------


def test_layers_are_longest_paths_to_the_top(sales: kpitree.Tree) -> None:
    points = plot.layered_layout(sales.graph, layer_height=2.5)
    assert {name: -y / 2.5 for name, (_, y) in points.items()} == LAYERS


def test_every_node_is_strictly_below_all_its_parents() -> None:
    tree = kpitree.Tree.from_formulas(
        """
        profit = revenue - cost
        revenue = customers * price
        customers = leads * win_rate
        cost = customers * unit_cost + fixed
        """
    )
    points = plot.layered_layout(tree.graph)
    y = {name: point[1] for name, point in points.items()}
    assert set(points) == set(tree.nodes)
    assert all(y[child] < y[parent] for child, parent in tree.graph.edges)
    assert [n for n in tree.nodes if y[n] == 0] == list(tree.outputs) == ["profit"]
    assert y["customers"] == -2  # under revenue and cost although profit uses cost directly
    assert y["price"] == -2 and y["fixed"] == -2 and y["leads"] == -3


def test_barycenter_ordering_leaves_no_crossing_in_trees() -> None:
    naive_crossings = 0
    for seed in range(8):
        graph = random_tree_graph(30, seed)
        points = plot.layered_layout(graph)
        x = {n: p[0] for n, p in points.items()}
        y = {n: p[1] for n, p in points.items()}
        assert crossings(graph, x, y) == 0
        naive = {n: i for i, n in enumerate(graph)}  # insertion order, what sorting fixed
        naive_crossings += crossings(graph, naive, y)
    assert naive_crossings > 0


def test_example_tree_has_no_crossing_and_parents_sit_over_children(
    sales: kpitree.Tree,
) -> None:
    points = plot.layered_layout(sales.graph)
    x = {n: p[0] for n, p in points.items()}
    y = {n: p[1] for n, p in points.items()}
    assert crossings(sales.graph, x, y) == 0
    assert x["customers"] == pytest.approx((x["sqls"] + x["win_rate"]) / 2)
    assert x["revenue"] == pytest.approx((x["new_revenue"] + x["recurring"]) / 2)


def test_neighbours_in_a_layer_keep_their_widths_apart() -> None:
    graph = random_tree_graph(40, seed=3)
    widths = {name: 1 + len(name) * (i % 3) for i, name in enumerate(graph)}
    points = plot.layered_layout(graph, widths=widths, gap=0.5)
    for layer in {y for _, y in points.values()}:
        row = sorted((x, n) for n, (x, y) in points.items() if y == layer)
        for (xa, a), (xb, b) in pairwise(row):
            assert xb - xa >= (widths[a] + widths[b]) / 2 + 0.5 - 1e-9


def test_layout_is_deterministic_and_ignores_long_edge_bends() -> None:
    graph = nx.DiGraph([("a", "top"), ("b", "a"), ("c", "b"), ("c", "top"), ("d", "b")])
    first = plot.layered_layout(graph)
    assert first == plot.layered_layout(graph.copy())
    assert set(first) == {"a", "b", "c", "d", "top"}
    assert first["c"][1] == -3  # the edge c -> top spans three layers


# --- colours and labels -----------------------------------------------------------------


def test_team_colors_follow_first_appearance(sales: kpitree.Tree) -> None:
    colors = plot.team_colors(sales)
    assert list(colors) == ["Management", "Field Sales", "Customer Success", "Inside Sales"]
    assert len(set(colors.values())) == 4
    assert colors == plot.team_colors(sales)
    assert colors["Management"] == matplotlib.colormaps["tab10"](0)
    assert all(len(color) == 4 for color in colors.values())


@pytest.mark.parametrize("teams", [3, 15, 25])
def test_distinct_teams_get_distinct_colors(teams: int) -> None:
    spec = {f"k{i}": f"x{i} + y{i}" for i in range(teams)}
    owners = {f"k{i}": f"team{i}" for i in range(teams)} | {f"x{i}": f"team{i}" for i in range(3)}
    tree = kpitree.Tree.from_formulas(spec, owners=owners)
    colors = plot.team_colors(tree)
    assert len(colors) == teams and len(set(colors.values())) == teams


@pytest.mark.parametrize(
    ("value", "kwargs", "text"),
    [
        (0.253, {"bounds": (0, 1)}, "25.3%"),
        (0.253, {"unit": "%"}, "25.3%"),
        (0.253, {"bounds": (0, math.inf)}, "0.253"),
        (1234567, {}, "1.23M"),
        (-2.5e9, {}, "-2.5B"),
        (1.234e13, {"unit": "JPY"}, "12.3T"),
        (12345, {}, "12.3k"),
        (999_999, {}, "1M"),
        (4321.4, {}, "4,321"),
        (999.6, {}, "1,000"),
        (42, {}, "42"),
        (3.14159, {}, "3.14"),
        (0, {}, "0"),
        (float("nan"), {}, "n/a"),
    ],
)
def test_format_value(value: float, kwargs: dict, text: str) -> None:
    assert plot.format_value(value, **kwargs) == text


# --- drawing ----------------------------------------------------------------------------


def test_draw_has_one_text_per_node_and_a_team_legend(sales: kpitree.Tree) -> None:
    ax = plot.tree(sales, title="Sales")
    assert isinstance(ax, plt.Axes)
    assert sorted(t.get_text() for t in ax.texts) == sorted(sales.nodes)
    assert ax.get_title() == "Sales"
    assert legend_texts(ax) == [*plot.team_colors(sales), "lever (input)"]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == sales.graph.number_of_edges()


def test_boxes_are_coloured_by_team_and_levers_are_dashed(sales: kpitree.Tree) -> None:
    tree = sales.with_metadata("recurring", owner=None)
    drawn = boxes(plot.tree(tree))
    colors = plot.team_colors(tree)
    assert set(drawn) == set(tree.nodes)
    assert drawn["customers"].get_edgecolor() == colors["Field Sales"]
    assert drawn["win_rate"].get_edgecolor() == colors["Field Sales"]
    assert drawn["customers"].get_facecolor() != drawn["revenue"].get_facecolor()
    assert {n for n, p in drawn.items() if p.get_linestyle() == "--"} == set(tree.levers)
    assert plot.NO_OWNER in legend_texts(plot.tree(tree))


def test_values_are_written_under_names(sales: kpitree.Tree) -> None:
    values = {"revenue": 1234567, "win_rate": 0.253, "sqls": 1200, "unknown": 5}
    for given in (values, pd.Series(values), pd.DataFrame([values], index=["2024-06"])):
        texts = {t.get_gid(): t.get_text() for t in plot.tree(sales, given).texts}
        assert texts["revenue"] == "revenue\n1.23M"
        assert texts["win_rate"] == "win_rate\n25.3%"
        assert texts["sqls"] == "sqls\n1,200"
        assert texts["customers"] == "customers"  # missing values show no value


def test_values_from_evaluate(sales: kpitree.Tree) -> None:
    baselines = {"sqls": 100, "win_rate": 0.2, "deal_size": 5e6, "recurring": 3e8}
    frame = kpitree.evaluate(sales.with_baselines(baselines))
    texts = {t.get_gid(): t.get_text() for t in plot.tree(sales, frame).texts}
    assert texts["customers"] == "customers\n20"
    assert texts["revenue"] == "revenue\n400M"


def test_bad_values_raise_a_clear_error(sales: kpitree.Tree) -> None:
    with pytest.raises(ValueError, match="2 rows"):
        plot.tree(sales, pd.DataFrame({"revenue": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="'revenue' is not a number"):
        plot.tree(sales, {"revenue": "lots"})


def test_given_axes_is_reused(sales: kpitree.Tree) -> None:
    fig, (left, right) = plt.subplots(1, 2)
    assert plot.tree(sales, ax=right) is right
    assert fig.axes == [left, right] and len(right.texts) == len(sales.nodes)
    assert not left.texts and not right.axison


def test_fifty_nodes_draw_without_overlapping_boxes_and_text_fits() -> None:
    graph = random_tree_graph(50, seed=11)
    spec = {p: " + ".join(graph.predecessors(p)) for p in graph if graph.in_degree(p)}
    owners = {name: f"team {i % 7}" for i, name in enumerate(spec)}
    tree = kpitree.Tree.from_formulas(spec, owners=owners)
    values = {name: 10 ** (i % 9) * 1.2345 for i, name in enumerate(tree.nodes)}
    ax = plot.tree(tree, values)
    assert len(tree.nodes) == 50 and len(ax.texts) == 50
    assert legend_texts(ax) == [*(f"team {i}" for i in range(7)), "(no owner)", "lever (input)"]
    drawn = boxes(ax)
    extents = {n: (p.get_x(), p.get_x() + p.get_width(), p.get_y()) for n, p in drawn.items()}
    for (a0, a1, ay), (b0, b1, by) in combinations(extents.values(), 2):
        assert ay != by or a1 <= b0 or b1 <= a0
    assert min(t.get_fontsize() for t in ax.texts) >= 5
    ax.figure.canvas.draw()
    for text in ax.texts:
        inner, outer = text.get_window_extent(), drawn[text.get_gid()].get_window_extent()
        assert outer.x0 <= inner.x0 and inner.x1 <= outer.x1
        assert outer.y0 <= inner.y0 and inner.y1 <= outer.y1
