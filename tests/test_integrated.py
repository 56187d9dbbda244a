"""The integrated KPI: known weights recovered, honest out-of-sample scores, exact formulas."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import kpitree
from kpitree.errors import DataError, OptionError
from kpitree.integrated import IntegratedKPI, fold_windows, integrated_kpi

DOCS = Path(__file__).resolve().parents[1] / "docs"
COMPONENTS = ["win_rate", "churn_rate", "nps"]
B2B_KPIS = ["mqls", "sql_rate", "win_rate", "churn_rate"]


def simulate(n: int = 400, horizon: int = 2, noise: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """revenue[t + horizon] = 100 + 3 z1 + 1 z2 + 0 z3 + noise, z standardised in sample.

    The z's are standardised exactly (ddof=1) over the rows that are fitted, so the true
    weights of the standardised components are 3/4, 1/4 and 0. churn_rate falls when z2
    rises: its sign is -1. nps is pure noise.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    fitted = z[: n - horizon]
    z[: n - horizon] = (fitted - fitted.mean(axis=0)) / fitted.std(axis=0, ddof=1)
    outcome = np.empty(n)
    outcome[:horizon] = rng.standard_normal(horizon)
    outcome[horizon:] = 3 * z[: n - horizon, 0] + z[: n - horizon, 1]
    outcome[horizon:] += noise * rng.standard_normal(n - horizon)
    columns = {"win_rate": 0.2 + 0.03 * z[:, 0], "churn_rate": 0.01 - 0.002 * z[:, 1]}
    columns |= {"nps": 30 + 5 * z[:, 2], "revenue": 100 + outcome}
    return pd.DataFrame(columns)


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return simulate()


@pytest.fixture(scope="module")
def result(synthetic) -> IntegratedKPI:
    return integrated_kpi(synthetic, COMPONENTS, "revenue", horizon=2)


@pytest.fixture(scope="module")
def b2b() -> tuple[kpitree.Tree, pd.DataFrame]:
    return kpitree.datasets.load_b2b(), kpitree.datasets.simulate_b2b()


# --- known values -------------------------------------------------------------------------


def test_simplex_recovers_the_true_weights(result):
    # Over 300 seeds at n = 400 and noise sd 1 the weights' sd was 0.011 (theory:
    # sd(w1) ~ noise / sqrt(n) * |beta| / sum(beta)**2 = 0.0099) and the largest error
    # 0.035, so 0.05 is about 4.5 sd: a real bias would fail, sampling noise does not.
    assert result.weights.to_numpy() == pytest.approx([0.75, 0.25, 0.0], abs=0.05)
    assert result.weights.sum() == pytest.approx(1.0)
    assert (result.weights >= 0).all()


def test_a_negatively_related_component_gets_sign_minus_one(result):
    assert result.signs[["win_rate", "churn_rate"]].tolist() == [1, -1]
    assert result.means["churn_rate"] == pytest.approx(0.01)
    assert result.stds["churn_rate"] == pytest.approx(0.002)


def test_out_of_sample_r2_ranks_the_models_honestly(result):
    oos = result.oos_r2
    assert oos.index.tolist() == [
        "simplex",
        "equal weights",
        "single: win_rate",
        "single: churn_rate",
        "single: nps",
    ]
    # the truth explains 10 / 11 of the variance; equal weights put 1/3 on noise
    assert oos["simplex"] == pytest.approx(10 / 11, abs=0.03)
    assert oos["simplex"] > oos["equal weights"] + 0.3
    assert oos["simplex"] > oos["single: win_rate"] > oos["single: churn_rate"]
    assert oos["single: nps"] < 0.01  # pure noise: no better than the training mean


def test_oos_r2_is_pooled_one_minus_sse_over_sst(result):
    p = result.predictions
    sst = ((p["outcome"] - p["training mean"]) ** 2).sum()
    for model in result.oos_r2.index:
        sse = ((p["outcome"] - p[model]) ** 2).sum()
        assert result.oos_r2[model] == pytest.approx(1 - sse / sst, rel=1e-12)


