"""Alerts as rows of the alert database: one per fingerprint episode, firing to resolved.

:func:`record_transition` appends each change to the ``history`` table that
:func:`junction.alerting.state.export_history` mirrors to the metrics store;
:func:`acknowledge` is what ``junction alerts ack`` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from junction.alerting.model import AlertState, Severity
from junction.alerting.state import instance_id, iso, parse_ts, transaction, utc
from junction.statedb import Connection, Row


@dataclass
class Alert:
    """One alert (one fingerprint's episode from firing to resolved).

    Attributes:
        id: Numeric id (``junction alerts ack 12``).
        fingerprint: ``<service>:<rule>``.
        service: The service.
        rule: The rule.
        severity: Current severity.
        state: firing, acknowledged or resolved.
        group_key: The notification group it belongs to.
        suppressed_by: The upstream service whose outage this alert is part of, if any.
        silenced_by: Id of the silence or maintenance window covering it, if any.
        inhibited_by: Fingerprint of the alert whose cause this one is a symptom of (an
            inhibition rule, :mod:`junction.alerting.inhibition`); it sends nothing itself.
        message: What is wrong ("success rate 0.120 < 0.9").
        value: The measured value.
        labels: Labels (service, rule, severity and configured ones).
        annotation: Vendor status note ("GitLab reports: degraded"), if any.
        started_at: First fired.
        updated_at: Last change.
        acked_at: When acknowledged.
        acked_by: Who acknowledged it.
        resolved_at: When resolved.
        transitions: Transitions recorded in the history so far.
        clear_s: Engine seconds its rule has been fine while still unresolved
            (``resolve_after``).
    """

    id: int
    fingerprint: str
    service: str
    rule: str
    severity: Severity
    state: AlertState
    group_key: str
    message: str
    started_at: datetime
    updated_at: datetime
    suppressed_by: str | None = None
    silenced_by: str | None = None
    value: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotation: str | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    resolved_at: datetime | None = None
    transitions: int = 0
    clear_s: float = 0.0
    inhibited_by: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> Alert:
        """Build from an ``alerts`` row."""
        return cls(
            id=int(row["id"]),
            fingerprint=row["fingerprint"],
            service=row["service"],
            rule=row["rule"],
            severity=Severity(row["severity"]),
            state=AlertState(row["state"]),
            group_key=row["group_key"],
            message=row["message"],
            started_at=datetime.fromisoformat(row["started_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            suppressed_by=row["suppressed_by"],
            silenced_by=row["silenced_by"],
            value=row["value"],
            labels=json.loads(row["labels_json"]),
            annotation=row["annotation"],
            acked_at=parse_ts(row["acked_at"]),
            acked_by=row["acked_by"],
            resolved_at=parse_ts(row["resolved_at"]),
            transitions=int(row["transitions"]),
            clear_s=float(row["clear_s"]),
            inhibited_by=row["inhibited_by"],
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``junction alerts list --json``)."""
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "service": self.service,
            "rule": self.rule,
            "severity": self.severity.value,
            "state": self.state.value,
            "group": self.group_key,
            "suppressed_by": self.suppressed_by,
            "silenced_by": self.silenced_by,
            "inhibited_by": self.inhibited_by,
            "message": self.message,
            "value": self.value,
            "labels": self.labels,
            "annotation": self.annotation,
            "started_at": iso(self.started_at),
            "updated_at": iso(self.updated_at),
            "acked_at": iso(self.acked_at) if self.acked_at else None,
            "acked_by": self.acked_by,
            "resolved_at": iso(self.resolved_at) if self.resolved_at else None,
        }


def save_alert(conn: Connection, alert: Alert) -> None:
    """Insert or update ``alert`` (inside the caller's transaction)."""
    conn.execute(
        """
        INSERT INTO alerts (id, fingerprint, service, rule, severity, state, group_key,
            suppressed_by, silenced_by, message, value, labels_json, annotation, started_at,
            updated_at, acked_at, acked_by, resolved_at, transitions, clear_s, inhibited_by)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            severity = excluded.severity, state = excluded.state,
            group_key = excluded.group_key, suppressed_by = excluded.suppressed_by,
            silenced_by = excluded.silenced_by, message = excluded.message,
            value = excluded.value, labels_json = excluded.labels_json,
            annotation = excluded.annotation, updated_at = excluded.updated_at,
            acked_at = excluded.acked_at, acked_by = excluded.acked_by,
            resolved_at = excluded.resolved_at, transitions = excluded.transitions,
            clear_s = excluded.clear_s, inhibited_by = excluded.inhibited_by
        """,
        (
            alert.id,
            alert.fingerprint,
            alert.service,
            alert.rule,
            alert.severity.value,
            alert.state.value,
            alert.group_key,
            alert.suppressed_by,
            alert.silenced_by,
            alert.message,
            alert.value,
            json.dumps(alert.labels, sort_keys=True),
            alert.annotation,
            iso(alert.started_at),
            iso(alert.updated_at),
            iso(alert.acked_at) if alert.acked_at else None,
            alert.acked_by,
            iso(alert.resolved_at) if alert.resolved_at else None,
            alert.transitions,
            alert.clear_s,
            alert.inhibited_by,
        ),
    )


