"""Result objects from the real analyses: tables, text, HTML and plots from the same numbers."""

from __future__ import annotations

import html

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.axes import Axes

import kpitree
from kpitree import Tree
from kpitree.results import Result

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# owners with characters HTML must escape
OWNERS = {"visits": "Growth & <Ads>", "rate": "Sales", "deal_size": "Sales", "churn": 'CS "1"'}


@pytest.fixture(scope="module")
def tree() -> Tree:
    return Tree.from_formulas(
        """
        revenue = wins * deal_size * (1 - churn)
        wins = visits * rate
        """,
        baselines={"visits": 1000.0, "rate": 0.1, "deal_size": 50.0, "churn": 0.2},
        owners=OWNERS,
        bounds={"rate": (0, 1), "churn": (0, 1)},
    )


@pytest.fixture(autouse=True)
def _close_figures() -> None:
    yield
    plt.close("all")


def analyses(tree: Tree) -> dict[str, Result]:
    return {
        "elasticities": kpitree.elasticities(tree, "revenue"),
        "tornado": kpitree.tornado(
            tree, "revenue", ranges={"rate": (0.05, 0.2), "churn": "±50%", "visits": "±10%"}
        ),
        "sobol": kpitree.sobol(tree, "revenue", n=256, seed=3, progress=False),
        "sobol by team": kpitree.sobol(
            tree, "revenue", n=256, seed=3, groups="owner", progress=False
        ),
        "morris": kpitree.morris(tree, "revenue", n=10, seed=2),
        "monte carlo": kpitree.monte_carlo(tree, "revenue", n=1000, seed=4, ranges="±20%"),
        "teams": kpitree.rank_teams(
            tree, "revenue", costs={"visits": 3.0, "rate": 1.0, "deal_size": 2.0, "churn": 4.0}
        ),
        "teams by sobol": kpitree.rank_teams(
            tree, "revenue", method="sobol", n=256, progress=False
        ),
    }


COLUMNS = {
    "elasticities": ["owner", "value", "derivative", "elasticity"],
    "tornado": ["owner", "low", "high", "target_low", "target_high", "swing", "basis"],
    "sobol": ["owner", "S1", "S1_conf", "ST", "ST_conf"],
    "sobol by team": ["S1", "S1_conf", "ST", "ST_conf"],
    "morris": ["owner", "mu", "mu_star", "mu_star_conf", "sigma"],
    "monte carlo": ["revenue"],
    "teams": [
        "impact",
        "impact_pct",
        "share",
        "rank",
        "ci_low",
        "ci_high",
        "p_first",
        "n_levers",
        "cost",
        "impact_per_cost",
    ],
    "teams by sobol": [
        "impact",
        "impact_pct",
        "share",
        "rank",
        "ci_low",
        "ci_high",
        "p_first",
        "n_levers",
    ],
}
TITLES = {
    "elasticities": "Elasticities of 'revenue'",
    "tornado": "Tornado of 'revenue' (at 4000)",
    "sobol": "Sobol indices of 'revenue' (1,536 evaluations, variance ",
    "sobol by team": "Sobol indices of 'revenue' (1,280 evaluations, variance ",
    "morris": "Morris screening of 'revenue' (50 evaluations)",
    "monte carlo": "Monte Carlo of 'revenue' (1,000 draws)",
    "teams": "Teams ranked by their levers' impact on 'revenue'",
    "teams by sobol": "Teams ranked by their levers' impact on 'revenue'",
}
KINDS = list(COLUMNS)


@pytest.fixture(scope="module")
def results(tree: Tree) -> dict[str, Result]:
    return analyses(tree)


@pytest.mark.parametrize("kind", KINDS)
def test_to_frame_has_the_documented_columns_and_is_a_copy(
    results: dict[str, Result], kind: str
) -> None:
    result = results[kind]
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == COLUMNS[kind]
    assert len(frame) > 0
    numeric = frame.select_dtypes("number").columns[0]
    frame[numeric] = -12345.0  # the result keeps its own table
    assert not (result.to_frame()[numeric] == -12345.0).any()


@pytest.mark.parametrize("kind", KINDS)
def test_summary_and_repr_show_title_basis_and_table(results: dict[str, Result], kind: str) -> None:
    result = results[kind]
    text = result.summary()
    assert repr(result) == text
    title = result.title()
    assert title.startswith(TITLES[kind])
    assert text.splitlines()[0] == title
    assert result.basis, kind
    for key, value in result.basis.items():
        assert f"  {key}: {value}" in text
    frame = result.to_frame()
    first = frame.index[0]
    assert str(first if not isinstance(first, tuple) else first[-1]) in text
    for column in frame.columns:
        assert str(column) in text


