"""Benchmark the sensitivity engine against hand-written numpy and SALib.

Two parts, each side measured in the same run:

* **Elasticities.** ``kpitree.elasticities`` of ``revenue`` with respect to every lever
  of a synthetic funnel tree (:mod:`synthetic`) at 1e5 rows, against one evaluation
  of the same tree: ``kpitree.evaluate`` of the top node, ``kpitree.evaluate`` of
  every node, and the hand-written blocked numpy baseline of the top node. Before
  timing, derivatives are checked against central finite differences of the baseline.
  The gradient's one-time compilation (symbolic partials, code generation) is timed
  separately.
* **Sobol indices.** ``kpitree.sobol`` (first and total order, bootstrap intervals)
  against SALib's ``sobol.sample`` + the hand-written numpy model on the design +
  SALib's ``sobol.analyze``, at 17 and 255 levers, with the same seed so that both
  sides use the same design; the indices and intervals are checked equal (rtol 1e-9)
  before the ratio is reported. At 2,550 levers only kpitree runs (SALib's design
  would hold ``N (D + 2) x D`` = 170 GB at N = 8192).

Levers move ±10% around values from :func:`synthetic.random_inputs`. Run
``python benchmarks/bench_sensitivity.py`` (about 5 minutes on 2 cores, most of it
SALib's sampler at 255 levers); ``--quick`` for a smoke run, ``--n`` for the Sobol
base sample, ``--levers 17,255`` to select cases, ``--json PATH`` to save results.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from SALib.analyze import sobol as analyze
from SALib.sample import sobol as sample

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported
from synthetic import SIZES, build_baseline, funnel_spec, random_inputs, run_baseline
from timing import time_once

import kpitree
from kpitree.gradient import compile_gradient

TOP = "revenue"
ELASTICITY_TARGET = 3.0  # elasticities / one evaluation, at most (issue 4)
SOBOL_TARGET = 10.0  # SALib sample + model + analyze / kpitree.sobol, at least
RTOL = 1e-9


@dataclass
class Row:
    """One benchmark case."""

    part: str
    case: str
    kpitree_s: float
    reference: str
    reference_s: float | None
    ratio: float | None  # kpitree / reference (elasticities) or reference / kpitree (sobol)
    note: str = ""


def best(func: Callable[[], Any], repeats: int) -> float:
    return min(time_once(func) for _ in range(repeats))


# --- elasticities -----------------------------------------------------------------------


def bench_elasticities(size: str, rows: int, repeats: int) -> list[Row]:
    spec = funnel_spec(*SIZES[size])
    tree = kpitree.Tree.from_formulas(spec)
    inputs = random_inputs(spec, rows, seed=0)
    levers = kpitree.sensitivity.levers_of(tree, TOP)
    cold = time_once(lambda: compile_gradient(tree, TOP, levers))
    result = kpitree.elasticities(tree, TOP, at=inputs)
    _check_derivatives(spec, inputs, result, levers)
    baseline = build_baseline(spec, [TOP])
    block = 8192

    def elasticities() -> Any:
        return kpitree.elasticities(tree, TOP, at=inputs).derivatives

    timed = {
        "elasticities": elasticities,
        "evaluate top": lambda: kpitree.evaluate(tree, inputs, nodes=[TOP]),
        "evaluate all": lambda: kpitree.evaluate(tree, inputs),
        "numpy top": lambda: run_baseline(baseline, inputs, rows, [TOP], block_rows=block),
    }
    seconds = {name: best(func, repeats) for name, func in timed.items()}
    label = f"{size} ({len(tree.nodes)} nodes, {len(levers)} levers, {rows:,} rows)"
    own = seconds["elasticities"]
    rows_out = [
        Row("elasticities", label, own, reference, seconds[reference], own / seconds[reference])
        for reference in ("evaluate top", "evaluate all", "numpy top")
    ]
    rows_out[0].note = f"cold compile of the gradient {cold:.2f} s"
    return rows_out


def _check_derivatives(spec: str, inputs: dict, result: Any, levers: Sequence[str]) -> None:
    """Central finite differences of the baseline on a few levers and rows."""
    baseline = build_baseline(spec, [TOP])
    rows = 200
    sample = {name: np.asarray(v)[:rows] for name, v in inputs.items()}
    for name in list(levers)[:: max(1, len(levers) // 7)]:
        step = 1e-6 * np.abs(sample[name]) + 1e-9
        up = dict(sample, **{name: sample[name] + step})
        down = dict(sample, **{name: sample[name] - step})
        f_up = run_baseline(baseline, up, rows, [TOP], block_rows=rows)[TOP]
        f_down = run_baseline(baseline, down, rows, [TOP], block_rows=rows)[TOP]
        numeric = (f_up - f_down) / (2 * step)
        exact = result.derivatives[name].to_numpy()[:rows]
        np.testing.assert_allclose(exact, numeric, rtol=1e-5, atol=1e-6 * np.abs(exact).max())


# --- sobol ------------------------------------------------------------------------------


def sobol_spec(levers: int) -> str:
    """A funnel with ``levers // 13`` cells plus ``levers % 13`` additive levers."""
    cells, extra = divmod(levers, 13)
    lines = funnel_spec(cells, 1).splitlines()
    if extra:
        i = next(k for k, line in enumerate(lines) if line.strip().startswith(f"{TOP} ="))
        lines[i] += " + " + " + ".join(f"other_{k}" for k in range(extra))
    return "\n".join(lines)


