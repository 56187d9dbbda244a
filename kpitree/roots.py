"""Bracketed numeric roots of a vectorised function: what back-calculation and goal
seeking fall back on when a formula has no quick symbolic solution.

>>> root_near(lambda x: 2 * x, 1.0, 0.0, 10.0, value=5.0)
2.5
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq

__all__ = ["RTOL", "NoRootError", "root_near"]

RTOL = 1e-9  # how closely a solution must reproduce the value asked for


class NoRootError(ArithmeticError):
    """No sign change of ``f - value`` was found; ``reach`` is the range of f seen."""

    def __init__(self, reach: tuple[float, float]) -> None:
        super().__init__(f"no root; values seen range over {reach}")
        self.reach = reach


def root_near(
    f: Callable[[np.ndarray], np.ndarray], x0: float, low: float, high: float, *, value: float
) -> float:
    """The root of ``f(x) = value`` in ``[low, high]`` nearest ``x0``, by brentq.

    ``f`` is vectorised: it is scanned once on points spreading geometrically from
    ``x0`` to the bounds (or far out when a bound is open), and brentq refines the
    sign change nearest ``x0``. Raises :class:`NoRootError` with the range seen.

    >>> root_near(lambda x: x ** 3, 1.0, 0.0, float("inf"), value=8.0)
    2.0
    """
    points = _scan_points(min(max(x0, low), high), low, high)
    with np.errstate(all="ignore"):
        gaps = np.asarray(f(points), dtype=float) - value
    finite = np.isfinite(gaps)
    points, gaps = points[finite], gaps[finite]
    if not points.size:
        raise NoRootError((math.nan, math.nan))
    exact = points[gaps == 0]
    if exact.size:
        return float(exact[np.argmin(np.abs(exact - x0))])
    changes = np.flatnonzero(np.sign(gaps[:-1]) * np.sign(gaps[1:]) < 0)
    near = sorted(changes, key=lambda i: min(abs(points[i] - x0), abs(points[i + 1] - x0)))
    scale = max(abs(value), float(np.median(np.abs(gaps + value))), 1e-300)
    for i in near:
        root = brentq(lambda x: float(f(np.array([x]))[0]) - value, points[i], points[i + 1],
                      xtol=1e-300, rtol=4 * np.finfo(float).eps)  # fmt: skip
        if abs(float(f(np.array([root]))[0]) - value) <= RTOL * scale:
            return float(root)
    raise NoRootError((float(np.min(gaps + value)), float(np.max(gaps + value))))


def _scan_points(x0: float, low: float, high: float) -> np.ndarray:
    steps = max(abs(x0), 1.0) * 2.0 ** (np.arange(-120, 253) / 4)  # 4 per octave
    approach = 2.0 ** -np.arange(0, 60)
    parts = [np.array([x0]), x0 - steps, x0 + steps]
    for end in (low, high):
        if math.isfinite(end):
            parts += [np.array([end]), end + (x0 - end) * approach]
    if math.isfinite(low) and math.isfinite(high):
        parts.append(np.linspace(low, high, 65))
    points = np.concatenate(parts)
    return np.unique(points[(points >= low) & (points <= high)])
