"""The health grid's rows: the health table, open alerts and latency sparklines joined
into one plain row per integration (no web objects: testable on its own)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from junction.alerting.alerts import Alert
from junction.monitor import ServiceHealth

STATUS_ORDER = {"critical": 0, "warning": 1, "unknown": 2, "healthy": 3}
"""Worst first: the grid's sort order."""

ALERT_TEXT_LIMIT = 300
"""Characters of an alert message shown in the grid (the alerts page shows all of it)."""


@dataclass(frozen=True)
class Spark:
    """A latency sparkline: evenly spaced values (ms, ``None`` for a gap).

    Attributes:
        start: Epoch seconds of the first value.
        step: Seconds between values.
        y: The values, oldest first.
    """

    start: float = 0.0
    step: float = 60.0
    y: tuple[float | None, ...] = ()

    @classmethod
    def from_points(cls, points: Sequence[tuple[float, float | None]]) -> Spark:
        """From ``(epoch seconds, value)`` pairs evenly spaced (empty when all are gaps)."""
        if not points or all(v is None for _, v in points):
            return cls()
        step = points[1][0] - points[0][0] if len(points) > 1 else 60.0
        return cls(points[0][0], step, tuple(v for _, v in points))

    def to_json(self) -> dict[str, Any]:
        """``{"start", "step", "y"}``: the compact sparkline format of ``static/charts.js``."""
        return {
            "start": round(self.start),
            "step": self.step,
            "y": [None if v is None else round(v, 1) for v in self.y],
        }


@dataclass(frozen=True)
class GridRow:
    """One integration in the grid.

    Attributes:
        service: Catalog name.
        status: ``healthy``/``warning``/``critical``/``unknown``.
        score: Health score 0-100.
        p95_ms: 95th percentile latency of the window's successes.
        success_rate: Success rate over the window.
        uptime: Time-weighted up fraction over the window.
        down: Consecutive failures reached the down threshold.
        reasons: Why the status is not healthy.
        alerts: Open (unresolved) alerts.
        alert_text: Their messages, one line each (shortened).
        spark: Latency sparkline.
        linked: It has a service page (a catalog integration; a name only the store
            knows has none).
        seen: What changes with each new probe or failing call (the latest probe's time,
            the window's failures, the failure streak): not shown, but a row whose shown
            numbers moved because of one is sent at once, not after ``DRIFT_SECONDS``.
    """

    service: str
    status: str
    score: float | None
    p95_ms: float | None
    success_rate: float | None
    uptime: float | None
    down: bool
    reasons: tuple[str, ...] = ()
    alerts: int = 0
    alert_text: tuple[str, ...] = ()
    spark: Spark = field(default_factory=Spark)
    linked: bool = True
    seen: tuple[Any, ...] = ()

    def key(self) -> tuple[Any, ...]:
        """What the grid shows of this row, rounded as shown: rows whose key did not
        change need not be sent again."""

        def r(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return (
            self.status,
            r(self.score, 0),
            r(self.p95_ms, 0),
            r(self.success_rate, 3),
            r(self.uptime, 4),
            self.down,
            self.reasons,
            self.alerts,
            self.alert_text,
            self.spark,
            self.linked,
        )

    def urgent_key(self) -> tuple[Any, ...]:
        """What must reach the grid at once when it changes (status, down, alerts, a new
        probe or failing call); the numbers drifting with time alone may wait
        (:data:`~.feed.DRIFT_SECONDS`)."""
        return (self.status, self.down, self.alerts, self.alert_text, self.seen)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ALERT_TEXT_LIMIT else line[: ALERT_TEXT_LIMIT - 1] + "…"


def grid_rows(
    health: Iterable[ServiceHealth],
    alerts: Iterable[Alert] = (),
    sparks: Mapping[str, Spark] | None = None,
    pages: Collection[str] | None = None,
) -> list[GridRow]:
    """Join the health table, the open alerts and the sparklines, worst status first.

    Args:
        health: One row per integration.
        alerts: Open alerts (any service; resolved ones are ignored).
        sparks: Latency sparkline per service (missing: empty).
        pages: The services that have a service page (default: all).
    """
    by_service: dict[str, list[Alert]] = {}
    for alert in alerts:
        if alert.resolved_at is None and alert.state.value != "resolved":
            by_service.setdefault(alert.service, []).append(alert)
    sparks = sparks or {}
    rows = [
        GridRow(
            service=h.service,
            status=h.status,
            score=h.score,
            p95_ms=h.p95_latency_ms,
            success_rate=h.success_rate,
            uptime=h.uptime,
            down=h.down,
            reasons=tuple(h.reasons),
            alerts=len(by_service.get(h.service, ())),
            alert_text=tuple(
                _short(f"{a.rule} ({a.severity.value}, {a.state.value}): {a.message}")
                for a in by_service.get(h.service, ())
            ),
            spark=sparks.get(h.service, Spark()),
            linked=pages is None or h.service in pages,
            seen=(h.checked_at, h.failures, h.consecutive_failures),
        )
        for h in health
    ]
    rows.sort(key=lambda row: (STATUS_ORDER.get(row.status, 9), row.service))
    return rows


def summary(rows: Sequence[GridRow]) -> dict[str, int]:
    """Integrations per status (every status present, zeros included) and ``total``."""
    counts = dict.fromkeys(("healthy", "warning", "critical", "unknown"), 0)
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    counts["total"] = len(rows)
    return counts


__all__ = ["STATUS_ORDER", "GridRow", "Spark", "grid_rows", "summary"]
