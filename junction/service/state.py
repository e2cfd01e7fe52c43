"""What one running service holds: its settings, the metrics store, the live view, the monitor.

One :class:`ServiceState` per app, on ``app.state.junction`` (routes get it with
:func:`junction.service.deps.get_state`). The health table comes from the running monitor
when there is one and the window asked for is its own; otherwise from the live view
(:mod:`junction.service.live`: every service's window in memory, following the store) or,
for other windows, from the store by DuckDB aggregates (:mod:`junction.service.aggregates`),
judged exactly as the monitor judges; so every read works whether or not this process
monitors.

The in-process monitor is supervised: when its loop fails (an exception out of it, or
:data:`FAILED_SWEEPS_TO_RESTART` sweeps in a row that fail or cannot evaluate alerts) it is
closed and opened again (the configuration and alert database re-read) after a backoff
that doubles up to :data:`RESTART_BACKOFF_SECONDS`'s cap; the failure is logged once per
streak, counted in ``restarts`` and named in ``last_error``. The API serves throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from analytics.anomaly_monitor import anomaly_judges
from integrations.catalog import load_catalog
from junction.alerting import state as alert_state
from junction.alerting.alerts import Alert, list_alerts
from junction.health import open_store
from junction.monitor import Monitor, MonitorEvent, ServiceHealth, SweepResult
from junction.service.aggregates import StoreReader, StoreUnreadable
from junction.service.errors import ApiError
from junction.service.live import LiveView
from junction.service.lookups import unknown
from junction.service.throttle import AuthThrottle
from junction.service.windowed import WindowedMetrics
from junction.settings import Settings
from junction.statedb import StateUrl
from junction.store import MetricsStore

log = logging.getLogger(__name__)

FileIdentity = tuple[int, int, int, int] | None
"""What :func:`junction.alerting.state.file_identity` returns."""

RESTART_BACKOFF_SECONDS = (1.0, 60.0)
"""Wait before the first restart of a failed monitor, and the cap of the doubling."""
FAILED_SWEEPS_TO_RESTART = 3
"""Sweeps in a row that fail (or whose alert evaluation fails) before a restart."""
# The monitor reports these failures as `error` events (it logs and goes on); a monitor
# that keeps failing them is restarted, which re-opens its alert database and config.
_FAILURE_EVENTS = ("sweep failed", "alert evaluation failed")


@dataclass(frozen=True)
class MonitorInfo:
    """Where the in-process monitor stands.

    Attributes:
        running: Its loop is running.
        started_at: When it was (last) started.
        interval_seconds: Seconds between sweeps.
        services: Services it monitors.
        sweeps: Sweeps completed since it started.
        last_sweep_at: When its latest sweep finished.
        last_error: Why it last failed (kept after a restart succeeds).
        restarts: Times it was restarted after a failure.
    """

    running: bool
    started_at: datetime | None
    interval_seconds: float | None
    services: list[str]
    sweeps: int
    last_sweep_at: datetime | None
    last_error: str | None
    restarts: int = 0


class ServiceState:
    """The service's shared state (one per app).

    Args:
        settings: The service's settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = datetime.now(UTC)
        self.monitor: Monitor | None = None
        self.monitor_task: asyncio.Task[None] | None = None
        self._monitor_live = False
        self._monitor_started_at: datetime | None = None
        self._monitor_interval: float | None = None
        self._monitor_error: str | None = None
        self._sweeps = 0
        self._last_sweep_at: datetime | None = None
        self._restarts = 0
        self._failing = False
        self._failed_sweeps = 0
        self._failure_events = 0
        self._failures_at_last_sweep = 0
        self._crash: str | None = None
        self._stopping = False
        self._wake_supervisor = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._store: MetricsStore | None = None
        self._reader: StoreReader | None = None
        self._store_lock = threading.Lock()
        self._alerts_cache: tuple[tuple[FileIdentity, ...], list[Alert]] | None = None
        self.live = LiveView(settings, self.reader)
        """Every service's window in memory (started by :meth:`start`)."""
        self.windowed = WindowedMetrics(self.reader)
        self.auth_throttle = AuthThrottle(settings.api_auth_max_failures)
        """Wrong tokens per client address (login form and bearer token alike)."""
        self.live.on_rows = self.windowed.add_rows  # the current bucket from memory
        """Windowed metrics from cached hourly rollups (``monitoring/metrics``)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the live view (app start-up): it reads the store once before this returns."""
        await self.live.start()

    async def aclose(self) -> None:
        """Stop the monitor and the live view, close the store (app shutdown)."""
        await self.stop_monitor()
        await self.live.aclose()
        await asyncio.to_thread(self.windowed.close)  # its background reads end first
        with self._store_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._store is not None:
                self._store.close()
                self._store = None

    # ------------------------------------------------------------------ the store

    def store(self) -> MetricsStore:
        """The metrics store (opened on first use, shared by every request, thread-safe).

        Raises:
            ApiError: 503 ``metrics_store`` when it cannot be opened (the reason named).
        """
        with self._store_lock:
            if self._store is None:
                try:
                    self._store = open_store(self.settings)
                except OSError as exc:
                    unreadable = StoreUnreadable(self.settings.metrics_dir, exc)
                    raise store_unavailable(unreadable) from None
            return self._store

    def reader(self) -> StoreReader:
        """DuckDB reads of the store under its read lock (one connection, thread-safe)."""
        store = self.store()
        with self._store_lock:
            if self._reader is None:
                self._reader = StoreReader(store)
            return self._reader

    # ------------------------------------------------------------------ services

    def service_names(self, wanted: Sequence[str] = ()) -> list[str]:
        """The enabled integrations and the services only the store knows, or ``wanted``.

        Services the store has rows of but the catalog lacks (recorded by another
        install, or synthetic load) are listed after the catalog's, by name.

        Raises:
            ApiError: 404 ``unknown_service`` for a name neither the catalog nor the store
                knows (with a did-you-mean).
        """
        catalog = load_catalog().names
        extra = sorted(self.live.known_services().difference(catalog))
        for name in wanted:
            if name not in catalog and name not in extra:
                raise unknown("service", name, [*catalog, *extra], field="query.service")
        if wanted:
            want = set(wanted)
            return [n for n in [*catalog, *extra] if n in want]
        try:
            return [*self.settings.enabled_names(catalog), *extra]
        except ValueError as exc:
            raise ApiError(500, "invalid_configuration", str(exc)) from None

    # ------------------------------------------------------------------ health

    def window_seconds(self, window: float | None) -> float:
        """The window asked for, or the monitor's (``JUNCTION_MONITOR_WINDOW_SECONDS``)."""
        return self.settings.monitor_window_seconds if window is None else window

    async def health(
        self, names: Sequence[str] = (), window: float | None = None
    ) -> tuple[list[ServiceHealth], str]:
        """The health table of ``names`` (default: every service) over ``window`` s.

        From the running monitor when it covers them with the same window; otherwise
        from the live view (memory) or the store (DuckDB), judged as the monitor judges.

        Returns:
            The rows, and where they came from (``monitor`` or ``store``).
        """
        await self.live.refresh()  # a service written just before is known, its rows in
        targets = self.service_names(names)
        seconds = self.window_seconds(window)
        mon = self.monitor
        if (
            mon is not None
            and self.monitor_running
            and mon.window.total_seconds() == seconds
            and set(targets) <= set(mon.names)
        ):
            return [mon.snapshot(n) for n in targets], "monitor"
        try:
            rows = await self.live.health(targets, seconds, alerts=self.alerts_by_service())
        except StoreUnreadable as exc:
            raise store_unavailable(exc) from None
        return rows, "store"

    def alerts_by_service(self) -> dict[str, tuple[str, ...]]:
        """Unresolved alerts per service, as ``rule/severity/state``."""
        by_service: dict[str, list[str]] = {}
        for a in self.open_alerts():
            by_service.setdefault(a.service, []).append(
                f"{a.rule}/{a.severity.value}/{a.state.value}"
            )
        return {k: tuple(v) for k, v in by_service.items()}

    def open_alerts(self) -> list[Alert]:
        """Unresolved alerts from the alert database (none when it does not exist yet).

        Raises:
            ApiError: 503 ``alert_database`` when the database is damaged.
        """
        path = alert_state.db_path(self.settings)
        if not path.exists():
            return []
        # Every commit changes the database or its WAL file: unchanged files, same alerts
        # (a health read then costs no database open and integrity check).
        stamp = tuple(alert_state.file_identity(Path(f"{path}{suffix}")) for suffix in ("", "-wal"))
        cached = self._alerts_cache
        # A PostgreSQL state database has no file to watch: read it every time.
        if cached is not None and cached[0] == stamp and not isinstance(path, StateUrl):
            return list(cached[1])
        try:
            conn = alert_state.connect(path)
        except alert_state.AlertDatabaseError as exc:
            raise ApiError(503, "alert_database", str(exc)) from None
        try:
            alerts = list_alerts(conn)
        finally:
            conn.close()
        self._alerts_cache = (stamp, alerts)
        return list(alerts)

    # ------------------------------------------------------------------ the monitor

    @property
    def monitor_running(self) -> bool:
        """Whether the in-process monitor loop is running (not waiting to restart)."""
        return self.monitor_task is not None and not self.monitor_task.done() and self._monitor_live

    def monitor_info(self) -> MonitorInfo:
        """Where the in-process monitor stands."""
        mon = self.monitor
        return MonitorInfo(
            running=self.monitor_running,
            started_at=self._monitor_started_at,
            interval_seconds=self._monitor_interval,
            services=list(mon.names) if mon is not None else [],
            sweeps=self._sweeps,
            last_sweep_at=self._last_sweep_at,
            last_error=self._monitor_error,
            restarts=self._restarts,
        )

    async def start_monitor(self, interval: float | None = None) -> bool:
        """Start the monitor loop as a task of this event loop, unless it runs already.

        The monitor is opened and its windows restored before this returns, so a bad
        alerting file or a damaged alert database is the caller's error, not a dead task.
        A monitor waiting to be restarted after a failure is retried at once.

        Args:
            interval: Seconds between sweeps (default ``JUNCTION_MONITOR_INTERVAL_SECONDS``).

        Returns:
            Whether this call started it.

        Raises:
            ApiError: 422 ``invalid_interval``; 503 ``monitor_unavailable`` when it cannot
                open (the reason named).
        """
        async with self._start_lock:
            if self.monitor_task is not None and not self.monitor_task.done():
                self._wake_supervisor.set()  # waiting out a backoff: retry now
                return False
            every = self.settings.monitor_interval_seconds if interval is None else interval
            if every < self.settings.monitor_min_interval_seconds:
                raise ApiError(
                    422,
                    "invalid_interval",
                    f"interval_seconds: {every:g} is below the minimum "
                    f"{self.settings.monitor_min_interval_seconds:g} "
                    "(JUNCTION_MONITOR_MIN_INTERVAL_SECONDS)",
                    {"field": "interval_seconds"},
                )
            try:
                mon = await self._open_monitor()
            except Exception as exc:
                self._monitor_error = f"{type(exc).__name__}: {exc}"
                log.warning("the monitor could not start: %s", exc)
                raise ApiError(
                    503, "monitor_unavailable", f"the monitor could not start: {exc}"
                ) from None
            self._monitor_started_at = datetime.now(UTC)
            self._monitor_interval = every
            self._monitor_error = None
            self._sweeps = 0
            self._stopping = False
            self._wake_supervisor.clear()
            self._install(mon)
            self.monitor_task = asyncio.create_task(self._supervise(mon, every))
            return True

    async def _open_monitor(self) -> Monitor:
        """A monitor opened (configuration, alert database, clients) and restored."""
        mon = Monitor(
            self.settings,
            on_event=self._on_monitor_event,
            judges=anomaly_judges(self.settings),
        )
        try:
            await mon.open()
            await mon.restore()
        except BaseException:
            await mon.aclose()
            raise
        return mon

    def _install(self, mon: Monitor) -> None:
        self.monitor = mon
        self._monitor_live = True
        self._crash = None
        self._failed_sweeps = 0
        self._failures_at_last_sweep = self._failure_events

    async def _supervise(self, first: Monitor, every: float) -> None:
        """Run the monitor; after a failure, open a new one after a (doubling) backoff."""
        mon: Monitor | None = first
        delay = RESTART_BACKOFF_SECONDS[0]
        while True:
            if mon is not None:
                self._install(mon)
                try:
                    await mon.run_forever(every, on_sweep=self._on_sweep, handle_signals=False)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._crash = f"{type(exc).__name__}: {exc}"
                finally:
                    self._monitor_live = False
                    await mon.aclose()
                if self._crash is None or self._stopping:
                    return  # stopped on request
                if not self._failing:  # it ran well since the last failure: a new streak
                    delay = RESTART_BACKOFF_SECONDS[0]
                self._failed(self._crash)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_supervisor.wait(), delay)
            self._wake_supervisor.clear()
            if self._stopping:
                return
            delay = min(delay * 2, RESTART_BACKOFF_SECONDS[1])
            self._restarts += 1
            try:
                mon = await self._open_monitor()
            except Exception as exc:
                mon = None
                self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, reason: str) -> None:
        """Record a failure of the monitor; log it once per streak of failures."""
        self._monitor_error = reason
        if not self._failing:
            log.error(
                "the monitor failed: %s; restarting it (backoff %g-%g s)",
                reason,
                *RESTART_BACKOFF_SECONDS,
            )
        else:
            log.debug("the monitor failed again: %s", reason)
        self._failing = True

    def _on_sweep(self, result: SweepResult) -> None:
        self._sweeps += 1
        self._last_sweep_at = result.finished_at
        self.live.nudge()  # its probes are in the spool now
        if self._failure_events == self._failures_at_last_sweep:
            self._failed_sweeps = 0
            if self._failing:
                log.warning("the monitor runs again after %d restart(s)", self._restarts)
                self._failing = False
        self._failures_at_last_sweep = self._failure_events

    def _on_monitor_event(self, event: MonitorEvent) -> None:
        if event.kind in ("passive_failure", "status"):
            self.live.nudge()
        if event.kind != "error" or not event.message.startswith(_FAILURE_EVENTS):
            return
        self._failure_events += 1
        self._failed_sweeps += 1
        if self._failed_sweeps >= FAILED_SWEEPS_TO_RESTART and self._crash is None:
            self._crash = event.message
            if self.monitor is not None:
                self.monitor.stop()

    async def stop_monitor(self) -> None:
        """Stop the monitor loop (its running sweep finishes) and close it."""
        task, mon = self.monitor_task, self.monitor
        if task is None:
            return
        self._stopping = True
        self._wake_supervisor.set()
        if mon is not None:
            mon.stop()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def store_unavailable(exc: StoreUnreadable) -> ApiError:
    """The API's answer to a metrics store that cannot be read: 503 ``metrics_store``."""
    return ApiError(503, "metrics_store", f"{exc} (JUNCTION_STORE_DIR)")


__all__ = [
    "FAILED_SWEEPS_TO_RESTART",
    "RESTART_BACKOFF_SECONDS",
    "MonitorInfo",
    "ServiceState",
    "store_unavailable",
]
