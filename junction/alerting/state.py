"""Durable alert state: SQLite at ``<JUNCTION home>/alerts.db`` (WAL, stdlib ``sqlite3``),
or the PostgreSQL database ``JUNCTION_STATE_URL`` names (:mod:`junction.statedb`).

The file is created 0600 (its directory 0700 when created here): it holds alert
messages and vendor error text. A damaged file stops every user with one
:class:`AlertDatabaseError` line; ``junction alerts reset`` (:func:`reset_database`)
moves it aside and starts a fresh one.

Tables (the outbox's own table is defined in :mod:`junction.alerting.outbox`;
silences are read and written by :mod:`junction.alerting.silences`)::

    meta      key, value                 instance id, counters, the engine clock
    alerts    id, fingerprint, service, rule, severity, state, group_key, suppressed_by,
              silenced_by, message, value, labels_json, annotation, started_at,
              updated_at, acked_at, acked_by, resolved_at, transitions, clear_s,
              inhibited_by
              -- at most one unresolved alert per fingerprint (partial unique index)
    groups    key, root_service, state, severity, started_at, resolved_at, notified_json,
              level, seq, age_s, esc_s, repeat_s, quiet_s, first_notified_at, labels_json
    silences  id, service, rule, labels_json, starts_at, ends_at, created_by, comment,
              created_at, deleted_at, public
    history   id, ts, fingerprint, service, rule, severity, state, message, labels_json,
              claimed_at, exported     -- every transition, mirrored to the metrics store

Timestamps are ISO-8601 UTC text. Every id is deterministic: alerts and groups take the
next value of a counter kept in ``meta`` inside the evaluation's transaction, history rows
are ``<instance>-<alert id>-<transition number>``, so a crash mid-evaluation rolls back
every id it took and the rerun produces the same ones, and the metrics store's ``alerts``
table never gets the same transition twice (see :func:`export_history`).

On PostgreSQL every :func:`transaction` takes one advisory lock
(:data:`junction.statedb.WRITER_LOCK`), as ``BEGIN IMMEDIATE`` takes SQLite's writer lock:
monitors sharing the database evaluate, claim and deliver one transaction at a time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from junction import statedb
from junction.alerting.outbox import OUTBOX_SCHEMA
from junction.alerting.outbox import migrate as migrate_outbox
from junction.statedb import Connection, StateUrl

if TYPE_CHECKING:
    from junction.settings import Settings
    from junction.store import MetricsStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    service TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    group_key TEXT NOT NULL,
    suppressed_by TEXT,
    silenced_by TEXT,
    message TEXT NOT NULL,
    value REAL,
    labels_json TEXT NOT NULL,
    annotation TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    acked_at TEXT,
    acked_by TEXT,
    resolved_at TEXT,
    transitions INTEGER NOT NULL DEFAULT 0,
    clear_s REAL NOT NULL DEFAULT 0,
    inhibited_by TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active
    ON alerts (fingerprint) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_group ON alerts (group_key);
CREATE TABLE IF NOT EXISTS groups (
    key TEXT PRIMARY KEY,
    root_service TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT,
    started_at TEXT NOT NULL,
    resolved_at TEXT,
    notified_json TEXT NOT NULL DEFAULT '{}',
    level INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0,
    age_s REAL NOT NULL DEFAULT 0,
    esc_s REAL NOT NULL DEFAULT 0,
    repeat_s REAL NOT NULL DEFAULT 0,
    quiet_s REAL NOT NULL DEFAULT 0,
    first_notified_at TEXT,
    labels_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS groups_state ON groups (state);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    service TEXT,
    rule TEXT,
    labels_json TEXT NOT NULL DEFAULT '{}',
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    deleted_at TEXT,
    public INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    service TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    claimed_at REAL,
    exported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS history_pending ON history (exported) WHERE exported = 0;
"""

EXPORT_LEASE_SECONDS = 60.0
"""A history export claimed longer ago than this is taken to have crashed."""


