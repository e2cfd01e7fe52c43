"""The live view: every service's window in memory, kept current by following the store.

One :class:`LiveView` per service process (``state.live``). At start it reads, with one
DuckDB aggregate, the per-minute rollups of the last hour and the names of every service
the store knows; then one :class:`~junction.tail.StoreTailer` per table (probes, calls)
follows the store every :data:`POLL_SECONDS`: rows written by any process, this one's
included (the in-process monitor's probes, live calls of workflows run by the API), from
their spools, long before they become Parquet segments. The in-process monitor also
:meth:`LiveView.nudge`-s it after each sweep and on each failing live call, so a new
probe is read at once instead of at the next tick.

Each row becomes an observation of its service exactly as the monitor makes it (probes;
live calls judged by :func:`~junction.monitor.passive.classify_call`; the monitor's own
probe calls left out), kept in the monitor's own :class:`junction.monitor.ServiceState`
over the monitor's window: :meth:`LiveView.health` is the monitor's verdict, computed from
memory. Windows other than the monitor's, and services too busy to hold in memory
(:data:`MAX_SERVICE_OBSERVATIONS`, :data:`MAX_OBSERVATIONS`), are computed by the DuckDB
path (:func:`junction.service.aggregates.store_health`).

Change notification: :attr:`LiveView.version` grows on every change; :meth:`wait_change`
waits for the next one and :meth:`changed_since` names the services that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import pyarrow as pa

from integrations.base import HealthResult
from junction.monitor import ServiceHealth
from junction.monitor import ServiceState as MonitoredService
from junction.monitor.passive import LiveCall
from junction.monitor.probing import probe_observation
from junction.scoring import Observation, ServiceWindow, percentile
from junction.service.aggregates import (
    StoreReader,
    epoch_us,
    known_services,
    minute_rollups,
    store_health,
)
from junction.settings import Settings
from junction.tail import StoreTailer

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_SAMPLER = random.Random(0x5EED)  # reservoir sampling only: not security-relevant

POLL_SECONDS = 0.3
"""Seconds between two reads of the store's new rows."""
PRUNE_SECONDS = 5.0
"""Seconds between evictions of what left the window (and the hour of sparklines)."""
SPARK_MINUTES = 60
"""Minutes of per-minute latency kept for sparklines."""
MAX_SERVICE_OBSERVATIONS = 50_000
"""A service with more observations in its window is judged by the DuckDB path."""
MAX_OBSERVATIONS = 2_000_000
"""Observations held in memory at most, all services together."""
MINUTE_SAMPLE = 4096
"""Latencies kept per service and minute for its sparkline point (a reservoir sample)."""
MAX_CACHED_RESULTS = 64
"""Results of DuckDB reads kept by :meth:`LiveView.cached` (the oldest goes first)."""
BOOTSTRAP_WAIT_SECONDS = 30.0
"""How long start-up waits for the first read of the store (then it goes on behind)."""
HEALTH_TTL_SECONDS = 10.0
"""A service's verdict is reused this long while its rows do not change. Rows leaving
the window count as a change (checked every :data:`PRUNE_SECONDS`); what moves meanwhile
is uptime's last stretch and the error-recency points, a little."""
WARM_BATCH = 100
"""Verdicts recomputed ahead of the readers per tick, at most (a short hold of the loop)."""
FRESH_SECONDS = 0.0
"""A health read first reads the store's new rows unless a read started this recently."""
RETRY_SECONDS = (1.0, 30.0)
"""Backoff (first, cap) after a failed read of the store."""


def probe_result(row: Mapping[str, Any]) -> HealthResult:
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


