"""An integrated KPI: one composite of departmental KPIs that predicts the financial result.

Each component is standardised (z-score), turned by its sign so that up is good, and
weighted; the weights are chosen to predict the outcome ``horizon`` rows ahead and are
judged out of sample, against equal weights and against each component alone. The index
is a kpitree formula over the components, so it can join the tree as a node.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> data = pd.DataFrame(rng.normal(size=(80, 2)), columns=["win_rate", "churn_rate"])
>>> data["revenue"] = 3 * data["win_rate"] - data["churn_rate"] + rng.normal(0, 0.5, 80)
>>> kpi = integrated_kpi(data, ["win_rate", "churn_rate"], "revenue")
>>> kpi.signs.to_dict()
{'win_rate': 1, 'churn_rate': -1}
>>> kpi.weights.round(1).to_dict()
{'win_rate': 0.8, 'churn_rate': 0.2}
>>> bool(kpi.oos_r2["simplex"] > kpi.oos_r2["equal weights"])
True
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from .errors import DataError, OptionError
from .node import NO_OWNER
from .tree import Tree

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["METHODS", "IntegratedKPI", "fold_windows", "integrated_kpi"]

Method = Literal["simplex", "pls", "equal"]
METHODS = ("simplex", "pls", "equal")
EQUAL = "equal weights"


@dataclass(frozen=True, eq=False)
class IntegratedKPI:
    """The fitted integrated KPI; build it with :func:`integrated_kpi`.

    ``weights``, ``signs``, ``means``, ``stds`` and ``teams`` are Series by component;
    ``index = sum(weight * sign * (component - mean) / std)`` over the data rows; ``fit``
    the ``intercept`` and ``slope`` of the outcome on it; ``oos_r2`` the out-of-sample R² of
    the method, ``"equal weights"`` and each ``"single: <component>"``; ``predictions`` the
    forecasts behind them (a row per test row: ``fold``, ``outcome``, ``training mean``).
    """

    name: str
    outcome: str
    method: str
    horizon: int
    weights: pd.Series
    signs: pd.Series
    means: pd.Series
    stds: pd.Series
    teams: pd.Series
    oos_r2: pd.Series
    in_sample_r2: float
    fit: pd.Series
    index: pd.Series
    predictions: pd.DataFrame

    @property
    def team_weights(self) -> pd.Series:
        """The weights summed by team, teams in order of first appearance."""
        return self.weights.groupby(self.teams, sort=False).sum()

    @property
    def formula(self) -> str:
        """The index as kpitree formula text, every number written exactly (``repr``)."""
        terms, frame = [], self.to_frame()
        for name, row in frame[frame["weight"] != 0].iterrows():
            weight, mean, std = (repr(float(row[c])) for c in ("weight", "mean", "std"))
            centred = f"{name} - {mean}" if row["sign"] > 0 else f"{mean} - {name}"
            terms.append(f"{weight} * ({centred}) / {std}")
        return " + ".join(terms)

    def add_to(self, tree: Tree) -> Tree:
        """A new tree with the index as node ``name``, defined by :attr:`formula`."""
        if not isinstance(tree, Tree):
            raise OptionError(f"tree must be a Tree, not {type(tree).__name__}", option="tree")
        text = f"Integrated KPI ({self.method} weights) predicting {self.outcome}"
        text += f" {self.horizon} period(s) ahead"
        return tree.with_formula(self.name, self.formula).with_metadata(self.name, description=text)

    def to_frame(self) -> pd.DataFrame:
        """One row per component: sign, weight, team, mean, std and its own OOS R²."""
        single = [self.oos_r2[f"single: {name}"] for name in self.weights.index]
        columns = [self.signs, self.weights, self.teams, self.means, self.stds]
        frame = pd.concat(columns, axis=1).assign(oos_r2=single)
        frame.index.name = "component"
        return frame

    def summary(self) -> str:
        """A text report: the fit, the out-of-sample comparison and the weights."""
        table = self.to_frame().to_string(float_format=lambda x: f"{x:.4g}")
        teams = ", ".join(f"{team} {weight:.2f}" for team, weight in self.team_weights.items())
        return f"{self._title()}\n{table}\nteam weights: {teams}"

    __repr__ = summary

    def plot(self, ax: Axes | None = None) -> Axes:
        """Bars of the weights coloured by team, titled with the out-of-sample R²."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.5 * len(self.weights) + 1.5))
        rows = np.arange(len(self.weights))
        for i, team in enumerate(dict.fromkeys(self.teams)):
            mine = (self.teams == team).to_numpy()
            ax.barh(rows[mine], self.weights[mine], color=f"C{i % 10}", label=team)
        ax.set_yticks(rows, [f"{n} ({s:+d})" for n, s in self.signs.items()])
        ax.invert_yaxis()
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set(xlabel="weight", title=self._r2_text())
        ax.legend(fontsize="small", loc="best")
        return ax

    def _repr_html_(self) -> str:
        from .display import frame_html

        shown, numbers = self.to_frame(), ["weight", "mean", "std", "oos_r2"]
        shown = shown.astype(object).assign(**shown[numbers].map(lambda v: f"{v:.4g}"))
        return frame_html(shown, self._title())

    def _title(self) -> str:
        head = f"IntegratedKPI {self.name!r} ({self.method} weights) predicting {self.outcome}"
        return f"{head} {self.horizon} row(s) ahead: {self._r2_text()}"

    def _r2_text(self) -> str:
        singles = self.oos_r2.drop([self.method, EQUAL], errors="ignore")
        text = f"out-of-sample R² {self.oos_r2[self.method]:.3f}, equal weights"
        return f"{text} {self.oos_r2[EQUAL]:.3f}, best {singles.idxmax()} {singles.max():.3f}"


