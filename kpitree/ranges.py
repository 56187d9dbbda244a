"""How far each lever can move: ranges for swings, distributions for global analyses.

A *range* is a ``(low, high)`` pair per lever, given as

- a rule for every lever: ``"±10%"`` (also ``"+-10%"`` or ``"10%"``; the default),
  or ``"bounds"`` (the lever's declared bounds);
- a mapping lever -> ``(low, high)``, a rule, or a history Series of that lever
  (only the levers listed move);
- a history DataFrame (rows in time order, a column per lever): the 10th and 90th
  percentiles of each lever's observed period-over-period changes, applied to its
  current value, because a 1% change of win rate is not as reachable as 1% of site
  visits. Changes are relative (``pct_change``) for a strictly positive series and
  absolute (``diff``) otherwise; a lagged input (``nps_lag3``) uses its source column.

Ranges derived from a rule or from history are clipped to the lever's bounds (the
basis says so); explicit ranges outside the bounds are an error.

A *marginal* is the distribution a global analysis draws a lever from: uniform over
its range, a frozen ``scipy.stats`` distribution, or (from history) the empirical
distribution of its changes. Each is used through its quantile function.

>>> from kpitree import Tree
>>> tree = Tree.from_formulas("wins = sqls * win_rate", bounds={"win_rate": (0, 1)})
>>> lever_ranges(tree, ["sqls", "win_rate"], {"sqls": 80, "win_rate": 0.25}, "±10%")
             low    high basis
lever
sqls      72.000  88.000  ±10%
win_rate   0.225   0.275  ±10%
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, OptionError
from .tree import Tree

__all__ = ["Marginal", "lever_ranges", "marginals"]

RangeSpec = str | Mapping[str, Any] | pd.DataFrame | None
QUANTILES = (0.1, 0.9)  # history ranges: p10-p90 of period-over-period changes
_RELATIVE = re.compile(r"^\s*(?:±|\+-|\+/-)?\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


def lever_ranges(
    tree: Tree, levers: Sequence[str], values: Mapping[str, float], ranges: RangeSpec = None
) -> pd.DataFrame:
    """``low``, ``high`` and ``basis`` per lever that moves, from a range specification.

    ``values`` holds each lever's current value (what relative rules and history
    changes apply to).
    """
    if ranges is None:
        ranges = "±10%"
    if isinstance(ranges, pd.DataFrame):
        specs: Mapping[str, Any] = {name: _history_column(tree, ranges, name) for name in levers}
    elif isinstance(ranges, str):
        specs = dict.fromkeys(levers, ranges)
    elif isinstance(ranges, Mapping):
        specs = _selected(tree, levers, ranges)
    else:
        message = f"ranges must be a rule, a mapping or a history DataFrame, not {ranges!r}"
        raise OptionError(message, option="ranges")
    rows = {name: _range(tree, name, values[name], spec) for name, spec in specs.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["low", "high", "basis"])
    frame.index.name = "lever"
    return frame.astype({"low": float, "high": float})


@dataclass(frozen=True)
class Marginal:
    """A lever's distribution, used through its quantile function ``ppf``."""

    ppf: Callable[[np.ndarray], np.ndarray]
    basis: str


def marginals(
    tree: Tree,
    levers: Sequence[str],
    values: Mapping[str, float],
    ranges: RangeSpec = None,
    distributions: Mapping[str, Any] | None = None,
) -> dict[str, Marginal]:
    """One :class:`Marginal` per lever that varies.

    ``distributions`` (lever -> frozen ``scipy.stats`` distribution) wins over
    ``ranges``; with a history DataFrame as ``ranges``, a lever is drawn from its
    empirical changes; otherwise uniformly over its range.
    """
    chosen: dict[str, Marginal] = {}
    for name, dist in (distributions or {}).items():
        if name not in levers:
            raise _not_a_lever(tree, name, "distributions")
        if not callable(getattr(dist, "ppf", None)):
            message = f"distribution of {name!r} must have a ppf method (a frozen scipy.stats law)"
            raise OptionError(message, option="distributions")
        chosen[name] = Marginal(dist.ppf, _describe(dist))
    if distributions and ranges is None:
        return chosen
    rest = [name for name in levers if name not in chosen]
    if isinstance(ranges, pd.DataFrame):
        for name in rest:
            series = _history_column(tree, ranges, name)
            chosen[name] = _empirical(tree, name, values[name], series)
        return chosen
    table = lever_ranges(tree, rest, values, ranges)
    for name, row in table.iterrows():
        chosen[str(name)] = _uniform(row["low"], row["high"], f"uniform {row['basis']}")
    return chosen


def _selected(tree: Tree, levers: Sequence[str], ranges: Mapping[str, Any]) -> dict[str, Any]:
    for name in ranges:
        if name not in levers:
            raise _not_a_lever(tree, name, "ranges")
    return {name: ranges[name] for name in levers if name in ranges}


def _not_a_lever(tree: Tree, name: str, option: str) -> OptionError:
    if name in tree and not tree.node(name).is_lever:
        reason = "is computed, not a lever"
    elif name in tree:
        reason = "does not move the target"
    else:
        reason = "is not a node of the tree"
    return OptionError(f"{option}: {name!r} {reason}", option=option)


