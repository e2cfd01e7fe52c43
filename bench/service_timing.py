"""Percentiles and a timer for the service benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def timed(fn: Callable[[], Any], n: int, warmup: int = 2) -> dict[str, float]:
    """p50/p95/max milliseconds of ``fn`` over ``n`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000)
    return {"p50": pct(ms, 0.5), "p95": pct(ms, 0.95), "max": max(ms), "n": n}
