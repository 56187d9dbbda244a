"""The bundled B2B company and its simulator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kpitree
from kpitree import Tree
from kpitree.datasets import simulate_b2b


def test_the_company_model(company: Tree) -> None:
    assert company.name == "B2B company" and company.top == "revenue"
    assert len(company.nodes) == 33
    assert company.links == (
        "request_rate", "mql_rate", "appointment_rate", "sql_rate", "win_rate", "churn_rate"
    )  # fmt: skip
    owners = {company.owner(n) for n in company.nodes}
    assert owners == {"Marketing", "Inside Sales", "Field Sales", "Customer Success", "Management"}
    inputs = [*company.levers, *company.links]
    assert all(company.node(n).baseline is not None for n in inputs)
    rates = [n for n in inputs if company.node(n).unit == "ratio"]
    assert all(company.node(n).bounds == (0.0, 1.0) for n in rates) and len(rates) == 12


def test_baseline_revenue_by_hand(company: Tree) -> None:
    row = kpitree.evaluate(company).iloc[0]
    new_customers = 30_000 * 0.02 * 0.45 * 0.4 * 0.55 * 0.22  # 13.068
    recurring = (1000 - 1000 * 0.012) * 150_000
    assert row["new_customers"] == pytest.approx(new_customers)
    assert row["revenue"] == pytest.approx(recurring * 1.01 + new_customers * 180_000)
    assert row["revenue"] == pytest.approx(152_034_240.0)


def test_simulated_history_satisfies_every_identity_exactly(company: Tree) -> None:
    history = simulate_b2b()
    assert history.shape == (36, 33)
    assert isinstance(history.index, pd.PeriodIndex) and str(history.index[0]) == "2023-01"
    recomputed = kpitree.evaluate(company, history[[*company.levers, *company.links]])
    pd.testing.assert_frame_equal(recomputed, history, check_exact=True)
    carried = (history["retained_customers"] + history["new_customers"]).iloc[:-1].to_numpy()
    np.testing.assert_array_equal(history["customers_start"].iloc[1:].to_numpy(), carried)


def test_simulated_history_is_plausible_and_seeded(company: Tree) -> None:
    history = simulate_b2b(seed=3)
    pd.testing.assert_frame_equal(history, simulate_b2b(seed=3))
    assert not history.equals(simulate_b2b(seed=4))
    for rate in ("request_rate", "win_rate", "churn_rate"):
        assert history[rate].between(0, 1).all()
        baseline = company.node(rate).baseline
        assert history[rate].median() == pytest.approx(baseline, rel=0.25)
    assert history["revenue"].iloc[-12:].mean() > history["revenue"].iloc[:12].mean()


def test_the_true_link_coefficients() -> None:
    truth = kpitree.datasets.b2b_truth()
    assert truth["win_rate__share_3plus_proposals"] == 4.0
    assert truth["churn_rate__nps_lag3"] == -0.04
    # intercepts: today's indicators give today's rates, computed by hand for win_rate
    logit = np.log(0.22 / 0.78) - (4.0 * 0.3 + 2.0 * 0.5)
    assert truth["win_rate__const"] == pytest.approx(logit, rel=1e-12)


def test_rates_follow_their_true_links() -> None:
    history = simulate_b2b(periods=120, seed=7)
    truth = kpitree.datasets.b2b_truth()
    logit = np.log(history["win_rate"] / (1 - history["win_rate"]))
    mean = (
        truth["win_rate__const"]
        + 4.0 * history["share_3plus_proposals"]
        + 2.0 * history["demo_rate"]
    )
    residual = logit - mean  # the link's noise: sd 0.05 on the logit scale
    assert abs(residual.mean()) < 0.02 and residual.std() == pytest.approx(0.05, rel=0.2)
    churn = np.log(history["churn_rate"] / (1 - history["churn_rate"]))
    expected = (
        truth["churn_rate__const"]
        - 0.04 * history["nps"].shift(3)
        + 0.4 * history["ticket_close_days"]
    )
    assert (churn - expected).iloc[3:].std() == pytest.approx(0.05, rel=0.2)


def test_fitting_the_company_recovers_the_truth(company: Tree) -> None:
    truth = kpitree.datasets.b2b_truth()
    covered = []
    for seed in range(5):
        params = kpitree.fit(company, simulate_b2b(seed=seed)).params.set_index("parameter")
        covered += [row.ci_low <= truth[name] <= row.ci_high for name, row in params.iterrows()]
    # 70 intervals from 36 monthly points with HAC errors: most cover the truth
    assert sum(covered) / len(covered) >= 0.8


def test_periods_must_be_positive() -> None:
    with pytest.raises(kpitree.errors.OptionError, match="at least 1"):
        simulate_b2b(periods=0)