def _range(tree: Tree, name: str, value: float, spec: Any) -> tuple[float, float, str]:
    if math.isnan(value) and _relative(spec):
        message = f"lever {name!r} has no value and no baseline: give its range explicitly"
        raise DataError(message, node=name, column=name, reason="missing")
    if isinstance(spec, pd.Series):
        low, high = _history_range(name, value, spec)
        return _clipped(tree, name, low, high, "history p10-p90")
    if isinstance(spec, str):
        if spec.strip() == "bounds":
            return _bounds_range(tree, name)
        match = _RELATIVE.match(spec)
        if match is None:
            message = f"range of {name!r}: {spec!r} is not a rule ('±10%' or 'bounds')"
            raise OptionError(message, option="ranges")
        share = float(match.group(1)) / 100
        low, high = sorted((value * (1 - share), value * (1 + share)))
        return _clipped(tree, name, low, high, f"±{match.group(1)}%")
    return _explicit_range(tree, name, spec)


def _relative(spec: Any) -> bool:
    """True for a range that applies changes to the lever's current value."""
    if isinstance(spec, str):
        return spec.strip() != "bounds"
    return isinstance(spec, pd.Series)


def _explicit_range(tree: Tree, name: str, spec: Any) -> tuple[float, float, str]:
    try:
        low, high = (float(v) for v in spec)
    except (TypeError, ValueError):
        message = f"range of {name!r} must be (low, high), a rule or a history Series: {spec!r}"
        raise OptionError(message, option="ranges") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise OptionError(f"range of {name!r} must be finite with low <= high", option="ranges")
    bounds = tree.node(name).bounds
    if bounds and (low < bounds[0] or high > bounds[1]):
        message = f"range of {name!r} [{low:g}, {high:g}] leaves its bounds {list(bounds)}"
        raise OptionError(message, option="ranges")
    return low, high, "explicit"


def _bounds_range(tree: Tree, name: str) -> tuple[float, float, str]:
    bounds = tree.node(name).bounds
    if bounds is None or not all(map(math.isfinite, bounds)):
        message = f"range of {name!r}: 'bounds' needs finite bounds, and it has {bounds}"
        raise OptionError(message, option="ranges")
    return bounds[0], bounds[1], "bounds"


def _clipped(
    tree: Tree, name: str, low: float, high: float, basis: str
) -> tuple[float, float, str]:
    bounds = tree.node(name).bounds
    if bounds and (low < bounds[0] or high > bounds[1]):
        low, high = max(low, bounds[0]), min(high, bounds[1])
        basis += " (clipped to bounds)"
    return low, high, basis


def _history_column(tree: Tree, history: pd.DataFrame, name: str) -> pd.Series:
    """The history of ``name``; a lagged input's history is its source's, shifted."""
    if name in history.columns:
        return history[name]
    source = _lag_sources(tree).get(name)
    if source is not None and source[0] in history.columns:
        return history[source[0]].shift(source[1])
    message = f"history has no column for lever {name!r}; give its range explicitly"
    raise DataError(message, node=name, column=name, reason="missing")


def _lag_sources(tree: Tree) -> dict[str, tuple[str, int]]:
    sources = {}
    for node in tree.links:
        for term in tree.node(node).link.terms:  # type: ignore[union-attr]
            if term.lag:
                sources[term.column] = (term.name, term.lag)
    return sources


def _changes(name: str, series: pd.Series) -> tuple[np.ndarray, bool]:
    """Observed period-over-period changes, and whether they are relative."""
    try:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"history of {name!r} is not numeric", column=name, node=name) from None
    values = values[~np.isnan(values)]
    relative = bool(values.size) and bool((values > 0).all())
    changes = values[1:] / values[:-1] - 1 if relative else np.diff(values)
    if changes.size < 2:
        message = f"history of {name!r} has fewer than 3 observed values"
        raise DataError(message, column=name, node=name, reason="too short")
    return changes, relative


def _history_range(name: str, value: float, series: pd.Series) -> tuple[float, float]:
    changes, relative = _changes(name, series)
    low, high = np.quantile(changes, QUANTILES)
    return (value * (1 + low), value * (1 + high)) if relative else (value + low, value + high)


def _empirical(tree: Tree, name: str, value: float, series: pd.Series) -> Marginal:
    changes, relative = _changes(name, series)
    bounds = tree.node(name).bounds or (-math.inf, math.inf)

    def ppf(u: np.ndarray) -> np.ndarray:
        change = np.quantile(changes, u)
        drawn = value * (1 + change) if relative else value + change
        return np.clip(drawn, *bounds)

    kind = "relative" if relative else "absolute"
    return Marginal(ppf, f"history ({changes.size} {kind} changes)")


def _uniform(low: float, high: float, basis: str) -> Marginal:
    def ppf(u: np.ndarray) -> np.ndarray:
        return u * (high - low) + low  # SALib's scaling, operation for operation

    return Marginal(ppf, basis)


def _describe(dist: Any) -> str:
    name = getattr(getattr(dist, "dist", None), "name", type(dist).__name__)
    args = ", ".join(f"{v:g}" for v in getattr(dist, "args", ()))
    kwds = ", ".join(f"{k}={v:g}" for k, v in getattr(dist, "kwds", {}).items())
    return f"{name}({', '.join(filter(None, (args, kwds)))})"
