"""Continuous mode's clockwork: intervals, drift-free ticks, stop requests and signals.

Sweep ``k`` starts at ``start + k * every`` on the monotonic clock; ticks missed (a slow
machine, a suspended process) are skipped, not made up in a burst. A tick does not wait
for the previous one. SIGINT/SIGTERM ask the run to stop: running ticks get a grace
period, then are cancelled; a second signal cancels at once.

An interval below ``JUNCTION_MONITOR_MIN_INTERVAL_SECONDS`` is refused: each sweep probes
every service, so ``--every 1ms`` would send hundreds of requests a second to one vendor.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from junction.durations import duration_seconds

DURATION_HINT = "use a number with a unit, e.g. 500ms, 5s, 1m, 1m30s"


def parse_duration(text: str) -> float:
    """Parse ``500ms``, ``5s``, ``1m``, ``1h``, ``1m30s`` or a bare number of seconds.

    Args:
        text: The duration.

    Returns:
        Seconds (> 0).

    Raises:
        ValueError: Not a duration, or not positive (the message shows valid examples).
    """
    seconds = duration_seconds(text)
    if seconds is None:
        raise ValueError(f"invalid duration {text!r}: {DURATION_HINT}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}: {DURATION_HINT}")
    return seconds


def check_interval(every: float, minimum: float) -> None:
    """Refuse a sweep interval that is not positive or below ``minimum`` seconds.

    Raises:
        ValueError: One line naming the interval, the floor and the setting that sets it.
    """
    if every <= 0 or not math.isfinite(every):
        raise ValueError(f"the interval must be a positive number of seconds, got {every}")
    if every < minimum:
        raise ValueError(
            f"{every:g} s is below the minimum interval of {minimum:g} s (each sweep probes "
            "every service; JUNCTION_MONITOR_MIN_INTERVAL_SECONDS sets the floor)"
        )


def next_tick(k: int, elapsed: float, every: float) -> int:
    """Index of the next tick after tick ``k`` ran, ``elapsed`` seconds after the start.

    Ticks sit on the grid ``start + n * every`` (no drift however long a sweep takes);
    ticks already in the past are skipped rather than run in a burst.
    """
    return max(k + 1, math.floor(elapsed / every) + 1)


class StopRequest:
    """A request to stop continuous mode, from any thread, a signal, or before it starts."""

    def __init__(self) -> None:
        self._requested = False
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def arm(self) -> asyncio.Event:
        """The event of a run starting on the running loop (set if a stop came earlier)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._event = asyncio.Event()
        if self._requested:
            self._event.set()
        return self._event

    def request(self) -> None:
        """Ask the run to finish (safe from any thread or a signal handler)."""
        self._requested = True  # also honoured by a run that starts later
        event, loop = self._event, self._loop
        if event is None or loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to stop
                loop.call_soon_threadsafe(event.set)

    @property
    def stopping(self) -> bool:
        """A run is stopping (or has stopped)."""
        return self._event is not None and self._event.is_set()


async def run_ticks(
    tick: Callable[[], Awaitable[Any]],
    every: float,
    stop: asyncio.Event,
    *,
    grace: float,
    max_ticks: int | None = None,
    handle_signals: bool = True,
) -> int:
    """Start ``tick()`` every ``every`` seconds until ``stop`` is set or ``max_ticks``.

    Args:
        tick: Starts one sweep (runs as its own task; it should not raise).
        every: Seconds between tick starts (> 0).
        stop: Set to finish.
        grace: Seconds the running ticks get to finish before they are cancelled.
        max_ticks: Stop after this many ticks.
        handle_signals: SIGINT/SIGTERM set ``stop`` (main thread only); a second one
            cancels at once.

    Returns:
        Ticks started.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    installed: list[signal.Signals] = []

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()  # second signal: do not wait for the sweeps
        stop.set()

    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    running: set[asyncio.Future[Any]] = set()
    started = 0
    t0 = time.monotonic()
    k = 0
    try:
        while not stop.is_set():
            delay = t0 + k * every - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    break
            task = asyncio.ensure_future(tick())
            running.add(task)
            task.add_done_callback(running.discard)
            started += 1
            if max_ticks is not None and started >= max_ticks:
                break
            k = next_tick(k, time.monotonic() - t0, every)
    finally:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        if running:
            _, late = await asyncio.wait(set(running), timeout=grace)
            for straggler in late:
                straggler.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        stop.set()
    return started


__all__ = [
    "DURATION_HINT",
    "StopRequest",
    "check_interval",
    "next_tick",
    "parse_duration",
    "run_ticks",
]