def record_transition(
    conn: Connection, alert: Alert, ts: datetime, state: str, message: str
) -> str:
    """Append a history row for ``alert`` (and bump its transition count; save it after).

    Returns:
        The row's deterministic id.
    """
    alert.transitions += 1
    row_id = f"{instance_id(conn)}-{alert.id}-{alert.transitions}"
    conn.execute(
        """
        INSERT INTO history (id, ts, fingerprint, service, rule, severity, state,
            message, labels_json)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT DO NOTHING
        """,
        (
            row_id,
            iso(ts),
            alert.fingerprint,
            alert.service,
            alert.rule,
            alert.severity.value,
            state,
            message,
            json.dumps(alert.labels, sort_keys=True),
        ),
    )
    return row_id


def active_alerts(conn: Connection) -> list[Alert]:
    """Unresolved alerts, oldest first."""
    rows = conn.execute("SELECT * FROM alerts WHERE state != 'resolved' ORDER BY id").fetchall()
    return [Alert.from_row(r) for r in rows]


def list_alerts(conn: Connection, *, include_resolved: bool = False) -> list[Alert]:
    """Alerts for display: unresolved ones, or every alert with ``include_resolved``."""
    if include_resolved:
        rows = conn.execute("SELECT * FROM alerts ORDER BY id").fetchall()
        return [Alert.from_row(r) for r in rows]
    return active_alerts(conn)


def page_alerts(
    conn: Connection, *, include_resolved: bool, after_id: int, limit: int
) -> tuple[list[Alert], int | None]:
    """One page of :func:`list_alerts` (oldest first): the alerts after ``after_id``, at
    most ``limit``, and the id to continue after (``None``: this is the last page)."""
    where = "id > ?" if include_resolved else "id > ? AND state != 'resolved'"
    rows = conn.execute(
        f"SELECT * FROM alerts WHERE {where} ORDER BY id LIMIT ?", (after_id, limit + 1)
    ).fetchall()
    alerts = [Alert.from_row(r) for r in rows[:limit]]
    return alerts, (alerts[-1].id if len(rows) > limit else None)


def find_alert(conn: Connection, ref: str) -> Alert | None:
    """The alert ``ref`` names: a numeric id, or a fingerprint (its unresolved alert)."""
    ref = ref.strip()
    if ref.isdigit():
        row = conn.execute("SELECT * FROM alerts WHERE id = ?", (int(ref),)).fetchone()
    else:
        row = conn.execute(
            "SELECT * FROM alerts WHERE fingerprint = ? ORDER BY (state = 'resolved'), id DESC "
            "LIMIT 1",
            (ref,),
        ).fetchone()
    return None if row is None else Alert.from_row(row)


class AlertNotFoundError(LookupError):
    """No alert matches the reference given."""


class AlertResolvedError(ValueError):
    """The alert is already resolved."""


def acknowledge(conn: Connection, ref: str, by: str, now: datetime) -> list[Alert]:
    """Acknowledge an alert and the rest of its incident (every firing alert of its group).

    One acknowledgement stops the incident's escalation and repeats: the storm behind a
    failing dependency is one group, and nobody should have to ack 22 alerts. An alert that
    joins the group later starts unacknowledged. Acknowledging an acknowledged alert
    changes nothing.

    Returns:
        The alert ``ref`` names first, then the others acknowledged with it.

    Raises:
        AlertNotFoundError: No alert with that id or fingerprint.
        AlertResolvedError: It is resolved already.
    """
    now = utc(now)
    with transaction(conn):
        alert = find_alert(conn, ref)
        if alert is None:
            raise AlertNotFoundError(f"no alert with id or fingerprint {ref!r}")
        if alert.state is AlertState.RESOLVED:
            raise AlertResolvedError(f"alert {alert.id} ({alert.fingerprint}) is already resolved")
        group = [
            Alert.from_row(r)
            for r in conn.execute(
                "SELECT * FROM alerts WHERE group_key = ? AND state = 'firing' AND id != ? "
                "ORDER BY id",
                (alert.group_key, alert.id),
            )
        ]
        done = [alert]
        for target in [alert, *group]:
            if target.state is not AlertState.FIRING:
                continue
            target.state = AlertState.ACKNOWLEDGED
            target.acked_at = now
            target.acked_by = by
            target.updated_at = max(now, target.started_at)
            record_transition(conn, target, now, "acknowledged", f"acknowledged by {by}")
            save_alert(conn, target)
            if target is not alert:
                done.append(target)
    return done
