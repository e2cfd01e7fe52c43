"""Continuous integration monitoring: probes, live calls, sliding windows, alerts.

A :class:`Monitor` owns one :class:`junction.scoring.ServiceWindow` per monitored
integration and fills it from three sources:

* **probes**: :meth:`Monitor.sweep` health-checks every enabled integration concurrently
  (bounded by ``JUNCTION_SWEEP_CONCURRENCY``) over one shared HTTP client, records each
  probe in the metrics store's ``probes`` table as soon as it completes (a crash mid-sweep
  keeps every probe that finished; the store publishes a dead writer's spool exactly once)
  and returns a typed :class:`SweepResult`;
* **live calls in this process**: every integration call reports a
  :class:`integrations.metrics.CallMetric` through the metric hook; the monitor's sink
  turns it into an observation of that service;
* **live calls of other processes** (workflow runs): read from the metrics store's
  ``calls`` table by a :class:`junction.tail.StoreTailer`, including the unflushed spools
  of live writers, each row once.

How a failure is detected fast without alerting on a blip:

* **First-failure confirmation**: when a service that was up fails a probe (or a live
  call), it is re-probed after ``JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS`` instead of a
  whole interval later. Its status and the alert engine are updated only once that
  confirmation is in: a blip (fail, then succeed) does not mark the service down.
* **Down**: a service whose last ``JUNCTION_MONITOR_DOWN_AFTER`` observations all failed
  is *down*: its status is ``critical`` whatever its window averages say (a 15-minute
  window of good probes would otherwise still read 98 % success). The window stats and
  the score (formula in :mod:`junction.scoring`) are reported unchanged.
* Alert evaluation runs as soon as a service's status changes or it fails, not at the
  end of the sweep (a probe that hangs until its timeout would hold everyone's alerts);
  services changing within :data:`EVAL_BATCH_SECONDS` of each other are evaluated
  together, so the engine sees a shared dependency's outage whole. Every sweep ends
  with an evaluation of all services and an outbox delivery round (which also retries
  failed deliveries).

Probes use their own circuit breaker per service, which tracks consecutive failures for
the ``breaker`` column and score but never refuses a probe: a monitor that stops probing
an open service would notice its recovery a whole breaker timeout late. A probe is cut
at ``JUNCTION_MONITOR_PROBE_TIMEOUT_SECONDS`` and counted as a failure.

Time: intervals, timeouts and scheduling use the monotonic clock. Observations are
stamped by a :class:`MonitorClock` (wall time at start + monotonic elapsed); when the wall
clock jumps (NTP step, manual change) by more than :data:`CLOCK_JUMP_TOLERANCE` the
windows are shifted by the jump and the clock re-anchored, so a jump neither empties a
window (forward) nor hides new observations behind old ones (backward).

Live calls are judged for *service* health: a call that never reached the service
(``CircuitOpenError``, configuration errors) is ignored; connection errors, timeouts,
5xx, 401/403 and malformed responses are failures; other 4xx (404, 409, 422, 429...) mean
the service answered, so they count as successes.

Run it once (``await run_once()``), or continuously::

    async with Monitor(settings) as monitor:
        await monitor.restore()                      # windows from the metrics store
        await monitor.run_forever(5.0, on_sweep=print)  # until SIGINT/SIGTERM or stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol
from uuid import uuid4

from junction.durations import duration_seconds
from junction.scoring import (
    Observation,
    ScoreBreakdown,
    ServiceWindow,
    Status,
    WindowStats,
    health_score,
)

if TYPE_CHECKING:
    import httpx

    from integrations.base import HealthResult, IntegrationClient
    from integrations.metrics import CallMetric
    from junction.settings import Settings
    from junction.store import MetricsStore
    from junction.tail import StoreTailer

log = logging.getLogger(__name__)

CLOCK_JUMP_TOLERANCE = 2.0
"""Seconds the wall clock may disagree with the monitor's clock before it counts as a jump."""

ANNOTATION_WAIT_SECONDS = 0.3
"""Longest an alert evaluation waits for a vendor status page before going without it."""

EVAL_BATCH_SECONDS = 0.1
"""How long an alert evaluation triggered by one service waits for others to change too."""

_NEVER_SENT = frozenset(
    {
        "CircuitOpenError",
        "ConfigurationError",
        "UnknownIntegrationError",
        "UnknownActionError",
        "MissingCredentialsError",
        "InvalidBaseURLError",
    }
)


def parse_duration(text: str) -> float:
    """Parse ``500ms``, ``5s``, ``1m``, ``1h``, ``1m30s`` or a bare number of seconds.

    Args:
        text: The duration.

    Returns:
        Seconds (> 0).

    Raises:
        ValueError: Not a duration, or not positive (the message shows valid examples).
    """
    hint = "use a number with a unit, e.g. 500ms, 5s, 1m, 1m30s"
    seconds = duration_seconds(text)
    if seconds is None:
        raise ValueError(f"invalid duration {text!r}: {hint}")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}: {hint}")
    return seconds


def classify_call(ok: bool, status: int | None, error_class: str | None) -> bool | None:
    """Whether a live call says the service is up (``True``), down (``False``) or nothing.

    See the module docstring for the rules.
    """
    if ok:
        return True
    if error_class in _NEVER_SENT:
        return None
    return not (status is None or status >= 500 or status in (401, 403))