def iso(ts: datetime) -> str:
    """``ts`` as ISO-8601 UTC text (naive means UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat()


def parse_ts(text: str | None) -> datetime | None:
    """Inverse of :func:`iso`."""
    return datetime.fromisoformat(text) if text else None


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def db_path(settings: Settings) -> Path | StateUrl:
    """The alert database the settings name: ``JUNCTION_STATE_URL`` when set, else the
    SQLite file (``<home>/alerts.db`` by default)."""
    if settings.state_url is not None:
        return StateUrl(settings.state_url.get_secret_value())
    return Path(settings.alerts_db) if settings.alerts_db else Path(settings.home) / "alerts.db"


class AlertDatabaseError(RuntimeError):
    """The alert database cannot be used; ``str()`` is one line naming the file and the fix.

    Attributes:
        path: The database file (or PostgreSQL URL, shown without its password).
        corrupt: True when the file is damaged or not a database (the fix is
            ``junction alerts reset``), False when it could not be opened (permissions,
            a lock held too long, a missing disk, a server refusing the login).
    """

    def __init__(self, path: Path | StateUrl, reason: str, *, corrupt: bool) -> None:
        self.path = path
        self.corrupt = corrupt
        if corrupt:
            message = (
                f"alert database {path} is corrupt ({reason}); run `junction alerts reset` "
                "to move it aside and start with a fresh one"
            )
        else:
            message = f"cannot open the alert database {path}: {reason}"
        super().__init__(message)


# SQLite's words for a damaged file (sqlite3.DatabaseError without a finer class).
_CORRUPT_WORDS = ("not a database", "malformed", "corrupt")


class _DamagedError(Exception):
    """``PRAGMA quick_check`` found damage (the message is its first finding)."""


def _is_corruption(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return any(word in text for word in _CORRUPT_WORDS) or (
        isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
    )


def _private_file(path: Path) -> None:
    """Create ``path`` (0600, directory 0700 when created here) or tighten an existing file.

    The database holds alert messages and vendor error text: readable by its owner only.
    An existing directory is left alone (it may be shared, e.g. ``/tmp``).
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


