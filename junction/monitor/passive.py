"""Passive monitoring: the live calls of workflows and commands, as service observations.

Two sources, both delivered to the monitor's event loop:

* **live calls in this process**: every integration call reports a
  :class:`integrations.metrics.CallMetric` through the metric hook (from any thread);
* **live calls of other processes** (workflow runs): read from the metrics store's
  ``calls`` table by a :class:`junction.tail.StoreTailer`, including the unflushed spools
  of live writers, each row once.

Live calls are judged for *service* health (:func:`classify_call`): a call that never
reached the service (an error whose class has ``sent = False``: ``CircuitOpenError``,
configuration errors, a URL refused off the base URL) is ignored; connection
errors, timeouts, 5xx, 401/403 and malformed responses are failures; other 4xx (404,
409, 422, 429...) mean the service answered, so they count as successes. Probes are not
live calls: the monitor observes them directly, with their confirmation logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from integrations.errors import unsent_error_classes
from integrations.metrics import CallMetric, add_sink, remove_sink
from junction.scoring import Observation
from junction.tail import StoreTailer

_NEVER_SENT = unsent_error_classes()


def classify_call(ok: bool, status: int | None, error_class: str | None) -> bool | None:
    """Whether a live call says the service is up (``True``), down (``False``) or nothing.

    See the module docstring for the rules.
    """
    if ok:
        return True
    if error_class in _NEVER_SENT:
        return None
    return not (status is None or status >= 500 or status in (401, 403))


@dataclass(frozen=True)
class LiveCall:
    """One live call of a service, from the metric hook or the store.

    Attributes:
        service: Catalog name.
        row_id: The ``calls`` row id (deduplicates the two paths a call can take).
        ok: The call succeeded.
        status: HTTP status, if there was an answer.
        error_class: Error class of a failed call.
        latency_ms: Call latency.
        breaker_state: The client's breaker state after the call.
        ts: When it happened (``None``: now, for calls of this process).
    """

    service: str
    row_id: str | None
    ok: bool
    status: int | None
    error_class: str | None
    latency_ms: float
    breaker_state: str
    ts: datetime | None = None

    @classmethod
    def from_metric(cls, metric: CallMetric) -> LiveCall:
        """The call a metric describes (stamped on arrival)."""
        return cls(
            service=metric.service,
            row_id=metric.id,
            ok=bool(metric.ok),
            status=metric.status,
            error_class=metric.error_class,
            latency_ms=float(metric.latency_ms),
            breaker_state=metric.breaker_state or "closed",
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LiveCall:
        """The call a ``calls`` row describes (as :class:`StoreTailer` returns it)."""
        return cls(
            service=row["service"],
            row_id=row["id"],
            ok=bool(row["ok"]),
            status=row.get("status"),
            error_class=row.get("error_class"),
            latency_ms=float(row["latency_ms"]),
            breaker_state=row.get("breaker_state") or "closed",
            ts=row["ts"],
        )

    @property
    def verdict(self) -> bool | None:
        """:func:`classify_call` of this call."""
        return classify_call(self.ok, self.status, self.error_class)

    def observation(self, now: datetime) -> Observation | None:
        """The observation of its service, or ``None`` when it says nothing about it."""
        verdict = self.verdict
        if verdict is None:
            return None
        return Observation(
            ts=now if self.ts is None else min(self.ts, now),
            ok=verdict,
            latency_ms=self.latency_ms,
            error_class=None if verdict else self.error_class,
            breaker_state=self.breaker_state,
        )


LiveCallHandler = Callable[[LiveCall, bool], bool]
"""``handler(call, quiet) -> added``; runs on the monitor's event loop."""


class LiveCallFeed:
    """Delivers live calls of the ``services`` to ``handler`` on the running event loop.

    Create it on the monitor's loop; :meth:`start` registers the process-wide metric sink
    and :meth:`close` removes it.

    Args:
        handler: Called with each call and ``quiet`` (restore: fill windows only).
        services: The monitored services (others are dropped).
        tailer: Reader of the store's ``calls`` table.
    """

    def __init__(
        self, handler: LiveCallHandler, services: Container[str], tailer: StoreTailer
    ) -> None:
        self._handler = handler
        self._services = services
        self.tailer = tailer
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closed = False

    def start(self) -> None:
        """Receive this process's calls through the metric hook."""
        add_sink(self.sink)

    def close(self) -> None:
        """Stop receiving calls."""
        self._closed = True
        remove_sink(self.sink)

    def sink(self, metric: CallMetric) -> None:
        """The metric sink: hand one call to the loop (safe from any thread)."""
        if self._closed or metric.source == "probe" or metric.service not in self._services:
            return
        call = LiveCall.from_metric(metric)
        if threading.get_ident() == self._loop_thread:
            self._handler(call, False)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                self._loop.call_soon_threadsafe(self._handler, call, False)

    def mark_seen(self, row_id: str, ts: datetime) -> None:
        """A row observed by other means: the tailer must not return it."""
        self.tailer.mark_seen(row_id, ts)

    def shift(self, delta: timedelta) -> None:
        """The wall clock jumped by ``delta``: move the tailer's horizon with it."""
        self.tailer.since = self.tailer.since + delta

    async def poll(self, since: datetime, *, quiet: bool = False, files: bool = True) -> int:
        """Hand other processes' new calls (``ts >= since``) to the handler.

        Args:
            since: Oldest call of interest.
            quiet: Restoring: fill the windows only.
            files: Also read new Parquet files (``False``: the live spools only).

        Returns:
            Calls the handler added.
        """
        self.tailer.advance(since)
        rows = await asyncio.to_thread(self.tailer.poll, files=files)
        added = 0
        for row in rows:
            if row.get("source") == "probe" or row.get("service") not in self._services:
                continue
            added += self._handler(LiveCall.from_row(row), quiet)
        return added


__all__ = ["LiveCall", "LiveCallFeed", "LiveCallHandler", "classify_call"]
