"""The one hook every integration call reports through.

Each call (probe, workflow step or CLI command) produces one :class:`CallMetric` after
its last attempt. Sinks are plain callables: the metrics store's ``record_call``, the
monitor's passive detector, a test's list. A failing sink is logged and never breaks
the call it describes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

log = logging.getLogger("integrations.metrics")


@dataclass
class CallMetric:
    """One integration call, after its last attempt. Field names match the ``calls`` table."""

    service: str
    action: str
    method: str
    path: str
    status: int | None
    ok: bool
    latency_ms: float
    error_class: str | None
    error: str | None
    attempts: int
    breaker_state: str
    source: str = "call"
    run_id: str | None = None
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: uuid4().hex)


MetricSink = Callable[[CallMetric], None]

_lock = threading.Lock()
_sinks: list[MetricSink] = []


def add_sink(sink: MetricSink) -> None:
    """Register a process-wide sink for every call's metric."""
    with _lock:
        if sink not in _sinks:
            _sinks.append(sink)


def remove_sink(sink: MetricSink) -> None:
    """Unregister a sink (no error if absent)."""
    with _lock:
        if sink in _sinks:
            _sinks.remove(sink)


@contextmanager
def collecting() -> Iterator[list[CallMetric]]:
    """Collect the metrics of the calls made inside the block (tests, CLI summaries)."""
    seen: list[CallMetric] = []
    add_sink(seen.append)
    try:
        yield seen
    finally:
        remove_sink(seen.append)


def emit(metric: CallMetric, extra: MetricSink | None = None) -> None:
    """Deliver one metric to every sink (and to a client's own hook, if any)."""
    with _lock:
        sinks = list(_sinks)
    if extra is not None:
        sinks.append(extra)
    for sink in sinks:
        try:
            sink(metric)
        except Exception:  # a broken sink must not fail the call it reports
            log.exception("metric sink %r failed", sink)