@dataclass
class _Minute:
    """One service's observations in one minute (successes' latencies, or a rollup).

    At most :data:`MINUTE_SAMPLE` latencies are kept (a uniform reservoir sample): the
    p95 of a busier minute is the sample's, memory stays bounded.
    """

    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    fixed_p95: float | None = None
    _successes: int = 0
    _p95: float | None = None
    _dirty: bool = False

    def add(self, obs: Observation) -> None:
        self.count += 1
        if not obs.ok:
            self.errors += 1
            return
        self._successes += 1
        if len(self.latencies) < MINUTE_SAMPLE:
            self.latencies.append(obs.latency_ms)
        else:
            slot = _SAMPLER.randrange(self._successes)
            if slot >= MINUTE_SAMPLE:
                return
            self.latencies[slot] = obs.latency_ms
        self._dirty = True

    def p95(self) -> float | None:
        if not self.latencies:
            return self.fixed_p95
        if self._dirty:
            self._p95 = percentile(self.latencies, 95)
            self._dirty = False
        return self._p95


def result_ttl(window_seconds: float) -> float:
    """How long a read over a window may be reused while no row changes: a hundredth of
    the window (what its far edge moves meanwhile), between 1 s and a minute."""
    return min(60.0, max(1.0, window_seconds / 100.0))


def _minute_of(ts: datetime) -> int:
    """Epoch seconds of the start of ``ts``'s minute."""
    return epoch_us(ts) // 60_000_000 * 60


