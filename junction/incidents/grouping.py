"""Which alerts belong together, and assigning new alerts to incidents.

Two services are *related* when

* the alert engine put their alerts in one group (``alerts.group_key``: one root cause),
* one depends on the other, directly or not: the alerting file's ``dependencies:`` and
  the dependency map's service edges (:meth:`DependencyMap.service_dependencies`), or
* they are in one co-failure group (:meth:`DependencyMap.cofailure_groups`, from the
  metrics store's recent calls and probes).

:func:`sync` reads the alerts and alert history written since its last run (cursors in
``meta``) and, in one ``BEGIN IMMEDIATE`` transaction, puts each new alert (in id order)
into the first incident that was open, or had activity within the group window, when the
alert fired and holds a related alert; otherwise the alert opens a new incident whose id
is derived from it. Assignments are never revised: a later change of the dependencies or
the co-failures does not move alerts between incidents, so ids and notes stay put.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from junction.alerting import state as alert_state
from junction.alerting.config import load_settings_config
from junction.alerting.state import iso, parse_ts
from junction.statedb import Connection, Row
from junction.workflows.depmap import WORKFLOW_PREFIX, build_map

if TYPE_CHECKING:
    from junction.settings import Settings
    from junction.store import MetricsStore

log = logging.getLogger(__name__)

COFAILURE_LOOKBACK = timedelta(days=7)
"""History the co-failure groups are computed from."""

RELATIONS_TTL_SECONDS = 300.0
"""How long :func:`relations_for` reuses what it computed (co-failures scan the store)."""

ALERT_CURSOR = "incidents:alert"
HISTORY_CURSOR = "incidents:history"
OUTBOX_CURSOR = "incidents:outbox"
COFAILURE_KEY = "incidents:cofailures"

_ESCALATION_LEVEL = re.compile(r"\[escalation level (\d+)\]")


@dataclass(frozen=True)
class Relations:
    """Which services are related (see the module docstring).

    Attributes:
        dependencies: Service -> the services it depends on directly.
        cofailure_groups: Sets of services that fail together.
    """

    dependencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    cofailure_groups: tuple[frozenset[str], ...] = ()

    def upstream(self, service: str) -> set[str]:
        """Every service ``service`` depends on, directly or not."""
        seen: set[str] = set()
        todo = list(self.dependencies.get(service, ()))
        while todo:
            current = todo.pop()
            if current in seen or current == service:
                continue
            seen.add(current)
            todo.extend(self.dependencies.get(current, ()))
        return seen

    def related(self, a: str, b: str) -> bool:
        """Whether alerts of ``a`` and ``b`` may be one incident."""
        if a == b or b in self.upstream(a) or a in self.upstream(b):
            return True
        return any(a in group and b in group for group in self.cofailure_groups)

    @classmethod
    def build(
        cls,
        dependencies: Iterable[Mapping[str, Iterable[str]]] = (),
        cofailure_groups: Iterable[Iterable[str]] = (),
    ) -> Relations:
        """Merge dependency mappings (service -> what it needs) and co-failure groups."""
        merged: dict[str, set[str]] = {}
        for mapping in dependencies:
            for service, needs in mapping.items():
                if service.startswith(WORKFLOW_PREFIX):
                    continue
                merged.setdefault(service, set()).update(n for n in needs if n != service)
        return cls(
            dependencies={k: frozenset(v) for k, v in merged.items() if v},
            cofailure_groups=tuple(frozenset(g) for g in cofailure_groups),
        )


def load_relations(
    settings: Settings, store: MetricsStore | None = None, *, now: datetime
) -> Relations:
    """The relations the settings describe: the alerting file's dependencies, the built-in
    workflows' dependency map and, with a store, the co-failures of the last week.

    An invalid alerting file is logged and left out (the monitor reports it); incidents
    then group by the dependency map alone.
    """
    mappings: list[Mapping[str, Iterable[str]]] = []
    try:
        mappings.append(load_settings_config(settings).dependencies)
    except ValueError as exc:
        log.warning("incidents group without the alerting file's dependencies: %s", exc)
    depmap = build_map(store=store, since=now - COFAILURE_LOOKBACK)
    mappings.append(depmap.service_dependencies())
    return Relations.build(mappings, depmap.cofailure_groups())


_CACHE: dict[tuple[str, ...], tuple[float, Relations]] = {}
_CACHE_LOCK = threading.Lock()


def relations_for(
    settings: Settings, conn: Connection | None = None, *, now: datetime
) -> Relations:
    """:func:`load_relations` with the metrics store, reused for
    :data:`RELATIONS_TTL_SECONDS` per configuration.

    With ``conn`` (the alert database) the co-failure groups are shared between
    processes through ``meta`` (``incidents:cofailures``): a command-line run reuses what
    the service computed a minute ago instead of scanning the store (and loading pandas)
    again, and every process groups by the same relations. Once computed in a process,
    stale relations are served while a background thread recomputes them, so no request
    waits for the store scan (seconds over millions of rows) more than once.
    """
    key = (str(settings.metrics_dir), str(settings.alerting_file), str(settings.home))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            if time.monotonic() - cached[0] >= RELATIONS_TTL_SECONDS and key not in _REFRESHING:
                _REFRESHING.add(key)
                threading.Thread(
                    target=_refresh, args=(settings, key), name="incident-relations", daemon=True
                ).start()
            return cached[1]
    relations = _compute(settings, conn, now)
    with _CACHE_LOCK:
        _CACHE[key] = (time.monotonic(), relations)
    return relations


_REFRESHING: set[tuple[str, ...]] = set()


def _refresh(settings: Settings, key: tuple[str, ...]) -> None:
    """Recompute cached relations (a background thread of :func:`relations_for`)."""
    try:
        conn = alert_state.connect(alert_state.db_path(settings))
        try:
            relations = _compute(settings, conn, datetime.now(UTC))
        finally:
            conn.close()
        with _CACHE_LOCK:
            _CACHE[key] = (time.monotonic(), relations)
    except Exception:  # the stale relations stay; the next read after the TTL retries
        log.exception("recomputing the incidents' relations failed")
    finally:
        with _CACHE_LOCK:
            _REFRESHING.discard(key)


def _compute(settings: Settings, conn: Connection | None, now: datetime) -> Relations:
    """Relations from the shared co-failures when fresh, else from the store (shared after)."""
    shared = _shared_cofailures(conn, now) if conn is not None else None
    if shared is not None:
        relations = load_relations(settings, None, now=now)
        return Relations(relations.dependencies, shared)
    # Function-level: pyarrow, DuckDB and pandas load only when co-failures are computed.
    from junction.store import open_store

    store = open_store(settings)
    try:
        relations = load_relations(settings, store, now=now)
    finally:
        store.close()
    if conn is not None:
        groups = [sorted(g) for g in relations.cofailure_groups]
        with alert_state.transaction(conn):
            alert_state.meta_set(
                conn, COFAILURE_KEY, json.dumps({"at": now.timestamp(), "groups": groups})
            )
    return relations


def _shared_cofailures(conn: Connection, now: datetime) -> tuple[frozenset[str], ...] | None:
    """Co-failure groups another process stored less than the TTL ago, if any."""
    raw = alert_state.meta_get(conn, COFAILURE_KEY)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        age = now.timestamp() - float(data["at"])
        groups = tuple(frozenset(str(s) for s in g) for g in data["groups"])
    except (ValueError, KeyError, TypeError):
        return None
    return groups if 0 <= age < RELATIONS_TTL_SECONDS else None


def clear_relations_cache() -> None:
    """Forget the relations :func:`relations_for` computed."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --- assignment ---------------------------------------------------------------------------------


