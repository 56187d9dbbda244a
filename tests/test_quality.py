"""check_data: each check on hand-made data with known answers, and the bundled history."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

import kpitree
from kpitree.errors import DataError, OptionError
from kpitree.quality import CHECKS, DataQuality, check_data

matplotlib.use("Agg")

N = 10


@pytest.fixture
def tree() -> kpitree.Tree:
    return kpitree.Tree.from_formulas(
        """
        revenue = customers * arpa
        customers = sqls * win_rate
        """,
        owners={"customers": "Field Sales", "sqls": "Inside Sales"},
        bounds={"win_rate": (0, 1)},
    )


@pytest.fixture
def clean(tree) -> pd.DataFrame:
    """Ten months where every identity holds exactly and no value repeats."""
    sqls = np.arange(100.0, 100.0 + 10 * N, 10)
    win_rate = np.linspace(0.20, 0.29, N)
    arpa = np.linspace(1000.0, 1090.0, N)
    customers = sqls * win_rate
    index = pd.period_range("2024-01", periods=N, freq="M", name="period")
    frame = {"revenue": customers * arpa, "customers": customers, "sqls": sqls}
    return pd.DataFrame(frame | {"win_rate": win_rate, "arpa": arpa}, index=index)


def issue(quality: DataQuality, node: str, check: str) -> pd.Series:
    issues = quality.issues
    (row,) = issues.index[(issues["node"] == node) & (issues["check"] == check)]
    return issues.loc[row]


# --- clean data ----------------------------------------------------------------------------


def test_clean_data_scores_one_and_has_no_issue(tree, clean):
    quality = check_data(tree, clean)
    table = quality.to_frame()
    assert quality.score == 1.0
    assert quality.issues.empty
    assert list(table.index) == list(tree.nodes)
    assert table["present"].all() and (table["rows"] == N).all()
    assert (table[["missing_share", "not_numeric_share", "stale_share"]] == 0).all().all()
    assert table.loc["win_rate", "out_of_bounds_share"] == 0
    assert math.isnan(table.loc["sqls", "out_of_bounds_share"])  # no bounds
    assert list(table.index[table["identity_checked"]]) == ["revenue", "customers"]
    assert (table.loc[["revenue", "customers"], "identity_rows"] == N).all()
    assert (table.loc[["revenue", "customers"], "identity_max_rel_error"] == 0).all()
    assert table.loc["sqls", "identity_rows"] == 0
    assert math.isnan(table.loc["sqls", "identity_broken_share"])


def test_the_table_keeps_numbers_as_numbers(tree, clean):
    table = check_data(tree, clean).to_frame()
    assert table["missing_share"].dtype == float and table["rows"].dtype == int
    assert table["present"].dtype == bool and table["identity_checked"].dtype == bool
    table.loc["sqls", "score"] = -1  # a copy: the result does not change
    assert check_data(tree, clean).to_frame().loc["sqls", "score"] == 1.0


# --- one check at a time ---------------------------------------------------------------------


def test_two_missing_values_of_ten(tree, clean):
    clean.iloc[[3, 7], clean.columns.get_loc("sqls")] = np.nan
    quality = check_data(tree, clean)
    row = quality.to_frame().loc["sqls"]
    assert row["missing_share"] == pytest.approx(0.2)
    assert row["score"] == pytest.approx(0.8)
    found = issue(quality, "sqls", "missing values")
    assert (found["severity"], found["rows"], found["owner"]) == ("error", 2, "Inside Sales")
    assert "2 of 10 values are missing" in found["message"]
    assert "(rows 2024-04, 2024-08)" in found["message"]


def test_infinity_counts_as_missing(tree, clean):
    clean.iloc[0, clean.columns.get_loc("arpa")] = np.inf
    assert check_data(tree, clean).to_frame().loc["arpa", "missing_share"] == pytest.approx(0.1)


def test_a_rate_of_1_2_once_in_five_rows(tree, clean):
    data = clean.iloc[:5].copy()
    data.iloc[2, data.columns.get_loc("win_rate")] = 1.2
    quality = check_data(tree, data)
    assert quality.to_frame().loc["win_rate", "out_of_bounds_share"] == pytest.approx(0.2)
    found = issue(quality, "win_rate", "out of bounds")
    assert found["message"].startswith("1 of 5 values lie outside [0, 1]: 1.2 (rows 2024-03)")


def test_a_constant_column_is_one_warning_not_two(tree, clean):
    clean["arpa"] = 5000.0
    clean["revenue"] = clean["customers"] * 5000.0
    quality = check_data(tree, clean)
    row = quality.to_frame().loc["arpa"]
    assert row["constant"] and row["stale_share"] == 1.0
    assert issue(quality, "arpa", "constant")["message"] == "all 10 values are 5000"
    assert set(quality.issues["check"]) == {"constant"}  # no separate stale finding
    assert quality.score == 1.0  # a constant price may be real: a warning, not in the score


def test_a_run_of_four_equal_values(tree, clean):
    sqls = clean["sqls"].to_numpy().copy()
    sqls[2:6] = 120.0  # a run of 4 ...
    sqls[8:10] = 180.0  # ... and a run of 2, shorter than stale_periods
    data = clean.assign(sqls=sqls)
    assert check_data(tree, data).to_frame().loc["sqls", "stale_share"] == pytest.approx(4 / N)
    relaxed = check_data(tree, data, stale_periods=5)
    assert relaxed.to_frame().loc["sqls", "stale_share"] == 0.0
    found = issue(check_data(tree, data), "sqls", "stale")
    assert found["severity"] == "warning" and found["rows"] == 4


def test_one_planted_outlier(tree, clean):
    clean.iloc[6, clean.columns.get_loc("arpa")] = 50_000.0
    quality = check_data(tree, clean)
    assert quality.to_frame().loc["arpa", "outlier_share"] == pytest.approx(0.1)
    assert "50000 (rows 2024-07)" in issue(quality, "arpa", "outliers")["message"]


def test_outliers_when_most_values_are_equal(tree, clean):
    """The MAD is 0: the mean absolute deviation takes over; all equal means none."""
    arpa = np.full(N, 1000.0)
    arpa[4] = 9000.0
    clean = clean.assign(arpa=arpa, revenue=clean["customers"] * arpa)
    assert check_data(tree, clean).to_frame().loc["arpa", "outlier_share"] == pytest.approx(0.1)
    clean = clean.assign(arpa=1000.0, revenue=clean["customers"] * 1000.0)
    assert check_data(tree, clean).to_frame().loc["arpa", "outlier_share"] == 0.0


# --- identities ------------------------------------------------------------------------------


def test_an_identity_broken_in_three_rows_by_five_percent(tree, clean):
    """customers is 5 % off in 3 rows; revenue, computed from the observed customers, holds."""
    clean.iloc[[1, 4, 8], clean.columns.get_loc("customers")] *= 1.05
    clean["revenue"] = clean["customers"] * clean["arpa"]
    quality = check_data(tree, clean)
    table = quality.to_frame()
    assert table.loc["customers", "identity_broken_share"] == pytest.approx(3 / N)
    assert table.loc["customers", "identity_max_rel_error"] == pytest.approx(0.05, rel=1e-9)
    assert table.loc["customers", "score"] == pytest.approx(0.7)
    assert table.loc["revenue", "identity_broken_share"] == 0.0  # no spreading to the parent
    assert quality.score == pytest.approx((4 + 0.7) / 5)
    assert list(quality.issues["node"]) == ["customers"]
    message = issue(quality, "customers", "identity broken")["message"]
    assert message == (
        "3 of 10 rows break customers = sqls * win_rate, by up to 5.0% "
        "(rows 2024-02, 2024-05, 2024-09)"
    )


def test_rtol_sets_how_far_is_broken(tree, clean):
    clean.iloc[0, clean.columns.get_loc("customers")] *= 1 + 1e-4
    clean["revenue"] = clean["customers"] * clean["arpa"]
    assert check_data(tree, clean).to_frame().loc["customers", "identity_broken_share"] == 0.1
    loose = check_data(tree, clean, rtol=1e-3).to_frame()
    assert loose.loc["customers", "identity_broken_share"] == 0.0


def test_a_wrong_middle_value_breaks_both_identities_and_is_named(tree, clean):
    clean.iloc[[2, 3], clean.columns.get_loc("customers")] *= 0.9  # revenue left as it was
    quality = check_data(tree, clean)
    issues = quality.issues
    assert list(issues["node"]) == ["customers", "revenue"]  # the culprit first
    assert issues.loc[0, "message"].endswith("; the same rows break revenue: check customers")
    assert issues.loc[1, "message"].endswith("; the same rows break customers (explaining it)")


def test_rows_with_a_missing_input_are_not_checked(tree, clean):
    clean.iloc[0, clean.columns.get_loc("win_rate")] = np.nan
    clean.iloc[5, clean.columns.get_loc("customers")] *= 2
    row = check_data(tree, clean).to_frame().loc["customers"]
    assert row["identity_rows"] == N - 1
    assert row["identity_broken_share"] == pytest.approx(1 / (N - 1))


def test_a_formula_giving_zero_against_a_nonzero_value(tree, clean):
    clean.iloc[0, clean.columns.get_loc("win_rate")] = 0.0
    row = check_data(tree, clean).to_frame().loc["customers"]
    assert row["identity_max_rel_error"] == math.inf
    assert row["identity_broken_share"] == pytest.approx(0.1)


def test_a_regression_link_is_a_model_not_an_identity(clean):
    linked = kpitree.Tree.from_formulas(
        """
        customers = sqls * win_rate
        win_rate ~ arpa
        """
    )
    table = check_data(linked, clean).to_frame()
    assert table.loc["win_rate", "kind"] == "link"
    assert not table.loc["win_rate", "identity_checked"]
    assert table.loc["customers", "identity_broken_share"] == 0.0
    assert check_data(linked, clean).issues.empty


# --- coverage and bad input ------------------------------------------------------------------


def test_absent_and_extra_columns(tree, clean):
    data = clean.drop(columns=["win_rate"]).assign(region="east")
    quality = check_data(tree, data)
    table = quality.to_frame()
    assert not table.loc["win_rate", "present"] and table.loc["win_rate", "rows"] == 0
    assert table.loc["win_rate", "score"] == 0.0 and quality.score == pytest.approx(4 / 5)
    assert not table.loc["customers", "identity_checked"]  # an input is absent
    assert table.loc["revenue", "identity_checked"]
    assert quality.extra_columns == ("region",)
    found = issue(quality, "win_rate", "column missing")
    assert (found["severity"], found["rows"], found["share"]) == ("warning", N, 1.0)


def test_text_in_a_node_column_is_a_finding_not_a_crash(tree, clean):
    data = clean.astype({"sqls": object})
    data.iloc[[0, 1, 2], data.columns.get_loc("sqls")] = ["n/a", "1,234", None]
    quality = check_data(tree, data)
    row = quality.to_frame().loc["sqls"]
    assert row["not_numeric_share"] == pytest.approx(0.2)
    assert row["missing_share"] == pytest.approx(0.1)
    assert row["score"] == pytest.approx(0.7)
    found = issue(quality, "sqls", "not numeric")
    assert found["message"].startswith("2 of 10 values are text, not numbers: 'n/a', '1,234'")
    assert quality.issues.loc[0, "check"] == "not numeric"
    words = check_data(tree, clean.assign(arpa=["high"] * N)).to_frame()
    assert words.loc["arpa", "not_numeric_share"] == 1.0 and words.loc["arpa", "score"] == 0.0


def test_bad_input(tree, clean):
    with pytest.raises(DataError, match="must be a DataFrame"):
        check_data(tree, {"sqls": [1, 2]})
    for option, value in [("rtol", -1), ("outlier_z", 0), ("stale_periods", 1)]:
        with pytest.raises(OptionError) as caught:
            check_data(tree, clean, **{option: value})
        assert caught.value.option == option
    with pytest.raises(OptionError, match="neither a column nor an index level"):
        check_data(tree, clean, by="segment")
    twice = pd.concat([clean, clean[["sqls"]]], axis=1)
    with pytest.raises(DataError, match="2 columns named 'sqls'"):
        check_data(tree, twice)


def test_no_rows(tree, clean):
    quality = check_data(tree, clean.iloc[:0])
    assert quality.score == 0.0 and quality.n_rows == 0


# --- segments ------------------------------------------------------------------------------


def test_by_segment_finds_runs_within_each_segment(tree):
    periods = pd.period_range("2024-01", periods=4, freq="M")
    index = pd.MultiIndex.from_product([periods, ["east", "west"]], names=["period", "segment"])
    sqls = [10.0, 50, 10, 60, 10, 70, 20, 80]  # east: 10, 10, 10, 20; west: 50 ... 80
    data = pd.DataFrame({"sqls": sqls}, index=index)
    assert check_data(tree, data).to_frame().loc["sqls", "stale_share"] == 0.0
    by_level = check_data(tree, data, by="segment")
    assert by_level.to_frame().loc["sqls", "stale_share"] == pytest.approx(3 / 8)
    assert "rows 2024-01 / east, 2024-02 / east" in issue(by_level, "sqls", "stale")["message"]
    by_column = check_data(tree, data.reset_index("segment"), by="segment")
    assert by_column.to_frame().loc["sqls", "stale_share"] == pytest.approx(3 / 8)
    assert by_column.extra_columns == ()


# --- the bundled company ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return kpitree.datasets.simulate_b2b()


def test_the_bundled_history_is_clean(company, history):
    """Nothing certainly wrong: the simulator evaluates every identity with the tree itself,
    rates come out of a logistic function (inside their bounds) and no value is missing.

    The six rates are regression links: models with residuals, never checked as identities.
    Continuous draws never repeat (no stale run, no constant column), so the only findings
    possible on this data are outliers, which may be real (a month of many content downloads
    lifts the request rate): warnings that leave the score at 1.
    """
    quality = check_data(company, history)
    table = quality.to_frame()
    computed = table.loc[list(company.computed)]
    assert computed["identity_checked"].all()
    assert (computed["identity_broken_share"] == 0).all()
    links = table.loc[list(company.links)]
    assert len(links) == 6 and (links["kind"] == "link").all()
    assert not links["identity_checked"].any() and (links["identity_rows"] == 0).all()
    assert table["present"].all() and (table["missing_share"] == 0).all()
    assert (table[["not_numeric_share", "out_of_bounds_share", "stale_share"]] == 0).all().all()
    assert set(quality.issues["check"]) <= {"outliers"}
    assert quality.score == 1.0


def test_a_corrupted_column_is_the_first_issue(company, history):
    data = history.copy()
    data.iloc[[5, 17, 30], data.columns.get_loc("win_rate")] = 1.5
    quality = check_data(company, data)
    first = quality.issues.iloc[0]
    assert (first["node"], first["check"], first["rows"]) == ("win_rate", "out of bounds", 3)
    assert first["owner"] == "Field Sales"
    assert 0 < quality.score < 1.0
    # the parent's identity breaks in the same rows (new_customers was not recomputed)
    assert issue(quality, "new_customers", "identity broken")["rows"] == 3


def test_a_department_counting_differently(company, history):
    """The CRM's MQLs are 5 % higher in 3 months: mqls is named first, appointments after."""
    data = history.copy()
    data.iloc[[3, 10, 20], data.columns.get_loc("mqls")] *= 1.05
    quality = check_data(company, data)
    issues = quality.issues
    errors = issues[issues["severity"] == "error"]
    assert list(errors["node"]) == ["mqls", "appointments"]
    assert list(errors["check"]) == ["identity broken"] * 2
    assert issues.loc[0, "message"].startswith("3 of 36 rows break mqls = leads * mql_rate")
    # mqls is 5 % above leads * mql_rate; appointments, computed from the true mqls, is
    # 1/1.05 of its formula on the observed mqls: off by 1 - 1/1.05
    table = quality.to_frame()
    assert table.loc["mqls", "identity_max_rel_error"] == pytest.approx(0.05, rel=1e-9)
    assert table.loc["appointments", "identity_max_rel_error"] == pytest.approx(1 - 1 / 1.05)
    assert set(issues["check"][issues["severity"] != "error"]) <= {"outliers"}  # the history's


# --- display -------------------------------------------------------------------------------


def test_summary_repr_and_html(tree, clean):
    clean.iloc[[3, 7], clean.columns.get_loc("sqls")] = np.nan
    quality = check_data(tree, clean.drop(columns="arpa"))
    summary = quality.summary()
    assert summary.splitlines()[0] == (
        "data quality 0.760: 4 of 5 node columns, 10 rows; 1 of 2 identities checked, 0 broken"
    )
    assert "- sqls: missing values (20.0%)" in summary
    assert repr(quality).startswith(summary) and "absent" in repr(quality)
    html = quality._repr_html_()
    assert html.startswith('<div class="kpitree">') and "20.0%" in html
    assert set(quality.issues["check"]) <= set(CHECKS)


def test_plot_returns_its_axes(tree, clean):
    import matplotlib.pyplot as plt

    clean.iloc[2, clean.columns.get_loc("win_rate")] = 1.2
    quality = check_data(tree, clean.drop(columns="arpa"))
    ax = quality.plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["revenue", "customers", "arpa (no column)", "sqls", "win_rate"]
    assert "10.0%" in [t.get_text() for t in ax.texts]
    _, given = plt.subplots()
    assert quality.plot(ax=given) is given
    plt.close("all")
