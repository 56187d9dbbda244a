"""The bundled B2B company: its model file and a seeded simulator of its history.

The simulator draws 36 (by default) months of every lever: request-page visits by
channel with trend, seasonality (a spring and an autumn peak) and noise; each team's
leading indicators wandering around their baselines; deal size and ARPA drifting
slowly upwards. Six funnel rates follow their regression links exactly as declared
in the model file, with the true coefficients of :func:`b2b_truth` and a small noise
(sd 0.05) on the logit scale: for example ``logit(win_rate) = const + 4 *
share_3plus_proposals + 2 * demo_rate + noise``, and churn reacts to NPS three months
earlier. The customer base carries over: ``customers_start`` of a month is the
previous month's retained plus new customers. Every computed node is then evaluated
from the levers with the tree itself, so each row satisfies every identity exactly.

>>> history = simulate_b2b(periods=3, seed=1)
>>> list(history.index.astype(str))
['2023-01', '2023-02', '2023-03']
>>> bool((history["leads"] == history["request_page_visits"] * history["request_rate"]).all())
True
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..evaluate import evaluate
from ..io import load
from ..tree import Tree

__all__ = ["B2B_MODEL", "B2B_SLOPES", "b2b_truth", "load_b2b", "simulate_b2b"]

#: the model file of the bundled company
B2B_MODEL = resources.files("kpitree.datasets").joinpath("b2b_company.yaml")

# channel -> (monthly growth, seasonal amplitude, noise sd on the log scale)
_CHANNELS = {
    "sns_visits": (0.015, 0.10, 0.12),
    "search_visits": (0.008, 0.08, 0.06),
    "ad_visits": (0.004, 0.15, 0.10),
}
# rate lever -> sd of its monthly logit-scale step
_RATES = {"expansion_rate": 0.08}
# leading indicator -> (scale: "logit" for shares, "log" for positive amounts, "level"),
# sd of its monthly step on that scale
_INDICATORS = {
    "content_download_rate": ("logit", 0.15),
    "icp_fit_share": ("logit", 0.15),
    "connect_rate": ("logit", 0.12),
    "response_hours": ("log", 0.15),
    "share_3plus_proposals": ("logit", 0.2),
    "demo_rate": ("logit", 0.15),
    "nps": ("level", 4.0),
    "ticket_close_days": ("log", 0.15),
}
#: true slopes of the links in the model file; intercepts make today's indicators
#: give today's rates (see b2b_truth)
B2B_SLOPES = {
    "request_rate": {"content_download_rate": 30.0},
    "mql_rate": {"icp_fit_share": 5.0},
    "appointment_rate": {"connect_rate": 6.0},
    "sql_rate": {"response_hours": -0.3},
    "win_rate": {"share_3plus_proposals": 4.0, "demo_rate": 2.0},
    "churn_rate": {"nps_lag3": -0.04, "ticket_close_days": 0.4},
}
_LINK_NOISE = 0.05  # sd of the noise on the logit scale
# value lever -> (monthly drift, noise sd on the log scale)
_VALUES = {"deal_size": (0.003, 0.04), "arpa": (0.002, 0.005)}


def load_b2b() -> Tree:
    """The bundled B2B company's KPI tree: 33 nodes, four teams, revenue on top.

    Six funnel rates are regression links from leading indicators (not fitted yet).
    """
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
    indicators = {
        name: _indicator(_baseline(tree, name), scale, step, periods + 3, rng)
        for name, (scale, step) in _INDICATORS.items()
    }  # three months of pre-history, for the lagged effect of NPS
    levers.update({name: values[3:] for name, values in indicators.items()})
    predictors = {**levers, "nps_lag3": indicators["nps"][:-3]}
    truth = b2b_truth()
    for node, slopes in B2B_SLOPES.items():
        logit = truth[f"{node}__const"] + sum(b * predictors[x] for x, b in slopes.items())
        logit = logit + _LINK_NOISE * rng.standard_normal(periods)
        levers[node] = 1 / (1 + np.exp(-logit))
    for name, (drift, noise) in _VALUES.items():
        shocks = drift + noise * rng.standard_normal(periods)
        levers[name] = _baseline(tree, name) * np.exp(np.cumsum(shocks) - shocks[0])
    new_customers = evaluate(tree, levers, nodes=["new_customers"])["new_customers"]
    levers["customers_start"] = _customer_base(
        _baseline(tree, "customers_start"), levers["churn_rate"], new_customers.to_numpy()
    )
    history = evaluate(tree, pd.DataFrame(levers, index=index))
    return history


def b2b_truth() -> dict[str, float]:
    """The true coefficients of the bundled company's links, named as fitted.

    Slopes are :data:`B2B_SLOPES`; each intercept is set so that the indicators at
    their baselines give the rate's baseline (today's actual).

    >>> truth = b2b_truth()
    >>> truth["win_rate__share_3plus_proposals"], round(truth["win_rate__const"], 4)
    (4.0, -3.4657)
    """
    tree = load_b2b()
    truth: dict[str, float] = {}
    for node, slopes in B2B_SLOPES.items():
        rate = _baseline(tree, node)
        at_baseline = sum(b * _baseline(tree, x.removesuffix("_lag3")) for x, b in slopes.items())
        truth[f"{node}__const"] = float(np.log(rate / (1 - rate)) - at_baseline)
        truth.update({f"{node}__{x}": b for x, b in slopes.items()})
    return truth


def _indicator(
    baseline: float, scale: str, step: float, periods: int, rng: np.random.Generator
) -> np.ndarray:
    """A mean-reverting walk around ``baseline`` on the logit, log or plain scale."""
    scales: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
        "logit": (lambda v: np.log(v / (1 - v)), lambda z: 1 / (1 + np.exp(-z))),
        "log": (np.log, np.exp),
        "level": (lambda v: v, lambda z: z),
    }
    forward, back = scales[scale]
    centre = forward(baseline)
    walk = np.empty(periods)
    level = centre
    for t in range(periods):
        level = centre + 0.7 * (level - centre) + step * rng.standard_normal()
        walk[t] = level
    return back(walk)


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