@dataclass
class _Member:
    alert_id: int
    service: str
    group_key: str
    started_at: datetime
    resolved_at: datetime | None


@dataclass
class _Open:
    """An incident that may still take alerts."""

    id: str
    members: list[_Member]

    def joinable(self, at: datetime, gap: timedelta) -> bool:
        """Open at ``at``, or active within ``gap`` before it."""
        earlier = [m for m in self.members if m.started_at <= at]
        if not earlier:
            return False
        if any(m.resolved_at is None or m.resolved_at > at for m in earlier):
            return True
        last = max(max(m.started_at, m.resolved_at or m.started_at) for m in earlier)
        return at - last <= gap

    def finished(self, at: datetime, gap: timedelta) -> bool:
        """Every alert resolved more than ``gap`` before ``at``: later alerts cannot join."""
        return all(m.resolved_at is not None and at - m.resolved_at > gap for m in self.members)


def incident_id_for(instance: str, alert_id: int) -> str:
    """The id of the incident whose first alert is ``alert_id``."""
    return f"{instance}-i{alert_id}"


def _cursor(conn: Connection, key: str) -> int:
    return int(alert_state.meta_get(conn, key) or 0)


def pending(conn: Connection) -> bool:
    """Whether alerts, history or escalations were written since the last :func:`sync`,
    or an unresolved alert shows a vendor note or a suppression not recorded yet."""
    top = conn.execute(
        "SELECT (SELECT coalesce(max(id), 0) FROM alerts), "
        "(SELECT coalesce(max(seq), 0) FROM history), "
        "(SELECT coalesce(max(seq), 0) FROM outbox)"
    ).fetchone()
    if (
        top[0] > _cursor(conn, ALERT_CURSOR)
        or top[1] > _cursor(conn, HISTORY_CURSOR)
        or top[2] > _cursor(conn, OUTBOX_CURSOR)
    ):
        return True
    return bool(_unrecorded_marks(conn))


