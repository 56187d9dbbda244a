"""The evaluation benchmark still runs and still checks kpitree against its baseline.

Timings are never asserted here (benchmarks are run by hand); what is asserted is that
the hand-written baseline and kpitree agree, which the benchmark itself checks on every
case, and that the synthetic trees have the sizes the benchmark reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import kpitree

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_attribution
import bench_evaluate
import bench_fit
import bench_sensitivity
import synthetic


@pytest.mark.parametrize(("regions", "products", "total"), [(2, 1, 51), (4, 5, 485)])
def test_synthetic_trees_have_the_stated_sizes(regions: int, products: int, total: int) -> None:
    tree = kpitree.Tree.from_formulas(synthetic.funnel_spec(regions, products))
    assert len(tree.nodes) == total and tree.top == "revenue"


def test_baseline_agrees_with_kpitree_on_the_top_node() -> None:
    spec = synthetic.funnel_spec(2, 2)
    inputs = synthetic.random_inputs(spec, 1000, seed=3)
    baseline = synthetic.build_baseline(spec, ["revenue"])
    expected = synthetic.run_baseline(baseline, inputs, 1000, block_rows=256)["revenue"]
    got = kpitree.evaluate(kpitree.Tree.from_formulas(spec), inputs, nodes=["revenue"])
    np.testing.assert_allclose(got["revenue"], expected, rtol=1e-12)


def test_quick_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    results = bench_evaluate.main(["--quick", "--sizes", "small"])
    assert {r.case for r in results} == {"build", "top", "all", "what-if"}
    assert all(r.kpitree_s is not None and r.kpitree_s > 0 for r in results)
    assert "| small |" in capsys.readouterr().out


def test_quick_fitting_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # the benchmark asserts that kpitree's estimates and covariances equal statsmodels'
    bench_fit.main(["--quick", "--no-profile"])
    out = capsys.readouterr().out
    assert "| links | rows |" in out and "| 20 | 36 |" in out


def test_quick_sensitivity_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # the benchmark checks derivatives against finite differences of the hand-written
    # baseline, and Sobol indices and intervals against SALib on the same design
    rows = bench_sensitivity.main(["--quick"])
    assert [row.part for row in rows] == ["elasticities"] * 3 + ["sobol"]
    assert rows[-1].reference_s is not None and rows[-1].ratio is not None
    assert "| sobol | 17 levers (30 nodes), N = 256 |" in capsys.readouterr().out


def test_sobol_benchmark_trees_have_the_stated_lever_counts() -> None:
    for levers in (17, 255, 2550):
        tree = kpitree.Tree.from_formulas(bench_sensitivity.sobol_spec(levers))
        assert len(tree.levers) == levers and tree.top == "revenue"


def test_quick_attribution_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # the benchmark checks Shapley against brute-force enumeration (13 levers) first
    rows = bench_attribution.main(["--quick"])
    assert [row.method for row in rows] == ["shapley", "lmdi", "sequential"] * 2
    assert all(row.error < 1e-12 for row in rows)
    assert "Shapley vs brute-force enumeration" in capsys.readouterr().out
