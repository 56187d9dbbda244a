"""The cheapest mix of lever changes that reaches a target, or the best mix within a
budget: how an integrated-KPI model informs budget allocation between teams.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas("new_customers = sqls * win_rate",
...     bounds={"win_rate": (0, 1), "sqls": (0, 200)}, baselines={"sqls": 80, "win_rate": 0.2})
>>> plan = allocate(tree, "new_customers", levers=["sqls", "win_rate"],
...     costs={"sqls": 10, "win_rate": 10_000}, value=20)
>>> plan.to_frame()["planned"].round(6).to_dict(), round(plan.total_cost, 6)
({'sqls': 100.0, 'win_rate': 0.2}, 200.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .errors import DataError, OptionError, ScenarioError
from .evaluate import Inputs
from .gradient import Gradient, compile_gradient
from .node import NO_OWNER
from .results import Result, number_text
from .roots import RTOL, NoRootError, root_near
from .sensitivity import State, current_values, levers_of, one_state
from .targets import BoundsSpec, _evaluate_at, _finite, _interval
from .tree import Tree

__all__ = ["Allocation", "allocate"]

_STARTS = 5  # single-lever plans the optimiser starts from (the cheapest)


@dataclass(frozen=True, repr=False)
class Allocation(Result):
    """A plan of lever changes: per lever owner, current, planned, change, unit_cost and
    cost (``unit_cost * |change|``); ``achieved`` is the target at the plan."""

    target: str
    table: pd.DataFrame
    target_current: float
    achieved: float
    goal: float | None = None
    budget: float | None = None
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "allocation"

    @property
    def total_cost(self) -> float:
        return float(self.table["cost"].sum())

    def by_team(self) -> pd.DataFrame:
        """Per team: cost, share of the total cost and levers moved, largest cost first.

        >>> import kpitree
        >>> tree = kpitree.Tree.from_formulas("y = a + b", owners={"a": "A", "b": "B"},
        ...     baselines={"a": 1, "b": 1}, bounds={"a": (0, 2), "b": (0, None)})
        >>> plan = allocate(tree, "y", levers=["a", "b"], costs={"a": 1, "b": 3}, value=5)
        >>> plan.by_team().round(2)
              cost  share  levers_moved
        team
        B      6.0   0.86             1
        A      1.0   0.14             1
        """
        teams = self.table["owner"].fillna(NO_OWNER)
        moved = self.table["change"] != 0
        frame = pd.DataFrame({"cost": self.table["cost"].groupby(teams, sort=False).sum()})
        total = frame["cost"].sum()
        frame["share"] = frame["cost"] / total if total > 0 else np.nan
        frame["levers_moved"] = moved.groupby(teams, sort=False).sum().astype(int)
        frame.index.name = "team"
        return frame.sort_values("cost", ascending=False, kind="stable")

    def title(self) -> str:
        if self.budget is not None:
            return f"Plan maximising {self.target} within a budget of {number_text(self.budget)}"
        return f"Cheapest plan for {self.target} >= {number_text(self.goal or 0.0)}"


def allocate(
    tree: Tree,
    target: str,
    *,
    levers: Sequence[str],
    costs: Mapping[str, float],
    value: float | None = None,
    budget: float | None = None,
    at: State = None,
    bounds: Mapping[str, BoundsSpec] | None = None,
) -> Allocation:
    """The cheapest changes of ``levers`` that bring ``target`` to at least ``value``, or
    with ``budget`` the changes that raise ``target`` most for at most that cost.

    ``costs`` gives each lever's cost per unit of change (either direction);
    ``bounds`` per lever default to the lever's declared bounds (open bounds are fine
    when a value is sought). Each change is split into an up and a down part so the
    cost stays smooth, and SLSQP runs from several starting points (no change, and
    each lever alone) with exact gradients from one reverse pass; the plan is checked
    by evaluation. A ``ScenarioError`` says when no plan within the bounds reaches
    ``value``.

    >>> import kpitree
    >>> tree = kpitree.Tree.from_formulas("y = 2 * a + b",
    ...     bounds={"a": (0, 10), "b": (0, None)}, baselines={"a": 5, "b": 0})
    >>> allocate(tree, "y", levers=["a", "b"], costs={"a": 1, "b": 1},
    ...     value=25).to_frame()[["planned", "cost"]].round(6)
           planned  cost
    lever
    a         10.0   5.0
    b          5.0   5.0
    """
    if (value is None) == (budget is None):
        message = "give either value (the cheapest plan reaching it) or budget (the best plan)"
        raise OptionError(message, option="value")
    problem = _Problem.build(tree, target, levers, costs, bounds, one_state(at))
    if value is not None:
        goal = _finite(value, "value")
        planned = _cheapest(problem, goal)
    else:
        goal = None
        planned = _best_within(problem, _budget(budget))
    return _allocation(problem, planned, goal, budget, at)


@dataclass(frozen=True)
class _Problem:
    tree: Tree
    target: str
    levers: tuple[str, ...]
    rates: np.ndarray  # cost per unit of change
    current: np.ndarray
    low: np.ndarray
    high: np.ndarray
    gradient: Gradient
    values: tuple[Any, ...]  # the gradient's inputs, levers at their current values
    positions: tuple[int, ...]  # where the levers sit among them
    state: Inputs

    @classmethod
    def build(
        cls,
        tree: Tree,
        target: str,
        levers: Sequence[str],
        costs: Mapping,
        bounds: Any,
        state: Inputs,
    ) -> _Problem:
        names = _lever_names(tree, target, levers)
        rates = np.array([_unit_cost(costs, name) for name in names])
        extra = set(costs) - set(names)
        if extra:
            raise OptionError(f"costs: {sorted(extra)} are not among the levers", option="costs")
        current = np.array(list(current_values(tree, state, names).values()))
        for name, now in zip(names, current, strict=True):
            if math.isnan(now):
                raise DataError(
                    f"lever {name!r} has no value in the state", node=name, reason="missing"
                )
        intervals = [_interval(tree, n, (bounds or {}).get(n), "bounds") for n in names]
        low, high = (np.array(side, dtype=float) for side in zip(*intervals, strict=True))
        outside = np.flatnonzero((current < low) | (current > high))
        if outside.size:
            name = names[int(outside[0])]
            raise OptionError(f"bounds: {name!r} is outside them today", option="bounds")
        gradient = compile_gradient(tree, target, names)
        values = tuple(state.values_for(tree, n) for n in gradient.inputs)
        positions = tuple(gradient.inputs.index(n) for n in names)
        return cls(
            tree, target, names, rates, current, low, high, gradient, values, positions, state
        )

    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The target and its derivatives with respect to the levers at ``x``."""
        values = list(self.values)
        for position, v in zip(self.positions, x, strict=True):
            values[position] = float(v)
        value, derivatives = self.gradient.run(values, 1, check=False)
        return float(value[0]), derivatives[:, 0]

    def along(self, i: int, points: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The target with lever ``i`` at each of ``points``, the others at ``x``."""
        values = list(self.values)
        for position, v in zip(self.positions, x, strict=True):
            values[position] = float(v)
        values[self.positions[i]] = np.asarray(points, dtype=float)
        return self.gradient.run(values, len(points), check=False)[0]

    @property
    def scale(self) -> np.ndarray:
        width = np.where(np.isfinite(self.high - self.low), self.high - self.low, 1.0)
        return np.where(self.current != 0, np.abs(self.current), np.where(width > 0, width, 1.0))

    def to_x(self, z: np.ndarray) -> np.ndarray:
        n = len(self.levers)
        return np.clip(self.current + self.scale * (z[:n] - z[n:]), self.low, self.high)

    def to_z(self, x: np.ndarray) -> np.ndarray:
        step = (x - self.current) / self.scale
        return np.concatenate([np.maximum(step, 0), np.maximum(-step, 0)])

    def cost(self, x: np.ndarray) -> float:
        return float(self.rates @ np.abs(x - self.current))

    def z_bounds(self, room: np.ndarray | None = None) -> list[tuple[float, float | None]]:
        up, down = (self.high - self.current) / self.scale, (self.current - self.low) / self.scale
        if room is not None:
            up, down = np.minimum(up, room), np.minimum(down, room)
        return [(0.0, float(b) if math.isfinite(b) else None) for b in (*up, *down)]


def _lever_names(tree: Tree, target: str, levers: Sequence[str]) -> tuple[str, ...]:
    names = (levers,) if isinstance(levers, str) else tuple(levers)
    readable = set(levers_of(tree, target))
    for name in names:
        tree.node(name)
        if name not in readable:
            message = f"levers: {name!r} is not an input that evaluating {target!r} reads"
            raise OptionError(message, option="levers")
    if not names or len(set(names)) != len(names):
        raise OptionError(f"levers must be distinct and not empty, got {names!r}", option="levers")
    return names


def _unit_cost(costs: Mapping[str, float], name: str) -> float:
    if name not in costs:
        raise OptionError(f"costs: no cost for lever {name!r}", option="costs")
    rate = float(costs[name])
    if not (math.isfinite(rate) and rate >= 0):
        raise OptionError(f"costs: the cost of {name!r} must be >= 0, got {rate}", option="costs")
    return rate


def _budget(budget: Any) -> float:
    number = _finite(budget, "budget")
    if number < 0:
        raise OptionError(f"budget must be >= 0, got {number}", option="budget")
    return number


def _cheapest(problem: _Problem, goal: float) -> np.ndarray:
    """The cheapest lever values with target >= goal (SLSQP from several starts)."""
    now, _ = problem.evaluate(problem.current)
    if now >= goal:
        return problem.current.copy()
    singles = sorted(_single_lever_plans(problem, goal), key=problem.cost)[:_STARTS]
    greedy = _greedy(problem, goal)
    starts = singles + ([] if greedy is None else [greedy])
    if not starts:
        raise _unreachable(problem, goal)
    weights = np.tile(problem.rates * problem.scale, 2)
    unit = max(min(problem.cost(x) for x in starts), 1e-300)
    gap = max(goal - now, RTOL * abs(goal), 1e-300)

    def constraint(z: np.ndarray) -> float:
        return (problem.evaluate(problem.to_x(z))[0] - goal) / gap

    def slope(z: np.ndarray) -> np.ndarray:
        derivative = problem.evaluate(problem.to_x(z))[1] * problem.scale / gap
        return np.concatenate([derivative, -derivative])

    plans = list(starts)
    for start in [problem.current, *starts]:
        result = minimize(
            lambda z: (weights @ z / unit, weights / unit), problem.to_z(start), jac=True,
            method="SLSQP", bounds=problem.z_bounds(),
            constraints=[{"type": "ineq", "fun": constraint, "jac": slope}],
            options={"ftol": 1e-12, "maxiter": 500},
        )  # fmt: skip
        plans.append(_repair(problem, _snap(problem, problem.to_x(result.x)), goal))
    feasible = [x for x in plans if problem.evaluate(x)[0] >= goal - RTOL * abs(goal)]
    if not feasible:
        raise _unreachable(problem, goal)
    return min(feasible, key=lambda x: (problem.cost(x), np.count_nonzero(x - problem.current)))


def _single_lever_plans(problem: _Problem, goal: float) -> list[np.ndarray]:
    """Each lever alone moved (nearest its current value) until the target reaches goal."""
    plans = []
    for i in range(len(problem.levers)):
        x = _move_to_goal(problem, problem.current, i, goal)
        if x is not None:
            plans.append(_repair(problem, x, goal))
    return plans


def _greedy(problem: _Problem, goal: float) -> np.ndarray | None:
    """Levers moved one by one, cheapest per unit of target first, each to its best bound
    until the next one can close the gap: the optimum of a linear problem."""
    _, slopes = problem.evaluate(problem.current)
    with np.errstate(divide="ignore"):
        price = np.where(slopes != 0, problem.rates / np.abs(slopes), np.inf)
    x = problem.current.copy()
    for i in np.argsort(price, kind="stable"):
        if not np.isfinite(price[i]):
            break
        reached = _move_to_goal(problem, x, int(i), goal)
        if reached is not None:
            return _repair(problem, reached, goal)
        x[i] = problem.high[i] if slopes[i] > 0 else problem.low[i]
        if not np.isfinite(x[i]):
            return None
    return None


def _move_to_goal(problem: _Problem, x: np.ndarray, i: int, goal: float) -> np.ndarray | None:
    """``x`` with lever ``i`` moved to where the target equals goal, or None."""
    try:
        value = root_near(
            lambda p: problem.along(i, p, x), float(x[i]),
            float(problem.low[i]), float(problem.high[i]), value=goal,
        )  # fmt: skip
    except NoRootError:
        return None
    moved = x.copy()
    moved[i] = value
    return moved


def _snap(problem: _Problem, x: np.ndarray) -> np.ndarray:
    """Changes too small to matter (optimiser noise) set back to zero."""
    tiny = np.abs(x - problem.current) <= 1e-9 * problem.scale
    return np.where(tiny, problem.current, x)


def _repair(problem: _Problem, x: np.ndarray, goal: float) -> np.ndarray:
    """Close a rounding-size shortfall with the cheapest lever per unit of target."""
    x = x.copy()
    for _ in range(20):
        value, slopes = problem.evaluate(x)
        short = goal - value
        if short <= 0:
            break
        room = np.where(slopes > 0, problem.high - x, x - problem.low)
        usable = (slopes != 0) & (room > 0)
        if not usable.any():
            break
        with np.errstate(divide="ignore"):
            price = np.where(usable, problem.rates / np.abs(slopes), np.inf)
        i = int(np.argmin(price))
        step = min(short / abs(slopes[i]) * (1 + 1e-9) + 1e-15 * problem.scale[i], room[i])
        x[i] += math.copysign(step, slopes[i])
    return x


def _unreachable(problem: _Problem, goal: float) -> ScenarioError:
    best = (
        _best_within(problem, math.inf) if np.isfinite([problem.low, problem.high]).all() else None
    )
    most = problem.evaluate(best)[0] if best is not None else math.nan
    reach = f": the most they reach is {number_text(most)}" if best is not None else ""
    message = (
        f"cannot reach {number_text(goal)} by moving {', '.join(problem.levers)} "
        f"within their bounds{reach}"
    )
    error = ScenarioError(message, node=problem.target)
    error.reachable = most  # type: ignore[attr-defined]
    return error


def _best_within(problem: _Problem, budget: float) -> np.ndarray:
    """The lever values maximising the target at a cost of at most ``budget``."""
    n = len(problem.levers)
    with np.errstate(divide="ignore"):
        room = np.where(problem.rates > 0, budget / problem.rates, np.inf) / problem.scale
    unbounded = ~np.isfinite(np.minimum(room, (problem.high - problem.low) / problem.scale))
    if unbounded.any():
        name = problem.levers[int(np.flatnonzero(unbounded)[0])]
        message = f"lever {name!r} costs nothing within the budget and has open bounds: bound it"
        raise OptionError(message, option="bounds")
    now, slopes = problem.evaluate(problem.current)
    norm = max(abs(now), 1e-300)
    weights = np.tile(problem.rates * problem.scale, 2)
    spend = max(budget, 1e-300) if math.isfinite(budget) else 1.0

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, derivative = problem.evaluate(problem.to_x(z))
        derivative = derivative * problem.scale / norm
        return -value / norm, -np.concatenate([derivative, -derivative])

    constraints = []
    if math.isfinite(budget):
        constraints = [{"type": "ineq", "fun": lambda z: (budget - weights @ z) / spend,
                        "jac": lambda z: -weights / spend}]  # fmt: skip
    plans = [problem.current.copy()]
    for i in range(n):
        z = np.zeros(2 * n)
        z[i if slopes[i] >= 0 else n + i] = room[i]
        plans.append(problem.to_x(z))
    for start in list(plans):
        result = minimize(
            objective, problem.to_z(start), jac=True, method="SLSQP",
            bounds=problem.z_bounds(room), constraints=constraints,
            options={"ftol": 1e-12, "maxiter": 500},
        )  # fmt: skip
        plans.append(_snap(problem, problem.to_x(result.x)))
    plans = [_within_budget(problem, x, budget) for x in plans]
    return max(plans, key=lambda x: problem.evaluate(x)[0])


def _within_budget(problem: _Problem, x: np.ndarray, budget: float) -> np.ndarray:
    cost = problem.cost(x)
    if cost <= budget:
        return x
    return problem.current + (x - problem.current) * (budget / cost)


def _allocation(
    problem: _Problem, planned: np.ndarray, goal: float | None, budget: Any, at: State
) -> Allocation:
    tree, target = problem.tree, problem.target
    change = planned - problem.current
    table = pd.DataFrame(
        {
            "owner": [tree.owner(n) for n in problem.levers],
            "current": problem.current,
            "planned": planned,
            "change": change,
            "unit_cost": problem.rates,
            "cost": problem.rates * np.abs(change),
        },
        index=pd.Index(problem.levers, name="lever"),
    )
    now = problem.evaluate(problem.current)[0]
    achieved = _evaluate_at(
        tree, problem.state, target, dict(zip(problem.levers, planned, strict=True))
    )
    objective = (
        f"{target} >= {number_text(goal)} at least cost"
        if goal is not None
        else (f"largest {target} at a cost <= {number_text(float(budget))}")
    )
    basis = {
        "objective": objective,
        "method": "SLSQP, exact gradients (reverse pass), several starts; checked by evaluation",
        "bounds": ", ".join(
            f"{n} [{lo:g}, {hi:g}]"
            for n, lo, hi in zip(problem.levers, problem.low, problem.high, strict=True)
        ),
        "state": "baselines" if at is None else "given state",
    }
    return Allocation(
        target, table, now, achieved, goal, None if budget is None else float(budget), basis
    )
