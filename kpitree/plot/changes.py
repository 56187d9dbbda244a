"""Charts of changes: the waterfall of an attribution, the bars of a bottleneck walk.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas("revenue = customers * arpa",
...                                   owners={"customers": "Sales", "arpa": "Success"})
>>> change = kpitree.attribute(tree, {"customers": 100, "arpa": 10},
...                            {"customers": 120, "arpa": 11})
>>> ax = waterfall(change)
>>> [t.get_text() for t in ax.get_xticklabels()]
['before', 'customers', 'arpa', 'after']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import OptionError
from .diagram import format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["bottleneck_path", "bottleneck_tree", "waterfall"]

UP, DOWN, TOTAL = "#2ca02c", "#d62728", "#7f7f7f"


def waterfall(
    result: Any, ax: Axes | None = None, *, by: str = "input", max_bars: int = 12,
    title: str | None = None,
) -> Axes:  # fmt: skip
    """From the target before to after, one bar per input (or team) contribution.

    Contributions are summed over rows; the largest ``max_bars`` are shown and the rest
    grouped as ``"other"``. Rises are green, falls red.
    """
    if by not in ("input", "team"):
        raise OptionError(f"by must be 'input' or 'team', not {by!r}", option="by")
    parts = (result.wide() if by == "input" else result.by_team()).sum(axis=0)
    parts = parts.iloc[np.argsort(-np.abs(parts.to_numpy()), kind="stable")]
    if len(parts) > max_bars:
        other = pd.Series({"other": parts.iloc[max_bars - 1 :].sum()})
        parts = pd.concat([parts.iloc[: max_bars - 1], other])
    start = float(np.sum(result.start))
    end = start + float(np.sum(result.total))
    new = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.8 * (len(parts) + 2)), 4.5))
    level, levels = start, [start, end]
    ax.bar(0, start, color=TOTAL)
    for i, value in enumerate(parts.to_numpy(), start=1):
        ax.bar(i, value, bottom=level, color=UP if value >= 0 else DOWN)
        ax.text(i, level + max(value, 0), format_value(value), ha="center", va="bottom", fontsize=8)
        level += value
        levels.append(level)
    ax.bar(len(parts) + 1, end, color=TOTAL)
    tilted = len(parts) > 4
    labels = ["before", *map(str, parts.index), "after"]
    ax.set_xticks(range(len(parts) + 2), labels, rotation=30 if tilted else 0,
                  ha="right" if tilted else "center")  # fmt: skip
    low, high = min(levels), max(levels)  # the running total may dip below both ends
    span = high - low or abs(high) or 1.0
    ax.set_ylim(max(0.0, low - 0.6 * span) if low >= 0 else low - 0.2 * span, high + 0.2 * span)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_title(title or f"Change of {result.target!r}: {format_value(end - start)}")
    if new:
        ax.figure.tight_layout()
    return ax


def bottleneck_tree(result: Any, ax: Axes | None = None, *, title: str | None = None) -> Axes:
    """The tree with each node's actual value, filled by the share of the target's gap it
    explains: red where it explains a shortfall, green a surplus, darker for more."""
    from matplotlib.colors import to_rgba

    from .diagram import tree as draw_tree

    table = result.table
    gap = float(result.attribution.total.sum())
    fill = {}  # white unless the node explains part of the gap (team colours on the edges)
    for name, share in table["share"].items():
        fill[name] = (1.0, 1.0, 1.0, 1.0)
        if np.isfinite(share) and share:
            explained = share * gap
            base = to_rgba(UP if explained > 0 else DOWN)
            fill[name] = (*base[:3], 0.15 + 0.7 * min(1.0, abs(share)))
    values = table["actual"].to_dict()
    heading = title or f"Gap of {result.target!r} against plan: {format_value(gap)}"
    return draw_tree(result.tree, values, ax=ax, title=heading, fill=fill)


def bottleneck_path(result: Any, ax: Axes | None = None, *, title: str | None = None) -> Axes:
    """The walk from the target down to the root cause: how much of the gap each step
    explains, one bar per node (target on top)."""
    table = result.to_frame().loc[list(result.path)]
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 0.5 * len(table) + 1.5))
    positions = np.arange(len(table))[::-1]
    values = table["explained"].to_numpy()
    ax.barh(positions, values, color=[UP if v >= 0 else DOWN for v in values])
    labels = [f"{name} ({owner})" if isinstance(owner, str) else name
              for name, owner in zip(table.index, table["owner"], strict=True)]  # fmt: skip
    ax.set_yticks(positions, labels)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: format_value(v)))
    ax.set_xlabel(f"part of the gap of {result.target!r} explained")
    ax.set_title(title or f"Bottleneck: {result.top} ({result.table.loc[result.top, 'owner']})")
    return ax
