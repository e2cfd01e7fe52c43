"""Hedged reads: a second attempt of a slow read-only call, first answer wins.

After "The Tail at Scale" (Dean and Barroso): when a read has not answered by its
latency percentile (p95), send the same read again; take whichever answers first and
cancel the other. Only for read-only actions (a hedged write would be a duplicate), and
at most ``max_ratio`` hedges per call, so a slow vendor does not get double the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from integrations.adaptive import AdaptiveConfig, LatencyWindow

T = TypeVar("T")


class Hedger:
    """Hedges read-only calls, per key (``provider.action``), after their percentile.

    Args:
        config: ``hedge_percentile``, ``hedge_max_ratio``, ``min_samples``, ``window``.
        clock: Monotonic seconds.
    """

    def __init__(self, config: AdaptiveConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._windows: dict[str, LatencyWindow] = {}
        self.calls = 0
        self.hedges = 0
        self.hedge_wins = 0

    def delay(self, key: str) -> float | None:
        """Seconds after which a call of ``key`` is hedged (``None``: not yet known)."""
        window = self._windows.get(key)
        if window is None or len(window) < self.config.min_samples:
            return None
        p = window.percentile(self.config.hedge_percentile)
        return None if p is None else max(p, 0.001)

    def _observe(self, key: str, seconds: float) -> None:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = LatencyWindow(
                self.config.window, self.config.timeout_max_seconds
            )
        window.add(seconds)

    def _may_hedge(self) -> bool:
        return self.hedges + 1 <= self.config.hedge_max_ratio * self.calls

    async def call(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        """Run ``read``; if it is still pending after ``key``'s percentile, run it again
        and return the first success, cancelling the other.

        ``read`` must be read-only: it may run twice. A failure of one attempt waits for
        the other; when both fail, the first attempt's error is raised.
        """
        self.calls += 1
        started = self._clock()
        delay = self.delay(key)
        first = asyncio.ensure_future(read())
        tasks = [first]
        try:
            if delay is not None:
                done, _ = await asyncio.wait({first}, timeout=delay)
                if not done and self._may_hedge():
                    self.hedges += 1
                    tasks.append(asyncio.ensure_future(read()))
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if not task.cancelled() and task.exception() is None:
                        if task is not first:
                            self.hedge_wins += 1
                        self._observe(key, self._clock() - started)
                        return task.result()
            return first.result()  # every attempt failed: the first one's error
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            for task in tasks:
                if not task.done():
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
