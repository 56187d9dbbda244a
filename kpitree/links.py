"""Regression links: a KPI explained by leading indicators, declared now, fitted later.

A link is written like a model formula::

    win_rate ~ share_3plus_proposals + demo_rate          # linear
    logit(win_rate) ~ share_3plus_proposals + demo_rate   # rates in (0, 1)
    log(leads) ~ content_downloads + webinar_attendees    # positive counts
    log(new_revenue) ~ log(sqls) + log(deal_size)         # log-log: elasticities
    churn_rate ~ lag(nps, 3) + ticket_close_days          # NPS three periods ago

The response may be wrapped in ``log`` or ``logit``; a predictor may be lagged with
``lag(name, k)`` and, for log-log links, logged. The four transforms are ``linear``,
``log`` (log response), ``logit`` (logit response) and ``log-log`` (log response and
every predictor logged). Text is read by :mod:`kpitree.formula`'s whitelist parser.

Once fitted, a link is an ordinary formula whose coefficients are named parameters of
the tree (``win_rate__const``, ``win_rate__demo_rate``...), so evaluation, derivatives
and sensitivity treat fitted and identity nodes alike.

>>> link = parse_link("logit(win_rate) ~ share_3plus + lag(nps, 3)")
>>> link.transform, [term.column for term in link.terms]
('logit', ['share_3plus', 'nps_lag3'])
>>> link.formula("y")
'1 / (1 + exp(-(y__const + y__share_3plus * share_3plus + y__nps_lag3 * nps_lag3)))'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .errors import FormulaError, SpecError
from .formula import parse_formula
from .syntax import Call, Name, Num, Sum

if TYPE_CHECKING:
    import pandas as pd

    from .tree import Tree

__all__ = [
    "TRANSFORMS", "Link", "Term", "link_response", "make_link", "parse_link", "with_lags",
]  # fmt: skip

Transform = Literal["linear", "log", "logit", "log-log"]
TRANSFORMS: tuple[Transform, ...] = ("linear", "log", "logit", "log-log")
MAX_LAG = 120


@dataclass(frozen=True, slots=True)
class Term:
    """One predictor of a link: a node, possibly lagged by ``lag`` periods."""

    name: str
    lag: int = 0

    @property
    def column(self) -> str:
        """The input name of the term: ``nps`` or, lagged, ``nps_lag3``."""
        return f"{self.name}_lag{self.lag}" if self.lag else self.name

    def __str__(self) -> str:
        return f"lag({self.name}, {self.lag})" if self.lag else self.name


@dataclass(frozen=True, slots=True)
class Link:
    """A declared regression link: ``transform`` and the predictor ``terms``."""

    terms: tuple[Term, ...]
    transform: Transform = "linear"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            message = f"unknown transform {self.transform!r}; choose from {list(TRANSFORMS)}"
            raise SpecError(message)
        if not self.terms:
            raise SpecError("a link needs at least one predictor")
        columns = [term.column for term in self.terms]
        if len(set(columns)) != len(columns):
            raise SpecError(f"a link lists a predictor twice: {columns}")

    @property
    def predictors(self) -> tuple[str, ...]:
        """The nodes the link reads (lagged or not), each once."""
        return tuple(dict.fromkeys(term.name for term in self.terms))

    def coefficient_names(self, node: str) -> tuple[str, ...]:
        """Names of the link's coefficients: intercept first, then one per term."""
        return (f"{node}__const", *(f"{node}__{term.column}" for term in self.terms))

    def formula(self, node: str) -> str:
        """The fitted form: an ordinary formula over the terms and named coefficients."""
        const, *slopes = self.coefficient_names(node)
        logged = self.transform == "log-log"
        parts = [const] + [
            f"{slope} * {'log(' + term.column + ')' if logged else term.column}"
            for slope, term in zip(slopes, self.terms, strict=True)
        ]
        linear = " + ".join(parts)
        if self.transform == "linear":
            return linear
        if self.transform == "logit":
            return f"1 / (1 + exp(-({linear})))"
        return f"exp({linear})"

    def text(self, node: str) -> str:
        """The declaration, as written in a spec: ``logit(win_rate) ~ a + lag(b, 3)``."""
        logged = self.transform == "log-log"
        response = {"linear": node, "logit": f"logit({node})"}.get(self.transform, f"log({node})")
        terms = [f"log({term})" if logged else str(term) for term in self.terms]
        return f"{response} ~ {' + '.join(terms)}"


def parse_link(text: str) -> Link:
    """Read ``response ~ term + term`` (see the module doc) into a :class:`Link`."""
    return _parse(text)[1]


def link_response(text: str) -> str:
    """The node a link statement explains (``win_rate`` in ``logit(win_rate) ~ x``)."""
    return _parse(text)[0]