def integrated_kpi(
    data: pd.DataFrame,
    components: Sequence[str],
    outcome: str,
    *,
    method: Method = "simplex",
    horizon: int = 0,
    signs: Mapping[str, int] | None = None,
    owners: Mapping[str, str] | None = None,
    tree: Tree | None = None,
    folds: int = 5,
    name: str = "integrated_kpi",
) -> IntegratedKPI:
    """Build one integrated KPI from ``components`` that predicts ``outcome``.

    ``data`` has one row per period, in time order; row ``t``'s components predict the
    outcome of row ``t + horizon`` (the last ``horizon`` rows are not fitted but get an
    index value). Signs follow the correlation with the outcome unless given
    (``signs={"churn_rate": -1}``); teams come from ``owners``, else ``tree.owner``. Methods:

    - ``"simplex"``: non-negative weights summing to 1 that best fit
      ``outcome ~ a + b * index``: non-negative least squares of the centred outcome on
      the signed z-scores (``scipy.optimize.nnls``), normalised; exact, since ``b * w``
      with ``b > 0`` and ``w`` on the simplex covers the non-negative orthant;
    - ``"pls"``: the first partial-least-squares weight vector, ``Z'y`` for signed
      z-scores ``Z`` and the centred outcome ``y``, scaled to ``sum(|w|) = 1``;
    - ``"equal"``: ``1 / k`` each, the benchmark.

    Out-of-sample R² comes from expanding-window cross-validation with ``folds`` test
    blocks at the end (:func:`fold_windows`): each block is predicted by a model (signs,
    z-scores, weights, ``a``, ``b``) fitted only on rows whose outcome was known before
    the block starts, and ``R² = 1 - SSE / SST`` pooled over the blocks, SST against
    each block's training mean. The reported model is then fitted on all rows.

    >>> import kpitree
    >>> history = kpitree.datasets.simulate_b2b()
    >>> kpi = integrated_kpi(history, ["mqls", "win_rate"], "revenue", horizon=1)
    >>> kpi.oos_r2.index.tolist()
    ['simplex', 'equal weights', 'single: mqls', 'single: win_rate']
    """
    spec = _Spec(components, outcome, method, horizon, folds, signs, name)
    _check(tree is None or isinstance(tree, Tree), "tree", "tree must be a kpitree Tree")
    _check(owners is None or isinstance(owners, Mapping), "owners", "owners must be a mapping")
    known = {c: tree.owner(c) for c in spec.components if tree is not None and c in tree}
    known.update(owners or {})
    x, y = _read(data, spec)
    y = y[horizon:]  # row t's target: the outcome `horizon` rows later
    predictions = _cross_validate(x, y, spec)
    predictions.index = data.index[predictions.index]
    model = _Model.fit(x[: len(y)], y, method, spec.given)

    def series(values: Any, label: str) -> pd.Series:
        return pd.Series(values, index=list(spec.components), name=label)

    return IntegratedKPI(
        name=name,
        outcome=outcome,
        method=method,
        horizon=horizon,
        weights=series(model.weights, "weight"),
        signs=series(model.signs.astype(int), "sign"),
        means=series(model.means, "mean"),
        stds=series(model.stds, "std"),
        teams=series([known.get(c) or NO_OWNER for c in spec.components], "team"),
        oos_r2=_oos_r2(predictions),
        in_sample_r2=_r2(y, model.predict(x[: len(y)]), y.mean()),
        fit=pd.Series({"intercept": model.intercept, "slope": model.slope}, name="fit"),
        index=pd.Series(model.index(x), index=data.index, name=name),
        predictions=predictions,
    )


