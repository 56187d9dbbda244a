"""Draw a KPI tree: a layered top-down layout, one colour per owner team, optional values.

Pure computation comes first: :func:`layered_layout` (top KPIs on top), :func:`team_colors`
(one fixed colour per owner, shared by the result charts) and :func:`format_value`; then
:func:`tree` draws with matplotlib, in *em* units (one unit = one font size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from itertools import combinations, pairwise
from statistics import fmean
from typing import TYPE_CHECKING, Any, cast

import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path
from matplotlib.textpath import text_to_path

from ..errors import OptionError
from ..node import NO_OWNER
from ..tree import Tree

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.text import Text

__all__ = ["NO_OWNER", "NO_OWNER_COLOR", "format_value", "layered_layout", "team_colors", "tree"]

RGBA = tuple[float, float, float, float]
Point = tuple[float, float]
Vertex = Hashable  # a node name, or a (child, parent, layer) dummy on an edge spanning layers
Neighbours = Callable[[Vertex], Iterable[Vertex]]
NO_OWNER_COLOR: RGBA = (0.8, 0.8, 0.8, 1.0)
_PAD_X, _PAD_Y, _LINE, _ROW_GAP = 1.2, 0.5, 1.25, 3.0  # em: box padding, line height, layer gap
_EM_INCHES, _MAX_INCHES, _LEGEND_INCHES, _SWEEPS = 10 / 72, 28.0, 2.2, 4
_FONT, _measure = FontProperties(size=1), text_to_path.get_text_width_height_descent  # in em
_BOX = "round,pad=0,rounding_size=0.4"
_ARROW: dict[str, Any] = {"arrowstyle": "-|>", "mutation_scale": 8, "color": "0.55", "lw": 0.8}
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def team_colors(tree: Tree | Iterable[str | None]) -> dict[str, RGBA]:
    """Owner -> RGBA, teams in order of first appearance in ``tree.nodes`` (tab10/tab20).

    ``tree`` may also be the owners themselves, in order (``None`` and :data:`NO_OWNER`
    skipped): the colours of a chart of results that name owners but not their tree.

    >>> from kpitree import Tree
    >>> t = Tree.from_formulas("a = b + c", owners={"a": "Sales", "c": "Marketing"})
    >>> list(team_colors(t))
    ['Sales', 'Marketing']
    >>> team_colors(["Sales", None, "Marketing", "Sales"]) == team_colors(t)
    True
    """
    owners = map(tree.owner, tree.nodes) if isinstance(tree, Tree) else tree
    teams = list(dict.fromkeys(o for o in owners if o is not None and o != NO_OWNER))
    if len(teams) > 20:
        return {t: to_rgba(colormaps["turbo"](i / (len(teams) - 1))) for i, t in enumerate(teams)}
    cmap = colormaps["tab10" if len(teams) <= 10 else "tab20"]
    return {team: to_rgba(cmap(i)) for i, team in enumerate(teams)}


def format_value(value: float, *, unit: str | None = None, bounds: Point | None = None) -> str:
    """A compact label: a percent for unit ``"%"`` or bounds within [0, 1], else 3 digits.

    >>> format_value(0.253, bounds=(0, 1)), format_value(1234567), format_value(-12345)
    ('25.3%', '1.23M', '-12.3k')
    >>> format_value(0.253), format_value(4321.0), format_value(42)
    ('0.253', '4,321', '42')
    """
    value = float(value)
    if not math.isfinite(value):
        return "n/a" if math.isnan(value) else f"{value}"
    if unit == "%" or (bounds is not None and bounds[0] >= 0 and bounds[1] <= 1):
        return f"{value * 100:.1f}%"
    sign, size = ("-" if value < 0 else ""), float(f"{abs(value):.3g}")
    if size < 1000:
        return f"{sign}{size:.3g}"
    if round(abs(value)) < 10_000:
        return f"{sign}{abs(value):,.0f}"
    scale, suffix = next((s, x) for s, x in _SUFFIXES if size >= s)
    return f"{sign}{size / scale:.3g}{suffix}" if size < 1000 * scale else f"{sign}{size:.3g}"


def layered_layout(
    graph: nx.DiGraph,
    *,
    widths: Mapping[str, float] | None = None,
    gap: float = 1.0,
    layer_height: float = 1.0,
) -> dict[str, Point]:
    """Node -> (x, y): outputs on the top layer (y = 0), each node below all its parents.

    A node's layer is its longest path up to an output (edges go child -> parent). Edges
    spanning several layers get a bend point per layer crossed; rows are ordered by
    barycenter sweeps to reduce crossings, then nodes move under their parents / over
    their children, neighbours staying ``(width_a + width_b) / 2 + gap`` apart (width 1).

    >>> g = nx.DiGraph([("customers", "revenue"), ("arpa", "revenue")])
    >>> layered_layout(g)
    {'customers': (-1.0, -1.0), 'revenue': (0.0, 0.0), 'arpa': (1.0, -1.0)}
    """
    points, _ = _layout(graph, widths or {}, gap, layer_height)
    return {name: points[name] for name in graph}


def _layout(graph: nx.DiGraph, widths: Mapping, gap: float, layer_height: float) -> tuple:
    """Vertex -> (x, y) of nodes and dummies, and edge -> its bend points (its dummies)."""
    proper, layer, chains = _proper_graph(graph)
    rows = _order(proper, layer)
    size = {v: widths.get(v, 1.0) if v in graph else 0.0 for v in proper}
    x = _place(proper, rows, size, gap)
    points = {v: (x[v], -layer[v] * layer_height) for v in proper}
    return points, {edge: [points[d] for d in chain] for edge, chain in chains.items()}


def _proper_graph(graph: nx.DiGraph) -> tuple[nx.DiGraph, dict[Vertex, int], dict[Any, list]]:
    """Layers (longest path up to an output), and a dummy per layer a long edge crosses."""
    layer: dict[Vertex, int] = {}
    for name in reversed(list(nx.topological_sort(graph))):
        layer[name] = 1 + max((layer[p] for p in graph.successors(name)), default=-1)
    proper, chains = nx.DiGraph(), {}
    proper.add_nodes_from(graph)
    for edge in graph.edges:
        chain = [(*edge, k) for k in range(layer[edge[0]] - 1, layer[edge[1]], -1)]
        layer.update({d: d[2] for d in chain})
        nx.add_path(proper, [edge[0], *chain, edge[1]])
        chains[edge] = chain
    return proper, layer, chains


def _order(proper: nx.DiGraph, layer: Mapping[Vertex, int]) -> list[list[Vertex]]:
    """Rows of vertices, top first, ordered by barycenter sweeps (the fewest crossings)."""
    rows = [[v for v in proper if layer[v] == k] for k in range(len(set(layer.values())))]
    best, fewest = [list(r) for r in rows], _crossings(proper, rows)
    down = [(i, i - 1, proper.successors) for i in range(1, len(rows))]
    up = [(i, i + 1, proper.predecessors) for i in range(len(rows) - 2, -1, -1)]
    for sweep in [down, up] * _SWEEPS:
        for i, ref, near in sweep:
            rows[i] = _by_barycenter(rows[i], rows[ref], near)
        if (count := _crossings(proper, rows)) < fewest:
            best, fewest = [list(r) for r in rows], count
    return best


def _by_barycenter(row: list[Vertex], ref: list[Vertex], near: Neighbours) -> list[Vertex]:
    at = {v: (i + 0.5) / len(ref) for i, v in enumerate(ref)}
    keys = [fmean([at[n] for n in near(v)] or [(i + 0.5) / len(row)]) for i, v in enumerate(row)]
    return [row[i] for _, i in sorted(zip(keys, range(len(row)), strict=True))]


def _crossings(proper: nx.DiGraph, rows: list[list[Vertex]]) -> int:
    total = 0
    for upper, lower in pairwise(rows):
        top = {v: i for i, v in enumerate(upper)}
        edges = [(i, top[p]) for i, c in enumerate(lower) for p in proper.successors(c)]
        total += sum((a - c) * (b - d) < 0 for (a, b), (c, d) in combinations(edges, 2))
    return total


def _place(proper: nx.DiGraph, rows: list[list[Vertex]], size: Mapping, gap: float) -> dict:
    """x per vertex: packed rows, then moved under parents / over children, keeping gaps."""
    x: dict[Vertex, float] = {}
    for row in rows:
        _align(row, [0.0] * len(row), size, gap, x)
    down = [(i, proper.successors) for i in range(1, len(rows))]
    up = [(i, proper.predecessors) for i in range(len(rows) - 2, -1, -1)]
    for _ in range(_SWEEPS):
        for i, near in down + up:
            want = [fmean([x[n] for n in near(v)] or [x[v]]) for v in rows[i]]
            _align(rows[i], want, size, gap, x)
    return x


def _align(row: list[Vertex], want: list[float], size: Mapping, gap: float, x: dict) -> None:
    """Set x of ``row`` closest to ``want`` (least squares) keeping its order and gaps."""
    offsets = [0.0]
    for a, b in pairwise(row):
        offsets.append(offsets[-1] + (size[a] + size[b]) / 2 + gap)
    shifts = _isotonic([w - o for w, o in zip(want, offsets, strict=True)])
    x.update({v: o + s for v, o, s in zip(row, offsets, shifts, strict=True)})


def _isotonic(values: list[float]) -> list[float]:
    """The non-decreasing sequence closest to ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [sum, count]
    for value in values:
        blocks.append([value, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    return [total / count for total, count in blocks for _ in range(int(count))]


def tree(
    tree: Tree,
    values: Any = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    fill: Mapping[str, Any] | None = None,
) -> Axes:
    """Draw ``tree`` top-down: boxes coloured by owner, levers dashed and paler.

    ``values`` (node -> number: a dict, a Series or a one-row DataFrame) are written under
    the names. ``fill`` (node -> colour) overrides the fill of those boxes (their edge
    keeps the team colour), e.g. to colour nodes by a gap. Without ``ax`` a figure sized
    to the tree is created; the legend sits to the right of the axes.

    >>> from kpitree import Tree, plot
    >>> t = Tree.from_formulas("revenue = customers * arpa", owners={"revenue": "Sales"})
    >>> ax = plot.tree(t, {"revenue": 1.2e6, "customers": 40})
    >>> sorted(text.get_text() for text in ax.texts)
    ['arpa', 'customers\\n40', 'revenue\\n1.2M']
    """
    labels = _labels(tree, values)
    widths = {name: _text_width(label) + 2 * _PAD_X for name, label in labels.items()}
    height = _LINE * max(label.count("\n") + 1 for label in labels.values()) + 2 * _PAD_Y
    points, routes = _layout(tree.graph, widths, 1.0, height + _ROW_GAP)
    xs = [points[n][0] + side * widths[n] / 2 for n in labels for side in (-1, 1)]
    ys = [points[n][1] for n in labels]
    box = (min(xs) - 0.5, max(xs) + 0.5, min(ys) - height / 2 - 0.5, max(ys) + height / 2 + 0.5)
    figure, ax = plt.subplots(figsize=_figure_size(box)) if ax is None else (None, ax)
    for (child, parent), bends in routes.items():
        (x0, y0), (x1, y1) = points[child], points[parent]
        route = Path([(x0, y0 + height / 2), *bends, (x1, y1 - height / 2)])
        ax.add_artist(FancyArrowPatch(path=route, zorder=1, **_ARROW))
    colors = team_colors(tree)
    sizes = {name: (width, height) for name, width in widths.items()}
    texts = [
        _draw_node(ax, tree, n, labels[n], points[n], sizes[n], colors, (fill or {}).get(n))
        for n in labels
    ]
    _draw_legend(ax, tree, colors)
    title = tree.name if title is None else title
    ax.set(xlim=box[:2], ylim=box[2:], aspect="equal", title=title or "")
    ax.set_axis_off()
    if figure is not None:
        figure.tight_layout()
    _fit_fonts(ax, texts)
    return ax


def _labels(tree: Tree, values: Any) -> dict[str, str]:
    """Node -> box text: the name, then its formatted value when ``values`` has one."""
    if isinstance(values, pd.DataFrame):
        if len(values) != 1:
            rows = f"got a DataFrame with {len(values)} rows; select one, e.g. frame.iloc[[-1]]"
            raise OptionError(f"values must be a single row, {rows}", option="values")
        values = values.iloc[0]
    labels = {name: name for name in tree.nodes}
    for name in [] if values is None else [n for n in tree.nodes if n in values]:
        node = tree.node(name)
        try:
            text = format_value(values[name], unit=node.unit, bounds=node.bounds)
        except (TypeError, ValueError):
            message = f"value of {name!r} is not a number: {values[name]!r}"
            raise OptionError(message, option="values") from None
        labels[name] = f"{name}\n{text}"
    return labels


def _text_width(label: str) -> float:
    """Width of ``label``'s widest line in em."""
    return max(_measure(line, _FONT, False)[0] for line in label.splitlines())


def _figure_size(box: tuple[float, float, float, float]) -> tuple[float, float]:
    width, height = (box[1] - box[0]) * _EM_INCHES, (box[3] - box[2]) * _EM_INCHES
    scale = min(1.0, _MAX_INCHES / width, _MAX_INCHES / height)
    return max(4.0, width * scale + _LEGEND_INCHES), max(2.5, height * scale + 0.6)


def _draw_node(
    ax: Axes,
    tree: Tree,
    name: str,
    label: str,
    at: Point,
    size: Point,
    colors: Mapping,
    face: Any = None,
) -> Text:
    owner, lever = tree.owner(name), tree.node(name).is_lever
    color = colors[owner] if owner else NO_OWNER_COLOR
    corner = (at[0] - size[0] / 2, at[1] - size[1] / 2)
    fill, edge = _lighten(color, 0.75 if lever else 0.45), color if owner else "0.5"
    fill = fill if face is None else face
    box = FancyBboxPatch(
        corner, *size, _BOX, facecolor=fill, edgecolor=edge,
        linestyle="--" if lever else "-", linewidth=1.2, zorder=2, gid=name,
    )  # fmt: skip
    ax.add_artist(box)
    return ax.text(*at, label, ha="center", va="center", linespacing=1.25, zorder=3, gid=name)


def _draw_legend(ax: Axes, tree: Tree, colors: Mapping[str, RGBA]) -> None:
    handles = [Patch(facecolor=_lighten(c, 0.45), edgecolor=c, label=t) for t, c in colors.items()]
    if any(tree.owner(name) is None for name in tree.nodes):
        grey = _lighten(NO_OWNER_COLOR, 0.45)
        handles.append(Patch(facecolor=grey, edgecolor="0.5", label=NO_OWNER))
    if tree.levers:
        handles.append(Patch(facecolor="white", edgecolor="0.3", ls="--", label="lever (input)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1, 1), frameon=False)


def _lighten(color: Any, amount: float) -> RGBA:
    r, g, b, a = to_rgba(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount, a)


def _fit_fonts(ax: Axes, texts: list[Text]) -> None:
    """Size texts so that one data unit is one em (boxes were measured in em), at most 14 pt."""
    ax.apply_aspect()
    figure = cast("Figure", ax.get_figure(root=True))
    position, (fig_w, fig_h) = ax.get_position(), figure.get_size_inches()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    points = min(position.width * fig_w * 72 / (x1 - x0), position.height * fig_h * 72 / (y1 - y0))
    for text in texts:
        text.set_fontsize(min(points, 14.0))
