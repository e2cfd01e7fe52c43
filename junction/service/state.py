"""What one running service holds: its settings, the metrics store, the in-process monitor.

One :class:`ServiceState` per app, on ``app.state.junction`` (routes get it with
:func:`junction.service.deps.get_state`). The health table comes from the running monitor
when there is one and the window asked for is its own; otherwise it is computed from the
metrics store (probes and live calls of the window, judged exactly as the monitor judges
them), so every read works whether or not this process monitors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.base import HealthResult
from integrations.catalog import load_catalog
from integrations.yamlconfig import did_you_mean
from junction.alerting import state as alert_state
from junction.alerting.alerts import Alert, list_alerts
from junction.health import open_store
from junction.monitor import Monitor, ServiceHealth
from junction.monitor import ServiceState as MonitoredService
from junction.monitor.passive import LiveCall
from junction.monitor.probing import probe_observation
from junction.scoring import ServiceWindow
from junction.service.errors import ApiError
from junction.settings import Settings
from junction.store import MetricsStore
from junction.tail import read_since

log = logging.getLogger(__name__)


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
        last_error: Why it stopped, if it crashed.
    """

    running: bool
    started_at: datetime | None
    interval_seconds: float | None
    services: list[str]
    sweeps: int
    last_sweep_at: datetime | None
    last_error: str | None


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
        self._monitor_started_at: datetime | None = None
        self._monitor_interval: float | None = None
        self._monitor_error: str | None = None
        self._sweeps = 0
        self._last_sweep_at: datetime | None = None
        self._start_lock = asyncio.Lock()
        self._store: MetricsStore | None = None
        self._store_lock = threading.Lock()

    # ------------------------------------------------------------------ the store

    def store(self) -> MetricsStore:
        """The metrics store (opened on first use, shared by every request, thread-safe)."""
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    # ------------------------------------------------------------------ services

    def service_names(self, wanted: Sequence[str] = ()) -> list[str]:
        """The enabled integrations, or ``wanted`` (checked) in catalog order.

        Raises:
            ApiError: 404 ``unknown_service`` for a name the catalog lacks (with a
                did-you-mean).
        """
        catalog = load_catalog().names
        for name in wanted:
            if name not in catalog:
                raise ApiError(
                    404,
                    "unknown_service",
                    f"unknown service {name!r}{did_you_mean(name, catalog)}",
                    {"service": name},
                )
        if wanted:
            return [n for n in catalog if n in set(wanted)]
        try:
            return self.settings.enabled_names(catalog)
        except ValueError as exc:
            raise ApiError(500, "invalid_configuration", str(exc)) from None

    # ------------------------------------------------------------------ health

    def window_seconds(self, window: float | None) -> float:
        """The window asked for, or the monitor's (``JUNCTION_MONITOR_WINDOW_SECONDS``)."""
        return self.settings.monitor_window_seconds if window is None else window

    async def health(
        self, names: Sequence[str] = (), window: float | None = None
    ) -> tuple[list[ServiceHealth], str]:
        """The health table of ``names`` (default: every enabled one) over ``window`` s.

        From the running monitor when it covers them with the same window; otherwise
        from the metrics store.

        Returns:
            The rows, and where they came from (``monitor`` or ``store``).
        """
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
        rows = await asyncio.to_thread(self._health_from_store, targets, seconds)
        return rows, "store"

    def _health_from_store(self, names: list[str], seconds: float) -> list[ServiceHealth]:
        now = datetime.now(UTC)
        since = now - timedelta(seconds=seconds)
        root = self.settings.metrics_dir
        states = {n: MonitoredService(n, ServiceWindow(timedelta(seconds=seconds))) for n in names}
        events: list[tuple[datetime, int, Any]] = []
        for row in read_since(root, "probes", since):
            if row.get("service") in states:
                events.append((row["ts"], 0, row))
        for row in read_since(root, "calls", since):
            if row.get("service") in states:
                events.append((row["ts"], 1, row))
        # In time order: the failure streak (hence "down") depends on the order.
        events.sort(key=lambda e: (e[0], e[1]))
        for _, kind, row in events:
            state = states[row["service"]]
            if kind == 0:
                state.add(probe_observation(row, now), now)
                state.probed(_probe_result(row), row["ts"])
                continue
            obs = LiveCall.from_row(row).observation(now)
            if obs is not None:
                state.add(obs, now)
        alerts = self.open_alerts()
        by_service: dict[str, list[str]] = {}
        for a in alerts:
            by_service.setdefault(a.service, []).append(
                f"{a.rule}/{a.severity.value}/{a.state.value}"
            )
        s = self.settings
        return [
            state.health(now, s, s.monitor_down_after, tuple(by_service.get(n, ())))
            for n, state in states.items()
        ]

    def open_alerts(self) -> list[Alert]:
        """Unresolved alerts from the alert database (none when it does not exist yet).

        Raises:
            ApiError: 503 ``alert_database`` when the database is damaged.
        """
        path = alert_state.db_path(self.settings)
        if not path.exists():
            return []
        try:
            conn = alert_state.connect(path)
        except alert_state.AlertDatabaseError as exc:
            raise ApiError(503, "alert_database", str(exc)) from None
        try:
            return list_alerts(conn)
        finally:
            conn.close()

    # ------------------------------------------------------------------ the monitor

    @property
    def monitor_running(self) -> bool:
        """Whether the in-process monitor loop is running."""
        return self.monitor_task is not None and not self.monitor_task.done()

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
        )

    async def start_monitor(self, interval: float | None = None) -> bool:
        """Start the monitor loop as a task of this event loop, unless it runs already.

        The monitor is opened and its windows restored before this returns, so a bad
        alerting file or a damaged alert database is the caller's error, not a dead task.

        Args:
            interval: Seconds between sweeps (default ``JUNCTION_MONITOR_INTERVAL_SECONDS``).

        Returns:
            Whether this call started it.

        Raises:
            ApiError: 422 ``invalid_interval``; 503 ``monitor_unavailable`` when it cannot
                open (the reason named).
        """
        async with self._start_lock:
            if self.monitor_running:
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
            mon = Monitor(self.settings)
            try:
                await mon.open()
                await mon.restore()
            except Exception as exc:
                await mon.aclose()
                self._monitor_error = f"{type(exc).__name__}: {exc}"
                log.warning("the monitor could not start: %s", exc)
                raise ApiError(
                    503, "monitor_unavailable", f"the monitor could not start: {exc}"
                ) from None
            self.monitor = mon
            self._monitor_started_at = datetime.now(UTC)
            self._monitor_interval = every
            self._monitor_error = None
            self._sweeps = 0
            self.monitor_task = asyncio.create_task(self._run_monitor(mon, every))
            return True

    async def _run_monitor(self, mon: Monitor, every: float) -> None:
        def on_sweep(result: Any) -> None:
            self._sweeps += 1
            self._last_sweep_at = result.finished_at

        try:
            await mon.run_forever(every, on_sweep=on_sweep, handle_signals=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The server keeps serving: reads fall back to the store, start restarts it.
            self._monitor_error = f"{type(exc).__name__}: {exc}"
            log.exception("the monitor stopped")
        finally:
            await mon.aclose()

    async def stop_monitor(self) -> None:
        """Stop the monitor loop (its running sweep finishes) and close it."""
        task, mon = self.monitor_task, self.monitor
        if task is None or mon is None:
            return
        mon.stop()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def aclose(self) -> None:
        """Stop the monitor and close the store (app shutdown)."""
        await self.stop_monitor()
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None


def _probe_result(row: dict[str, Any]) -> HealthResult:
    """The :class:`HealthResult` a ``probes`` row records."""
    return HealthResult(
        service=row["service"],
        ok=bool(row["ok"]),
        status=row.get("status"),
        latency_ms=float(row["latency_ms"]),
        error_class=row.get("error_class"),
        error=row.get("error"),
        breaker_state=row.get("breaker_state") or "closed",
        checked_at=row["ts"],
    )


__all__ = ["MonitorInfo", "ServiceState"]
