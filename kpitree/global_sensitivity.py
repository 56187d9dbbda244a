"""Global sensitivity: Sobol indices (streamed Saltelli design) and Morris screening.

:func:`sobol` computes the same first-order and total indices as SALib's
``sobol.sample`` + ``sobol.analyze`` (Saltelli 2010 estimators on the normalised
output, bootstrap confidence intervals), without ever building the ``N (D + 2) x D``
design: the base Sobol' sequence (``scipy.stats.qmc``, as SALib draws it) is
generated in blocks of rows, the tree is evaluated on the blocks of ``A`` and ``B``,
and each ``AB_i`` (``A`` with lever or group ``i`` taken from ``B``) is evaluated by
a small compiled kernel that recomputes only the nodes downstream of ``i``, reading
every other node's value from the ``A`` pass. Bootstrap resamples become one matrix
product per block. Memory is bounded by the block, whatever the number of levers.

:func:`morris` uses SALib's trajectory design and analysis, evaluated by kpitree.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas("y = 2 * a + b", baselines={"a": 1, "b": 1})
>>> result = sobol(tree, "y", ranges={"a": (0, 1), "b": (0, 1)}, n=1024, seed=7)
>>> result.to_frame()[["S1", "ST"]].round(2)  # analytic: 0.8 and 0.2
        S1    ST
lever
a     0.8  0.8
b     0.2  0.2
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm, qmc
from tqdm import tqdm  # text bars: no ipywidgets needed in notebooks

from .compile import CompiledTree, FaultError, compile_tree
from .errors import OptionError
from .evaluate import Inputs, evaluate_array, evaluate_columns
from .node import NO_OWNER
from .ranges import RangeSpec, lever_ranges, marginals
from .results import MorrisIndices, SobolIndices
from .sensitivity import State, current_values, levers_of, one_state
from .tree import Tree

__all__ = ["morris", "sobol"]

_BLOCK_VALUES = 1 << 23  # values of the A pass kept for one block of rows (64 MB)

Groups = str | Mapping[str, str] | None


def sobol(
    tree: Tree,
    target: str,
    *,
    at: State = None,
    ranges: RangeSpec = None,
    distributions: Mapping[str, Any] | None = None,
    n: int = 1024,
    groups: Groups = None,
    seed: int | None = None,
    num_resamples: int = 100,
    conf_level: float = 0.95,
    progress: bool = True,
) -> SobolIndices:
    """First-order and total Sobol indices of ``target`` for each lever (or group).

    Levers vary over ``ranges`` (uniformly; default ``"±10%"``; a history DataFrame
    draws from observed changes) or ``distributions`` (frozen ``scipy.stats`` laws);
    the others stay at ``at``. ``n`` (a power of two) is the base sample size: the
    analysis costs ``n (D + 2)`` evaluations for ``D`` levers or groups. ``groups`` is
    ``"owner"`` (team-level indices), a mapping lever -> group, or ``None``.
    Confidence intervals (``S1_conf``, ``ST_conf``: half-widths at ``conf_level``) come
    from ``num_resamples`` bootstrap resamples, as in SALib.
    """
    plan = _plan(tree, target, at, ranges, distributions, groups, n, progress)
    sampler = qmc.Sobol(d=2 * len(plan.levers), scramble=True, seed=seed)
    counts = _bootstrap_counts(n, num_resamples, seed)
    stats = _Accumulator(len(plan.units), n, num_resamples)
    block = _block_rows(n, len(plan.side))
    total = n * (len(plan.units) + 2)
    with tqdm(total=total, unit="eval", delay=1.0, disable=not progress, desc="sobol") as bar:
        for start in range(0, n, block):
            base = sampler.random(block)
            _run_block(plan, base, counts[start : start + block], stats, start, bar)
    table = stats.indices(norm.ppf(0.5 + conf_level / 2))
    table.index = pd.Index(plan.unit_names, name=_index_name(groups))
    if not plan.grouped:
        table.insert(0, "owner", [tree.owner(name) for name in plan.unit_names])
    order = np.argsort(-table["ST"].to_numpy(), kind="stable")
    basis = {
        "inputs": _describe_inputs(plan.laws),
        "n": n,
        "groups": _describe_groups(groups),
        "seed": seed,
        "intervals": f"{conf_level:.0%} bootstrap ({num_resamples} resamples)",
    }
    return SobolIndices(target, table.iloc[order], stats.variance(), total, basis)


def morris(
    tree: Tree,
    target: str,
    *,
    at: State = None,
    ranges: RangeSpec = None,
    n: int = 20,
    num_levels: int = 4,
    groups: Groups = None,
    seed: int | None = None,
    num_resamples: int = 1000,
    conf_level: float = 0.95,
) -> MorrisIndices:
    """Morris elementary effects of ``target`` over ``n`` trajectories (SALib design).

    Levers move over their ``ranges`` (as in :func:`kpitree.tornado`) on a grid of
    ``num_levels`` levels. The table holds ``mu``, ``mu_star`` (mean absolute effect,
    the screening measure) with its bootstrap ``mu_star_conf``, and ``sigma``
    (interactions and non-linearity), largest ``mu_star`` first.
    """
    from SALib.analyze import morris as analyze
    from SALib.sample import morris as sample

    state = one_state(at)
    levers = levers_of(tree, target)
    current = current_values(tree, state, levers)
    table = lever_ranges(tree, levers, current, ranges)
    names = list(table.index)
    unit_of = _units(tree, names, groups)
    problem: dict[str, Any] = {
        "num_vars": len(names),
        "names": names,
        "bounds": table[["low", "high"]].to_numpy().tolist(),
    }
    if groups is not None:
        problem["groups"] = [unit_of[name] for name in names]
    design = sample.sample(problem, n, num_levels=num_levels, seed=seed)
    columns = dict(state.columns) | {name: design[:, j] for j, name in enumerate(names)}
    output = evaluate_columns(tree, columns, (target,), len(design))[0]
    found = analyze.analyze(
        problem,
        design,
        output,
        num_resamples=num_resamples,
        conf_level=conf_level,
        num_levels=num_levels,
        seed=seed,
    )
    frame = pd.DataFrame({k: found[k] for k in ("mu", "mu_star", "mu_star_conf", "sigma")})
    frame.index = pd.Index(list(found["names"]), name=_index_name(groups))
    if groups is None:
        frame.insert(0, "owner", [tree.owner(name) for name in frame.index])
    order = np.argsort(-frame["mu_star"].to_numpy(), kind="stable")
    basis = {
        "ranges": ", ".join(sorted(set(table["basis"]))),
        "trajectories": n,
        "levels": num_levels,
        "groups": _describe_groups(groups),
        "seed": seed,
    }
    return MorrisIndices(target, frame.iloc[order], len(design), basis)


# --- the plan: what varies, and the kernel that recomputes each unit's effect -----------


@dataclass(frozen=True)
class _Plan:
    tree: Tree
    target: str
    state: Inputs
    levers: tuple[str, ...]  # levers that vary, in design column order
    laws: Mapping[str, Any]
    units: tuple[tuple[int, ...], ...]  # design columns moved together, per unit
    unit_names: tuple[str, ...]
    grouped: bool
    side: tuple[str, ...]  # nodes evaluated on A and read by the unit kernels
    kernels: tuple[CompiledTree, ...]


def _plan(
    tree: Tree,
    target: str,
    at: State,
    ranges: RangeSpec,
    distributions: Mapping[str, Any] | None,
    groups: Groups,
    n: int,
    progress: bool = False,
) -> _Plan:
    if isinstance(n, numbers.Integral):
        n = int(n)
    if not isinstance(n, int) or n < 2 or n & (n - 1):
        message = f"n must be a power of two >= 2 (Sobol' sequence balance), got {n!r}"
        raise OptionError(message, option="n")
    state = one_state(at)
    candidates = levers_of(tree, target)
    current = current_values(tree, state, candidates)
    laws = marginals(tree, candidates, current, ranges, distributions)
    levers = tuple(name for name in candidates if name in laws)
    if not levers:
        raise OptionError("no lever varies: give ranges or distributions", option="ranges")
    unit_of = _units(tree, levers, groups)
    members: dict[str, list[int]] = {}  # unit name -> design columns, by first appearance
    for j, lever in enumerate(levers):
        members.setdefault(unit_of[lever], []).append(j)
    names, units = tuple(members), tuple(tuple(columns) for columns in members.values())
    kernels, side = _unit_kernels(tree, target, levers, units, progress)
    return _Plan(tree, target, state, levers, laws, units, names, groups is not None, side, kernels)


def _units(tree: Tree, levers: Sequence[str], groups: Groups) -> dict[str, str]:
    if groups is None:
        return {name: name for name in levers}
    if groups == "owner":
        return {name: tree.owner(name) or NO_OWNER for name in levers}
    if isinstance(groups, Mapping):
        missing = [name for name in levers if name not in groups]
        if missing:
            message = f"groups: no group for lever(s) {missing}"
            raise OptionError(message, option="groups")
        return {name: str(groups[name]) for name in levers}
    message = f"groups must be 'owner', a mapping or None, not {groups!r}"
    raise OptionError(message, option="groups")


def _unit_kernels(
    tree: Tree,
    target: str,
    levers: tuple[str, ...],
    units: tuple[tuple[int, ...], ...],
    progress: bool,
) -> tuple[tuple[CompiledTree, ...], tuple[str, ...]]:
    """Per unit, the kernel recomputing only what its levers move; the nodes it reads."""
    upstream = set(tree.upstream(target)) | {target}
    computed = set(tree.computed)
    position = {name: i for i, name in enumerate(tree.nodes)}
    kernels, side = [], {target: None}
    bar = tqdm(units, unit="kernel", delay=1.0, disable=not progress, desc="sobol: compiling")
    for unit in bar:
        moved = {levers[j] for j in unit}
        affected = set().union(*(tree.downstream(name) for name in moved)) & upstream
        boundary = {c for name in affected for c in tree.reads(name)} - affected - moved
        fixed = frozenset(boundary & computed)
        kernels.append(compile_tree(tree, (target,), fixed=fixed))
        side.update(dict.fromkeys(sorted(fixed, key=position.__getitem__)))
    return tuple(kernels), tuple(side)


# --- evaluation, block by block ---------------------------------------------------------


def _run_block(
    plan: _Plan, base: np.ndarray, counts: np.ndarray, stats: _Accumulator, start: int, bar: Any
) -> None:
    rows = base.shape[0]
    index = pd.RangeIndex(start, start + rows)
    d = len(plan.levers)
    a_values = _transform(plan, base[:, :d])
    b_values = _transform(plan, base[:, d:])
    a_side = evaluate_array(plan.tree, _inputs(plan, a_values, index), plan.side)
    f_b = evaluate_array(plan.tree, _inputs(plan, b_values, index), (plan.target,))[0]
    known = dict(zip(plan.side, a_side, strict=True)) | a_values
    f_a = known[plan.target]
    f_ab = np.empty((len(plan.units), rows))
    for u, (unit, kernel) in enumerate(zip(plan.units, plan.kernels, strict=True)):
        moved = {plan.levers[j]: b_values[plan.levers[j]] for j in unit}
        f_ab[u] = _run_unit(plan, kernel, known, moved, index)
        bar.update(rows)
    bar.update(2 * rows)
    stats.add(f_a, f_b, f_ab, counts)


def _transform(plan: _Plan, uniform: np.ndarray) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(plan.laws[name].ppf(uniform[:, j]), dtype=np.float64)
        for j, name in enumerate(plan.levers)
    }


def _inputs(plan: _Plan, values: Mapping[str, np.ndarray], index: pd.Index) -> Inputs:
    return Inputs(dict(plan.state.columns) | dict(values), index)


def _run_unit(
    plan: _Plan,
    kernel: CompiledTree,
    known: Mapping[str, np.ndarray],
    moved: Mapping[str, np.ndarray],
    index: pd.Index,
) -> np.ndarray:
    """``f(AB_i)``: lever values of the unit from ``B``, everything else from the ``A`` pass."""
    values = [_value(plan, name, known, moved) for name in kernel.inputs]
    try:
        return kernel.run(values, len(index))[0]
    except FaultError:  # evaluate the full row states to name the node and rows
        levers = {name: _value(plan, name, known, moved) for name in plan.levers}
        evaluate_array(plan.tree, _inputs(plan, levers, index), (plan.target,))
        raise


def _value(
    plan: _Plan, name: str, known: Mapping[str, np.ndarray], moved: Mapping[str, np.ndarray]
) -> np.ndarray | float:
    if name in moved:
        return moved[name]
    if name in known:
        return known[name]
    return plan.state.values_for(plan.tree, name)


def _block_rows(n: int, side: int) -> int:
    rows = max(256, _BLOCK_VALUES // max(side, 1))
    return min(n, 1 << (rows.bit_length() - 1))  # a power of two dividing n


def _bootstrap_counts(n: int, resamples: int, seed: int | None) -> np.ndarray:
    """How often each row appears in each resample (SALib's resampling, as counts)."""
    draws = np.random.default_rng(seed).integers(n, size=(n, resamples))
    counts = np.zeros((n, resamples))
    for k in range(resamples):
        counts[:, k] = np.bincount(draws[:, k], minlength=n)
    return counts


class _Accumulator:
    """Sums over blocks from which the Saltelli (2010) estimators are finished."""

    def __init__(self, units: int, n: int, resamples: int) -> None:
        self.n = n
        self.f_a: list[np.ndarray] = []
        self.f_b: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.sum_ab = 0.0
        self.b_d = np.zeros(units)  # sum of f_B * (f_ABi - f_A)
        self.d = np.zeros(units)  # sum of (f_ABi - f_A)
        self.d2 = np.zeros(units)  # sum of (f_A - f_ABi)^2
        self.boot_b_d = np.zeros((units, resamples))
        self.boot_d = np.zeros((units, resamples))
        self.boot_d2 = np.zeros((units, resamples))

    def add(self, f_a: np.ndarray, f_b: np.ndarray, f_ab: np.ndarray, counts: np.ndarray) -> None:
        difference = f_ab - f_a
        product = f_b * difference
        squared = difference * difference
        self.f_a.append(f_a)
        self.f_b.append(f_b)
        self.counts.append(counts)
        self.sum_ab += float(f_ab.sum())
        self.b_d += product.sum(axis=1)
        self.d += difference.sum(axis=1)
        self.d2 += squared.sum(axis=1)
        self.boot_b_d += product @ counts
        self.boot_d += difference @ counts
        self.boot_d2 += squared @ counts

    def variance(self) -> float:
        return float(np.var(np.concatenate([*self.f_a, *self.f_b])))

    def indices(self, z: float) -> pd.DataFrame:
        f_a, f_b = np.concatenate(self.f_a), np.concatenate(self.f_b)
        counts = np.concatenate(self.counts)
        units = len(self.d)
        mean = (f_a.sum() + f_b.sum() + self.sum_ab) / (self.n * (units + 2))
        a, b = f_a - mean, f_b - mean  # SALib centres the output on its overall mean
        variance = np.var(np.concatenate([a, b]))
        with np.errstate(divide="ignore", invalid="ignore"):  # a constant target: zeros below
            first = (self.b_d - mean * self.d) / self.n / variance
            total = 0.5 * self.d2 / self.n / variance
            boot_variance = _resampled_variance(a, b, counts)
            boot_first = (self.boot_b_d - mean * self.boot_d) / self.n / boot_variance
            boot_total = 0.5 * self.boot_d2 / self.n / boot_variance
        if variance <= np.finfo(float).eps:
            first = total = np.zeros(units)
            boot_first = boot_total = np.zeros_like(self.boot_d)
        return pd.DataFrame(
            {
                "S1": first,
                "S1_conf": z * boot_first.std(axis=1, ddof=1),
                "ST": total,
                "ST_conf": z * boot_total.std(axis=1, ddof=1),
            }
        )


def _resampled_variance(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``var(concat(A[r], B[r]))`` for every resample ``r``, from row counts."""
    size = 2 * len(a)
    first = (a @ counts + b @ counts) / size
    second = (a * a @ counts + b * b @ counts) / size
    return second - first * first


def _describe_inputs(laws: Mapping[str, Any]) -> str:
    kinds = sorted({law.basis for law in laws.values()})
    return f"{len(laws)} levers: " + ", ".join(kinds)


def _index_name(groups: Groups) -> str:
    if groups is None:
        return "lever"
    return "team" if groups == "owner" else "group"


def _describe_groups(groups: Groups) -> str:
    if groups is None:
        return "none (one index per lever)"
    return "by owner (team)" if groups == "owner" else "given mapping"
