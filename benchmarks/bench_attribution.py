"""Benchmark exact change attribution (kpitree.attribute) on synthetic funnel trees.

Cases (issue 5's targets in brackets):

* one pair of states on the ~50-node tree, each method [exact, under 0.1 s];
* 10,000 segment rows at once on the ~50-node tree [under 2 s];
* one pair on the ~500-node tree [under 1 s].

Before timing, the Shapley contributions of a one-cell tree (13 levers) are checked
against brute-force enumeration of its 8,192 coalitions, and every result is checked
to sum to the target's change. The reference column is the hand-written numpy baseline
evaluating the top node once on the same rows, for scale: Shapley by enumeration would
need ``2^levers`` such evaluations (``2^26`` on the ~50-node tree).

Run ``python benchmarks/bench_attribution.py`` (under a minute); ``--quick`` for a
smoke run.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported
from synthetic import SIZES, build_baseline, funnel_spec, random_inputs, run_baseline
from timing import time_once

import kpitree

TOP = "revenue"
METHODS = ("shapley", "lmdi", "sequential")


@dataclass
class Row:
    case: str
    method: str
    seconds: float
    target: float | None
    baseline_s: float
    error: float  # largest |sum of contributions - change| relative to the change


def _states(spec: str, rows: int) -> tuple[dict, dict]:
    before, after = random_inputs(spec, rows, seed=1), random_inputs(spec, rows, seed=2)
    if rows == 1:
        before = {k: float(np.ravel(v)[0]) for k, v in before.items()}
        after = {k: float(np.ravel(v)[0]) for k, v in after.items()}
    return before, after


def check_against_enumeration() -> float:
    """Largest |Shapley - brute force| over the 13 levers of one funnel cell."""
    spec = funnel_spec(1, 1)
    tree = kpitree.Tree.from_formulas(spec)
    before, after = _states(spec, 1)
    players = list(kpitree.attribute(tree, before, after).players)
    p = len(players)
    masks = np.arange(2**p)
    columns = {
        name: np.where((masks >> players.index(name)) & 1, after[name], before[name])
        if name in players
        else before[name]
        for name in before
    }
    values = kpitree.evaluate(tree, columns, nodes=[TOP])[TOP].to_numpy()
    counts = np.array([bin(m).count("1") for m in masks])
    weight = np.array([math.factorial(s) * math.factorial(p - s - 1) / math.factorial(p)
                       for s in range(p)])  # fmt: skip
    brute = []
    for j in range(p):
        without = masks[((masks >> j) & 1) == 0]
        brute.append(np.sum(weight[counts[without]] * (values[without | 1 << j] - values[without])))
    found = kpitree.attribute(tree, before, after).contributions[:, 0]
    return float(np.max(np.abs(found - np.array(brute))))


def bench(size: str, rows: int, target: float | None, repeats: int) -> list[Row]:
    spec = funnel_spec(*SIZES[size])
    tree = kpitree.Tree.from_formulas(spec)
    before, after = _states(spec, rows)
    baseline = build_baseline(spec, [TOP])
    columns = {k: np.broadcast_to(v, rows) for k, v in before.items()}
    baseline_s = min(
        time_once(lambda: run_baseline(baseline, columns, rows, [TOP], block_rows=8192))
        for _ in range(repeats)
    )
    label = f"{size} ({len(tree.nodes)} nodes, {len(tree.levers)} levers), {rows:,} row(s)"
    out = []
    for method in METHODS:
        result = kpitree.attribute(tree, before, after, method=method)  # warm (compiles)
        error = np.max(np.abs(result.contributions.sum(axis=0) - result.total))
        error /= max(float(np.max(np.abs(result.total))), 1e-300)
        seconds = min(
            time_once(lambda m=method: kpitree.attribute(tree, before, after, method=m))
            for _ in range(repeats)
        )
        out.append(Row(label, result.basis["method"], seconds, target, baseline_s, float(error)))
    return out


def report(rows: Sequence[Row]) -> str:
    lines = [
        "| case | method | kpitree (s) | target (s) | met | numpy top once (s) | sum error |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        target = "" if row.target is None else f"{row.target:g}"
        met = "" if row.target is None else ("yes" if row.seconds <= row.target else "NO")
        lines.append(
            f"| {row.case} | {row.method} | {row.seconds:.4f} | {target} | {met} | "
            f"{row.baseline_s:.5f} | {row.error:.1e} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on small cases")
    args = parser.parse_args(argv)
    difference = check_against_enumeration()
    assert difference < 1e-6, difference
    repeats = 1 if args.quick else 5
    cases = [("small", 1, 0.1), ("small", 200 if args.quick else 10_000, 2.0)]
    if not args.quick:
        cases.append(("medium", 1, 1.0))
    rows = [row for size, n, target in cases for row in bench(size, n, target, repeats)]
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"Shapley vs brute-force enumeration (13 levers): largest difference {difference:.1e}")
    print(report(rows))
    return rows


if __name__ == "__main__":
    main()
