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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from .design import Design, build_design, require
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

    def _derive(self, nodes: Iterable[Node]) -> Tree:
        """A derived tree keeps the fits of the links it leaves unchanged."""
        nodes = list(nodes)
        same = {n.name for n in nodes if n.name in self._fits and _same_model(n, self.node(n.name))}
        kept = {name: fit_ for name, fit_ in self._fits.items() if name in same}
        if not kept:
            return super()._derive(nodes)
        return FittedTree(nodes, fits=kept, name=self.name, parameters=self.parameters)

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


def _same_model(node: Node, fitted: Node) -> bool:
    return node.link == fitted.link and node.formula == fitted.formula


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
    uses the fixed effects; ``cov_type`` does not apply to it). Returns a
    :class:`FittedTree`; ``tree`` is unchanged.
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
    link = _link_of(tree, node)
    design = build_design(link, node, data, groups)
    model = _model(link, design, node)
    clusters = data.loc[design.rows, groups] if groups else None
    kwds = _cov_kwds(cov_type, maxlags, len(design.y), clusters)
    result = model.fit(cov_type=cov_type, cov_kwds=kwds)
    return _link_fit(node, link, design, result, np.asarray(result.cov_params(), dtype=float))


def _fit_mixed(
    tree: Tree, node: str, data: pd.DataFrame, cov_type: str, maxlags: int | None, groups: Any
) -> LinkFit:
    """A random intercept per group, fixed effects on the link's transformed scale."""
    link = _link_of(tree, node)
    design = build_design(link, node, data, groups)
    y = design.y
    if link.transform in ("logit", "log"):
        reason = f"a mixed {link.transform} link: the response must be > 0"
        require(y > 0, node, node, design.rows, reason)
        y = np.log(y / (1 - y)) if link.transform == "logit" else np.log(y)
    codes = pd.factorize(data.loc[design.rows, groups])[0]
    model = sm.MixedLM(y, design.x, groups=codes)
    _name(model, design, node)
    result = model.fit(reml=True)
    k = design.x.shape[1]
    return _link_fit(node, link, design, result, np.asarray(result.cov_params())[:k, :k])


def _link_of(tree: Tree, node: str) -> Link:
    link = tree.node(node).link
    if link is None:  # pragma: no cover - tree.links lists linked nodes only
        raise FitError(f"{node!r} has no link", link=node)
    return link


def _link_fit(node: str, link: Link, design: Design, result: Any, cov: np.ndarray) -> LinkFit:
    k = design.x.shape[1]
    estimates = np.asarray(result.params, dtype=float)[:k]
    if not (np.isfinite(estimates).all() and np.isfinite(cov).all()):
        raise FitError(f"the fit of {node!r} did not converge to finite estimates", link=node)
    names = link.coefficient_names(node)
    notes = _warnings(node, design)
    return LinkFit(
        node, link, names, estimates, cov, int(result.nobs), _stats(result, design), notes, result
    )


def _model(link: Link, design: Design, node: str) -> Any:
    if link.transform == "logit":
        model = sm.GLM(design.y, design.x, family=sm.families.Binomial())
    elif link.transform == "log":
        model = sm.GLM(design.y, design.x, family=sm.families.Poisson())
    else:
        model = sm.OLS(design.y, design.x)
    _name(model, design, node)
    return model


def _name(model: Any, design: Design, node: str) -> None:
    """Column names for statsmodels' own summaries (arrays go in, for speed)."""
    model.data.xnames = list(design.names)
    model.data.ynames = node


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


def _stats(result: Any, design: Design) -> dict[str, float]:
    ols = hasattr(result, "rsquared")
    glm = hasattr(result, "resid_pearson")
    residuals = np.asarray(result.resid_pearson if glm else result.resid)
    return {
        "n": float(result.nobs),
        "r2": float(result.rsquared if ols else _squared_correlation(result)),
        "adj_r2": float(result.rsquared_adj) if ols else math.nan,
        "aic": float(result.aic),  # nan for a REML mixed model
        "durbin_watson": float(sm.stats.durbin_watson(residuals)),
        "condition_number": design.condition_number,
    }


def _squared_correlation(result: Any) -> float:
    """R² of a GLM link: the squared correlation of fitted and observed values.

    Likelihood-based pseudo R² are near zero for fractional responses (a rate is one
    "trial"), so the share of the KPI's variation the link reproduces is reported.
    """
    observed = np.asarray(result.model.endog, dtype=float)
    return float(np.corrcoef(observed, np.asarray(result.fittedvalues, dtype=float))[0, 1] ** 2)


def _warnings(node: str, design: Design) -> tuple[str, ...]:
    """Weak grounds for a fit, each also emitted as a :class:`FitWarning`."""
    n, k = design.x.shape
    notes = []
    if design.condition_number > 1e6:
        notes.append("large condition number: predictors close to collinear")
    if n < 5 * k:
        notes.append(f"few rows ({n}) for {k} coefficients")
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
