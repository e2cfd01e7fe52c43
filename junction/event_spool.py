"""A durable spool for Junction's Prefect events, so a Prefect server away mid-run loses none.

Prefect's own events client queues events in memory and drops them when the server does
not answer (``Service 'EventsWorker' failed with N pending items``). Here each event is
first appended to a small SQLite file (``<JUNCTION_HOME>/state/events.sqlite``) with its
Prefect event id, then sent by a background thread with a plain ``POST <api>/events``
(the server answers 204 once it has taken the batch), and marked sent only then. Unsent
events are replayed in order: when the next event is emitted, when a flow run starts
(:func:`junction.events.replay`), and by the sender itself with a backoff (1 s doubling
to 60 s) while the server is unreachable.

A replay never sends an event twice from one spool: rows are marked sent in the same
thread that sent them. Two processes sharing a spool may both send a row in the gap
between POST and mark; the server drops the copy (events are stored ``ON CONFLICT DO
NOTHING`` on their id and the trigger service skips ids it has seen).

Bounded: at most :data:`MAX_EVENTS` unsent rows and :data:`MAX_AGE_S` seconds; older ones
are dropped with a warning. Sent rows are kept :data:`KEEP_SENT_S` seconds (the markers),
then pruned. Durable across a crashed process (WAL, ``synchronous=NORMAL``); not across a
power loss of the host. A spool file that is not a readable database is moved aside
(``events.sqlite.corrupt``) with one warning and a fresh spool is started.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000  # unsent rows kept; beyond, the oldest are dropped
MAX_AGE_S = 7 * 86_400.0  # an unsent event older than a week is dropped
KEEP_SENT_S = 3_600.0  # sent markers kept an hour (a replay's proof, then pruned)
BATCH = 100  # events per POST
POST_TIMEOUT_S = 10.0
BACKOFF_S = (1.0, 60.0)  # first retry delay, the longest
EXIT_FLUSH_S = 5.0  # at interpreter exit, wait this long at most to send what is pending
BUSY_TIMEOUT_S = 0.2  # another process writing: wait this long, never more

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    api_url TEXT NOT NULL,
    created REAL NOT NULL,
    body TEXT NOT NULL,
    sent REAL
);
CREATE INDEX IF NOT EXISTS events_pending ON events (sent, seq);
"""


@dataclass(frozen=True)
class SpooledEvent:
    """One spooled event: its order, Prefect event id, destination API and JSON body."""

    seq: int
    id: str
    name: str
    api_url: str
    body: str


