"""Text and HTML display: every repr is rendered from one table.

Small pure helpers; HTML is escaped and styled with inline CSS only.

>>> from kpitree import Tree
>>> tree = Tree.from_formulas("leads = visits * rate", owners={"leads": "Marketing"})
>>> tree_frame(tree).loc["leads", "formula"]
'visits * rate'
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from .tree import Tree

__all__ = ["frame_html", "tree_frame", "tree_html", "tree_repr"]

_COLUMNS = [
    "kind", "formula", "link", "owner", "unit", "stage", "low", "high", "baseline", "description"
]  # fmt: skip


def tree_frame(tree: Tree) -> pd.DataFrame:
    """One row per node: ``kind`` (see :attr:`kpitree.Node.kind`), definition and metadata."""
    rows = []
    for name in tree.nodes:
        node = tree.node(name)
        low, high = node.bounds or (math.nan, math.nan)
        rows.append(
            {
                "kind": node.kind,
                "formula": node.formula.text if node.formula else None,
                "link": node.link.text(name) if node.link else None,
                "owner": node.owner,
                "unit": node.unit,
                "stage": node.stage,
                "low": low,
                "high": high,
                "baseline": node.baseline if node.baseline is not None else math.nan,
                "description": node.description,
            }
        )
    frame = pd.DataFrame(rows, index=pd.Index(tree.nodes, name="node"), columns=_COLUMNS)
    return frame


def _display_table(tree: Tree) -> pd.DataFrame:
    frame = tree_frame(tree)
    shown = pd.DataFrame(index=frame.index)
    shown["formula"] = [
        _definition(kind, formula, link)
        for kind, formula, link in zip(frame["kind"], frame["formula"], frame["link"], strict=True)
    ]
    for column in ("owner", "unit", "stage"):
        if frame[column].notna().any():
            shown[column] = frame[column].fillna("")
    if frame["low"].notna().any():
        shown["bounds"] = [
            _bounds_text(lo, hi) for lo, hi in zip(frame["low"], frame["high"], strict=True)
        ]
    if frame["baseline"].notna().any():
        shown["baseline"] = [
            "" if math.isnan(value) else f"{value:,.6g}" for value in frame["baseline"]
        ]
    return shown


def _definition(kind: str, formula: str | None, link: str | None) -> str:
    if kind == "lever":
        return "(lever)"
    if kind == "link":
        return f"{link}  (link, not fitted)"
    if kind == "fitted link":
        return f"{link}  (fitted)"
    return formula or ""


def _bounds_text(low: float, high: float) -> str:
    if math.isnan(low):
        return ""
    return f"[{low:g}, {high:g}]"


def _title(tree: Tree) -> str:
    name = f" {tree.name!r}" if tree.name else ""
    tops = ", ".join(tree.outputs)
    identities = sum(1 for n in tree.computed if tree.node(n).link is None)
    links = f"{len(tree.links)} links, " if tree.links else ""
    return (
        f"Tree{name}: {len(tree.nodes)} nodes ({identities} formulas, {links}"
        f"{len(tree.levers)} levers); top: {tops}"
    )


def tree_repr(tree: Tree, *, max_rows: int = 60) -> str:
    """Plain-text summary: a title line and the node table."""
    table = _display_table(tree)
    body = table.to_string(max_rows=max_rows, max_colwidth=60)
    return f"{_title(tree)}\n{body}"


def tree_html(tree: Tree) -> str:
    """HTML summary for Jupyter: the same table, levers shaded."""
    table = _display_table(tree)
    levers = set(tree.levers)
    return frame_html(table, _title(tree), shaded=levers)


def frame_html(table: pd.DataFrame, title: str, *, shaded: set[str] | None = None) -> str:
    """An escaped HTML table with a caption; rows whose label is in ``shaded`` are shaded."""
    shaded = shaded or set()
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [table.index.name or "", *table])
    rows = []
    for label, values in table.iterrows():
        style = ' style="background:#f3f3f3;color:#555"' if label in shaded else ""
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in values)
        rows.append(f"<tr{style}><th>{html.escape(str(label))}</th>{cells}</tr>")
    return (
        '<div class="kpitree"><table style="border-collapse:collapse;text-align:left">'
        f'<caption style="text-align:left;font-weight:bold">{html.escape(title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
