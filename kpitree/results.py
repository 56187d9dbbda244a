"""Result objects of the analyses: one table behind every repr.

Every result has :meth:`~Result.to_frame` (a pandas object, numbers unrounded),
:meth:`~Result.summary` (the text report, also its ``repr``), an HTML repr for
Jupyter built from the same table, a ``basis`` (what the numbers rest on: method,
ranges, state, uncertainty) and :meth:`~Result.plot` (matplotlib, imported on first
use).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Elasticities",
    "MonteCarlo",
    "MorrisIndices",
    "Result",
    "SobolIndices",
    "TeamRanking",
    "Tornado",
]


class Result:
    """Base of the result classes: text, HTML and plot all come from :meth:`to_frame`."""

    _plot: str = ""  # the kpitree.plot function that draws this result
    basis: Mapping[str, Any]

    def to_frame(self) -> pd.DataFrame:
        raise NotImplementedError

    def title(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        """The title, the basis and the table as text."""
        basis = "\n".join(f"  {key}: {value}" for key, value in self.basis.items())
        table = self.to_frame().to_string(float_format=lambda x: f"{x:.4g}", max_rows=40)
        return f"{self.title()}\n{basis}\n{table}"

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        from .display import frame_html

        shown = self.to_frame().head(200)
        formatted = shown.astype(object).map(_cell)
        caption = self.title() + " | " + "; ".join(f"{k}: {v}" for k, v in self.basis.items())
        return frame_html(formatted, caption)

    def plot(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the result (see :mod:`kpitree.plot`); returns the matplotlib Axes."""
        draw = getattr(import_module("kpitree.plot"), self._plot)
        return draw(self, ax=ax, **kwargs)


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return value


@dataclass(frozen=True, repr=False)
class Elasticities(Result):
    """Derivatives and elasticities of ``target`` with respect to each lever, per row.

    ``derivatives`` and ``elasticity`` are wide frames (a row per state, a column per
    lever); :meth:`to_frame` is indexed by lever for one state (sorted by absolute
    elasticity), by ``(row, lever)`` for several.
    """

    target: str
    target_values: pd.Series
    values: pd.DataFrame
    derivatives: pd.DataFrame
    owners: pd.Series
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "elasticities"

    @property
    def elasticity(self) -> pd.DataFrame:
        """% change of the target per 1% change of each lever (rows x levers)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.values.to_numpy() / self.target_values.to_numpy()[:, None]
            return pd.DataFrame(
                self.derivatives.to_numpy() * ratio,
                index=self.derivatives.index,
                columns=self.derivatives.columns,
            )

    def to_frame(self) -> pd.DataFrame:
        columns = {
            "owner": np.tile(self.owners.to_numpy(dtype=object), len(self.values)),
            "value": self.values.to_numpy().ravel(),
            "derivative": self.derivatives.to_numpy().ravel(),
            "elasticity": self.elasticity.to_numpy().ravel(),
        }
        if len(self.values) == 1:
            frame = pd.DataFrame(columns, index=self.derivatives.columns)
            order = np.argsort(-np.abs(frame["elasticity"].to_numpy()), kind="stable")
            return frame.iloc[order]
        index = pd.MultiIndex.from_product(
            [self.values.index, self.derivatives.columns],
            names=[self.values.index.name or "row", "lever"],
        )
        return pd.DataFrame(columns, index=index)

    def title(self) -> str:
        rows = f" over {len(self.values)} states" if len(self.values) > 1 else ""
        return f"Elasticities of {self.target!r}{rows}"


@dataclass(frozen=True, repr=False)
class Tornado(Result):
    """One-at-a-time swings of ``target``: a row per lever, largest swing first."""

    target: str
    target_value: float
    table: pd.DataFrame
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "tornado"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def title(self) -> str:
        return f"Tornado of {self.target!r} (at {self.target_value:,.6g})"


@dataclass(frozen=True, repr=False)
class SobolIndices(Result):
    """First-order (``S1``) and total (``ST``) Sobol indices with confidence half-widths."""

    target: str
    table: pd.DataFrame
    variance: float
    n_evaluations: int
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "indices"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def title(self) -> str:
        return (
            f"Sobol indices of {self.target!r} "
            f"({self.n_evaluations:,} evaluations, variance {self.variance:.4g})"
        )


@dataclass(frozen=True, repr=False)
class MorrisIndices(Result):
    """Morris elementary effects: ``mu``, ``mu_star`` (with confidence), ``sigma``."""

    target: str
    table: pd.DataFrame
    n_evaluations: int
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "indices"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def title(self) -> str:
        return f"Morris screening of {self.target!r} ({self.n_evaluations:,} evaluations)"


@dataclass(frozen=True, repr=False)
class MonteCarlo(Result):
    """The distribution of ``target`` over ``samples`` (one row per draw)."""

    target: str
    samples: pd.DataFrame
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "distribution"

    QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)

    def quantiles(self, q: Any = QUANTILES) -> pd.Series:
        """Quantiles of the target."""
        return self.samples[self.target].quantile(q)

    def probability(self, threshold: float, *, above: bool = True) -> float:
        """The share of draws where the target is at least (or, ``above=False``, below)
        ``threshold``."""
        values = self.samples[self.target].to_numpy()
        return float(np.mean(values >= threshold if above else values < threshold))

    def to_frame(self) -> pd.DataFrame:
        values = self.samples[self.target]
        stats = {"mean": values.mean(), "std": values.std()}
        stats |= {f"p{round(q * 100)}": v for q, v in self.quantiles().items()}
        frame = pd.DataFrame({self.target: pd.Series(stats)})
        frame.index.name = "statistic"
        return frame

    def title(self) -> str:
        return f"Monte Carlo of {self.target!r} ({len(self.samples):,} draws)"


@dataclass(frozen=True, repr=False)
class TeamRanking(Result):
    """Teams ranked by how much their levers move ``target``, with intervals.

    ``table`` is indexed by team; ``levers`` maps each team to its levers; ``detail``
    is the lever-level analysis the ranking was built from.
    """

    target: str
    target_value: float
    table: pd.DataFrame
    levers: Mapping[str, tuple[str, ...]]
    detail: Result | None = None
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "team_ranking"

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def title(self) -> str:
        return f"Teams ranked by their levers' impact on {self.target!r}"
