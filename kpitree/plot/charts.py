"""Charts of the analyses' results: tornado, elasticities, indices, distribution, ranking.

Each function draws one result object of :mod:`kpitree.results` (``result.plot()`` calls
it) from the result's own numbers, computing nothing new, and returns the matplotlib
``Axes``; without ``ax`` a figure sized to the rows is created. Bars and points are
coloured by owner team: ``colors`` defaults to :func:`~kpitree.plot.team_colors` of the
result's teams in alphabetical order (results do not carry their tree); pass
``colors=plot.team_colors(tree)`` for the colours of :func:`~kpitree.plot.tree`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ..errors import OptionError
from .diagram import NO_OWNER, NO_OWNER_COLOR, RGBA, _lighten, format_value, team_colors

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..backcast import Backcast
    from ..results import (
        Elasticities,
        MonteCarlo,
        MorrisIndices,
        SobolIndices,
        TeamRanking,
        Tornado,
    )
    from ..targets import Allocation

__all__ = [
    "allocation", "distribution", "elasticities", "funnel", "indices", "team_ranking", "tornado",
]  # fmt: skip

Colors = Mapping[str, Any] | None
_LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1), "frameon": False}
_NOTE: dict[str, Any] = {"textcoords": "offset points", "va": "center", "fontsize": 8}
_ERRORS: dict[str, Any] = {"ecolor": "0.2", "elinewidth": 0.9, "capsize": 2.5}
_NEUTRAL = to_rgba("0.45")  # bars and points whose rows are not teams' levers
_QUANTILES = {0.1: "--", 0.5: "-", 0.9: "--"}


def tornado(
    result: Tornado,
    ax: Axes | None = None,
    *,
    max_levers: int = 15,
    title: str | None = None,
    colors: Colors = None,
) -> Axes:
    """The tornado chart: a bar per lever from ``target_low`` to ``target_high``.

    Largest swing on top, at most ``max_levers``; bars cross the vertical line at the
    target's value and are coloured by owner team, a dot marks the end reached with the
    lever at the high end of its range and each end gives the target's value there. The
    y labels give each lever and its range (low–high).

    >>> import kpitree
    >>> from kpitree.plot import format_value
    >>> t = kpitree.Tree.from_formulas("revenue = customers * arpa",
    ...     baselines={"customers": 100, "arpa": 1000}, owners={"arpa": "Success"})
    >>> ax = kpitree.tornado(t, "revenue", ranges="±10%").plot()
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['customers (90–110)', 'arpa (900–1,100)']
    >>> [format_value(bar.get_x() + bar.get_width()) for bar in ax.patches]  # target_high
    ['110k', '110k']
    """
    table = _top(result.table, "swing", max_levers)
    teams = [_team(owner) for owner in table["owner"]]
    palette = _palette(teams, colors)
    low, high = (table[c].to_numpy(dtype=float) for c in ("target_low", "target_high"))
    ax = _axes(ax, len(table))
    y = np.arange(len(table))
    bars = ax.barh(y, high - low, left=low, height=0.6, color=[palette[t] for t in teams])
    _name_bars(bars, table.index)
    for bar in bars:
        bar.sticky_edges.x.clear()  # bars start at target_low, not at an axis: keep margins
    ax.plot(high, y, "o", color="0.15", markersize=3.5, zorder=3)
    for row, ends in enumerate(zip(low, high, strict=True)):
        if ends[0] == ends[1] or not np.isfinite(ends).all():
            continue  # no swing, or an end unknown: no ends to tell apart
        for end, side in zip(ends, (-1, 1) if ends[0] < ends[1] else (1, -1), strict=True):
            ha = "left" if side > 0 else "right"
            ax.annotate(format_value(end), (end, row), xytext=(4 * side, 0), ha=ha, **_NOTE)
    ax.axvline(result.target_value, color="0.2", linewidth=1, zorder=1)
    spans = zip(table["low"], table["high"], strict=True)
    ranges = [f"{format_value(a)}–{format_value(b)}" for a, b in spans]
    _rows(ax, [f"{name} ({span})" for name, span in zip(table.index, ranges, strict=True)])
    ax.margins(x=0.2)
    _format_ticks(ax.xaxis)
    ax.set(xlabel=result.target, ylabel=_shown("lever (range)", table, result.table))
    ax.set_title(result.title() if title is None else title)
    now = f"{result.target} = {format_value(result.target_value)}"
    marks = [
        Line2D([], [], color="0.2", linewidth=1, label=now),
        Line2D([], [], color="0.15", marker="o", markersize=3.5, ls="", label="lever at high"),
    ]
    _legend(ax, palette, marks)
    return ax


def elasticities(
    result: Elasticities,
    ax: Axes | None = None,
    *,
    max_levers: int = 15,
    title: str | None = None,
    colors: Colors = None,
) -> Axes:
    """A bar per lever: the target's % change per 1% change of the lever.

    Largest absolute elasticity on top, at most ``max_levers``, coloured by owner team.
    With several states (rows) the bars are the mean over the rows, as the title says.

    >>> import kpitree
    >>> t = kpitree.Tree.from_formulas("revenue = customers * arpa - cost",
    ...     baselines={"customers": 100, "arpa": 1000, "cost": 20000})
    >>> ax = kpitree.elasticities(t, "revenue").plot()
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['customers', 'arpa', 'cost']
    >>> [float(bar.get_width()) for bar in ax.patches]
    [1.25, 1.25, -0.25]
    """
    wide = result.elasticity
    shown = wide.mean(axis=0) if len(wide) > 1 else wide.iloc[0]
    owners = dict(zip(wide.columns, result.owners, strict=True))  # owners in lever order
    frame = pd.DataFrame({"owner": shown.index.map(owners), "elasticity": shown})
    frame = _top(frame, "elasticity", max_levers, absolute=True)
    teams = [_team(owner) for owner in frame["owner"]]
    palette = _palette(teams, colors)
    ax = _axes(ax, len(frame))
    y = np.arange(len(frame))
    values = frame["elasticity"].to_numpy(dtype=float)
    finite = np.isfinite(values)  # not at a target of 0: no bar, "inf" or "n/a" at 0
    widths = np.where(finite, values, np.nan)
    bars = ax.barh(y, widths, height=0.6, color=[palette[t] for t in teams])
    _name_bars(bars, frame.index)
    for row, (value, width) in enumerate(zip(values, np.nan_to_num(widths), strict=True)):
        side = 1 if width >= 0 else -1
        ha = "left" if side > 0 else "right"
        ax.annotate(format_value(value), (width, row), xytext=(3 * side, 0), ha=ha, **_NOTE)
    ax.axvline(0, color="0.2", linewidth=0.8)
    _rows(ax, list(frame.index))
    ax.margins(x=0.12)
    ax.set(xlabel=f"% change of {result.target} per 1% change of the lever")
    ax.set_ylabel(_shown("lever", frame, wide.columns))
    several = f"Mean elasticities of {result.target!r} over {len(wide)} states"
    ax.set_title(title if title is not None else several if len(wide) > 1 else result.title())
    _legend(ax, palette)
    return ax


def indices(
    result: SobolIndices | MorrisIndices,
    ax: Axes | None = None,
    *,
    max_levers: int = 20,
    title: str | None = None,
    colors: Colors = None,
) -> Axes:
    """Sobol indices as paired bars, or the Morris screening plane.

    Sobol (columns ``S1``, ``ST``): per row a pale ``S1`` (first order) and a full ``ST``
    (total) bar with error bars of half-width ``S1_conf`` and ``ST_conf``, largest ``ST``
    on top. Morris (``mu_star``, ``sigma``): a labelled point per row at ``(mu_star,
    sigma)`` with an error bar of half-width ``mu_star_conf``; points above the diagonal
    act mostly through non-linearity or interactions. At most ``max_levers`` rows (the
    largest ``ST`` or ``mu_star``), coloured by the ``owner`` column, or by the index when
    it is named ``"team"``.

    >>> import pandas as pd
    >>> from kpitree import SobolIndices
    >>> table = pd.DataFrame({"S1": [0.7, 0.2], "S1_conf": [0.05, 0.03],
    ...     "ST": [0.75, 0.25], "ST_conf": [0.04, 0.02]},
    ...     index=pd.Index(["Sales", "Marketing"], name="team"))
    >>> ax = SobolIndices("revenue", table, variance=4.0, n_evaluations=4096).plot()
    >>> [(bar.get_gid(), float(bar.get_width())) for bar in ax.patches]
    [('Sales S1', 0.7), ('Marketing S1', 0.2), ('Sales ST', 0.75), ('Marketing ST', 0.25)]
    """
    columns = set(result.table.columns)
    if {"S1", "ST"} <= columns:
        return _sobol(result, ax, max_levers, title, colors)
    if {"mu_star", "sigma"} <= columns:
        return _morris(result, ax, max_levers, title, colors)
    message = (
        "indices draws Sobol (S1, ST) or Morris (mu_star, sigma) tables; "
        f"this table has columns {sorted(columns)}"
    )
    raise OptionError(message, option="result")


def distribution(
    result: MonteCarlo, ax: Axes | None = None, *, bins: int = 50, title: str | None = None
) -> Axes:
    """The histogram of the target's draws, with lines at its p10, p50 and p90.

    >>> import kpitree
    >>> t = kpitree.Tree.from_formulas("revenue = customers * arpa",
    ...     baselines={"customers": 100, "arpa": 1000})
    >>> mc = kpitree.monte_carlo(t, "revenue", ranges="±10%", n=500, seed=1)
    >>> ax = mc.plot(bins=20)
    >>> len(ax.patches), [text.get_text()[:4] for text in ax.get_legend().get_texts()]
    (20, ['p10 ', 'p50 ', 'p90 '])
    """
    values = result.samples[result.target].to_numpy(dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    ax.hist(values[np.isfinite(values)], bins=bins, color=_lighten("C0", 0.3), edgecolor="white")
    quantiles = result.quantiles(list(_QUANTILES))
    for q, value in zip(_QUANTILES, quantiles, strict=True):
        label = f"p{round(q * 100)} = {format_value(value)}"
        ax.axvline(value, color="0.15", linestyle=_QUANTILES[q], linewidth=1.2, label=label)
    _format_ticks(ax.xaxis)
    ax.set(xlabel=result.target, ylabel="draws")
    ax.set_title(result.title() if title is None else title)
    ax.legend(loc="best", frameon=False)
    return ax


def team_ranking(
    result: TeamRanking, ax: Axes | None = None, *, title: str | None = None, colors: Colors = None
) -> Axes:
    """A bar per team: the impact of its levers on the target, rank 1 on top.

    Error bars span ``ci_low`` to ``ci_high`` where both are finite; each bar end gives
    the team's ``share`` of the total impact (a fraction, written as a percent). The x
    label names the target and the method (``result.basis["method"]``).

    >>> import pandas as pd
    >>> from kpitree import TeamRanking
    >>> table = pd.DataFrame({"impact": [3e5, 1e5], "share": [0.75, 0.25], "rank": [1, 2],
    ...     "ci_low": [2e5, float("nan")], "ci_high": [4e5, float("nan")]},
    ...     index=pd.Index(["Sales", "Marketing"], name="team"))
    >>> ranking = TeamRanking("revenue", 1e6, table, levers={},
    ...     basis={"method": "Sobol total index"})
    >>> ax = ranking.plot()
    >>> ax.get_xlabel(), [text.get_text() for text in ax.texts]
    ('impact on revenue: Sobol total index', ['75%', '25%'])
    """
    table = result.table.sort_values("rank", kind="stable")
    teams = [_team(team) for team in table.index]
    palette = _palette(teams, colors)
    impact = table["impact"].to_numpy(dtype=float)
    low, high = (_column(table, c) for c in ("ci_low", "ci_high"))
    ax = _axes(ax, len(table))
    y = np.arange(len(table))
    bars = ax.barh(y, impact, height=0.6, color=[palette[t] for t in teams])
    _name_bars(bars, teams)
    known = np.isfinite(low) & np.isfinite(high)
    if known.any():
        middle, half = (low + high)[known] / 2, (high - low)[known] / 2
        ax.errorbar(middle, y[known], xerr=half, fmt="none", zorder=3, **_ERRORS)
    outer = np.where(impact < 0, np.fmin(impact, low), np.fmax(impact, high))
    ends = np.where(known, outer, impact)  # past the error bar, if any
    for row, (end, share) in enumerate(zip(ends, _column(table, "share"), strict=True)):
        if np.isfinite(share):
            side = -1 if end < 0 else 1
            ha = "left" if side > 0 else "right"
            ax.annotate(f"{share:.0%}", (end, row), xytext=(4 * side, 0), ha=ha, **_NOTE)
    ax.axvline(0, color="0.2", linewidth=0.8)
    _rows(ax, teams)
    ax.margins(x=0.1)
    _format_ticks(ax.xaxis)
    method = result.basis.get("method")
    ax.set(xlabel=f"impact on {result.target}" + (f": {method}" if method else ""), ylabel="team")
    ax.set_title(result.title() if title is None else title)
    return ax


# --- Sobol and Morris --------------------------------------------------------------------


def _sobol(
    result: SobolIndices | MorrisIndices,
    ax: Axes | None,
    max_levers: int,
    title: str | None,
    colors: Colors,
) -> Axes:
    table = _top(result.table, "ST", max_levers)
    teams = _row_teams(table)
    palette = _palette(teams, colors) if teams else {}
    full = [palette[t] for t in teams] if teams else [_NEUTRAL] * len(table)
    ax = _axes(ax, len(table), per_row=0.45)
    y = np.arange(len(table))
    for offset, index, pale in ((-0.2, "S1", 0.6), (0.2, "ST", 0.0)):
        bars = ax.barh(
            y + offset, table[index], height=0.38, xerr=_column(table, f"{index}_conf"),
            color=[_lighten(c, pale) for c in full], edgecolor=full, linewidth=0.8,
            error_kw=_ERRORS, label=index,
        )  # fmt: skip
        _name_bars(bars, [f"{name} {index}" for name in table.index])
    ax.axvline(0, color="0.2", linewidth=0.8)
    _rows(ax, list(table.index))
    ax.set(xlabel=f"share of the variance of {result.target}")
    ax.set_ylabel(_shown(str(table.index.name or "lever"), table, result.table))
    ax.set_title(result.title() if title is None else title)
    grey = NO_OWNER_COLOR if teams else _NEUTRAL
    measures = [
        Patch(facecolor=_lighten(grey, 0.6), edgecolor=grey, label="S1 (first order)"),
        Patch(facecolor=grey, edgecolor=grey, label="ST (total)"),
    ]
    _legend(ax, palette, measures)
    return ax


def _morris(
    result: SobolIndices | MorrisIndices,
    ax: Axes | None,
    max_levers: int,
    title: str | None,
    colors: Colors,
) -> Axes:
    table = _top(result.table, "mu_star", max_levers)
    teams = _row_teams(table)
    palette = _palette(teams, colors) if teams else {}
    x, y = table["mu_star"].to_numpy(dtype=float), table["sigma"].to_numpy(dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    conf = _column(table, "mu_star_conf")
    ax.errorbar(x, y, xerr=conf, fmt="none", zorder=2, **_ERRORS)
    points = [palette[t] for t in teams] if teams else [_NEUTRAL] * len(table)
    ax.scatter(x, y, c=points, s=36, edgecolors="0.2", linewidths=0.6, zorder=3)
    for name, at in zip(table.index, zip(x, y, strict=True), strict=True):
        ax.annotate(str(name), at, xytext=(5, 4), textcoords="offset points", fontsize=8)
    ax.axline((0, 0), slope=1, color="0.6", linestyle=":", linewidth=1)
    ax.set_xlim(left=min(0.0, np.nanmin(x - np.nan_to_num(conf))))
    ax.set_ylim(bottom=0)
    _format_ticks(ax.xaxis)
    _format_ticks(ax.yaxis)
    ax.set(xlabel=f"μ*: mean absolute effect on {result.target}")
    ax.set_ylabel("σ: spread of the effects (non-linearity, interactions)")
    ax.set_title(result.title() if title is None else title)
    diagonal = Line2D([], [], color="0.6", linestyle=":", label="σ = μ*")
    _legend(ax, palette, [diagonal])
    return ax


# --- shared helpers ----------------------------------------------------------------------


def _team(owner: Any) -> str:
    """An owner cell as a team label: a missing owner is :data:`NO_OWNER`."""
    return NO_OWNER if pd.isna(owner) else str(owner)


def _row_teams(table: pd.DataFrame) -> list[str]:
    """Each row's team: the ``owner`` column, an index named ``team``, else none."""
    if "owner" in table.columns:
        return [_team(owner) for owner in table["owner"]]
    return [_team(team) for team in table.index] if table.index.name == "team" else []


