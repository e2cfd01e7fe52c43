"""The alert engine: snapshots in, alerts, groups and queued notifications out.

API for the monitor and the reports::

    from junction.alerting.engine import AlertEngine, ServiceSnapshot

    engine = AlertEngine.from_settings(settings, store=store)   # opens <home>/alerts.db
    channels = engine.config.build_channels(settings)  # once (junction.alerting.channels)
    engine.restore_sla(store, now)            # once at start-up: burn rates survive restarts
    ...each sweep / after passive calls:
    engine.observe(service, observations)     # feed each Observation ONCE (SLA burn rates)
    result = engine.evaluate(
        [ServiceSnapshot(name, stats, score, down=..., consecutive_failures=...), ...],
        now=now,                               # or ServiceSnapshot.from_window(...)
    )                                          # -> EvaluationResult (fired, resolved, ...)
    report = await engine.deliver(channels, now=now)   # one outbox round -> DeliveryReport
    engine.ack("okta:down", by="alice", now=now)       # what `junction alerts ack` does
    engine.sla_status(service, now)           # SlaStatus: uptime, error budget, burn rates
    engine.prune(now)                         # drop old exported history / delivered rows
    engine.close()

Reports read the alert history from the metrics store's ``alerts`` table (one row per
transition: firing, severity change, acknowledged, resolved) and SLA standing with
:func:`junction.alerting.sla.sla_report`.

``evaluate`` is synchronous and quick (one SQLite transaction); services missing from the
snapshots keep their alerts unchanged, so passive evaluation may pass only the services
that just had live calls. A snapshot with fewer than ``min_observations`` observations
leaves the threshold rules of its service unchanged (no data is not "healthy").

Per service the engine judges five rules (fingerprint ``<service>:<rule>``): ``down``
(critical while the snapshot's ``down`` is true: the monitor's confirmed outage, the fast
path: window averages take minutes to cross a threshold), ``success_rate``,
``response_time`` (p95 of successes), ``health_score`` against the configured
warning/critical thresholds, and ``burn_rate`` from the :class:`SlaTracker` (critical on
a fast burn, warning on a slow one).

Lifecycle: an alert fires when its rule breaches, changes severity in place, is
acknowledged by ``junction alerts ack`` (with the rest of its incident), and resolves when
the rule is fine again (for ``resolve_after``). At most one unresolved alert exists per
fingerprint (a unique index), across sweeps and restarts.

Grouping and dependency-aware suppression: alerts are grouped per root cause. A new
alert of a service joins the group of the nearest service it depends on (transitively,
from ``dependencies:``) that has an unresolved alert, and is marked suppressed (no
notification of its own); otherwise it joins its own service's group, or starts one.
Services are processed dependencies-first within one evaluation, and a group that has
not notified anybody yet is merged into an upstream group as soon as one appears. A new
group whose root service has declared dependencies holds its first notification for
``grouping.dependency_wait`` (5 s of engine time by default) so that dependents detected
before their dependency (the monitor evaluates each service as soon as it fails) still
fold into the dependency's incident; services without dependencies notify at once
(``grouping.wait``, default 0).

Notifications (queued in the outbox in the evaluation's transaction; the notification
key ``<group>:<kind>:<n>:<channel>`` makes them exactly-once):

* firing: to every channel of ``routes[severity]`` not yet told about this severity
  (a warning -> critical change tells the chat channel again and pages on-call);
* escalation: a critical group with an unacknowledged, unsilenced alert for
  ``escalation.after`` of engine time goes up one level (its channels are added);
* repeat: an unacknowledged firing group is re-sent every ``repeat_interval``;
* resolved: when the last alert of a group resolves, to EVERY channel that was notified
  about it, even if the alerts were silenced or suppressed meanwhile.

Silenced alerts (CLI silences, configured maintenance windows) stay visible but cause no
firing/escalation/repeat messages while silenced; when the silence expires, the group
notifies as usual.

Clock: escalation, repeat and ``grouping.wait`` run on *engine time*, the sum over
evaluations of ``min(now - previous now, escalation.max_step)`` (0 when the clock went
backwards). So a clock jumping hours forward adds at most ``max_step`` and cannot
escalate everything at once, and a clock going back cannot re-fire or re-send anything
(no key depends on the time); time while no evaluation ran does not count (late
escalation rather than a spurious one). Silence expiry follows the wall clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from junction.alerting import outbox as outbox_mod
from junction.alerting import state
from junction.alerting.alerts import Alert, acknowledge, active_alerts
from junction.alerting.config import load_settings_config
from junction.alerting.evaluation import Evaluation, EvaluationResult
from junction.alerting.judge import ServiceSnapshot
from junction.alerting.rules import AlertingConfig
from junction.alerting.sla import SlaStatus, SlaTracker
from junction.alerting.state import iso, utc
from junction.settings import Settings, get_settings
from junction.statedb import StateUrl

if TYPE_CHECKING:
    from junction.alerting.model import Channel
    from junction.alerting.outbox import DeliveryReport
    from junction.scoring import Observation
    from junction.store import MetricsStore

__all__ = ["AlertEngine", "EvaluationResult", "ServiceSnapshot"]

log = logging.getLogger(__name__)


class AlertEngine:
    """Alert state machine over the SQLite alert database (see the module docstring).

    Args:
        db_path: The alert database (``<home>/alerts.db``).
        config: Alerting configuration.
        store: Metrics store receiving every transition in its ``alerts`` table
            (``None``: kept in the database's ``history`` table until exported).
        sla: SLA tracker (default: a new one from ``config.sla``).
    """

    def __init__(
        self,
        db_path: str | Path | StateUrl,
        config: AlertingConfig,
        *,
        store: MetricsStore | None = None,
        sla: SlaTracker | None = None,
        send_timeout: float = 10.0,
    ) -> None:
        self.db_path = db_path if isinstance(db_path, StateUrl) else Path(db_path)
        self.config = config
        self.store = store
        self.sla = sla or SlaTracker(config.sla)
        self.conn = state.connect(self.db_path)
        self._lock = threading.RLock()
        # One connection, one lock: evaluation, acks and delivery never interleave
        # statements inside each other's transactions.
        self.outbox = outbox_mod.Outbox(self.conn, send_timeout=send_timeout, lock=self._lock)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, store: MetricsStore | None = None
    ) -> AlertEngine:
        """Engine on ``<home>/alerts.db`` with the configuration ``JUNCTION_ALERTING_FILE``
        names (defaults without one).

        Raises:
            AlertConfigError: The configuration file is invalid.
        """
        settings = settings or get_settings()
        config = load_settings_config(settings)
        return cls(
            state.db_path(settings),
            config,
            store=store,
            send_timeout=settings.alert_send_timeout_seconds,
        )

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    def __enter__(self) -> AlertEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ SLA input

    def observe(self, service: str, observations: Iterable[Observation]) -> None:
        """Feed outcomes to the SLA tracker (each probe or call exactly once)."""
        self.sla.observe_many(service, ((o.ts, o.ok) for o in observations))

    def restore_sla(self, store: MetricsStore, now: datetime) -> int:
        """Rebuild the SLA buckets from the metrics store (once, at start-up)."""
        return self.sla.restore(store, utc(now))

    def sla_status(self, service: str, now: datetime) -> SlaStatus:
        """SLA standing of ``service`` at ``now``."""
        return self.sla.status(service, utc(now))

    # ------------------------------------------------------------------ queries / actions

    def active_alerts(self) -> list[Alert]:
        """Unresolved alerts."""
        return active_alerts(self.conn)

    def ack(self, ref: str, by: str, now: datetime) -> list[Alert]:
        """Acknowledge alert ``ref`` (id or fingerprint) and its incident's other firing
        alerts; see :func:`junction.alerting.alerts.acknowledge`."""
        with self._lock:
            alerts = acknowledge(self.conn, ref, by, now)
        self._export()
        return alerts

    def prune(self, now: datetime, keep: timedelta = timedelta(days=7)) -> int:
        """Delete exported history rows and finished outbox rows older than ``keep``.

        Alerts, groups and silences are kept (``junction alerts list --all``).

        Returns:
            Rows deleted.
        """
        cutoff = utc(now) - keep
        with self._lock, state.transaction(self.conn):
            n = self.conn.execute(
                "DELETE FROM history WHERE exported = 1 AND ts < ?", (iso(cutoff),)
            ).rowcount
            n += self.conn.execute(
                "DELETE FROM outbox WHERE status IN ('delivered', 'failed') AND created_at < ?",
                (iso(cutoff),),
            ).rowcount
        return n

    async def deliver(
        self, channels: Mapping[str, Channel], *, now: datetime | None = None
    ) -> DeliveryReport:
        """One outbox round (see :meth:`junction.alerting.outbox.Outbox.deliver_due`)."""
        return await self.outbox.deliver_due(channels, now=now)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, snapshots: Iterable[ServiceSnapshot], now: datetime) -> EvaluationResult:
        """Judge the snapshots and update alerts, groups and the outbox in one transaction.

        Args:
            snapshots: Current health of some or all services (last one per service wins).
            now: Evaluation time (UTC; naive means UTC).

        Returns:
            What changed.
        """
        now = utc(now)
        latest: dict[str, ServiceSnapshot] = {}
        for snap in snapshots:
            latest[snap.service] = snap
        with self._lock, state.transaction(self.conn):
            result = Evaluation(self.conn, self.config, self.sla, now).run(latest)
        self._export()
        return result

    def _export(self) -> None:
        if self.store is None:
            return
        try:
            with self._lock:
                state.export_history(self.conn, self.store, wall=time.time())
        except Exception:  # the rows stay pending and go with the next evaluation
            log.exception("exporting alert history to the metrics store failed")
