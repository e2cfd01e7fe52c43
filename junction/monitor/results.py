"""What the monitor reports: a service's health, a sweep's result, an event worth a line.

Plain frozen dataclasses with ``to_json``; nothing here probes, schedules or alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from integrations.base import HealthResult
from junction.scoring import ScoreBreakdown, Status, WindowStats


@dataclass(frozen=True)
class ServiceHealth:
    """One service's state after an update (a row of the health table).

    Attributes:
        service: Catalog name.
        status: ``healthy``/``warning``/``critical``/``unknown`` (critical when down).
        score: Health score 0-100 (``None`` with no observations).
        ok: Whether the latest probe succeeded (``None`` before the first probe).
        latency_ms: The latest probe's latency.
        http_status: The latest probe's HTTP status.
        error_class: The latest probe's error class, if it failed.
        error: The latest probe's error message, if it failed.
        success_rate: Over the window (probes and live calls).
        p50_latency_ms: Nearest-rank median latency of successes in the window.
        p95_latency_ms: Nearest-rank 95th percentile latency of successes in the window.
        uptime: Time-weighted up fraction over the window.
        breaker_state: Latest breaker state seen (``closed``/``open``/``half_open``).
        observations: Observations in the window.
        failures: Failed observations in the window.
        consecutive_failures: Failed observations in a row, newest first.
        down: ``consecutive_failures >= JUNCTION_MONITOR_DOWN_AFTER``.
        checked_at: When the latest probe finished (monitor time).
        as_of: When this snapshot was computed (monitor time).
        reasons: Why the status is not healthy.
        alerts: Active alerts of the service (``rule/severity/state``), if an alert
            engine is attached.
        stats: The window's :class:`~junction.scoring.WindowStats`.
        breakdown: The score's :class:`~junction.scoring.ScoreBreakdown`.
    """

    service: str
    status: Status
    score: float | None
    ok: bool | None
    latency_ms: float | None
    http_status: int | None
    error_class: str | None
    error: str | None
    success_rate: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    uptime: float | None
    breaker_state: str | None
    observations: int
    failures: int
    consecutive_failures: int
    down: bool
    checked_at: datetime | None
    as_of: datetime
    reasons: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    stats: WindowStats | None = field(default=None, repr=False, compare=False)
    breakdown: ScoreBreakdown | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (no nested stats/breakdown objects; rounded numbers)."""

        def r(value: float | None, digits: int = 1) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "service": self.service,
            "status": self.status,
            "score": r(self.score),
            "ok": self.ok,
            "latency_ms": r(self.latency_ms),
            "http_status": self.http_status,
            "error_class": self.error_class,
            "error": self.error,
            "success_rate": r(self.success_rate, 4),
            "p50_latency_ms": r(self.p50_latency_ms),
            "p95_latency_ms": r(self.p95_latency_ms),
            "uptime": r(self.uptime, 4),
            "breaker_state": self.breaker_state,
            "observations": self.observations,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "down": self.down,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "as_of": self.as_of.isoformat(),
            "reasons": list(self.reasons),
            "alerts": list(self.alerts),
        }


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did and where every probed service stands afterwards.

    Attributes:
        sweep_id: Recorded as ``probes.sweep_id`` for every probe of the sweep.
        started_at: Monitor time at start.
        finished_at: Monitor time at the end.
        duration_ms: Monotonic duration.
        services: One :class:`ServiceHealth` per probed service, in monitor order.
        probes: Every probe made, confirmation re-probes included.
        skipped: Services not probed because their previous probe was still running.
    """

    sweep_id: str
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    services: list[ServiceHealth]
    probes: list[HealthResult]
    skipped: list[str] = field(default_factory=list)

    @property
    def confirmations(self) -> int:
        """Re-probes made to confirm a first failure."""
        return len(self.probes) - len({p.service for p in self.probes})

    def counts(self) -> dict[str, int]:
        """Number of services per status."""
        out = dict.fromkeys(("healthy", "warning", "critical", "unknown"), 0)
        for s in self.services:
            out[s.status] += 1
        return out

    def service(self, name: str) -> ServiceHealth:
        """The row of ``name``.

        Raises:
            KeyError: ``name`` was not probed in this sweep.
        """
        for s in self.services:
            if s.service == name:
                return s
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "sweep_id": self.sweep_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "duration_ms": round(self.duration_ms, 1),
            "counts": self.counts(),
            "probes": len(self.probes),
            "confirmations": self.confirmations,
            "skipped": list(self.skipped),
            "services": [s.to_json() for s in self.services],
        }


EventKind = Literal["status", "alert", "passive_failure", "clock_jump", "error"]


@dataclass(frozen=True)
class MonitorEvent:
    """Something worth a line of output: a status change, an alert transition, ...

    Attributes:
        kind: ``status`` (a service's status changed), ``alert`` (from the alert engine),
            ``passive_failure`` (a live call failed), ``clock_jump``, ``error``.
        at: Monitor time.
        message: Human-readable one-liner.
        service: The service concerned, if any.
        old: Previous status (``status`` events).
        new: New status (``status`` events).
    """

    kind: EventKind
    at: datetime
    message: str
    service: str | None = None
    old: str | None = None
    new: str | None = None


OnSweep = Callable[[SweepResult], Any]
"""Called with each :class:`SweepResult` of a continuous run (may return an awaitable)."""

OnEvent = Callable[[MonitorEvent], Any]
"""Called with every :class:`MonitorEvent`."""

__all__ = ["EventKind", "MonitorEvent", "OnEvent", "OnSweep", "ServiceHealth", "SweepResult"]
