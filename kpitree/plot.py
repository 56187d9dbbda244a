"""Draw a KPI tree: a layered top-down layout, one colour per owner team, optional values.

The computation is pure and separate from the drawing: :func:`layered_layout` places the
nodes of a DAG (edges child -> parent) in layers with the top KPIs on top,
:func:`team_colors` gives each owner a fixed colour (reused by later plots) and
:func:`format_value` writes a number compactly. :func:`tree` draws with matplotlib.
Coordinates are in *em*: one unit is one font size, so boxes fit their text at any scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from itertools import combinations
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path
from matplotlib.textpath import text_to_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.text import Text

    from .tree import Tree

__all__ = ["format_value", "layered_layout", "team_colors", "tree"]

RGBA = tuple[float, float, float, float]
Point = tuple[float, float]
Vertex = Hashable  # a node name, or a (child, parent, layer) dummy on an edge spanning layers
NO_OWNER = "(no owner)"
NO_OWNER_COLOR: RGBA = (0.8, 0.8, 0.8, 1.0)
_PAD_X, _PAD_Y, _LINE, _ROW_GAP = 1.2, 0.5, 1.25, 2.2  # box padding, line height, layer gap
_EM_INCHES, _MAX_INCHES, _LEGEND_INCHES = 10 / 72, 28.0, 2.2
_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def team_colors(tree: Tree) -> dict[str, RGBA]:
    """Owner -> RGBA, teams in order of first appearance in ``tree.nodes`` (tab10/tab20).

    >>> from kpitree import Tree
    >>> t = Tree.from_formulas("a = b + c", owners={"a": "Sales", "c": "Marketing"})
    >>> list(team_colors(t))
    ['Sales', 'Marketing']
    """
    teams = list(dict.fromkeys(o for o in map(tree.owner, tree.nodes) if o is not None))
    if len(teams) <= 20:
        cmap = colormaps["tab10" if len(teams) <= 10 else "tab20"]
        return {team: tuple(cmap(i)) for i, team in enumerate(teams)}  # type: ignore[misc]
    cmap = colormaps["turbo"]
    return {team: tuple(cmap(i / (len(teams) - 1))) for i, team in enumerate(teams)}  # type: ignore[misc]


def format_value(
    value: float, *, unit: str | None = None, bounds: tuple[float, float] | None = None
) -> str:
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
        return f"{sign}{size:.3g}" if size else "0"
    if round(abs(value)) < 10_000:
        return f"{sign}{abs(value):,.0f}"
    scale, suffix = next((s, x) for s, x in _SUFFIXES if size >= s)
    return f"{sign}{size / scale:.3g}{suffix}" if size < 1000 * scale else f"{sign}{size:.3g}"


# --- layout -----------------------------------------------------------------------------


def layered_layout(
    graph: nx.DiGraph,
    *,
    widths: Mapping[str, float] | None = None,
    gap: float = 1.0,
    layer_height: float = 1.0,
    sweeps: int = 4,
) -> dict[str, Point]:
    """Node -> (x, y): outputs on the top layer (y = 0), each node below all its parents.

    A node's layer is its longest path up to an output (edges go child -> parent); layers
    are ordered by barycenter sweeps to reduce crossings; neighbours in a layer stay at
    least ``(width_a + width_b) / 2 + gap`` apart (widths default to 1).

    >>> g = nx.DiGraph([("customers", "revenue"), ("arpa", "revenue")])
    >>> layered_layout(g)
    {'customers': (-1.0, -1.0), 'revenue': (0.0, 0.0), 'arpa': (1.0, -1.0)}
    """
    points, _ = _layout(graph, widths or {}, gap, layer_height, sweeps)
    return {name: points[name] for name in graph}


def _layout(
    graph: nx.DiGraph, widths: Mapping[str, float], gap: float, layer_height: float, sweeps: int
) -> tuple[dict[Vertex, Point], dict[tuple[str, str], list[Point]]]:
    """Positions of nodes and dummies, and each edge's bend points (its dummies)."""
    layer = _layers(graph)
    proper, chains = _split_long_edges(graph, layer)
    layer.update({d: d[2] for chain in chains.values() for d in chain})
    rows = _order(proper, layer, sweeps)
    size = {v: widths.get(v, 1.0) if v in graph else 0.0 for v in proper}  # type: ignore[call-overload]
    x = _place(proper, rows, size, gap, sweeps)
    points = {v: (x[v], -layer[v] * layer_height) for v in proper}
    return points, {edge: [points[d] for d in chain] for edge, chain in chains.items()}


