"""Reading incidents: assembling each one from its alerts, their history and the notes.

Every read first runs :func:`junction.incidents.grouping.sync` (a cheap check when nothing
is new), so an alert the monitor has just fired is in an incident on the next read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from junction.alerting import state as alert_state
from junction.alerting.model import Severity
from junction.alerting.state import iso, parse_ts
from junction.incidents import schema
from junction.incidents.grouping import Relations, pending, relations_for, sync
from junction.incidents.model import Incident, IncidentNotFoundError, TimelineEntry
from junction.settings import Settings, get_settings
from junction.statedb import Connection, Row

_RULE_WORDS = {
    "down": "down",
    "success_rate": "failing calls",
    "response_time": "slow responses",
    "health_score": "low health score",
    "burn_rate": "error budget burning",
}

# Order of entries that share a timestamp: what happened before what it caused.
_KIND_ORDER = {
    "firing": 0,
    "suppressed": 1,
    "status_page": 2,
    "severity": 3,
    "escalated": 4,
    "acknowledged": 5,
    "resolved": 6,
    "note": 7,
}


@dataclass
class Session:
    """An open alert database with the incidents' tables, synced, and its settings."""

    conn: Connection
    settings: Settings


Source = Settings | Connection | Session
"""Where incidents are read: settings (the alert database they name, through the process's
shared connection), an open alert-database connection (synced with the relations of
:func:`get_settings`) or a :class:`Session` already open and synced."""


@contextmanager
def session(
    source: Source, *, relations: Relations | None = None, synced: bool = True
) -> Iterator[Session]:
    """Open ``source`` and sync it: settings use the process's shared connection to the
    alert database they name (:func:`junction.incidents.schema.shared`), held by this
    thread until the block ends.

    Raises:
        AlertDatabaseError: The alert database is damaged or cannot be opened.
    """
    if isinstance(source, Session):
        yield source
        return
    if isinstance(source, Settings):
        with schema.shared(alert_state.db_path(source)) as conn:
            yield _synced(conn, source, relations, synced)
        return
    schema.migrate(source)  # an open connection (SQLite or PostgreSQL)
    yield _synced(source, get_settings(), relations, synced)


def _synced(
    conn: Connection, settings: Settings, relations: Relations | None, synced: bool
) -> Session:
    # Relations (the dependency map, co-failures) only when there is something to assign.
    if synced and pending(conn):
        now = datetime.now(UTC)
        chosen = relations if relations is not None else relations_for(settings, conn, now=now)
        gap = timedelta(seconds=settings.incident_group_window_seconds)
        sync(conn, chosen, gap=gap)
    return Session(conn, settings)


def list_incidents(
    source: Source,
    *,
    since: datetime | None = None,
    include_resolved: bool = True,
    relations: Relations | None = None,
) -> list[Incident]:
    """Incidents, newest first.

    Args:
        source: Settings or an open alert database.
        since: Only incidents open at or after this time (started, or resolved, since).
        include_resolved: Resolved incidents too (default); ``False``: open ones only.
        relations: Which services are related (default: from the settings, cached).

    Raises:
        AlertDatabaseError: The alert database is damaged or cannot be opened.
    """
    with session(source, relations=relations) as s:
        return read_incidents(s.conn, since=since, include_resolved=include_resolved)


def get_incident(
    source: Source, incident_id: str, *, relations: Relations | None = None
) -> Incident:
    """One incident with its timeline.

    Raises:
        IncidentNotFoundError: No incident has that id.
        AlertDatabaseError: The alert database is damaged or cannot be opened.
    """
    with session(source, relations=relations) as s:
        return read_incident(s.conn, incident_id)


def incident_ids(conn: Connection) -> list[str]:
    """Every incident id (for did-you-mean hints)."""
    return [str(r[0]) for r in conn.execute("SELECT id FROM incidents ORDER BY first_alert")]


def read_incident(conn: Connection, incident_id: str) -> Incident:
    """One incident from a synced database.

    Raises:
        IncidentNotFoundError: No incident has that id.
    """
    found = _build(conn, [incident_id])
    if not found:
        raise IncidentNotFoundError(f"no incident with id {incident_id!r}")
    return found[0]


def read_incidents(
    conn: Connection, *, since: datetime | None = None, include_resolved: bool = True
) -> list[Incident]:
    """Incidents of a synced database, newest first (see :func:`list_incidents`)."""
    ids = select_ids(conn, state=None if include_resolved else "open", since=since)
    return _build(conn, ids)


@dataclass(frozen=True)
class IncidentPage:
    """One page of incidents, newest first.

    Attributes:
        incidents: The page's incidents.
        total: How many match the filters (on every page).
        next_cursor: Where the next page starts (``None``: this is the last).
    """

    incidents: list[Incident]
    total: int
    next_cursor: str | None


