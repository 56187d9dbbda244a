"""The design of one regression link: response and predictors as checked numpy arrays.

Built straight from the data's columns with numpy (a Fortran-ordered matrix, constant
first), because a link is fitted in about a millisecond and pandas bookkeeping would
cost several. Every check names the link, the column and the first offending rows.

>>> import pandas as pd
>>> from kpitree.links import parse_link
>>> data = pd.DataFrame({"sqls": [10.0, 12, 15, 11], "calls": [100.0, 120, 150, 90]})
>>> design = build_design(parse_link("sqls ~ lag(calls, 1)"), "sqls", data)
>>> design.names, design.x.shape, list(design.rows)
(('const', 'calls_lag1'), (3, 2), [1, 2, 3])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import DataError, FitError
from .links import Link

__all__ = ["Design", "build_design", "require"]

_SHOWN_ROWS = 5


@dataclass(frozen=True)
class Design:
    """Response ``y`` and design ``x`` (constant first) on the usable ``rows``."""

    y: np.ndarray
    x: np.ndarray
    names: tuple[str, ...]  # the columns of x: "const", then one per term
    rows: pd.Index
    singular_values: np.ndarray

    @property
    def condition_number(self) -> float:
        """Largest over smallest singular value of ``x``."""
        return float(self.singular_values[0] / self.singular_values[-1])


def build_design(link: Link, node: str, data: pd.DataFrame, groups: str | None = None) -> Design:
    """The checked design of ``link`` explaining ``node`` (see the module doc).

    Rows without a value for a lagged term (the first ``lag`` rows, per group with
    ``groups``) are dropped; the log-log transform is applied.
    """
    columns = {name: _column(data, node, name) for name in dict.fromkeys([node, *link.predictors])}
    n = len(data)
    terms = [
        _shifted(columns[term.name], term.lag, data[groups] if groups else None)
        for term in link.terms
    ]
    usable = np.ones(n, dtype=bool)
    for values in terms:
        usable &= ~np.isnan(values)
    rows = data.index[usable]
    y = columns[node][usable]
    x = np.empty((len(y), len(terms) + 1), order="F")
    x[:, 0] = 1.0
    for j, values in enumerate(terms, start=1):
        x[:, j] = values[usable]
    names = ("const", *(term.column for term in link.terms))
    _check_ranges(link, node, y, x, names, rows)
    if link.transform == "log-log":
        y, x[:, 1:] = np.log(y), np.log(x[:, 1:])
    return _checked(node, Design(y, x, names, rows, _singular_values(x)))


def _column(data: pd.DataFrame, node: str, name: str) -> np.ndarray:
    if name not in data.columns:
        message = f"link {node!r}: column {name!r} is missing from the data"
        raise DataError(message, node=node, column=name, reason="missing")
    try:
        values = data[name].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        message = f"link {node!r}: column {name!r} is not numeric"
        raise DataError(message, node=node, column=name, reason="not numeric") from None
    missing = np.isnan(values)
    if missing.any():
        rows = list(data.index[missing][:_SHOWN_ROWS])
        count = int(missing.sum())
        message = f"link {node!r}: column {name!r} has NaN in {count} row(s), first {rows}"
        raise DataError(message, node=node, column=name, rows=rows, reason="nan")
    return values


def _shifted(values: np.ndarray, lag: int, groups: pd.Series | None) -> np.ndarray:
    """``values`` ``lag`` rows earlier (within each group), NaN where there is none."""
    if not lag:
        return values
    if groups is not None:
        series = pd.Series(values, index=groups.index)
        return series.groupby(groups).shift(lag).to_numpy(dtype=np.float64)
    shifted = np.full(values.shape, np.nan)
    shifted[lag:] = values[:-lag]
    return shifted


def _check_ranges(
    link: Link, node: str, y: np.ndarray, x: np.ndarray, names: tuple[str, ...], rows: pd.Index
) -> None:
    rule = f"a {link.transform} link:"
    if link.transform == "logit":
        require((y > 0) & (y < 1), node, node, rows, f"{rule} the response must lie in (0, 1)")
    elif link.transform == "log":
        require(y >= 0, node, node, rows, f"{rule} the response must be >= 0")
    elif link.transform == "log-log":
        require(y > 0, node, node, rows, f"{rule} the response must be > 0")
        for j, name in enumerate(names[1:], start=1):
            require(x[:, j] > 0, node, name, rows, f"{rule} predictors must be > 0")


def require(ok: np.ndarray, node: str, column: str, rows: pd.Index, reason: str) -> None:
    """A ``DataError`` naming the link, column and first rows where ``ok`` fails."""
    if not ok.all():
        bad = list(rows[~ok][:_SHOWN_ROWS])
        message = f"link {node!r}: {reason}; column {column!r} breaks it in rows {bad}"
        raise DataError(message, node=node, column=column, rows=bad, reason="out of range")


def _singular_values(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return np.array([1.0, 0.0])
    return np.linalg.svd(x, compute_uv=False)


def _checked(node: str, design: Design) -> Design:
    n, k = design.x.shape
    if n <= k:
        message = f"link {node!r}: {n} usable rows for {k} coefficients; need more than {k}"
        raise FitError(message, link=node)
    constant = design.x[:, 1:].min(axis=0) == design.x[:, 1:].max(axis=0)
    if constant.any():
        name = design.names[1 + int(np.argmax(constant))]
        raise FitError(f"link {node!r}: predictor {name!r} is constant", link=node, column=name)
    s = design.singular_values
    rank = int((s > s[0] * max(n, k) * np.finfo(float).eps).sum())  # numpy's matrix_rank rule
    if rank < k:
        message = f"link {node!r}: predictors are perfectly collinear ({k} columns, rank {rank})"
        raise FitError(message, link=node, column=_collinear(design))
    return design


def _collinear(design: Design) -> str | None:
    """The first predictor that the ones before it explain exactly."""
    for i in range(2, design.x.shape[1] + 1):
        if np.linalg.matrix_rank(design.x[:, :i]) < i:
            return design.names[i - 1]
    return None  # pragma: no cover - called only when the rank is short
