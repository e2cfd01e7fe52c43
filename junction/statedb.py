"""Junction's state database: an SQLite file (the embedded default) or PostgreSQL.

``JUNCTION_STATE_URL`` empty keeps the alert state (alerts, outbox, silences, incidents)
and the model registry's rows in SQLite under the home; ``postgresql://user:pw@host:port/db``
puts them in PostgreSQL, which several monitors can share.

The code that reads and writes the state speaks the sqlite3 API and (mostly portable)
SQL. :class:`PgConnection` gives a psycopg 3 connection that surface (``execute``,
``executemany``, rows addressable by name and index, autocommit with explicit
transactions) and :func:`translate` turns the few SQLite-only forms into PostgreSQL's:

* ``?`` placeholders become ``%s`` (and a literal ``%`` becomes ``%%``);
* in ``CREATE``/``ALTER`` statements ``INTEGER PRIMARY KEY AUTOINCREMENT`` becomes an
  identity column, ``INTEGER`` ``BIGINT`` and ``REAL`` ``DOUBLE PRECISION``;
* ``BEGIN IMMEDIATE`` (SQLite's database-wide writer lock, taken by every writing
  transaction) becomes ``BEGIN`` plus ``pg_advisory_xact_lock(`` :data:`WRITER_LOCK` ``)``,
  so writers serialize on PostgreSQL exactly as on SQLite: two monitors never evaluate,
  claim an outbox row or assign an incident at the same time. The lock ends with the
  transaction (commit, rollback, or the session dying).

Everything else is written portably where it is used (``INSERT ... ON CONFLICT``,
:func:`columns` instead of ``PRAGMA table_info``, :func:`has_table` instead of
``sqlite_master``). psycopg's errors are raised as subclasses of sqlite3's
(:class:`PgOperationalError` is an ``sqlite3.OperationalError``), so the callers' error
handling holds on both; their text never carries the URL's password.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

__all__ = [
    "WRITER_LOCK",
    "Connection",
    "Cursor",
    "PgConnection",
    "PgDatabaseError",
    "PgIntegrityError",
    "PgOperationalError",
    "PgRow",
    "Row",
    "StateUrl",
    "columns",
    "connect_postgres",
    "has_table",
    "is_postgres",
    "mask_url",
    "state_url",
    "translate",
]

SCHEMES = ("postgresql", "postgres")
WRITER_LOCK = 0x4A554E43
"""The advisory lock key every writing transaction takes on PostgreSQL ("JUNC")."""

CONNECT_TIMEOUT_SECONDS = 10


# ------------------------------------------------------------------------- the sqlite3 surface


class Cursor(Protocol):
    """What the state code uses of a cursor (``sqlite3.Cursor`` and :class:`PgCursor`)."""

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        ...

    def fetchone(self) -> Any:
        """The next row, or ``None``."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """Iterate over the rows."""
        ...


class Connection(Protocol):
    """What the state code uses of a connection (``sqlite3.Connection``, :class:`PgConnection`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any:
        """Run one statement."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement per parameter row."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        ...

    def __enter__(self) -> Any:
        """``with conn:`` commits the open transaction, or rolls it back on an exception."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Any:
        """See :meth:`__enter__`."""
        ...


class Row(Protocol):
    """A result row addressable by column name and by index (``sqlite3.Row``, :class:`PgRow`)."""

    def __getitem__(self, key: int | str, /) -> Any:
        """A column's value by index or name."""
        ...

    def keys(self) -> list[str]:
        """Column names, in order."""
        ...


class PgRow:
    """A PostgreSQL result row addressable by column name and by index (as ``sqlite3.Row``)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = tuple(values)

    def __getitem__(self, key: int | str, /) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        """Column names, in order."""
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PgRow):
            return NotImplemented
        return self.keys() == other.keys() and self._values == other._values

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Any:
    index = {col.name: i for i, col in enumerate(cursor.description or ())}
    return lambda values: PgRow(index, values)


class _BoolAsInt(Dumper):
    """Python booleans as 0/1 (the state's flags are INTEGER columns, as in SQLite)."""

    oid = 20  # int8
    format = Format.TEXT

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


# ------------------------------------------------------------------------- URLs


class StateUrl:
    """A PostgreSQL URL naming the state database; ``str()`` hides its password.

    Stands where the SQLite file's path stands (``state.db_path``): ``exists()`` is true,
    the server's database is there or :func:`connect_postgres` reports why not.

    Raises:
        ValueError: Not a ``postgresql://`` URL.
    """

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in SCHEMES or (not parts.hostname and not parts.path.strip("/")):
            raise ValueError(
                f"JUNCTION_STATE_URL {mask_url(url)!r} is not a PostgreSQL URL "
                "(postgresql://user:password@host:port/database; empty: the SQLite file)"
            )
        self.url = url.strip()

    def exists(self) -> bool:
        """Always true (see the class docstring)."""
        return True

    def __str__(self) -> str:
        return mask_url(self.url)

    def __repr__(self) -> str:
        return f"StateUrl({mask_url(self.url)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateUrl) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def state_url(value: str | None) -> StateUrl | None:
    """The setting's value as a :class:`StateUrl` (``None``: empty, the SQLite file).

    Raises:
        ValueError: Not a PostgreSQL URL.
    """
    if value is None or not value.strip():
        return None
    return StateUrl(value)


# ------------------------------------------------------------------------- errors


class PgDatabaseError(sqlite3.DatabaseError):
    """A PostgreSQL error, caught where an ``sqlite3.DatabaseError`` is."""


class PgOperationalError(PgDatabaseError, sqlite3.OperationalError):
    """The server is unreachable, refused the login, or the connection broke."""


class PgIntegrityError(PgDatabaseError, sqlite3.IntegrityError):
    """A constraint was violated."""


def _scrubbed(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(url).password
    if password:
        text = text.replace(password, "***")
    return text


def _converted(exc: psycopg.Error, url: str) -> PgDatabaseError:
    text = _scrubbed(exc, url)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return PgOperationalError(text)
    if isinstance(exc, psycopg.IntegrityError):
        return PgIntegrityError(text)
    return PgDatabaseError(text)


# ------------------------------------------------------------------------- translation

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")
_DDL = re.compile(r"^\s*(CREATE|ALTER)\b", re.IGNORECASE)
_DDL_TYPES = (
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.IGNORECASE),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
)
_BEGIN_IMMEDIATE = re.compile(r"^\s*BEGIN\s+IMMEDIATE\s*;?\s*$", re.IGNORECASE)
_END = re.compile(r"^\s*(COMMIT|ROLLBACK|END)\b", re.IGNORECASE)
_READ = re.compile(r"^\s*SELECT\b", re.IGNORECASE)


def translate(sql: str, *, placeholders: bool = True) -> str:
    """SQLite's SQL as the state code writes it, in PostgreSQL's dialect.

    Args:
        sql: One statement.
        placeholders: Whether parameters come with it (``?`` -> ``%s``, ``%`` -> ``%%``);
            without parameters psycopg sends the text as it is.

    Returns:
        The statement for psycopg (``BEGIN IMMEDIATE`` is handled by
        :meth:`PgConnection.execute`, not here).
    """
    if _DDL.match(sql):
        for pattern, replacement in _DDL_TYPES:
            sql = pattern.sub(replacement, sql)
    if not placeholders:
        return sql

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return token  # a quoted literal or identifier stays as written

    return _TOKENS.sub(swap, sql)


# ------------------------------------------------------------------------- the connection


class PgCursor:
    """A psycopg cursor seen through the sqlite3 cursor's surface (``None``: no result)."""

    def __init__(self, raw: psycopg.Cursor[Any] | None, url: str) -> None:
        self._raw = raw
        self._url = url

    @property
    def rowcount(self) -> int:
        """Rows the statement changed (-1: not known)."""
        return -1 if self._raw is None else self._raw.rowcount

    @property
    def lastrowid(self) -> None:
        """Not available on PostgreSQL: use ``RETURNING``."""
        return None

    def fetchone(self) -> PgRow | None:
        """The next row, or ``None`` (also when the statement returns no rows)."""
        if self._raw is None or self._raw.description is None:
            return None
        try:
            return self._raw.fetchone()
        except psycopg.Error as exc:
            raise _converted(exc, self._url) from None

    def fetchall(self) -> list[PgRow]:
        """The remaining rows."""
        if self._raw is None or self._raw.description is None:
            return []
        try:
            return self._raw.fetchall()
        except psycopg.Error as exc:
            raise _converted(exc, self._url) from None

    def __iter__(self) -> Iterator[PgRow]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg 3 connection (autocommit, explicit transactions) with sqlite3's surface.

    A session the server dropped (a restart, a failover, an idle timeout) is opened again
    at the next statement outside a transaction; a transaction it broke fails, and its
    ``ROLLBACK`` succeeds (the server rolled it back). A ``BEGIN`` or a ``SELECT`` that
    finds the session dropped is retried once on a new one: neither changed anything.

    Args:
        raw: The open psycopg connection.
        url: Its URL (only to scrub the password from error text).
    """

    def __init__(self, raw: psycopg.Connection[Any], url: StateUrl) -> None:
        self._raw = raw
        self._url = url.url
        self.url = url
        self._in_tx = False
        self._closed = False

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> PgCursor:
        """Run one statement (SQLite dialect, see :func:`translate`)."""
        if self._closed:
            raise PgOperationalError("the state database connection is closed")
        begin = bool(_BEGIN_IMMEDIATE.match(sql))
        ends = bool(_END.match(sql))
        if self._raw.broken:
            if ends:  # the transaction died with the session: nothing to end
                self._in_tx = False
                return PgCursor(None, self._url)
            if not self._in_tx:
                self._reopen()
        if ends:  # a failed COMMIT or ROLLBACK ends the transaction too
            self._in_tx = False
        try:
            cursor = self._run(sql, parameters, begin)
        except psycopg.OperationalError as exc:
            if not (self._raw.broken and not self._in_tx and (begin or _READ.match(sql))):
                raise _converted(exc, self._url) from None
            self._reopen()
            try:
                cursor = self._run(sql, parameters, begin)
            except psycopg.Error as again:
                raise _converted(again, self._url) from None
        except psycopg.Error as exc:
            raise _converted(exc, self._url) from None
        if begin:
            self._in_tx = True
        return PgCursor(cursor, self._url)

    def _run(self, sql: str, parameters: Sequence[Any], begin: bool) -> psycopg.Cursor[Any]:
        if begin:
            # One round trip: both statements in one simple query.
            return self._raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK})")
        if parameters:
            return self._raw.execute(translate(sql), list(parameters))
        return self._raw.execute(translate(sql, placeholders=False))

    def _reopen(self) -> None:
        """A new session in place of a dropped one (raises PgOperationalError if refused)."""
        fresh = connect_postgres(self.url, reuse=False)
        self._raw = fresh._raw
        self._in_tx = False

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> PgCursor:
        """Run one statement once per parameter row."""
        if self._closed:
            raise PgOperationalError("the state database connection is closed")
        cursor = self._raw.cursor()
        try:
            cursor.executemany(translate(sql), [list(p) for p in parameters])
        except psycopg.Error as exc:
            raise _converted(exc, self._url) from None
        return PgCursor(cursor, self._url)

    def commit(self) -> None:
        """Commit the open transaction, if any."""
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        self.execute("ROLLBACK")

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        # As sqlite3: end the open transaction (if any); the connection stays open.
        if self.in_transaction:
            self.execute("ROLLBACK" if exc_type is not None else "COMMIT")

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (as ``sqlite3.Connection.in_transaction``)."""
        return self._raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    @property
    def closed(self) -> bool:
        """Whether the connection is closed or broken."""
        return bool(self._closed or self._raw.closed or self._raw.broken)

    def close(self) -> None:
        """Close the connection: an idle session goes back to the process's few kept for
        the next :func:`connect_postgres`; one inside a transaction is closed (the server
        rolls the transaction back)."""
        if self._closed:
            return
        self._closed = True
        if not _give_back(self._url, self._raw):
            self._raw.close()


IDLE_SESSIONS = 4
"""Idle sessions kept per URL and process: the service opens the state database per
request, and a new PostgreSQL session costs a connection, a login and a server process."""

_IDLE: dict[str, list[psycopg.Connection[Any]]] = {}
_IDLE_LOCK = threading.Lock()
_IDLE_PID = os.getpid()
# Sessions a forked child inherited: their sockets are the parent's. Kept referenced so
# that no finalizer in the child ends the parent's sessions; never used.
_INHERITED: list[psycopg.Connection[Any]] = []


def _reusable(raw: psycopg.Connection[Any]) -> bool:
    idle = psycopg.pq.TransactionStatus.IDLE
    return not raw.closed and not raw.broken and raw.info.transaction_status == idle


def _take(url: str) -> psycopg.Connection[Any] | None:
    global _IDLE_PID
    with _IDLE_LOCK:
        if os.getpid() != _IDLE_PID:
            for kept in _IDLE.values():
                _INHERITED.extend(kept)
            _IDLE.clear()
            _IDLE_PID = os.getpid()
        kept = _IDLE.get(url, [])
        while kept:
            raw = kept.pop()
            if _reusable(raw):
                return raw
            raw.close()
    return None


def _give_back(url: str, raw: psycopg.Connection[Any]) -> bool:
    if not _reusable(raw):
        return False
    with _IDLE_LOCK:
        kept = _IDLE.setdefault(url, [])
        if os.getpid() != _IDLE_PID or len(kept) >= IDLE_SESSIONS:
            return False
        kept.append(raw)
    return True


def connect_postgres(
    url: StateUrl, *, timeout: float = CONNECT_TIMEOUT_SECONDS, reuse: bool = True
) -> PgConnection:
    """Open a connection to the state database at ``url`` (autocommit).

    Args:
        url: The database.
        timeout: Seconds to wait for the server.
        reuse: Take an idle session this process kept (see :meth:`PgConnection.close`).

    Raises:
        PgOperationalError: The server cannot be reached or refused the login (the text
            names the cause, never the password).
    """
    raw = _take(url.url) if reuse else None
    if raw is not None:
        return PgConnection(raw, url)
    try:
        raw = psycopg.connect(
            url.url,
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
            row_factory=_row_factory,
            application_name="junction",
        )
    except psycopg.Error as exc:
        raise PgOperationalError(_scrubbed(exc, url.url)) from None
    raw.adapters.register_dumper(bool, _BoolAsInt)
    return PgConnection(raw, url)


def is_postgres(conn: Connection) -> bool:
    """Whether ``conn`` is a PostgreSQL connection."""
    return isinstance(conn, PgConnection)


def has_table(conn: Connection, table: str) -> bool:
    """Whether ``table`` exists (the connection's own schema on PostgreSQL)."""
    if isinstance(conn, PgConnection):
        row = conn.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).fetchone()
        return bool(row is not None and row[0])
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


def columns(conn: Connection, table: str) -> set[str]:
    """The column names of ``table`` (empty: no such table)."""
    if isinstance(conn, PgConnection):
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).fetchall()
        return {str(r[0]) for r in rows}
    if not re.fullmatch(r"\w+", table):
        raise ValueError(f"not a table name: {table!r}")
    return {str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")}
