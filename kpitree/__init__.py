"""kpitree: causal modeling of company-wide KPI trees.

Declare a tree of KPI identities, evaluate it fast over many rows, run what-if
scenarios, and share it as a model file.

>>> import kpitree
>>> tree = kpitree.Tree.from_formulas('''
...     new_customers = sqls * win_rate
...     sqls = mqls * sql_rate
... ''', baselines={"mqls": 200, "sql_rate": 0.4, "win_rate": 0.25})
>>> float(kpitree.evaluate(tree)["new_customers"].iloc[0])
20.0
"""

from importlib import import_module
from typing import Any

from . import errors
from .allocation import Allocation, allocate
from .attribution import Attribution, attribute
from .backcasting import Backcast, backcast
from .backtest import Backtest, backtest
from .bottlenecks import Bottlenecks, bottlenecks
from .errors import (
    CycleError,
    DataError,
    DataWarning,
    FitError,
    FitWarning,
    FormulaError,
    KpiTreeError,
    KpiTreeWarning,
    ModelFileError,
    OptionError,
    ScenarioError,
    SpecError,
    UnknownNodeError,
)
from .evaluate import evaluate
from .fitting import FittedTree, fit
from .global_sensitivity import morris, sobol
from .integrated import IntegratedKPI, integrated_kpi
from .io import load, save
from .links import with_lags
from .quality import DataQuality, check_data
from .results import Elasticities, MonteCarlo, MorrisIndices, SobolIndices, TeamRanking, Tornado
from .scenario import scenarios, what_if
from .sensitivity import elasticities, monte_carlo, tornado
from .targets import GoalSeek, goal_seek
from .teams import rank_teams
from .tree import Node, Tree

__version__ = "0.1.0"

__all__ = [
    "Allocation",
    "Attribution",
    "Backcast",
    "Backtest",
    "Bottlenecks",
    "CycleError",
    "DataError",
    "DataQuality",
    "DataWarning",
    "Elasticities",
    "FitError",
    "FitWarning",
    "FittedTree",
    "FormulaError",
    "GoalSeek",
    "IntegratedKPI",
    "KpiTreeError",
    "KpiTreeWarning",
    "ModelFileError",
    "MonteCarlo",
    "MorrisIndices",
    "Node",
    "OptionError",
    "ScenarioError",
    "SobolIndices",
    "SpecError",
    "TeamRanking",
    "Tornado",
    "Tree",
    "UnknownNodeError",
    "__version__",
    "allocate",
    "attribute",
    "backcast",
    "backtest",
    "bottlenecks",
    "check_data",
    "datasets",
    "elasticities",
    "errors",
    "evaluate",
    "fit",
    "goal_seek",
    "integrated_kpi",
    "load",
    "monte_carlo",
    "morris",
    "plot",
    "rank_teams",
    "save",
    "scenarios",
    "sobol",
    "tornado",
    "what_if",
    "with_lags",
]

_LAZY = {"plot", "datasets"}  # matplotlib and the bundled data load on first use


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kpitree' has no attribute {name!r}")
