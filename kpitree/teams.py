"""Rank teams by how much their levers move the target, with intervals.

A team's levers are the levers it owns (``owner`` metadata; levers without one form
the ``"(no owner)"`` team). Three bases:

- ``"tornado"`` (default): move all of the team's levers together across their
  ranges, each to the end that raises the target versus the end that lowers it; the
  impact is the difference of the target (exact, interactions within the team
  included).
- ``"elasticity"``: the first-order (linear) version: the sum over the team's levers
  of ``|d target / d lever| * (high - low)``.
- ``"sobol"``: the team's total Sobol index (share of the target's variance over the
  ranges), from :func:`kpitree.sobol` with ``groups="owner"``.

For a fitted tree, the tornado and elasticity rankings are recomputed for
``n_draws`` coefficient draws (:meth:`kpitree.FittedTree.sample_params`): the
interval is the central ``level`` interval of the impact over draws and ``p_first``
the share of draws in which the team ranks first. Sobol intervals are the bootstrap
intervals of the indices.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas('''
...     revenue = leads * win_rate * deal_size
... ''', baselines={"leads": 100, "win_rate": 0.2, "deal_size": 50},
...     owners={"leads": "Marketing", "win_rate": "Sales", "deal_size": "Sales"})
>>> ranking = rank_teams(tree, "revenue", ranges="±10%")
>>> ranking.to_frame()[["impact", "share", "rank"]].round(3)
           impact  share  rank
team
Sales       400.0  0.667     1
Marketing   200.0  0.333     2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from .errors import OptionError
from .evaluate import Inputs, evaluate_array, evaluate_columns
from .global_sensitivity import sobol
from .node import NO_OWNER
from .ranges import RangeSpec, lever_ranges
from .results import TeamRanking
from .sensitivity import State, current_values, elasticities, levers_of, one_state
from .tree import Tree

__all__ = ["rank_teams"]

Method = Literal["tornado", "elasticity", "sobol"]


def rank_teams(
    tree: Tree,
    target: str,
    *,
    at: State = None,
    ranges: RangeSpec = None,
    method: Method = "tornado",
    costs: Mapping[str, float] | None = None,
    n_draws: int = 200,
    level: float = 0.9,
    seed: int | None = 0,
    n: int = 1024,
    progress: bool = True,
) -> TeamRanking:
    """Teams ranked by the impact of their levers on ``target``.

    Returns a :class:`~kpitree.results.TeamRanking` indexed by team: ``impact`` (in
    the target's unit; for ``"sobol"`` the total index), ``impact_pct`` (% of the
    target; for ``"sobol"`` % of its variance), ``share`` of the summed impacts,
    ``rank``, ``ci_low``/``ci_high``, ``p_first``, ``n_levers``, and with ``costs``
    (lever -> cost of moving it across its range) ``cost`` and ``impact_per_cost``.
    ``n`` is the Sobol base sample size.
    """
    if method not in ("tornado", "elasticity", "sobol"):
        message = f"method must be 'tornado', 'elasticity' or 'sobol', not {method!r}"
        raise OptionError(message, option="method")
    state = one_state(at)
    levers = levers_of(tree, target)
    current = current_values(tree, state, levers)
    table = lever_ranges(tree, levers, current, ranges)
    teams = _teams(tree, table.index)
    base = float(evaluate_array(tree, state, (target,))[0, 0])
    if method == "sobol":
        frame, detail, uncertainty = _by_sobol(tree, target, at, ranges, teams, n, seed, progress)
    else:
        draws = _draws(tree, n_draws, seed)
        impact = _IMPACTS[method](tree, target, state, table, teams, draws)
        frame = _frame(impact, teams, base, level)
        detail = None
        uncertainty = _describe_draws(draws, level)
    frame = _with_costs(frame, teams, costs, levers)
    basis = {
        "method": _METHOD_TEXT[method],
        "ranges": ", ".join(sorted(set(table["basis"]))),
        "target": f"{target} = {base:,.0f}" if abs(base) >= 1000 else f"{target} = {base:.4g}",
        "uncertainty": uncertainty,
    }
    return TeamRanking(target, base, frame, teams, detail, basis)


_METHOD_TEXT = {
    "tornado": "tornado (each team's levers moved together across their ranges)",
    "elasticity": "elasticity (linear swing: sum of |derivative| x range)",
    "sobol": "sobol (total index of the team's levers)",
}


def _teams(tree: Tree, levers: pd.Index) -> dict[str, tuple[str, ...]]:
    teams: dict[str, list[str]] = {}
    for name in levers:
        teams.setdefault(tree.owner(name) or NO_OWNER, []).append(name)
    return {team: tuple(names) for team, names in teams.items()}


def _draws(tree: Tree, n_draws: int, seed: int | None) -> pd.DataFrame | None:
    """Coefficient draws of a fitted tree (``None`` without fitted links)."""
    if not getattr(tree, "_fits", None):
        return None
    if not isinstance(n_draws, int) or n_draws < 2:
        raise OptionError(f"n_draws must be an integer >= 2, got {n_draws!r}", option="n_draws")
    return tree.sample_params(n_draws, seed=seed)  # type: ignore[attr-defined]


def _tornado_impacts(
    tree: Tree,
    target: str,
    state: Inputs,
    table: pd.DataFrame,
    teams: Mapping[str, tuple[str, ...]],
    draws: pd.DataFrame | None,
) -> np.ndarray:
    """``(1 + draws, teams)`` impacts: row 0 at the estimates, then one row per draw."""
    levers = list(table.index)
    lows, highs = table["low"].to_numpy(), table["high"].to_numpy()
    k = len(levers)
    swing = {name: _pair_rows(i, k, lows[i], highs[i]) for i, name in enumerate(levers)}
    ends = _evaluate(tree, target, state, swing, 2 * k, draws)  # (draws, 2k)
    raises = ends[:, 1::2] >= ends[:, 0::2]  # the high end raises the target
    moved = {}
    for t, names in enumerate(teams.values()):
        for name in names:
            i = levers.index(name)
            best = np.where(raises[:, i], highs[i], lows[i])
            worst = np.where(raises[:, i], lows[i], highs[i])
            column = np.full((len(ends), 2 * len(teams)), np.nan)
            column[:, 2 * t], column[:, 2 * t + 1] = best, worst
            moved[name] = column
    team_ends = _evaluate(tree, target, state, moved, 2 * len(teams), draws)
    return team_ends[:, 0::2] - team_ends[:, 1::2]


def _pair_rows(i: int, k: int, low: float, high: float) -> np.ndarray:
    row = np.full((1, 2 * k), np.nan)
    row[0, 2 * i], row[0, 2 * i + 1] = low, high
    return row


def _evaluate(
    tree: Tree,
    target: str,
    state: Inputs,
    overrides: Mapping[str, np.ndarray],
    rows: int,
    draws: pd.DataFrame | None,
) -> np.ndarray:
    """The target on ``rows`` states per coefficient set: shape ``(1 + draws, rows)``.

    ``overrides[lever]`` is ``(1, rows)`` or ``(1 + draws, rows)`` with NaN where the
    lever keeps its value in ``state``.
    """
    sets = 1 + (0 if draws is None else len(draws))
    columns: dict[str, Any] = dict(state.columns)
    for name, values in overrides.items():
        values = np.broadcast_to(values, (sets, rows))
        columns[name] = np.where(np.isnan(values), state.values_for(tree, name), values).ravel()
    if draws is not None:
        for name in draws:
            estimate = np.array([tree.parameters[name]])
            columns[name] = np.repeat(np.concatenate([estimate, draws[name].to_numpy()]), rows)
    result = evaluate_columns(tree, columns, (target,), sets * rows)
    return result[0].reshape(sets, rows)


def _elasticity_impacts(
    tree: Tree,
    target: str,
    state: Inputs,
    table: pd.DataFrame,
    teams: Mapping[str, tuple[str, ...]],
    draws: pd.DataFrame | None,
) -> np.ndarray:
    levers = list(table.index)
    sets = 1 + (0 if draws is None else len(draws))
    inputs = levers_of(tree, target)  # every lever at its value in the state
    at = {name: np.full(sets, float(state.values_for(tree, name))) for name in inputs}
    if draws is not None:
        for name in draws:
            at[name] = np.concatenate([[tree.parameters[name]], draws[name].to_numpy()])
    result = elasticities(tree, target, at=pd.DataFrame(at), wrt=levers)
    width = (table["high"] - table["low"]).to_numpy()
    linear = np.abs(result.derivatives.to_numpy()) * width
    columns = [[levers.index(name) for name in names] for names in teams.values()]
    return np.stack([linear[:, idx].sum(axis=1) for idx in columns], axis=1)


_IMPACTS = {"tornado": _tornado_impacts, "elasticity": _elasticity_impacts}


def _frame(
    impacts: np.ndarray, teams: Mapping[str, tuple[str, ...]], base: float, level: float
) -> pd.DataFrame:
    point, draws = impacts[0], impacts[1:]
    frame = pd.DataFrame({"impact": point}, index=pd.Index(list(teams), name="team"))
    frame["impact_pct"] = 100 * point / abs(base) if base else np.nan
    frame["share"] = point / point.sum() if point.sum() else np.nan
    if len(draws):
        tail = (1 - level) / 2
        frame["ci_low"] = np.quantile(draws, tail, axis=0)
        frame["ci_high"] = np.quantile(draws, 1 - tail, axis=0)
        first = np.bincount(np.argmax(draws, axis=1), minlength=len(teams))
        frame["p_first"] = first / len(draws)
    else:
        frame["ci_low"] = frame["ci_high"] = frame["p_first"] = np.nan
    return _ranked(frame, teams)


def _ranked(frame: pd.DataFrame, teams: Mapping[str, tuple[str, ...]]) -> pd.DataFrame:
    frame["n_levers"] = [len(teams[team]) for team in frame.index]
    frame = frame.iloc[np.argsort(-frame["impact"].to_numpy(), kind="stable")]
    frame.insert(3, "rank", np.arange(1, len(frame) + 1))
    return frame


def _by_sobol(
    tree: Tree,
    target: str,
    at: State,
    ranges: RangeSpec,
    teams: Mapping[str, tuple[str, ...]],
    n: int,
    seed: int | None,
    progress: bool,
) -> tuple[pd.DataFrame, Any, str]:
    found = sobol(tree, target, at=at, ranges=ranges, n=n, groups="owner", seed=seed,
                  progress=progress)  # fmt: skip
    table = found.to_frame()
    index = pd.Index(table.index, name="team")
    frame = pd.DataFrame({"impact": table["ST"].to_numpy()}, index=index)
    frame["impact_pct"] = 100 * frame["impact"]
    frame["share"] = frame["impact"] / frame["impact"].sum()
    half = table["ST_conf"].to_numpy()  # an index lies in [0, 1]
    frame["ci_low"] = np.clip(table["ST"].to_numpy() - half, 0, 1)
    frame["ci_high"] = np.clip(table["ST"].to_numpy() + half, 0, 1)
    frame["p_first"] = np.nan
    uncertainty = f"sampling: {found.basis['intervals']} of the total indices (n={n})"
    return _ranked(frame, teams), found, uncertainty


def _with_costs(
    frame: pd.DataFrame,
    teams: Mapping[str, tuple[str, ...]],
    costs: Mapping[str, float] | None,
    levers: tuple[str, ...],
) -> pd.DataFrame:
    if costs is None:
        return frame
    unknown = [name for name in costs if name not in levers]
    if unknown:
        message = f"costs: {unknown} are not levers that move the target"
        raise OptionError(message, option="costs")
    total = [
        sum(float(costs[name]) for name in teams[team])
        if all(name in costs for name in teams[team])
        else np.nan
        for team in frame.index
    ]
    frame["cost"] = total
    frame["impact_per_cost"] = frame["impact"] / frame["cost"]
    return frame


def _describe_draws(draws: pd.DataFrame | None, level: float) -> str:
    if draws is None:
        return "none: the tree has no fitted links (intervals are NaN)"
    return f"{level:.0%} interval over {len(draws)} coefficient draws"
