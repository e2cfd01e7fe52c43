"""What the monitor knows about each service, in one place, and how it reads as health.

A :class:`ServiceState` holds one service's sliding window, failure streak, last probe,
reported status, client and in-flight flags. :meth:`ServiceState.health` turns it into a
:class:`~junction.monitor.results.ServiceHealth`: the window's stats and score (formula in
:mod:`junction.scoring`), with the verdict of :mod:`junction.recovery`: a service in an
outage (``down_after`` failures in a row, more for a noisy service), recovering from one
or flapping is *down*, hence ``critical`` whatever its window averages say (a 15-minute
window of good probes would otherwise still read 98 % success); once an outage is over
its failures leave what status, score and the threshold alerts judge (the shown success
rate, uptime and the SLA keep them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from integrations.base import HealthResult, IntegrationClient
from junction.monitor.results import ServiceHealth
from junction.recovery import NoiseMemory, judge_window
from junction.scoring import (
    Observation,
    ServiceWindow,
    Status,
    Thresholds,
    health_score,
    summarise,
)


@dataclass(eq=False)
class ServiceState:
    """One monitored service.

    Attributes:
        name: Catalog name.
        window: Its sliding window of observations (probes and live calls).
        client: The probe client (``None`` when it could not be built).
        unusable: Why no client could be built: the probe result to report each time.
        streak: Failed observations in a row, newest first.
        status: Status last reported (``None`` before the first verdict).
        last_probe: The latest probe's result.
        last_probe_at: When the latest probe finished (monitor time).
        in_flight: A probe of the service is running (a sweep skips it).
        confirming: A re-probe confirming a live call's failure is running.
        noise: Its failure rate outside outages over about a day (junction.recovery).
    """

    name: str
    window: ServiceWindow
    client: IntegrationClient | None = None
    unusable: HealthResult | None = None
    streak: int = 0
    status: Status | None = None
    last_probe: HealthResult | None = None
    last_probe_at: datetime | None = None
    in_flight: bool = False
    confirming: bool = False
    noise: NoiseMemory = field(default_factory=NoiseMemory)

    @property
    def up(self) -> bool:
        """Its latest observation succeeded (or there is none yet)."""
        return self.streak == 0

    def add(self, observation: Observation, now: datetime) -> None:
        """Add one observation to the window and keep the failure streak."""
        self.window.add(observation, now=now)
        self.noise.add(observation.ok, self.streak)
        self.streak = 0 if observation.ok else self.streak + 1

    def probed(self, result: HealthResult, at: datetime) -> None:
        """Remember the latest probe (its observation is added separately)."""
        self.last_probe = result
        self.last_probe_at = at

    def shift(self, delta: timedelta, now: datetime) -> None:
        """Move every timestamp by ``delta`` (the wall clock jumped by it)."""
        shifted = ServiceWindow(self.window.window)
        shifted.extend(
            (dataclasses.replace(o, ts=o.ts + delta) for o in self.window.observations), now=now
        )
        self.window = shifted
        if self.last_probe_at is not None:
            self.last_probe_at += delta

    def health(
        self,
        now: datetime,
        thresholds: Thresholds,
        down_after: int,
        alerts: tuple[str, ...] = (),
        *,
        recovery: bool = True,
    ) -> ServiceHealth:
        """Its :class:`ServiceHealth` at ``now``.

        Args:
            now: Monitor time.
            thresholds: Score and status thresholds (the settings).
            down_after: Consecutive failures that make the service down.
            alerts: Its active alerts (``rule/severity/state``).
            recovery: Apply :mod:`junction.recovery` (noise-aware outages, recovery,
                flapping); False: down on ``down_after`` failures in a row, and the
                window averages judge everything (the behaviour before it).
        """
        items = self.window.in_window(now)
        shown = summarise(items, now)
        if recovery:
            # Down/recovered/flapping, and the observations status and alerts judge
            # (an ended outage's failures leave them): junction.recovery.
            verdict = judge_window(items, down_after=down_after, noise_floor=self.noise.rate)
            down = verdict.down
            stats = summarise(verdict.judged, now) if verdict.forgiven else shown
            note = verdict.reason
        else:
            down = self.streak >= down_after
            stats = shown
            note = f"down: last {self.streak} checks failed" if down else ""
        breakdown = health_score(stats, thresholds, now=now)
        status: Status = breakdown.status
        reasons = list(breakdown.reasons)
        if down:
            status = "critical"
        if note:
            reasons.insert(0, note)
        last = self.last_probe
        return ServiceHealth(
            service=self.name,
            status=status,
            score=breakdown.score,
            ok=None if last is None else last.ok,
            latency_ms=None if last is None else last.latency_ms,
            http_status=None if last is None else last.status,
            error_class=None if last is None else last.error_class,
            error=None if last is None else last.error,
            success_rate=shown.success_rate,
            p50_latency_ms=shown.p50_latency_ms,
            p95_latency_ms=shown.p95_latency_ms,
            uptime=shown.uptime,
            breaker_state=shown.last_breaker_state,
            observations=shown.count,
            failures=shown.failures,
            consecutive_failures=self.streak,
            down=down,
            checked_at=self.last_probe_at,
            as_of=now,
            reasons=tuple(reasons),
            alerts=alerts,
            stats=stats,
            breakdown=breakdown,
        )


@dataclass
class SeenRows:
    """Ids of the rows already observed, so a row reaching the monitor twice counts once.

    A live call can arrive through the in-process metric sink and again from the store
    (spool, then segment); a probe is observed when made and again on restore. Ids are
    kept while their row could still arrive by another path: ``keep_seconds``.
    """

    keep_seconds: float
    _ids: dict[str, float] = field(default_factory=dict)

    def add(self, row_id: str, mono: float) -> bool:
        """Record ``row_id`` (seen at monotonic time ``mono``); ``False`` if already seen."""
        if row_id in self._ids:
            return False
        self._ids[row_id] = mono
        return True

    def prune(self, mono: float) -> None:
        """Forget ids older than ``keep_seconds`` (cheap when there are none)."""
        horizon = mono - self.keep_seconds
        oldest = next(iter(self._ids.values()), None)
        if oldest is not None and oldest < horizon:
            self._ids = {k: t for k, t in self._ids.items() if t >= horizon}


__all__ = ["SeenRows", "ServiceState"]
