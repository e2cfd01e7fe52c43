"""Per-service health over a sliding window, and a 0-100 health score.

A :class:`ServiceWindow` holds one service's recent :class:`Observation` objects (probes
and live calls alike) and summarises them as :class:`WindowStats`; :func:`health_score`
turns those stats into a :class:`ScoreBreakdown` using the thresholds in
:class:`junction.settings.Settings` (or anything with the same six attributes).

Definitions used by :meth:`ServiceWindow.stats` (all over the observations with
``now - window <= ts <= now``):

* **success_rate** = successes / count; ``None`` for an empty window.
* **p50 / p95 latency** use the *nearest-rank* method over successful observations only
  (failures often return fast or time out, either way they say nothing about how fast
  the service answers): sort the n latencies ascending, take the value at 1-based rank
  ``ceil(p / 100 * n)``. Always a measured value, never interpolated. ``None`` if there
  is no success.
* **uptime** is time-weighted: each observation's state (up if ``ok``) holds from its
  timestamp until the next observation's, the last one until ``now``. Uptime is the up
  time divided by the time from the first observation to ``now``; time before the first
  observation is unknown and not counted. When that span is zero (everything happened
  at ``now``) uptime is 1.0 or 0.0 from the latest observation's state.
* **seconds_since_last_error** counts from the newest failed observation still in the
  window; ``None`` if the window holds no failure.

Score (0-100) = success (50) + latency (25) + error recency (15) + breaker (10), with
``W``/``C`` the warning/critical thresholds from settings:

* **success** (50 pts), success rate ``r``: 50 when ``r >= W``; 0 when
  ``r <= F = max(0, C - (W - C))`` (the critical rate minus the warning-critical gap);
  linear between, so ``r == C`` scores 25. If ``W <= F`` it is a step at ``W``.
* **latency** (25 pts), p95 of successes ``p``: 25 when ``p <= W ms``; 0 when
  ``p >= C ms``; linear between. 0 when there is no successful call to measure.
* **error recency** (15 pts), ``s`` seconds since the last error: 0 when ``s <= 60``;
  15 when ``s >= 600`` or there is no error in the window; linear between.
* **breaker** (10 pts), latest breaker state: closed 10, half_open 5, open (or
  anything unrecognised) 0.

Status: ``unknown`` (score ``None``) for an empty window. Otherwise ``critical`` if the
score is below ``health_score_critical``, ``warning`` if below ``health_score_warning``,
else ``healthy``; then hard rules can only make it worse:

* critical if success rate < success_rate_critical, p95 > response_time_critical_ms, or
  the breaker is open;
* at least warning if success rate < success_rate_warning or p95 >
  response_time_warning_ms (the settings define these as the warning lines, and the
  score alone would still call a service at 94.9 % success "healthy").

Naive datetimes anywhere are taken to be UTC.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # only for annotations: keeps httpx & co. out of import time
    from integrations.base import HealthResult
    from integrations.metrics import CallMetric

Status = Literal["healthy", "warning", "critical", "unknown"]

SUCCESS_POINTS = 50.0
LATENCY_POINTS = 25.0
RECENCY_POINTS = 15.0
BREAKER_POINTS = 10.0
RECENT_ERROR_SECONDS = 60.0
"""An error at most this old zeroes the error-recency component."""
RECOVERED_SECONDS = 600.0
"""An error at least this old no longer costs error-recency points."""
BREAKER_SCORES: dict[str, float] = {"closed": 10.0, "half_open": 5.0, "open": 0.0}


def _utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime (naive means UTC)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


@dataclass(frozen=True)
class Observation:
    """One outcome of talking to a service: a probe or a live call.

    Attributes:
        ts: When it happened (UTC; a naive value is taken as UTC).
        ok: Whether it succeeded.
        latency_ms: How long it took.
        error_class: Typed error name on failure (``"APITimeoutError"``), else ``None``.
        breaker_state: The service's breaker state at the time (``closed``/``open``/
            ``half_open``).
    """

    ts: datetime
    ok: bool
    latency_ms: float
    error_class: str | None = None
    breaker_state: str = "closed"

    def __post_init__(self) -> None:
        # Normalise once so every comparison in a window is aware-vs-aware.
        object.__setattr__(self, "ts", _utc(self.ts))

    @classmethod
    def from_health(cls, result: HealthResult) -> Observation:
        """Build from a probe's :class:`integrations.base.HealthResult`."""
        return cls(
            ts=result.checked_at,
            ok=result.ok,
            latency_ms=result.latency_ms,
            error_class=result.error_class,
            breaker_state=result.breaker_state,
        )

    @classmethod
    def from_call(cls, metric: CallMetric) -> Observation:
        """Build from a live call's :class:`integrations.metrics.CallMetric`."""
        return cls(
            ts=metric.ts,
            ok=metric.ok,
            latency_ms=metric.latency_ms,
            error_class=metric.error_class,
            breaker_state=metric.breaker_state,
        )


