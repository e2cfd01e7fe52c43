"""The monitor's side of alerting: what it needs from an alert engine, and the adapter.

:class:`AlertHook` is the interface the monitor calls (evaluate snapshots, deliver due
notifications, feed the SLA tracker); :class:`EngineHook` implements it over
:class:`junction.alerting.engine.AlertEngine`, its channels and the vendor status-page
poller. A monitor built with default arguments always has one (:func:`default_alert_hook`).
Rules judged outside the engine (:class:`ConditionJudge`, e.g. the anomaly alerts of
:mod:`analytics.anomaly_monitor`, which the CLI, the flows and the service pass in) see
the same observations and reach the engine as snapshot conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from junction.alerting.engine import AlertEngine, ServiceSnapshot
from junction.alerting.judge import Condition
from junction.alerting.model import Channel
from junction.alerting.rules import delivery_warning
from junction.alerting.statuspage import StatusPagePoller
from junction.events import alert_transitions
from junction.monitor.results import ServiceHealth
from junction.scoring import Observation
from junction.settings import Settings
from junction.store import MetricsStore

log = logging.getLogger(__name__)

ANNOTATION_WAIT_SECONDS = 0.3
"""Longest an alert evaluation waits for a vendor status page before going without it."""


class AlertHook(Protocol):
    """What the monitor needs from an alert engine (see :class:`EngineHook`)."""

    async def evaluate(self, snapshots: Sequence[ServiceHealth], now: datetime) -> list[str]:
        """Feed service snapshots; return alert transitions as one-line messages."""
        ...

    async def deliver(self, now: datetime) -> None:
        """Send the notifications that are due (outbox)."""
        ...

    def active(self) -> dict[str, list[str]]:
        """Active alerts per service (``rule/severity/state`` strings)."""
        ...

    def observe(self, service: str, observation: Observation) -> None:
        """Feed one new outcome to the SLA tracker (each probe or call once)."""
        ...

    def restore(self, store: MetricsStore, now: datetime) -> None:
        """Rebuild SLA history from the metrics store (once, at start-up)."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...


class ConditionJudge(Protocol):
    """Judges rules outside the engine from what the monitor sees (e.g. anomalies).

    The hook feeds it every new observation, lets it warm up from the metrics store at
    start-up, and asks it for verdicts on each evaluation; the verdicts reach the engine as
    :attr:`junction.alerting.engine.ServiceSnapshot.conditions`. A service it returns no
    verdict for keeps its alert unchanged, so a judge returns ``severity=None`` to clear.
    """

    def observe(self, service: str, observation: Observation) -> None:
        """Take one new observation of ``service``."""
        ...

    def restore(self, store: MetricsStore, now: datetime) -> None:
        """Warm up from the store's recent history (once, at start-up)."""
        ...

    def __call__(
        self, healths: Sequence[ServiceHealth], now: datetime
    ) -> Mapping[str, Mapping[str, Condition]]:
        """Verdicts by service, then by rule name, for this evaluation."""
        ...


def default_alert_hook(
    settings: Settings,
    store: MetricsStore | None = None,
    *,
    judges: Sequence[ConditionJudge] = (),
) -> EngineHook:
    """The alert engine configured by ``settings``, with its channels and ``judges``.

    Raises:
        AlertConfigError: The alerting configuration file is invalid.
        AlertDatabaseError: The alert database cannot be used (corrupt, unreadable).
    """
    return EngineHook(settings, store=store, judges=judges)


async def check_alerting(settings: Settings) -> str | None:
    """Build and close the alert hook the monitor would: configuration, channels, database.

    Lets a caller that cannot print one line itself (a Prefect flow) refuse a bad
    alerting file or alert database before any probe is sent.

    Returns:
        The hook's :attr:`EngineHook.delivery_warning` (alerts only recorded), or None.

    Raises:
        ValueError: The alerting configuration file or a channel in it is invalid
            (``AlertConfigError``: one ``file:line: field: problem`` line per problem).
        AlertDatabaseError: The alert database cannot be used (corrupt, unreadable).
    """
    hook = EngineHook(settings)
    await hook.aclose()
    return hook.delivery_warning


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
        judges: Rules judged outside the engine (:class:`ConditionJudge`), e.g. anomalies.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: MetricsStore | None = None,
        engine: AlertEngine | None = None,
        channels: dict[str, Channel] | None = None,
        judges: Sequence[ConditionJudge] = (),
    ) -> None:
        self.judges = list(judges)
        self.engine = engine or AlertEngine.from_settings(settings, store=store)
        self.channels: dict[str, Channel] = (
            dict(self.engine.config.build_channels(settings)) if channels is None else channels
        )
        # One line when alerts reach nobody (junction.alerting.rules.delivery_warning).
        self.delivery_warning = delivery_warning(self.engine.config)
        self._active: dict[str, list[str]] = {}
        self._refresh_active()
        self.poller = StatusPagePoller(settings) if settings.enhanced_monitoring_enabled else None
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
        for judge in self.judges:
            try:
                judge.restore(store, now)
            except Exception:  # a judge without history still judges what comes next
                log.exception("warming up the condition judge %r failed", judge)

    def observe(self, service: str, observation: Observation) -> None:
        """Feed one observation to the SLA tracker and the condition judges."""
        self.engine.observe(service, [observation])
        for judge in self.judges:
            judge.observe(service, observation)

    def _judge(
        self, healths: Sequence[ServiceHealth], now: datetime
    ) -> dict[str, dict[str, Condition]]:
        """The judges' verdicts, merged by service (a failing judge is logged and skipped)."""
        merged: dict[str, dict[str, Condition]] = {}
        for judge in self.judges:
            try:
                verdicts = judge(healths, now)
            except Exception:  # one broken judge must not stop the engine's own rules
                log.exception("the condition judge %r failed", judge)
                continue
            for service, conditions in verdicts.items():
                merged.setdefault(service, {}).update(conditions)
        return merged

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

    def _snapshot(
        self, health: ServiceHealth, conditions: Mapping[str, Condition]
    ) -> ServiceSnapshot:
        assert health.stats is not None and health.breakdown is not None
        return ServiceSnapshot(
            service=health.service,
            stats=health.stats,
            score=health.breakdown,
            annotation=self._annotations.get(health.service),
            down=health.down,
            consecutive_failures=health.consecutive_failures,
            conditions=conditions,
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
        judged = self._judge(snapshots, now) if self.judges else {}
        snaps = [
            self._snapshot(h, judged.get(h.service, {})) for h in snapshots if h.stats is not None
        ]
        result = self.engine.evaluate(snaps, now=now)
        alert_transitions(result)  # Prefect events for automations (best effort)
        self._active = {}
        for alert in result.active:
            self._active.setdefault(alert.service, []).append(
                f"{alert.rule}/{alert.severity.value}/{alert.state.value}"
            )
        lines = []
        for alert in result.fired:
            note = f" (suppressed: {alert.suppressed_by} is down)" if alert.suppressed_by else ""
            if alert.inhibited_by:
                note += f" (inhibited by {alert.inhibited_by})"
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


__all__ = [
    "ANNOTATION_WAIT_SECONDS",
    "AlertHook",
    "ConditionJudge",
    "EngineHook",
    "check_alerting",
    "default_alert_hook",
]
