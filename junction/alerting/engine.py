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

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from junction.alerting import outbox as outbox_mod
from junction.alerting import state
from junction.alerting.config import load_settings_config
from junction.alerting.model import (
    AlertState,
    Notification,
    NotificationKind,
    Severity,
)
from junction.alerting.rules import AlertingConfig, format_duration
from junction.alerting.silences import list_silences
from junction.alerting.sla import SlaStatus, SlaTracker
from junction.alerting.state import Alert, iso, utc
from junction.scoring import ScoreBreakdown, WindowStats, health_score
from junction.settings import Settings, get_settings

if TYPE_CHECKING:
    from junction.alerting.model import Channel
    from junction.alerting.outbox import DeliveryReport
    from junction.scoring import Observation, ServiceWindow, Thresholds
    from junction.store import MetricsStore

log = logging.getLogger(__name__)

CLOCK_KEY = "clock:last_eval"


@dataclass(frozen=True)
class ServiceSnapshot:
    """One service's current health, the engine's input.

    Attributes:
        service: Catalog name.
        stats: The service's window summary.
        score: Its health score.
        source: ``probe`` (a sweep) or ``passive`` (live calls); informational.
        annotation: Vendor status note to put on its alerts ("GitLab reports: degraded").
        labels: Extra labels for its alerts (the configured ones are added).
        down: The monitor's verdict that the service is down (its last N observations
            failed, confirmed); ``None``: no verdict, the ``down`` rule is left unchanged.
        consecutive_failures: Failures in a row behind that verdict (for the message).
    """

    service: str
    stats: WindowStats
    score: ScoreBreakdown
    source: str = "probe"
    annotation: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    down: bool | None = None
    consecutive_failures: int = 0

    @classmethod
    def from_window(
        cls,
        service: str,
        window: ServiceWindow,
        thresholds: Thresholds,
        now: datetime,
        *,
        source: str = "probe",
        annotation: str | None = None,
    ) -> ServiceSnapshot:
        """Summarise ``window`` at ``now`` and score it with ``thresholds`` (the settings)."""
        stats = window.stats(now)
        return cls(service, stats, health_score(stats, thresholds, now=now), source, annotation)


@dataclass(frozen=True)
class Condition:
    """A rule's verdict on one snapshot (``severity`` None: fine)."""

    rule: str
    severity: Severity | None
    value: float | None
    message: str


@dataclass
class Group:
    """A notification group: one incident (one root cause)."""

    key: str
    root_service: str
    state: str
    started_at: datetime
    severity: Severity | None = None
    resolved_at: datetime | None = None
    notified: dict[str, int] = field(default_factory=dict)
    level: int = 0
    seq: int = 0
    age_s: float = 0.0
    esc_s: float = 0.0
    repeat_s: float = 0.0
    first_notified_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Group:
        """Build from a ``groups`` row."""
        return cls(
            key=row["key"],
            root_service=row["root_service"],
            state=row["state"],
            started_at=datetime.fromisoformat(row["started_at"]),
            severity=Severity(row["severity"]) if row["severity"] else None,
            resolved_at=state.parse_ts(row["resolved_at"]),
            notified=json.loads(row["notified_json"]),
            level=int(row["level"]),
            seq=int(row["seq"]),
            age_s=float(row["age_s"]),
            esc_s=float(row["esc_s"]),
            repeat_s=float(row["repeat_s"]),
            first_notified_at=state.parse_ts(row["first_notified_at"]),
            labels=json.loads(row["labels_json"]),
        )

    def save(self, conn: sqlite3.Connection) -> None:
        """Insert or update the row."""
        conn.execute(
            """
            INSERT INTO groups (key, root_service, state, severity, started_at, resolved_at,
                notified_json, level, seq, age_s, esc_s, repeat_s, first_notified_at,
                labels_json)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET state = excluded.state,
                severity = excluded.severity, resolved_at = excluded.resolved_at,
                notified_json = excluded.notified_json, level = excluded.level,
                seq = excluded.seq, age_s = excluded.age_s, esc_s = excluded.esc_s,
                repeat_s = excluded.repeat_s, first_notified_at = excluded.first_notified_at
            """,
            (
                self.key,
                self.root_service,
                self.state,
                self.severity.value if self.severity else None,
                iso(self.started_at),
                iso(self.resolved_at) if self.resolved_at else None,
                json.dumps(self.notified, sort_keys=True),
                self.level,
                self.seq,
                self.age_s,
                self.esc_s,
                self.repeat_s,
                iso(self.first_notified_at) if self.first_notified_at else None,
                json.dumps(self.labels, sort_keys=True),
            ),
        )