class LiveView:
    """Every service's health window in memory, following the metrics store.

    Args:
        settings: Thresholds, the monitor's window, ``JUNCTION_MONITOR_DOWN_AFTER``.
        reader: Gives the store's :class:`StoreReader` (called off the event loop).
        window_seconds: The window held (default ``JUNCTION_MONITOR_WINDOW_SECONDS``).
        poll_seconds: Seconds between reads of the store.
    """

    def __init__(
        self,
        settings: Settings,
        reader: Callable[[], StoreReader],
        *,
        window_seconds: float | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.settings = settings
        self._reader = reader
        self.window_seconds = float(window_seconds or settings.monitor_window_seconds)
        self.window = timedelta(seconds=self.window_seconds)
        self.poll_seconds = poll_seconds
        self.version = 0
        """Grows by one on every change of any service's rows."""
        self.ready = False
        """The first read of the store is done: health can come from memory."""
        self.last_error: str | None = None
        """Why the latest read of the store failed (``None`` once one succeeds)."""
        self._services: dict[str, MonitoredService] = {}
        self._minutes: dict[str, dict[int, _Minute]] = {}
        self._changed: dict[str, int] = {}
        self._known: set[str] = set()
        # Service -> when its window is whole again after it overflowed (DuckDB until then).
        self._overflow: dict[str, datetime] = {}
        self._held = 0
        self._tailers: tuple[StoreTailer, StoreTailer] | None = None
        self._change = asyncio.Event()
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._poll_lock = asyncio.Lock()
        self._polled_at = 0.0
        # Service -> (its change version, monotonic time, verdict without alerts).
        self._verdicts: dict[str, tuple[int, float, ServiceHealth]] = {}
        # Service -> ((minute, span, change version), its sparkline): one per minute and change.
        # Key -> (version, monotonic time, result) of reads the view does not hold.
        self._results: dict[Hashable, tuple[int, float, Any]] = {}
        self._sparks: dict[str, tuple[tuple[int, int, int], list[tuple[float, float | None]]]] = {}
        self.on_rows: Callable[[list[Any], list[Any], datetime], None] | None = None
        """Called with every batch of new rows (probes, calls) and the time from which
        every row has been given (the tailers' horizon)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait: float = BOOTSTRAP_WAIT_SECONDS) -> None:
        """Start following the store; wait (at most ``wait`` s) for the first read."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="junction-live-view")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._started.wait()), wait)

    async def aclose(self) -> None:
        """Stop following the store."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def nudge(self) -> None:
        """Read the store now rather than at the next tick (new rows are expected)."""
        self._wake.set()

    async def _run(self) -> None:
        delay, failing = RETRY_SECONDS[0], False
        while True:
            try:
                if self._tailers is None:
                    await self._bootstrap()
                else:
                    async with self._poll_lock:
                        await self._poll()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not failing:  # once per streak of failures, not every tick
                    log.warning("the live view cannot read the metrics store: %s", exc)
                failing = True
                self._started.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_SECONDS[1])
                continue
            if failing:
                log.info("the live view reads the metrics store again")
            delay, failing, self.last_error = RETRY_SECONDS[0], False, None
            self._warm()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def _bootstrap(self) -> None:
        now = datetime.now(UTC)
        # Raw rows from a minute boundary: no minute is half rollup, half raw.
        first_raw = datetime.fromtimestamp(_minute_of(now - self.window), UTC)
        first_spark = datetime.fromtimestamp(_minute_of(now) - (SPARK_MINUTES - 1) * 60, UTC)

        def read() -> tuple[set[str], Mapping[str, Mapping[int, Any]], tuple[Any, ...]]:
            reader = self._reader()
            known = known_services(reader)
            rollups = {}
            if first_spark < first_raw:
                rollups = minute_rollups(reader, first_spark, first_raw)
            root = reader.store.root
            tailers = (
                StoreTailer(root, "probes", since=first_raw, skip_own_spools=False),
                StoreTailer(root, "calls", since=first_raw, skip_own_spools=False),
            )
            polled = (tailers, tailers[0].poll(), tailers[1].poll())
            # The first read may decode whole day files (recently written or compacted):
            # hand the Arrow buffers back rather than keep them for the process's life.
            pa.default_memory_pool().release_unused()
            return known, rollups, polled

        known, rollups, (tailers, probes, calls) = await asyncio.to_thread(read)
        self._tailers = tailers
        self._known.update(known)
        for service, minutes in rollups.items():
            buckets = self._minutes.setdefault(service, {})
            for minute, r in minutes.items():
                buckets[minute] = _Minute(r.count, r.errors, fixed_p95=r.p95_latency_ms)
        self._apply(probes, calls)
        self._warm(limit=None)
        self.ready = True
        self._bump(self._known)
        self._started.set()

    async def refresh(self, max_age: float = FRESH_SECONDS) -> None:
        """Read the store's new rows now, unless a read started at most ``max_age`` s ago.

        What a caller wrote to the store just before is then in what it reads next.
        """
        if not self.ready:
            return
        asked = time.monotonic()
        async with self._poll_lock:
            if self._polled_at >= asked - max_age:
                return  # a read that started after (or just before) the ask
            with contextlib.suppress(Exception):  # the loop reports read failures
                await self._poll()

    async def _poll(self) -> None:
        tailers = self._tailers
        assert tailers is not None
        mono = self._polled_at = time.monotonic()
        prune = mono - self._pruned_at >= PRUNE_SECONDS
        now = datetime.now(UTC)
        horizon = datetime.fromtimestamp(_minute_of(now - self.window), UTC)

        def read() -> tuple[list[Any], list[Any]]:
            if prune:
                for t in tailers:
                    t.advance(horizon)
            return tailers[0].poll(), tailers[1].poll()

        probes, calls = await asyncio.to_thread(read)
        changed = self._apply(probes, calls)
        if prune:
            self._pruned_at = mono
            changed |= self._prune(datetime.now(UTC))
        if changed:
            self._bump(changed)

    # ------------------------------------------------------------------ rows in

    def _apply(self, probes: Iterable[dict[str, Any]], calls: Iterable[dict[str, Any]]) -> set[str]:
        """Add new rows in time order (a probe first at the same instant); changed names.

        Every new row changes its service (what the store holds of it: windowed metrics
        count them all); only observations enter its window, as in the monitor.
        """
        if self.on_rows is not None and self._tailers is not None:
            probes, calls = list(probes), list(calls)
            self.on_rows(probes, calls, self._tailers[1].since)
        rows = [(r["ts"], 0, r) for r in probes]
        rows.extend((r["ts"], 1, r) for r in calls)
        rows.sort(key=lambda e: (e[0], e[1]))
        now = datetime.now(UTC)
        changed: set[str] = set()
        for _, kind, row in rows:
            name = row.get("service")
            if not isinstance(name, str):
                continue
            changed.add(name)
            if kind == 0:
                obs: Observation | None = probe_observation(row, now)
            elif row.get("source") == "probe":
                continue  # the monitor's own probe calls: its probes are observed
            else:
                obs = LiveCall.from_row(row).observation(now)
            if obs is None:
                continue
            self._known.add(name)
            self._minutes.setdefault(name, {}).setdefault(_minute_of(obs.ts), _Minute()).add(obs)
            state = self._services.get(name)
            if state is None:
                # A spilled service starts again from here: whole a window later.
                state = self._services[name] = MonitoredService(name, ServiceWindow(self.window))
            state.add(obs, now)
            self._held += 1
            if kind == 0:
                state.probed(probe_result(row), row["ts"])
            if len(state.window) > MAX_SERVICE_OBSERVATIONS or self._held > MAX_OBSERVATIONS:
                self._spill(name, now)
        return changed

    def _spill(self, name: str, now: datetime) -> None:
        """Give up holding a too-busy service: its window is whole again a window later."""
        state = self._services.pop(name)
        self._held -= len(state.window)
        if name not in self._overflow:  # once, not at every refill of a busy service
            log.info("the live view judges %s from the store: too many observations", name)
        self._overflow[name] = now + self.window

    def _prune(self, now: datetime) -> set[str]:
        """Evict what left the window and the sparkline hour; names whose window changed."""
        changed = set()
        held = 0
        for name, state in self._services.items():
            if state.window.evict(now):
                changed.add(name)
            held += len(state.window)
        self._held = held
        for name, until in list(self._overflow.items()):
            if until <= now and name in self._services:
                del self._overflow[name]  # held for a whole window since it spilled
        oldest = _minute_of(now) - SPARK_MINUTES * 60
        for minutes in self._minutes.values():
            for minute in [m for m in minutes if m < oldest]:
                del minutes[minute]
        return changed

    def _bump(self, names: Iterable[str]) -> None:
        self.version += 1
        for name in names:
            self._changed[name] = self.version
        event, self._change = self._change, asyncio.Event()
        event.set()

    # ------------------------------------------------------------------ reads

    def known_services(self) -> set[str]:
        """Every service the store has rows of (known at start, or seen since)."""
        return set(self._known)

    def changed_since(self, version: int) -> set[str]:
        """Services whose rows changed after ``version``."""
        return {name for name, v in self._changed.items() if v > version}

    async def wait_change(self, after: int, timeout: float) -> int:
        """Wait until :attr:`version` is past ``after`` (at most ``timeout`` s); the version."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.version <= after:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._change.wait(), remaining)
        return self.version

    async def cached(self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[_T]]) -> _T:
        """``compute()``'s result, reused while no row changed and it is under ``ttl`` s old.

        For reads by DuckDB over windows the view does not hold: the same question over
        unchanged rows has the same answer (only the window's far edge moves meanwhile,
        which ``ttl`` bounds). The caller refreshes the view first if it must see writes
        made just before (:meth:`refresh`).
        """
        mono = time.monotonic()
        hit = self._results.get(key)
        if hit is not None and hit[0] == self.version and mono - hit[1] < ttl:
            return cast(_T, hit[2])
        version = self.version  # before computing: a change meanwhile is not hidden
        value = await compute()
        if len(self._results) >= MAX_CACHED_RESULTS:
            self._results.pop(next(iter(self._results)))
        self._results[key] = (version, mono, value)
        return value

    def covers(self, window_seconds: float) -> bool:
        """Whether health over ``window_seconds`` can come from memory."""
        return self.ready and window_seconds == self.window_seconds

    async def health(
        self,
        names: Sequence[str],
        window_seconds: float | None = None,
        *,
        alerts: Mapping[str, tuple[str, ...]] | None = None,
    ) -> list[ServiceHealth]:
        """The health table of ``names`` (in order), as the monitor would judge them.

        From memory when the view holds the window; otherwise (another window, a
        service too busy to hold, before the first read) from the store by DuckDB.

        Args:
            names: Services (a name without rows is ``unknown``).
            window_seconds: The window (default: the view's, the monitor's).
            alerts: Active alerts per service (``rule/severity/state``).
        """
        seconds = self.window_seconds if window_seconds is None else float(window_seconds)
        alerts = alerts or {}
        await self.refresh()
        if not self.covers(seconds):
            key = ("health", tuple(names), seconds, tuple(sorted(alerts.items())))
            return await self.cached(
                key,
                result_ttl(seconds),
                lambda: asyncio.to_thread(
                    store_health, self._reader(), names, seconds, self.settings, alerts=alerts
                ),
            )
        now, mono = datetime.now(UTC), time.monotonic()
        out: dict[str, ServiceHealth] = {}
        spilled = []
        for name in names:
            if name in self._overflow:
                spilled.append(name)
                continue
            verdict = self._cached(name, mono) or self._judge(name, now, mono)
            active = alerts.get(name)
            out[name] = dataclasses.replace(verdict, alerts=active) if active else verdict
        s = self.settings
        if spilled:
            rows = await asyncio.to_thread(
                store_health, self._reader(), spilled, seconds, s, now=now, alerts=alerts
            )
            out.update((r.service, r) for r in rows)
        return [out[name] for name in names]

    def _cached(self, name: str, mono: float) -> ServiceHealth | None:
        """The service's verdict if its rows did not change and it is recent enough."""
        entry = self._verdicts.get(name)
        if entry is None or entry[0] != self._changed.get(name, 0):
            return None
        return entry[2] if mono - entry[1] < HEALTH_TTL_SECONDS else None

    def _judge(self, name: str, now: datetime, mono: float) -> ServiceHealth:
        """The monitor's verdict on the service now (kept for :meth:`_cached`)."""
        state = self._services.get(name)
        if state is None:
            state = MonitoredService(name, ServiceWindow(self.window))
        s = self.settings
        verdict = state.health(now, s, s.monitor_down_after)
        self._verdicts[name] = (self._changed.get(name, 0), mono, verdict)
        return verdict

    def _warm(self, limit: int | None = WARM_BATCH) -> None:
        """Recompute the verdicts readers would find stale next (a batch per tick).

        So a health read of every service finds them ready instead of judging a thousand
        windows itself; a batch keeps the event loop free for requests meanwhile.
        """
        now, mono = datetime.now(UTC), time.monotonic()
        horizon = mono - HEALTH_TTL_SECONDS / 2
        stale = [
            name
            for name, (version, at, _) in self._verdicts.items()
            if at < horizon or version != self._changed.get(name, 0)
        ]
        stale.extend(name for name in self._services if name not in self._verdicts)
        for name in stale[:limit]:
            if name not in self._overflow:
                self._judge(name, now, mono)

    def sparkline(
        self, name: str, minutes: int = SPARK_MINUTES
    ) -> list[tuple[float, float | None]]:
        """Per-minute p95 latency (ms) of the last ``minutes`` minutes, oldest first.

        Returns:
            ``(epoch seconds of the minute's start, p95 or None)``, one per minute up to
            the current one (``None``: no successful observation that minute).
        """
        span = max(1, min(int(minutes), SPARK_MINUTES))
        current = _minute_of(datetime.now(UTC))
        key = (current, span, self._changed.get(name, 0))
        cached = self._sparks.get(name)
        if cached is not None and cached[0] == key:
            return list(cached[1])
        buckets = self._minutes.get(name, {})
        out: list[tuple[float, float | None]] = []
        for minute in range(current - (span - 1) * 60, current + 60, 60):
            bucket = buckets.get(minute)
            out.append((float(minute), None if bucket is None else bucket.p95()))
        self._sparks[name] = (key, out)
        return list(out)

    def counts(self, name: str, minutes: int = SPARK_MINUTES) -> tuple[int, int]:
        """Observations and failures of ``name`` over the last ``minutes`` minutes."""
        oldest = _minute_of(datetime.now(UTC)) - (max(1, int(minutes)) - 1) * 60
        picked = [b for m, b in self._minutes.get(name, {}).items() if m >= oldest]
        return sum(b.count for b in picked), sum(b.errors for b in picked)


__all__ = [
    "MAX_OBSERVATIONS",
    "MAX_SERVICE_OBSERVATIONS",
    "POLL_SECONDS",
    "SPARK_MINUTES",
    "LiveView",
    "probe_result",
    "result_ttl",
]
