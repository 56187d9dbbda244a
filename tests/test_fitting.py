"""Fitting links: known truth recovered, numbers identical to statsmodels, honest intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import kpitree
from kpitree import DataError, FitError, Tree
from kpitree.errors import OptionError
from kpitree.fitting import newey_west_lags


def history(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Leading indicators and KPIs with known link coefficients."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(
        {
            "share_3plus": rng.uniform(0.1, 0.6, n),
            "demo_rate": rng.uniform(0.2, 0.8, n),
            "calls": rng.uniform(200, 400, n),
            "connect_rate": rng.uniform(0.2, 0.5, n),
            "downloads": rng.uniform(50, 150, n),
            "mqls": rng.uniform(100, 300, n),
            "nps": rng.normal(30, 10, n),
        }
    )
    logit = -2.0 + 3.0 * data["share_3plus"] + 1.0 * data["demo_rate"] + rng.normal(0, 0.1, n)
    data["win_rate"] = 1 / (1 + np.exp(-logit))
    data["sqls"] = 4.0 + 0.1 * data["calls"] + 50.0 * data["connect_rate"] + rng.normal(0, 2, n)
    data["leads"] = np.exp(3.0 + 0.01 * data["downloads"]) * rng.lognormal(0, 0.05, n)
    data["appointments"] = np.exp(0.5) * data["mqls"] ** 0.8 * rng.lognormal(0, 0.05, n)
    churn = 0.05 - 0.001 * data["nps"].shift(3).fillna(30.0)  # rows 0-2 are not used
    data["churn_rate"] = churn + rng.normal(0, 0.002, n)
    return data


SPEC = """
new_customers = sqls * win_rate
logit(win_rate) ~ share_3plus + demo_rate
sqls ~ calls + connect_rate
log(leads) ~ downloads
log(appointments) ~ log(mqls)
churn_rate ~ lag(nps, 3)
"""

TRUTH = {
    "win_rate__const": -2.0, "win_rate__share_3plus": 3.0, "win_rate__demo_rate": 1.0,
    "sqls__const": 4.0, "sqls__calls": 0.1, "sqls__connect_rate": 50.0,
    "leads__const": 3.0, "leads__downloads": 0.01,
    "appointments__const": 0.5, "appointments__mqls": 0.8,
    "churn_rate__const": 0.05, "churn_rate__nps_lag3": -0.001,
}  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> kpitree.FittedTree:
    return kpitree.fit(Tree.from_formulas(SPEC), history())


def test_known_coefficients_are_recovered(fitted: kpitree.FittedTree) -> None:
    params = fitted.params.set_index("parameter")
    for name, truth in TRUTH.items():
        row = params.loc[name]
        assert abs(row["estimate"] - truth) <= 3.5 * row["std_err"], name  # 99.95% two-sided
        assert fitted.parameters[name] == row["estimate"]
    for name in ("win_rate__share_3plus", "sqls__calls", "appointments__mqls"):
        assert fitted.parameters[name] == pytest.approx(TRUTH[name], rel=0.05), name


def test_the_declared_tree_is_untouched_and_the_fitted_one_evaluates() -> None:
    tree = Tree.from_formulas(SPEC)
    data = history()
    fitted = kpitree.fit(tree, data)
    assert tree.node("win_rate").kind == "link" and not tree.parameters
    assert fitted.node("win_rate").kind == "fitted link"
    assert isinstance(fitted, Tree) and fitted.links == tree.links
    assert fitted.node("nps_lag3").description == "nps, 3 period(s) earlier"
    row = {"share_3plus": 0.4, "demo_rate": 0.5}
    got = kpitree.evaluate(fitted, row, nodes=["win_rate"]).loc[0, "win_rate"]
    p = fitted.parameters
    linear = (
        p["win_rate__const"] + p["win_rate__share_3plus"] * 0.4 + p["win_rate__demo_rate"] * 0.5
    )
    assert got == pytest.approx(1 / (1 + np.exp(-linear)), rel=1e-12)
    loglog = kpitree.evaluate(fitted, {"mqls": 200.0}, nodes=["appointments"]).iloc[0, 0]
    expected = np.exp(p["appointments__const"]) * 200.0 ** p["appointments__mqls"]
    assert loglog == pytest.approx(expected, rel=1e-12)


def test_numbers_equal_statsmodels_on_the_same_design(fitted: kpitree.FittedTree) -> None:
    data = history()
    x = sm.add_constant(data[["share_3plus", "demo_rate"]])
    direct = sm.GLM(data["win_rate"], x, family=sm.families.Binomial()).fit(
        cov_type="HAC", cov_kwds={"maxlags": newey_west_lags(len(data))}
    )
    ours = fitted.params.set_index("parameter")
    names = ["win_rate__const", "win_rate__share_3plus", "win_rate__demo_rate"]
    np.testing.assert_allclose(ours.loc[names, "estimate"], direct.params, rtol=1e-10)
    np.testing.assert_allclose(ours.loc[names, "std_err"], direct.bse, rtol=1e-10)
    lagged = pd.DataFrame({"nps_lag3": data["nps"].shift(3)}).iloc[3:]
    ols = sm.OLS(data["churn_rate"].iloc[3:], sm.add_constant(lagged)).fit(
        cov_type="HAC", cov_kwds={"maxlags": newey_west_lags(len(lagged))}
    )
    churn = ours.loc[["churn_rate__const", "churn_rate__nps_lag3"]]
    np.testing.assert_allclose(churn["estimate"], ols.params, rtol=1e-10)
    np.testing.assert_allclose(churn["p_value"], ols.pvalues, rtol=1e-8)
    assert fitted.result("churn_rate").nobs == len(data) - 3


def test_summary_reports_fit_statistics(fitted: kpitree.FittedTree) -> None:
    summary = fitted.summary()
    assert list(summary.index) == ["win_rate", "sqls", "leads", "appointments", "churn_rate"]
    assert summary.loc["sqls", "n"] == 400 and summary.loc["churn_rate", "n"] == 397
    direct = fitted.result("sqls")
    assert summary.loc["sqls", "r2"] == pytest.approx(direct.rsquared)
    assert summary.loc["sqls", "adj_r2"] == pytest.approx(direct.rsquared_adj)
    assert summary.loc["sqls", "aic"] == pytest.approx(direct.aic)
    assert summary.loc["sqls", "durbin_watson"] == pytest.approx(
        sm.stats.durbin_watson(direct.resid)
    )
    assert 1.5 < summary.loc["sqls", "durbin_watson"] < 2.5  # independent errors
    assert summary.loc["sqls", "r2"] > 0.9


def test_sample_params_follows_the_estimated_distribution(fitted: kpitree.FittedTree) -> None:
    draws = fitted.sample_params(20_000, seed=1)
    assert list(draws.columns) == list(fitted.parameters)
    pd.testing.assert_frame_equal(draws, fitted.sample_params(20_000, seed=1))
    fit = fitted.fits["sqls"]
    block = draws[list(fit.names)].to_numpy()
    standard_error_of_mean = np.sqrt(np.diag(fit.cov) / 20_000)
    assert (np.abs(block.mean(axis=0) - fit.estimates) < 4 * standard_error_of_mean).all()
    np.testing.assert_allclose(np.cov(block.T), fit.cov, rtol=0.1, atol=1e-12)
    # draws evaluate vectorised: coefficient uncertainty carried to the KPI
    inputs = draws.assign(calls=300.0, connect_rate=0.3)
    spread = kpitree.evaluate(fitted, inputs, nodes=["sqls"])["sqls"]
    assert spread.std() > 0 and spread.mean() == pytest.approx(4 + 30 + 15, rel=0.02)


def test_confidence_intervals_cover_the_truth_at_their_nominal_rate() -> None:
    rng = np.random.default_rng(42)
    tree = Tree.from_formulas("sqls ~ calls")
    covered, runs = 0, 300
    for _ in range(runs):
        calls = rng.uniform(100, 300, 60)
        data = pd.DataFrame({"calls": calls, "sqls": 2 + 0.2 * calls + rng.normal(0, 3, 60)})
        row = kpitree.fit(tree, data, cov_type="nonrobust").params.iloc[1]
        covered += row["ci_low"] <= 0.2 <= row["ci_high"]
    # 95% intervals: the binomial 99.9% range for 300 runs is about 0.91-0.99
    assert 0.91 <= covered / runs <= 0.99


def test_cluster_covariance_by_segment() -> None:
    rng = np.random.default_rng(3)
    data = pd.DataFrame(
        {"segment": np.repeat(list("abcdefghij"), 30), "calls": rng.uniform(100, 300, 300)}
    )
    data["sqls"] = 1 + 0.2 * data["calls"] + rng.normal(0, 2, 300)
    fitted = kpitree.fit(
        Tree.from_formulas("sqls ~ calls"), data, cov_type="cluster", groups="segment"
    )
    x = sm.add_constant(data[["calls"]])
    direct = sm.OLS(data["sqls"], x).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(data["segment"])[0]}
    )
    np.testing.assert_allclose(fitted.params["std_err"], direct.bse, rtol=1e-10)


def test_lags_are_taken_within_groups() -> None:
    data = pd.DataFrame(
        {
            "segment": ["a"] * 5 + ["b"] * 5,
            "nps": np.arange(10.0),
            "churn_rate": np.linspace(0, 1, 10),
        }
    )
    tree = Tree.from_formulas("churn_rate ~ lag(nps, 1)")
    with pytest.warns(kpitree.errors.FitWarning, match=r"few rows \(8\) for 2 coefficients"):
        fitted = kpitree.fit(tree, data, groups="segment", cov_type="HC1")
    summary = fitted.summary()
    assert summary.loc["churn_rate", "n"] == 8  # one row lost per segment
    assert summary.loc["churn_rate", "warnings"] == "few rows (8) for 2 coefficients"


@pytest.mark.parametrize(
    ("change", "error", "fragment", "field"),
    [
        (
            lambda d: d.drop(columns="demo_rate"),
            DataError,
            "'demo_rate' is missing",
            ("column", "demo_rate"),
        ),
        (
            lambda d: d.assign(demo_rate=np.where(d.index == 7, np.nan, d["demo_rate"])),
            DataError,
            "NaN in 1 row(s), first [7]",
            ("column", "demo_rate"),
        ),
        (
            lambda d: d.assign(win_rate=np.where(d.index == 3, 1.0, d["win_rate"])),
            DataError,
            "in (0, 1)",
            ("rows", [3]),
        ),
        (
            lambda d: d.assign(demo_rate=0.5),
            FitError,
            "'demo_rate' is constant",
            ("column", "demo_rate"),
        ),
        (
            lambda d: d.assign(demo_rate=2 * d["share_3plus"]),
            FitError,
            "perfectly collinear",
            ("column", "demo_rate"),
        ),
        (lambda d: d.iloc[:3], FitError, "3 usable rows for 3 coefficients", ("link", "win_rate")),
        (
            lambda d: d.assign(demo_rate="high"),
            DataError,
            "'demo_rate' is not numeric",
            ("column", "demo_rate"),
        ),
    ],
)
def test_bad_input_names_the_link_and_column(change, error, fragment, field) -> None:
    tree = Tree.from_formulas("logit(win_rate) ~ share_3plus + demo_rate")
    with pytest.raises(error) as info:
        kpitree.fit(tree, change(history(50)))
    assert fragment in str(info.value) and "win_rate" in str(info.value)
    assert getattr(info.value, field[0]) == field[1]


def test_bad_options_and_log_ranges() -> None:
    tree = Tree.from_formulas("log(appointments) ~ log(mqls)")
    data = history(50)
    with pytest.raises(DataError, match="predictors must be > 0") as info:
        kpitree.fit(tree, data.assign(mqls=np.where(data.index == 2, 0.0, data["mqls"])))
    assert info.value.rows == [2]
    with pytest.raises(OptionError, match="cov_type must be one of"):
        kpitree.fit(tree, data, cov_type="robust")
    with pytest.raises(OptionError, match="needs a groups column"):
        kpitree.fit(tree, data, cov_type="cluster")
    with pytest.raises(FitError, match="declares no link"):
        kpitree.fit(Tree.from_formulas("a = b * c"), data)
    with pytest.raises(DataError, match="must be a DataFrame"):
        kpitree.fit(tree, data.to_dict())


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_fitted_trees_round_trip_exactly(fitted: kpitree.FittedTree, tmp_path, suffix) -> None:
    fitted.save(tmp_path / f"fitted{suffix}")
    loaded = kpitree.load(tmp_path / f"fitted{suffix}")
    assert isinstance(loaded, kpitree.FittedTree) and loaded == fitted
    for node, fit in fitted.fits.items():
        np.testing.assert_array_equal(loaded.fits[node].cov, fit.cov)
        np.testing.assert_array_equal(loaded.fits[node].estimates, fit.estimates)
    pd.testing.assert_frame_equal(loaded.params, fitted.params)
    pd.testing.assert_frame_equal(loaded.summary(), fitted.summary())
    pd.testing.assert_frame_equal(loaded.sample_params(5, seed=2), fitted.sample_params(5, seed=2))
    with pytest.raises(FitError, match="not kept in model files"):
        loaded.result("sqls")


def test_malformed_fits_in_model_files(fitted: kpitree.FittedTree, tmp_path) -> None:
    import yaml

    fitted.save(tmp_path / "f.yaml")
    content = yaml.safe_load((tmp_path / "f.yaml").read_text())
    content["fits"]["sqls"]["cov"] = [[1.0]]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(kpitree.ModelFileError, match="covariance must be 3 x 3") as info:
        kpitree.load(tmp_path / "bad.yaml")
    assert info.value.node == "sqls"
    del content["fits"]["sqls"]
    content["fits"]["new_customers"] = {"nobs": 1, "cov": [[1.0]]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(kpitree.ModelFileError, match="a fit belongs to a link node"):
        kpitree.load(tmp_path / "bad.yaml")


def test_glm_r2_is_the_squared_correlation_of_fitted_and_observed(fitted) -> None:
    data = history()
    result = fitted.result("win_rate")
    by_hand = np.corrcoef(data["win_rate"], result.fittedvalues)[0, 1] ** 2
    assert fitted.summary().loc["win_rate", "r2"] == pytest.approx(by_hand, rel=1e-12)
    assert by_hand > 0.9  # the link explains the simulated rate well


def test_random_intercept_per_segment_equals_statsmodels_mixedlm() -> None:
    rng = np.random.default_rng(4)
    segment = np.repeat(np.arange(12), 30)
    data = pd.DataFrame({"region": segment, "calls": rng.uniform(100, 300, 360)})
    offsets = rng.normal(0, 2, 12)[segment]  # each region's own level
    data["sqls"] = 3 + offsets + 0.2 * data["calls"] + rng.normal(0, 1, 360)
    tree = Tree.from_formulas("sqls ~ calls")
    fitted = kpitree.fit(tree, data, groups="region", random_intercept=True)
    direct = sm.MixedLM(data["sqls"], sm.add_constant(data[["calls"]]), groups=data["region"])
    result = direct.fit(reml=True)
    np.testing.assert_allclose(fitted.params["estimate"], result.fe_params, rtol=1e-8)
    np.testing.assert_allclose(fitted.params["std_err"], result.bse_fe, rtol=1e-8)
    assert fitted.params.loc[1, "ci_low"] <= 0.2 <= fitted.params.loc[1, "ci_high"]
    with pytest.raises(OptionError, match="needs a groups column"):
        kpitree.fit(tree, data, random_intercept=True)


def test_derived_trees_keep_the_fits_of_unchanged_links(fitted: kpitree.FittedTree) -> None:
    owned = fitted.with_metadata("sqls", owner="Inside Sales")  # metadata: the fit stands
    assert isinstance(owned, kpitree.FittedTree) and set(owned.fits) == set(fitted.fits)
    np.testing.assert_array_equal(owned.fits["sqls"].cov, fitted.fits["sqls"].cov)
    assert owned.parameters == fitted.parameters
    relinked = fitted.with_link("sqls", ["calls"])  # a new model: its old fit is gone
    assert set(relinked.fits) == set(fitted.fits) - {"sqls"}
    assert relinked.node("sqls").kind == "link"
