"""Targets set backwards (逆算): what every upstream node must reach for one goal.

"20 contracts this quarter: with our win rate that needs 80 SQLs, with our SQL rate
that needs 200 MQLs...". :func:`backcast` walks from the goal down to the levers with
the rates held, splitting each node's requirement among the nodes it is computed from.

>>> import kpitree
>>> from kpitree import backcast
>>> tree = kpitree.Tree.from_formulas('''
...     new_customers = sqls * win_rate
...     sqls = mqls * sql_rate
... ''', bounds={"win_rate": (0, 1), "sql_rate": (0, 1)},
...     baselines={"mqls": 150, "sql_rate": 0.4, "win_rate": 0.25})
>>> backcast(tree, "new_customers", 20).to_frame()[["baseline", "required", "held"]]
               baseline  required   held
node
new_customers     15.00     20.00  False
win_rate           0.25      0.25   True
sqls              60.00     80.00  False
sql_rate           0.40      0.40   True
mqls             150.00    200.00  False
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, OptionError, ScenarioError
from .evaluate import Inputs, evaluate_array, evaluate_columns
from .node import NO_OWNER
from .results import Result, number_text
from .roots import RTOL
from .scaling import first_value, local_solver, option_error, share_text
from .scenario import apply_change
from .sensitivity import State, one_state
from .tree import Tree

__all__ = ["Backcast", "backcast"]

Hold = Sequence[str] | Mapping[str, float | str | None] | None
Mix = Mapping[str, Mapping[str, float]] | None


@dataclass(frozen=True, repr=False)
class Backcast(Result):
    """The value each node upstream of ``node`` must reach for ``node = value``.

    :meth:`to_frame` is indexed by node, top of the funnel first: owner, stage,
    baseline, required, change, ratio, held, and with history required_p50 and
    required_p90. ``samples`` holds the required values per history draw.
    """

    node: str
    value: float
    table: pd.DataFrame
    achieved: float
    conflicts: tuple[str, ...] = ()
    samples: pd.DataFrame | None = None
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "funnel"

    @property
    def required(self) -> pd.Series:
        """The required value per node."""
        return self.table["required"].copy()

    def by_team(self) -> pd.DataFrame:
        """The table indexed by (team, node): each team's targets, teams in funnel order.

        >>> import kpitree
        >>> tree = kpitree.Tree.from_formulas("sqls = mqls * rate", bounds={"rate": (0, 1)},
        ...     owners={"sqls": "Inside Sales", "rate": "Inside Sales", "mqls": "Marketing"},
        ...     baselines={"mqls": 100, "rate": 0.5})
        >>> backcast(tree, "sqls", 60).by_team()["required"]
        team          node
        Inside Sales  sqls     60.0
                      rate      0.5
        Marketing     mqls    120.0
        Name: required, dtype: float64
        """
        frame = self.table.copy()
        teams = frame.pop("owner").fillna(NO_OWNER)
        order = {team: i for i, team in enumerate(dict.fromkeys(teams))}
        frame.index = pd.MultiIndex.from_arrays([teams, frame.index], names=["team", "node"])
        rank = np.array([order[team] for team in teams])
        return frame.iloc[np.argsort(rank, kind="stable")]

    def title(self) -> str:
        return f"Back-calculated targets for {self.node} = {number_text(self.value)}"


def backcast(
    tree: Tree,
    node: str,
    value: float,
    *,
    at: State = None,
    hold: Hold = None,
    mix: Mix = None,
    history: pd.DataFrame | None = None,
    n_draws: int = 1000,
    seed: int | None = 0,
) -> Backcast:
    """The value every node upstream of ``node`` must reach for ``node`` to equal ``value``.

    Rates are held: every node whose bounds lie within [0, 1] keeps its value in the
    state ``at`` (``None``: the baselines), as do the names in ``hold`` (a list, or a
    mapping name -> value or change such as ``"+10%"`` to hold at another value).
    Walking down from ``node``, each node's requirement is met by scaling its free
    (not held) inputs by one common factor solved from its own formula: a sum keeps
    its mix (``mix={"visits": {"sns": 0.2, ...}}`` sets the shares of its free part
    instead), a product with one free factor gives it the whole ratio, with k free
    factors each gets the k-th root. Other formulas are solved symbolically on the
    node's formula alone, or numerically. A node several parents need gets the
    largest requirement (``conflicts``); held nodes are listed, what lies below them
    is not. Evaluating the tree at the required levers must give ``value``.

    With ``history`` (a row per period, a column per node), the held rates are
    uncertain: ``n_draws`` whole periods are drawn with replacement (so the rates'
    correlations are kept), the calculation is redone per draw and ``required_p50``
    and ``required_p90`` are added. Reaching a node's P90 volume meets the goal in
    90% of the rate scenarios of a one-path funnel: a target that makes the goal
    likely, not only possible on average. Unreachable goals raise ``ScenarioError``.

    >>> import kpitree
    >>> tree = kpitree.Tree.from_formulas("leads = visits * rate\\nvisits = sns + ads",
    ...     bounds={"rate": (0, 1)}, baselines={"sns": 300, "ads": 700, "rate": 0.1})
    >>> backcast(tree, "leads", 200).required.to_dict()
    {'leads': 200.0, 'rate': 0.1, 'visits': 2000.0, 'ads': 1400.0, 'sns': 600.0}
    """
    state = one_state(at)
    target = float(value)
    if not math.isfinite(target):
        raise OptionError(f"value must be a finite number, got {value!r}", option="value")
    plan = _plan(tree, node, hold, mix)
    base = _state_values(tree, state, plan.order)
    held = _held_values(tree, plan, base)
    reference = _reference(tree, plan, state, held, 1)
    required, conflicts, notes = _propagate(tree, plan, target, reference, 1)
    achieved = float(_check(tree, plan, state, required, conflicts, 1)[0])
    table = _table(tree, plan, base, required)
    samples, more = None, set[str]()
    basis = _basis(plan, held, notes, at)
    if history is not None:
        drawn = _draw(tree, plan, history, n_draws, seed)
        required, more, _ = _propagate(tree, plan, target, reference | drawn, n_draws)
        _check(tree, plan, state, required, more, n_draws)
        samples = pd.DataFrame({n: required[n] for n in plan.order if n not in plan.held})
        table["required_p50"] = samples.quantile(0.5).reindex(table.index)
        table["required_p90"] = samples.quantile(0.9).reindex(table.index)
        basis["uncertainty"] = (
            f"{', '.join(drawn)} drawn from {len(history)} periods of history "
            f"({n_draws} draws of whole periods, seed {seed}): required_p50, required_p90"
        )
    shown = tuple(n for n in plan.order if n in conflicts | more)
    if shown:
        names = [n if n in conflicts else f"{n} (in some draws)" for n in shown]
        basis["conflicts"] = (
            f"{', '.join(names)}: needed by several parents, the largest requirement kept "
            f"(at the required values {node} reaches {number_text(achieved)})"
        )
    return Backcast(node, target, table, achieved, shown, samples, basis)


# --- the plan: which nodes are listed and held --------------------------------------------


@dataclass(frozen=True)
class _Plan:
    target: str
    order: tuple[str, ...]  # listed nodes, each after every parent (top of the funnel first)
    held: frozenset[str]
    given: Mapping[str, float | str | None]  # held by name; a value or change, or None
    mix: Mapping[str, dict[str, float]]


def _plan(tree: Tree, node: str, hold: Hold, mix: Mix) -> _Plan:
    tree.node(node)
    upstream = set(tree.upstream(node))
    given = _hold_names(hold)
    for name in given:
        tree.node(name)
        if name == node:
            raise option_error(f"hold: {name!r} is the goal itself", "hold", name)
        if name not in upstream:
            raise option_error(f"hold: {name!r} is not upstream of {node!r}", "hold", name)
    listed, held, stack = {node}, set(), [node]
    while stack:
        name = stack.pop()
        if name != node and (name in given or _is_rate(tree, name)):
            held.add(name)
            continue
        if tree.node(name).is_input:
            continue
        for child in tree.children(name):
            if child not in listed:
                listed.add(child)
                stack.append(child)
    order = tuple(n for n in reversed(tree.order) if n in listed)
    shares = _mix_shares(tree, mix, listed, held)
    return _Plan(node, order, frozenset(held), given, shares)


def _hold_names(hold: Hold) -> dict[str, float | str | None]:
    """Name -> the value or change to hold it at (None: its value in the state)."""
    if hold is None:
        return {}
    if isinstance(hold, str):
        return {hold: None}
    if isinstance(hold, Mapping):
        return dict(hold)
    return dict.fromkeys(hold)


def _is_rate(tree: Tree, name: str) -> bool:
    bounds = tree.node(name).bounds
    return bounds is not None and bounds[0] >= 0 and bounds[1] <= 1


def _mix_shares(tree: Tree, mix: Mix, listed: set[str], held: set[str]) -> dict:
    shares: dict[str, dict[str, float]] = {}
    for name, split in (mix or {}).items():
        if tree.node(name).is_input or name not in listed or name in held:
            message = f"mix: {name!r} is not a node the back-calculation splits"
            raise option_error(message, "mix", name)
        children = tree.children(name)
        for child in split:
            tree.node(child)
            if child not in children or child in held:
                what = "held" if child in held else f"not an input of {name!r}"
                raise option_error(f"mix: {child!r} is {what}", "mix", child)
        values = {child: float(share) for child, share in split.items()}
        if any(not (0 <= v <= 1) for v in values.values()) or abs(sum(values.values()) - 1) > 1e-9:
            message = f"mix of {name!r}: shares must lie in [0, 1] and sum to 1, got {values}"
            raise option_error(message, "mix", name)
        shares[name] = values
    return shares


def _state_values(tree: Tree, state: Inputs, names: Sequence[str]) -> dict[str, float]:
    values = evaluate_array(tree, state, tuple(names))[:, 0]
    return {name: float(v) for name, v in zip(names, values, strict=True)}


def _held_values(tree: Tree, plan: _Plan, base: Mapping[str, float]) -> dict[str, float]:
    held: dict[str, float] = {}
    for name in plan.order:
        if name not in plan.held:
            continue
        change = plan.given.get(name)
        held[name] = base[name] if change is None else apply_change(base[name], change, node=name)
        _within_bounds(tree, name, np.atleast_1d(held[name]), "is held at")
    return held


def _reference(
    tree: Tree, plan: _Plan, state: Inputs, held: Mapping[str, float], n: int
) -> dict[str, np.ndarray]:
    """The listed nodes evaluated with the held nodes at their held values: what the
    free inputs are scaled from, so that sums keep the mix of that state."""
    fixed = frozenset(name for name in held if not tree.node(name).is_input)
    columns = dict(state.columns) | dict(held)
    values = evaluate_columns(tree, columns, plan.order, n, fixed=fixed)
    return dict(zip(plan.order, values, strict=True))


# --- the walk down ------------------------------------------------------------------------


def _propagate(
    tree: Tree, plan: _Plan, value: float, reference: Mapping[str, np.ndarray], n: int
) -> tuple[dict[str, np.ndarray], set[str], dict[str, str]]:
    """Every listed node's requirement, as arrays of ``n`` (one per draw of the rates)."""
    required: dict[str, np.ndarray] = {}
    wanted: dict[str, list[np.ndarray]] = {plan.target: [np.full(n, value)]}
    conflicts: set[str] = set()
    notes: dict[str, str] = {}
    for name in plan.order:
        if name in plan.held:
            required[name] = reference[name]
            continue
        needs = wanted[name]
        need = np.maximum.reduce(needs) if len(needs) > 1 else needs[0]
        if any(not np.allclose(other, need, rtol=RTOL, atol=0) for other in needs):
            conflicts.add(name)
        required[name] = _within_bounds(tree, name, need, "would need")
        if tree.node(name).is_input:
            continue
        local = local_solver(tree, name, plan.held)
        values = {c: reference[c] for c in local.children}
        split = local.split(required[name], values, plan.mix.get(name), n)
        for child, need in split.items():
            wanted.setdefault(child, []).append(need)
        if local.note:
            notes[name] = local.note
    return required, conflicts, notes


