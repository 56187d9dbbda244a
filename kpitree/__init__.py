"""kpitree: causal modeling of company-wide KPI trees."""
from .errors import (
    CycleError,
    DataError,
    DataWarning,
    FormulaError,
    KpiTreeError,
    KpiTreeWarning,
    ModelFileError,
    SpecError,
    UnknownNodeError,
)
from .evaluate import evaluate
from .tree import Node, Tree

__version__ = "0.1.0"