@dataclass(frozen=True)
class EvaluationResult:
    """What one :meth:`AlertEngine.evaluate` call changed.

    Attributes:
        now: The evaluation time.
        fired: Alerts created.
        changed: Alerts whose severity changed.
        resolved: Alerts resolved.
        active: Every unresolved alert after the evaluation.
        notifications: Notifications queued in the outbox.
        step_seconds: Engine time this evaluation added (see "Clock").
    """

    now: datetime
    fired: list[Alert]
    changed: list[Alert]
    resolved: list[Alert]
    active: list[Alert]
    notifications: list[Notification]
    step_seconds: float


def judge(
    snapshot: ServiceSnapshot, config: AlertingConfig, sla: SlaStatus | None
) -> dict[str, Condition]:
    """Every rule's verdict on ``snapshot``; rules without data are left out (unchanged).

    Args:
        snapshot: The service's health.
        config: Thresholds.
        sla: The service's SLA status (``None``: burn-rate rule left out).
    """
    out: dict[str, Condition] = {}
    stats = snapshot.stats
    if not config.rule_on("down", snapshot.service):
        out["down"] = Condition("down", None, None, "disabled")
    elif snapshot.down is not None:
        failures = snapshot.consecutive_failures
        out["down"] = Condition(
            "down",
            Severity.CRITICAL if snapshot.down else None,
            float(failures),
            f"down: {failures} consecutive failures"
            + (f" ({stats.last_error_class})" if stats.last_error_class else "")
            if snapshot.down
            else "up",
        )
    thresholds = config.thresholds(snapshot.service)
    enough = stats.count >= config.min_observations
    n = f"n={stats.count}"

    sr = thresholds["success_rate"]
    if not sr.enabled:
        out["success_rate"] = Condition("success_rate", None, stats.success_rate, "disabled")
    elif enough and stats.success_rate is not None:
        sev = sr.judge(stats.success_rate)
        bound = sr.critical if sev is Severity.CRITICAL else sr.warning
        msg = (
            f"success rate {stats.success_rate:.1%} < {bound:.1%} ({n})"
            if sev is not None and bound is not None
            else f"success rate {stats.success_rate:.1%} ({n})"
        )
        out["success_rate"] = Condition("success_rate", sev, stats.success_rate, msg)

    rt = thresholds["response_time"]
    if not rt.enabled:
        out["response_time"] = Condition("response_time", None, stats.p95_latency_ms, "disabled")
    elif enough and stats.p95_latency_ms is not None:
        p95 = stats.p95_latency_ms
        sev = rt.judge(p95)
        bound = rt.critical if sev is Severity.CRITICAL else rt.warning
        msg = (
            f"p95 response time {p95:.0f} ms > {bound:g} ms ({n})"
            if sev is not None and bound is not None
            else f"p95 response time {p95:.0f} ms ({n})"
        )
        out["response_time"] = Condition("response_time", sev, p95, msg)

    hs = thresholds["health_score"]
    score = snapshot.score.score
    if not hs.enabled:
        out["health_score"] = Condition("health_score", None, score, "disabled")
    elif enough and score is not None:
        sev = hs.judge(score)
        bound = hs.critical if sev is Severity.CRITICAL else hs.warning
        reasons = "; ".join(snapshot.score.reasons)
        msg = (
            f"health score {score:.0f} < {bound:g}" + (f" ({reasons})" if reasons else "")
            if sev is not None and bound is not None
            else f"health score {score:.0f}"
        )
        out["health_score"] = Condition("health_score", sev, score, msg)

    if not config.rule_on("burn_rate", snapshot.service):
        out["burn_rate"] = Condition("burn_rate", None, None, "disabled")
    elif sla is not None and sla.total > 0:
        sev = sla.burn_severity
        worst = max((b.long_rate for b in sla.burn_rates), default=0.0)
        out["burn_rate"] = Condition("burn_rate", sev, worst, sla.describe())
    return out


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
        db_path: str | Path,
        config: AlertingConfig,
        *,
        store: MetricsStore | None = None,
        sla: SlaTracker | None = None,
        send_timeout: float = 10.0,
    ) -> None:
        self.db_path = Path(db_path)
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
        return state.active_alerts(self.conn)

    def ack(self, ref: str, by: str, now: datetime) -> list[Alert]:
        """Acknowledge alert ``ref`` (id or fingerprint) and its incident's other firing
        alerts; see :func:`junction.alerting.state.acknowledge`."""
        with self._lock:
            alerts = state.acknowledge(self.conn, ref, by, now)
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
            result = _Evaluation(self, now).run(latest)
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


