"""Synthetic KPI trees and a hand-written numpy baseline for benchmarks and tests.

A synthetic tree is a B2B revenue funnel replicated over ``regions x products`` and
summed to company totals. Each (region ``r``, product ``p``) cell has 13 levers and 11
computed nodes (24 nodes)::

    visits_r1_p1 = sns_r1_p1 + search_r1_p1 + ads_r1_p1 + referral_r1_p1
    leads_r1_p1 = visits_r1_p1 * request_rate_r1_p1
    mqls_r1_p1 = leads_r1_p1 * mql_rate_r1_p1
    sqls_r1_p1 = mqls_r1_p1 * sql_rate_r1_p1
    wins_r1_p1 = sqls_r1_p1 * win_rate_r1_p1
    new_revenue_r1_p1 = wins_r1_p1 * deal_size_r1_p1
    churned_r1_p1 = customers_r1_p1 * churn_rate_r1_p1
    recurring_r1_p1 = (customers_r1_p1 - churned_r1_p1) * arpa_r1_p1
    ending_customers_r1_p1 = customers_r1_p1 - churned_r1_p1 + wins_r1_p1
    expansion_r1_p1 = ending_customers_r1_p1 * arpa_r1_p1 * expansion_rate_r1_p1
    revenue_r1_p1 = new_revenue_r1_p1 + recurring_r1_p1 + expansion_r1_p1

then ``revenue_r1 = revenue_r1_p1 + revenue_r1_p2 + ...`` per region and
``revenue = revenue_r1 + revenue_r2 + ...``. A tree therefore has
``24 * regions * products + regions + 1`` nodes; :data:`SIZES` picks ~50, ~500 and
~5,000. Every computed node is an ancestor of ``revenue``.

The baseline is what a careful analyst would write by hand: one Python function with
one numpy statement per node in topological order (:func:`baseline_source`,
:func:`build_baseline`), called on blocks of rows so that the working set stays in
cache (:func:`run_baseline`). The spec text is our own synthetic output (names, ``+``,
``-``, ``*`` and parentheses only), so the generator may treat formula text as Python
after mapping every name to a local variable; it is never used on user input.

>>> spec = funnel_spec(1, 1)
>>> counts = node_counts(spec)
>>> (counts.levers, counts.computed, counts.total)
(13, 13, 26)
>>> base = build_baseline(spec)
>>> inputs = random_inputs(spec, 4, seed=0)
>>> out = run_baseline(base, inputs, 4, ["revenue"], block_rows=2)
>>> out["revenue"].shape
(4,)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "SIZES",
    "Baseline",
    "NodeCounts",
    "Spec",
    "baseline_source",
    "build_baseline",
    "funnel_spec",
    "lever_bounds",
    "node_counts",
    "random_inputs",
    "run_baseline",
    "run_baseline_whole",
]

#: size name -> (regions, products); node counts 51, 485 and 5,009
SIZES: dict[str, tuple[int, int]] = {
    "small": (2, 1),
    "medium": (4, 5),
    "large": (16, 13),
}

#: lever base name -> kind ("volume" or "rate"), in the order levers first appear
LEVERS: dict[str, str] = {
    "sns": "volume",
    "search": "volume",
    "ads": "volume",
    "referral": "volume",
    "request_rate": "rate",
    "mql_rate": "rate",
    "sql_rate": "rate",
    "win_rate": "rate",
    "deal_size": "volume",
    "customers": "volume",
    "churn_rate": "rate",
    "arpa": "volume",
    "expansion_rate": "rate",
}

#: kind -> (low, high) of uniformly drawn lever values
BOUNDS: dict[str, tuple[float, float]] = {"volume": (100.0, 10_000.0), "rate": (0.05, 0.6)}

_CELL = """\
visits{s} = sns{s} + search{s} + ads{s} + referral{s}
leads{s} = visits{s} * request_rate{s}
mqls{s} = leads{s} * mql_rate{s}
sqls{s} = mqls{s} * sql_rate{s}
wins{s} = sqls{s} * win_rate{s}
new_revenue{s} = wins{s} * deal_size{s}
churned{s} = customers{s} * churn_rate{s}
recurring{s} = (customers{s} - churned{s}) * arpa{s}
ending_customers{s} = customers{s} - churned{s} + wins{s}
expansion{s} = ending_customers{s} * arpa{s} * expansion_rate{s}
revenue{s} = new_revenue{s} + recurring{s} + expansion{s}
"""

_LINE = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*(.+?)\s*$")
_NAME = re.compile(r"[A-Za-z_]\w*")
_CELL_SUFFIX = re.compile(r"_r\d+_p\d+$")


def funnel_spec(regions: int, products: int) -> str:
    """Return the formula text (``name = formula`` per line) of a synthetic funnel tree.

    Args:
        regions: number of regions (at least 1).
        products: number of products per region (at least 1).

    Returns:
        Multi-line text, cells first, then region totals, then ``revenue`` last.
    """
    if regions < 1 or products < 1:
        raise ValueError("regions and products must be at least 1")
    lines: list[str] = []
    for r in range(1, regions + 1):
        for p in range(1, products + 1):
            lines.append(_CELL.format(s=f"_r{r}_p{p}").rstrip("\n"))
    for r in range(1, regions + 1):
        terms = " + ".join(f"revenue_r{r}_p{p}" for p in range(1, products + 1))
        lines.append(f"revenue_r{r} = {terms}")
    lines.append("revenue = " + " + ".join(f"revenue_r{r}" for r in range(1, regions + 1)))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Spec:
    """Parsed formula text: computed nodes with their formulas, and the levers.

    Attributes:
        formulas: ``(name, formula_text)`` pairs in the order of the text.
        levers: names used in formulas but never defined, in order of first use.
    """

    formulas: tuple[tuple[str, str], ...]
    levers: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Spec:
        """Parse ``name = formula`` lines (blank lines and ``#`` comments are skipped)."""
        formulas: list[tuple[str, str]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0]
            if not line.strip():
                continue
            match = _LINE.match(line)
            if match is None:
                raise ValueError(f"line {number}: expected 'name = formula', got {raw!r}")
            formulas.append((match.group(1), match.group(2)))
        defined = {name for name, _ in formulas}
        if len(defined) != len(formulas):
            raise ValueError("a node is defined twice")
        levers: dict[str, None] = {}
        for _, formula in formulas:
            for name in _NAME.findall(formula):
                if name not in defined:
                    levers.setdefault(name)
        return cls(tuple(formulas), tuple(levers))

    @property
    def computed(self) -> tuple[str, ...]:
        """Names of the computed (defined) nodes, in the order of the text."""
        return tuple(name for name, _ in self.formulas)

    @property
    def nodes(self) -> tuple[str, ...]:
        """All node names: levers, then computed nodes."""
        return self.levers + self.computed

    def topological_order(self) -> tuple[str, ...]:
        """Computed nodes ordered so that every node comes after all its inputs.

        Depth-first post-order, visiting nodes in the order of the text: a text that
        is already in topological order is kept as written (as a hand-written function
        would be), so each node's inputs were computed just before it.
        """
        formulas = dict(self.formulas)
        deps = {
            name: [dep for dep in _NAME.findall(formula) if dep in formulas]
            for name, formula in self.formulas
        }
        order: list[str] = []
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        for root in formulas:
            if state.get(root):
                continue
            stack = [(root, iter(deps[root]))]
            state[root] = 1
            while stack:
                node, children = stack[-1]
                for child in children:
                    seen = state.get(child)
                    if seen == 1:
                        raise ValueError(f"cycle through {child!r}")
                    if seen is None:
                        state[child] = 1
                        stack.append((child, iter(deps[child])))
                        break
                else:
                    stack.pop()
                    state[node] = 2
                    order.append(node)
        return tuple(order)


@dataclass(frozen=True)
class NodeCounts:
    """Node counts of a spec."""

    levers: int
    computed: int

    @property
    def total(self) -> int:
        """Levers plus computed nodes."""
        return self.levers + self.computed


def _as_spec(spec: str | Spec) -> Spec:
    return spec if isinstance(spec, Spec) else Spec.parse(spec)


def node_counts(spec: str | Spec) -> NodeCounts:
    """Count the levers and computed nodes of a spec."""
    parsed = _as_spec(spec)
    return NodeCounts(len(parsed.levers), len(parsed.computed))


def _lever_kind(name: str) -> str:
    base = _CELL_SUFFIX.sub("", name)
    return LEVERS.get(base, "rate" if base.endswith("rate") else "volume")


def lever_bounds(spec: str | Spec | Iterable[str]) -> dict[str, tuple[float, float]]:
    """Return lever name -> (low, high): rates in (0.05, 0.6), volumes in (100, 10,000).

    Args:
        spec: formula text, a :class:`Spec`, or an iterable of lever names.
    """
    levers = _levers_of(spec)
    return {name: BOUNDS[_lever_kind(name)] for name in levers}


def _levers_of(spec: str | Spec | Iterable[str]) -> tuple[str, ...]:
    if isinstance(spec, str):
        return Spec.parse(spec).levers
    if isinstance(spec, Spec):
        return spec.levers
    return tuple(spec)


def random_inputs(
    spec_or_levers: str | Spec | Iterable[str],
    n_rows: int,
    seed: int = 0,
    *,
    max_bytes: int = 2**31,
) -> dict[str, np.ndarray]:
    """Draw realistic positive lever values, uniform within :func:`lever_bounds`.

    When independent float64 arrays for every lever would take more than ``max_bytes``
    (a 5,000-node tree at 1e6 rows needs 21 GB), the levers of each kind become
    read-only windows, shifted by ``2**16 + 64`` rows each, into one shared buffer of
    draws. Every lever still has its own values at each row, and any block of at most
    65,536 rows touches disjoint memory for different levers, so blocked evaluation
    sees the working set it would see with independent arrays.

    Args:
        spec_or_levers: formula text, a :class:`Spec`, or lever names.
        n_rows: number of rows.
        seed: seed of :func:`numpy.random.default_rng`.
        max_bytes: memory above which levers share a buffer.

    Returns:
        Lever name -> contiguous float64 array of length ``n_rows``.
    """
    bounds = lever_bounds(spec_or_levers)
    rng = np.random.default_rng(seed)
    if len(bounds) * n_rows * 8 <= max_bytes:
        return {name: rng.uniform(lo, hi, n_rows) for name, (lo, hi) in bounds.items()}
    shift = 2**16 + 64
    inputs: dict[str, np.ndarray] = {}
    for lo, hi in BOUNDS.values():
        names = [name for name, bound in bounds.items() if bound == (lo, hi)]
        if not names:
            continue
        buffer = rng.uniform(lo, hi, n_rows + shift * (len(names) - 1))
        buffer.flags.writeable = False
        for i, name in enumerate(names):
            inputs[name] = buffer[i * shift : i * shift + n_rows]
    return {name: inputs[name] for name in bounds}


def _plan(
    parsed: Spec, outputs: Sequence[str] | None
) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...], list[tuple[str, str, list[str]]], int]:
    """Variables, outputs, order, (node, python expression, names to delete) steps, peak."""
    formulas = dict(parsed.formulas)
    variables = {node: f"v{i}" for i, node in enumerate(parsed.nodes)}
    order = parsed.topological_order()
    outs = tuple(order if outputs is None else outputs)
    unknown = [name for name in outs if name not in variables]
    if unknown:
        raise KeyError(f"unknown outputs: {unknown}")
    deps = {node: tuple(dict.fromkeys(_NAME.findall(formulas[node]))) for node in order}
    last_use: dict[str, int] = {}
    for i, node in enumerate(order):
        for dep in deps[node]:
            last_use[dep] = i
    keep = set(outs)

    def rename(match: re.Match[str]) -> str:
        return variables[match.group(0)]

    steps: list[tuple[str, str, list[str]]] = []
    live = peak = 0
    for i, node in enumerate(order):
        dead = [d for d in deps[node] if d in formulas and last_use[d] == i and d not in keep]
        live += 1
        peak = max(peak, live)
        live -= len(dead)
        steps.append((node, _NAME.sub(rename, formulas[node]), dead))
        if node not in keep and node not in last_use:
            steps[-1][2].append(node)  # computed for nothing: free at once
            live -= 1
    return variables, outs, order, steps, peak