@dataclass(frozen=True)
class WindowStats:
    """Summary of one service's window at ``as_of`` (definitions in the module docstring).

    Attributes:
        as_of: The ``now`` the stats were computed for.
        count: Observations in the window.
        successes: Successful observations in the window.
        success_rate: ``successes / count``; ``None`` if empty.
        p50_latency_ms: Nearest-rank median latency of successes; ``None`` if none.
        p95_latency_ms: Nearest-rank 95th percentile latency of successes; ``None`` if none.
        uptime: Time-weighted fraction up, 0-1; ``None`` if empty.
        seconds_since_last_error: Age of the newest failure; ``None`` if none.
        last_error_at: Timestamp of the newest failure; ``None`` if none.
        last_error_class: Error class of the newest failure; ``None`` if none.
        last_breaker_state: Breaker state of the newest observation; ``None`` if empty.
    """

    as_of: datetime
    count: int = 0
    successes: int = 0
    success_rate: float | None = None
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    uptime: float | None = None
    seconds_since_last_error: float | None = None
    last_error_at: datetime | None = None
    last_error_class: str | None = None
    last_breaker_state: str | None = None

    @property
    def failures(self) -> int:
        """Failed observations in the window."""
        return self.count - self.successes


def percentile(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile: the value at 1-based rank ``ceil(p / 100 * n)``.

    Args:
        values: The sample (any order).
        p: Percentile in (0, 100].

    Returns:
        A member of ``values``, or ``None`` if it is empty.

    Raises:
        ValueError: If ``p`` is outside (0, 100].
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else _utc(now)


@dataclass
class ServiceWindow:
    """A sliding time window of one service's observations.

    Observations are kept sorted by timestamp, so late (out-of-order) arrivals land in
    their place and eviction is by timestamp, not arrival order.

    Attributes:
        window: How far back from ``now`` observations count.
    """

    window: timedelta = timedelta(minutes=15)
    _items: list[Observation] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError("window must be positive")

    def __len__(self) -> int:
        return len(self._items)

    @property
    def observations(self) -> list[Observation]:
        """The retained observations, oldest first (a copy)."""
        return list(self._items)

    def add(self, observation: Observation, *, now: datetime | None = None) -> None:
        """Insert ``observation`` in timestamp order, then evict what ``now`` has left behind.

        Args:
            observation: The outcome to record; may be older than ones already held.
            now: Current time (default: the wall clock); injectable for tests and replays.
        """
        # insort_right keeps equal timestamps in arrival order: the later arrival wins
        # "latest" ties (breaker state, uptime).
        bisect.insort_right(self._items, observation, key=lambda o: o.ts)
        self.evict(now)

    def extend(self, observations: Iterable[Observation], *, now: datetime | None = None) -> None:
        """Add several observations, evicting once at the end."""
        for observation in observations:
            bisect.insort_right(self._items, observation, key=lambda o: o.ts)
        self.evict(now)

    def evict(self, now: datetime | None = None) -> int:
        """Drop observations older than ``now - window``.

        Returns:
            How many were dropped.
        """
        cutoff = _now(now) - self.window
        index = bisect.bisect_left(self._items, cutoff, key=lambda o: o.ts)
        del self._items[:index]
        return index

    def stats(self, now: datetime | None = None) -> WindowStats:
        """Summarise the window as of ``now``.

        Observations stamped after ``now`` are held but not counted (they would make
        ages negative); nothing is evicted by this call.

        Args:
            now: The instant to compute for (default: the wall clock).
        """
        at = _now(now)
        return summarise(self.in_window(at), at)

    def in_window(self, at: datetime) -> list[Observation]:
        """The observations :meth:`stats` counts at ``at`` (oldest first, a copy)."""
        at = _utc(at)
        lo = bisect.bisect_left(self._items, at - self.window, key=lambda o: o.ts)
        hi = bisect.bisect_right(self._items, at, key=lambda o: o.ts)
        return self._items[lo:hi]


def summarise(items: list[Observation], at: datetime) -> WindowStats:
    """:class:`WindowStats` of ``items`` (in timestamp order, none after ``at``) at ``at``."""
    if not items:
        return WindowStats(as_of=at)
    ok_latencies = [o.latency_ms for o in items if o.ok]
    last_error = next((o for o in reversed(items) if not o.ok), None)
    return WindowStats(
        as_of=at,
        count=len(items),
        successes=len(ok_latencies),
        success_rate=len(ok_latencies) / len(items),
        p50_latency_ms=percentile(ok_latencies, 50),
        p95_latency_ms=percentile(ok_latencies, 95),
        uptime=_uptime(items, at),
        seconds_since_last_error=(
            None if last_error is None else (at - last_error.ts).total_seconds()
        ),
        last_error_at=None if last_error is None else last_error.ts,
        last_error_class=None if last_error is None else last_error.error_class,
        last_breaker_state=items[-1].breaker_state,
    )


def _uptime(items: list[Observation], now: datetime) -> float:
    """Time-weighted up fraction; each state holds until the next observation (or ``now``)."""
    span = (now - items[0].ts).total_seconds()
    if span <= 0:
        return 1.0 if items[-1].ok else 0.0
    up = 0.0
    for current, following in zip(items, [*items[1:], None], strict=True):
        end = now if following is None else following.ts
        if current.ok:
            up += (end - current.ts).total_seconds()
    return up / span


class Thresholds(Protocol):
    """The settings :func:`health_score` reads; :class:`junction.settings.Settings` fits."""

    @property
    def response_time_warning_ms(self) -> float: ...
    @property
    def response_time_critical_ms(self) -> float: ...
    @property
    def success_rate_warning(self) -> float: ...
    @property
    def success_rate_critical(self) -> float: ...
    @property
    def health_score_warning(self) -> float: ...
    @property
    def health_score_critical(self) -> float: ...


@dataclass(frozen=True)
class ScoreBreakdown:
    """A health score and how it was reached.

    Attributes:
        score: 0-100, or ``None`` when there is nothing to score.
        status: ``healthy``, ``warning``, ``critical`` or ``unknown``.
        success: Success-rate points (of 50).
        latency: Latency points (of 25).
        error_recency: Error-recency points (of 15).
        breaker: Breaker points (of 10).
        reasons: Why the status is not ``healthy`` (empty when it is).
    """

    score: float | None
    status: Status
    success: float | None = None
    latency: float | None = None
    error_recency: float | None = None
    breaker: float | None = None
    reasons: tuple[str, ...] = ()


def _ramp_down(value: float, full_at: float, zero_at: float, points: float) -> float:
    """``points`` at or below ``full_at``, 0 at or above ``zero_at``, linear between."""
    if value <= full_at:
        return points
    if value >= zero_at:
        return 0.0
    return points * (zero_at - value) / (zero_at - full_at)


def success_points(rate: float, warning: float, critical: float) -> float:
    """Success component (of 50): full at ``rate >= warning``, 0 at ``critical - gap``."""
    floor = max(0.0, critical - (warning - critical))
    if rate >= warning:
        return SUCCESS_POINTS
    if rate <= floor:
        return 0.0
    return SUCCESS_POINTS * (rate - floor) / (warning - floor)


def latency_points(p95_ms: float | None, warning_ms: float, critical_ms: float) -> float:
    """Latency component (of 25): full at ``p95 <= warning``, 0 at ``p95 >= critical``."""
    if p95_ms is None:
        return 0.0
    return _ramp_down(p95_ms, warning_ms, critical_ms, LATENCY_POINTS)


def recency_points(seconds_since_error: float | None) -> float:
    """Error-recency component (of 15): 0 within a minute of an error, full after 10."""
    if seconds_since_error is None:
        return RECENCY_POINTS
    # Mirror image of a ramp-down: points grow with age.
    return RECENCY_POINTS - _ramp_down(
        seconds_since_error, RECENT_ERROR_SECONDS, RECOVERED_SECONDS, RECENCY_POINTS
    )


def breaker_points(state: str | None) -> float:
    """Breaker component (of 10): closed 10, half_open 5, open or unknown 0."""
    return BREAKER_SCORES.get(state or "", 0.0)


_RANK: dict[Status, int] = {"unknown": 0, "healthy": 1, "warning": 2, "critical": 3}


def _worse(a: Status, b: Status) -> Status:
    return a if _RANK[a] >= _RANK[b] else b


def health_score(
    stats: WindowStats, settings: Thresholds, *, now: datetime | None = None
) -> ScoreBreakdown:
    """Score a service's window (formula and status rules in the module docstring).

    Args:
        stats: From :meth:`ServiceWindow.stats`.
        settings: Thresholds, usually :class:`junction.settings.Settings`.
        now: Instant for error recency (default: ``stats.as_of``); lets a score be
            refreshed as an error ages without recomputing the window.

    Returns:
        The score, status and component points; ``unknown`` with score ``None`` when the
        window is empty.
    """
    if stats.count == 0 or stats.success_rate is None:
        return ScoreBreakdown(score=None, status="unknown", reasons=("no observations",))

    at = stats.as_of if now is None else _utc(now)
    since_error = (
        None
        if stats.last_error_at is None
        else max(0.0, (at - stats.last_error_at).total_seconds())
    )
    success = success_points(
        stats.success_rate, settings.success_rate_warning, settings.success_rate_critical
    )
    latency = latency_points(
        stats.p95_latency_ms, settings.response_time_warning_ms, settings.response_time_critical_ms
    )
    recency = recency_points(since_error)
    breaker = breaker_points(stats.last_breaker_state)
    score = success + latency + recency + breaker

    reasons: list[str] = []
    status: Status = "healthy"
    if score < settings.health_score_critical:
        status = "critical"
        reasons.append(f"score {score:.1f} < {settings.health_score_critical:g}")
    elif score < settings.health_score_warning:
        status = "warning"
        reasons.append(f"score {score:.1f} < {settings.health_score_warning:g}")

    rate, p95 = stats.success_rate, stats.p95_latency_ms
    if rate < settings.success_rate_critical:
        status = _worse(status, "critical")
        reasons.append(f"success rate {rate:.3f} < {settings.success_rate_critical:g}")
    elif rate < settings.success_rate_warning:
        status = _worse(status, "warning")
        reasons.append(f"success rate {rate:.3f} < {settings.success_rate_warning:g}")
    if p95 is not None and p95 > settings.response_time_critical_ms:
        status = _worse(status, "critical")
        reasons.append(f"p95 {p95:g} ms > {settings.response_time_critical_ms:g} ms")
    elif p95 is not None and p95 > settings.response_time_warning_ms:
        status = _worse(status, "warning")
        reasons.append(f"p95 {p95:g} ms > {settings.response_time_warning_ms:g} ms")
    if stats.last_breaker_state == "open":
        status = _worse(status, "critical")
        reasons.append("circuit breaker open")

    return ScoreBreakdown(
        score=score,
        status=status,
        success=success,
        latency=latency,
        error_recency=recency,
        breaker=breaker,
        reasons=tuple(reasons),
    )