def sync(conn: Connection, relations: Relations, *, gap: timedelta) -> int:
    """Assign new alerts to incidents and copy what the timelines need (idempotent).

    Args:
        conn: The alert database, with the incidents' tables.
        relations: Which services are related.
        gap: How long after its last activity a resolved incident still takes alerts.

    Returns:
        Alerts assigned by this call (0 when another process did it first).
    """
    if not pending(conn):
        return 0
    with alert_state.transaction(conn):
        assigned = _assign(conn, relations, gap)
        _copy_history(conn)
        _copy_escalations(conn)
        for incident_id, alert_id, kind, text, ts in _unrecorded_marks(conn):
            _observe(conn, incident_id, alert_id, kind, text, ts)
    return assigned


def _observe(
    conn: Connection, incident_id: str, alert_id: int, kind: str, text: str, ts: str
) -> None:
    conn.execute(
        "INSERT INTO incident_observed (incident_id, alert_id, kind, text, ts)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (incident_id, alert_id, kind, text, ts),
    )


def _marks(row: Row) -> list[tuple[str, str]]:
    """The vendor note and the suppression an ``alerts`` row shows, as (kind, text)."""
    marks = []
    if row["annotation"]:
        marks.append(("status_page", str(row["annotation"])))
    if row["suppressed_by"]:
        marks.append(
            (
                "suppressed",
                f"{row['service']} suppressed: it depends on failing {row['suppressed_by']}",
            )
        )
    return marks