def baseline_source(
    spec: str | Spec, outputs: Sequence[str] | None = None, name: str = "baseline"
) -> str:
    """Generate the source of the hand-written baseline function.

    The function takes the levers positionally (in :attr:`Spec.levers` order), computes
    one numpy statement per computed node in topological order, and returns the
    ``outputs`` (levers or computed nodes; default every computed node in topological
    order) as a tuple. Nodes are renamed to ``v0, v1, ...``. Like a careful hand-written
    function it drops each intermediate (``del``) right after its last use, so that
    memory is reused while still in cache instead of growing with the tree.
    """
    parsed = _as_spec(spec)
    variables, outs, _, steps, _ = _plan(parsed, outputs)
    params = ", ".join(variables[lever] for lever in parsed.levers)
    lines = [f"def {name}({params}):"]
    for node, expression, dead in steps:
        lines.append(f"    {variables[node]} = {expression}")
        if dead:
            lines.append("    del " + ", ".join(variables[d] for d in dead))
    lines.append(f"    return ({', '.join(variables[o] for o in outs)},)")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Baseline:
    """A compiled baseline function with its argument and result order.

    Attributes:
        func: ``func(*levers) -> tuple`` of :attr:`outputs`.
        levers: argument order.
        outputs: names of the returned values, in order.
        order: computed nodes in topological (evaluation) order.
        peak_live: most computed arrays alive at once (for memory estimates).
    """

    func: Callable[..., tuple[Any, ...]]
    levers: tuple[str, ...]
    outputs: tuple[str, ...]
    order: tuple[str, ...]
    peak_live: int

    def scalars(self, values: Mapping[str, float]) -> dict[str, float]:
        """Evaluate at scalar lever values; returns output name -> value."""
        results = self.func(*(values[lever] for lever in self.levers))
        return dict(zip(self.outputs, results, strict=True))


