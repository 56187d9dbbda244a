"""Drawing: the tree (layout, crossings, team colours, value labels) and the result charts."""

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
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

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


# --- result charts ----------------------------------------------------------------------

PROFIT = """
profit = revenue - cost
revenue = customers * arpa
customers = leads * win_rate
"""
SWINGS = {"leads": (300, 500), "win_rate": (0.2, 0.3), "arpa": (1000, 1300), "cost": (4e4, 8e4)}


@pytest.fixture
def shop() -> kpitree.Tree:
    return kpitree.Tree.from_formulas(
        PROFIT,
        owners={
            "revenue": "Management",
            "leads": "Marketing",
            "win_rate": "Sales",
            "arpa": "Success",
        },
        baselines={"leads": 400, "win_rate": 0.25, "arpa": 1200, "cost": 50_000},
    )  # profit 70k; cost has no owner


def bars(ax: plt.Axes) -> list[Rectangle]:
    """The bars top to bottom (each chart's first row is drawn on top)."""
    return sorted((p for p in ax.patches if isinstance(p, Rectangle)), key=Rectangle.get_y)


def rows(ax: plt.Axes) -> list[str]:
    """The y tick labels, top to bottom."""
    assert ax.yaxis_inverted()
    return [label.get_text() for label in ax.get_yticklabels()]


def error_spans(ax: plt.Axes) -> list[tuple[float, float, float]]:
    """(x from, x to, y) of every horizontal error bar drawn."""
    spans = []
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            for lines in container.lines[2]:
                spans += [(s[0][0], s[1][0], s[0][1]) for s in lines.get_segments() if len(s)]
    return sorted(spans, key=lambda span: span[2])


def test_tornado_bars_run_from_target_low_to_target_high_largest_on_top(
    shop: kpitree.Tree,
) -> None:
    result = kpitree.tornado(shop, "profit", ranges=SWINGS)
    colors = plot.team_colors(shop)
    ax = result.plot(colors=colors)
    table = result.table
    assert list(table.index) == ["leads", "win_rate", "cost", "arpa"]  # swings 60k 48k 40k 30k
    drawn = bars(ax)
    assert [bar.get_gid() for bar in drawn] == list(table.index)
    for bar, (lever, row) in zip(drawn, table.iterrows(), strict=True):
        assert bar.get_x() == pytest.approx(row["target_low"]), lever
        assert bar.get_x() + bar.get_width() == pytest.approx(row["target_high"]), lever
    assert [bar.get_x() + bar.get_width() for bar in drawn] == pytest.approx([1e5, 94e3, 4e4, 8e4])
    assert rows(ax) == [
        "leads (300–500)",
        "win_rate (0.2–0.3)",
        "cost (40k–80k)",
        "arpa (1,000–1,300)",
    ]
    assert [bar.get_facecolor() for bar in drawn] == [
        colors["Marketing"],
        colors["Sales"],
        plot.NO_OWNER_COLOR,
        colors["Success"],
    ]
    high, center = ax.lines  # the dots at target_high, the line at the target's value
    assert tuple(center.get_xdata()) == (70_000, 70_000)
    assert list(high.get_xdata()) == pytest.approx(list(table["target_high"]))
    assert legend_texts(ax) == [
        "Marketing",
        "Sales",
        plot.NO_OWNER,
        "Success",
        "profit = 70k",
        "lever at high",
    ]
    assert ax.get_title() == result.title() and ax.get_xlabel() == "profit"
    # each end gives the target's value there, outside the bar; cost lowers profit, so its
    # low end (profit 80k) is on the right and its high end (40k) on the left
    ends = [(t.get_text(), t.xy[0], t.get_horizontalalignment()) for t in ax.texts]
    assert ends[:2] == [("40k", 4e4, "right"), ("100k", 1e5, "left")]  # leads
    assert ends[4:6] == [("80k", 8e4, "left"), ("40k", 4e4, "right")]  # cost


