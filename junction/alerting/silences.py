"""Silences created from the command line (``junction alerts silence``) or the API.

Rows of the ``silences`` table of the alert database (:mod:`junction.alerting.state`);
the engine applies the active ones at every evaluation, next to the configured
maintenance windows. A silence may start later than it is created (a scheduled
maintenance), and one marked ``public`` is shown, with its comment, as maintenance on the
status page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict, Unpack

from junction.alerting.rules import Matcher
from junction.alerting.state import iso, next_counter, parse_ts, transaction, utc
from junction.statedb import Connection, Row


@dataclass(frozen=True)
class Silence:
    """A silence created from the command line (or the API).

    Attributes:
        id: ``s<n>``.
        service: Service matcher (``None``: any).
        rule: Rule matcher (``None``: any).
        labels: Label matchers.
        starts_at: Start.
        ends_at: Expiry.
        created_by: Who.
        comment: Why.
        created_at: When created.
        deleted_at: When removed early (``unsilence``), if it was.
        public: Shown (with its comment) as maintenance on the public status page.
    """

    id: str
    service: str | None
    rule: str | None
    labels: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""
    created_at: datetime | None = None
    deleted_at: datetime | None = None
    public: bool = False

    @property
    def scheduled(self) -> bool:
        """Created to start later than its creation (a scheduled maintenance)."""
        return self.created_at is not None and self.starts_at > self.created_at

    def active(self, now: datetime) -> bool:
        """True from its start until it expires or is removed.

        ``starts_at`` is checked only for a :attr:`scheduled` silence: an ordinary one
        starts when it is created, and a wall clock that steps back must not make it look
        "not started yet" and let pages through.
        """
        if self.scheduled and now < self.starts_at:
            return False
        return self.deleted_at is None and now < self.ends_at

    def matches(self, service: str, rule: str, labels: Mapping[str, str]) -> bool:
        """True if an alert with these attributes is covered (as a maintenance window's)."""
        return Matcher(self.service, self.rule, self.labels).matches(service, rule, labels)

    @classmethod
    def from_row(cls, row: Row) -> Silence:
        """Build from a ``silences`` row."""
        return cls(
            id=row["id"],
            service=row["service"],
            rule=row["rule"],
            labels=json.loads(row["labels_json"]),
            starts_at=datetime.fromisoformat(row["starts_at"]),
            ends_at=datetime.fromisoformat(row["ends_at"]),
            created_by=row["created_by"],
            comment=row["comment"],
            created_at=parse_ts(row["created_at"]),
            deleted_at=parse_ts(row["deleted_at"]),
            public=bool(row["public"]),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "id": self.id,
            "service": self.service,
            "rule": self.rule,
            "labels": dict(self.labels),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "created_by": self.created_by,
            "comment": self.comment,
            "public": self.public,
        }


class SilenceFields(TypedDict, total=False):
    """A silence's matchers and record besides its start and duration: the keyword
    arguments of :func:`add_silence` and :func:`junction.alerting.actions.create_silence`.

    Attributes:
        service: Service matcher.
        rule: Rule matcher.
        labels: Label matchers.
        created_by: Who.
        comment: Why (shown on the status page when ``public``).
        starts_at: A later start (a scheduled maintenance); earlier means ``now``.
        public: Show it as maintenance on the public status page.
    """

    service: str | None
    rule: str | None
    labels: Mapping[str, str] | None
    created_by: str
    comment: str
    starts_at: datetime | None
    public: bool


def add_silence(
    conn: Connection,
    *,
    now: datetime,
    duration: timedelta,
    **fields: Unpack[SilenceFields],
) -> Silence:
    """Create a silence from ``now`` (or from a later ``starts_at``) for ``duration``.

    Args:
        conn: The alert database.
        now: Creation time.
        duration: How long it lasts from its start.
        **fields: Its matchers and record (:class:`SilenceFields`; none given: empty).

    Raises:
        ValueError: No matcher at all (it would silence everything) or a non-positive
            duration.
    """
    service, rule = fields.get("service"), fields.get("rule")
    labels = dict(fields.get("labels") or {})
    created_by, comment = fields.get("created_by", ""), fields.get("comment", "")
    starts_at, public = fields.get("starts_at"), fields.get("public", False)
    if service is None and rule is None and not labels:
        raise ValueError(
            "a silence needs --service, --rule or --label (it would silence everything)"
        )
    if duration <= timedelta(0):
        raise ValueError("a silence needs a positive duration")
    now = utc(now)
    start = max(now, utc(starts_at)) if starts_at is not None else now
    with transaction(conn):
        sid = f"s{next_counter(conn, 'silence')}"
        silence = Silence(
            sid,
            service,
            rule,
            labels,
            start,
            start + duration,
            created_by,
            comment,
            now,
            public=public,
        )
        conn.execute(
            "INSERT INTO silences (id, service, rule, labels_json, starts_at, ends_at, "
            "created_by, comment, created_at, public) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                service,
                rule,
                json.dumps(labels, sort_keys=True),
                iso(silence.starts_at),
                iso(silence.ends_at),
                created_by,
                comment,
                iso(now),
                int(public),
            ),
        )
    return silence


def list_silences(
    conn: Connection, now: datetime, *, include_expired: bool = False
) -> list[Silence]:
    """Silences active at ``now`` (or every one with ``include_expired``)."""
    rows = conn.execute("SELECT * FROM silences ORDER BY created_at, id").fetchall()
    silences = [Silence.from_row(r) for r in rows]
    if include_expired:
        return silences
    at = utc(now)
    return [s for s in silences if s.deleted_at is None and at < s.ends_at]


def remove_silence(conn: Connection, sid: str, now: datetime) -> Silence:
    """End silence ``sid`` now.

    Raises:
        LookupError: No such silence.
    """
    with transaction(conn):
        row = conn.execute("SELECT * FROM silences WHERE id = ?", (sid,)).fetchone()
        if row is None:
            raise LookupError(f"no silence with id {sid!r}")
        conn.execute("UPDATE silences SET deleted_at = ? WHERE id = ?", (iso(utc(now)), sid))
        row = conn.execute("SELECT * FROM silences WHERE id = ?", (sid,)).fetchone()
    return Silence.from_row(row)
