"""Data quality as a KPI in its own right: :func:`check_data` and :class:`DataQuality`.

:func:`check_data` checks each node's column of a history (missing values, text, values
outside the bounds, constant or stale runs, outliers) and each identity the data can test:
a computed node's observed value against its formula on its observed inputs. A broken
identity is where two departments' systems disagree. Drawing is the last section.

>>> import kpitree
>>> history = kpitree.datasets.simulate_b2b(periods=12)
>>> check_data(kpitree.datasets.load_b2b(), history).score
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from .display import frame_html
from .errors import DataError, OptionError
from .evaluate import Inputs, evaluate_array
from .tree import Tree

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["CHECKS", "DataQuality", "check_data"]

#: check -> severity; checks of equal share are listed in ``issues`` in this order
CHECKS = dict.fromkeys(["not numeric", "missing values", "out of bounds"], "error")
CHECKS |= {"identity broken": "error"}
CHECKS |= dict.fromkeys(["column missing", "constant", "stale", "outliers"], "warning")
_SHARES = {  # check -> (its column in DataQuality.to_frame(), its finding's message)
    "missing values": ("missing_share", "values are missing (NaN, None) or infinite"),
    "not numeric": ("not_numeric_share", "values are text, not numbers: {text}"),
    "out of bounds": ("out_of_bounds_share", "values lie outside [{low:g}, {high:g}]: {values}"),
    "stale": ("stale_share", "values sit in runs of {stale_periods} or more equal values"),
    "outliers": ("outlier_share", "values have a robust z-score above {z:g}: {values}"),
    "identity broken": ("identity_broken_share", "rows break {node} = {formula}, by up to {worst}"),
}
_MAD_SCALE, _MEAN_AD_SCALE = 1.4826, 1.2533  # robust z: MAD, or mean |x - median| if MAD = 0
_SHOWN = 5  # row labels and values quoted in a message

Masks = dict[str, tuple[np.ndarray | None, int]]  # check -> (rows at fault, rows it is of)


class _Finding(NamedTuple):
    node: str
    check: str
    rows: int
    share: float
    message: str
    explained: bool = False  # an identity break that its inputs' breaks explain


@dataclass(frozen=True, eq=False, repr=False)
class DataQuality:
    """What :func:`check_data` found: a table per node, the issues and a score in [0, 1].

    ``extra_columns`` are the data columns that name no node (ignored).
    """

    score: float
    extra_columns: tuple[Hashable, ...]
    n_rows: int
    _table: pd.DataFrame
    _issues: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """One row per node, in tree order: the share, flag and score of every check."""
        return self._table.copy()

    @property
    def issues(self) -> pd.DataFrame:
        """The findings: node, owner, check, severity, rows, share, message; errors first."""
        return self._issues.copy()

    def summary(self, *, max_issues: int = 5) -> str:
        """A few lines of text: the score, the coverage and the first issues."""
        table, issues = self._table, self._issues
        errors = int((issues["severity"] == "error").sum())
        lines = [
            f"data quality {self.score:.3f}: {int(table['present'].sum())} of {len(table)} "
            f"node columns, {self.n_rows} rows; {int(table['identity_checked'].sum())} of "
            f"{int((table['kind'] == 'formula').sum())} identities checked, "
            f"{int((table['identity_broken_share'] > 0).sum())} broken",
            f"{len(issues)} issue(s): {errors} error(s), {len(issues) - errors} warning(s)",
        ]
        for node, check, share in issues[["node", "check", "share"]].head(max_issues).to_numpy():
            lines.append(f"- {node}: {check} ({_percent(share)})")
        if len(issues) > max_issues:
            lines.append(f"- and {len(issues) - max_issues} more (.issues)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{self.summary()}\n{_display(self._table).to_string()}"

    def _repr_html_(self) -> str:
        absent = set(self._table.index[~self._table["present"]])
        return frame_html(_display(self._table), self.summary().splitlines()[0], shaded=absent)

    def plot(self, ax: Axes | None = None) -> Axes:
        """A heat map, nodes x checks, each cell the share of values at fault; the Axes."""
        return _draw(self._table, ax, title=f"data quality {self.score:.3f}")


def check_data(
    tree: Tree,
    data: pd.DataFrame,
    *,
    rtol: float = 1e-6,
    outlier_z: float = 4.0,
    stale_periods: int = 3,
    by: str | None = None,
) -> DataQuality:
    """Check a history of the tree's nodes, column by column and identity by identity.

    ``data`` has a row per period (or period x segment) in time order and a column per
    node it holds; an absent node column is an issue, not an error, and other columns
    are ignored. ``by`` names a column or index level (a segment) within which stale
    runs and outliers are looked for.

    Per node, of all rows: ``missing_share`` (NaN, None, infinite), ``not_numeric_share``
    (text); of the values present: ``out_of_bounds_share``, ``stale_share`` (in runs of
    ``stale_periods`` or more equal values), ``outlier_share`` (``|x - median| /
    (1.4826 MAD) > outlier_z``; 1.2533 mean absolute deviations if the MAD is 0). A node
    defined by a formula (a regression link is a model, not an identity) whose inputs all
    have columns gets its **identity** checked on the ``identity_rows`` where it and its
    inputs are numbers: its formula alone on the observed inputs, so a break never
    spreads to its parents. A row breaks it when ``|observed - formula| > rtol * |formula|``.

    A node's ``score`` is ``(1 - missing - not numeric) * (1 - out of bounds) *
    (1 - identity broken)``, 0 without a column; ``DataQuality.score`` is their mean.
    Stale runs and outliers may be real: they are warnings, not in the score.

    >>> import pandas as pd
    >>> from kpitree import Tree
    >>> tree = Tree.from_formulas("leads = visits * rate", bounds={"rate": (0, 1)})
    >>> data = pd.DataFrame({"visits": [100, 200, 300, 400, 500],
    ...                      "rate": [0.1, 0.1, 0.2, 1.5, 0.1],
    ...                      "leads": [10, 20, 66, 600, 50]})
    >>> quality = check_data(tree, data)
    >>> round(quality.score, 3)
    0.867
    >>> quality.issues[["node", "check", "severity", "share"]]
        node            check severity  share
    0   rate    out of bounds    error    0.2
    1  leads  identity broken    error    0.2
    2  leads         outliers  warning    0.2
    """
    _check_options(data, rtol, outlier_z, stale_periods)
    numbers = {name: _numbers(data, name) for name in tree.nodes if name in data}
    run = _Run(tree, data, numbers, _groups(data, by), rtol, outlier_z, stale_periods)
    for name in numbers:
        run.check(name)
    table = pd.DataFrame(map(run.row, tree), index=pd.Index(tree.nodes, name="node"))
    findings = [finding for name in tree for finding in run.findings(name)]
    extra = tuple(c for c in data.columns if c not in tree and c != by)
    score = float(table["score"].mean())
    return DataQuality(score, extra, len(data), table, _issues(tree, findings))


# --- checks -----------------------------------------------------------------------------


@dataclass
class _Run:
    """One call of :func:`check_data`: its data and options, and the rows at fault."""

    tree: Tree
    data: pd.DataFrame
    numbers: dict[str, tuple[np.ndarray, np.ndarray]]  # node -> (values, text entries)
    groups: list[np.ndarray]
    rtol: float
    outlier_z: float
    stale_periods: int
    masks: dict[str, Masks] = field(default_factory=dict)
    errors: dict[str, np.ndarray] = field(default_factory=dict)  # of identities checked

    def check(self, name: str) -> None:
        """Find the rows at fault in ``name``'s column and, if it can, in its identity."""
        values, text = self.numbers[name]
        finite, bounds = ~np.isnan(values), self.tree.node(name).bounds
        present = int(finite.sum())
        outside = None if bounds is None else (values < bounds[0]) | (values > bounds[1])
        self.masks[name] = {
            "missing values": (~finite & ~text, values.size),
            "not numeric": (text, values.size),
            "out of bounds": (outside, present),
            "stale": (_per_group(_stale, values, self.groups, self.stale_periods), present),
            "outliers": (_per_group(_outliers, values, self.groups, self.outlier_z), present),
        }
        node, children = self.tree.node(name), self.tree.children(name)
        identity = node.formula is not None and node.link is None  # a link is a model
        if identity and children and all(child in self.numbers for child in children):
            broken, self.errors[name] = self._identity(name, children)
            self.masks[name]["identity broken"] = (broken, self.errors[name].size)

    def _identity(self, name: str, children: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Rows breaking ``name``'s formula alone on its observed inputs; the checked errors."""
        inputs = pd.DataFrame({child: self.numbers[child][0] for child in children})
        frame, fixed = Inputs.from_user(inputs), frozenset(children)
        formula = evaluate_array(self.tree, frame, (name,), errors="ignore", fixed=fixed)[0]
        observed = self.numbers[name][0]
        checked = ~np.isnan(observed) & ~np.isnan(inputs.to_numpy()).any(axis=1)
        with np.errstate(all="ignore"):
            gap = np.abs(observed - formula)
            error = np.where(gap == 0, 0.0, gap / np.abs(formula))
        error = np.where(np.isfinite(formula), error, np.inf)
        return checked & ~(error <= self.rtol), error[checked]

    def row(self, name: str) -> dict[str, Any]:
        """``name``'s row of :meth:`DataQuality.to_frame`."""
        masks, error = self.masks.get(name, {}), self.errors.get(name, np.empty(0))
        values = self.numbers[name][0] if name in self.numbers else None
        shares = {c: _share(*masks.get(check, (None, 0))) for check, (c, _) in _SHARES.items()}
        row = {
            "kind": self.tree.node(name).kind,
            "present": values is not None,
            "rows": 0 if values is None else values.size,
            "constant": values is not None and _constant(values),
            **shares,
            "identity_checked": name in self.errors,
            "identity_rows": error.size,
            "identity_max_rel_error": float(error.max()) if error.size else math.nan,
        }
        factors = [shares["missing_share"] + shares["not_numeric_share"]]
        factors += [shares["out_of_bounds_share"], shares["identity_broken_share"]]
        score = np.prod([1 - f for f in factors if not math.isnan(f)]) if row["rows"] else 0.0
        return row | {"score": float(score)}

    def findings(self, name: str) -> list[_Finding]:
        """The findings about ``name``, each with a message for the data's owner."""
        if name not in self.masks:
            message = f"no column {name!r} in the data"
            return [_Finding(name, "column missing", len(self.data), 1.0, message)]
        values, found = self.numbers[name][0], []
        constant = _constant(values)
        for check, (mask, of) in self.masks[name].items():
            if mask is not None and mask.any() and not (constant and check == "stale"):
                found.append(self._finding(name, check, mask, of))
        if constant:
            n, value = int((~np.isnan(values)).sum()), np.nanmax(values)
            found.append(_Finding(name, "constant", n, 1.0, f"all {n} values are {value:g}"))
        return found

    def _finding(self, name: str, check: str, mask: np.ndarray, of: int) -> _Finding:
        node, values = self.tree.node(name), self.numbers[name][0]
        low, high = node.bounds or (math.nan, math.nan)
        context = {
            "text": ", ".join(map(repr, self.data[name].to_numpy()[mask][:_SHOWN])),
            "values": ", ".join(f"{v:g}" for v in values[mask][:_SHOWN]),
            **{"low": low, "high": high, "node": name, "formula": node.formula},
            **{"stale_periods": self.stale_periods, "z": self.outlier_z},
        }
        hint, explained = "", False
        if check == "identity broken":
            context["worst"] = _percent(float(self.errors[name].max()))
            hint, explained = self._shared_breaks(name)
        n, what = int(mask.sum()), _SHARES[check][1].format(**context)
        message = f"{n} of {of} {what}{_at(self.data.index, mask)}{hint}"
        return _Finding(name, check, n, n / of, message, explained)

    def _shared_breaks(self, name: str) -> tuple[str, bool]:
        """Parents and inputs breaking in the same rows: a break shared with a parent points at
        the observed value (the one term both use); one its inputs' breaks cover is explained.
        """
        broken: dict[str, np.ndarray] = {
            n: np.asarray(m["identity broken"][0])
            for n, m in self.masks.items()
            if n in self.errors
        }
        mine = broken[name]
        parents, children = (
            [n for n in names if n in broken and (broken[n] & mine).any()]
            for names in (self.tree.parents(name), self.tree.children(name))
        )
        covered = np.logical_or.reduce([broken[c] for c in children], initial=False)
        explained = bool(children) and not (mine & ~covered).any()
        hint = f"; the same rows break {', '.join(parents)}: check {name}" if parents else ""
        if children:
            hint += f"; the same rows break {', '.join(children)}{' (explaining it)' * explained}"
        return hint, explained


def _check_options(data: Any, rtol: float, outlier_z: float, stale_periods: int) -> None:
    if not isinstance(data, pd.DataFrame):
        message = f"data must be a DataFrame, not {type(data).__name__}"
        raise DataError(message, reason="not a table")
    for option, value, ok in [
        ("rtol", rtol, isinstance(rtol, (int, float)) and rtol >= 0),
        ("outlier_z", outlier_z, isinstance(outlier_z, (int, float)) and outlier_z > 0),
        ("stale_periods", stale_periods, isinstance(stale_periods, int) and stale_periods >= 2),
    ]:
        if not ok:
            raise OptionError(f"{option} cannot be {value!r} (see check_data)", option=option)


def _groups(data: pd.DataFrame, by: str | None) -> list[np.ndarray]:
    """Row positions per segment, each in row order (one group of every row without ``by``)."""
    if by is None:
        return [np.arange(len(data))]
    if by not in data.columns and by not in data.index.names:
        raise OptionError(f"by={by!r} is neither a column nor an index level", option="by")
    key = data[by] if by in data.columns else data.index.get_level_values(by)
    codes, _ = pd.factorize(key, use_na_sentinel=False)
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


def _numbers(data: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Float values (NaN where there is no finite number) and a mask of the text entries."""
    column = data[name]
    if isinstance(column, pd.DataFrame):
        message = f"data has {column.shape[1]} columns named {name!r}"
        raise DataError(message, node=name, column=name, reason="duplicate column")
    if column.dtype.kind in "biuf":  # bool, integer, float (numpy or nullable)
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        text = np.zeros(len(column), dtype=bool)
    else:
        converted = pd.to_numeric(column.astype(object), errors="coerce").to_numpy()
        real = converted.dtype.kind in "biuf"  # not complex numbers
        values = converted.astype(float) if real else np.full(len(column), np.nan)
        text = column.notna().to_numpy() & np.isnan(values)
    return np.where(np.isfinite(values), values, np.nan), text


def _per_group(check: Callable, values: np.ndarray, groups: list, option: float) -> np.ndarray:
    """``check(values, option)`` on each group's present values, in row order."""
    mask = np.zeros(values.size, dtype=bool)
    for positions in groups:
        kept = positions[~np.isnan(values[positions])]
        if kept.size:
            mask[kept] = check(values[kept], option)
    return mask


def _stale(values: np.ndarray, periods: int) -> np.ndarray:
    """True for the values in runs of at least ``periods`` equal consecutive values."""
    run = np.cumsum(np.r_[True, values[1:] != values[:-1]]) - 1
    return np.bincount(run)[run] >= periods


def _outliers(values: np.ndarray, z: float) -> np.ndarray:
    """Robust z-score above ``z`` (MAD scale; the mean absolute deviation if the MAD is 0)."""
    deviation = np.abs(values - np.median(values))
    scale = _MAD_SCALE * np.median(deviation) or _MEAN_AD_SCALE * np.mean(deviation)
    if scale == 0:
        return np.zeros(values.size, dtype=bool)
    return deviation / scale > z


def _constant(values: np.ndarray) -> bool:
    present = values[~np.isnan(values)]
    return bool(present.size >= 2 and present.min() == present.max())


def _share(mask: np.ndarray | None, of: int) -> float:
    return math.nan if mask is None or of == 0 else float(mask.sum()) / of


# --- issues and display -----------------------------------------------------------------


def _issues(tree: Tree, findings: list[_Finding]) -> pd.DataFrame:
    """The findings as a table: errors first, then larger shares, explained breaks after."""
    rank = {check: i for i, check in enumerate(CHECKS)}
    position = {name: i for i, name in enumerate(tree.nodes)}

    def severity(f: _Finding) -> tuple:
        return (CHECKS[f.check] != "error", -f.share, rank[f.check], f.explained, position[f.node])

    columns = ["node", "owner", "check", "severity", "rows", "share", "message"]
    records = [
        (f.node, tree.owner(f.node), f.check, CHECKS[f.check], f.rows, f.share, f.message)
        for f in sorted(findings, key=severity)
    ]
    return pd.DataFrame(records, columns=columns).astype({"rows": int, "share": float})


def _at(index: pd.Index, mask: np.ndarray) -> str:
    """`` (rows a, b and 4 more)``: the labels of the rows at fault."""
    positions = np.flatnonzero(mask)
    labels = [index[int(p)] for p in positions[:_SHOWN]]
    text = ", ".join(" / ".join(map(str, x)) if isinstance(x, tuple) else str(x) for x in labels)
    more = positions.size - _SHOWN
    return f" (rows {text}{f' and {more} more' if more > 0 else ''})"


def _percent(share: float) -> str:
    if not math.isfinite(share):
        return "" if math.isnan(share) else "inf"
    return "0%" if share == 0 else "<0.1%" if share < 0.001 else f"{share:.1%}"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text for the reprs: percents, blank where a check does not apply."""
    shown = pd.DataFrame({"column": np.where(table["present"], "", "absent")}, table.index)
    for check, (column, _) in _SHARES.items():
        shown[check] = table[column].map(_percent)
    shown["max error"] = table["identity_max_rel_error"].map(_percent)
    shown["constant"] = np.where(table["constant"], "yes", "")
    return shown.assign(score=table["score"].map("{:.3f}".format))


# --- drawing (matplotlib, imported on first use) ------------------------------------------


def _draw(table: pd.DataFrame, ax: Axes | None, *, title: str) -> Axes:
    """Nodes x checks, each cell the share at fault (grey: not applicable); the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    columns = [column for column, _ in _SHARES.values()]
    shares = table[columns].to_numpy(dtype=np.float64)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 1.5 + 0.28 * len(table)), layout="constrained")
    cmap = plt.get_cmap("Reds").with_extremes(bad="0.9")
    norm = PowerNorm(0.5, vmin=0, vmax=1)  # small shares still show
    ax.imshow(np.ma.masked_invalid(shares), cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(len(columns)), list(_SHARES), rotation=30, ha="right")
    absent = np.where(table["present"], "", " (no column)")
    ax.set_yticks(range(len(table)), table.index + absent)
    for (i, j), share in np.ndenumerate(shares):
        if share > 0:
            color = "white" if share > 0.4 else "black"  # readable on dark red
            ax.text(j, i, _percent(share), ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title)
    return ax
