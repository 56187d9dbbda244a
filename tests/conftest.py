"""Shared fixtures: small hand-computable trees and the bundled company."""

from __future__ import annotations

import os

import matplotlib
import pytest
from hypothesis import settings

import kpitree

matplotlib.use("Agg")

FUNNEL = """
# a B2B funnel from visits to revenue
revenue = new_customers * deal_size
new_customers = sqls * win_rate
sqls = mqls * sql_rate
mqls = leads * mql_rate
leads = visits * request_rate
visits = sns + search + ads
"""


@pytest.fixture
def funnel() -> kpitree.Tree:
    return kpitree.Tree.from_formulas(
        FUNNEL,
        owners={"leads": "Marketing", "sqls": "Inside Sales", "win_rate": "Field Sales"},
        bounds={"win_rate": (0, 1), "sql_rate": (0, 1), "request_rate": (0, 1)},
        baselines={
            "sns": 1000,
            "search": 3000,
            "ads": 1000,
            "request_rate": 0.02,
            "mql_rate": 0.5,
            "sql_rate": 0.4,
            "win_rate": 0.25,
            "deal_size": 2_000_000,
        },
    )


@pytest.fixture(scope="session")
def company() -> kpitree.Tree:
    return kpitree.datasets.load_b2b()


# CI runs the property tests on a fixed seed, so that a run is reproducible and a rare
# example cannot turn an unrelated change red; local runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