def _within_bounds(tree: Tree, name: str, values: np.ndarray, verb: str) -> np.ndarray:
    """``values`` (a rounding error past a bound clipped to it); a ``ScenarioError`` when
    they lie outside the node's bounds."""
    bounds = tree.node(name).bounds
    if bounds is None:
        return values
    low, high = bounds
    slack = 1e-12 * np.maximum(np.abs(values), 1.0)
    outside = (values < low - slack) | (values > high + slack)
    if outside.any():
        shown = values[np.flatnonzero(outside)[0]]
        message = f"{name!r} {verb} {number_text(shown)}, outside its bounds [{low:g}, {high:g}]"
        raise ScenarioError(message + share_text(outside), node=name)
    return np.clip(values, low, high)


# --- checks and the table ------------------------------------------------------------------


def _check(
    tree: Tree, plan: _Plan, state: Inputs, required: Mapping, conflicts: set[str], n: int
) -> np.ndarray:
    """Evaluate the tree at the required inputs (held computed nodes overridden)."""
    fixed = frozenset(n for n in plan.held if not tree.node(n).is_input)
    columns = dict(state.columns)
    for name in plan.order:
        if tree.node(name).is_input or name in fixed:
            columns[name] = np.asarray(required[name], dtype=float)
    got = evaluate_columns(tree, columns, (plan.target,), n, fixed=fixed)[0]
    goal = required[plan.target]
    if not conflicts and not np.allclose(got, goal, rtol=RTOL, atol=0):
        message = (
            f"check failed: the tree evaluated at the required levers gives {plan.target} = "
            f"{number_text(first_value(got))}, not {number_text(first_value(goal))}"
        )
        raise ScenarioError(message, node=plan.target)
    return got