class MonitorClock:
    """Wall-clock timestamps that advance with the monotonic clock.

    Args:
        wall: Wall clock (aware UTC); injectable to simulate jumps in tests.
        mono: Monotonic clock in seconds.
    """

    def __init__(
        self,
        wall: Callable[[], datetime] | None = None,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall or (lambda: datetime.now(UTC))
        self._mono = mono
        self._anchor_wall = self._wall()
        self._anchor_mono = self._mono()

    def now(self) -> datetime:
        """The monitor's current time (UTC)."""
        return self._anchor_wall + timedelta(seconds=self._mono() - self._anchor_mono)

    def monotonic(self) -> float:
        """The monotonic clock (seconds)."""
        return self._mono()

    def wall(self) -> datetime:
        """The wall clock right now."""
        return self._wall()

    def jump(self) -> float:
        """Seconds the wall clock is ahead (+) or behind (-) the monitor's time."""
        return (self._wall() - self.now()).total_seconds()

    def reanchor(self) -> None:
        """Adopt the wall clock's current time."""
        self._anchor_wall = self._wall()
        self._anchor_mono = self._mono()


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


class AlertHook(Protocol):
    """What the monitor needs from an alert engine (see :func:`default_alert_hook`)."""

    async def evaluate(self, snapshots: Sequence[ServiceHealth], now: datetime) -> list[str]:
        """Feed service snapshots; return alert transitions as one-line messages."""
        ...

    async def deliver(self, now: datetime) -> None:
        """Send the notifications that are due (outbox)."""
        ...

    def active(self) -> dict[str, list[str]]:
        """Active alerts per service (``rule/severity/state`` strings)."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


def default_alert_hook(settings: Settings, store: MetricsStore | None = None) -> AlertHook | None:
    """The alert engine configured by ``settings`` (an :class:`EngineHook`), if available.

    The engine (``junction.alerting.engine``) is optional: without it the monitor still
    probes, records and reports status changes.

    Raises:
        AlertConfigError: The alerting configuration file is invalid.
    """
    import importlib

    try:
        importlib.import_module("junction.alerting.engine")
    except ImportError:
        return None
    return EngineHook(settings, store=store)


class EngineHook:
    """:class:`AlertHook` over :class:`junction.alerting.engine.AlertEngine` and its channels.

    Feeds every new observation to the engine's SLA tracker once, passes the monitor's
    snapshots to ``evaluate`` (with ``down``/``consecutive_failures``, which the engine's
    ``down`` rule fires on, and the vendor's status-page note for services in trouble,
    from a :class:`junction.alerting.statuspage.StatusPagePoller`) and runs one outbox
    round per ``deliver``.

    Args:
        settings: Settings (alerting file, alert database).
        store: Metrics store for the engine's alert history and SLA restore.
        engine: An engine to use instead of building one from ``settings``.
        channels: Channels by name (default: built from the alerting configuration).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: MetricsStore | None = None,
        engine: Any = None,
        channels: dict[str, Any] | None = None,
    ) -> None:
        from junction.alerting.engine import AlertEngine, ServiceSnapshot

        self.engine = engine or AlertEngine.from_settings(settings, store=store)
        self._snapshot_type = ServiceSnapshot
        self._fields = {f.name for f in dataclasses.fields(ServiceSnapshot)}
        if channels is None:
            try:
                channels = dict(self.engine.config.build_channels(settings))
            except RuntimeError as exc:  # the channels module is missing: queue only
                log.warning("alert channels unavailable, notifications stay queued: %s", exc)
                channels = {}
        self.channels: dict[str, Any] = channels
        self._active: dict[str, list[str]] = {}
        self._refresh_active()
        self.poller: Any = None
        if settings.enhanced_monitoring_enabled:
            try:
                from junction.alerting.statuspage import StatusPagePoller
            except ImportError:
                pass
            else:
                self.poller = StatusPagePoller(settings)
        self._annotations: dict[str, str | None] = {}
        self._fetches: dict[str, asyncio.Task[str | None]] = {}

    def _refresh_active(self) -> None:
        active: dict[str, list[str]] = {}
        for alert in self.engine.active_alerts():
            active.setdefault(alert.service, []).append(
                f"{alert.rule}/{alert.severity.value}/{alert.state.value}"
            )
        self._active = active

    def restore(self, store: MetricsStore, now: datetime) -> None:
        """Rebuild the engine's SLA buckets from the store (once, at start-up)."""
        self.engine.restore_sla(store, now)

    def observe(self, service: str, observation: Observation) -> None:
        """Feed one observation to the SLA tracker."""
        self.engine.observe(service, [observation])

    async def _annotate(self, services: list[str]) -> None:
        """Refresh the vendor status notes of ``services`` (waits at most briefly).

        A page that has not answered within :data:`ANNOTATION_WAIT_SECONDS` does not hold
        up the alert: its fetch goes on, and the next evaluation uses the result.
        """
        if self.poller is None or not services:
            return
        for service in services:
            task = self._fetches.get(service)
            if task is None or task.done():
                self._fetches[service] = asyncio.ensure_future(self.poller.annotation(service))
        tasks = {self._fetches[s] for s in services}
        await asyncio.wait(tasks, timeout=ANNOTATION_WAIT_SECONDS)
        for service in services:
            task = self._fetches[service]
            if task.done() and not task.cancelled() and task.exception() is None:
                self._annotations[service] = task.result()

    def _snapshot(self, health: ServiceHealth) -> Any:
        assert health.stats is not None and health.breakdown is not None
        extra: dict[str, Any] = {}
        if "annotation" in self._fields:
            extra["annotation"] = self._annotations.get(health.service)
        if "down" in self._fields:
            extra["down"] = health.down
        if "consecutive_failures" in self._fields:
            extra["consecutive_failures"] = health.consecutive_failures
        return self._snapshot_type(
            service=health.service, stats=health.stats, score=health.breakdown, **extra
        )

    async def evaluate(self, snapshots: Sequence[ServiceHealth], now: datetime) -> list[str]:
        """Run one engine evaluation; return its transitions as one-liners.

        Services that are not healthy, or have alerts, get their vendor's status-page
        note (``GitLab reports: ...``) attached first.
        """
        troubled = [
            h.service
            for h in snapshots
            if h.status in ("warning", "critical") or h.service in self._active
        ]
        await self._annotate(troubled)
        snaps = [self._snapshot(h) for h in snapshots if h.stats is not None]
        result = self.engine.evaluate(snaps, now=now)
        self._active = {}
        for alert in result.active:
            self._active.setdefault(alert.service, []).append(
                f"{alert.rule}/{alert.severity.value}/{alert.state.value}"
            )
        lines = []
        for alert in result.fired:
            note = f" (suppressed: {alert.suppressed_by} is down)" if alert.suppressed_by else ""
            lines.append(
                f"alert {alert.severity.value.upper()} {alert.fingerprint} firing: "
                f"{alert.message}{note}"
            )
        for alert in result.changed:
            lines.append(f"alert {alert.fingerprint} now {alert.severity.value}: {alert.message}")
        for alert in result.resolved:
            lines.append(f"alert {alert.fingerprint} resolved")
        for n in result.notifications:
            lines.append(f"notify {n.channel}: {n.kind.value} {n.title}")
        return lines

    async def deliver(self, now: datetime) -> None:
        """One outbox round over the configured channels."""
        if not self.channels:
            return
        report = await self.engine.deliver(self.channels, now=now)
        for key, error in report.errors.items():
            log.warning("notification %s not delivered: %s", key, error)

    def active(self) -> dict[str, list[str]]:
        """Active alerts per service (as of the last evaluation)."""
        return self._active

    async def aclose(self) -> None:
        """Close the channels, the status-page poller and the engine's database."""
        for task in self._fetches.values():
            task.cancel()
        if self._fetches:
            await asyncio.gather(*self._fetches.values(), return_exceptions=True)
        if self.poller is not None:
            with contextlib.suppress(Exception):
                await self.poller.aclose()
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.aclose()
        self.engine.close()


