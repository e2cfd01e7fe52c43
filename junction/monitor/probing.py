"""Probes and first-failure confirmation.

A probe is one health check of a service, cut at ``JUNCTION_MONITOR_PROBE_TIMEOUT_SECONDS``
(counted as a failure), recorded in the metrics store's ``probes`` table as soon as it
completes (a crash mid-sweep keeps every probe that finished) and observed at once.

**First-failure confirmation**: when a service that was up fails a probe (or a live
call), it is re-probed after ``JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS`` instead of a whole
interval later. Its status and the alert engine are updated only once that confirmation
is in: a blip (fail, then succeed) does not mark the service down.

Probes use their own circuit breaker per service (:func:`probe_breaker`), which tracks
consecutive failures for the ``breaker`` column and score but never refuses a probe: a
monitor that stops probing an open service would notice its recovery a whole breaker
timeout late.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx

from integrations.base import HealthResult
from integrations.breaker import CircuitBreaker
from integrations.errors import IntegrationError
from integrations.metrics import MetricSink
from junction.clients import get_client
from junction.health import probe_rows
from junction.monitor.clock import MonitorClock
from junction.monitor.state import ServiceState
from junction.scoring import Observation, ServiceWindow
from junction.settings import Settings
from junction.store import MetricsStore

log = logging.getLogger(__name__)

TIMEOUT_SLACK_SECONDS = 0.25
"""The HTTP timeout normally fires first (with its own error class); the probe's own cut
comes this much later and catches what it does not cover (SMTP, DNS, a stuck auth)."""


class ProbeBreaker(CircuitBreaker):
    """Counts failures and reports a state, but never refuses a probe."""

    def allow(self) -> tuple[bool, float]:
        """Always allow: the monitor must see a recovery at once."""
        return True, 0.0


def probe_breaker(service: str, settings: Settings) -> ProbeBreaker:
    """A circuit breaker for a monitor's probes: tracks state, never refuses a probe."""
    return ProbeBreaker(
        service,
        failure_threshold=settings.breaker_failure_threshold,
        reset_timeout=settings.breaker_reset_seconds,
    )


def probed_service(
    name: str,
    window: ServiceWindow,
    *,
    settings: Settings,
    http: httpx.AsyncClient,
    timeout: float,
    metric_hook: MetricSink | None,
) -> ServiceState:
    """The state of a service to probe, with its probe client (or why it has none).

    Args:
        name: Catalog name.
        window: Its (empty) sliding window.
        settings: Settings (the integration's configuration, breaker thresholds).
        http: The monitor's shared HTTP client.
        timeout: Probe timeout (seconds).
        metric_hook: Receives the probes' call metrics (the store's ``record_call``).
    """
    state = ServiceState(name=name, window=window)
    try:
        state.client = get_client(
            name,
            settings=settings,
            http=http,
            source="probe",
            breaker=probe_breaker(name, settings),
            timeout=timeout,
            metric_hook=metric_hook,
        )
    except IntegrationError as exc:
        state.unusable = HealthResult.unusable(name, exc)
    return state


def probe_observation(row: dict[str, Any], now: datetime) -> Observation:
    """The observation a ``probes`` row records (restore; never later than ``now``)."""
    return Observation(
        ts=min(row["ts"], now),
        ok=bool(row["ok"]),
        latency_ms=float(row["latency_ms"]),
        error_class=row.get("error_class"),
        breaker_state=row.get("breaker_state") or "closed",
    )


ProbeObserver = Callable[[ServiceState, Observation, str], object]
"""``observe(state, observation, row_id)``: add a probe's observation to the monitor."""


class Prober:
    """Probes services at most ``concurrency`` at a time; confirms first failures.

    Args:
        timeout: Seconds after which a probe is cut and counted as failed.
        concurrency: Probes in flight at once.
        confirm_delay: Seconds before a confirmation re-probe (``None``: no confirmation).
        clock: The monitor's clock (observation times).
        store: Where probe rows are recorded (``None``: not recorded).
        observe: Receives each probe's observation.
    """

    def __init__(
        self,
        *,
        timeout: float,
        concurrency: int,
        confirm_delay: float | None,
        clock: MonitorClock,
        store: MetricsStore | None,
        observe: ProbeObserver,
    ) -> None:
        self.timeout = timeout
        self.confirm_delay = confirm_delay
        self._gate = asyncio.Semaphore(concurrency)
        self._clock = clock
        self._store = store
        self._observe = observe

    async def probe(
        self, state: ServiceState, sweep_id: str, *, delay: float | None = None
    ) -> HealthResult:
        """One probe: wait ``delay``, check, record the row, observe the outcome."""
        if delay:
            await asyncio.sleep(delay)
        result = await self._health_check(state)
        row_id = uuid4().hex
        if self._store is not None:
            row = probe_rows([result], sweep_id)[0]
            row["id"] = row_id
            try:
                self._store.append("probes", [row])
            except Exception:  # a full disk must not stop monitoring
                log.exception("could not record the probe of %s", state.name)
        now = self._clock.now()
        observation = Observation(
            ts=now,
            ok=result.ok,
            latency_ms=result.latency_ms,
            error_class=result.error_class,
            breaker_state=result.breaker_state,
        )
        self._observe(state, observation, row_id)
        state.probed(result, now)
        return result

    async def _health_check(self, state: ServiceState) -> HealthResult:
        client = state.client
        if client is None:
            assert state.unusable is not None
            return dataclasses.replace(state.unusable, checked_at=datetime.now(UTC))
        async with self._gate:
            started = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: no extra task per probe
                async with asyncio.timeout(self.timeout + TIMEOUT_SLACK_SECONDS):
                    return await client.health_check()
            except TimeoutError:
                return HealthResult(
                    service=state.name,
                    ok=False,
                    status=None,
                    latency_ms=(time.monotonic() - started) * 1000.0,
                    error_class="APITimeoutError",
                    error=f"probe cut after {self.timeout:g} s without an answer",
                    breaker_state=client.breaker.state.value,
                )

    async def check(self, state: ServiceState, sweep_id: str) -> list[HealthResult]:
        """Probe one service of a sweep; re-probe at once if it was up and failed.

        The caller has marked ``state`` in flight; it is cleared here.
        """
        try:
            was_up = state.up
            results = [await self.probe(state, sweep_id)]
            if not results[0].ok and was_up and self.confirm_delay is not None:
                results.append(await self.probe(state, sweep_id, delay=self.confirm_delay))
        finally:
            state.in_flight = False
        return results

    def should_confirm_call(self, state: ServiceState, was_up: bool) -> bool:
        """Whether a failed live call of a service that ``was_up`` gets a confirmation."""
        return (
            was_up
            and self.confirm_delay is not None
            and state.client is not None
            and not state.in_flight
        )

    async def confirm_call(self, state: ServiceState) -> HealthResult:
        """Re-probe a service after a live call failed (it was up until then)."""
        state.confirming = state.in_flight = True
        try:
            return await self.probe(state, f"passive-{uuid4().hex[:12]}", delay=self.confirm_delay)
        finally:
            state.confirming = state.in_flight = False


__all__ = [
    "TIMEOUT_SLACK_SECONDS",
    "ProbeBreaker",
    "ProbeObserver",
    "Prober",
    "probe_breaker",
    "probe_observation",
    "probed_service",
]
