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
from functools import cached_property
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
    "number_text",
]


class Result:
    """Base of the result classes: text, HTML and plot all come from :meth:`to_frame`."""

    _plot: str = ""  # the kpitree.plot function that draws this result
    basis: Mapping[str, Any]

    def to_frame(self) -> pd.DataFrame:
        """The result's table (a copy: the result stays as it was)."""
        return self.table.copy()  # type: ignore[attr-defined]

    def title(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        """The title, the basis and the table as text."""
        basis = "\n".join(f"  {key}: {value}" for key, value in self.basis.items())
        table = self.to_frame().to_string(float_format=_number, max_rows=40)
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


def number_text(value: float) -> str:
    """A number in a sentence: ``182,441,088`` for large values, ``0.225`` for small ones."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.6g}"


def _number(value: float) -> str:
    """``152,034,240`` for large values, ``0.2231`` for small ones."""
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _cell(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return _number(float(value))
    return value


@dataclass(frozen=True, repr=False)
class Elasticities(Result):
    """Derivatives and elasticities of ``target`` with respect to each lever, per row.

    ``derivatives``, ``elasticity`` and ``values`` are wide frames (a row per state, a
    column per lever), built on first access from the arrays the engine returned;
    :meth:`to_frame` is indexed by lever for one state (sorted by absolute
    elasticity), by ``(row, lever)`` for several.
    """

    target: str
    index: pd.Index
    levers: tuple[str, ...]
    owner_names: tuple[str | None, ...]
    target_array: np.ndarray = field(repr=False)  # (rows,)
    lever_values: tuple[np.ndarray | float, ...] = field(repr=False)  # per lever
    derivative_array: np.ndarray = field(repr=False)  # (levers, rows)
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "elasticities"

    @property
    def owners(self) -> pd.Series:
        """The owner team of each lever."""
        return pd.Series(self.owner_names, index=self._columns, dtype=object)

    @cached_property
    def target_values(self) -> pd.Series:
        """The target's value per row."""
        return pd.Series(self.target_array, index=self.index, name=self.target)

    @cached_property
    def values(self) -> pd.DataFrame:
        """Each lever's value per row."""
        rows = len(self.index)
        values = np.array([np.broadcast_to(v, rows) for v in self.lever_values]).reshape(-1, rows)
        return self._wide(values)

    @cached_property
    def derivatives(self) -> pd.DataFrame:
        """d target / d lever per row."""
        return self._wide(self.derivative_array)

    @cached_property
    def elasticity(self) -> pd.DataFrame:
        """% change of the target per 1% change of each lever (rows x levers)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.values.to_numpy() / self.target_array[:, None]
            return pd.DataFrame(
                self.derivatives.to_numpy() * ratio, index=self.index, columns=self._columns
            )

    @property
    def _columns(self) -> pd.Index:
        return pd.Index(list(self.levers), name="lever")

    def _wide(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values.T, index=self.index, columns=self._columns, copy=False)

    def to_frame(self) -> pd.DataFrame:
        columns = {
            "owner": np.tile(np.array(self.owner_names, dtype=object), len(self.index)),
            "value": self.values.to_numpy().ravel(),
            "derivative": self.derivatives.to_numpy().ravel(),
            "elasticity": self.elasticity.to_numpy().ravel(),
        }
        if len(self.index) == 1:
            frame = pd.DataFrame(columns, index=self._columns)
            order = np.argsort(-np.abs(frame["elasticity"].to_numpy()), kind="stable")
            return frame.iloc[order]
        index = pd.MultiIndex.from_product(
            [self.index, self._columns], names=[self.index.name or "row", "lever"]
        )
        return pd.DataFrame(columns, index=index)

    def title(self) -> str:
        rows = f" over {len(self.index)} states" if len(self.index) > 1 else ""
        return f"Elasticities of {self.target!r}{rows}"


@dataclass(frozen=True, repr=False)
class Tornado(Result):
    """One-at-a-time swings of ``target``: a row per lever, largest swing first."""

    target: str
    target_value: float
    table: pd.DataFrame
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "tornado"

    def title(self) -> str:
        return f"Tornado of {self.target!r} (at {_number(self.target_value)})"


@dataclass(frozen=True, repr=False)
class SobolIndices(Result):
    """First-order (``S1``) and total (``ST``) Sobol indices with confidence half-widths."""

    target: str
    table: pd.DataFrame
    variance: float
    n_evaluations: int
    basis: Mapping[str, Any] = field(default_factory=dict)
    _plot = "indices"

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

    def title(self) -> str:
        return f"Teams ranked by their levers' impact on {self.target!r}"