def test_tornado_top_levers_default_colours_and_title() -> None:
    table = pd.DataFrame(
        {
            "owner": ["Sales", None, "Marketing"],
            "low": [1.0, 2.0, 3.0],
            "high": [2.0, 4.0, 6.0],
            "target_low": [90.0, 95.0, 80.0],
            "target_high": [110.0, 105.0, 120.0],
            "swing": [20.0, 10.0, 40.0],  # not sorted: the chart sorts
            "basis": ["±10%"] * 3,
        },
        index=pd.Index(["a", "b", "c"], name="lever"),
    )
    result = kpitree.Tornado("y", 100.0, table)
    ax = plot.tornado(result, max_levers=2, title="")
    assert rows(ax) == ["c (3–6)", "a (1–2)"]
    colors = plot.team_colors(["Marketing", "Sales"])  # default: the teams shown, sorted
    assert [bar.get_facecolor() for bar in bars(ax)] == [colors["Marketing"], colors["Sales"]]
    assert ax.get_ylabel() == "lever (range), top 2 of 3"
    assert ax.get_title() == ""
    with pytest.raises(kpitree.errors.OptionError, match="no colour for team"):
        plot.tornado(result, colors={"Sales": "red"})
    with pytest.raises(kpitree.errors.OptionError, match="max_levers"):
        plot.tornado(result, max_levers=0)


def test_elasticity_bars_one_state(shop: kpitree.Tree) -> None:
    result = kpitree.elasticities(shop, "profit")
    colors = plot.team_colors(shop)
    ax = plot.elasticities(result, colors=colors)
    frame = result.to_frame()  # sorted by absolute elasticity
    drawn = bars(ax)
    assert rows(ax) == list(frame.index) and frame.index[-1] == "cost"
    assert [bar.get_width() for bar in drawn] == list(frame["elasticity"])
    assert [bar.get_width() for bar in drawn] == pytest.approx([12 / 7, 12 / 7, 12 / 7, -5 / 7])
    assert [bar.get_x() for bar in drawn] == [0, 0, 0, 0]
    team = {"leads": "Marketing", "win_rate": "Sales", "arpa": "Success"}
    expected = [colors[team[n]] if n in team else plot.NO_OWNER_COLOR for n in frame.index]
    assert [bar.get_facecolor() for bar in drawn] == expected
    assert [text.get_text() for text in ax.texts] == ["1.71", "1.71", "1.71", "-0.714"]
    assert ax.get_title() == "Elasticities of 'profit'"
    assert ax.get_xlabel() == "% change of profit per 1% change of the lever"


def test_elasticity_bars_are_the_mean_over_several_states(shop: kpitree.Tree) -> None:
    states = pd.DataFrame({"leads": [400, 100], "win_rate": 0.25, "arpa": 1200, "cost": 50_000})
    result = kpitree.elasticities(shop, "profit", at=states)  # profit 70k, then -20k
    ax = result.plot(max_levers=1)
    mean = (-5 / 7 + 5 / 2) / 2  # cost/profit: the largest in the mean, not in the first row
    assert rows(ax) == ["cost"]
    assert [bar.get_width() for bar in bars(ax)] == pytest.approx([mean])
    assert ax.get_title() == "Mean elasticities of 'profit' over 2 states"
    assert ax.get_ylabel() == "lever, top 1 of 4"


def test_elasticities_at_a_target_of_zero_draw_no_bar() -> None:
    tree = kpitree.Tree.from_formulas(
        "profit = revenue - cost", baselines={"revenue": 1, "cost": 1}
    )
    ax = kpitree.elasticities(tree, "profit").plot()
    assert all(math.isnan(bar.get_width()) for bar in bars(ax))
    assert [(t.get_text(), t.xy[0]) for t in ax.texts] == [("inf", 0), ("-inf", 0)]


def sobol_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "owner": ["Sales", "Marketing", None],
            "S1": [0.20, 0.55, 0.01],
            "S1_conf": [0.02, 0.05, float("nan")],
            "ST": [0.30, 0.60, 0.05],
            "ST_conf": [0.03, 0.04, 0.01],
        },
        index=pd.Index(["win_rate", "leads", "arpa"], name="lever"),
    )