@pytest.mark.parametrize("kind", KINDS)
def test_html_is_escaped_and_has_the_caption(results: dict[str, Result], kind: str) -> None:
    result = results[kind]
    page = result._repr_html_()
    caption = result.title() + " | " + "; ".join(f"{k}: {v}" for k, v in result.basis.items())
    assert f">{html.escape(caption)}</caption>" in page
    assert "<table" in page and page.count("<tr") == len(result.to_frame()) + 1
    assert "'revenue'" not in page and "&#x27;revenue&#x27;" in page  # quotes escaped
    assert "<Ads>" not in page and '"1"' not in page
    assert f"<th>{html.escape(str(result.to_frame().index[0]))}</th>" in page


def test_html_escapes_team_names_in_cells(results: dict[str, Result]) -> None:
    page = results["elasticities"]._repr_html_()
    assert "<td>Growth &amp; &lt;Ads&gt;</td>" in page
    assert "<td>CS &quot;1&quot;</td>" in page
    teams = results["teams"]._repr_html_()
    assert "<th>Growth &amp; &lt;Ads&gt;</th>" in teams


@pytest.mark.parametrize("kind", KINDS)
def test_plot_returns_axes(results: dict[str, Result], kind: str) -> None:
    ax = results[kind].plot()
    assert isinstance(ax, Axes)
    assert ax.get_title() or ax.get_xlabel()
    _, given_ax = plt.subplots()
    assert results[kind].plot(ax=given_ax) is given_ax


# --- numbers are the engine's, unrounded ------------------------------------------------


def test_elasticities_frame_equals_the_arrays(results: dict[str, Result], tree: Tree) -> None:
    result = results["elasticities"]
    assert isinstance(result, kpitree.Elasticities)
    frame = result.to_frame()
    levers = list(result.levers)
    derivative = dict(zip(levers, result.derivative_array[:, 0], strict=True))
    # revenue = visits rate deal_size (1 - churn) = 4000: derivatives by hand
    assert derivative == pytest.approx(
        {"visits": 4.0, "rate": 40_000.0, "deal_size": 80.0, "churn": -5_000.0}, rel=1e-14
    )
    for lever in levers:
        assert frame.loc[lever, "derivative"] == derivative[lever]  # exact, not rounded
        assert frame.loc[lever, "value"] == tree.node(lever).baseline
        expected = derivative[lever] * tree.node(lever).baseline / 4000.0
        assert frame.loc[lever, "elasticity"] == pytest.approx(expected, rel=1e-14)
        assert frame.loc[lever, "owner"] == OWNERS[lever]
    assert frame.loc["churn", "elasticity"] == pytest.approx(-0.25)
    magnitudes = frame["elasticity"].abs().to_numpy()
    assert (np.diff(magnitudes) <= 0).all()


@settings(max_examples=20, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.floats(1, 1e5), st.floats(0.01, 0.99), st.floats(1, 1e4), st.floats(0, 0.9)),
        min_size=2,
        max_size=6,
    )
)
def test_elasticities_over_several_rows(tree: Tree, rows: list[tuple[float, ...]]) -> None:
    at = pd.DataFrame(rows, columns=["visits", "rate", "deal_size", "churn"])
    at.index = pd.Index([f"m{i}" for i in range(len(at))], name="month")
    result = kpitree.elasticities(tree, "revenue", at=at)
    frame = result.to_frame()
    assert isinstance(frame.index, pd.MultiIndex)
    assert frame.index.names == ["month", "lever"]
    assert list(frame.index) == [(m, lever) for m in at.index for lever in result.levers]
    revenue = at["visits"] * at["rate"] * at["deal_size"] * (1 - at["churn"])
    by_hand = {
        "visits": at["rate"] * at["deal_size"] * (1 - at["churn"]),
        "rate": at["visits"] * at["deal_size"] * (1 - at["churn"]),
        "deal_size": at["visits"] * at["rate"] * (1 - at["churn"]),
        "churn": -at["visits"] * at["rate"] * at["deal_size"],
    }
    for month in at.index:
        for lever in result.levers:
            row = frame.loc[(month, lever)]
            assert row["value"] == at.loc[month, lever]
            assert row["derivative"] == pytest.approx(by_hand[lever][month], rel=1e-12)
            assert row["elasticity"] == pytest.approx(
                row["derivative"] * row["value"] / revenue[month], rel=1e-12
            )
            assert row["owner"] == OWNERS[lever]
    np.testing.assert_array_equal(frame["derivative"].to_numpy(), result.derivative_array.T.ravel())
    assert result.title() == f"Elasticities of 'revenue' over {len(at)} states"
    assert result.summary().startswith(result.title())
    assert at.index[0] in result.summary()


