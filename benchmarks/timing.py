"""Timing shared by the benchmarks: one call, with garbage collection paused."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["time_once"]


def time_once(func: Callable[[], Any]) -> float:
    """Seconds ``func()`` takes, after a collection and with the collector paused."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        func()
        return time.perf_counter() - start
    finally:
        gc.enable()