def _draw(
    tree: Tree, plan: _Plan, history: pd.DataFrame, n_draws: int, seed: int | None
) -> dict[str, np.ndarray]:
    if not isinstance(history, pd.DataFrame) or history.empty:
        raise OptionError("history must be a DataFrame with a row per period", option="history")
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 2:
        raise OptionError(f"n_draws must be an integer >= 2, got {n_draws!r}", option="n_draws")
    names = [n for n in plan.order if n in plan.held and plan.given.get(n) is None]
    names = [n for n in names if n in history.columns]
    if not names:
        message = "history has no column for the rates held at their state values"
        raise OptionError(message, option="history")
    rows = np.random.default_rng(seed).integers(0, len(history), n_draws)
    drawn = {}
    for name in names:
        column = pd.to_numeric(history[name], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(column).all():
            bad = list(history.index[~np.isfinite(column)][:5])
            message = f"history column {name!r} has missing or non-numeric values"
            raise DataError(message, node=name, column=name, rows=bad, reason="nan")
        drawn[name] = column[rows]
    return drawn


def _table(
    tree: Tree, plan: _Plan, base: Mapping[str, float], required: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    rows = list(plan.order)
    baseline = np.array([base[n] for n in rows])
    need = np.array([first_value(required[n]) for n in rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(baseline != 0, need / baseline, np.nan)
    frame = pd.DataFrame(
        {
            "owner": [tree.owner(n) for n in rows],
            "stage": [tree.node(n).stage for n in rows],
            "baseline": baseline,
            "required": need,
            "change": need - baseline,
            "ratio": ratio,
            "held": [n in plan.held for n in rows],
        },
        index=pd.Index(rows, name="node"),
    )
    return frame


def _basis(plan: _Plan, held: Mapping, notes: Mapping[str, str], at: State) -> dict[str, Any]:
    values = ", ".join(
        f"{n}={first_value(np.atleast_1d(held[n])):.6g}" for n in plan.order if n in held
    )
    basis: dict[str, Any] = {
        "method": "top-down: each node's free inputs scaled by one common factor",
        "held": values or "none",
        "state": "baselines" if at is None else "given state",
    }
    if plan.mix:
        basis["mix"] = "; ".join(
            f"{n}: " + ", ".join(f"{c} {s:.0%}" for c, s in split.items())
            for n, split in plan.mix.items()
        )
    if notes:
        basis["factors"] = "; ".join(f"{n}: {text}" for n, text in notes.items())
    return basis