def test_tornado_frame_is_unrounded(results: dict[str, Result], tree: Tree) -> None:
    frame = results["tornado"].to_frame()
    # revenue = 40,000 rate = 5,000 (1 - churn) = 4 visits
    assert frame.loc["rate", ["target_low", "target_high"]].tolist() == pytest.approx(
        [2_000.0, 8_000.0], rel=1e-14
    )
    assert frame.loc["churn", ["low", "high"]].tolist() == pytest.approx([0.1, 0.3], rel=1e-14)
    assert frame.loc["churn", "swing"] == pytest.approx(5_000 * 0.2, rel=1e-14)
    assert frame.loc["visits", "swing"] == pytest.approx(4 * 200, rel=1e-13)
    assert list(frame.index) == ["rate", "churn", "visits"]
    assert frame["basis"].tolist() == ["explicit", "±50%", "±10%"]
    assert "Sales" in frame["owner"].tolist()
    assert results["tornado"].target_value == pytest.approx(4_000.0)


def test_sobol_and_morris_frames_are_their_tables(results: dict[str, Result]) -> None:
    for kind in ("sobol", "sobol by team", "morris"):
        result = results[kind]
        pd.testing.assert_frame_equal(result.to_frame(), result.table, check_exact=True)
    sobol = results["sobol"].to_frame()
    assert not np.allclose(sobol["S1"], sobol["S1"].round(4))  # more digits than printed
    by_team = results["sobol by team"].to_frame()
    assert by_team.index.name == "team"
    assert set(by_team.index) == set(OWNERS.values())


def test_monte_carlo_frame_quantiles_and_probability(results: dict[str, Result]) -> None:
    result = results["monte carlo"]
    assert isinstance(result, kpitree.MonteCarlo)
    values = result.samples["revenue"].to_numpy()
    frame = result.to_frame()
    assert frame.index.name == "statistic"
    assert list(frame.index) == ["mean", "std", "p5", "p10", "p25", "p50", "p75", "p90", "p95"]
    assert frame.loc["mean", "revenue"] == pytest.approx(values.mean(), rel=1e-14)
    assert frame.loc["std", "revenue"] == pytest.approx(values.std(ddof=1), rel=1e-14)
    qs = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    np.testing.assert_allclose(
        frame["revenue"].iloc[2:].to_numpy(), np.quantile(values, qs), rtol=1e-14
    )
    np.testing.assert_allclose(result.quantiles().to_numpy(), np.quantile(values, qs), rtol=1e-14)
    np.testing.assert_allclose(
        result.quantiles([0.01, 0.333]).to_numpy(), np.quantile(values, [0.01, 0.333]), rtol=1e-14
    )
    assert result.quantiles(0.5) == pytest.approx(np.median(values), rel=1e-14)
    for threshold in (values.min(), np.median(values), 4_000.0, values.max(), values.max() + 1):
        assert result.probability(threshold) == np.mean(values >= threshold)
        assert result.probability(threshold, above=False) == np.mean(values < threshold)
        assert result.probability(threshold) + result.probability(threshold, above=False) == 1


def test_team_ranking_frame_and_levers(results: dict[str, Result]) -> None:
    result = results["teams"]
    assert isinstance(result, kpitree.TeamRanking)
    frame = result.to_frame()
    pd.testing.assert_frame_equal(frame, result.table)
    assert {team: set(names) for team, names in result.levers.items()} == {
        "Growth & <Ads>": {"visits"},
        "Sales": {"rate", "deal_size"},
        'CS "1"': {"churn"},
    }
    # ±10%: Sales 4000 (1.1^2 - 0.9^2) = 1600; visits 800; churn 4000 x 0.04 / 0.8 = 200
    assert frame["impact"].to_dict() == pytest.approx(
        {"Sales": 1_600.0, "Growth & <Ads>": 800.0, 'CS "1"': 200.0}, rel=1e-13
    )
    assert frame["cost"].to_dict() == {"Sales": 3.0, "Growth & <Ads>": 3.0, 'CS "1"': 4.0}
    assert results["teams"].target_value == pytest.approx(4_000.0)
    assert results["teams by sobol"].detail is not None


# --- the plot draws the result's numbers ------------------------------------------------


def test_plots_draw_one_bar_per_row(results: dict[str, Result]) -> None:
    assert len(results["tornado"].plot().patches) >= len(results["tornado"].to_frame())
    sobol = results["sobol"]
    ax = sobol.plot()
    widths = sorted(round(float(bar.get_width()), 12) for bar in ax.patches)
    expected = sorted(round(float(v), 12) for v in [*sobol.table["S1"], *sobol.table["ST"]])
    assert widths == expected
    teams = results["teams"]
    ax = teams.plot()
    assert sorted(float(bar.get_width()) for bar in ax.patches) == pytest.approx(
        sorted(teams.table["impact"])
    )
    mc = results["monte carlo"]
    ax = mc.plot(bins=25)
    assert len(ax.patches) == 25
    assert sum(bar.get_height() for bar in ax.patches) == len(mc.samples)