def _palette(teams: Sequence[str], colors: Colors) -> dict[str, RGBA]:
    """Team -> colour for the chart's teams, in their order of first appearance."""
    if colors is None:
        known = team_colors(sorted(set(teams)))
    else:
        known = {team: to_rgba(color) for team, color in colors.items()}
        missing = sorted(set(teams) - set(known) - {NO_OWNER})
        if missing:
            message = f"colors has no colour for team(s) {missing}: pass plot.team_colors(tree)"
            raise OptionError(message, option="colors")
    return {team: known.get(team, NO_OWNER_COLOR) for team in dict.fromkeys(teams)}


def _top(table: pd.DataFrame, column: str, n: int, *, absolute: bool = False) -> pd.DataFrame:
    """The ``n`` rows with the largest ``column`` (absolute value), largest first."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise OptionError(f"max_levers must be a positive integer, got {n!r}", option="max_levers")
    values = table[column].to_numpy(dtype=float)
    key = -np.abs(values) if absolute else -values
    return table.iloc[np.argsort(key, kind="stable")[:n]]


def _column(table: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column as floats, all NaN when the table lacks it."""
    if column not in table.columns:
        return np.full(len(table), np.nan)
    return table[column].to_numpy(dtype=float)


def _axes(ax: Axes | None, rows: int, *, per_row: float = 0.32) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 1.6 + per_row * rows), layout="constrained")
    return ax