def connect(path: str | Path | StateUrl) -> Connection:
    """Open (creating if needed, mode 0600) the alert database in WAL mode.

    A :class:`~junction.statedb.StateUrl` opens the PostgreSQL database instead (its
    tables are created once per process).

    The connection is in autocommit mode: callers group statements with
    :func:`transaction`. The file is checked first (``PRAGMA quick_check``), so a damaged
    database is reported at once, not as a traceback in the middle of an evaluation. The
    check is made once per process per :func:`file_identity` of the file (tens of ms on
    a database of a few MB; the service opens one per request): a file written, replaced
    or truncated since it passed is checked again.

    Raises:
        AlertDatabaseError: The file is damaged or not a database (``corrupt``), or it
            cannot be opened.
    """
    if isinstance(path, StateUrl):
        return _connect_postgres(path)
    path = Path(path)
    try:
        _private_file(path)
        conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise AlertDatabaseError(path, _reason(exc), corrupt=False) from None
    try:
        _open(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise AlertDatabaseError(path, _reason(exc), corrupt=_is_corruption(exc)) from None
    except _DamagedError as exc:
        conn.close()
        raise AlertDatabaseError(path, str(exc), corrupt=True) from None
    return conn


_PG_READY: set[StateUrl] = set()


def _connect_postgres(url: StateUrl) -> Connection:
    try:
        conn = statedb.connect_postgres(url)
    except sqlite3.Error as exc:
        raise AlertDatabaseError(url, str(exc), corrupt=False) from None
    if url in _PG_READY:
        return conn
    try:
        _create_schema(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise AlertDatabaseError(url, str(exc), corrupt=False) from None
    with _CHECKED_LOCK:
        _PG_READY.add(url)
    return conn


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """A file's device, inode, size and modification time (``None``: it cannot be read).

    In WAL mode commits go to the ``-wal`` file (whose frames SQLite checksums): the
    database file itself changes only at a checkpoint or when something else writes it,
    which moves its size or modification time; a file moved in its place (``junction
    alerts reset``) has another inode.
    """
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


RACY_NS = 2_000_000_000
"""A file modified this recently (ns) is not remembered as checked: file times advance in
clock ticks of a few ms, so a write in the tick of the check could keep size and time."""

# Absolute path -> the identity it had when it last passed ``PRAGMA quick_check``.
_CHECKED: dict[str, tuple[int, int, int, int]] = {}
_CHECKED_LOCK = threading.Lock()


def forget_check(path: Path) -> None:
    """Check ``path`` again at its next :func:`connect` (an SQLite error said it is damaged)."""
    with _CHECKED_LOCK:
        _CHECKED.pop(str(path.absolute()), None)


def _open(conn: sqlite3.Connection, path: Path) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    key = str(path.absolute())
    before = file_identity(path)
    with _CHECKED_LOCK:
        checked = before is not None and _CHECKED.get(key) == before
    if not checked:
        # Reading the header first: "file is not a database" surfaces here, not mid-evaluation.
        problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":
            forget_check(path)
            raise _DamagedError("integrity check: " + " ".join(str(problem).split()))
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a committed transaction survives a process crash (kill -9); only
    # an OS crash may lose the last commits, never corrupt the file.
    conn.execute("PRAGMA synchronous=NORMAL")
    _create_schema(conn)
    # Remembered only if the file is as it was checked (not written meanwhile, by this
    # open's set-up or another process) and not modified within the last clock ticks.
    if (
        not checked
        and before is not None
        and file_identity(path) == before
        and time.time_ns() - before[3] > RACY_NS
    ):
        with _CHECKED_LOCK:
            _CHECKED[key] = before


def _create_schema(conn: Connection) -> None:
    """Create the tables and add the columns older databases lack (both backends)."""
    with transaction(conn):
        for statement in (*SCHEMA.split(";"), *OUTBOX_SCHEMA.split(";")):
            if statement.strip():
                conn.execute(statement)
        migrate_outbox(conn)
        columns = statedb.columns(conn, "alerts")
        if "clear_s" not in columns:  # databases created before resolve_after existed
            conn.execute("ALTER TABLE alerts ADD COLUMN clear_s REAL NOT NULL DEFAULT 0")
        if "inhibited_by" not in columns:  # ... and before inhibition rules
            conn.execute("ALTER TABLE alerts ADD COLUMN inhibited_by TEXT")
        columns = statedb.columns(conn, "groups")
        if "labels_json" not in columns:  # ... and before groups kept their labels
            conn.execute("ALTER TABLE groups ADD COLUMN labels_json TEXT NOT NULL DEFAULT '{}'")
        if "quiet_s" not in columns:  # ... and before grouping.resolve_wait
            conn.execute("ALTER TABLE groups ADD COLUMN quiet_s REAL NOT NULL DEFAULT 0")
        columns = statedb.columns(conn, "silences")
        if "public" not in columns:  # ... and before silences could be shown on the status page
            conn.execute("ALTER TABLE silences ADD COLUMN public INTEGER NOT NULL DEFAULT 0")
        row = conn.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('instance', ?)", (uuid.uuid4().hex[:8],)
            )


def reset_database(
    path: str | Path | StateUrl, now: datetime, *, force: bool = False
) -> Path | None:
    """Move the alert database (with its ``-wal``/``-shm`` files) aside and create a fresh one.

    The recovery for a damaged database: unresolved alerts, groups, silences and
    undelivered notifications are lost; the history already exported to the metrics
    store is not.

    Args:
        path: The database file.
        now: Names the moved copy (``alerts.db.corrupt-20261207T120000Z``).
        force: Also reset a healthy database.

    Returns:
        Where the old file went, or ``None`` when there was none.

    Raises:
        ValueError: The database is healthy and ``force`` is false.
        AlertDatabaseError: It cannot be opened to check it, or the fresh one cannot be
            created.
        OSError: The files cannot be moved.
    """
    if isinstance(path, StateUrl):
        raise ValueError(
            f"the alert state is in PostgreSQL ({path}): `junction alerts reset` moves an "
            "SQLite file aside; a PostgreSQL database is repaired or dropped with its own tools"
        )
    path = Path(path)
    moved: Path | None = None
    if path.exists():
        if not force:
            try:
                connect(path).close()
            except AlertDatabaseError as exc:
                if not exc.corrupt:
                    raise
            else:
                raise ValueError(
                    f"alert database {path} is healthy: nothing to reset "
                    "(--force discards its state anyway)"
                )
        stamp = utc(now).strftime("%Y%m%dT%H%M%SZ")
        moved = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(Path(f"{moved}{suffix}"))
    connect(path).close()
    return moved


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception).

    On PostgreSQL ``BEGIN IMMEDIATE`` is ``BEGIN`` plus the writer advisory lock
    (:mod:`junction.statedb`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def meta_get(conn: Connection, key: str) -> str | None:
    """A value from ``meta``."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row["value"])


def meta_set(conn: Connection, key: str, value: str) -> None:
    """Set a value in ``meta``."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def next_counter(conn: Connection, name: str) -> int:
    """Increment and return counter ``name`` (inside the caller's transaction)."""
    current = int(meta_get(conn, f"counter:{name}") or 0) + 1
    meta_set(conn, f"counter:{name}", str(current))
    return current


def instance_id(conn: Connection) -> str:
    """This database's random id (prefix of group keys and history ids)."""
    return meta_get(conn, "instance") or "00000000"


# ------------------------------------------------------------------------- history export


def export_history(conn: Connection, store: MetricsStore, *, wall: float) -> int:
    """Append pending history rows to the metrics store's ``alerts`` table, exactly once.

    Rows are claimed (``claimed_at``) in one transaction, appended and flushed, then
    marked exported. A row found claimed but not exported (its exporter crashed between
    the append and the mark, or is still running past :data:`EXPORT_LEASE_SECONDS`) is
    first looked up in the store by id and only appended if it is not there.

    Args:
        conn: The alert database.
        store: The metrics store.
        wall: Current wall-clock epoch seconds (for the claim lease).

    Returns:
        Rows appended.
    """
    with transaction(conn):
        rows = conn.execute(
            "SELECT * FROM history WHERE exported = 0 AND (claimed_at IS NULL OR claimed_at < ?)"
            " ORDER BY seq",
            (wall - EXPORT_LEASE_SECONDS,),
        ).fetchall()
        if not rows:
            return 0
        conn.executemany(
            "UPDATE history SET claimed_at = ? WHERE id = ?", [(wall, r["id"]) for r in rows]
        )
    suspect = [r["id"] for r in rows if r["claimed_at"] is not None]
    present: set[str] = set()
    if suspect:
        placeholders = ", ".join("?" for _ in suspect)
        frame = store.query(f"SELECT id FROM alerts WHERE id IN ({placeholders})", suspect)
        present = {str(x) for x in frame["id"]}
    out = [
        {
            "id": r["id"],
            "ts": r["ts"],
            "fingerprint": r["fingerprint"],
            "service": r["service"],
            "rule": r["rule"],
            "severity": r["severity"],
            "state": r["state"],
            "message": r["message"],
            "labels_json": r["labels_json"],
        }
        for r in rows
        if r["id"] not in present
    ]
    if out:
        store.append("alerts", out)
        store.flush()
    with transaction(conn):
        conn.executemany("UPDATE history SET exported = 1 WHERE id = ?", [(r["id"],) for r in rows])
    return len(out)