class EventSpool:
    """The SQLite spool file; thread-safe; every method swallows nothing (callers do).

    Args:
        path: The spool file (created with its directory).
        max_events: Unsent rows kept; the oldest beyond are dropped with a warning.
        max_age_s: Unsent rows older than this are dropped with a warning.
    """

    def __init__(
        self, path: Path, *, max_events: int = MAX_EVENTS, max_age_s: float = MAX_AGE_S
    ) -> None:
        self.path = path
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._db = self._open()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            log.warning(
                "event spool %s is unreadable (%s): moved to %s, starting a fresh spool",
                self.path,
                exc,
                aside,
            )
            self.path.replace(aside)
            for suffix in ("-wal", "-shm"):  # a stale WAL must not be applied to the new file
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            return self._connect()

    def append(self, event_id: str, name: str, api_url: str, body: str) -> None:
        """Add one unsent event (a second append of the same id is ignored)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO events (id, name, api_url, created, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (event_id, name, api_url, time.time(), body),
            )

    def pending(self, limit: int = BATCH, exclude: Sequence[str] = ()) -> list[SpooledEvent]:
        """The oldest unsent events, in the order they were spooled.

        Args:
            limit: At most this many.
            exclude: API URLs whose events are left out (ones that did not answer).
        """
        marks = ",".join("?" * len(exclude))
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, name, api_url, body FROM events WHERE sent IS NULL "
                f"AND api_url NOT IN ({marks}) ORDER BY seq LIMIT ?",
                (*exclude, limit),
            ).fetchall()
        return [SpooledEvent(*row) for row in rows]

    def mark_sent(self, seqs: Sequence[int]) -> None:
        """Mark events as accepted by the server (a replay skips them)."""
        if not seqs:
            return
        now = time.time()
        with self._lock:
            self._db.executemany(
                "UPDATE events SET sent = ? WHERE seq = ?", [(now, s) for s in seqs]
            )

    def counts(self) -> dict[str, int]:
        """``pending`` and ``sent`` row counts."""
        with self._lock:
            pending, sent = self._db.execute(
                "SELECT COUNT(*) FILTER (WHERE sent IS NULL), "
                "COUNT(*) FILTER (WHERE sent IS NOT NULL) FROM events"
            ).fetchone()
        return {"pending": int(pending), "sent": int(sent)}

    def trim(self) -> int:
        """Apply the bounds: drop unsent events beyond the count or age (a warning says
        how many) and sent markers past their keep time.

        Returns:
            The number of unsent events dropped.
        """
        now = time.time()
        with self._lock:
            db = self._db
            db.execute(
                "DELETE FROM events WHERE sent IS NOT NULL AND sent < ?", (now - KEEP_SENT_S,)
            )
            old = db.execute(
                "DELETE FROM events WHERE sent IS NULL AND created < ?", (now - self.max_age_s,)
            ).rowcount
            over = db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE sent IS NULL "
                "ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                (self.max_events,),
            ).rowcount
        dropped = max(old, 0) + max(over, 0)
        if dropped:
            log.warning(
                "event spool %s: dropped %d unsent Prefect events (older than %.0f s or beyond %d)",
                self.path,
                dropped,
                self.max_age_s,
                self.max_events,
            )
        return dropped

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class ApiAccess:
    """How to reach one Prefect API: its auth headers and TLS verification (in memory
    only: never in the spool)."""

    headers: Mapping[str, str]
    verify: bool | ssl.SSLContext = True


def post_events(api_url: str, bodies: Sequence[str], access: ApiAccess, timeout: float) -> bool:
    """POST one batch to Prefect's ``/events`` endpoint.

    Returns:
        Whether the server took it (204). A batch the server refuses as invalid (422)
        counts as taken, with a warning: sending it again would be refused again.
    """
    content = "[" + ",".join(bodies) + "]"
    try:
        response = httpx.post(
            f"{api_url.rstrip('/')}/events",
            content=content,
            headers={"Content-Type": "application/json", **access.headers},
            timeout=timeout,
            verify=access.verify,
        )
    except httpx.HTTPError:
        return False
    if response.status_code == 422:
        log.warning("Prefect refused %d events as invalid: %s", len(bodies), response.text[:300])
        return True
    if not response.is_success:
        log.warning(
            "Prefect answered %d to %d events; kept for a retry", response.status_code, len(bodies)
        )
    return response.is_success


AccessFor = Callable[[str], ApiAccess]


class EventSender:
    """Sends a spool's unsent events from one background thread, oldest first.

    Args:
        spool: The spool to drain.
        access_for: How to reach an API URL (auth headers and TLS, never stored).
    """

    def __init__(self, spool: EventSpool, access_for: AccessFor) -> None:
        self.spool = spool
        self.access_for = access_for
        self._wake = threading.Event()
        self._send_lock = threading.Lock()  # one drain at a time (thread or caller)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._backoff = BACKOFF_S[0]

    def wake(self) -> None:
        """Ask the thread to send what is pending now (starting it if needed)."""
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="junction-event-sender", daemon=True
                )
                self._thread.start()
                atexit.register(self.flush, EXIT_FLUSH_S, EXIT_FLUSH_S)
        self._wake.set()

    def flush(self, timeout: float = POST_TIMEOUT_S, lock_wait: float = -1) -> int:
        """Send what is pending now, in this thread; never raises.

        Args:
            timeout: Seconds per POST.
            lock_wait: Seconds to wait for a send in progress in another thread
                (negative: as long as it takes); past it, nothing is sent.

        Returns:
            The number of events the server took.
        """
        try:
            return self._drain(timeout, lock_wait)
        except Exception:  # a spool gone bad must not fail the caller
            log.warning("could not replay Prefect events from %s", self.spool.path, exc_info=True)
            return 0

    def _drain(self, timeout: float, lock_wait: float) -> int:
        sent = 0
        if not self._send_lock.acquire(timeout=lock_wait):
            return 0
        try:
            self.spool.trim()
            skip: set[str] = set()  # API URLs that did not answer in this drain
            while True:
                batch = self.spool.pending(BATCH, exclude=sorted(skip))
                if not batch:
                    return sent
                url = batch[0].api_url
                group = [e for e in batch if e.api_url == url]
                if post_events(url, [e.body for e in group], self.access_for(url), timeout):
                    self.spool.mark_sent([e.seq for e in group])
                    sent += len(group)
                else:
                    skip.add(url)
        finally:
            self._send_lock.release()

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(timeout=self._backoff if self._pending() else None)
            self._wake.clear()
            self.flush()
            if not self._pending():
                self._backoff = BACKOFF_S[0]
                continue
            if not woken:  # unreachable at a retry: wait longer next time
                self._backoff = min(self._backoff * 2, BACKOFF_S[1])
            # Unreachable: the next emit wakes another try, but not within the first delay
            # (a burst of alerts during an outage is not a burst of connection attempts).
            time.sleep(BACKOFF_S[0])

    def _pending(self) -> bool:
        with contextlib.suppress(Exception):
            return bool(self.spool.pending(1))
        return False


__all__ = ["ApiAccess", "EventSender", "EventSpool", "SpooledEvent", "post_events"]