def test_in_sample_fit_is_the_regression_of_the_outcome_on_the_index(synthetic, result):
    index = result.index.to_numpy()[:-2]
    future = synthetic["revenue"].to_numpy()[2:]
    slope, intercept = np.polyfit(index, future, 1)
    assert result.fit.to_dict() == pytest.approx({"intercept": intercept, "slope": slope})
    assert result.in_sample_r2 == pytest.approx(np.corrcoef(index, future)[0, 1] ** 2)


def test_index_is_the_weighted_signed_z_score(synthetic, result):
    z = (synthetic[COMPONENTS] - result.means) / result.stds * result.signs
    assert np.allclose(result.index, z @ result.weights, atol=1e-12)


def test_pls_on_one_component_has_weight_one(synthetic):
    for column in ("win_rate", "churn_rate"):
        pls = integrated_kpi(synthetic, [column], "revenue", method="pls", horizon=2)
        assert pls.weights.tolist() == [1.0]


def test_pls_weights_are_proportional_to_the_covariances(synthetic):
    data = synthetic.copy()
    data["nps"] += 40 * data["win_rate"]  # correlated components
    pls = integrated_kpi(data, COMPONENTS, "revenue", method="pls")
    # independently: for z-scores and a centred outcome, Z'y is proportional to each
    # component's correlation with the outcome, |corr| after orientation by its sign
    corr = np.array([np.corrcoef(data[c], data["revenue"])[0, 1] for c in COMPONENTS])
    assert pls.weights.to_numpy() == pytest.approx(np.abs(corr) / np.abs(corr).sum(), rel=1e-9)
    assert pls.signs.tolist() == np.sign(corr).astype(int).tolist()


def test_equal_method_gives_the_benchmark(synthetic):
    equal = integrated_kpi(synthetic, COMPONENTS, "revenue", method="equal", horizon=2)
    assert equal.weights.tolist() == [1 / 3] * 3
    assert equal.oos_r2["equal"] == equal.oos_r2["equal weights"]


# --- the formula and the tree -------------------------------------------------------------


def _round_trip_error(kpi: IntegratedKPI, tree: kpitree.Tree, data: pd.DataFrame) -> float:
    with_node = kpi.add_to(tree)
    values = kpitree.evaluate(with_node, data, nodes=[kpi.name])[kpi.name]
    return float(np.abs(values.to_numpy() - kpi.index.to_numpy()).max())


def test_formula_round_trip_reproduces_the_index(synthetic, result):
    tree = kpitree.Tree.from_formulas("revenue = win_rate * 1000 + nps")
    assert _round_trip_error(result, tree, synthetic) <= 1e-12
    node = result.add_to(tree).node("integrated_kpi")
    assert node.formula.names == ("win_rate", "churn_rate", "nps")
    assert "predicting revenue 2 period(s) ahead" in node.description


def test_formula_round_trip_with_negative_weights_and_means(synthetic):
    data = synthetic.assign(nps=synthetic["nps"] - 100)  # negative mean
    signs = {"win_rate": -1}  # against the data: PLS gives it a negative weight
    pls = integrated_kpi(data, COMPONENTS, "revenue", method="pls", signs=signs)
    assert pls.weights["win_rate"] < 0 and pls.means["nps"] < 0
    assert np.abs(pls.weights).sum() == pytest.approx(1.0)
    tree = kpitree.Tree.from_formulas("x = nps * 2")
    assert _round_trip_error(pls, tree, data) <= 1e-12


