"""The bundled B2B company: its model file and a seeded simulator of its history.

The simulator draws 36 (by default) months of every lever: request-page visits by
channel with trend, seasonality (a spring and an autumn peak) and noise; funnel
rates that wander around their baselines on the logit scale (so they stay in
(0, 1)); deal size and ARPA drifting slowly upwards. The customer base carries over:
``customers_start`` of a month is the previous month's retained plus new customers.
Every computed node is then evaluated from the levers with the tree itself, so each
row satisfies every identity exactly.

>>> history = simulate_b2b(periods=3, seed=1)
>>> list(history.index.astype(str))
['2023-01', '2023-02', '2023-03']
>>> bool((history["leads"] == history["request_page_visits"] * history["request_rate"]).all())
True
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..evaluate import evaluate
from ..io import load
from ..tree import Tree

__all__ = ["B2B_MODEL", "load_b2b", "simulate_b2b"]

#: the model file of the bundled company
B2B_MODEL = resources.files("kpitree.datasets").joinpath("b2b_company.yaml")

# channel -> (monthly growth, seasonal amplitude, noise sd on the log scale)
_CHANNELS = {
    "sns_visits": (0.015, 0.10, 0.12),
    "search_visits": (0.008, 0.08, 0.06),
    "ad_visits": (0.004, 0.15, 0.10),
}
# rate -> sd of its monthly logit-scale step
_RATES = {
    "request_rate": 0.05,
    "mql_rate": 0.04,
    "appointment_rate": 0.05,
    "sql_rate": 0.04,
    "win_rate": 0.06,
    "churn_rate": 0.08,
    "expansion_rate": 0.08,
}
# value lever -> (monthly drift, noise sd on the log scale)
_VALUES = {"deal_size": (0.003, 0.04), "arpa": (0.002, 0.005)}


def load_b2b() -> Tree:
    """The bundled B2B company's KPI tree (25 nodes, four teams, revenue on top)."""
    with resources.as_file(B2B_MODEL) as path:
        return load(path)


def simulate_b2b(periods: int = 36, *, seed: int = 0, start: str = "2023-01") -> pd.DataFrame:
    """Monthly history of every node of :func:`load_b2b`, one row per month.

    Identities hold exactly in every row. The same ``seed`` gives the same history.
    """
    if periods < 1:
        raise OptionError(f"periods must be at least 1, got {periods}", option="periods")
    tree = load_b2b()
    rng = np.random.default_rng(seed)
    index = pd.period_range(start=start, periods=periods, freq="M", name="period")
    months = np.arange(periods)
    levers: dict[str, np.ndarray] = {}
    for name, (growth, amplitude, noise) in _CHANNELS.items():
        levers[name] = _channel(tree, name, months, index, growth, amplitude, noise, rng)
    for name, step in _RATES.items():
        levers[name] = _wandering_rate(_baseline(tree, name), step, periods, rng)
    for name, (drift, noise) in _VALUES.items():
        shocks = drift + noise * rng.standard_normal(periods)
        levers[name] = _baseline(tree, name) * np.exp(np.cumsum(shocks) - shocks[0])
    new_customers = evaluate(tree, levers, nodes=["new_customers"])["new_customers"]
    levers["customers_start"] = _customer_base(
        _baseline(tree, "customers_start"), levers["churn_rate"], new_customers.to_numpy()
    )
    history = evaluate(tree, pd.DataFrame(levers, index=index))
    return history


def _baseline(tree: Tree, name: str) -> float:
    value = tree.node(name).baseline
    if value is None:  # pragma: no cover - the bundled file sets every baseline
        raise ValueError(f"the bundled model has no baseline for {name!r}")
    return value


def _channel(
    tree: Tree,
    name: str,
    months: np.ndarray,
    index: pd.PeriodIndex,
    growth: float,
    amplitude: float,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    month_of_year = index.month.to_numpy()
    season = amplitude * (np.cos(2 * np.pi * (month_of_year - 3) / 6) > 0.5)
    trend = growth * (months - months[-1])  # the last month sits at the baseline trend
    return _baseline(tree, name) * np.exp(trend + season + noise * rng.standard_normal(months.size))


def _wandering_rate(
    baseline: float, step: float, periods: int, rng: np.random.Generator
) -> np.ndarray:
    """A mean-reverting walk around ``baseline`` on the logit scale."""
    centre = np.log(baseline / (1 - baseline))
    logit = np.empty(periods)
    level = centre
    for t in range(periods):
        level = centre + 0.7 * (level - centre) + step * rng.standard_normal()
        logit[t] = level
    return 1 / (1 + np.exp(-logit))


def _customer_base(first: float, churn_rate: np.ndarray, new_customers: np.ndarray) -> np.ndarray:
    """Customers at each month's start: last month's retained plus new customers.

    Computed with the same float operations as the tree (``churned = start * rate``,
    ``retained = start - churned``) so the carry-over is exact too.
    """
    start = np.empty(churn_rate.size)
    start[0] = first
    for t in range(1, start.size):
        churned = start[t - 1] * churn_rate[t - 1]
        start[t] = (start[t - 1] - churned) + new_customers[t - 1]
    return start