def build_baseline(spec: str | Spec, outputs: Sequence[str] | None = None) -> Baseline:
    """Generate, compile and return the baseline function of a spec (text to callable).

    Args:
        spec: formula text or a :class:`Spec`.
        outputs: names the function returns; default every computed node.
    """
    parsed = _as_spec(spec)
    _, outs, order, _, peak = _plan(parsed, outputs)
    source = baseline_source(parsed, outs)
    namespace: dict[str, Any] = {}
    exec(compile(source, "<kpitree-baseline>", "exec"), namespace)
    return Baseline(namespace["baseline"], parsed.levers, outs, order, peak)


def run_baseline(
    baseline: Baseline,
    inputs: Mapping[str, np.ndarray],
    n_rows: int,
    outputs: Sequence[str] | None = None,
    block_rows: int = 8192,
    out: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Evaluate the baseline on blocks of rows, writing outputs into preallocated rows.

    Args:
        baseline: from :func:`build_baseline`.
        inputs: lever name -> array of length ``n_rows``.
        n_rows: number of rows.
        outputs: names to keep, a subset of ``baseline.outputs`` (default all of them).
        block_rows: rows per call of the baseline function.
        out: optional preallocated ``(len(outputs), n_rows)`` float64 array.

    Returns:
        Output name -> row of ``out`` (a view).
    """
    names = baseline.outputs if outputs is None else tuple(outputs)
    index = {name: i for i, name in enumerate(baseline.outputs)}
    positions = [index[name] for name in names]
    if out is None:
        out = np.empty((len(names), n_rows))
    arrays = [inputs[lever] for lever in baseline.levers]
    func = baseline.func
    rows = list(zip(out, positions, strict=True))
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        results = func(*[a[start:stop] for a in arrays])
        for row, position in rows:
            row[start:stop] = results[position]
    return dict(zip(names, out, strict=True))


def run_baseline_whole(
    baseline: Baseline,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Evaluate the baseline once on whole arrays (no blocking); returns the outputs."""
    names = baseline.outputs if outputs is None else tuple(outputs)
    values = baseline.func(*(inputs[lever] for lever in baseline.levers))
    results = dict(zip(baseline.outputs, values, strict=True))
    return {name: results[name] for name in names}