def bench_sobol(levers: int, n: int, salib: bool, seed: int = 11) -> Row:
    spec = sobol_spec(levers)
    tree = kpitree.Tree.from_formulas(spec)
    names = kpitree.sensitivity.levers_of(tree, TOP)
    assert len(names) == levers, (len(names), levers)
    draws = random_inputs(spec, 1, seed=0)
    at = {name: float(np.ravel(draws.get(name, 1.0))[0]) for name in names}
    ranges = {name: (0.9 * at[name], 1.1 * at[name]) for name in names}
    result: dict[str, Any] = {}

    def ours() -> None:
        found = kpitree.sobol(tree, TOP, at=at, ranges=ranges, n=n, seed=seed, progress=False)
        result["kpitree"] = found.to_frame().loc[list(names)]

    seconds = time_once(ours)
    label = f"{levers:,} levers ({len(tree.nodes):,} nodes), N = {n:,}"
    evaluations = n * (levers + 2)
    if not salib:
        gigabytes = evaluations * levers * 8 / 1e9
        note = f"{evaluations:,} evaluations; SALib not run (its design: {gigabytes:,.0f} GB)"
        return Row("sobol", label, seconds, "SALib", None, None, note)
    parts: dict[str, float] = {}
    reference = time_once(lambda: _salib(spec, names, ranges, n, seed, parts, result))
    ours_table, theirs = result["kpitree"], result["salib"]
    for column in ("S1", "S1_conf", "ST", "ST_conf"):
        np.testing.assert_allclose(ours_table[column], theirs[column], rtol=RTOL, atol=1e-12)
    note = ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()) + "; indices equal (rtol 1e-9)"
    return Row("sobol", label, seconds, "SALib", reference, reference / seconds, note)


def _salib(
    spec: str,
    names: Sequence[str],
    ranges: dict,
    n: int,
    seed: int,
    parts: dict[str, float],
    result: dict[str, Any],
) -> None:
    problem = {"num_vars": len(names), "names": list(names), "bounds": [ranges[k] for k in names]}
    design: dict[str, Any] = {}
    parts["sample"] = time_once(
        lambda: design.update(x=sample.sample(problem, n, calc_second_order=False, seed=seed))
    )
    x = design["x"]
    baseline = build_baseline(spec, [TOP])
    columns = {name: x[:, j] for j, name in enumerate(names)}
    outputs: dict[str, Any] = {}
    parts["model"] = time_once(
        lambda: outputs.update(
            y=run_baseline(baseline, columns, len(x), [TOP], block_rows=8192)[TOP]
        )
    )
    found: dict[str, Any] = {}
    parts["analyze"] = time_once(
        lambda: found.update(
            s=analyze.analyze(problem, outputs["y"], calc_second_order=False, seed=seed)
        )
    )
    s = found["s"]
    result["salib"] = pd.DataFrame(
        {k: s[k] for k in ("S1", "S1_conf", "ST", "ST_conf")}, index=list(names)
    )


# --- report -----------------------------------------------------------------------------


def report(rows: Sequence[Row]) -> str:
    lines = [
        "| part | case | kpitree (s) | reference | reference (s) | ratio | note |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for row in rows:
        reference = "" if row.reference_s is None else f"{row.reference_s:.3f}"
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.part} | {row.case} | {row.kpitree_s:.3f} | {row.reference} | "
            f"{reference} | {ratio} | {row.note} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on small cases")
    parser.add_argument("--sizes", default="small,medium", help="elasticity tree sizes")
    parser.add_argument("--levers", default="17,255,2550", help="sobol lever counts")
    parser.add_argument("--n", type=int, default=8192, help="sobol base sample size")
    parser.add_argument("--rows", type=int, default=100_000, help="elasticity rows")
    parser.add_argument("--json", type=Path, help="save the results as JSON")
    args = parser.parse_args(argv)
    rows_count, repeats, n = args.rows, 5, args.n
    sizes, levers = args.sizes.split(","), [int(v) for v in args.levers.split(",")]
    if args.quick:
        rows_count, repeats, n, sizes, levers = 2_000, 1, 256, ["small"], [17]
    rows: list[Row] = []
    for size in sizes:
        rows += bench_elasticities(size, rows_count, repeats)
    for count in levers:
        rows.append(bench_sobol(count, n, salib=count <= 255))
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return rows


if __name__ == "__main__":
    main()
