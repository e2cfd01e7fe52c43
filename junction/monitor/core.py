"""The :class:`Monitor`: per-service state fed by probes and live calls, judged, alerted on.

It wires the parts of :mod:`junction.monitor` together: a :class:`ServiceState` per
service, the :class:`Prober` (probes and first-failure confirmation), the
:class:`LiveCallFeed` (passive monitoring), the :class:`AlertDispatcher` (evaluation and
outbox delivery) and the scheduler (continuous mode). See the package docstring for the
whole picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Collection, Coroutine, Sequence
from datetime import timedelta
from typing import Any, Literal
from uuid import uuid4

import httpx

from integrations.base import HealthResult
from integrations.catalog import load_catalog
from integrations.metrics import CallMetric
from integrations.sweep import check_shard, owned_by
from integrations.transport import sweep_client
from junction.events import status_changed
from junction.monitor.alerts import AlertHook, ConditionJudge, default_alert_hook
from junction.monitor.clock import MonitorClock
from junction.monitor.dispatch import AlertDispatcher
from junction.monitor.passive import LiveCall, LiveCallFeed
from junction.monitor.probing import Prober, probe_observation, probed_service
from junction.monitor.results import MonitorEvent, OnEvent, OnSweep, ServiceHealth, SweepResult
from junction.monitor.scheduler import StopRequest, check_interval, run_ticks
from junction.monitor.state import SeenRows, ServiceState
from junction.scoring import Observation, ServiceWindow
from junction.settings import Settings, get_settings
from junction.store import MetricsStore, open_store
from junction.tail import StoreTailer, read_since

log = logging.getLogger(__name__)

SEEN_SLACK_SECONDS = 120.0
"""How long past the window a row id is remembered (a spool's rows reach a segment late)."""

TAIL_WAKE_SECONDS = 0.1
"""How often the continuous monitor looks whether another process spooled new calls."""


class Monitor:
    """Probes, passive observations, per-service sliding windows and alert evaluation.

    Use as an async context manager (it owns the HTTP client and the metric sink).

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
        judges: Rules judged outside the engine, handed to the default alert hook
            (:class:`junction.monitor.alerts.ConditionJudge`, e.g. anomaly alerts).
        clock: Time source (default: a :class:`MonitorClock` on the real clocks).
        on_event: Called with every :class:`MonitorEvent` (status changes, alerts...).
        probe_timeout: Seconds (default ``JUNCTION_MONITOR_PROBE_TIMEOUT_SECONDS``).
        confirm_delay: Seconds (default ``JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS``);
            ``None`` uses the setting, a negative value disables confirmation.
        window_seconds: Window length (default ``JUNCTION_MONITOR_WINDOW_SECONDS``).
        concurrency: Probes in flight at once (default ``JUNCTION_SWEEP_CONCURRENCY``).
        shard: The shard of the services this monitor owns (default
            ``JUNCTION_MONITOR_SHARD``): it probes, restores and alerts on only those.
        shards: Monitors sharing the services (default ``JUNCTION_MONITOR_SHARDS``).

    Raises:
        ValueError: ``shard`` is not in ``0 .. shards - 1``.
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
        judges: Sequence[ConditionJudge] = (),
        clock: MonitorClock | None = None,
        on_event: OnEvent | None = None,
        probe_timeout: float | None = None,
        confirm_delay: float | None = None,
        window_seconds: float | None = None,
        concurrency: int | None = None,
        shard: int | None = None,
        shards: int | None = None,
    ) -> None:
        self.settings = s = settings or get_settings()
        self.shard = s.monitor_shard if shard is None else shard
        self.shards = s.monitor_shards if shards is None else shards
        try:
            check_shard(self.shard, self.shards)
        except ValueError as exc:
            if shard is None or shards is None:  # (partly) from the settings: name them
                raise ValueError(
                    f"JUNCTION_MONITOR_SHARD / JUNCTION_MONITOR_SHARDS: {exc}"
                ) from None
            raise
        self._requested = list(names) if names is not None else None
        self.names: list[str] = []
        self.record = record
        self.passive = s.enhanced_monitoring_enabled if passive is None else passive
        self._alerts_arg = alerts
        self._judges = list(judges)
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

        self._services: dict[str, ServiceState] = {}
        self._seen = SeenRows(self.window.total_seconds() + SEEN_SLACK_SECONDS)
        self._http: httpx.AsyncClient | None = None
        self._prober: Prober | None = None
        self._feed: LiveCallFeed | None = None
        self._dispatcher: AlertDispatcher | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = StopRequest()
        self._phase: Literal["new", "open", "closed"] = "new"
        self._restored = False
        self._restoring = False

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
        """Open the store and the alert engine, build the clients, start passive input.

        Raises:
            UnknownIntegrationError: A requested name is not in the catalog.
            ValueError: ``JUNCTION_INTEGRATIONS`` names an unknown integration, or the
                alerting configuration is invalid (``AlertConfigError``).
            AlertDatabaseError: The alert database cannot be used.
        """
        if self._phase != "new":
            return
        s = self.settings
        catalog = load_catalog()
        if self._requested is None:
            self.names = s.enabled_names(catalog.names)
        else:
            for name in self._requested:
                catalog.get(name)  # unknown names fail before anything is sent
            self.names = list(dict.fromkeys(self._requested))
        # A shard's services only: another shard's are neither probed nor judged, so this
        # monitor never resolves (or fires) their alerts.
        self.names = owned_by(self.names, self.shard, self.shards)
        self._phase = "open"  # from here on aclose() has something to release
        if self._own_store:
            # Probes need not be visible to readers at once (the tailer reads spools):
            # fewer, larger segments.
            self.store = open_store(s, flush_seconds=60.0)
        # The alert engine before any client: a bad alerting file or alert database
        # stops the monitor before it sends anything.
        if self._alerts_arg is None:
            self.alerts = default_alert_hook(s, self.store, judges=self._judges)
        elif self._alerts_arg is not False:
            self.alerts = self._alerts_arg
        if self.alerts is not None:
            self._dispatcher = AlertDispatcher(
                self.alerts,
                clock=self.clock,
                emit=self._emit,
                spawn=self._spawn,
                snapshots=self._snapshots_of,
            )
        timeout = httpx.Timeout(
            self.probe_timeout, connect=min(self.probe_timeout, s.connect_timeout_seconds)
        )
        self._http = sweep_client(self.concurrency, timeout, backend=s.http_backend)
        for name in self.names:
            self._services[name] = probed_service(
                name,
                ServiceWindow(self.window),
                settings=s,
                http=self._http,
                timeout=self.probe_timeout,
                # Only the monitor's own calls: live calls are recorded by whoever
                # makes them (a second global sink would record them twice).
                metric_hook=None if self.store is None else self.store.record_call,
            )
        self._prober = Prober(
            timeout=self.probe_timeout,
            concurrency=self.concurrency,
            confirm_delay=self.confirm_delay,
            clock=self.clock,
            store=self.store,
            observe=self._add,
        )
        if self.passive:
            root = self.store.root if self.store is not None else s.metrics_dir
            tailer = StoreTailer(root, "calls", since=self.clock.now() - self.window)
            self._feed = LiveCallFeed(self._on_live_call, self._services, tailer)
            self._feed.start()

    async def aclose(self) -> None:
        """Cancel background work, close clients and the alert hook, flush the store."""
        if self._phase != "open":
            return
        self._phase = "closed"
        if self._feed is not None:
            self._feed.close()
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
        for state in self._services.values():
            if state.client is not None:
                with contextlib.suppress(Exception):
                    await state.client.aclose()
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

    def _require_open(self) -> Prober:
        if self._phase != "open" or self._prober is None:
            raise RuntimeError("use the Monitor inside `async with Monitor(...)`")
        return self._prober

    # ------------------------------------------------------------------ state

    def snapshot(self, service: str) -> ServiceHealth:
        """The current :class:`ServiceHealth` of one monitored service.

        Raises:
            KeyError: Not a monitored service.
        """
        state = self._services[service]
        alerts = self._dispatcher.active(service) if self._dispatcher is not None else ()
        return state.health(self.clock.now(), self.settings, self.down_after, alerts)

    def snapshots(self) -> list[ServiceHealth]:
        """:meth:`snapshot` of every monitored service, in monitor order."""
        return [self.snapshot(name) for name in self.names]

    def _snapshots_of(self, names: Collection[str]) -> list[ServiceHealth]:
        return [self.snapshot(name) for name in self.names if name in names]

    def observations(self, service: str) -> list[Observation]:
        """The window's observations of ``service``, oldest first (a copy)."""
        return self._services[service].window.observations

    def _add(self, state: ServiceState, obs: Observation, row_id: str | None = None) -> bool:
        """Add one observation (once per ``row_id``); feed the SLA tracker new ones."""
        if row_id is not None:
            if not self._seen.add(row_id, self.clock.monotonic()):
                return False
            if self._feed is not None:
                self._feed.mark_seen(row_id, obs.ts)
        state.add(obs, self.clock.now())
        if self.alerts is not None and not self._restoring:
            # The engine's SLA tracker restores history itself; feed only new outcomes.
            try:
                self.alerts.observe(state.name, obs)
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

    def _refresh(self, state: ServiceState) -> ServiceHealth:
        """Recompute the service's status; emit a ``status`` event when it changed."""
        health = self.snapshot(state.name)
        old, state.status = state.status, health.status
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
                    message=f"{state.name}: {old} -> {health.status}{why}",
                    service=state.name,
                    old=old,
                    new=health.status,
                )
            )
            # For Prefect automations (best effort; nothing without a Prefect API).
            reason = health.reasons[0] if health.reasons else ""
            status_changed(state.name, old, health.status, reason, down=health.down)
        return health

    def _after_update(self, state: ServiceState) -> None:
        """Refresh status; run the alert engine at once if it changed or is failing."""
        old = state.status
        health = self._refresh(state)
        news = old != health.status and (old, health.status) not in (
            (None, "healthy"),
            ("unknown", "healthy"),
        )
        if self._dispatcher is not None and (news or health.consecutive_failures):
            self._dispatcher.request(state.name)

    # ------------------------------------------------------------------ clock

    def check_clock(self) -> float:
        """Detect a wall-clock jump; shift the windows by it and re-anchor.

        Returns:
            The jump in seconds (0.0 when within the clock's tolerance).
        """
        jump = self.clock.jumped()
        if not jump:
            return 0.0
        delta = timedelta(seconds=jump)
        now = self.clock.now()
        for state in self._services.values():
            state.shift(delta, now)
        if self._feed is not None:
            self._feed.shift(delta)
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
        for state in self._services.values():
            state.status = self.snapshot(state.name).status
        return added

    async def _restore(self) -> int:
        root = self.store.root if self.store is not None else self.settings.metrics_dir
        since = self.clock.now() - self.window
        if self.alerts is not None and self.store is not None:
            try:
                self.alerts.restore(self.store, self.clock.now())
            except Exception:
                log.exception("restoring the alert engine's SLA history failed")
        rows = await asyncio.to_thread(read_since, root, "probes", since)
        now = self.clock.now()
        added = 0
        for row in rows:
            state = self._services.get(row.get("service", ""))
            if state is None:
                continue
            added += self._add(state, probe_observation(row, now), row["id"])
        added += await self.poll_store(quiet=True)
        return added

    # ------------------------------------------------------------------ passive

    def observe_call(self, metric: CallMetric) -> None:
        """Feed one live call (what the metric sink does; safe from any thread)."""
        if self._feed is not None:
            self._feed.sink(metric)

    def _on_live_call(self, call: LiveCall, quiet: bool) -> bool:
        """Add one live call's outcome; confirm a first failure; return whether it was new."""
        state = self._services.get(call.service)
        if self._phase == "closed" or state is None:
            return False
        now = self.clock.now()
        obs = call.observation(now)
        if obs is None:
            return False
        was_up = state.up
        if not self._add(state, obs, call.row_id):
            return False
        if quiet:  # restoring history: no events, no confirmation probes
            return True
        if obs.ok:
            if state.status != "healthy":
                self._after_update(state)
            return True
        self._emit(
            MonitorEvent(
                kind="passive_failure",
                at=now,
                message=f"{call.service}: live call failed ({call.error_class or call.status})",
                service=call.service,
            )
        )
        prober = self._require_open()
        if prober.should_confirm_call(state, was_up) and not self._stop.stopping:
            # Confirm with a probe right away: the alert then waits for no timer.
            self._spawn(self._confirm_call(prober, state))
        elif not state.confirming or state.streak >= self.down_after:
            # Failed live calls in a row are their own confirmation: under steady
            # traffic the second one judges the service before the re-probe's delay.
            self._after_update(state)
        return True

    async def _confirm_call(self, prober: Prober, state: ServiceState) -> None:
        await prober.confirm_call(state)
        self._after_update(state)

    async def poll_store(self, *, quiet: bool = False, files: bool = True) -> int:
        """Read other processes' new calls from the metrics store into the windows.

        Args:
            quiet: Only fill the windows (no events, confirmations or alert runs).
            files: Also read new Parquet files (``False``: the live spools only).

        Returns:
            Observations added.
        """
        if self._feed is None:
            return 0
        added = await self._feed.poll(self.clock.now() - self.window, quiet=quiet, files=files)
        self._seen.prune(self.clock.monotonic())
        return added

    # ------------------------------------------------------------------ probing

    async def _check(
        self, prober: Prober, state: ServiceState, sweep_id: str
    ) -> list[HealthResult]:
        results = await prober.check(state, sweep_id)
        self._after_update(state)
        return results

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
        prober = self._require_open()
        self.check_clock()
        targets = self.names if names is None else list(names)
        for name in targets:
            if name not in self._services:
                raise KeyError(f"{name!r} is not monitored")
        sweep_id = sweep_id or uuid4().hex
        states = [self._services[n] for n in targets]
        skipped = [st.name for st in states if st.in_flight]
        todo = [st for st in states if not st.in_flight]
        for st in todo:  # now, so an overlapping sweep cannot pick them too
            st.in_flight = True
        started_at = self.clock.now()
        t0 = time.monotonic()
        try:
            results = await asyncio.gather(*(self._check(prober, st, sweep_id) for st in todo))
        finally:  # a cancelled sweep's never-started checks must not stay "in flight"
            for st in todo:
                st.in_flight = False
        if self._dispatcher is not None:
            await self._dispatcher.evaluate(self.snapshots())
        return SweepResult(
            sweep_id=sweep_id,
            started_at=started_at,
            finished_at=self.clock.now(),
            duration_ms=(time.monotonic() - t0) * 1000.0,
            services=[self.snapshot(st.name) for st in todo],
            probes=[r for rs in results for r in rs],
            skipped=skipped,
        )

    # ------------------------------------------------------------------ continuous mode

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._phase == "closed":  # closing: the engine and clients are going away
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("monitor task failed", exc_info=task.exception())

    def stop(self) -> None:
        """Ask :meth:`run_forever` to finish (safe from any thread or a signal handler)."""
        self._stop.request()

    async def run_forever(
        self,
        every: float,
        *,
        on_sweep: OnSweep | None = None,
        max_sweeps: int | None = None,
        handle_signals: bool = True,
    ) -> int:
        """Sweep every ``every`` seconds until :meth:`stop`, SIGINT/SIGTERM or ``max_sweeps``.

        Scheduling is drift-free (:mod:`junction.monitor.scheduler`). A sweep does not
        wait for the previous one: a service whose probe is still running (a hang, cut
        at the probe timeout) is skipped, the others are probed on time. Other processes'
        calls are read from the store every ``JUNCTION_MONITOR_TAIL_SECONDS``, and from
        their spools within :data:`TAIL_WAKE_SECONDS` of being written.

        On shutdown the running sweeps get the probe timeout to finish (their probes are
        recorded), are then cancelled, and the store is flushed. A second signal cancels
        at once.

        Args:
            every: Seconds between sweep starts (at least
                ``JUNCTION_MONITOR_MIN_INTERVAL_SECONDS``).
            on_sweep: Called with each :class:`SweepResult` (may be async).
            max_sweeps: Stop after this many sweeps (tests, benchmarks).
            handle_signals: Install SIGINT/SIGTERM handlers (main thread only).

        Returns:
            Sweeps started.

        Raises:
            ValueError: ``every`` is not positive or below the minimum interval.
        """
        check_interval(every, self.settings.monitor_min_interval_seconds)
        self._require_open()
        stop = self._stop.arm()
        tail_task = asyncio.ensure_future(self._tail_loop(stop)) if self._feed else None
        try:
            return await run_ticks(
                lambda: self._sweep_and_report(on_sweep),
                every,
                stop,
                grace=self.probe_timeout * 2 + (self.confirm_delay or 0.0) + 1.0,
                max_ticks=max_sweeps,
                handle_signals=handle_signals,
            )
        finally:
            stop.set()
            if tail_task is not None:
                tail_task.cancel()
                await asyncio.gather(tail_task, return_exceptions=True)
            if self.store is not None:
                try:
                    self.store.flush()
                except Exception:
                    log.exception("flushing the metrics store failed")

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
        # A full read (spools and new Parquet files) every JUNCTION_MONITOR_TAIL_SECONDS;
        # in between, the spools are looked at every TAIL_WAKE_SECONDS and read as soon as
        # one grew: a failing live call reaches the monitor in ~0.1 s, not up to a second.
        every = self.settings.monitor_tail_seconds
        wake = min(TAIL_WAKE_SECONDS, every)
        if self._feed is None:
            return
        tailer = self._feed.tailer
        last_full = -math.inf
        while not stop.is_set():
            try:
                now = time.monotonic()
                if now - last_full >= every:
                    last_full = now
                    self.check_clock()
                    await self.poll_store()
                elif tailer.spools_changed():
                    await self.poll_store(files=False)
            except Exception:
                log.exception("reading live calls from the metrics store failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wake)


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


__all__ = ["SEEN_SLACK_SECONDS", "Monitor", "run_once"]
