"""Anomaly alerts for the monitor: one :class:`~analytics.anomaly_alarm.AlarmDetector` per
service and series, fed with per-minute buckets of what the monitor observes.

:class:`AnomalyJudge` is a :class:`junction.monitor.alerts.ConditionJudge`: the alert hook
hands it every new observation (probes and live calls), it closes a service's bucket when
the minute ends and feeds the bucket's latency p95 (of successes) and error rate to that
service's detectors, and on each evaluation it returns the rule ``anomaly`` per service:

* **warning** from a point that is an anomaly (confidence at or above the sensitivity's
  threshold, :data:`analytics.anomaly_alarm.SENSITIVITY_THRESHOLDS`) whose confidence
  reaches ``alert_threshold`` (``JUNCTION_ANOMALY_ALERT_THRESHOLD``) while the series is
  above its usual level (the median of its last :data:`RECENT_POINTS` points over that of
  the :data:`USUAL_POINTS` before them: faster answers and fewer errors are not news);
* nothing before the series has :data:`MIN_POINTS` points (about a day of minutes): the
  detector has no seasonal expectation before then and is not trusted to page;
* fine (which resolves the alert) once the confidence has stayed below ``alert_threshold``
  for :data:`CLEAR_AFTER` minutes in a row (a confidence hovering at the threshold would
  otherwise fire and resolve every other minute).

The detectors need history for their seasonal evidence (same minute yesterday), so
:meth:`AnomalyJudge.restore` reads the metrics store's per-minute p95 and error rate of the
last :data:`WARM_DAYS` days, at most :data:`MAX_WARM_ROWS` rows (the newest). Feeding them
costs ~0.2-0.5 ms a row (``bench/anomaly_alerts.py``: 14-22 s for 43 services), so it is
spread over the evaluations: each feeds at most ``warm_rows`` history rows, to the services
it judges (a shard warms only its own); a service judges nothing until its history is in
(its minutes closed meanwhile wait behind the history).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from analytics.anomaly_alarm import AlarmDetector, AlarmPoint
from junction.alerting.judge import Condition
from junction.alerting.model import Severity
from junction.monitor.results import ServiceHealth
from junction.scoring import Observation
from junction.settings import Settings
from junction.store import MetricsStore

log = logging.getLogger(__name__)

RULE = "anomaly"
"""The rule name of the anomaly alert (fingerprint ``<service>:anomaly``)."""

WARM_DAYS = 2.0
"""Days of per-minute history read at start-up (the seasonal evidence looks a day back)."""

MAX_WARM_ROWS = 50_000
"""Most per-minute rows (service x minute) read at start-up; the newest are kept."""

WARM_ROWS_PER_EVALUATION = 300
"""History rows one evaluation feeds at most (~0.1 s: the sweep loop is not held up)."""

USUAL_POINTS = 60
"""Points (minutes) before the recent ones whose median is the series' usual level."""

RECENT_POINTS = 5
"""Newest points whose median is the series' current level (one noisy minute is not)."""

CLEAR_AFTER = 10
"""Minutes in a row below ``alert_threshold`` that clear a firing series."""

MIN_POINTS = 1500
"""Points a series needs before it may fire: a day of minutes and the hour the seasonal
evidence needs to settle (a fresh detector's seasonal z-score jumps once, ~50 points after
its first day)."""

SERIES = {"latency_p95": "latency p95", "error_rate": "error rate"}
"""Series judged per service, with the names messages give them."""

_WARM_SQL = """
    SELECT service, epoch(date_trunc('minute', ts)) AS m,
           quantile_disc(latency_ms, 0.95) FILTER (WHERE ok) AS p95,
           count(*) AS total, count(*) FILTER (WHERE NOT ok) AS failed
    FROM (
        SELECT service, ts, ok, latency_ms FROM probes WHERE ts >= ? AND ts < ?
        UNION ALL
        SELECT service, ts, ok, latency_ms FROM calls WHERE ts >= ? AND ts < ?
            AND source <> 'probe'
    )
    GROUP BY 1, 2
    ORDER BY m DESC
    LIMIT ?
"""


def _fmt(series: str, value: float) -> str:
    return f"{value:.1%}" if series == "error_rate" else f"{value:.0f} ms"