@functools.cache
def _probe_breaker_class() -> type[Any]:
    from integrations.breaker import CircuitBreaker  # deferred: keeps import time light

    class ProbeBreaker(CircuitBreaker):
        """Counts failures and reports a state, but never refuses a probe."""

        def allow(self) -> tuple[bool, float]:
            return True, 0.0

    return ProbeBreaker


def probe_breaker(service: str, settings: Settings) -> Any:
    """A circuit breaker for a monitor's probes: tracks state, never refuses a probe."""
    return _probe_breaker_class()(
        service,
        failure_threshold=settings.breaker_failure_threshold,
        reset_timeout=settings.breaker_reset_seconds,
    )


def next_tick(k: int, elapsed: float, every: float) -> int:
    """Index of the next tick after tick ``k`` ran, ``elapsed`` seconds after the start.

    Ticks sit on the grid ``start + n * every`` (no drift however long a sweep takes);
    ticks already in the past are skipped rather than run in a burst.
    """
    return max(k + 1, math.floor(elapsed / every) + 1)


OnSweep = Callable[[SweepResult], Any]
OnEvent = Callable[[MonitorEvent], Any]


class Monitor:
    """Probes, passive observations, per-service sliding windows and alert evaluation.

    Use as an async context manager (it owns the HTTP client and the metric sinks).

    Args:
        settings: Settings (default: the process's).
        names: Integrations to monitor (default: every enabled one).
        store: Metrics store to record into (default: the configured one, opened and
            closed by the monitor); ignored with ``record=False``.
        record: Record probes (``probes`` table) and this process's calls (``calls``).
        passive: Feed live calls into the windows (default:
            ``ENHANCED_MONITORING_ENABLED``).
        alerts: Alert engine hook (default: :func:`default_alert_hook`); pass ``False``
            for none.
        clock: Time source (default: a :class:`MonitorClock` on the real clocks).
        on_event: Called with every :class:`MonitorEvent` (status changes, alerts...).
        probe_timeout: Seconds (default ``JUNCTION_MONITOR_PROBE_TIMEOUT_SECONDS``).
        confirm_delay: Seconds (default ``JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS``);
            ``None`` uses the setting, a negative value disables confirmation.
        window_seconds: Window length (default ``JUNCTION_MONITOR_WINDOW_SECONDS``).
        concurrency: Probes in flight at once (default ``JUNCTION_SWEEP_CONCURRENCY``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        names: Sequence[str] | None = None,
        store: MetricsStore | None = None,
        record: bool = True,
        passive: bool | None = None,
        alerts: AlertHook | Literal[False] | None = None,
        clock: MonitorClock | None = None,
        on_event: OnEvent | None = None,
        probe_timeout: float | None = None,
        confirm_delay: float | None = None,
        window_seconds: float | None = None,
        concurrency: int | None = None,
    ) -> None:
        from junction.settings import get_settings

        self.settings = settings or get_settings()
        s = self.settings
        self._requested = list(names) if names is not None else None
        self.names: list[str] = []
        self.record = record
        self.passive = s.enhanced_monitoring_enabled if passive is None else passive
        self._alerts_arg = alerts
        self.alerts: AlertHook | None = None
        self.clock = clock or MonitorClock()
        self.on_event = on_event
        self.probe_timeout = probe_timeout or s.monitor_probe_timeout_seconds
        delay = s.monitor_confirm_delay_seconds if confirm_delay is None else confirm_delay
        self.confirm_delay: float | None = None if delay < 0 else delay
        self.window = timedelta(seconds=window_seconds or s.monitor_window_seconds)
        self.concurrency = concurrency or s.sweep_concurrency
        self.down_after = s.monitor_down_after

        self.store = store if record else None
        self._own_store = record and store is None
        self._windows: dict[str, ServiceWindow] = {}
        self._streak: dict[str, int] = {}
        self._last_probe: dict[str, HealthResult] = {}
        self._last_probe_at: dict[str, datetime] = {}
        self._status: dict[str, Status] = {}
        self._clients: dict[str, IntegrationClient] = {}
        self._unusable: dict[str, HealthResult] = {}
        self._in_flight: set[str] = set()
        self._confirming: set[str] = set()
        self._seen: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        self._gate: asyncio.Semaphore | None = None
        self._eval_lock: asyncio.Lock | None = None
        self._deliver_lock: asyncio.Lock | None = None
        self._deliver_again = False
        self._eval_pending: set[str] = set()
        self._eval_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tailer: StoreTailer | None = None
        self._restored = False
        self._restoring = False
        self._opened = False
        self._closed = False
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._sinks: list[Callable[[Any], None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Monitor:
        try:
            await self.open()
        except BaseException:
            await self.aclose()  # release what was opened before the failure
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Build the clients, register the metric sinks, open the store.

        Raises:
            UnknownIntegrationError: A requested name is not in the catalog.
            ValueError: ``JUNCTION_INTEGRATIONS`` names an unknown integration.
        """
        if self._opened:
            return
        import httpx

        from integrations.base import HealthResult
        from integrations.catalog import load_catalog
        from integrations.errors import IntegrationError
        from integrations.metrics import add_sink
        from junction.clients import get_client
        from integrations.transport import sweep_client
        from junction.store import MetricsStore
        from junction.tail import StoreTailer

        s = self.settings
        catalog = load_catalog()
        if self._requested is None:
            self.names = s.enabled_names(catalog.names)
        else:
            for name in self._requested:
                catalog.get(name)  # unknown names fail before anything is sent
            self.names = list(dict.fromkeys(self._requested))
        self._opened = True  # from here on aclose() has something to release
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._gate = asyncio.Semaphore(self.concurrency)
        self._eval_lock = asyncio.Lock()
        self._deliver_lock = asyncio.Lock()
        if self._own_store:
            # Probes need not be visible to readers at once (the tailer reads spools):
            # fewer, larger segments.
            self.store = MetricsStore(s.metrics_dir, flush_seconds=60.0)
        timeout = httpx.Timeout(
            self.probe_timeout, connect=min(self.probe_timeout, s.connect_timeout_seconds)
        )
        self._http = sweep_client(self.concurrency, timeout, backend=s.http_backend)
        for name in self.names:
            self._windows[name] = ServiceWindow(self.window)
            self._streak[name] = 0
            try:
                self._clients[name] = get_client(
                    name,
                    settings=s,
                    http=self._http,
                    source="probe",
                    breaker=probe_breaker(name, s),
                    timeout=self.probe_timeout,
                    # Only the monitor's own calls: live calls are recorded by whoever
                    # makes them (a second global sink would record them twice).
                    metric_hook=None if self.store is None else self.store.record_call,
                )
            except IntegrationError as exc:
                self._unusable[name] = HealthResult(
                    service=name,
                    ok=False,
                    status=None,
                    latency_ms=0.0,
                    error_class=exc.error_class,
                    error=exc.message,
                    breaker_state="n/a",
                    attempts=0,
                )
        if self.passive:
            self._sinks.append(self._sink)
            root = self.store.root if self.store is not None else s.metrics_dir
            self._tailer = StoreTailer(root, "calls", since=self.clock.now() - self.window)
        for sink in self._sinks:
            add_sink(sink)
        if self._alerts_arg is None:
            self.alerts = default_alert_hook(s, self.store)
        elif self._alerts_arg is not False:
            self.alerts = self._alerts_arg

    async def aclose(self) -> None:
        """Cancel background work, close clients and the alert hook, flush the store."""
        if self._closed or not self._opened:
            return
        self._closed = True
        from integrations.metrics import remove_sink

        for sink in self._sinks:
            remove_sink(sink)
        if self._tasks:
            # Let confirmations, evaluations and deliveries in flight finish (bounded).
            grace = max(
                self.probe_timeout + (self.confirm_delay or 0.0),
                self.settings.alert_send_timeout_seconds,
            )
            _, late = await asyncio.wait(set(self._tasks), timeout=grace + 1.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        if self._http is not None:
            await self._http.aclose()
        if self.alerts is not None:
            with contextlib.suppress(Exception):
                await self.alerts.aclose()
        if self.store is not None:
            if self._own_store:
                self.store.close()
            else:
                self.store.flush()

    def _require_open(self) -> None:
        if not self._opened or self._closed:
            raise RuntimeError("use the Monitor inside `async with Monitor(...)`")

    # ------------------------------------------------------------------ state

    def snapshot(self, service: str) -> ServiceHealth:
        """The current :class:`ServiceHealth` of one monitored service.

        Raises:
            KeyError: Not a monitored service.
        """
        window = self._windows[service]
        now = self.clock.now()
        stats = window.stats(now)
        breakdown = health_score(stats, self.settings, now=now)
        status: Status = breakdown.status
        reasons = list(breakdown.reasons)
        streak = self._streak.get(service, 0)
        down = streak >= self.down_after
        if down:
            status = "critical"
            reasons.insert(0, f"down: last {streak} checks failed")
        last = self._last_probe.get(service)
        alerts: tuple[str, ...] = ()
        if self.alerts is not None:
            with contextlib.suppress(Exception):
                alerts = tuple(self.alerts.active().get(service, ()))
        return ServiceHealth(
            service=service,
            status=status,
            score=breakdown.score,
            ok=None if last is None else last.ok,
            latency_ms=None if last is None else last.latency_ms,
            http_status=None if last is None else last.status,
            error_class=None if last is None else last.error_class,
            error=None if last is None else last.error,
            success_rate=stats.success_rate,
            p50_latency_ms=stats.p50_latency_ms,
            p95_latency_ms=stats.p95_latency_ms,
            uptime=stats.uptime,
            breaker_state=stats.last_breaker_state,
            observations=stats.count,
            failures=stats.failures,
            consecutive_failures=streak,
            down=down,
            checked_at=self._last_probe_at.get(service),
            as_of=now,
            reasons=tuple(reasons),
            alerts=alerts,
            stats=stats,
            breakdown=breakdown,
        )

    def snapshots(self) -> list[ServiceHealth]:
        """:meth:`snapshot` of every monitored service, in monitor order."""
        return [self.snapshot(name) for name in self.names]

    def observations(self, service: str) -> list[Observation]:
        """The window's observations of ``service``, oldest first (a copy)."""
        return self._windows[service].observations

    def _add(self, service: str, obs: Observation, row_id: str | None = None) -> bool:
        """Add one observation (once per ``row_id``); keep the failure streak."""
        window = self._windows.get(service)
        if window is None:
            return False
        if row_id is not None:
            if row_id in self._seen:
                return False
            self._seen[row_id] = self.clock.monotonic()
            if self._tailer is not None:
                self._tailer.mark_seen(row_id, obs.ts)
        window.add(obs, now=self.clock.now())
        self._streak[service] = 0 if obs.ok else self._streak.get(service, 0) + 1
        observe = getattr(self.alerts, "observe", None)
        if observe is not None and not self._restoring:
            # The engine's SLA tracker restores history itself; feed only new outcomes.
            try:
                observe(service, obs)
            except Exception:
                log.exception("feeding the alert engine's SLA tracker failed")
        return True

    def _emit(self, event: MonitorEvent) -> None:
        if event.kind in ("error", "clock_jump"):
            log.warning("%s", event.message)
        else:
            log.info("%s", event.message)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("monitor on_event callback failed")

    def _refresh(self, service: str) -> ServiceHealth:
        """Recompute the service's status; emit a ``status`` event when it changed."""
        health = self.snapshot(service)
        old = self._status.get(service)
        self._status[service] = health.status
        # A first verdict of "healthy" is not news; any other change is.
        if (
            old is not None
            and old != health.status
            and (old, health.status) != ("unknown", "healthy")
        ):
            why = f" ({health.reasons[0]})" if health.reasons else ""
            self._emit(
                MonitorEvent(
                    kind="status",
                    at=health.as_of,
                    message=f"{service}: {old} -> {health.status}{why}",
                    service=service,
                    old=old,
                    new=health.status,
                )
            )
        return health

    # ------------------------------------------------------------------ clock

    def check_clock(self) -> float:
        """Detect a wall-clock jump; shift the windows by it and re-anchor.

        Returns:
            The jump in seconds (0.0 when within :data:`CLOCK_JUMP_TOLERANCE`).
        """
        jump = self.clock.jump()
        if abs(jump) <= CLOCK_JUMP_TOLERANCE:
            return 0.0
        delta = timedelta(seconds=jump)
        self.clock.reanchor()
        now = self.clock.now()
        for name, window in self._windows.items():
            shifted = ServiceWindow(window.window)
            shifted.extend(
                (dataclasses.replace(o, ts=o.ts + delta) for o in window.observations), now=now
            )
            self._windows[name] = shifted
        self._last_probe_at = {k: v + delta for k, v in self._last_probe_at.items()}
        if self._tailer is not None:
            self._tailer.since = self._tailer.since + delta
        self._emit(
            MonitorEvent(
                kind="clock_jump",
                at=now,
                message=f"wall clock jumped {jump:+.1f} s; windows shifted to match",
            )
        )
        return jump

    # ------------------------------------------------------------------ restore

    async def restore(self) -> int:
        """Fill the windows from the metrics store: recent probes and other processes' calls.

        Each scheduled flow run is a new process: without this its window would hold one
        sweep. Reads published segments and live spools (``junction.tail``); safe to call
        once per monitor (later calls do nothing).

        Returns:
            Observations added.
        """
        self._require_open()
        if self._restored:
            return 0
        self._restored = True
        self._restoring = True
        try:
            added = await self._restore()
        finally:
            self._restoring = False
        for name in self.names:
            self._status[name] = self.snapshot(name).status
        return added

    async def _restore(self) -> int:
        from junction.tail import read_since

        root = self.store.root if self.store is not None else self.settings.metrics_dir
        since = self.clock.now() - self.window
        restore_sla = getattr(self.alerts, "restore", None)
        if restore_sla is not None and self.store is not None:
            try:
                restore_sla(self.store, self.clock.now())
            except Exception:
                log.exception("restoring the alert engine's SLA history failed")
        rows = await asyncio.to_thread(read_since, root, "probes", since)
        now = self.clock.now()
        added = 0
        for row in rows:
            service = row.get("service")
            if service not in self._windows:
                continue
            obs = Observation(
                ts=min(row["ts"], now),
                ok=bool(row["ok"]),
                latency_ms=float(row["latency_ms"]),
                error_class=row.get("error_class"),
                breaker_state=row.get("breaker_state") or "closed",
            )
            added += self._add(service, obs, row["id"])
        if self.passive:
            added += await self.poll_store(quiet=True)
        return added

    # ------------------------------------------------------------------ passive

    def observe_call(self, metric: CallMetric) -> None:
        """Feed one live call (the metric sink; safe from any thread)."""
        self._sink(metric)

    def _sink(self, metric: Any) -> None:
        if self._closed or self._loop is None:
            return
        if getattr(metric, "source", None) == "probe":
            return  # probes are observed directly, with their confirmation logic
        service = getattr(metric, "service", None)
        if service not in self._windows:
            return
        args = (
            service,
            getattr(metric, "id", None),
            bool(metric.ok),
            getattr(metric, "status", None),
            getattr(metric, "error_class", None),
            float(getattr(metric, "latency_ms", 0.0)),
            getattr(metric, "breaker_state", "closed") or "closed",
            None,
        )
        if threading.get_ident() == self._loop_thread:
            self._observe(*args)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                self._loop.call_soon_threadsafe(self._observe, *args)

    def _observe(
        self,
        service: str,
        row_id: str | None,
        ok: bool,
        status: int | None,
        error_class: str | None,
        latency_ms: float,
        breaker_state: str,
        ts: datetime | None,
        quiet: bool = False,
    ) -> bool:
        """Add one live call's outcome; confirm a first failure; return whether it was new."""
        if self._closed:
            return False
        verdict = classify_call(ok, status, error_class)
        if verdict is None:
            return False
        now = self.clock.now()
        obs = Observation(
            ts=now if ts is None else min(ts, now),
            ok=verdict,
            latency_ms=latency_ms,
            error_class=None if verdict else error_class,
            breaker_state=breaker_state,
        )
        was_up = self._streak.get(service, 0) == 0
        if not self._add(service, obs, row_id):
            return False
        if quiet:  # restoring history: no events, no confirmation probes
            return True
        if verdict:
            if self._status.get(service, "unknown") != "healthy":
                self._after_update(service)
            return True
        self._emit(
            MonitorEvent(
                kind="passive_failure",
                at=now,
                message=f"{service}: live call failed ({error_class or status})",
                service=service,
            )
        )
        if (
            was_up
            and self.confirm_delay is not None
            and service in self._clients
            and service not in self._in_flight
            and not self._stopping()
        ):
            # Confirm with a probe right away: the alert then waits for no timer.
            self._spawn(self._confirm_passive(service))
        elif service not in self._confirming:
            self._after_update(service)
        return True

    async def _confirm_passive(self, service: str) -> None:
        self._confirming.add(service)
        self._in_flight.add(service)
        try:
            await self._probe(service, f"passive-{uuid4().hex[:12]}", delay=self.confirm_delay)
        finally:
            self._in_flight.discard(service)
            self._confirming.discard(service)
        self._after_update(service)

    async def poll_store(self, *, quiet: bool = False) -> int:
        """Read other processes' new calls from the metrics store into the windows.

        Args:
            quiet: Only fill the windows (no events, confirmations or alert runs).

        Returns:
            Observations added.
        """
        if self._tailer is None:
            return 0
        tailer = self._tailer
        tailer.advance(self.clock.now() - self.window)
        rows = await asyncio.to_thread(tailer.poll)
        added = 0
        for row in rows:
            if row.get("source") == "probe" or row.get("service") not in self._windows:
                continue
            added += self._observe(
                row["service"],
                row["id"],
                bool(row["ok"]),
                row.get("status"),
                row.get("error_class"),
                float(row["latency_ms"]),
                row.get("breaker_state") or "closed",
                row["ts"],
                quiet,
            )
        self._prune_seen()
        return added

    def _prune_seen(self) -> None:
        # Ids are only needed while their row could still arrive by another path.
        horizon = self.clock.monotonic() - self.window.total_seconds() - 120.0
        oldest = next(iter(self._seen.values()), None)
        if oldest is not None and oldest < horizon:
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}

    # ------------------------------------------------------------------ probing

    async def _probe(
        self, service: str, sweep_id: str, *, delay: float | None = None
    ) -> HealthResult:
        """One probe: wait ``delay``, check, record the row, add the observation."""
        from integrations.base import HealthResult

        if delay:
            await asyncio.sleep(delay)
        client = self._clients.get(service)
        if client is None:
            result = dataclasses.replace(self._unusable[service], checked_at=datetime.now(UTC))
        else:
            assert self._gate is not None
            async with self._gate:
                started = time.monotonic()
                try:
                    # The HTTP timeout normally fires first (with its own error class);
                    # this also cuts what it does not cover (SMTP, DNS, a stuck auth).
                    result = await asyncio.wait_for(
                        client.health_check(), timeout=self.probe_timeout + 0.25
                    )
                except TimeoutError:
                    result = HealthResult(
                        service=service,
                        ok=False,
                        status=None,
                        latency_ms=(time.monotonic() - started) * 1000.0,
                        error_class="APITimeoutError",
                        error=f"probe cut after {self.probe_timeout:g} s without an answer",
                        breaker_state=client.breaker.state.value,
                    )
        row_id = uuid4().hex
        if self.store is not None:
            from junction.health import probe_rows

            row = probe_rows([result], sweep_id)[0]
            row["id"] = row_id
            try:
                self.store.append("probes", [row])
            except Exception:  # a full disk must not stop monitoring
                log.exception("could not record the probe of %s", service)
        now = self.clock.now()
        obs = Observation(
            ts=now,
            ok=result.ok,
            latency_ms=result.latency_ms,
            error_class=result.error_class,
            breaker_state=result.breaker_state,
        )
        self._add(service, obs, row_id)
        self._last_probe[service] = result
        self._last_probe_at[service] = now
        return result

    async def _check(self, service: str, sweep_id: str) -> list[HealthResult]:
        """Probe one service; confirm a first failure; update status and alerts.

        The caller has put ``service`` in ``_in_flight``; it is removed here.
        """
        try:
            was_up = self._streak.get(service, 0) == 0
            results = [await self._probe(service, sweep_id)]
            if not results[0].ok and was_up and self.confirm_delay is not None:
                results.append(await self._probe(service, sweep_id, delay=self.confirm_delay))
        finally:
            self._in_flight.discard(service)
        self._after_update(service)
        return results

    def _after_update(self, service: str) -> None:
        """Refresh status; run the alert engine at once if it changed or is failing."""
        old = self._status.get(service)
        health = self._refresh(service)
        news = old != health.status and (old, health.status) not in (
            (None, "healthy"),
            ("unknown", "healthy"),
        )
        if self.alerts is not None and (news or health.consecutive_failures):
            self._request_evaluation(service)

    def _request_evaluation(self, service: str) -> None:
        """Evaluate ``service`` soon, batched with the others that change meanwhile.

        Services that fail together (a shared dependency's outage) then reach the engine
        in one evaluation, which orders them dependencies-first and suppresses the
        dependents' alerts instead of notifying each one.
        """
        self._eval_pending.add(service)
        if not self._eval_scheduled:
            self._eval_scheduled = True
            self._spawn(self._evaluate_pending())

    async def _evaluate_pending(self) -> None:
        try:
            await asyncio.sleep(EVAL_BATCH_SECONDS)
        finally:
            self._eval_scheduled = False
        names = [n for n in self.names if n in self._eval_pending]
        self._eval_pending.clear()
        if names:
            await self._evaluate([self.snapshot(n) for n in names])

    async def sweep(
        self, names: Sequence[str] | None = None, *, sweep_id: str | None = None
    ) -> SweepResult:
        """Probe every monitored service (or ``names``) once, concurrently.

        Services whose previous probe is still running are skipped (listed in
        ``skipped``). Each probe is recorded as it completes; then the alert engine sees
        every service's snapshot and due notifications are delivered.

        Args:
            names: A subset of the monitored services.
            sweep_id: Id recorded with the probes (default: a new uuid).

        Raises:
            KeyError: A name that is not monitored.
        """
        self._require_open()
        self.check_clock()
        targets = self.names if names is None else list(names)
        for name in targets:
            if name not in self._windows:
                raise KeyError(f"{name!r} is not monitored")
        sweep_id = sweep_id or uuid4().hex
        skipped = [n for n in targets if n in self._in_flight]
        todo = [n for n in targets if n not in self._in_flight]
        self._in_flight.update(todo)  # now, so an overlapping sweep cannot pick them too
        started_at = self.clock.now()
        t0 = time.monotonic()
        try:
            results = await asyncio.gather(*(self._check(n, sweep_id) for n in todo))
        finally:  # a cancelled sweep's never-started checks must not stay "in flight"
            self._in_flight.difference_update(todo)
        probes = [r for rs in results for r in rs]
        if self.alerts is not None:
            await self._evaluate(self.snapshots())
        return SweepResult(
            sweep_id=sweep_id,
            started_at=started_at,
            finished_at=self.clock.now(),
            duration_ms=(time.monotonic() - t0) * 1000.0,
            services=[self.snapshot(n) for n in todo],
            probes=probes,
            skipped=skipped,
        )

    # ------------------------------------------------------------------ alerts

    async def _evaluate(self, snapshots: list[ServiceHealth]) -> None:
        """Feed the alert engine, report its transitions, then deliver due notifications.

        Evaluations run one at a time; delivery has its own lock, so a slow channel
        (up to ``JUNCTION_ALERT_SEND_TIMEOUT_SECONDS``) never holds up the next
        evaluation.
        """
        if self.alerts is None or self._eval_lock is None:
            return
        async with self._eval_lock:
            now = self.clock.now()
            try:
                transitions = await self.alerts.evaluate(snapshots, now)
            except Exception as exc:
                log.exception("alert evaluation failed")
                self._emit(
                    MonitorEvent(kind="error", at=now, message=f"alert evaluation failed: {exc}")
                )
                return
            for message in transitions:
                self._emit(MonitorEvent(kind="alert", at=now, message=message))
        await self._deliver()

    async def _deliver(self) -> None:
        """One outbox round; if one is already running, make it run once more instead."""
        if self.alerts is None or self._deliver_lock is None:
            return
        if self._deliver_lock.locked():
            self._deliver_again = True
            return
        async with self._deliver_lock:
            again = True
            while again:
                self._deliver_again = False
                now = self.clock.now()
                try:
                    await self.alerts.deliver(now)
                except Exception as exc:
                    log.exception("notification delivery failed")
                    self._emit(
                        MonitorEvent(kind="error", at=now, message=f"delivery failed: {exc}")
                    )
                again = self._deliver_again

    # ------------------------------------------------------------------ continuous mode

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._closed:  # closing: the engine and clients are going away
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("monitor task failed", exc_info=task.exception())

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def stop(self) -> None:
        """Ask :meth:`run_forever` to finish (safe from any thread or a signal handler)."""
        self._stop_requested = True  # also honoured by a run_forever that starts later
        stop, loop = self._stop, self._loop
        if stop is None or loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            stop.set()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    async def run_forever(
        self,
        every: float,
        *,
        on_sweep: OnSweep | None = None,
        max_sweeps: int | None = None,
        handle_signals: bool = True,
    ) -> int:
        """Sweep every ``every`` seconds until :meth:`stop`, SIGINT/SIGTERM or ``max_sweeps``.

        Scheduling is drift-free on the monotonic clock: sweep ``k`` starts at
        ``start + k * every``; ticks missed (a slow machine, a suspended process) are
        skipped, not made up in a burst. A sweep does not wait for the previous one: a
        service whose probe is still running (a hang, cut at the probe timeout) is
        skipped, the others are probed on time. Other processes' calls are read from the
        store every ``JUNCTION_MONITOR_TAIL_SECONDS``.

        On shutdown the running sweeps get the probe timeout to finish (their probes are
        recorded), are then cancelled, and the store is flushed. A second signal cancels
        at once.

        Args:
            every: Seconds between sweep starts (> 0).
            on_sweep: Called with each :class:`SweepResult` (may be async).
            max_sweeps: Stop after this many sweeps (tests, benchmarks).
            handle_signals: Install SIGINT/SIGTERM handlers (main thread only).

        Returns:
            Sweeps started.
        """
        if every <= 0 or not math.isfinite(every):
            raise ValueError(f"every must be a positive number of seconds, got {every}")
        self._require_open()
        loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        if self._stop_requested:
            stop.set()
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

        sweeps: set[asyncio.Task[Any]] = set()
        tail_task = asyncio.ensure_future(self._tail_loop(stop)) if self._tailer else None
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
                task = asyncio.ensure_future(self._sweep_and_report(on_sweep))
                sweeps.add(task)
                task.add_done_callback(sweeps.discard)
                started += 1
                if max_sweeps is not None and started >= max_sweeps:
                    break
                k = next_tick(k, time.monotonic() - t0, every)
        finally:
            for sig in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            grace = self.probe_timeout * 2 + (self.confirm_delay or 0.0) + 1.0
            if sweeps:
                _, late = await asyncio.wait(set(sweeps), timeout=grace)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            stop.set()
            if tail_task is not None:
                tail_task.cancel()
                await asyncio.gather(tail_task, return_exceptions=True)
            if self.store is not None:
                try:
                    self.store.flush()
                except Exception:
                    log.exception("flushing the metrics store failed")
        return started

    async def _sweep_and_report(self, on_sweep: OnSweep | None) -> SweepResult | None:
        try:
            result = await self.sweep()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("sweep failed")
            self._emit(
                MonitorEvent(kind="error", at=self.clock.now(), message=f"sweep failed: {exc}")
            )
            return None
        if on_sweep is not None:
            try:
                out = on_sweep(result)
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("on_sweep callback failed")
        return result

    async def _tail_loop(self, stop: asyncio.Event) -> None:
        every = self.settings.monitor_tail_seconds
        while not stop.is_set():
            try:
                self.check_clock()
                await self.poll_store()
            except Exception:
                log.exception("reading live calls from the metrics store failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


async def run_once(
    settings: Settings | None = None,
    names: Sequence[str] | None = None,
    *,
    sweep_id: str | None = None,
    **kwargs: Any,
) -> SweepResult:
    """Open a :class:`Monitor`, restore its windows from the store, sweep once, close.

    Args:
        settings: Settings (default: the process's).
        names: Integrations (default: every enabled one).
        sweep_id: Id recorded with the probes.
        **kwargs: More :class:`Monitor` arguments.
    """
    async with Monitor(settings, names=names, **kwargs) as monitor:
        await monitor.restore()
        return await monitor.sweep(sweep_id=sweep_id)


__all__ = [
    "ANNOTATION_WAIT_SECONDS",
    "CLOCK_JUMP_TOLERANCE",
    "EVAL_BATCH_SECONDS",
    "AlertHook",
    "EngineHook",
    "Monitor",
    "MonitorClock",
    "MonitorEvent",
    "ServiceHealth",
    "SweepResult",
    "classify_call",
    "default_alert_hook",
    "next_tick",
    "parse_duration",
    "run_once",
]