def page_incidents(
    conn: Connection,
    *,
    state: str | None = None,
    service: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    cursor: str | None = None,
) -> IncidentPage:
    """One page of a synced database's incidents, newest first, and how many match.

    Only the page's incidents are assembled (filtering and counting are SQL). A page
    starts after ``cursor`` (a previous page's ``next_cursor``: incidents opened since
    do not shift it) and then skips ``offset`` more.

    Raises:
        ValueError: ``cursor`` is not one this function returned.
    """
    before = _cursor_alert(cursor) if cursor is not None else None
    rows = _select(conn, state=state, service=service, since=since)
    start = 0
    if before is not None:
        start = next((n for n, (_, first) in enumerate(rows) if first < before), len(rows))
    chosen = rows[start + offset : start + offset + limit]
    more = start + offset + limit < len(rows)
    return IncidentPage(
        _build(conn, [i for i, _ in chosen]),
        len(rows),
        f"a{chosen[-1][1]}" if chosen and more else None,
    )


def _cursor_alert(cursor: str) -> int:
    """The first alert id a cursor names (incidents are ordered by it, newest first)."""
    if cursor.isascii() and cursor[1:].isdigit() and cursor[0] == "a" and len(cursor) <= 20:
        return int(cursor[1:])
    raise ValueError(f"{cursor[:40]!r} is not a cursor from a previous page")


def select_ids(
    conn: Connection,
    *,
    state: str | None = None,
    service: str | None = None,
    since: datetime | None = None,
) -> list[str]:
    """Ids of the incidents matching, newest first (the filters of :func:`page_incidents`)."""
    return [i for i, _ in _select(conn, state=state, service=service, since=since)]


def _select(
    conn: Connection,
    *,
    state: str | None = None,
    service: str | None = None,
    since: datetime | None = None,
) -> list[tuple[str, int]]:
    """Ids and first alert ids of the incidents matching, newest first.

    Args:
        conn: A synced alert database.
        state: ``open`` or ``resolved`` (``None``: both).
        service: Only incidents with an alert of this service.
        since: Only incidents open at or after this time.
    """
    member = "SELECT 1 FROM incident_alerts ia JOIN alerts a ON a.id = ia.alert_id WHERE "
    member += "ia.incident_id = i.id AND "
    where: list[str] = []
    params: list[str] = []
    if state == "open":
        where.append(f"EXISTS ({member}a.state != 'resolved')")
    elif state == "resolved":
        where.append(f"NOT EXISTS ({member}a.state != 'resolved')")
    if service is not None:
        where.append(f"EXISTS ({member}a.service = ?)")
        params.append(service)
    if since is not None:
        # ISO-8601 UTC text compares in time order.
        where.append(
            f"EXISTS ({member}(a.state != 'resolved' OR a.resolved_at >= ? OR a.started_at >= ?))"
        )
        params += [iso(since), iso(since)]
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    query = f"SELECT i.id, i.first_alert FROM incidents i{clause} ORDER BY i.first_alert DESC"
    return [(str(r[0]), int(r[1])) for r in conn.execute(query, params)]


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


def _build(conn: Connection, ids: list[str]) -> list[Incident]:
    """Assemble the incidents ``ids`` (in that order; unknown ids are skipped)."""
    if not ids:
        return []
    out: list[Incident] = []
    # SQLite allows at most 32766 host parameters; incidents come in chunks.
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        out.extend(_build_chunk(conn, chunk))
    return out


def _build_chunk(conn: Connection, ids: list[str]) -> list[Incident]:
    marks = _placeholders(ids)
    heads = {
        r["id"]: r
        for r in conn.execute(f"SELECT * FROM incidents WHERE id IN ({marks})", ids).fetchall()
    }
    alerts: dict[str, list[Row]] = {}
    for r in conn.execute(
        f"SELECT ia.incident_id, a.* FROM incident_alerts ia JOIN alerts a ON a.id = ia.alert_id"
        f" WHERE ia.incident_id IN ({marks}) ORDER BY a.id",
        ids,
    ):
        alerts.setdefault(r["incident_id"], []).append(r)
    events: dict[str, list[Row]] = {}
    for r in conn.execute(
        f"SELECT * FROM incident_events WHERE incident_id IN ({marks}) ORDER BY ts, history_id",
        ids,
    ):
        events.setdefault(r["incident_id"], []).append(r)
    observed: dict[str, list[Row]] = {}
    for r in conn.execute(
        f"SELECT * FROM incident_observed WHERE incident_id IN ({marks}) ORDER BY ts", ids
    ):
        observed.setdefault(r["incident_id"], []).append(r)
    notes: dict[str, list[Row]] = {}
    for r in conn.execute(
        f"SELECT * FROM incident_notes WHERE incident_id IN ({marks}) ORDER BY id", ids
    ):
        notes.setdefault(r["incident_id"], []).append(r)
    out = []
    for incident_id in ids:
        head = heads.get(incident_id)
        members = alerts.get(incident_id, [])
        if head is None or not members:
            continue
        out.append(
            _incident(
                head,
                members,
                events.get(incident_id, []),
                observed.get(incident_id, []),
                notes.get(incident_id, []),
            )
        )
    return out