class _Evaluation:
    """One evaluation, inside the engine's transaction."""

    def __init__(self, engine: AlertEngine, now: datetime) -> None:
        self.engine = engine
        self.config = engine.config
        self.conn = engine.conn
        self.now = now
        self.instance = state.instance_id(self.conn)
        self.notifications: list[Notification] = []
        self.dirty: dict[int, Alert] = {}
        self.created: set[str] = set()  # groups born in this evaluation

    # -- helpers
    def _step(self) -> float:
        last = state.meta_get(self.conn, CLOCK_KEY)
        state.meta_set(self.conn, CLOCK_KEY, iso(self.now))
        if last is None:
            return 0.0
        delta = (self.now - datetime.fromisoformat(last)).total_seconds()
        return min(max(delta, 0.0), self.config.escalation.max_step.total_seconds())

    def _order(self, services: Iterable[str]) -> list[str]:
        """Dependencies first (stable otherwise)."""
        wanted = sorted(services)
        done: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in self.config.dependencies.get(name, ()):
                visit(dep)
            done.append(name)

        for name in wanted:
            visit(name)
        wanted_set = set(wanted)
        return [n for n in done if n in wanted_set]

    def _new_group(self, root: str, rule: str) -> Group:
        n = state.next_counter(self.conn, "group")
        key = f"{self.instance}-g{n}"
        # Fixed for the group's life: receivers that key alerts on labels (Alertmanager)
        # must see one identity from firing to resolved, whatever alert leads the message.
        labels = self.config.labels(root)
        labels.update(
            {"alertname": f"junction_{rule}", "service": root, "rule": rule, "group": key}
        )
        group = Group(
            key=key, root_service=root, state="active", started_at=self.now, labels=labels
        )
        self.groups[group.key] = group
        self.created.add(group.key)
        return group

    def _upstream_alert(self, service: str) -> Alert | None:
        """The unresolved alert of the nearest upstream service, if any."""
        for dep in self.config.upstream(service):
            candidates = self.by_service.get(dep)
            if candidates:
                return min(candidates, key=lambda a: a.id)
        return None

    def _labels(self, snap: ServiceSnapshot, rule: str, severity: Severity) -> dict[str, str]:
        labels = self.config.labels(snap.service)
        labels.update(snap.labels)
        labels.update({"service": snap.service, "rule": rule, "severity": severity.value})
        return labels

    # -- main
    def run(self, snapshots: dict[str, ServiceSnapshot]) -> EvaluationResult:
        conn = self.conn
        step = self._step()
        self.active: dict[str, Alert] = {a.fingerprint: a for a in state.active_alerts(conn)}
        # Unresolved alerts per service (kept in step by _fire/_resolve): the dependency
        # lookups stay O(upstream) instead of O(alerts) at a thousand services.
        self.by_service: dict[str, list[Alert]] = {}
        for known in self.active.values():
            self.by_service.setdefault(known.service, []).append(known)
        self.groups: dict[str, Group] = {
            row["key"]: Group.from_row(row)
            for row in conn.execute("SELECT * FROM groups WHERE state = 'active'")
        }
        fired: list[Alert] = []
        changed: list[Alert] = []
        resolved: list[Alert] = []

        for service in self._order(snapshots):
            snap = snapshots[service]
            sla_status = None
            if service in self.engine.sla.services:
                sla_status = self.engine.sla.status(service, self.now)
            for rule, cond in judge(snap, self.config, sla_status).items():
                fingerprint = f"{service}:{rule}"
                alert = self.active.get(fingerprint)
                if cond.severity is None:
                    if alert is not None and self._cleared(alert, step):
                        self._resolve(alert, cond)
                        resolved.append(alert)
                    continue
                if alert is None:
                    fired.append(self._fire(snap, cond))
                else:
                    alert.clear_s = 0.0
                    if self._update(alert, snap, cond):
                        changed.append(alert)

        self._merge_unnotified()
        self._apply_silences()
        self._mark_suppression()
        self.by_group: dict[str, list[Alert]] = {}
        for member in self.active.values():
            self.by_group.setdefault(member.group_key, []).append(member)
        for group in list(self.groups.values()):
            self._notify(group, step)
        for alert in self.dirty.values():
            state.save_alert(conn, alert)
        for group in self.groups.values():
            group.save(conn)
        for notification in self.notifications:
            outbox_mod.enqueue(conn, notification, self.now)
        return EvaluationResult(
            now=self.now,
            fired=fired,
            changed=changed,
            resolved=resolved,
            active=sorted(self.active.values(), key=lambda a: a.id),
            notifications=list(self.notifications),
            step_seconds=step,
        )

    def _fire(self, snap: ServiceSnapshot, cond: Condition) -> Alert:
        assert cond.severity is not None
        service = snap.service
        upstream = self._upstream_alert(service)
        suppressed_by = None
        group: Group | None = None
        if upstream is not None:
            group = self.groups.get(upstream.group_key)
            suppressed_by = upstream.service
        else:
            own = self.by_service.get(service, [])
            if own:
                group = self.groups.get(own[0].group_key)
                suppressed_by = own[0].suppressed_by
        if group is None:  # no group to join (or, defensively, its row is gone)
            group = self._new_group(service, cond.rule)
        alert_id = state.next_counter(self.conn, "alert")
        alert = Alert(
            id=alert_id,
            fingerprint=f"{service}:{cond.rule}",
            service=service,
            rule=cond.rule,
            severity=cond.severity,
            state=AlertState.FIRING,
            group_key=group.key,
            message=cond.message,
            started_at=self.now,
            updated_at=self.now,
            suppressed_by=suppressed_by,
            value=cond.value,
            labels=self._labels(snap, cond.rule, cond.severity),
            annotation=snap.annotation,
        )
        # The row must exist before its history row refers to it in reports; save now.
        state.record_transition(self.conn, alert, self.now, "firing", cond.message)
        self.active[alert.fingerprint] = alert
        self.by_service.setdefault(service, []).append(alert)
        self.dirty[alert.id] = alert
        return alert

    def _update(self, alert: Alert, snap: ServiceSnapshot, cond: Condition) -> bool:
        assert cond.severity is not None
        alert.message = cond.message
        alert.value = cond.value
        alert.annotation = snap.annotation
        alert.updated_at = max(self.now, alert.started_at)
        self.dirty[alert.id] = alert
        if cond.severity is alert.severity:
            return False
        alert.severity = cond.severity
        alert.labels["severity"] = cond.severity.value
        state.record_transition(
            self.conn,
            alert,
            self.now,
            alert.state.value,
            f"severity {cond.severity}: {cond.message}",
        )
        return True

    def _cleared(self, alert: Alert, step: float) -> bool:
        """Whether a fine rule has been fine long enough (``resolve_after``) to resolve."""
        hold = self.config.resolve_after.total_seconds()
        if hold <= 0:
            return True
        alert.clear_s += step
        self.dirty[alert.id] = alert
        return alert.clear_s >= hold

    def _resolve(self, alert: Alert, cond: Condition) -> None:
        alert.state = AlertState.RESOLVED
        at = max(self.now, alert.started_at)  # a clock that went back never ends before start
        alert.resolved_at = at
        alert.updated_at = at
        alert.message = f"resolved: {cond.message}"
        state.record_transition(self.conn, alert, at, "resolved", alert.message)
        del self.active[alert.fingerprint]
        self.by_service[alert.service].remove(alert)
        self.dirty[alert.id] = alert

    def _merge_unnotified(self) -> None:
        """Fold groups that told nobody yet into the group of a failing dependency."""
        for group in list(self.groups.values()):
            if group.notified or group.state != "active":
                continue
            upstream = self._upstream_alert(group.root_service)
            if upstream is None or upstream.group_key == group.key:
                continue
            for alert in self.active.values():
                if alert.group_key == group.key:
                    alert.group_key = upstream.group_key
                    alert.suppressed_by = upstream.service
                    self.dirty[alert.id] = alert
            self.conn.execute("DELETE FROM groups WHERE key = ?", (group.key,))
            del self.groups[group.key]

    def _apply_silences(self) -> None:
        silences = list_silences(self.conn, self.now)
        for alert in self.active.values():
            covering = None
            for window in self.config.maintenance:
                if window.active(self.now) and window.matcher.matches(
                    alert.service, alert.rule, alert.labels
                ):
                    covering = f"maintenance:{window.id}"
                    break
            if covering is None:
                for silence in silences:
                    if silence.active(self.now) and silence.matches(
                        alert.service, alert.rule, alert.labels
                    ):
                        covering = silence.id
                        break
            if covering != alert.silenced_by:
                alert.silenced_by = covering
                self.dirty[alert.id] = alert

    def _mark_suppression(self) -> None:
        """Refresh ``suppressed_by`` for display: the nearest failing upstream service."""
        for alert in self.active.values():
            upstream = self._upstream_alert(alert.service)
            value = upstream.service if upstream is not None else None
            if value != alert.suppressed_by:
                alert.suppressed_by = value
                self.dirty[alert.id] = alert

    # -- notifications
    def _notify(self, group: Group, step: float) -> None:
        members = self.by_group.get(group.key, [])
        if not members:
            self._close_group(group)
            return
        group.severity = max((a.severity for a in members), key=lambda s: s.rank)
        if group.key in self.created:
            step = 0.0  # the time before this evaluation is not the new group's
        group.age_s += step
        visible = [a for a in members if a.silenced_by is None]
        if not visible:
            return
        if group.first_notified_at is None and group.age_s < self._wait(group):
            return
        # A failing dependency owns the incident: a group whose root now depends on one
        # sends nothing new (no re-page, escalation or repeat) until it recovers.
        if group.notified and self._upstream_alert(group.root_service) is not None:
            return
        severity = max((a.severity for a in visible), key=lambda s: s.rank)
        sent_now = False
        targets = [
            ch
            for ch in self.config.route(severity, group.root_service)
            if group.notified.get(ch, 0) < severity.rank
        ]
        if targets:
            self._emit(group, NotificationKind.FIRING, targets, severity, visible)
            sent_now = True
        unacked = any(a.state is AlertState.FIRING for a in visible)
        policy = self.config.escalation
        if severity is Severity.CRITICAL and unacked and policy.after and policy.levels:
            group.esc_s += step
            due = min(len(policy.levels), int(group.esc_s // policy.after.total_seconds()))
            while group.level < due:
                group.level += 1
                channels = list(policy.levels[group.level - 1])
                if channels:
                    self._emit(group, NotificationKind.ESCALATION, channels, severity, visible)
                    sent_now = True
        if policy.repeat_interval and unacked and group.notified:
            if sent_now:
                group.repeat_s = 0.0
            else:
                group.repeat_s += step
                if group.repeat_s >= policy.repeat_interval.total_seconds():
                    group.repeat_s = 0.0
                    self._emit(
                        group, NotificationKind.REPEAT, sorted(group.notified), severity, visible
                    )

    def _wait(self, group: Group) -> float:
        """Seconds (engine time) a new group holds its first notification."""
        wait = self.config.group_wait.total_seconds()
        if self.config.dependencies.get(group.root_service):
            wait = max(wait, self.config.dependency_wait.total_seconds())
        return wait

    def _emit(
        self,
        group: Group,
        kind: NotificationKind,
        channels: list[str],
        severity: Severity,
        alerts: list[Alert],
    ) -> None:
        group.seq += 1
        if group.first_notified_at is None:
            group.first_notified_at = self.now
        lead = min(alerts, key=lambda a: (-a.severity.rank, a.suppressed_by is not None, a.id))
        others = len(alerts) - 1
        prefix = {
            NotificationKind.FIRING: "",
            NotificationKind.ESCALATION: f"[escalation level {group.level}] ",
            NotificationKind.REPEAT: "[still firing] ",
            NotificationKind.RESOLVED: "[resolved] ",
        }[kind]
        title = f"{prefix}{severity.value.upper()} {lead.service}: {lead.message}" + (
            f" (+{others} more)" if others else ""
        )
        text = self._body(group, alerts)
        labels = {**group.labels, "severity": severity.value}
        for channel in channels:
            self.notifications.append(
                Notification(
                    key=f"{group.key}:{kind.value}:{group.seq}:{channel}",
                    channel=channel,
                    kind=kind,
                    group_key=group.key,
                    severity=severity,
                    title=title,
                    text=text,
                    fingerprints=tuple(sorted(a.fingerprint for a in alerts)),
                    labels=dict(labels),
                    starts_at=group.started_at,
                    dedup_key=group.key,
                    created_at=self.now,
                )
            )
            group.notified[channel] = max(group.notified.get(channel, 0), severity.rank)

    def _body(self, group: Group, alerts: list[Alert]) -> str:
        lines = [f"Incident {group.key} (root: {group.root_service}) since {iso(group.started_at)}"]
        for a in sorted(alerts, key=lambda a: (-a.severity.rank, a.service, a.rule)):
            notes = []
            if a.suppressed_by:
                notes.append(f"depends on failing {a.suppressed_by}")
            if a.silenced_by:
                notes.append(f"silenced by {a.silenced_by}")
            if a.state is AlertState.ACKNOWLEDGED:
                notes.append(f"acknowledged by {a.acked_by}")
            extra = f" [{'; '.join(notes)}]" if notes else ""
            lines.append(f"- #{a.id} {a.severity.value} {a.fingerprint}: {a.message}{extra}")
            if a.annotation:
                lines.append(f"  {a.annotation}")
        return "\n".join(lines)

    def _close_group(self, group: Group) -> None:
        group.state = "resolved"
        group.resolved_at = max(self.now, group.started_at)
        del self.groups[group.key]
        group.save(self.conn)
        if not group.notified:
            return
        rows = self.conn.execute(
            "SELECT * FROM alerts WHERE group_key = ? ORDER BY id", (group.key,)
        ).fetchall()
        members = {int(r["id"]): Alert.from_row(r) for r in rows}
        members.update({a.id: a for a in self.dirty.values() if a.group_key == group.key})
        alerts = sorted(members.values(), key=lambda a: a.id)
        severity = group.severity or Severity.WARNING
        names = sorted({a.service for a in alerts})
        duration = group.resolved_at - group.started_at
        title = (
            f"[resolved] {group.root_service}"
            + (f" (+{len(names) - 1} services)" if len(names) > 1 else "")
            + f" after {format_duration(duration)}"
        )
        lines = [
            f"Incident {group.key} (root: {group.root_service}) resolved at "
            f"{iso(group.resolved_at)}, started {iso(group.started_at)}"
        ]
        lines += [f"- #{a.id} {a.fingerprint}: resolved" for a in alerts]
        # No severity label: the group may have been announced as warning and as critical,
        # and a receiver keyed on labels (Alertmanager) must end both.
        labels = dict(group.labels)
        for channel in sorted(group.notified):
            self.notifications.append(
                Notification(
                    key=f"{group.key}:resolved:0:{channel}",
                    channel=channel,
                    kind=NotificationKind.RESOLVED,
                    group_key=group.key,
                    severity=severity,
                    title=title,
                    text="\n".join(lines),
                    fingerprints=tuple(sorted({a.fingerprint for a in alerts})),
                    labels=dict(labels),
                    starts_at=group.started_at,
                    ends_at=group.resolved_at,
                    dedup_key=group.key,
                    created_at=self.now,
                )
            )
