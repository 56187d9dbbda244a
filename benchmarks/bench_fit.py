"""Benchmark ``kpitree.fit`` against calling statsmodels directly on the same designs.

Synthetic regression links ``y_i ~ x_i1 + x_i2 + x_i3`` (three predictors each) are
declared with ``Tree.from_formulas`` and fitted, in the same run, three ways:

* kpitree, through the public API: ``kpitree.fit(tree, data)`` (default ``cov_type="HAC"``);
* statsmodels directly ("direct"): the exact design of every link (response, constant
  first, rows of a lagged predictor dropped, logs taken for log-log links) is built
  with numpy *outside* the timed region; only the statsmodels calls are timed:
  ``sm.OLS(y, X)`` for linear and log-log links, ``sm.GLM(y, X, family=Binomial())``
  for logit links, ``sm.GLM(y, X, family=Poisson())`` for log links, each
  ``.fit(cov_type="HAC", cov_kwds={"maxlags": newey_west_lags(n)})``, then
  ``params`` and ``cov_params()``;
* statsmodels with the designs built by hand from the DataFrame with pandas
  (``shift``, ``dropna``, ``np.log``, ``sm.add_constant``) in the timed region ("by
  hand"), as context.

Transforms are mixed in proportion: 50% linear, 20% logit (a rate in (0, 1)), 15% log
(Poisson QMLE on counts) and 15% log-log; about 20% of the links read their third
predictor two periods earlier (``lag(x, 2)``). Data come from known coefficients so that
every fit succeeds. Cases: 20 links on 36 periods, 45 links on 1,000 rows, 450 links
on 1,000 rows. Before timing, kpitree's estimates and covariances are checked against
the direct fits (``rtol`` 1e-9) for every link. Timings are the best of k repeats (k
adaptive, at least 3), garbage collection paused during each call, the sides
interleaved. Target (from the issue): kpitree within 2x of the direct calls.

Run ``python benchmarks/bench_fit.py`` (about 1 minute on 2 cores); ``--quick`` for a
smoke run (a few seconds), ``--json PATH`` to save the results, ``--no-profile`` to skip
the cProfile of ``kpitree.fit`` on the largest case.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import platform
import pstats
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's kpitree

import statsmodels
import statsmodels.api as sm

import kpitree
from kpitree.fitting import newey_west_lags

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported
from timing import time_once

#: transform -> share of the links (largest remainder rounding)
MIX: dict[str, float] = {"linear": 0.50, "logit": 0.20, "log": 0.15, "log-log": 0.15}
LAG = 2  # periods of the lagged predictor
LAG_SHARE = 0.20  # share of links with a lagged (third) predictor
PREDICTORS = 3
RTOL = 1e-9
TARGET = 2.0  # kpitree / direct at most this


@dataclass(frozen=True)
class Case:
    """One benchmark case: a number of links fitted on a number of rows."""

    name: str
    links: int
    rows: int


CASES = (Case("20 x 36", 20, 36), Case("45 x 1,000", 45, 1000), Case("450 x 1,000", 450, 1000))
QUICK_CASES = (Case("20 x 36", 20, 36), Case("20 x 200", 20, 200))


@dataclass(frozen=True)
class Settings:
    """Repeats of a run."""

    seconds: float = 1.5  # target timed seconds per side and case
    min_repeats: int = 3
    max_repeats: int = 25


QUICK = Settings(seconds=0.05, min_repeats=2, max_repeats=3)


# --- synthetic links and data ---------------------------------------------------------


@dataclass(frozen=True)
class LinkSpec:
    """One synthetic link: response, transform, predictors (name, lag) and true coefficients.

    Attributes:
        response: the explained node.
        transform: ``linear``, ``logit``, ``log`` or ``log-log``.
        terms: ``(predictor, lag)`` pairs, lag 0 or :data:`LAG`.
        coefficients: intercept first, then one per term (on the link's scale).
    """

    response: str
    transform: str
    terms: tuple[tuple[str, int], ...]
    coefficients: tuple[float, ...]

    def statement(self) -> str:
        """The link as a spec line: ``logit(rate_3) ~ x3_1 + x3_2 + lag(x3_3, 2)``."""
        terms = [f"lag({name}, {lag})" if lag else name for name, lag in self.terms]
        if self.transform == "log-log":
            terms = [f"log({term})" for term in terms]
        response = {"linear": self.response, "logit": f"logit({self.response})"}.get(
            self.transform, f"log({self.response})"
        )
        return f"{response} ~ {' + '.join(terms)}"

    @property
    def max_lag(self) -> int:
        """Rows lost at the start of the sample."""
        return max(lag for _, lag in self.terms)


def _apportion(n: int, shares: dict[str, float]) -> list[str]:
    """``n`` labels in proportion to ``shares``, by largest remainder."""
    exact = {key: n * share for key, share in shares.items()}
    counts = {key: math.floor(value) for key, value in exact.items()}
    left = n - sum(counts.values())
    for key in sorted(exact, key=lambda k: counts[k] - exact[k])[:left]:
        counts[key] += 1
    return [key for key, count in counts.items() for _ in range(count)]


_RESPONSE = {"linear": "y", "logit": "rate", "log": "count", "log-log": "rev"}


def make_links(n_links: int, seed: int = 0) -> list[LinkSpec]:
    """``n_links`` links with the transform mix :data:`MIX` and ~20% lagged, shuffled."""
    rng = np.random.default_rng(seed)
    transforms = _apportion(n_links, MIX)
    rng.shuffle(transforms)
    lagged = set(rng.choice(n_links, size=round(LAG_SHARE * n_links), replace=False).tolist())
    links = []
    for i, transform in enumerate(transforms):
        terms = tuple(
            (f"x{i}_{j}", LAG if i in lagged and j == PREDICTORS else 0)
            for j in range(1, PREDICTORS + 1)
        )
        if transform == "linear":  # x in (0, 10)
            coefficients = [rng.uniform(-5, 5), *rng.uniform(-2, 2, PREDICTORS)]
        elif transform == "logit":  # x in (0, 10): logit within about (-2.5, 2.5)
            coefficients = [rng.uniform(-1, 1), *rng.uniform(-0.1, 0.1, PREDICTORS)]
        elif transform == "log":  # mean count exp(2..4.5)
            coefficients = [rng.uniform(2, 3), *rng.uniform(-0.05, 0.05, PREDICTORS)]
        else:  # log-log: elasticities on x in (1, 100)
            coefficients = [rng.uniform(1, 3), *rng.uniform(0.2, 0.9, PREDICTORS)]
        links.append(LinkSpec(f"{_RESPONSE[transform]}_{i}", transform, terms, tuple(coefficients)))
    return links


def spec_text(links: Sequence[LinkSpec]) -> str:
    """The spec of the links, one statement a line."""
    return "\n".join(link.statement() for link in links) + "\n"


def make_data(links: Sequence[LinkSpec], n_rows: int, seed: int = 0) -> pd.DataFrame:
    """History generated from the links' true coefficients: one column per node."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for link in links:
        logged = link.transform == "log-log"
        values = [
            rng.uniform(1, 100, n_rows) if logged else rng.uniform(0, 10, n_rows)
            for _ in link.terms
        ]
        eta = np.full(n_rows, link.coefficients[0])
        for (name, lag), x, b in zip(link.terms, values, link.coefficients[1:], strict=True):
            columns[name] = x
            seen = np.log(x) if logged else x
            if lag:  # the response reads x lag periods earlier; the first rows are dropped
                seen = np.concatenate([seen[:lag], seen[:-lag]])
            eta += b * seen
        if link.transform == "linear":
            y = eta + rng.normal(0, 1, n_rows)
        elif link.transform == "logit":
            y = 1 / (1 + np.exp(-(eta + rng.normal(0, 0.2, n_rows))))
        elif link.transform == "log":
            y = rng.poisson(np.exp(eta)).astype(float)
        else:
            y = np.exp(eta + rng.normal(0, 0.1, n_rows))
        columns[link.response] = y
    return pd.DataFrame(columns)


# --- the designs and the direct fits ------------------------------------------------


@dataclass(frozen=True)
class Design:
    """The exact design kpitree fits for one link: response, constant-first X, model."""

    response: str
    transform: str
    y: np.ndarray
    x: np.ndarray
    maxlags: int


def design(link: LinkSpec, data: pd.DataFrame) -> Design:
    """Build one link's design with numpy (outside the timed region)."""
    start = link.max_lag
    y = data[link.response].to_numpy(dtype=float)[start:]
    columns = [np.ones(len(y))]
    for name, lag in link.terms:
        values = data[name].to_numpy(dtype=float)
        columns.append(values[start - lag : len(values) - lag])
    x = np.column_stack(columns)
    if link.transform == "log-log":
        y, x[:, 1:] = np.log(y), np.log(x[:, 1:])
    return Design(link.response, link.transform, y, x, newey_west_lags(len(y)))


def _model(transform: str, y: Any, x: Any) -> Any:
    if transform == "logit":
        return sm.GLM(y, x, family=sm.families.Binomial())
    if transform == "log":
        return sm.GLM(y, x, family=sm.families.Poisson())
    return sm.OLS(y, x)


def fit_direct(designs: Sequence[Design]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """statsmodels on the prebuilt designs: response -> (params, covariance)."""
    out = {}
    for d in designs:
        result = _model(d.transform, d.y, d.x).fit(cov_type="HAC", cov_kwds={"maxlags": d.maxlags})
        out[d.response] = (result.params, result.cov_params())
    return out


def fit_by_hand(
    links: Sequence[LinkSpec], data: pd.DataFrame
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """statsmodels with each design built from the DataFrame with pandas, as by hand."""
    out = {}
    for link in links:
        columns = {link.response: data[link.response]}
        for name, lag in link.terms:
            if lag:
                columns[f"{name}_lag{lag}"] = data[name].shift(lag)
            else:
                columns[name] = data[name]
        frame = pd.DataFrame(columns).dropna()
        if link.transform == "log-log":
            frame = frame.transform(np.log)
        y = frame[link.response]
        x = sm.add_constant(frame.drop(columns=link.response), prepend=True)
        result = _model(link.transform, y, x).fit(
            cov_type="HAC", cov_kwds={"maxlags": newey_west_lags(len(y))}
        )
        out[link.response] = (result.params.to_numpy(), result.cov_params().to_numpy())
    return out


def check(
    fitted: kpitree.FittedTree,
    want: dict[str, tuple[np.ndarray, np.ndarray]],
    what: str,
) -> float:
    """Raise AssertionError unless every link's estimates and covariance match to RTOL.

    Returns the largest relative difference seen (0.0 when bitwise equal).
    """
    fits = fitted.fits
    if set(fits) != set(want):
        raise AssertionError(f"{what}: fitted links differ")
    largest = 0.0
    for node, (params, cov) in want.items():
        got = fits[node]
        for label, a, b in (("estimates", got.estimates, params), ("covariance", got.cov, cov)):
            worst = float(np.max(np.abs(a - b) / np.abs(b)))
            if not np.allclose(a, b, rtol=RTOL, atol=0.0):
                raise AssertionError(f"{what}: {node} {label} differ (max rel. {worst:.2e})")
            largest = max(largest, worst)
    return largest


# --- timing -----------------------------------------------------------------------------


def best_of(sides: Sequence[Callable[[], Any]], settings: Settings) -> tuple[list[float], int]:
    """Best time of each side over k interleaved repeats; k from the first repeat."""
    first = [time_once(side) for side in sides]
    slowest = max(first)
    wanted = math.ceil(settings.seconds / slowest) if slowest > 0 else settings.max_repeats
    repeats = max(settings.min_repeats, min(settings.max_repeats, wanted))
    best = list(first)
    for _ in range(repeats - 1):
        for i, side in enumerate(sides):
            best[i] = min(best[i], time_once(side))
    return best, repeats


# --- the cases --------------------------------------------------------------------------


@dataclass
class Result:
    """One case: kpitree, statsmodels direct and statsmodels by hand."""

    case: str
    links: int
    rows: int
    mix: dict[str, int]
    lagged: int
    kpitree_s: float
    direct_s: float
    by_hand_s: float
    repeats: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """kpitree over statsmodels direct."""
        return self.kpitree_s / self.direct_s

    @property
    def by_hand_ratio(self) -> float:
        """kpitree over statsmodels with designs built by hand."""
        return self.kpitree_s / self.by_hand_s

    @property
    def met(self) -> bool:
        """Whether the ratio meets :data:`TARGET`."""
        return self.ratio <= TARGET


def setup(case: Case, seed: int = 0) -> tuple[list[LinkSpec], kpitree.Tree, pd.DataFrame]:
    """The links, the declared tree and the history of a case."""
    links = make_links(case.links, seed)
    tree = kpitree.Tree.from_formulas(spec_text(links))
    return links, tree, make_data(links, case.rows, seed)


def bench_case(case: Case, settings: Settings) -> Result:
    """Check, then time, the three sides of one case."""
    links, tree, data = setup(case)
    designs = [design(link, data) for link in links]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would mean a fit did not go as planned
        fitted = kpitree.fit(tree, data)
        direct = fit_direct(designs)
        by_hand = fit_by_hand(links, data)
    agreement = {
        "direct": check(fitted, direct, f"{case.name}: kpitree vs direct"),
        "by_hand": check(fitted, by_hand, f"{case.name}: kpitree vs by hand"),
    }
    sides: list[Callable[[], Any]] = [
        lambda: kpitree.fit(tree, data),
        lambda: fit_direct(designs),
        lambda: fit_by_hand(links, data),
    ]
    (k, d, h), repeats = best_of(sides, settings)
    mix = {t: sum(link.transform == t for link in links) for t in MIX}
    lagged = sum(link.max_lag > 0 for link in links)
    extra = {"max_relative_difference": agreement}
    return Result(case.name, case.links, case.rows, mix, lagged, k, d, h, repeats, extra)


@dataclass
class Profile:
    """cProfile of one ``kpitree.fit`` call.

    Attributes:
        case: the profiled case.
        top: the pstats lines of the most expensive functions by own time (tottime).
        total_s: seconds of the call under the profiler (slower than unprofiled).
        stages: cumulative seconds under the profiler of each function of
            ``kpitree.fitting`` and of the statsmodels ``fit`` methods, largest first.
    """

    case: str
    top: str
    total_s: float
    stages: dict[str, float]


def profile_fit(case: Case, lines: int = 15) -> Profile:
    """Profile ``kpitree.fit`` on ``case``: top ``lines`` by tottime and a stage breakdown."""
    _, tree, data = setup(case)
    kpitree.fit(tree, data)  # warm
    profiler = cProfile.Profile()
    gc.collect()
    gc.disable()  # as in the timings: no collection pause charged to a random function
    try:
        profiler.enable()
        kpitree.fit(tree, data)
        profiler.disable()
    finally:
        gc.enable()
    raw: dict[Any, Any] = dict(pstats.Stats(profiler).stats)  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in raw.values())
    source = Path(kpitree.fitting.__file__).resolve()
    stages: dict[str, float] = {}
    for (path, _, func), (_, _, _, ct, _) in raw.items():
        label = None
        if func == "fit" and path.endswith(("linear_model.py", "generalized_linear_model.py")):
            label = "statsmodels OLS/GLM .fit (inside _fit_link)"
        elif func == "add_constant" and path.endswith("tools.py"):
            label = "statsmodels add_constant (inside _design)"
        elif func == "svd" and path.endswith("_linalg.py"):
            label = "numpy.linalg.svd (rank, cond, statsmodels pinv)"
        elif path.endswith(".py") and Path(path).resolve() == source:
            if func.startswith("<") or func in ("fit", "__init__"):
                continue
            label = f"kpitree.fitting.{func}"
        if label is not None:
            stages[label] = stages.get(label, 0.0) + ct
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer).strip_dirs()
    stats.sort_stats("tottime").print_stats(lines)
    text = buffer.getvalue()
    top = text[text.find("   ncalls") :].rstrip()
    ordered = dict(sorted(stages.items(), key=lambda item: -item[1]))
    return Profile(f"{case.links} links x {case.rows:,} rows", top, total, ordered)


# --- reporting --------------------------------------------------------------------------


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def _mix(result: Result) -> str:
    shares = " / ".join(str(result.mix[t]) for t in MIX)
    return f"{shares}, {result.lagged} lagged"


def markdown(results: Sequence[Result]) -> str:
    """The results as a markdown table."""
    lines = [
        "| links | rows | linear / logit / log / log-log | kpitree | statsmodels direct | "
        "ratio | kpitree ms/link | direct ms/link | statsmodels by hand | kpitree / by hand | "
        "repeats |",
        "|" + "---|" * 11,
    ]
    for r in results:
        met = " ✓" if r.met else " ✗"
        lines.append(
            f"| {r.links:,} | {r.rows:,} | {_mix(r)} | {_seconds(r.kpitree_s)} | "
            f"{_seconds(r.direct_s)} | {r.ratio:.2f}{met} | {r.kpitree_s / r.links * 1e3:.2f} | "
            f"{r.direct_s / r.links * 1e3:.2f} | {_seconds(r.by_hand_s)} | "
            f"{r.by_hand_ratio:.2f} | {r.repeats} |"
        )
    return "\n".join(lines)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Command line entry point; returns the results.

    From a test, ``main(["--quick", "--no-profile"])`` takes a few seconds.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small cases, few repeats")
    parser.add_argument("--json", type=Path, help="save the results to this JSON file")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    args = parser.parse_args(argv)
    cases, settings = (QUICK_CASES, QUICK) if args.quick else (CASES, Settings())
    started = time.perf_counter()
    results = []
    for case in cases:
        result = bench_case(case, settings)
        agree = result.extra["max_relative_difference"]["direct"]
        _log(
            f"{case.links} links x {case.rows:,} rows: kpitree {_seconds(result.kpitree_s)}, "
            f"direct {_seconds(result.direct_s)}, ratio {result.ratio:.2f}, "
            f"by hand {_seconds(result.by_hand_s)} ({result.repeats} repeats); estimates and "
            f"covariances agree with direct to {agree:.0e}"
        )
        results.append(result)
    profile = None
    if not args.no_profile:
        profile = profile_fit(max(cases, key=lambda c: c.links * c.rows))
    elapsed = time.perf_counter() - started
    print(markdown(results))
    print(
        f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"statsmodels {statsmodels.__version__}, numpy {np.__version__}, "
        f"pandas {pd.__version__}, total {elapsed:.0f} s"
    )
    if profile is not None:
        print(f"\ncProfile of kpitree.fit on {profile.case}: {profile.total_s:.2f} s under the")
        print("profiler. Cumulative seconds by stage, 0.5% and more (nested stages overlap):\n")
        for stage, seconds in profile.stages.items():
            if seconds < 0.005 * profile.total_s:
                continue  # below 0.5%
            print(f"- {stage}: {seconds:.3f} s ({seconds / profile.total_s:.0%})")
        print("\nTop functions by own time (tottime):\n")
        print("```\n" + profile.top + "\n```")
    if args.json:
        payload = {
            "machine": platform.platform(),
            "python": platform.python_version(),
            "statsmodels": statsmodels.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "settings": asdict(settings),
            "seconds": elapsed,
            "results": [
                {**asdict(r), "ratio": r.ratio, "by_hand_ratio": r.by_hand_ratio, "met": r.met}
                for r in results
            ],
            "profile": None if profile is None else asdict(profile),
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