def _incident(
    head: Row,
    members: list[Row],
    events: list[Row],
    observed: list[Row],
    notes: list[Row],
) -> Incident:
    services = tuple(sorted({str(m["service"]) for m in members}))
    severities = {str(m["severity"]) for m in members} | {str(e["severity"]) for e in events}
    severity = Severity.CRITICAL.value if Severity.CRITICAL.value in severities else "warning"
    open_ = any(m["state"] != "resolved" for m in members)
    resolved_at = None
    if not open_:
        resolved_at = max(datetime.fromisoformat(m["resolved_at"]) for m in members)
    first = members[0]
    others = len(services) - 1
    title = f"{head['root_service']} {_RULE_WORDS.get(first['rule'], first['rule'])}" + (
        f" (+{others} related service{'s' if others > 1 else ''})" if others else ""
    )
    return Incident(
        id=str(head["id"]),
        title=title,
        services=services,
        root_service=str(head["root_service"]),
        severity=severity,
        state="open" if open_ else "resolved",
        started_at=datetime.fromisoformat(head["started_at"]),
        resolved_at=resolved_at,
        timeline=_timeline(members, events, observed, notes),
        alerts=tuple(int(m["id"]) for m in members),
    )


def _timeline(
    members: list[Row],
    events: list[Row],
    observed: list[Row],
    notes: list[Row],
) -> list[TimelineEntry]:
    entries: list[TimelineEntry] = []
    seen: dict[int, set[str]] = {}
    for e in events:
        kind, author = _event_kind(str(e["state"]), str(e["message"]), int(e["transition"]))
        seen.setdefault(int(e["alert_id"]), set()).add(kind)
        entries.append(
            TimelineEntry(
                ts=datetime.fromisoformat(e["ts"]),
                kind=kind,
                text=_event_text(kind, e),
                author=author,
                service=str(e["service"]),
            )
        )
    # History rows pruned before they were copied: the alert row still says when it
    # fired, was acknowledged and resolved.
    for m in members:
        kinds = seen.get(int(m["id"]), set())
        fingerprint = f"{m['service']}:{m['rule']}"
        synthetic = [
            ("firing", m["started_at"], f"{fingerprint} firing ({m['severity']})", None),
            ("acknowledged", m["acked_at"], f"{fingerprint} acknowledged", m["acked_by"]),
            ("resolved", m["resolved_at"], f"{fingerprint} resolved", None),
        ]
        for kind, ts, text, author in synthetic:
            if ts and kind not in kinds:
                when = parse_ts(ts)
                assert when is not None
                entries.append(TimelineEntry(when, kind, text, False, author, str(m["service"])))
    for o in observed:
        service = next((str(m["service"]) for m in members if m["id"] == o["alert_id"]), None)
        entries.append(
            TimelineEntry(
                ts=datetime.fromisoformat(o["ts"]),
                kind=str(o["kind"]),
                text=str(o["text"]),
                service=service,
            )
        )
    for n in notes:
        entries.append(
            TimelineEntry(
                ts=datetime.fromisoformat(n["ts"]),
                kind="note",
                text=str(n["text"]),
                public=bool(n["public"]),
                author=str(n["author"]),
            )
        )
    entries.sort(key=lambda e: (e.ts, _KIND_ORDER.get(e.kind, 9)))
    # A service's alerts (one per rule) share its suppression and vendor note: shown once.
    unique: list[TimelineEntry] = []
    shown: set[TimelineEntry] = set()
    for entry in entries:
        if entry.kind == "note" or entry not in shown:
            unique.append(entry)
            shown.add(entry)
    return unique


def _event_kind(state: str, message: str, transition: int) -> tuple[str, str | None]:
    """A history row's timeline kind (and the acknowledger)."""
    if state == "resolved":
        return "resolved", None
    if transition > 1 and message.startswith("severity "):
        return "severity", None
    if message.startswith("acknowledged by "):
        return "acknowledged", message.removeprefix("acknowledged by ")
    return "firing", None


def _event_text(kind: str, e: Row) -> str:
    fingerprint = f"{e['service']}:{e['rule']}"
    if kind == "firing":
        return f"{fingerprint} firing ({e['severity']}): {e['message']}"
    return f"{fingerprint} {e['message']}"