# --- the model fitted on one window -------------------------------------------------


@dataclass(frozen=True)
class _Model:
    signs: np.ndarray
    means: np.ndarray
    stds: np.ndarray
    weights: np.ndarray
    intercept: float = 0.0
    slope: float = 0.0

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, method: str, given: np.ndarray) -> _Model:
        """Signs, z-scores, weights, then ``y ~ a + b * index``, on these rows only."""
        means, stds = x.mean(axis=0), x.std(axis=0, ddof=1)
        centred = y - y.mean()
        signs = np.where(given != 0, given, np.where(centred @ (x - means) < 0, -1.0, 1.0))
        weights = _weights(signs * (x - means) / stds, centred, method)
        unfitted = cls(signs, means, stds, weights)
        return cls(signs, means, stds, weights, *_ols(unfitted.index(x), y))

    def index(self, x: np.ndarray) -> np.ndarray:
        """The index, term by term in the order the formula is evaluated (bit for bit)."""
        total = np.zeros(len(x))
        for j in np.flatnonzero(self.weights):
            centred = x[:, j] - self.means[j] if self.signs[j] > 0 else self.means[j] - x[:, j]
            total = total + self.weights[j] * centred / self.stds[j]
        return total

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * self.index(x)


def _weights(z: np.ndarray, centred: np.ndarray, method: str) -> np.ndarray:
    equal = np.full(z.shape[1], 1 / z.shape[1])
    if method == "simplex":
        beta = nnls(z, centred)[0]
        return beta / beta.sum() if beta.sum() > 0 else equal
    if method == "pls":
        direction = z.T @ centred
        scale = np.abs(direction).sum()
        return direction / scale if scale > 0 else equal
    return equal


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    dx = x - x.mean()
    spread = dx @ dx
    slope = float(dx @ (y - y.mean()) / spread) if spread > 0 else 0.0
    return float(y.mean() - slope * x.mean()), slope


def _r2(y: np.ndarray, predicted: np.ndarray, benchmark: np.ndarray | float) -> float:
    total = float(np.sum((y - benchmark) ** 2))
    return 1 - float(np.sum((y - predicted) ** 2)) / total if total > 0 else np.nan