def test_bundled_company(b2b):
    company, history = b2b
    kpi = integrated_kpi(history, B2B_KPIS, "revenue", horizon=1, tree=company)
    teams = ["Marketing", "Inside Sales", "Field Sales", "Customer Success"]
    assert kpi.teams.tolist() == teams
    assert kpi.team_weights.index.tolist() == teams
    assert kpi.team_weights.sum() == pytest.approx(1.0)
    assert kpi.team_weights.to_dict() == kpi.weights.groupby(kpi.teams).sum().to_dict()
    assert kpi.index.index.equals(history.index) and len(kpi.predictions) == 25
    assert kpi.oos_r2["simplex"] > kpi.oos_r2["equal weights"]
    # the tree recomputes mqls from its levers: the identities hold, so the node agrees
    assert _round_trip_error(kpi, company, history) <= 1e-12
    relabelled = integrated_kpi(
        history, B2B_KPIS, "revenue", horizon=1, tree=company, owners={"mqls": "Demand Generation"}
    )
    assert relabelled.teams["mqls"] == "Demand Generation"
    assert integrated_kpi(history, B2B_KPIS, "revenue").teams.unique().tolist() == ["(no owner)"]


# --- no lookahead ---------------------------------------------------------------------------


def _first_fold(data: pd.DataFrame, horizon: int = 2) -> pd.DataFrame:
    kpi = integrated_kpi(data, COMPONENTS, "revenue", horizon=horizon, folds=4)
    first = kpi.predictions[kpi.predictions["fold"] == 0]
    return first.drop(columns="outcome")


def test_no_lookahead_the_last_row_changes_no_earlier_forecast(synthetic):
    before = _first_fold(synthetic)
    changed = synthetic.copy()
    changed.loc[changed.index[-1], "revenue"] += 1e6
    pd.testing.assert_frame_equal(_first_fold(changed), before)


def test_no_lookahead_outcomes_in_the_forecast_gap_are_not_trained_on(synthetic):
    # usable rows 398, horizon 2: the first test block starts at row `start`; the last
    # training row is start - 3, whose target is the outcome of row start - 1.
    train_end, start, _ = fold_windows(398, horizon=2, folds=4, first=5)[0]
    assert train_end == start - 2
    before = _first_fold(synthetic)
    for row, moves in ((start, False), (start + 1, False), (start - 1, True)):
        changed = synthetic.copy()
        changed.loc[row, "revenue"] += 1e6  # an outcome known only at `row`
        changed.loc[start, "win_rate"] += 1.0  # the block's own KPIs never train
        after = _first_fold(changed)
        same = np.allclose(after["simplex"].drop(start), before["simplex"].drop(start))
        assert same != moves, row


def test_fold_windows():
    assert fold_windows(12, horizon=0, folds=3) == [(3, 3, 6), (6, 6, 9), (9, 9, 12)]
    windows = fold_windows(35, horizon=1, folds=5, first=6)
    assert [end - start for _, start, end in windows] == [5] * 5
    assert windows[0][0] >= 6 and windows[-1][2] == 35


# --- bad input ------------------------------------------------------------------------------


def _with(data: pd.DataFrame, column: str, rows: list[int], value: object) -> pd.DataFrame:
    changed = data.copy()
    changed[column] = changed[column].astype(object if isinstance(value, str) else float)
    changed.loc[rows, column] = value
    return changed


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        (lambda d: d.drop(columns="nps"), "nps", "missing"),
        (lambda d: d.drop(columns="revenue"), "revenue", "missing"),
        (lambda d: _with(d, "win_rate", [3, 7], np.nan), "win_rate", "nan"),
        (lambda d: _with(d, "revenue", [5], np.inf), "revenue", "nan"),
        (lambda d: _with(d, "nps", [1], "high"), "nps", "not numeric"),
        (lambda d: d.assign(nps=7.0), "nps", "constant"),
        (lambda d: d.assign(revenue=1.0), "revenue", "constant"),
        (lambda d: _with(d, "nps", list(range(100)), 7.0), "nps", "constant"),
    ],
)
def test_bad_data_names_the_column(synthetic, change, column, reason):
    with pytest.raises(DataError) as caught:
        integrated_kpi(change(synthetic), COMPONENTS, "revenue", horizon=2)
    assert (caught.value.column, caught.value.reason) == (column, reason)
    if reason == "nan":
        assert caught.value.rows == ([3, 7] if column == "win_rate" else [5])