def _layers(graph: nx.DiGraph) -> dict[Vertex, int]:
    layer: dict[Vertex, int] = {}
    for name in reversed(list(nx.topological_sort(graph))):
        layer[name] = 1 + max((layer[p] for p in graph.successors(name)), default=-1)
    return layer


def _split_long_edges(
    graph: nx.DiGraph, layer: Mapping[Vertex, int]
) -> tuple[nx.DiGraph, dict[tuple[str, str], list[Vertex]]]:
    proper, chains = nx.DiGraph(), {}
    proper.add_nodes_from(graph)
    for child, parent in graph.edges:
        chain = [(child, parent, k) for k in range(layer[child] - 1, layer[parent], -1)]
        path = [child, *chain, parent]
        proper.add_edges_from(zip(path, path[1:], strict=False))
        chains[(child, parent)] = chain
    return proper, chains


def _order(proper: nx.DiGraph, layer: Mapping[Vertex, int], sweeps: int) -> list[list[Vertex]]:
    rows: list[list[Vertex]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for v in proper:
        rows[layer[v]].append(v)
    best, fewest = [list(r) for r in rows], _crossings(proper, rows)
    for _ in range(sweeps):
        for i in range(1, len(rows)):
            rows[i] = _by_barycenter(rows[i], rows[i - 1], proper.successors)
        for i in range(len(rows) - 2, -1, -1):
            rows[i] = _by_barycenter(rows[i], rows[i + 1], proper.predecessors)
        if (count := _crossings(proper, rows)) < fewest:
            best, fewest = [list(r) for r in rows], count
    return best


def _by_barycenter(
    row: list[Vertex], ref: list[Vertex], neighbours: Callable[[Vertex], Iterable[Vertex]]
) -> list[Vertex]:
    where = {v: (i + 0.5) / len(ref) for i, v in enumerate(ref)}

    def key(item: tuple[int, Vertex]) -> float:
        near = [where[n] for n in neighbours(item[1])]
        return sum(near) / len(near) if near else (item[0] + 0.5) / len(row)

    return [v for _, v in sorted(enumerate(row), key=key)]


def _crossings(proper: nx.DiGraph, rows: list[list[Vertex]]) -> int:
    total = 0
    for upper, lower in zip(rows, rows[1:], strict=False):
        top = {v: i for i, v in enumerate(upper)}
        edges = [(i, top[p]) for i, c in enumerate(lower) for p in proper.successors(c)]
        total += sum((a - c) * (b - d) < 0 for (a, b), (c, d) in combinations(edges, 2))
    return total


def _place(
    proper: nx.DiGraph,
    rows: list[list[Vertex]],
    size: Mapping[Vertex, float],
    gap: float,
    sweeps: int,
) -> dict[Vertex, float]:
    """x per vertex: packed rows, then moved under parents / over children, keeping gaps."""
    x: dict[Vertex, float] = {}
    for row in rows:
        _align(row, [0.0] * len(row), size, gap, x)
    for _ in range(sweeps):
        for i in [*range(1, len(rows)), *range(len(rows) - 2, -1, -1)]:
            near = proper.successors if i > 0 and _ in () else None  # placeholder, replaced below
            del near
            step = proper.successors if i in range(1, len(rows)) else proper.predecessors
            want = [_mean([x[n] for n in step(v)], x[v]) for v in rows[i]]
            _align(rows[i], want, size, gap, x)
    return x