def fold_windows(rows: int, horizon: int, folds: int, first: int = 1) -> list[tuple[int, ...]]:
    """``(train_end, test_start, test_end)`` of each fold over ``rows`` rows with a target.

    ``folds`` equal test blocks fill the end, of ``rows // (folds + 1)`` rows, fewer if the
    first fold would train on fewer than ``first`` rows. A fold trains on the rows before
    its block but the last ``horizon``, whose targets lie in the block (not yet known).

    >>> fold_windows(12, horizon=1, folds=3, first=4)
    [(5, 6, 8), (7, 8, 10), (9, 10, 12)]
    """
    size = min(rows // (folds + 1), (rows - horizon - first) // folds)
    starts = [rows - (folds - i) * size for i in range(folds)]
    return [(start - horizon, start, start + size) for start in starts]


def _windows(rows: int, spec: _Spec) -> list[tuple[int, ...]]:
    # the first fold trains on at least k + 2 rows: more than k - 1 free weights, a and b
    return fold_windows(rows, spec.horizon, spec.folds, len(spec.components) + 2)


def _cross_validate(x: np.ndarray, y: np.ndarray, spec: _Spec) -> pd.DataFrame:
    """Out-of-sample forecasts of each test row: the method, equal weights, each single."""
    blocks = []
    for fold, (train_end, start, end) in enumerate(_windows(len(y), spec)):
        xt, yt, xs = x[:train_end], y[:train_end], x[start:end]
        block = {"fold": fold, "outcome": y[start:end], "training mean": yt.mean()}
        block[spec.method] = _Model.fit(xt, yt, spec.method, spec.given).predict(xs)
        block[EQUAL] = _Model.fit(xt, yt, "equal", spec.given).predict(xs)
        for j, name in enumerate(spec.components):
            intercept, slope = _ols(xt[:, j], yt)
            block[f"single: {name}"] = intercept + slope * xs[:, j]
        blocks.append(pd.DataFrame(block, index=range(start, end)))
    return pd.concat(blocks)


def _oos_r2(predictions: pd.DataFrame) -> pd.Series:
    """Pooled ``1 - SSE / SST`` of every model column, SST against the training means."""
    y, benchmark = predictions["outcome"].to_numpy(), predictions["training mean"].to_numpy()
    models = predictions.columns[3:]
    values = [_r2(y, predictions[m].to_numpy(), benchmark) for m in models]
    return pd.Series(values, index=models, name="oos_r2")


# --- input checks ---------------------------------------------------------------------


def _check(ok: object, option: str, message: str) -> None:
    if not ok:
        raise OptionError(message, option=option)


@dataclass(frozen=True)
class _Spec:
    """The options, checked; ``given`` is +1/-1 where a sign is given, 0 where inferred."""

    components: Sequence[str]
    outcome: str
    method: str
    horizon: int
    folds: int
    signs: Mapping[str, int] | None
    name: str
    given: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        message = f"method must be one of {METHODS}, not {self.method!r}"
        _check(self.method in METHODS, "method", message)
        for option, value, low in (("horizon", self.horizon, 0), ("folds", self.folds, 1)):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
            _check(ok, option, f"{option} must be an integer >= {low}, not {value!r}")
        names = self.components
        ok = isinstance(names, Sequence) and not isinstance(names, str) and len(names) > 0
        _check(ok, "components", "components must be a non-empty list of column names")
        _check(len(set(names)) == len(names), "components", "components listed twice")
        _check(self.outcome not in names, "outcome", f"{self.outcome!r} is also a component")
        ok = isinstance(self.name, str) and self.name.isidentifier() and self.name not in names
        _check(ok, "name", f"name must be a node name and not a component: {self.name!r}")
        object.__setattr__(self, "components", tuple(names))
        object.__setattr__(self, "given", _given_signs(self.signs, self.components))


def _given_signs(signs: object, components: Sequence[str]) -> np.ndarray:
    signs = {} if signs is None else signs
    _check(isinstance(signs, Mapping), "signs", "signs must map components to +1 or -1")
    for key, value in signs.items():  # type: ignore[attr-defined]
        ok = key in components and not isinstance(value, bool) and value in (1, -1)
        _check(ok, "signs", f"signs must map components to +1 or -1, got {key!r}: {value!r}")
    return np.array([float(signs.get(c, 0)) for c in components])  # type: ignore[attr-defined]


def _read(data: object, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """The components as a (rows, k) array and the outcome, checked."""
    if not isinstance(data, pd.DataFrame):
        message = f"data must be a DataFrame, not {type(data).__name__}"
        raise DataError(message, reason="not a table")
    k, horizon, folds = len(spec.components), spec.horizon, spec.folds
    needed = (k + 2) + horizon + folds + horizon  # training, gap, tests, no future outcome
    if len(data) < needed:
        message = f"{len(data)} rows are too few for folds={folds}, horizon={horizon} and {k}"
        raise DataError(f"{message} components: at least {needed} are needed", reason="rows")
    first = _windows(len(data) - horizon, spec)[0][0]  # the first fold's training rows
    x = [_column(data, name, first) for name in spec.components]
    return np.column_stack(x), _column(data, spec.outcome, len(data))


def _column(data: pd.DataFrame, name: str, first: int) -> np.ndarray:
    if name not in data.columns:
        raise DataError(f"column {name!r} is missing from the data", column=name, reason="missing")
    try:
        values = np.asarray(data[name], dtype=float)
    except (TypeError, ValueError):
        message = f"column {name!r} is not numeric"
        raise DataError(message, column=name, reason="not numeric") from None
    bad = ~np.isfinite(values)
    if bad.any():
        rows: list[Hashable] = list(data.index[bad][:5])
        message = f"column {name!r} has NaN or infinite values at row(s) {rows}"
        raise DataError(message, column=name, rows=rows, reason="nan")
    if np.ptp(values[:first]) == 0:
        where = (
            f" in the first fold's {first} training rows; use fewer folds" if np.ptp(values) else ""
        )
        raise DataError(f"column {name!r} is constant{where}", column=name, reason="constant")
    return values
