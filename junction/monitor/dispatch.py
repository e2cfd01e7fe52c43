"""When the alert engine runs, and the outbox rounds that deliver its notifications.

Alert evaluation runs as soon as a service's status changes or it fails, not at the end
of a sweep (a probe that hangs until its timeout would hold everyone's alerts). Services
changing within :data:`EVAL_BATCH_SECONDS` of each other are evaluated together, so the
engine sees a shared dependency's outage whole: it orders them dependencies-first and
suppresses the dependents' alerts instead of notifying each one.

Evaluations run one at a time; each is followed by an outbox delivery round, which has
its own lock, so a slow channel (up to ``JUNCTION_ALERT_SEND_TIMEOUT_SECONDS``) never
holds up the next evaluation. A round requested while one runs makes that one run again
(it also retries failed deliveries).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from junction.monitor.alerts import AlertHook
from junction.monitor.clock import MonitorClock
from junction.monitor.results import MonitorEvent, ServiceHealth

log = logging.getLogger(__name__)

EVAL_BATCH_SECONDS = 0.1
"""How long an alert evaluation triggered by one service waits for others to change too."""


class AlertDispatcher:
    """Runs the alert hook's evaluations (batched) and delivery rounds (coalesced).

    Args:
        hook: The alert engine adapter.
        clock: The monitor's clock (evaluation and delivery times).
        emit: Receives ``alert`` events (one per transition) and ``error`` events.
        spawn: Runs a coroutine in the background (the monitor's task set).
        snapshots: Current health of the named services, in monitor order.
    """

    def __init__(
        self,
        hook: AlertHook,
        *,
        clock: MonitorClock,
        emit: Callable[[MonitorEvent], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        snapshots: Callable[[Collection[str]], list[ServiceHealth]],
    ) -> None:
        self.hook = hook
        self._clock = clock
        self._emit = emit
        self._spawn = spawn
        self._snapshots = snapshots
        self._eval_lock = asyncio.Lock()
        self._deliver_lock = asyncio.Lock()
        self._deliver_again = False
        self._pending: set[str] = set()
        self._scheduled = False

    def request(self, service: str) -> None:
        """Evaluate ``service`` soon, batched with the others that change meanwhile."""
        self._pending.add(service)
        if not self._scheduled:
            self._scheduled = True
            self._spawn(self._evaluate_pending())

    async def _evaluate_pending(self) -> None:
        try:
            await asyncio.sleep(EVAL_BATCH_SECONDS)
        finally:
            self._scheduled = False
        names, self._pending = self._pending, set()
        if names:
            await self.evaluate(self._snapshots(names))

    async def evaluate(self, snapshots: list[ServiceHealth]) -> None:
        """Feed the alert engine, report its transitions, then deliver due notifications."""
        async with self._eval_lock:
            now = self._clock.now()
            try:
                transitions = await self.hook.evaluate(snapshots, now)
            except Exception as exc:
                log.exception("alert evaluation failed")
                self._emit(
                    MonitorEvent(kind="error", at=now, message=f"alert evaluation failed: {exc}")
                )
                return
            for message in transitions:
                self._emit(MonitorEvent(kind="alert", at=now, message=message))
        await self.deliver()

    async def deliver(self) -> None:
        """One outbox round; if one is already running, make it run once more instead."""
        if self._deliver_lock.locked():
            self._deliver_again = True
            return
        async with self._deliver_lock:
            again = True
            while again:
                self._deliver_again = False
                now = self._clock.now()
                try:
                    await self.hook.deliver(now)
                except Exception as exc:
                    log.exception("notification delivery failed")
                    self._emit(
                        MonitorEvent(kind="error", at=now, message=f"delivery failed: {exc}")
                    )
                again = self._deliver_again

    def active(self, service: str) -> tuple[str, ...]:
        """Active alerts of ``service`` as of the last evaluation (empty if unknown)."""
        try:
            return tuple(self.hook.active().get(service, ()))
        except Exception:  # a broken hook must not break the health table
            log.exception("reading active alerts failed")
            return ()


__all__ = ["EVAL_BATCH_SECONDS", "AlertDispatcher"]
