"""Attribute the change of a target between two states exactly to its drivers.

Between ``before`` and ``after`` (periods, plan vs actual, segments), the change of the
target is split into contributions of the inputs that changed; they sum to the total
change to floating-point precision for every method:

- ``"shapley"``: the Shapley value of each input (order-independent); exact through
  the tree's sums and products (:mod:`kpitree.shapley`), sampled over permutations
  with standard errors where the structure does not allow it;
- ``"lmdi"``: log-mean Divisia (LMDI-I) at each product node, plain differences at
  each sum, the node's own Shapley split elsewhere, chained from the target down;
- ``"sequential"``: inputs switched to ``after`` one at a time in a given order.

For a fitted tree whose states include the observed values of fitted link nodes, each
such node's departure from its link (observed minus predicted) becomes an input of
its own, ``<node>__residual``: what "the mechanism changed" contributed, apart from
the change of its predictors.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas("revenue = customers * arpa",
...                                   owners={"customers": "Sales", "arpa": "Success"})
>>> change = attribute(tree, {"customers": 100, "arpa": 10}, {"customers": 120, "arpa": 11})
>>> change.to_frame()[["contribution", "share"]]
           contribution    share
input
customers         210.0  0.65625
arpa              110.0  0.34375
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd

from .change import RESIDUAL, Change, State, evaluate_node, prepare_change
from .compile import compile_tree
from .errors import OptionError
from .evaluate import evaluate_columns
from .node import NO_OWNER
from .results import Result, number_text
from .shapley import GameBuilder, NoExactPathError, shapley_values
from .syntax import Name, Product, Sum
from .tree import Tree, post_order

__all__ = ["Attribution", "attribute"]

Method = Literal["shapley", "lmdi", "sequential"]


def attribute(
    tree: Tree,
    before: State,
    after: State,
    *,
    target: str | None = None,
    method: Method = "shapley",
    order: Sequence[str] | None = None,
    segment: str | None = None,
    residuals: bool = True,
    n_permutations: int = 500,
    seed: int | None = 0,
) -> Attribution:
    """Split the change of ``target`` (default: the tree's top) from ``before`` to ``after``.

    States are mappings or Series (one state) or DataFrames (one row per period,
    segment or scenario; a single-row side is broadcast). With ``segment``, both
    DataFrames hold that column and rows are matched by it. ``order`` sets the order
    of ``"sequential"`` (default: the tree's input order). Shapley values that the
    tree's structure does not allow exactly are estimated from ``n_permutations``
    permutations (antithetic pairs), with standard errors in ``stderr``.
    """
    if method not in ("shapley", "lmdi", "sequential"):
        message = f"method must be 'shapley', 'lmdi' or 'sequential', not {method!r}"
        raise OptionError(message, option="method")
    change, mechanisms = prepare_change(tree, before, after, target, segment, residuals)
    if method == "sequential":
        contributions, stderr = _sequential(change, order), None
    elif method == "lmdi":
        contributions, stderr = _lmdi(change), None
    else:
        contributions, stderr, method = shapley_contributions(change, n_permutations, seed)
    return attribution_result(tree, change, contributions, stderr, method, mechanisms)


# --- methods --------------------------------------------------------------------------


def _sequential(change: Change, order: Sequence[str] | None) -> np.ndarray:
    players = list(change.players)
    if order is not None:
        unknown = [name for name in order if name not in change.inputs]
        if unknown:
            raise OptionError(f"order: {unknown} are not inputs of the target", option="order")
        players = [n for n in order if n in players] + [n for n in players if n not in order]
    n, p = len(change.index), len(players)
    states = {name: np.tile(change.before[name], p + 1) for name in change.inputs}
    for k, name in enumerate(players):
        states[name] = np.concatenate([np.tile(change.before[name], k + 1),
                                       np.tile(change.after[name], p - k)])  # fmt: skip
    path = evaluate_node(change.tree, change.target, states, n * (p + 1)).reshape(p + 1, n)
    steps = np.diff(path, axis=0)
    position = {name: k for k, name in enumerate(players)}
    return steps[[position[name] for name in change.players]]


def shapley_contributions(
    change: Change, n_permutations: int, seed: int | None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    n = len(change.index)
    builder = GameBuilder(change.tree, change.players, change.before, change.after, n)
    try:
        return shapley_values(builder.node(change.target)), None, "shapley"
    except NoExactPathError:
        return (*_sampled_shapley(change, n_permutations, seed), "shapley (sampled)")


def _sampled_shapley(
    change: Change, n_permutations: int, seed: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean marginal contributions over random permutations and their reversals."""
    rng = np.random.default_rng(seed)
    n, p = len(change.index), len(change.players)
    pairs = max(1, n_permutations // 2)
    draws = np.zeros((2 * pairs, p, n))
    for k in range(pairs):
        order = rng.permutation(p)
        for j, permutation in enumerate((order, order[::-1])):
            draws[2 * k + j] = _marginals(change, permutation)
    pair_means = 0.5 * (draws[0::2] + draws[1::2])
    stderr = pair_means.std(axis=0, ddof=1) / math.sqrt(pairs) if pairs > 1 else None
    return draws.mean(axis=0), stderr  # type: ignore[return-value]


def _marginals(change: Change, permutation: np.ndarray) -> np.ndarray:
    order = [change.players[i] for i in permutation]
    steps = _sequential(change, order)  # rows in change.players order
    return steps


def _lmdi(change: Change) -> np.ndarray:
    """LMDI at products, differences at sums, local Shapley elsewhere; chained top-down."""
    tree, n = change.tree, len(change.index)
    nodes = [m for m in post_order((change.target,), tree.reads) if m not in change.inputs]
    values = {}
    for side, inputs in (("before", change.before), ("after", change.after)):
        found = evaluate_columns(tree, inputs, nodes, n)
        values[side] = dict(zip(nodes, found, strict=True)) | dict(inputs)
    flow = {change.target: change.total.copy()}
    scales: dict[str, np.ndarray] = {}  # per node: target change per unit of its change
    for name in reversed(nodes):  # parents before children
        delta = values["after"][name] - values["before"][name]
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(delta != 0, flow.get(name, 0.0) / delta, 0.0)
        if name == change.target:
            scale = np.ones(n)  # the target's own split is the answer, even for no change
        elif not np.all(delta):  # unchanged here: inputs moving in offsetting directions
            readers = [p for p in tree.parents(name) if p in scales]  # keep their parts
            slope = sum(scales[p] * _slope(tree, p, name, values) for p in readers)
            scale = np.where(delta != 0, scale, slope)
        scales[name] = scale
        for child, part in _local_split(tree, name, values).items():
            flow[child] = flow.get(child, 0.0) + scale * part
    zeros = np.zeros(n)
    rows = [np.broadcast_to(flow.get(name, zeros), n) for name in change.players]
    return np.array(rows).reshape(len(rows), n)


def _slope(
    tree: Tree, parent: str, child: str, values: Mapping[str, Mapping[str, np.ndarray]]
) -> np.ndarray:
    """d parent / d child at the midpoint of the change (central difference): how an
    unchanged node passes on the offsetting parts of its inputs."""
    children = list(dict.fromkeys(tree.reads(parent)))
    mid = {c: (values["before"][c] + values["after"][c]) / 2 for c in children}
    compiled = compile_tree(tree, (parent,), fixed=frozenset(children) - set(tree.parameters))
    step = 1e-6 * np.maximum(np.abs(mid[child]), 1.0)
    ends = []
    for sign in (1.0, -1.0):
        shifted = dict(mid, **{child: mid[child] + sign * step})
        inputs = [shifted.get(c, tree.parameters.get(c)) for c in compiled.inputs]
        ends.append(compiled.run(inputs, len(step), check=False)[0])
    with np.errstate(all="ignore"):
        slope = (ends[0] - ends[1]) / (2 * step)
    return np.where(np.isfinite(slope), slope, 0.0)  # no slope: the parts cancel anyway


def _local_split(
    tree: Tree, name: str, values: Mapping[str, Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The change of ``name`` split exactly among the names its formula reads."""
    root = tree.node(name).formula.root  # type: ignore[union-attr]
    before, after = values["before"], values["after"]
    if isinstance(root, Sum) and all(isinstance(t, Name) for t in root.terms):
        split: dict[str, np.ndarray] = {}
        for term, sign in zip(root.terms, root.signs, strict=True):
            delta = after[term.name] - before[term.name]  # type: ignore[union-attr]
            split[term.name] = split.get(term.name, 0.0) + sign * delta  # type: ignore[union-attr]
        return split
    if isinstance(root, Product) and all(isinstance(f, Name) for f in root.factors):
        lmdi = _lmdi_product(root, before, after, name)
        if lmdi is not None:
            return lmdi
    children = list(dict.fromkeys(tree.reads(name)))
    changed = [c for c in children if np.any(before[c] != after[c])]
    local_before = {c: before[c] for c in children}
    local_after = {c: after[c] for c in children}
    n = len(before[name])
    game = GameBuilder(tree, changed, local_before, local_after, n).node(name)
    return dict(zip(changed, shapley_values(game), strict=True))


def _lmdi_product(
    root: Product, before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], name: str
) -> dict[str, np.ndarray] | None:
    """LMDI-I weights ``L(y1, y0) ln(x1 / x0)``; ``None`` unless every value is positive."""
    factors = [(f.name, -1.0 if d else 1.0) for f, d in zip(root.factors, root.divide, strict=True)]  # type: ignore[union-attr]
    names = [f for f, _ in factors] + [name]
    if not all(np.all(before[f] > 0) and np.all(after[f] > 0) for f in names):
        return None
    y0, y1 = before[name], after[name]
    logs = {}
    for factor, sign in factors:
        logs[factor] = logs.get(factor, 0.0) + sign * np.log(after[factor] / before[factor])
    # the log mean L(y1, y0) = (y1 - y0) / ln(y1 / y0), and its limit (y0 + y1) / 2 when
    # y barely moves (a difference of rounding errors would make it anything)
    ratio = np.log(y1) - np.log(y0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(np.abs(ratio) > 1e-9, (y1 - y0) / ratio, (y0 + y1) / 2)
    return {factor: mean * part for factor, part in logs.items()}


# --- the result -----------------------------------------------------------------------


def attribution_result(
    tree: Tree,
    change: Change,
    contributions: np.ndarray,
    stderr: np.ndarray | None,
    method: str,
    mechanisms: tuple[str, ...],
) -> Attribution:
    players = change.players
    shape = (len(players), len(change.index))
    owners = tuple(_owner(change.tree, name) for name in players)
    kinds = tuple("mechanism" if name.endswith(RESIDUAL) else "input" for name in players)
    basis = {
        "method": method,
        "target": change.target,
        "rows": len(change.index),
        "mechanism": ", ".join(mechanisms) if mechanisms else "none (no observed fitted links)",
    }
    return Attribution(
        target=change.target,
        index=change.index,
        players=players,
        owner_names=owners,
        kinds=kinds,
        before=np.array([change.before[n] for n in players]).reshape(shape),
        after=np.array([change.after[n] for n in players]).reshape(shape),
        contributions=np.asarray(contributions).reshape(shape),
        total=change.total,
        start=change.start,
        stderr=stderr,
        under=_dominators(change.tree, change.target, players),
        basis=basis,
    )


def _owner(tree: Tree, name: str) -> str:
    if name in tree.parameters:
        return NO_OWNER
    return tree.owner(name) or NO_OWNER


def _dominators(tree: Tree, target: str, players: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """For each input, the computed nodes every path from it to ``target`` goes through."""
    graph = nx.DiGraph()
    graph.add_node(target)
    for name in post_order((target,), tree.reads):
        graph.add_edges_from((name, child) for child in tree.reads(name))
    dominator = nx.immediate_dominators(graph, target)
    chains = {}
    for name in players:
        chain, node = [], dominator.get(name, target)
        while node != target:
            chain.append(node)
            node = dominator[node]
        chains[name] = (*chain, target)
    return chains


@dataclass(frozen=True, repr=False)
class Attribution(Result):
    """Contributions of each changed input to the change of ``target``, per row.

    ``contributions`` has one row per input (``players``) and one column per state
    pair; they sum to ``total`` exactly. :meth:`to_frame` is indexed by input for one
    pair (largest contribution first) and by ``(row, input)`` for several;
    :meth:`by_team`, :meth:`by_node` and :meth:`by_source` roll the contributions up.
    """

    target: str
    index: pd.Index
    players: tuple[str, ...]
    owner_names: tuple[str, ...]
    kinds: tuple[str, ...]
    before: np.ndarray = field(repr=False)
    after: np.ndarray = field(repr=False)
    contributions: np.ndarray = field(repr=False)
    total: np.ndarray = field(repr=False)
    start: np.ndarray = field(repr=False)
    stderr: np.ndarray | None = field(repr=False, default=None)
    under: Mapping[str, tuple[str, ...]] = field(repr=False, default_factory=dict)
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "waterfall"

    def to_frame(self) -> pd.DataFrame:
        rows = len(self.index)
        columns: dict[str, Any] = {
            "owner": np.repeat(np.array(self.owner_names, dtype=object), rows),
            "kind": np.repeat(np.array(self.kinds, dtype=object), rows),
            "before": self.before.ravel(),
            "after": self.after.ravel(),
            "change": (self.after - self.before).ravel(),
            "contribution": self.contributions.ravel(),
        }
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["share"] = (self.contributions / self.total).ravel()
        if self.stderr is not None:
            columns["stderr"] = self.stderr.ravel()
        if rows == 1:
            frame = pd.DataFrame(columns, index=pd.Index(list(self.players), name="input"))
            order = np.argsort(-np.abs(frame["contribution"].to_numpy()), kind="stable")
            return frame.iloc[order]
        index = pd.MultiIndex.from_product(
            [list(self.players), self.index], names=["input", self.index.name or "row"]
        )
        return (
            pd.DataFrame(columns, index=index).swaplevel().sort_index(level=0, sort_remaining=False)
        )

    def wide(self) -> pd.DataFrame:
        """Contributions as rows (state pairs) x inputs."""
        columns = pd.Index(list(self.players), name="input")
        return pd.DataFrame(self.contributions.T, index=self.index, columns=columns)

    def by_team(self) -> pd.DataFrame:
        """Contributions summed per owner team (rows x teams); mechanism changes apart."""
        labels = [
            f"{owner} (mechanism)" if kind == "mechanism" else owner
            for owner, kind in zip(self.owner_names, self.kinds, strict=True)
        ]
        grouped = self.wide().T.groupby(np.array(labels, dtype=object), sort=False).sum()
        return grouped.T.rename_axis(columns="team")

    def by_source(self) -> pd.DataFrame:
        """What came from the inputs' change and what from fitted nodes leaving their links."""
        kinds = np.array(self.kinds, dtype=object)
        return self.wide().T.groupby(kinds, sort=False).sum().T.rename_axis(columns="source")

    def by_node(self) -> pd.DataFrame:
        """Per computed node, the contributions of the inputs that reach the target only
        through it (its dominated inputs), rows x nodes; the target gets the total."""
        wide = self.wide()
        nodes: dict[str, np.ndarray] = {}
        for name in self.players:
            for node in self.under[name]:
                nodes[node] = nodes.get(node, 0.0) + wide[name].to_numpy()
        return pd.DataFrame(nodes, index=self.index).rename_axis(columns="node")

    def by_segment(self) -> pd.DataFrame:
        """Per row (segment), the total change and its split by team, largest change first."""
        frame = self.by_team()
        frame.insert(0, "total", self.total)
        return frame.iloc[np.argsort(-np.abs(self.total), kind="stable")]

    def title(self) -> str:
        rows = f" over {len(self.index)} rows" if len(self.index) > 1 else ""
        total = float(self.total.sum())
        sign = "+" if total >= 0 else "-"
        return (
            f"Attribution of the change of {self.target!r}{rows}: {sign}{number_text(abs(total))}"
        )