def test_sobol_indices_are_paired_bars_with_confidence_error_bars() -> None:
    result = kpitree.SobolIndices("revenue", sobol_table(), variance=2.0, n_evaluations=8192)
    ax = result.plot(max_levers=2)
    assert rows(ax) == ["leads", "win_rate"]  # largest ST first, arpa left out
    drawn = bars(ax)  # per row: S1 above ST
    assert [bar.get_gid() for bar in drawn] == [
        "leads S1",
        "leads ST",
        "win_rate S1",
        "win_rate ST",
    ]
    assert [bar.get_width() for bar in drawn] == [0.55, 0.60, 0.20, 0.30]
    colors = plot.team_colors(["Marketing", "Sales"])
    assert drawn[1].get_facecolor() == colors["Marketing"] == drawn[0].get_edgecolor()
    assert drawn[0].get_facecolor() != colors["Marketing"]  # S1 is the pale one
    assert drawn[3].get_facecolor() == colors["Sales"]
    spans = [(round(a, 9), round(b, 9)) for a, b, _ in error_spans(ax)]
    assert spans == [(0.5, 0.6), (0.56, 0.64), (0.18, 0.22), (0.27, 0.33)]
    assert legend_texts(ax) == ["Marketing", "Sales", "S1 (first order)", "ST (total)"]
    assert ax.get_ylabel() == "lever, top 2 of 3" and ax.get_title() == result.title()


def test_sobol_indices_of_teams_are_coloured_by_the_index() -> None:
    table = sobol_table().drop(columns="owner").rename(index={"arpa": plot.NO_OWNER})
    table.index = pd.Index(["Sales", "Marketing", plot.NO_OWNER], name="team")
    ax = kpitree.SobolIndices("revenue", table, variance=2.0, n_evaluations=8192).plot()
    colors = plot.team_colors(["Marketing", "Sales"])
    st = [bar.get_facecolor() for bar in bars(ax) if bar.get_gid().endswith("ST")]
    assert st == [colors["Marketing"], colors["Sales"], plot.NO_OWNER_COLOR]
    assert len(error_spans(ax)) == 5  # the NaN S1_conf draws no error bar
    grouped = table.rename_axis("group")  # groups that are not teams: one neutral colour
    ax = kpitree.SobolIndices("revenue", grouped, 2.0, 8192).plot()
    assert len({bar.get_facecolor() for bar in bars(ax) if bar.get_gid().endswith("ST")}) == 1
    assert legend_texts(ax) == ["S1 (first order)", "ST (total)"]


def test_morris_indices_are_a_labelled_mu_star_sigma_scatter() -> None:
    table = pd.DataFrame(
        {
            "owner": ["Sales", "Marketing", "Sales"],
            "mu": [-1.0, 5.0, 2.0],
            "mu_star": [3.0, 5.0, 2.0],
            "mu_star_conf": [0.5, 1.0, 0.25],
            "sigma": [4.0, 1.0, 0.5],
        },
        index=pd.Index(["win_rate", "leads", "arpa"], name="lever"),
    )
    result = kpitree.MorrisIndices("revenue", table, n_evaluations=80)
    ax = result.plot(max_levers=2)
    (points,) = ax.collections[-1:]
    assert points.get_offsets().tolist() == [[5.0, 1.0], [3.0, 4.0]]  # leads, win_rate
    colors = plot.team_colors(["Marketing", "Sales"])
    assert [tuple(c) for c in points.get_facecolors()] == [colors["Marketing"], colors["Sales"]]
    assert error_spans(ax) == [(4.0, 6.0, 1.0), (2.5, 3.5, 4.0)]
    assert [text.get_text() for text in ax.texts] == ["leads", "win_rate"]
    assert legend_texts(ax) == ["Marketing", "Sales", "σ = μ*"]
    assert ax.get_title() == result.title()


