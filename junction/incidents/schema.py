"""The incidents' tables in the alert database, and opening them.

The tables live beside the alert state (``<home>/alerts.db``, :mod:`junction.alerting.state`)
so that assigning new alerts to incidents reads the alerts and writes the assignment in
one transaction (SQLite: WAL, 30 s busy timeout, ``BEGIN IMMEDIATE``; PostgreSQL when
``JUNCTION_STATE_URL`` is set: the same tables, the writer advisory lock)::

    incidents           id, first_alert, root_service, started_at
    incident_alerts     alert_id (primary key: an alert is in exactly one incident),
                        incident_id
    incident_events     history_id (primary key), incident_id, alert_id, ts, state,
                        severity, service, rule, message   -- copies of the alert history
                        (``history`` rows are pruned after a week; these are not)
    incident_observed   incident_id, alert_id, kind, text, ts   -- what the alert rows
                        showed when read: vendor status notes, dependency suppression,
                        escalations (the alert rows keep only the latest value)
    incident_notes      id, incident_id, ts, author, text, public
    incident_postmortems incident_id, generated, generated_for, text, revision,
                        generated_at, updated_at, updated_by

Cursors (``meta`` keys ``incidents:alert``, ``incidents:history``, ``incidents:outbox``)
record how far the alert tables have been read. ``junction alerts reset`` moves these
tables aside with the rest of the alert database.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from junction import statedb
from junction.alerting import state as alert_state
from junction.statedb import Connection, StateUrl

INCIDENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    first_alert INTEGER NOT NULL UNIQUE,
    root_service TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incident_alerts (
    alert_id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_alerts_incident ON incident_alerts (incident_id);
CREATE TABLE IF NOT EXISTS incident_events (
    history_id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    alert_id INTEGER NOT NULL,
    transition INTEGER NOT NULL,
    ts TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    service TEXT NOT NULL,
    rule TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_events_incident ON incident_events (incident_id);
CREATE TABLE IF NOT EXISTS incident_observed (
    incident_id TEXT NOT NULL,
    alert_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    ts TEXT NOT NULL,
    PRIMARY KEY (incident_id, alert_id, kind, text)
);
CREATE TABLE IF NOT EXISTS incident_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    public INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS incident_notes_incident ON incident_notes (incident_id);
CREATE TABLE IF NOT EXISTS incident_postmortems (
    incident_id TEXT PRIMARY KEY,
    generated TEXT NOT NULL,
    generated_for TEXT NOT NULL,
    text TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0,
    generated_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT
)
"""

_LAST_TABLE = "incident_postmortems"


def migrate(conn: Connection) -> None:
    """Create the incidents' tables in an open alert database (idempotent).

    A database that has them already costs one read; otherwise they are created in one
    ``BEGIN IMMEDIATE`` transaction, so two processes migrating at once do not collide.
    """
    if _has_tables(conn):
        return
    with alert_state.transaction(conn):
        for statement in INCIDENT_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)


def _has_tables(conn: Connection) -> bool:
    return statedb.has_table(conn, _LAST_TABLE)


def connect(path: str | Path | StateUrl) -> Connection:
    """Open the alert database (:func:`junction.alerting.state.connect`) with the incidents'
    tables.

    Raises:
        AlertDatabaseError: The database is damaged or cannot be opened.
    """
    conn = alert_state.connect(path)
    try:
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        where = path if isinstance(path, StateUrl) else Path(path)
        raise alert_state.AlertDatabaseError(where, str(exc), corrupt=False) from None
    return conn


MAX_SHARED = 8
"""Alert databases with a shared connection kept per process (least recently used dropped)."""


@dataclass
class _Shared:
    conn: Connection
    identity: tuple[int, int, int, int] | None
    lock: threading.RLock


_SHARED: OrderedDict[str, _Shared] = OrderedDict()
_SERVER = (0, 0, 0, 0)
"""The identity of a PostgreSQL database (no file to watch)."""
_SHARED_LOCK = threading.Lock()


@contextmanager
def shared(path: str | Path | StateUrl) -> Iterator[Connection]:
    """The process's connection to an alert database, for one thread at a time.

    Opening (:func:`connect`: the schema statements, and the integrity check the first
    time the process sees the file as it is) is done once, not on every request. A file
    replaced or written meanwhile (``junction alerts reset``, a checkpoint; its
    :func:`~junction.alerting.state.file_identity` changed) is opened and checked afresh;
    an SQLite error while the connection is in use drops it, and the next use reopens and
    re-checks the file. A PostgreSQL connection is kept until it breaks.

    Raises:
        AlertDatabaseError: The database is damaged or cannot be opened, or an SQLite
            error happened while it was in use.
    """
    target = path if isinstance(path, StateUrl) else Path(path)
    if isinstance(target, StateUrl):
        key = target.url
        identity: tuple[int, int, int, int] | None = _SERVER
    else:
        key = str(target.absolute())
        identity = alert_state.file_identity(target)
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is not None and (
            identity is None
            or entry.identity != identity
            or (isinstance(entry.conn, statedb.PgConnection) and entry.conn.closed)
        ):
            del _SHARED[key]  # not closed: a thread may still use it (GC closes it)
            entry = None
    if entry is None:
        opened = connect(target)
        # Re-entrant: a session opened inside another one in the same thread shares it.
        if not isinstance(target, StateUrl):
            identity = alert_state.file_identity(target)
        entry = _Shared(opened, identity, threading.RLock())
        with _SHARED_LOCK:
            _SHARED[key] = entry
            _SHARED.move_to_end(key)
            while len(_SHARED) > MAX_SHARED:
                _SHARED.popitem(last=False)
    with entry.lock:
        try:
            yield entry.conn
        except sqlite3.DatabaseError as exc:
            with _SHARED_LOCK:
                if _SHARED.get(key) is entry:
                    del _SHARED[key]
            if isinstance(target, StateUrl):
                raise alert_state.AlertDatabaseError(target, str(exc), corrupt=False) from None
            alert_state.forget_check(target)
            corrupt = not isinstance(exc, sqlite3.OperationalError)
            raise alert_state.AlertDatabaseError(target, str(exc), corrupt=corrupt) from None