def _assign(conn: Connection, relations: Relations, gap: timedelta) -> int:
    cursor = _cursor(conn, ALERT_CURSOR)
    new = conn.execute(
        "SELECT id, service, group_key, started_at, resolved_at, suppressed_by, annotation "
        "FROM alerts WHERE id > ? ORDER BY id",
        (cursor,),
    ).fetchall()
    if not new:
        return 0
    instance = alert_state.instance_id(conn)
    earliest = min(datetime.fromisoformat(r["started_at"]) for r in new)
    candidates = _candidates(conn, earliest - gap)
    for row in new:
        member = _Member(
            alert_id=int(row["id"]),
            service=row["service"],
            group_key=row["group_key"],
            started_at=datetime.fromisoformat(row["started_at"]),
            resolved_at=parse_ts(row["resolved_at"]),
        )
        # Alerts come in time order: an incident finished by now stays finished, and
        # dropping it keeps a first sync over a long history linear, not quadratic.
        candidates = [c for c in candidates if not c.finished(member.started_at, gap)]
        chosen = _choose(candidates, member, relations, gap)
        if chosen is None:
            chosen = _Open(incident_id_for(instance, member.alert_id), [])
            candidates.append(chosen)
            conn.execute(
                "INSERT INTO incidents (id, first_alert, root_service, started_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (chosen.id, member.alert_id, member.service, iso(member.started_at)),
            )
        chosen.members.append(member)
        conn.execute(
            "INSERT INTO incident_alerts (alert_id, incident_id) VALUES (?, ?) "
            "ON CONFLICT DO NOTHING",
            (member.alert_id, chosen.id),
        )
        # What the row shows now, as of its start: an alert that resolved before this
        # sync is not looked at again (unresolved ones are, by _unrecorded_marks).
        for kind, text in _marks(row):
            _observe(conn, chosen.id, member.alert_id, kind, text, row["started_at"])
    alert_state.meta_set(conn, ALERT_CURSOR, str(max(int(r["id"]) for r in new)))
    return len(new)


def _candidates(conn: Connection, since: datetime) -> list[_Open]:
    """Incidents with an alert unresolved, or started or resolved after ``since``."""
    rows = conn.execute(
        """
        SELECT ia.incident_id, a.id, a.service, a.group_key, a.started_at, a.resolved_at
        FROM incident_alerts ia JOIN alerts a ON a.id = ia.alert_id
        WHERE ia.incident_id IN (
            SELECT ia2.incident_id FROM incident_alerts ia2 JOIN alerts a2 ON a2.id = ia2.alert_id
            WHERE a2.resolved_at IS NULL OR a2.resolved_at >= ? OR a2.started_at >= ?)
        ORDER BY ia.incident_id, a.id
        """,
        (iso(since), iso(since)),
    ).fetchall()
    found: dict[str, _Open] = {}
    for r in rows:
        found.setdefault(r["incident_id"], _Open(r["incident_id"], [])).members.append(
            _Member(
                int(r["id"]),
                r["service"],
                r["group_key"],
                datetime.fromisoformat(r["started_at"]),
                parse_ts(r["resolved_at"]),
            )
        )
    return sorted(found.values(), key=lambda o: min(m.alert_id for m in o.members))


def _choose(
    candidates: list[_Open], member: _Member, relations: Relations, gap: timedelta
) -> _Open | None:
    """The incident ``member`` joins: the engine's group first, then the oldest related."""
    joinable = [c for c in candidates if c.joinable(member.started_at, gap)]
    for incident in joinable:
        if any(m.group_key == member.group_key for m in incident.members):
            return incident
    for incident in joinable:
        if any(relations.related(member.service, m.service) for m in incident.members):
            return incident
    return None


def _history_ref(history_id: str) -> tuple[int, int] | None:
    """``(alert id, transition number)`` of a history id ``<instance>-<alert>-<n>``."""
    parts = history_id.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[1]), int(parts[2])


def _owners(conn: Connection, alert_ids: list[int]) -> dict[int, str]:
    """Alert id -> incident id, for ``alert_ids``."""
    owners: dict[int, str] = {}
    for start in range(0, len(alert_ids), 500):
        chunk = alert_ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        query = f"SELECT alert_id, incident_id FROM incident_alerts WHERE alert_id IN ({marks})"
        for r in conn.execute(query, chunk):
            owners[int(r["alert_id"])] = r["incident_id"]
    return owners


def _copy_history(conn: Connection) -> None:
    """Copy new history rows of assigned alerts into ``incident_events``."""
    cursor = _cursor(conn, HISTORY_CURSOR)
    rows = conn.execute("SELECT * FROM history WHERE seq > ? ORDER BY seq", (cursor,)).fetchall()
    if not rows:
        return
    refs = {str(r["id"]): _history_ref(str(r["id"])) for r in rows}
    owners = _owners(conn, sorted({ref[0] for ref in refs.values() if ref is not None}))
    for r in rows:
        ref = refs[str(r["id"])]
        incident_id = owners.get(ref[0]) if ref is not None else None
        if ref is None or incident_id is None:
            continue
        conn.execute(
            "INSERT INTO incident_events (history_id, incident_id, alert_id, "
            "transition, ts, state, severity, service, rule, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                r["id"],
                incident_id,
                ref[0],
                ref[1],
                r["ts"],
                r["state"],
                r["severity"],
                r["service"],
                r["rule"],
                r["message"],
            ),
        )
    alert_state.meta_set(conn, HISTORY_CURSOR, str(max(int(r["seq"]) for r in rows)))