def test_indices_need_sobol_or_morris_columns() -> None:
    result = kpitree.SobolIndices("y", pd.DataFrame({"x": [1.0]}), 1.0, 10)
    with pytest.raises(kpitree.errors.OptionError, match="S1, ST"):
        result.plot()


def test_distribution_is_a_histogram_with_quantile_lines(shop: kpitree.Tree) -> None:
    result = kpitree.monte_carlo(shop, "profit", ranges="±10%", n=400, seed=3)
    ax = result.plot(bins=25)
    assert len(ax.patches) == 25
    assert sum(bar.get_height() for bar in ax.patches) == 400
    quantiles = result.quantiles([0.1, 0.5, 0.9])
    assert [line.get_xdata()[0] for line in ax.lines] == list(quantiles)
    labels = [
        f"p{p} = {plot.format_value(v)}" for p, v in zip((10, 50, 90), quantiles, strict=True)
    ]
    assert legend_texts(ax) == labels
    assert ax.get_xlabel() == "profit" and ax.get_title() == result.title()


def ranking_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "impact": [1e5, 3e5, -2e4],
            "impact_pct": [10.0, 30.0, -2.0],
            "share": [0.25, 0.7, 0.05],
            "rank": [2, 1, 3],
            "ci_low": [8e4, 2e5, float("nan")],
            "ci_high": [1.3e5, 3.5e5, float("nan")],
        },
        index=pd.Index(["Marketing", "Sales", "Success"], name="team"),
    )


def test_team_ranking_bars_rank_one_on_top_with_intervals(shop: kpitree.Tree) -> None:
    result = kpitree.TeamRanking(
        "profit", 7e4, ranking_table(), {}, basis={"method": "Sobol total index"}
    )
    colors = plot.team_colors(shop)
    ax = result.plot(colors=colors)
    drawn = bars(ax)
    assert rows(ax) == ["Sales", "Marketing", "Success"]
    assert [bar.get_width() for bar in drawn] == [3e5, 1e5, -2e4]
    assert [bar.get_facecolor() for bar in drawn] == [
        colors["Sales"],
        colors["Marketing"],
        colors["Success"],
    ]
    assert error_spans(ax) == [(2e5, 3.5e5, 0), (8e4, 1.3e5, 1)]  # none for Success
    assert ax.get_xlabel() == "impact on profit: Sobol total index"
    shares = [(t.get_text(), t.xy[0], t.get_horizontalalignment()) for t in ax.texts]
    assert shares == [("70%", 3.5e5, "left"), ("25%", 1.3e5, "left"), ("5%", -2e4, "right")]


def test_team_ranking_without_intervals_or_method() -> None:
    table = ranking_table().drop(columns=["ci_low", "ci_high"])
    ax = kpitree.TeamRanking("profit", 7e4, table, {}).plot()
    assert error_spans(ax) == []
    assert ax.get_xlabel() == "impact on profit"
    assert [text.xy[0] for text in ax.texts] == [3e5, 1e5, -2e4]


def test_result_charts_draw_into_given_axes(shop: kpitree.Tree) -> None:
    results = [
        kpitree.tornado(shop, "profit"),
        kpitree.elasticities(shop, "profit"),
        kpitree.monte_carlo(shop, "profit", ranges="±10%", n=50, seed=1),
        kpitree.SobolIndices("revenue", sobol_table(), 2.0, 8192),
        kpitree.TeamRanking("profit", 7e4, ranking_table(), {}),
    ]
    for result in results:
        fig, (left, right) = plt.subplots(1, 2)
        assert result.plot(ax=right) is right
        assert fig.axes == [left, right] and not left.patches and right.patches


def test_team_colors_of_owners_match_the_tree(shop: kpitree.Tree) -> None:
    owners = [shop.owner(name) for name in shop.nodes]
    assert plot.team_colors(owners) == plot.team_colors(shop)
    assert list(plot.team_colors(["b", None, plot.NO_OWNER, "a", "b"])) == ["b", "a"]