def make_link(
    predictors: Sequence[str], *, transform: str = "linear", lags: Mapping[str, int] | None = None
) -> Link:
    """A :class:`Link` from Python arguments (see :meth:`kpitree.Tree.with_link`)."""
    lags = dict(lags or {})
    unknown = set(lags) - set(predictors)
    if unknown:
        raise SpecError(f"lags given for {sorted(unknown)}, which are not predictors")
    terms = tuple(Term(name, _lag(lags.get(name, 0), name)) for name in predictors)
    return Link(terms, transform)  # type: ignore[arg-type]


def _parse(text: str) -> tuple[str, Link]:
    left, sep, right = text.partition("~")
    if not sep or "~" in right:
        raise FormulaError("a link is written `response ~ predictor + predictor`", text=text)
    response, response_transform = _response(left.strip(), text)
    terms, logs = zip(*(_term(part, text) for part in _summands(right, text)), strict=True)
    if any(logs) and not (all(logs) and response_transform == "log"):
        message = "log() on predictors is the log-log form: log(response) ~ log(x) + log(y)"
        raise FormulaError(message, text=text)
    transform = "log-log" if all(logs) else response_transform
    return response, Link(tuple(terms), transform)  # type: ignore[arg-type]


def _response(text: str, whole: str) -> tuple[str, str]:
    message = "the response of a link is a node, log(node) or logit(node)"
    if text.startswith("logit(") and text.endswith(")"):
        inner = parse_formula(text[len("logit(") : -1]).root
        if isinstance(inner, Name):
            return inner.name, "logit"
        raise FormulaError(message, text=whole)
    root = parse_formula(text).root
    if isinstance(root, Name):
        return root.name, "linear"
    if isinstance(root, Call) and root.func == "log" and isinstance(root.args[0], Name):
        return root.args[0].name, "log"
    raise FormulaError(message, text=whole)


def _summands(text: str, whole: str) -> list[str]:
    """Split the right-hand side on top-level ``+`` (lag(...) keeps its comma)."""
    depth, start, parts = 0, 0, []
    for position, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "+" and depth == 0:
            parts.append(text[start:position])
            start = position + 1
        elif char in "-*/" and depth == 0:
            raise FormulaError("predictors of a link are joined by +", text=whole)
    parts.append(text[start:])
    if any(not part.strip() for part in parts):
        raise FormulaError("a link has an empty predictor", text=whole)
    return [part.strip() for part in parts]


def _term(text: str, whole: str) -> tuple[Term, bool]:
    logged = text.startswith("log(") and text.endswith(")")
    inner = text[len("log(") : -1].strip() if logged else text
    if inner.startswith("lag(") and inner.endswith(")"):
        name, _, lag = inner[len("lag(") : -1].partition(",")
        node = parse_formula(name).root
        periods = parse_formula(lag).root if lag.strip() else None
        if isinstance(node, Name) and isinstance(periods, Num):
            return Term(node.name, _lag(periods.value, node.name)), logged
        raise FormulaError("a lag is written lag(node, periods)", text=whole)
    root = parse_formula(inner).root
    if isinstance(root, Name):
        return Term(root.name), logged
    if isinstance(root, Sum):
        raise FormulaError("predictors of a link are joined by +", text=whole)
    raise FormulaError(f"a predictor is a node or lag(node, k), not {inner!r}", text=whole)


def _lag(value: object, name: str) -> int:
    whole = isinstance(value, int) or getattr(value, "denominator", None) == 1
    if not whole or isinstance(value, bool):
        raise SpecError(f"the lag of {name!r} must be a whole number of periods, got {value}")
    lag = int(value)  # type: ignore[call-overload]
    if not 0 <= lag <= MAX_LAG:
        raise SpecError(f"the lag of {name!r} must be between 0 and {MAX_LAG}, got {lag}")
    return lag


def with_lags(tree: Tree, data: pd.DataFrame, *, groups: str | None = None) -> pd.DataFrame:
    """``data`` plus the lagged columns the tree's links read (``nps_lag3``...).

    Rows are periods in time order (within each ``groups`` value); the first rows get
    NaN where no earlier period exists. Use it before taking a state from history, so
    that a lagged predictor holds its value from ``lag`` periods earlier rather than
    its baseline:

    >>> import pandas as pd
    >>> from kpitree import Tree
    >>> tree = Tree.from_formulas("lost = churn * base")
    >>> tree = tree.with_link("churn", ["nps"], lags={"nps": 2})
    >>> with_lags(tree, pd.DataFrame({"nps": [30.0, 32.0, 35.0]}))["nps_lag2"].tolist()
    [nan, nan, 30.0]
    """
    extra = {}
    for node in tree.links:
        for term in tree.node(node).link.terms:  # type: ignore[union-attr]
            if term.lag and term.column not in data and term.name in data:
                column = data[term.name]
                by_group = column.groupby(data[groups]) if groups else column
                extra[term.column] = by_group.shift(term.lag)
    return data.assign(**extra)