def _copy_escalations(conn: Connection) -> None:
    """Record escalation notifications (one line per group and level) as observed marks."""
    cursor = _cursor(conn, OUTBOX_CURSOR)
    rows = conn.execute(
        "SELECT seq, key, channel, group_key, payload_json, created_at FROM outbox "
        "WHERE seq > ? ORDER BY seq",
        (cursor,),
    ).fetchall()
    if not rows:
        return
    # Keys are "<group>:escalation:<n>:<channel>"; one evaluation queues every channel
    # of a level in one transaction, so a level's rows arrive together.
    levels: dict[str, list[Row]] = {}
    for r in rows:
        if ":escalation:" in r["key"]:
            levels.setdefault(r["key"].rsplit(":", 1)[0], []).append(r)
    for batch in levels.values():
        first = batch[0]
        owner = conn.execute(
            "SELECT ia.incident_id, a.id FROM alerts a JOIN incident_alerts ia "
            "ON ia.alert_id = a.id WHERE a.group_key = ? ORDER BY a.id LIMIT 1",
            (first["group_key"],),
        ).fetchone()
        if owner is None:
            continue
        try:
            title = str(json.loads(first["payload_json"]).get("title", ""))
        except (ValueError, AttributeError):
            title = ""
        found = _ESCALATION_LEVEL.search(title)
        level = f"level {found.group(1)}" if found else "the next level"
        channels = ", ".join(sorted({str(r["channel"]) for r in batch}))
        conn.execute(
            "INSERT INTO incident_observed (incident_id, alert_id, kind, text, ts) "
            "VALUES (?, ?, 'escalated', ?, ?) ON CONFLICT DO NOTHING",
            (
                owner["incident_id"],
                owner["id"],
                f"escalated to {level}: {channels}",
                first["created_at"],
            ),
        )
    alert_state.meta_set(conn, OUTBOX_CURSOR, str(max(int(r["seq"]) for r in rows)))


def _unrecorded_marks(conn: Connection) -> list[tuple[str, int, str, str, str]]:
    """Vendor notes and suppressions shown by unresolved alerts, not recorded yet.

    Returns:
        ``(incident_id, alert_id, kind, text, ts)`` rows to insert.
    """
    rows = conn.execute(
        """
        SELECT ia.incident_id, a.id, a.service, a.annotation, a.suppressed_by, a.started_at,
               a.updated_at
        FROM alerts a JOIN incident_alerts ia ON ia.alert_id = a.id
        WHERE a.state != 'resolved' AND (a.annotation IS NOT NULL OR a.suppressed_by IS NOT NULL)
        """
    ).fetchall()
    if not rows:
        return []
    seen = {
        (r["incident_id"], int(r["alert_id"]), r["kind"], r["text"])
        for r in conn.execute(
            "SELECT incident_id, alert_id, kind, text FROM incident_observed "
            "WHERE kind IN ('status_page', 'suppressed') AND incident_id IN "
            "(SELECT DISTINCT ia.incident_id FROM alerts a JOIN incident_alerts ia "
            "ON ia.alert_id = a.id WHERE a.state != 'resolved')"
        )
    }
    out: list[tuple[str, int, str, str, str]] = []
    for r in rows:
        for kind, text in _marks(r):
            if (r["incident_id"], int(r["id"]), kind, text) not in seen:
                ts = r["started_at"] if kind == "suppressed" else r["updated_at"]
                out.append((r["incident_id"], int(r["id"]), kind, text, ts))
    return out