@dataclass
class _Series:
    """One series' detector, its recent values, its newest verdict and its alert state."""

    detector: AlarmDetector
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=USUAL_POINTS + RECENT_POINTS))
    last: AlarmPoint | None = None
    firing: bool = False
    below: int = 0
    n: int = 0

    def feed(self, minute: int, value: float) -> None:
        ts = datetime.fromtimestamp(minute * 60.0, tz=UTC)
        point = self.last = self.detector.update(ts, value)
        self.recent.append(value)
        self.n += 1
        gate = self.detector.alert_threshold
        if self.n < MIN_POINTS:
            return
        if not self.firing:
            usual = self.usual()
            rising = usual is None or self.current() > usual
            self.firing = point.is_anomaly and point.confidence >= gate and rising
            self.below = 0
        elif point.confidence >= gate:
            self.below = 0
        else:
            self.below += 1
            self.firing = self.below < CLEAR_AFTER

    def current(self) -> float:
        """Median of the newest :data:`RECENT_POINTS` points."""
        return statistics.median(list(self.recent)[-RECENT_POINTS:])

    def usual(self) -> float | None:
        """Median of the points before the recent ones (None before there are any)."""
        before = list(self.recent)[:-RECENT_POINTS]
        return statistics.median(before) if before else None


@dataclass
class _Bucket:
    minute: int
    latencies: list[float] = field(default_factory=list)
    total: int = 0
    failed: int = 0


