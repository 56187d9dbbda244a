"""Backtesting fitted links on held-out periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import kpitree
from kpitree import Tree
from kpitree.errors import OptionError

SPEC = """
wins = sqls * win_rate
sqls ~ calls
churn_rate ~ lag(nps, 2)
"""


def data(n: int = 60, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"calls": rng.uniform(100, 200, n), "nps": rng.normal(30, 5, n)})
    frame["win_rate"] = rng.uniform(0.2, 0.3, n)
    frame["sqls"] = 2 + 0.3 * frame["calls"] + rng.normal(0, 1, n)
    frame["wins"] = frame["sqls"] * frame["win_rate"]
    frame["churn_rate"] = 0.05 - 0.001 * frame["nps"].shift(2).fillna(30) + rng.normal(0, 1e-4, n)
    return frame


def test_metrics_equal_a_hand_computation() -> None:
    frame = data()
    result = kpitree.backtest(Tree.from_formulas(SPEC), frame, holdout=12, target="wins")
    train, test = frame.iloc[:-12], frame.iloc[-12:]
    slope, const = np.polyfit(train["calls"], train["sqls"], 1)  # OLS by another route
    predicted = const + slope * test["calls"]
    error = predicted - test["sqls"]
    metrics = result.to_frame()
    assert metrics.loc["sqls", "n"] == 12
    assert metrics.loc["sqls", "rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-9)
    assert metrics.loc["sqls", "mape"] == pytest.approx(
        (error / test["sqls"]).abs().mean(), rel=1e-9
    )
    # the top KPI goes through the tree: predicted SQLs times the observed win rate
    wins = predicted * test["win_rate"]
    np.testing.assert_allclose(result.predicted["wins"], wins, rtol=1e-9)
    assert list(metrics.index) == ["sqls", "churn_rate", "wins"]
    assert metrics.loc["churn_rate", "mape"] < 0.01  # the lagged link predicts well
    assert "Backtest over 12 held-out rows" in repr(result)


def test_lagged_predictors_use_the_periods_before_the_holdout() -> None:
    frame = data()
    result = kpitree.backtest(Tree.from_formulas(SPEC), frame, holdout=5, target="wins")
    p = result.fitted.parameters
    expected = p["churn_rate__const"] + p["churn_rate__nps_lag2"] * frame["nps"].shift(2).iloc[-5:]
    np.testing.assert_allclose(result.predicted["churn_rate"], expected, rtol=1e-12)


def test_bad_holdouts() -> None:
    tree = Tree.from_formulas(SPEC)
    with pytest.raises(OptionError, match="positive integer"):
        kpitree.backtest(tree, data(), holdout=0)
    with pytest.raises(OptionError, match="leaves no rows"):
        kpitree.backtest(tree, data(10), holdout=10)
