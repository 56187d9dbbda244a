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
    assert len(company.nodes) == 25
    owners = {company.owner(n) for n in company.nodes}
    assert owners == {"Marketing", "Inside Sales", "Field Sales", "Customer Success", "Management"}
    assert all(company.node(n).baseline is not None for n in company.levers)
    rates = [n for n in company.levers if company.node(n).unit == "ratio"]
    assert all(company.node(n).bounds == (0.0, 1.0) for n in rates) and len(rates) == 7


def test_baseline_revenue_by_hand(company: Tree) -> None:
    row = kpitree.evaluate(company).iloc[0]
    new_customers = 30_000 * 0.02 * 0.45 * 0.4 * 0.55 * 0.22  # 13.068
    recurring = (1000 - 1000 * 0.012) * 150_000
    assert row["new_customers"] == pytest.approx(new_customers)
    assert row["revenue"] == pytest.approx(recurring * 1.01 + new_customers * 180_000)
    assert row["revenue"] == pytest.approx(152_034_240.0)


def test_simulated_history_satisfies_every_identity_exactly(company: Tree) -> None:
    history = simulate_b2b()
    assert history.shape == (36, 25)
    assert isinstance(history.index, pd.PeriodIndex) and str(history.index[0]) == "2023-01"
    recomputed = kpitree.evaluate(company, history[list(company.levers)])
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


def test_periods_must_be_positive() -> None:
    with pytest.raises(kpitree.errors.OptionError, match="at least 1"):
        simulate_b2b(periods=0)
