"""Fit every regression link of a tree on history: a new, fitted tree.

Each link is fitted on its own, on the observed values of its node and predictors,
with statsmodels: OLS for ``linear`` and ``log-log`` links, a fractional logit
(binomial GLM, quasi-likelihood) for ``logit`` links on rates in (0, 1), and a Poisson
quasi-likelihood GLM (log link) for ``log`` links on positive counts. Standard errors
are heteroskedasticity- and autocorrelation-robust (Newey-West HAC) by default, as
history is ordered in time; ``cov_type="cluster"`` with ``groups`` clusters them by
segment. The declared tree is never changed: :func:`fit` returns a
:class:`FittedTree` whose fitted links are ordinary formulas over named coefficients
(``tree.parameters``), with the coefficients' covariance kept for uncertainty.

>>> import numpy as np, pandas as pd, kpitree
>>> rng = np.random.default_rng(0)
>>> history = pd.DataFrame({"calls": rng.uniform(100, 200, 48)})
>>> history["sqls"] = 5 + 0.3 * history["calls"] + rng.normal(0, 2, 48)
>>> tree = kpitree.Tree.from_formulas("sqls ~ calls")
>>> fitted = kpitree.fit(tree, history)
>>> round(fitted.parameters["sqls__calls"], 1)
0.3
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from .errors import DataError, FitError, FitWarning, OptionError, warn
from .formula import parse_formula
from .links import Link
from .tree import Node, Tree

__all__ = ["FittedTree", "LinkFit", "fit"]

_COV_TYPES = ("HAC", "cluster", "nonrobust", "HC0", "HC1", "HC2", "HC3")


@dataclass(frozen=True)
class LinkFit:
    """One fitted link: coefficients, their covariance, fit statistics, the raw result."""

    node: str
    link: Link
    names: tuple[str, ...]
    estimates: np.ndarray
    cov: np.ndarray
    nobs: int
    stats: Mapping[str, float]
    warnings: tuple[str, ...]
    result: Any  # the statsmodels results object, for power users (None once loaded)

    def to_dict(self) -> dict[str, Any]:
        """What a model file keeps of the fit (the statsmodels result is not kept)."""
        return {
            "nobs": self.nobs,
            "cov": self.cov.tolist(),
            "stats": {k: None if math.isnan(v) else v for k, v in self.stats.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(
        cls, node: str, link: Link, content: Mapping[str, Any], parameters: Mapping[str, float]
    ) -> LinkFit:
        """The fit saved by :meth:`to_dict`; estimates come from the tree's parameters."""
        names = link.coefficient_names(node)
        missing = [name for name in names if name not in parameters]
        if missing:
            raise FitError(f"fit of {node!r}: parameters {missing} are missing", link=node)
        cov = np.asarray(content["cov"], dtype=float)
        if cov.shape != (len(names), len(names)):
            message = f"fit of {node!r}: covariance must be {len(names)} x {len(names)}"
            raise FitError(message, link=node)
        estimates = np.array([parameters[name] for name in names], dtype=float)
        stats_ = {
            key: math.nan if value is None else float(value)
            for key, value in dict(content.get("stats", {})).items()
        }
        notes = tuple(str(note) for note in content.get("warnings", ()))
        return cls(node, link, names, estimates, cov, int(content["nobs"]), stats_, notes, None)

    def table(self, level: float = 0.95) -> pd.DataFrame:
        """Tidy coefficients: term, estimate, std_err, ci_low, ci_high, p_value."""
        std_err = np.sqrt(np.diag(self.cov))
        quantile = stats.norm.ppf(0.5 + level / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_value = 2 * stats.norm.sf(np.abs(self.estimates / std_err))
        return pd.DataFrame(
            {
                "link": self.node,
                "term": ["const", *(term.column for term in self.link.terms)],
                "parameter": self.names,
                "estimate": self.estimates,
                "std_err": std_err,
                "ci_low": self.estimates - quantile * std_err,
                "ci_high": self.estimates + quantile * std_err,
                "p_value": p_value,
            }
        )


class FittedTree(Tree):
    """A tree whose links are fitted: usable everywhere a :class:`Tree` is.

    ``params`` is the tidy coefficient table, :meth:`summary` the fit statistics per
    link, :meth:`sample_params` draws coefficients from their estimated distribution
    and :meth:`result` gives the statsmodels result of a link.
    """

    _fits: dict[str, LinkFit]

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        fits: Mapping[str, LinkFit],
        name: str | None = None,
        parameters: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(nodes, name=name, parameters=parameters)
        object.__setattr__(self, "_fits", dict(fits))

    @property
    def fits(self) -> Mapping[str, LinkFit]:
        """The :class:`LinkFit` of each fitted link, by node."""
        return dict(self._fits)

    @property
    def params(self) -> pd.DataFrame:
        """link, term, parameter, estimate, std_err, ci_low, ci_high, p_value."""
        return pd.concat([fit.table() for fit in self._fits.values()], ignore_index=True)

    def summary(self) -> pd.DataFrame:
        """Per link: n, R² (for GLM links, the squared correlation of fitted and observed
        values), adjusted R² (OLS only), AIC, Durbin-Watson, condition number, warnings."""
        rows = {
            node: {**fit.stats, "warnings": "; ".join(fit.warnings)}
            for node, fit in self._fits.items()
        }
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "link"
        return frame

    def result(self, node: str) -> Any:
        """The statsmodels results object of the link explaining ``node``."""
        self.node(node)
        if node not in self._fits:
            raise FitError(f"{node!r} is not a fitted link", link=node)
        result = self._fits[node].result
        if result is None:
            message = f"the statsmodels result of {node!r} is not kept in model files; refit"
            raise FitError(message, link=node)
        return result

    def sample_params(self, n: int, seed: int | None = None) -> pd.DataFrame:
        """``n`` draws of every coefficient from its estimated (normal) distribution.

        Links are fitted separately, so draws are independent between links and
        correlated within a link. Pass the frame (with lever values) to
        :func:`kpitree.evaluate` to carry coefficient uncertainty forward.
        """
        if not isinstance(n, int) or n < 1:
            raise OptionError(f"n must be a positive integer, got {n!r}", option="n")
        rng = np.random.default_rng(seed)
        blocks = [
            pd.DataFrame(
                rng.multivariate_normal(fit.estimates, fit.cov, size=n, method="cholesky"),
                columns=list(fit.names),
            )
            for fit in self._fits.values()
        ]
        return pd.concat(blocks, axis=1)


def fit(
    tree: Tree,
    data: pd.DataFrame,
    *,
    cov_type: str = "HAC",
    maxlags: int | None = None,
    groups: str | None = None,
    random_intercept: bool = False,
) -> FittedTree:
    """Fit every link of ``tree`` on ``data`` (rows in time order, a column per node).

    ``cov_type`` is ``"HAC"`` (Newey-West; ``maxlags`` defaults to
    ``floor(4 (n/100)^(2/9))``), ``"cluster"`` (by the ``groups`` column),
    ``"nonrobust"`` or ``"HC0"``-``"HC3"``. With ``groups``, lags are taken within each
    group, and ``random_intercept=True`` fits a mixed model with a random intercept per
    group (statsmodels ``MixedLM`` on the link's transformed scale; the fitted formula
    uses the fixed effects). Returns a :class:`FittedTree`; ``tree`` is unchanged.
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a DataFrame, not {type(data).__name__}")
    if cov_type not in _COV_TYPES:
        message = f"cov_type must be one of {list(_COV_TYPES)}, not {cov_type!r}"
        raise OptionError(message, option="cov_type")
    if cov_type == "cluster" and groups is None:
        raise OptionError("cov_type='cluster' needs a groups column", option="groups")
    if groups is not None and groups not in data.columns:
        raise DataError(f"groups column {groups!r} is not in the data", column=groups)
    if random_intercept and groups is None:
        raise OptionError("random_intercept=True needs a groups column", option="groups")
    if not tree.links:
        raise FitError("the tree declares no link to fit")
    fit_one = _fit_mixed if random_intercept else _fit_link
    fits = {node: fit_one(tree, node, data, cov_type, maxlags, groups) for node in tree.links}
    return _fitted_tree(tree, fits)


# --- one link -------------------------------------------------------------------------


def _fit_link(
    tree: Tree,
    node: str,
    data: pd.DataFrame,
    cov_type: str,
    maxlags: int | None,
    groups: str | None,
) -> LinkFit:
    link = tree.node(node).link
    if link is None:  # pragma: no cover - tree.links lists linked nodes only
        raise FitError(f"{node!r} has no link", link=node)
    y, x = _design(link, node, data, groups)
    names = link.coefficient_names(node)
    model = _model(link, y, x)
    kwds = _cov_kwds(cov_type, maxlags, len(y), data.loc[y.index, groups] if groups else None)
    result = model.fit(cov_type=cov_type, cov_kwds=kwds)
    estimates = np.asarray(result.params, dtype=float)
    cov = np.asarray(result.cov_params(), dtype=float)
    if not (np.isfinite(estimates).all() and np.isfinite(cov).all()):
        raise FitError(f"the fit of {node!r} did not converge to finite estimates", link=node)
    return LinkFit(
        node,
        link,
        names,
        estimates,
        cov,
        int(result.nobs),
        _stats(result, x),
        _warnings(node, x),
        result,
    )


def _fit_mixed(
    tree: Tree, node: str, data: pd.DataFrame, cov_type: str, maxlags: int | None, groups: Any
) -> LinkFit:
    """A random intercept per group, fixed effects on the link's transformed scale."""
    link = tree.node(node).link
    if link is None:  # pragma: no cover - tree.links lists linked nodes only
        raise FitError(f"{node!r} has no link", link=node)
    y, x = _design(link, node, data, groups)
    if link.transform in ("logit", "log"):
        _require(y > 0, node, node, f"a mixed {link.transform} link: the response must be > 0")
        y = y.transform(lambda v: np.log(v / (1 - v)) if link.transform == "logit" else np.log(v))
    result = sm.MixedLM(y, x, groups=pd.factorize(data.loc[y.index, groups])[0]).fit(reml=True)
    k = x.shape[1]
    estimates = np.asarray(result.fe_params, dtype=float)
    cov = np.asarray(result.cov_params(), dtype=float)[:k, :k]
    if not (np.isfinite(estimates).all() and np.isfinite(cov).all()):
        raise FitError(f"the mixed model of {node!r} did not converge", link=node)
    names = link.coefficient_names(node)
    stats_ = _stats(result, x)
    return LinkFit(
        node, link, names, estimates, cov, int(result.nobs), stats_, _warnings(node, x), result
    )


def _design(
    link: Link, node: str, data: pd.DataFrame, groups: str | None
) -> tuple[pd.Series, pd.DataFrame]:
    """The response and the design matrix (constant first), rows with lags dropped."""
    columns = [node, *link.predictors]
    for column in columns:
        if column not in data.columns:
            message = f"link {node!r}: column {column!r} is missing from the data"
            raise DataError(message, node=node, column=column, reason="missing")
    y = _numeric(data[node], node, node)
    terms = {}
    for term in link.terms:
        values = _numeric(data[term.name], node, term.name)
        if term.lag:
            values = (
                values.groupby(data[groups]).shift(term.lag) if groups else values.shift(term.lag)
            )
        terms[term.column] = values
    x = pd.DataFrame(terms, index=data.index)
    usable = x.notna().all(axis=1)  # the first rows of a lagged term have no value
    y, x = y[usable], x[usable]
    _check_values(link, node, y, x)
    if link.transform == "log-log":
        y, x = y.transform(np.log), x.transform(np.log)
    design = sm.add_constant(x, has_constant="add", prepend=True)
    _check_design(node, design)
    return y, design


def _numeric(values: pd.Series, node: str, column: str) -> pd.Series:
    try:
        numbers = values.astype(float)
    except (TypeError, ValueError):
        message = f"link {node!r}: column {column!r} is not numeric"
        raise DataError(message, node=node, column=column, reason="not numeric") from None
    missing = numbers.isna()
    if missing.any():
        rows = list(numbers.index[missing][:5])
        message = (
            f"link {node!r}: column {column!r} has NaN in {int(missing.sum())} row(s), first {rows}"
        )
        raise DataError(message, node=node, column=column, rows=rows, reason="nan")
    return numbers


def _check_values(link: Link, node: str, y: pd.Series, x: pd.DataFrame) -> None:
    checks = {
        "logit": (y, lambda v: (v > 0) & (v < 1), "the response must lie strictly in (0, 1)"),
        "log": (y, lambda v: v >= 0, "the response must be >= 0"),
        "log-log": (y, lambda v: v > 0, "the response must be > 0"),
    }
    if link.transform in checks:
        values, ok, reason = checks[link.transform]
        _require(ok(values), node, node, f"a {link.transform} link: {reason}")
    if link.transform == "log-log":
        for column in x:
            _require(x[column] > 0, node, str(column), "a log-log link: predictors must be > 0")


def _require(ok: pd.Series, node: str, column: str, reason: str) -> None:
    if not ok.all():
        rows = list(ok.index[~ok][:5])
        message = f"link {node!r}: {reason}; column {column!r} breaks it in rows {rows}"
        raise DataError(message, node=node, column=column, rows=rows, reason="out of range")


def _check_design(node: str, design: pd.DataFrame) -> None:
    n, k = design.shape
    if n <= k:
        message = f"link {node!r}: {n} usable rows for {k} coefficients; need more than {k}"
        raise FitError(message, link=node)
    for column in design.columns[1:]:
        if design[column].nunique() < 2:
            raise FitError(
                f"link {node!r}: predictor {column!r} is constant", link=node, column=column
            )
    rank = np.linalg.matrix_rank(design.to_numpy())
    if rank < k:
        message = f"link {node!r}: predictors are perfectly collinear ({k} columns, rank {rank})"
        raise FitError(message, link=node, column=_collinear(design))


def _collinear(design: pd.DataFrame) -> str | None:
    """The first predictor that the ones before it explain exactly."""
    for i in range(2, design.shape[1] + 1):
        if np.linalg.matrix_rank(design.iloc[:, :i].to_numpy()) < i:
            return str(design.columns[i - 1])
    return None  # pragma: no cover - called only when the rank is short


def _model(link: Link, y: pd.Series, x: pd.DataFrame) -> Any:
    if link.transform == "logit":
        return sm.GLM(y, x, family=sm.families.Binomial())
    if link.transform == "log":
        return sm.GLM(y, x, family=sm.families.Poisson())
    return sm.OLS(y, x)


def _cov_kwds(
    cov_type: str, maxlags: int | None, n: int, groups: pd.Series | None
) -> dict[str, Any] | None:
    if cov_type == "HAC":
        return {"maxlags": newey_west_lags(n) if maxlags is None else int(maxlags)}
    if cov_type == "cluster":
        return {"groups": pd.factorize(groups)[0]}  # type: ignore[arg-type]
    return None


def newey_west_lags(n: int) -> int:
    """The usual automatic HAC bandwidth, ``floor(4 (n / 100)^(2/9))``.

    >>> newey_west_lags(36), newey_west_lags(1000)
    (3, 6)
    """
    return math.floor(4 * (n / 100) ** (2 / 9))


def _stats(result: Any, x: pd.DataFrame) -> dict[str, float]:
    ols = hasattr(result, "rsquared")
    glm = hasattr(result, "resid_pearson")
    residuals = np.asarray(result.resid_pearson if glm else result.resid)
    return {
        "n": float(result.nobs),
        "r2": float(result.rsquared if ols else _squared_correlation(result)),
        "adj_r2": float(result.rsquared_adj) if ols else math.nan,
        "aic": float(result.aic),  # nan for a REML mixed model
        "durbin_watson": float(sm.stats.durbin_watson(residuals)),
        "condition_number": float(np.linalg.cond(x.to_numpy())),
    }


def _squared_correlation(result: Any) -> float:
    """R² of a GLM link: the squared correlation of fitted and observed values.

    Likelihood-based pseudo R² are near zero for fractional responses (a rate is one
    "trial"), so the share of the KPI's variation the link reproduces is reported.
    """
    observed = np.asarray(result.model.endog, dtype=float)
    return float(np.corrcoef(observed, np.asarray(result.fittedvalues, dtype=float))[0, 1] ** 2)


def _warnings(node: str, x: pd.DataFrame) -> tuple[str, ...]:
    """Weak grounds for a fit, each also emitted as a :class:`FitWarning`."""
    notes = []
    if np.linalg.cond(x.to_numpy()) > 1e6:
        notes.append("large condition number: predictors close to collinear")
    if len(x) < 5 * x.shape[1]:
        notes.append(f"few rows ({len(x)}) for {x.shape[1]} coefficients")
    for note in notes:
        warn(f"link {node!r}: {note}", FitWarning)
    return tuple(notes)


# --- the fitted tree --------------------------------------------------------------------


def _fitted_tree(tree: Tree, fits: Mapping[str, LinkFit]) -> FittedTree:
    nodes = dict((name, tree.node(name)) for name in tree.nodes)
    parameters = dict(tree.parameters)
    for node, fitted in fits.items():
        link = fitted.link
        formula = parse_formula(link.formula(node))
        nodes[node] = replace(nodes[node], formula=formula, baseline=None)  # computed now
        for term in link.terms:
            if term.lag and term.column not in nodes:
                nodes[term.column] = _lagged(nodes[term.name], term.column, term.lag)
        parameters.update(zip(fitted.names, fitted.estimates.tolist(), strict=True))
    return FittedTree(list(nodes.values()), fits=fits, name=tree.name, parameters=parameters)


def _lagged(base: Node, name: str, lag: int) -> Node:
    """The lever holding ``base``'s value ``lag`` periods earlier, with its metadata."""
    return Node(
        name,
        owner=base.owner,
        unit=base.unit,
        bounds=base.bounds,
        stage=base.stage,
        description=f"{base.name}, {lag} period(s) earlier",
        baseline=base.baseline,
    )
