"""Backtest a tree's links: fit on all but the last periods, predict them, score.

Each fitted link predicts its node from the observed predictors of the held-out
periods (one step ahead, as a consultant would use it next month); the top KPI is
predicted through the whole fitted tree from the observed levers, so that errors of
the links add up as they would in use.

>>> import numpy as np, pandas as pd, kpitree
>>> rng = np.random.default_rng(1)
>>> data = pd.DataFrame({"calls": rng.uniform(100, 200, 40), "win_rate": 0.2})
>>> data["sqls"] = 0.3 * data["calls"] + rng.normal(0, 1, 40)
>>> data["wins"] = data["sqls"] * data["win_rate"]
>>> tree = kpitree.Tree.from_formulas("wins = sqls * win_rate\\nsqls ~ calls")
>>> result = kpitree.backtest(tree, data, holdout=6)
>>> result.to_frame().loc["wins", "n"].item(), bool(result.to_frame().loc["sqls", "mape"] < 0.05)
(6, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .display import frame_html
from .errors import DataError, OptionError
from .evaluate import evaluate
from .fitting import FittedTree, fit
from .links import with_lags
from .tree import Tree

__all__ = ["Backtest", "backtest"]


@dataclass(frozen=True)
class Backtest:
    """Held-out predictions and their errors, per fitted link and for the top KPI."""

    metrics: pd.DataFrame  # index node: n, mape, rmse
    predicted: pd.DataFrame  # held-out rows x scored nodes
    actual: pd.DataFrame
    fitted: FittedTree  # the tree fitted on the training rows

    def to_frame(self) -> pd.DataFrame:
        """n, MAPE (a fraction) and RMSE per scored node."""
        return self.metrics

    def __repr__(self) -> str:
        return f"Backtest over {len(self.actual)} held-out rows\n{self.metrics.to_string()}"

    def _repr_html_(self) -> str:
        return frame_html(self.metrics.round(6), f"Backtest over {len(self.actual)} held-out rows")


def backtest(
    tree: Tree, data: pd.DataFrame, *, holdout: int, target: str | None = None, **fit_options: Any
) -> Backtest:
    """Fit on all but the last ``holdout`` rows of ``data`` and score their predictions.

    ``target`` is the KPI predicted through the whole tree (the tree's top by default);
    ``fit_options`` go to :func:`kpitree.fit`. MAPE is a fraction (0.05 is 5%).
    """
    if not isinstance(holdout, int) or holdout < 1:
        raise OptionError(f"holdout must be a positive integer, got {holdout!r}", option="holdout")
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a DataFrame, not {type(data).__name__}")
    if holdout >= len(data):
        message = f"holdout ({holdout}) leaves no rows to fit on ({len(data)} rows)"
        raise OptionError(message, option="holdout")
    target = tree.top if target is None else target
    fitted = fit(tree, data.iloc[:-holdout], **fit_options)
    inputs = with_lags(fitted, data, groups=fit_options.get("groups")).iloc[-holdout:]
    nodes = [*fitted.fits, *([target] if target not in fitted.fits else [])]
    predicted = pd.concat(
        [_one_step(fitted, node, inputs) for node in fitted.fits]
        + ([evaluate(fitted, inputs, nodes=[target])] if target not in fitted.fits else []),
        axis=1,
    )[nodes]
    actual = data.iloc[-holdout:][nodes]
    return Backtest(_metrics(predicted, actual), predicted, actual, fitted)


def _one_step(fitted: FittedTree, node: str, inputs: pd.DataFrame) -> pd.DataFrame:
    """The link's prediction from the observed values of its own predictors."""
    terms = [term.column for term in fitted.fits[node].link.terms]
    return evaluate(fitted, inputs[terms], nodes=[node])


def _metrics(predicted: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    error = predicted - actual
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = (error / actual).abs().where(actual != 0)
    metrics = pd.DataFrame(
        {
            "n": error.notna().sum(),
            "mape": ape.mean(),
            "rmse": np.sqrt((error**2).mean()),
        }
    )
    metrics.index.name = "node"
    return metrics