def _rows(ax: Axes, labels: Sequence[str]) -> None:
    """One y tick per row, the first row on top."""
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


def _name_bars(bars: Any, names: Iterable[Any]) -> None:
    for bar, name in zip(bars, names, strict=True):
        bar.set_gid(str(name))


def _shown(label: str, shown: pd.DataFrame, every: pd.DataFrame | pd.Index) -> str:
    """The y axis label, saying when only the top rows are shown."""
    return label if len(shown) == len(every) else f"{label}, top {len(shown)} of {len(every)}"


def _format_ticks(axis: Any) -> None:
    """Tick labels in the compact form of the value labels (``150M``, not ``1.5 1e8``)."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: format_value(value)))


def _legend(ax: Axes, palette: Mapping[str, RGBA], extra: Sequence[Any] = ()) -> None:
    teams = [Patch(color=color, label=team) for team, color in palette.items()]
    ax.legend(handles=[*teams, *extra], **_LEGEND)


# --- targets: back-calculation and allocation ----------------------------------------------


def funnel(
    result: Backcast,
    ax: Axes | None = None,
    *,
    held: bool = False,
    title: str | None = None,
    colors: Colors = None,
) -> Axes:
    """The back-calculated funnel: per node, a pale baseline bar and a full required bar.

    Rows follow the result's funnel order, top first, coloured by owner team; held nodes
    (rates) are left out unless ``held``. Each required bar ends with its value and its
    ratio to the baseline; with history a dot marks ``required_p90``. The x axis is
    logarithmic when the values span more than two decades.

    >>> import kpitree
    >>> from kpitree import backcast
    >>> t = kpitree.Tree.from_formulas("sqls = mqls * sql_rate", bounds={"sql_rate": (0, 1)},
    ...     baselines={"mqls": 200, "sql_rate": 0.4}, owners={"mqls": "Marketing"})
    >>> ax = backcast(t, "sqls", 100).plot()
    >>> [(bar.get_gid(), float(bar.get_width())) for bar in ax.patches]  # doctest: +ELLIPSIS
    [('sqls baseline', 80.0), ('mqls baseline', 200.0), ('sqls required', 100.0), ...]
    """
    table = result.table if held else result.table[~result.table["held"].to_numpy(dtype=bool)]
    teams = [_team(owner) for owner in table["owner"]]
    palette = _palette(teams, colors)
    full = [palette[t] for t in teams]
    ax = _axes(ax, len(table), per_row=0.5)
    y = np.arange(len(table))
    base, need = (table[c].to_numpy(dtype=float) for c in ("baseline", "required"))
    pale = [_lighten(c, 0.65) for c in full]
    bars = ax.barh(y - 0.2, base, height=0.38, color=pale, edgecolor=full, linewidth=0.8)
    _name_bars(bars, [f"{name} baseline" for name in table.index])
    bars = ax.barh(y + 0.2, need, height=0.38, color=full)
    _name_bars(bars, [f"{name} required" for name in table.index])
    p90 = _column(table, "required_p90")
    if np.isfinite(p90).any():
        ax.plot(p90, y + 0.2, "o", color="0.15", markersize=3.5, zorder=3)
    ends = np.fmax(need, np.nan_to_num(p90, nan=-np.inf))
    for row, (end, value, ratio) in enumerate(zip(ends, need, table["ratio"], strict=True)):
        note = format_value(value) + (f" (×{ratio:.2f})" if np.isfinite(ratio) else "")
        if np.isfinite(p90[row]):
            note += f", P90 {format_value(p90[row])}"
        ax.annotate(note, (end, row + 0.2), xytext=(4, 0), ha="left", **_NOTE)
    positive = np.concatenate([base, need])
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size and positive.max() > 100 * positive.min():
        ax.set_xscale("log")
    else:
        _format_ticks(ax.xaxis)
    _rows(ax, list(table.index))
    ax.margins(x=0.15)
    ax.set(xlabel="value (baseline and required)", ylabel="node, top of the funnel first")
    ax.set_title(result.title() if title is None else title)
    marks: list[Any] = [
        Patch(facecolor=_lighten(_NEUTRAL, 0.65), edgecolor=_NEUTRAL, label="baseline"),
        Patch(facecolor=_NEUTRAL, label="required"),
    ]
    if np.isfinite(p90).any():
        marks.append(Line2D([], [], color="0.15", marker="o", ls="", label="required (P90)"))
    _legend(ax, palette, marks)
    return ax


def allocation(
    result: Allocation, ax: Axes | None = None, *, title: str | None = None, colors: Colors = None
) -> Axes:
    """A bar per team: the cost of its part of the plan, the largest on top.

    >>> import pandas as pd
    >>> from kpitree.allocation import Allocation
    >>> table = pd.DataFrame({"owner": ["Marketing", "Sales"], "current": [100.0, 0.2],
    ...     "planned": [120.0, 0.2], "change": [20.0, 0.0], "unit_cost": [5.0, 1e4],
    ...     "cost": [100.0, 0.0]}, index=pd.Index(["mqls", "win_rate"], name="lever"))
    >>> ax = Allocation("deals", table, 20.0, 24.0, goal=24.0).plot()
    >>> [(bar.get_gid(), float(bar.get_width())) for bar in ax.patches]
    [('Marketing', 100.0), ('Sales', 0.0)]
    """
    table = result.by_team()
    teams = [_team(team) for team in table.index]
    palette = _palette(teams, colors)
    ax = _axes(ax, len(table))
    y = np.arange(len(table))
    cost = table["cost"].to_numpy(dtype=float)
    bars = ax.barh(y, cost, height=0.6, color=[palette[t] for t in teams])
    _name_bars(bars, teams)
    for row, (value, share) in enumerate(zip(cost, table["share"], strict=True)):
        note = format_value(value) + (f" ({share:.0%})" if np.isfinite(share) else "")
        ax.annotate(note, (value, row), xytext=(4, 0), ha="left", **_NOTE)
    _rows(ax, teams)
    ax.margins(x=0.15)
    _format_ticks(ax.xaxis)
    ax.set(xlabel=f"cost (total {format_value(result.total_cost)})", ylabel="team")
    ax.set_title(result.title() if title is None else title)
    return ax