class AnomalyJudge:
    """The monitor's ``anomaly`` rule (a :class:`junction.monitor.alerts.ConditionJudge`).

    Args:
        sensitivity: ``low``, ``medium`` or ``high`` (the detector's threshold, as the
            report uses it: :func:`analytics.anomaly_alarm.threshold_for`).
        alert_threshold: Confidence from which an anomaly raises the alert (0-1).
        warm_days: Days of history :meth:`restore` reads.
        max_warm_rows: Most per-minute rows :meth:`restore` reads.
        warm_rows: History rows one evaluation feeds at most.

    Raises:
        ValueError: Unknown sensitivity or ``alert_threshold`` outside 0..1.
    """

    def __init__(
        self,
        sensitivity: str = "medium",
        alert_threshold: float = 0.95,
        *,
        warm_days: float = WARM_DAYS,
        max_warm_rows: int = MAX_WARM_ROWS,
        warm_rows: int = WARM_ROWS_PER_EVALUATION,
    ) -> None:
        AlarmDetector(sensitivity, alert_threshold)  # bad arguments fail here, not later
        self.sensitivity = sensitivity
        self.alert_threshold = alert_threshold
        self.warm_days = warm_days
        self.max_warm_rows = max_warm_rows
        self.warm_rows = max(1, warm_rows)
        # Per service still warming: its rows to feed, oldest first (history, then the
        # minutes closed meanwhile).
        self._pending: dict[str, deque[tuple[int, float | None, int, int]]] = {}
        self._series: dict[str, dict[str, _Series]] = {}
        self._buckets: dict[str, _Bucket] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AnomalyJudge:
        """The judge of ``JUNCTION_ANOMALY_SENSITIVITY`` / ``_ALERT_THRESHOLD``."""
        return cls(settings.anomaly_sensitivity, settings.anomaly_alert_threshold)

    def __repr__(self) -> str:
        return f"AnomalyJudge({self.sensitivity!r}, {self.alert_threshold!r})"

    # ------------------------------------------------------------------ feeding

    def _get(self, service: str, series: str) -> _Series:
        by_name = self._series.setdefault(service, {})
        if series not in by_name:
            by_name[series] = _Series(AlarmDetector(self.sensitivity, self.alert_threshold))
        return by_name[series]

    def feed_minute(
        self, service: str, minute: int, p95: float | None, total: int, failed: int
    ) -> None:
        """Feed one closed minute of ``service`` (``minute``: epoch seconds // 60); it
        waits behind the service's history while that is still being fed."""
        pending = self._pending.get(service)
        if pending is not None:
            pending.append((minute, p95, total, failed))
            return
        self._feed(service, minute, p95, total, failed)

    def _feed(self, service: str, minute: int, p95: float | None, total: int, failed: int) -> None:
        if p95 is not None and math.isfinite(p95):
            self._get(service, "latency_p95").feed(minute, float(p95))
        if total > 0:
            self._get(service, "error_rate").feed(minute, failed / total)

    def _close(self, service: str, bucket: _Bucket) -> None:
        p95 = _p95(bucket.latencies) if bucket.latencies else None
        self.feed_minute(service, bucket.minute, p95, bucket.total, bucket.failed)

    def observe(self, service: str, observation: Observation) -> None:
        """Add one observation to its service's bucket (closing the previous minute's)."""
        minute = int(observation.ts.timestamp() // 60)
        bucket = self._buckets.get(service)
        if bucket is None or minute > bucket.minute:
            if bucket is not None:
                self._close(service, bucket)
            bucket = self._buckets[service] = _Bucket(minute)
        # A late observation of an earlier minute counts in the open one: a detector
        # cannot go back in time.
        bucket.total += 1
        if observation.ok:
            bucket.latencies.append(float(observation.latency_ms))
        else:
            bucket.failed += 1

    def restore(self, store: MetricsStore, now: datetime) -> None:
        """Read the per-minute history before this minute; evaluations feed it
        (:meth:`warm`)."""
        self.restore_rows(self.history(store, now))

    def history(
        self, store: MetricsStore, now: datetime
    ) -> list[tuple[str, int, float | None, int, int]]:
        """Per-minute ``(service, minute, p95, total, failed)`` rows, oldest first,
        of the last ``warm_days`` before ``now``'s minute (at most ``max_warm_rows``)."""
        until = datetime.fromtimestamp((now.timestamp() // 60) * 60.0, tz=UTC)
        since = until - timedelta(days=self.warm_days)
        frame = store.query(_WARM_SQL, [since, until, since, until, self.max_warm_rows])
        rows = []
        for service, m, p95, total, failed in frame.itertuples(index=False, name=None):
            p = None if p95 is None or (isinstance(p95, float) and math.isnan(p95)) else p95
            rows.append((str(service), int(m // 60), p, int(total), int(failed)))
        rows.reverse()
        return rows

    def restore_rows(self, rows: Iterable[tuple[str, int, float | None, int, int]]) -> int:
        """Queue history rows (oldest first) for :meth:`warm`; returns how many."""
        n = 0
        for service, minute, p95, total, failed in rows:
            self._pending.setdefault(service, deque()).append((minute, p95, total, failed))
            n += 1
        return n

    def warm(self, services: Iterable[str], rows: int | None = None) -> int:
        """Feed at most ``rows`` (default ``warm_rows``) queued rows of ``services``.

        Returns:
            Rows fed.
        """
        budget = self.warm_rows if rows is None else rows
        fed = 0
        for service in services:
            pending = self._pending.get(service)
            while pending and fed < budget:
                self._feed(service, *pending.popleft())
                fed += 1
            if pending is not None and not pending:
                del self._pending[service]
            if fed >= budget:
                break
        return fed

    def warming(self, service: str) -> bool:
        """Whether ``service`` still has history to feed (it judges nothing meanwhile)."""
        return service in self._pending

    # ------------------------------------------------------------------ judging

    def condition(self, service: str) -> Condition | None:
        """The ``anomaly`` verdict of ``service`` (None: nothing fed yet, or warming)."""
        if service in self._pending:
            return None
        judged = [(n, s) for n, s in self._series.get(service, {}).items() if s.last is not None]
        if not judged:
            return None
        firing = []
        for name, s in judged:
            point = s.last
            assert point is not None
            if s.firing:
                usual = s.usual()
                expected = f", usually ~{_fmt(name, usual)}" if usual is not None else ""
                firing.append(
                    (
                        point.confidence,
                        f"{SERIES[name]} {_fmt(name, s.recent[-1])}{expected} "
                        f"(confidence {point.confidence:.3f})",
                    )
                )
        if not firing:
            best = max((s.last.confidence for _, s in judged if s.last is not None), default=0.0)
            return Condition(RULE, None, best, "no anomaly")
        firing.sort(reverse=True)
        return Condition(
            RULE,
            Severity.WARNING,
            firing[0][0],
            "anomaly: " + "; ".join(message for _, message in firing),
        )

    def __call__(
        self, healths: Sequence[ServiceHealth], now: datetime
    ) -> Mapping[str, Mapping[str, Condition]]:
        """Close the buckets of ended minutes, feed some history (:meth:`warm`), then
        judge each service in ``healths``."""
        current = int(now.timestamp() // 60)
        for service, bucket in list(self._buckets.items()):
            if bucket.minute < current:
                self._close(service, bucket)
                del self._buckets[service]
        if self._pending:
            self.warm(h.service for h in healths)
        out: dict[str, dict[str, Condition]] = {}
        for health in healths:
            cond = self.condition(health.service)
            if cond is not None:
                out[health.service] = {RULE: cond}
        return out


def _p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (as the monitor's window statistics)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def anomaly_judges(settings: Settings) -> list[AnomalyJudge]:
    """The judges the monitor runs: ``[AnomalyJudge]`` when
    ``JUNCTION_ANOMALY_ALERTS_ENABLED``, else none."""
    return [AnomalyJudge.from_settings(settings)] if settings.anomaly_alerts_enabled else []


__all__ = ["MAX_WARM_ROWS", "RULE", "SERIES", "WARM_DAYS", "AnomalyJudge", "anomaly_judges"]
