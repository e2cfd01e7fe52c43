"""One evaluation of the alert engine: lifecycle, grouping, suppression, notifications.

See :mod:`junction.alerting.engine` for the behaviour; this module holds the state machine
that :meth:`~junction.alerting.engine.AlertEngine.evaluate` runs inside one SQLite
transaction: it reads the unresolved alerts and active groups, applies every rule's
verdict (:func:`junction.alerting.judge.judge`), and writes alerts, groups, history rows
and the outbox's new notifications.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from junction.alerting import outbox as outbox_mod
from junction.alerting import state
from junction.alerting.alerts import Alert, active_alerts, record_transition, save_alert
from junction.alerting.inhibition import apply_inhibition, holds_incident
from junction.alerting.judge import Condition, ServiceSnapshot, judge
from junction.alerting.model import (
    AlertState,
    Notification,
    NotificationKind,
    Severity,
)
from junction.alerting.rules import AlertingConfig, format_duration
from junction.alerting.silences import list_silences
from junction.alerting.sla import SlaTracker
from junction.alerting.state import iso
from junction.statedb import Connection, Row

CLOCK_KEY = "clock:last_eval"
"""``meta`` key of the previous evaluation's time (engine time advances from it)."""


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
    quiet_s: float = 0.0
    first_notified_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Row) -> Group:
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
            quiet_s=float(row["quiet_s"]),
            first_notified_at=state.parse_ts(row["first_notified_at"]),
            labels=json.loads(row["labels_json"]),
        )

    def save(self, conn: Connection) -> None:
        """Insert or update the row."""
        conn.execute(
            """
            INSERT INTO groups (key, root_service, state, severity, started_at, resolved_at,
                notified_json, level, seq, age_s, esc_s, repeat_s, first_notified_at,
                labels_json, quiet_s)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET state = excluded.state,
                severity = excluded.severity, resolved_at = excluded.resolved_at,
                notified_json = excluded.notified_json, level = excluded.level,
                seq = excluded.seq, age_s = excluded.age_s, esc_s = excluded.esc_s,
                repeat_s = excluded.repeat_s, first_notified_at = excluded.first_notified_at,
                quiet_s = excluded.quiet_s
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
                self.quiet_s,
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


class Evaluation:
    """One evaluation, inside the caller's transaction on ``conn``.

    Args:
        conn: The alert database (a transaction is open).
        config: The alerting configuration.
        sla: The SLA tracker (burn rates).
        now: The evaluation time (UTC).
    """

    def __init__(
        self, conn: Connection, config: AlertingConfig, sla: SlaTracker, now: datetime
    ) -> None:
        self.config = config
        self.conn = conn
        self.sla = sla
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

    def _service_steps(self, services: Iterable[str], step: float) -> dict[str, float]:
        """Seconds since each service was last evaluated, for ``resolve_after``.

        Monitors that shard the services between them share one database, so the
        engine-wide step is the time since *any* shard's evaluation: a service's alert
        would count only a fraction of the time it has been fine. With ``resolve_after``
        off nothing is stored and every service gets the engine step.
        """
        if self.config.resolve_after.total_seconds() <= 0:
            return dict.fromkeys(services, step)
        cap = self.config.escalation.max_step.total_seconds()
        steps: dict[str, float] = {}
        for service in services:
            key = f"{CLOCK_KEY}:{service}"
            last = state.meta_get(self.conn, key)
            state.meta_set(self.conn, key, iso(self.now))
            delta = (
                0.0 if last is None else (self.now - datetime.fromisoformat(last)).total_seconds()
            )
            steps[service] = min(max(delta, 0.0), cap)
        return steps

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

    def _quiet_group(self, service: str) -> Group | None:
        """The active group of ``service`` that no alert holds open (``resolve_wait``)."""
        if self.config.resolve_wait.total_seconds() <= 0:
            return None
        for group in self.groups.values():
            if group.root_service != service or not group.notified:
                continue
            members = [a for a in self.active.values() if a.group_key == group.key]
            if not any(holds_incident(a, self.active) for a in members):
                return group
        return None

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
        self.active: dict[str, Alert] = {a.fingerprint: a for a in active_alerts(conn)}
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

        service_steps = self._service_steps(snapshots, step)
        for service in self._order(snapshots):
            snap = snapshots[service]
            sla_status = None
            if service in self.sla.services:
                sla_status = self.sla.status(service, self.now)
            for rule, cond in judge(snap, self.config, sla_status).items():
                fingerprint = f"{service}:{rule}"
                alert = self.active.get(fingerprint)
                if cond.severity is None:
                    if alert is not None and self._cleared(alert, service_steps[service]):
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
        for alert in apply_inhibition(self.active, self.config.inhibit):
            self.dirty[alert.id] = alert
        self.by_group: dict[str, list[Alert]] = {}
        for member in self.active.values():
            self.by_group.setdefault(member.group_key, []).append(member)
        for group in list(self.groups.values()):
            self._notify(group, step)
        for alert in self.dirty.values():
            save_alert(conn, alert)
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
        if group is None:  # an incident of this service resolving quietly (resolve_wait)?
            group = self._quiet_group(service)
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
        record_transition(self.conn, alert, self.now, "firing", cond.message)
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
        record_transition(
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
        record_transition(self.conn, alert, at, "resolved", alert.message)
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
        # Inhibited symptoms whose cause resolved do not hold the incident open: it
        # resolves with its cause, they stay listed until their own rules clear.
        if not any(holds_incident(a, self.active) for a in members):
            # grouping.resolve_wait: a told incident stays open, quiet, this long; its root
            # service failing again meanwhile rejoins it (a flap is not a new page).
            wait = self.config.resolve_wait.total_seconds()
            if group.notified and group.quiet_s + step < wait:
                group.quiet_s += step
                return
            self._close_group(group)
            return
        group.quiet_s = 0.0
        group.severity = max((a.severity for a in members), key=lambda s: s.rank)
        if group.key in self.created:
            step = 0.0  # the time before this evaluation is not the new group's
        group.age_s += step
        visible = [a for a in members if a.silenced_by is None and a.inhibited_by is None]
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
        shown = {a.id for a in alerts}
        for a in self.by_group.get(group.key, []):  # symptoms: listed, not sent on their own
            if a.inhibited_by and a.id not in shown:
                text += f"\n- #{a.id} {a.severity.value} {a.fingerprint}: {a.message} "
                text += f"[inhibited by {a.inhibited_by}]"
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
            if a.inhibited_by:
                notes.append(f"inhibited by {a.inhibited_by}")
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
        lines += [
            f"- #{a.id} {a.fingerprint}: "
            + ("resolved" if a.state is AlertState.RESOLVED else f"inhibited by {a.inhibited_by}")
            for a in alerts
        ]
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