def test_too_few_rows_says_how_many_are_needed(synthetic):
    # 3 components: 5 training rows, a gap of 2, 4 test rows, 2 rows without an outcome
    small = synthetic.iloc[:12]
    with pytest.raises(DataError, match=r"12 rows are too few .* at least 13 are needed"):
        integrated_kpi(small, COMPONENTS, "revenue", horizon=2, folds=4)
    assert integrated_kpi(synthetic.iloc[:13], COMPONENTS, "revenue", horizon=2, folds=4)
    with pytest.raises(DataError, match="must be a DataFrame") as caught:
        integrated_kpi(synthetic.to_dict(), COMPONENTS, "revenue")
    assert caught.value.reason == "not a table"


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("method", {"method": "lasso"}),
        ("horizon", {"horizon": -1}),
        ("horizon", {"horizon": 1.5}),
        ("horizon", {"horizon": True}),
        ("folds", {"folds": 0}),
        ("signs", {"signs": {"nps": 2}}),
        ("signs", {"signs": {"ebitda": 1}}),
        ("signs", {"signs": [1, -1, 1]}),
        ("components", {"components": []}),
        ("components", {"components": "nps"}),
        ("components", {"components": ["nps", "nps"]}),
        ("outcome", {"components": ["nps", "revenue"]}),
        ("name", {"name": "nps"}),
        ("name", {"name": "integrated kpi"}),
        ("tree", {"tree": "B2B company"}),
        ("owners", {"owners": ["Marketing"]}),
    ],
)
def test_bad_options_name_the_option(synthetic, option, kwargs):
    arguments = {"components": COMPONENTS, **kwargs}
    with pytest.raises(OptionError) as caught:
        integrated_kpi(synthetic, outcome="revenue", **arguments)
    assert caught.value.option == option


def test_add_to_needs_a_tree(result):
    with pytest.raises(OptionError) as caught:
        result.add_to("revenue = a + b")
    assert caught.value.option == "tree"


# --- display --------------------------------------------------------------------------------


def test_to_frame_keeps_numbers_numbers(result):
    frame = result.to_frame()
    assert frame.columns.tolist() == ["sign", "weight", "team", "mean", "std", "oos_r2"]
    assert frame.index.name == "component"
    assert frame["sign"].dtype.kind == "i" and frame["weight"].dtype.kind == "f"
    assert frame.loc["nps", "oos_r2"] == result.oos_r2["single: nps"]


def test_summary_html_and_plot(result):
    text = repr(result)
    assert text == result.summary() and "out-of-sample R² 0.9" in text
    assert "team weights: (no owner) 1.00" in text
    html = result._repr_html_()
    assert html.startswith('<div class="kpitree">') and "churn_rate" in html
    ax = result.plot()
    assert len(ax.patches) == 3 and "out-of-sample" in ax.get_title()
    plt.close("all")


def test_matplotlib_is_imported_only_inside_plot():
    module = ast.parse(Path(kpitree.integrated.__file__).read_text(encoding="utf-8"))
    top = [node for node in module.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert top and not any("matplotlib" in ast.unparse(node) for node in top)
    (plot,) = [f for f in ast.walk(module) if isinstance(f, ast.FunctionDef) and f.name == "plot"]
    assert "import matplotlib.pyplot as plt" in ast.unparse(plot)


# --- the documentation page -----------------------------------------------------------------

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def test_docs_page_runs_and_prints_what_it_says(tmp_path, monkeypatch):
    text = (DOCS / "integrated-kpi.md").read_text(encoding="utf-8")
    fences = list(_FENCE.finditer(text))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for fence, after in zip(fences, [*fences[1:], None], strict=True):
        if fence["lang"] != "python":
            continue
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(fence["body"], f"integrated-kpi.md block {ran}", "exec"), namespace)
        ran += 1
        if after is not None and after["lang"] == "text":
            assert _lines(printed.getvalue()) == _lines(after["body"]), f"block {ran}"
    assert ran >= 4
    plt.close("all")


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]
