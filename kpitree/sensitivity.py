"""Local sensitivity: exact elasticities, one-at-a-time swings, Monte Carlo.

Every analysis is a function of a tree, a target node and a state ``at`` (the
levers' values: ``None`` for the baselines, a mapping or Series for one state, a
DataFrame for many rows) and returns a result object from :mod:`kpitree.results`.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas('''
...     revenue = customers * arpa
...     customers = leads * win_rate
... ''', baselines={"leads": 400, "win_rate": 0.25, "arpa": 1200},
...     owners={"leads": "Marketing", "win_rate": "Sales", "arpa": "Success"})
>>> kpitree.elasticities(tree, "revenue").to_frame()[["derivative", "elasticity"]]
          derivative  elasticity
lever
arpa           100.0         1.0
leads          300.0         1.0
win_rate    480000.0         1.0
>>> kpitree.tornado(tree, "revenue", ranges={"win_rate": (0.2, 0.3)}).to_frame()["swing"]
lever
win_rate    48000.0
Name: swing, dtype: float64
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .compile import FaultError
from .errors import DataError, OptionError
from .evaluate import Inputs, evaluate_array, evaluate_columns
from .gradient import check_faults, compile_gradient
from .ranges import RangeSpec, lever_ranges, marginals
from .results import Elasticities, MonteCarlo, Tornado
from .tree import Tree, post_order

__all__ = [
    "current_values", "elasticities", "levers_of", "monte_carlo", "one_state", "tornado",
]  # fmt: skip

State = Mapping[str, Any] | pd.Series | pd.DataFrame | None


def elasticities(
    tree: Tree, target: str, *, at: State = None, wrt: Sequence[str] | None = None
) -> Elasticities:
    """Exact derivatives of ``target`` with respect to every lever, at each row of ``at``.

    Local partial derivatives are symbolic; they are chained through identities and
    fitted links in one compiled reverse pass over the tree, vectorised over rows.
    ``wrt`` picks other inputs (e.g. fitted coefficients, ``tree.parameters``); by
    default every lever the target depends on. The elasticity is the % change of
    the target per 1% change of the lever: ``derivative * lever / target``.
    """
    levers = levers_of(tree, target) if wrt is None else _checked_inputs(tree, wrt)
    gradient = compile_gradient(tree, target, levers)
    frame = Inputs.from_user(at)
    values = [frame.values_for(tree, name) for name in gradient.inputs]
    try:
        value, derivatives = gradient.run(values, frame.n_rows)
    except FaultError:
        evaluate_array(tree, frame, (target,))  # raises the DataError naming node and rows
        value, derivatives = gradient.run(values, frame.n_rows, check=False)
        _raise_on_faults(gradient, derivatives, frame.index)
    return Elasticities(
        target=target,
        index=frame.index,
        levers=levers,
        owner_names=tuple(_owner(tree, name) for name in levers),
        target_array=value,
        lever_values=tuple(frame.values_for(tree, name) for name in levers),
        derivative_array=derivatives,
        basis={"method": "exact derivatives (reverse pass)", "state": _describe_state(at)},
    )


def tornado(tree: Tree, target: str, *, at: State = None, ranges: RangeSpec = None) -> Tornado:
    """One-at-a-time swings of ``target`` as each lever moves over its range.

    ``ranges``: ``"±10%"`` (default), ``"bounds"``, a mapping lever -> ``(low,
    high)`` or rule, or a history DataFrame (p10-p90 of observed period-over-period
    changes); see :mod:`kpitree.ranges`. The table is indexed by lever: owner, low,
    high, target_low, target_high, swing (``|target_high - target_low|``) and basis,
    largest swing first.
    """
    state = one_state(at)
    levers = levers_of(tree, target)
    current = current_values(tree, state, levers)
    table = lever_ranges(tree, levers, current, ranges)
    base = float(evaluate_array(tree, state, (target,))[0, 0])
    moved = swing_states(tree, state, table["low"], table["high"])
    result = evaluate_array(tree, moved, (target,))[0]
    table.insert(0, "owner", [_owner(tree, n) for n in table.index])
    table.insert(3, "target_low", result[0::2])
    table.insert(4, "target_high", result[1::2])
    table.insert(5, "swing", np.abs(table["target_high"] - table["target_low"]))
    order = np.argsort(-table["swing"].to_numpy(), kind="stable")
    basis = {"ranges": _describe_ranges(ranges, table), "state": _describe_state(at)}
    return Tornado(target, base, table.iloc[order], basis)


def monte_carlo(
    tree: Tree,
    target: str,
    *,
    n: int = 10_000,
    seed: int | None = None,
    params: bool = True,
    at: State = None,
    ranges: RangeSpec = None,
    distributions: Mapping[str, Any] | None = None,
) -> MonteCarlo:
    """The distribution of ``target`` under lever and coefficient uncertainty.

    Levers vary when ``ranges`` (uniform over each range; a history DataFrame draws
    from observed changes) or ``distributions`` (frozen ``scipy.stats`` laws) are
    given; with ``params`` and a fitted tree, each draw also takes coefficients from
    their estimated distribution (:meth:`kpitree.FittedTree.sample_params`). Other
    levers stay at ``at`` (one state). ``samples`` holds the target and every drawn
    input per draw.
    """
    state = one_state(at)
    if not isinstance(n, int) or n < 2:
        raise OptionError(f"n must be an integer >= 2, got {n!r}", option="n")
    lever_seed, param_seed = np.random.SeedSequence(seed).spawn(2)
    columns: dict[str, Any] = {}
    if ranges is not None or distributions:
        levers = levers_of(tree, target)
        current = current_values(tree, state, levers)
        laws = marginals(tree, levers, current, ranges, distributions)
        uniform = np.random.default_rng(lever_seed).random((len(laws), n))
        columns |= {name: law.ppf(u) for (name, law), u in zip(laws.items(), uniform, strict=True)}
    drawn_params = params and bool(getattr(tree, "_fits", None))
    if drawn_params:
        draws = tree.sample_params(n, seed=int(param_seed.generate_state(1)[0]))  # type: ignore[attr-defined]
        columns |= {name: draws[name].to_numpy() for name in draws}
    if not columns:
        message = "nothing varies: give ranges or distributions, or a fitted tree with params=True"
        raise OptionError(message, option="ranges")
    given = dict(state.columns) | columns
    result = evaluate_columns(tree, given, (target,), n)[0]
    samples = pd.DataFrame({target: result} | columns)
    basis = {
        "levers": ", ".join(c for c in columns if c not in tree.parameters) or "fixed",
        "coefficients": "drawn" if drawn_params else "fixed",
        "state": _describe_state(at),
        "seed": seed,
    }
    return MonteCarlo(target, samples, basis)


# --- shared helpers -------------------------------------------------------------------


def levers_of(tree: Tree, target: str) -> tuple[str, ...]:
    """The inputs evaluating ``target`` reads, in the tree's order: its levers and, in a
    tree whose links are not fitted yet, the link nodes (read as inputs) instead of
    their predictors. Fitted coefficients are not included."""
    read = set(post_order((target,), tree.reads))
    return tuple(
        name
        for name in tree.nodes
        if name in read and name not in tree.parameters and tree.node(name).is_input
    )


def current_values(tree: Tree, state: Inputs, levers: Sequence[str]) -> dict[str, float]:
    """Each lever's value in ``state``; NaN for a lever with neither a value nor a baseline
    (an analysis that needs it, such as a relative range, says so)."""
    values = {}
    for name in levers:
        try:
            values[name] = float(state.values_for(tree, name))
        except DataError:
            values[name] = math.nan
            continue
        if math.isnan(values[name]):
            message = f"lever {name!r} has NaN in the state"
            raise DataError(message, node=name, column=name, rows=[state.index[0]], reason="nan")
    return values


def one_state(at: State) -> Inputs:
    """``at`` as one row of inputs; a DataFrame must have exactly one row."""
    if isinstance(at, pd.DataFrame):
        if len(at) != 1:
            message = (
                f"this analysis needs one state, and 'at' has {len(at)} rows: "
                "pass one row (e.g. history.iloc[-1]) or a mapping"
            )
            raise OptionError(message, option="at")
        at = at.iloc[0]
    frame = Inputs.from_user(at)
    if frame.n_rows != 1:
        raise OptionError("this analysis needs one state: 'at' holds arrays", option="at")
    return frame


def swing_states(tree: Tree, state: Inputs, lows: pd.Series, highs: pd.Series) -> Inputs:
    """Two rows per lever (its low, then its high), other inputs as in ``state``."""
    n = 2 * len(lows)
    columns = dict(state.columns)
    for i, name in enumerate(lows.index):
        column = np.full(n, float(state.values_for(tree, name)))
        column[2 * i], column[2 * i + 1] = lows[name], highs[name]
        columns[name] = column
    return Inputs(columns, pd.RangeIndex(n))


def _checked_inputs(tree: Tree, wrt: Sequence[str]) -> tuple[str, ...]:
    names = (wrt,) if isinstance(wrt, str) else tuple(wrt)
    for name in names:
        if name not in tree.parameters and not tree.node(name).is_input:
            message = f"wrt: {name!r} is computed; derivatives are taken with respect to inputs"
            raise OptionError(message, option="wrt")
    return names


def _raise_on_faults(gradient: Any, derivatives: np.ndarray, index: pd.Index) -> None:
    fault = check_faults(gradient, derivatives)
    if fault is not None:
        name, positions = fault
        rows = [index[int(p)] for p in positions[:5]]
        message = (
            f"the derivative of {gradient.target!r} with respect to {name!r} is not finite "
            f"at row(s) {rows} (a kink or a vertical tangent: sqrt or abs at 0, min/max ties?)"
        )
        raise DataError(message, node=name, rows=rows, reason="not finite")


def _owner(tree: Tree, name: str) -> str | None:
    return None if name in tree.parameters else tree.owner(name)


def _describe_state(at: State) -> str:
    if at is None:
        return "baselines"
    if isinstance(at, pd.DataFrame):
        return f"{len(at)} row(s) given" if len(at) > 1 else f"row {at.index[0]!r}"
    if isinstance(at, pd.Series) and at.name is not None:
        return f"row {at.name!r}"
    return "given values"


def _describe_ranges(ranges: RangeSpec, table: pd.DataFrame) -> str:
    if isinstance(ranges, pd.DataFrame):
        return f"history p10-p90 of period-over-period changes ({len(ranges)} periods)"
    bases = sorted(set(table["basis"]))
    return ", ".join(bases) if bases else "none"
