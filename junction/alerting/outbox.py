"""Transactional outbox: notifications wait in the alert database until a channel takes them.

The engine inserts each :class:`~junction.alerting.model.Notification` with
:func:`enqueue` in the same SQLite transaction as the state change that caused it, keyed
by ``Notification.key`` (unique): an evaluation that commits has queued its messages, one
that crashes has queued nothing, and a rerun cannot queue a message twice.

:meth:`Outbox.deliver_due` claims due rows, calls ``channel.send`` with a per-send timeout
(channels run concurrently, rows of one channel in order), and records the outcome:

* ``DELIVERED`` -> ``delivered``.
* ``RETRY`` -> ``pending`` again after an exponential backoff with jitter (at least the
  channel's ``retry_after``); the channel's other rows wait for the next round instead of
  timing out one by one. A channel that is down never loses a message: it waits here,
  without a retry limit, until the channel answers.
* ``AMBIGUOUS`` -> ``needs_check``: it may have arrived and the vendor cannot dedupe, so
  it is never re-sent blindly; :meth:`Outbox.needs_check` lists such rows and
  :meth:`Outbox.settle` lets an operator mark one delivered or re-queue it.
* ``FAILED`` -> ``failed``, with the error kept.
* A send that exceeds the timeout (or raises) counts as ``RETRY`` on a channel that
  deduplicates and ``AMBIGUOUS`` on one that does not.
* A row naming a channel that is not configured stays ``pending`` with a clear
  ``last_error`` (and is reported), so fixing the configuration delivers it.

Crash between send and mark-delivered: a claimed row carries a lease
(``claimed_until``). A later round that finds the lease expired re-queues it if the
channel deduplicates (PagerDuty ``dedup_key``, Alertmanager labels, webhook
``Idempotency-Key``: a resend is harmless) and otherwise moves it to ``needs_check``
(Webex, Slack, email: a resend could post the message twice). Trade-off: for those
channels a crash at the wrong instant needs a human to look, rather than risking a
duplicate; a duplicate page at 3 am is worse than a flagged row in
``junction alerts outbox``.

Clock: due times and leases are wall-clock epochs, each stamped with the wall time that
set it (``stamped_at``). A row stamped "in the future" means the clock stepped back: it is
taken as due at once (its lease as expired once the stamp is more than the lease margin
ahead: another monitor on a shared database stamps a moment later than this round began),
so a clock jump delays nothing by the size of the jump.

Several monitors on one database (``JUNCTION_STATE_URL``, or one SQLite file): every claim
and record is one writing transaction, serialized by the database's writer lock (SQLite's
``BEGIN IMMEDIATE``; PostgreSQL's advisory lock, :mod:`junction.statedb`), and the claim
reads the clock only once it holds the lock. A row is claimed by one round only, so a
notification is sent once whichever monitor claims it.

Whether a channel deduplicates is its ``dedupes`` (:class:`~junction.alerting.model.Channel`),
set by each channel class of the registry (:data:`junction.alerting.channels.CHANNELS`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from junction import statedb
from junction.alerting.model import (
    Channel,
    DeliveryOutcome,
    DeliveryResult,
    Notification,
)
from junction.statedb import Connection, Row

log = logging.getLogger(__name__)

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    group_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    claimed_until REAL,
    stamped_at REAL,
    safe_resend INTEGER,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at)
"""

STATUSES = ("pending", "sending", "delivered", "needs_check", "failed")


def migrate(conn: Connection) -> None:
    """Add columns that older alert databases lack (inside the caller's transaction)."""
    if "stamped_at" not in statedb.columns(conn, "outbox"):
        conn.execute("ALTER TABLE outbox ADD COLUMN stamped_at REAL")


def enqueue(conn: Connection, notification: Notification, now: datetime) -> bool:
    """Queue ``notification`` (inside the caller's transaction); a known key is ignored.

    Returns:
        True if inserted, False if a row with this key already existed.
    """
    cursor = conn.execute(
        "INSERT INTO outbox (key, channel, group_key, kind, payload_json, "
        "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            notification.key,
            notification.channel,
            notification.group_key,
            notification.kind.value,
            json.dumps(notification.to_json(), sort_keys=True),
            0.0,  # due at once, whatever the clock says
            _iso(now),
        ),
    )
    return cursor.rowcount == 1


def _iso(ts: datetime) -> str:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


@dataclass(frozen=True)
class OutboxRow:
    """One queued notification.

    Attributes:
        key: The notification key.
        channel: Channel name.
        kind: firing / escalation / repeat / resolved.
        status: pending, sending, delivered, needs_check or failed.
        attempts: Send attempts so far.
        next_attempt_at: Epoch seconds of the next attempt (pending rows).
        last_error: The last problem, if any.
        notification: The message itself.
    """

    key: str
    channel: str
    kind: str
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    notification: Notification

    @classmethod
    def from_row(cls, row: Row) -> OutboxRow:
        """Build from an ``outbox`` row."""
        return cls(
            key=row["key"],
            channel=row["channel"],
            kind=row["kind"],
            status=row["status"],
            attempts=int(row["attempts"]),
            next_attempt_at=float(row["next_attempt_at"]),
            last_error=row["last_error"],
            notification=Notification.from_json(json.loads(row["payload_json"])),
        )


@dataclass
class DeliveryReport:
    """What one :meth:`Outbox.deliver_due` round did (notification keys per outcome).

    Attributes:
        delivered: Delivered now.
        retrying: Will be retried later.
        needs_check: May have arrived; not re-sent (ambiguous, or a crash mid-send).
        failed: Permanently failed.
        unknown_channel: Rows naming a channel that is not configured (kept pending).
        requeued: Rows of crashed rounds re-queued because their channel deduplicates.
        errors: Key -> error text for every non-delivered row touched.
    """

    delivered: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    needs_check: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unknown_channel: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


class Outbox:
    """Delivery side of the outbox (see the module docstring).

    Args:
        conn: The alert database (from :func:`junction.alerting.state.connect`).
        send_timeout: Seconds one ``channel.send`` may take.
        backoff_base: First retry delay (seconds); doubles per attempt.
        backoff_max: Cap on one retry delay (seconds).
        lease_margin: Seconds added to ``send_timeout`` for a claim's lease.
        rng: Random source for the jitter (seed it in tests).
        lock: Lock shared with other users of ``conn`` (the engine's), held around every
            transaction; never held while a channel sends.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        send_timeout: float = 10.0,
        backoff_base: float = 2.0,
        backoff_max: float = 300.0,
        lease_margin: float = 30.0,
        rng: random.Random | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.conn = conn
        self.lock = lock or threading.RLock()
        self.send_timeout = send_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.lease_margin = lease_margin
        self.rng = rng or random.Random()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the shared lock (``ROLLBACK`` on error)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ inspection

    def rows(self, *statuses: str) -> list[OutboxRow]:
        """Rows with one of ``statuses`` (every row without), oldest first."""
        if statuses:
            marks = ", ".join("?" for _ in statuses)
            found = self.conn.execute(
                f"SELECT * FROM outbox WHERE status IN ({marks}) ORDER BY seq", statuses
            ).fetchall()
        else:
            found = self.conn.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
        return [OutboxRow.from_row(r) for r in found]

    def needs_check(self) -> list[OutboxRow]:
        """Rows that may or may not have arrived and wait for a human."""
        return self.rows("needs_check")

    def settle(self, key: str, *, delivered: bool) -> None:
        """Resolve a ``needs_check`` row: mark it delivered, or re-queue it for sending.

        Raises:
            LookupError: No such row in ``needs_check``.
        """
        with self._tx():
            row = self.conn.execute("SELECT status FROM outbox WHERE key = ?", (key,)).fetchone()
            if row is None or row["status"] != "needs_check":
                raise LookupError(f"no notification {key!r} waiting for a check")
            if delivered:
                self.conn.execute(
                    "UPDATE outbox SET status = 'delivered', delivered_at = ? WHERE key = ?",
                    (_iso(datetime.now(UTC)), key),
                )
            else:
                self.conn.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = 0 WHERE key = ?",
                    (key,),
                )

    # ------------------------------------------------------------------ delivery

    async def deliver_due(
        self,
        channels: Mapping[str, Channel],
        *,
        now: datetime | None = None,
        limit: int = 200,
    ) -> DeliveryReport:
        """Send every due notification once (one round).

        Args:
            channels: Configured channels by name.
            now: Current time (default: the wall clock); drives due times and leases.
            limit: Most rows claimed in this round.

        Returns:
            What happened, per notification key.
        """
        report = DeliveryReport()
        claimed, wall = self._claim(channels, now, limit, report)
        by_channel: dict[str, list[Row]] = {}
        for row in claimed:
            by_channel.setdefault(row["channel"], []).append(row)
        results = await asyncio.gather(
            *(self._send_channel(channels[name], rows) for name, rows in by_channel.items())
        )
        for outcomes in results:
            self._record(outcomes, wall, report)
        return report

    def _claim(
        self,
        channels: Mapping[str, Channel],
        now: datetime | None,
        limit: int,
        report: DeliveryReport,
    ) -> tuple[list[Row], float]:
        conn = self.conn
        with self._tx():
            # The clock is read once the writer lock is held: a time read before waiting
            # for it could precede another process's claim, whose stamp would then look
            # like a clock gone backwards and its live lease like an interrupted send.
            wall = (now or datetime.now(UTC)).timestamp()
            # Leases that ran out: the process sending them died (or hung past the lease),
            # or the clock stepped back more than the lease margin. A stamp a little ahead
            # is another monitor on the same database whose round began a moment later.
            for row in conn.execute(
                "SELECT * FROM outbox WHERE status = 'sending' "
                "AND (claimed_until < ? OR stamped_at > ?)",
                (wall, wall + self.lease_margin),
            ).fetchall():
                if row["safe_resend"]:
                    conn.execute(
                        "UPDATE outbox SET status = 'pending', next_attempt_at = 0, "
                        "last_error = ? WHERE key = ?",
                        ("re-queued after an interrupted send (channel deduplicates)", row["key"]),
                    )
                    report.requeued.append(row["key"])
                else:
                    error = (
                        "interrupted between send and mark-delivered; it may have arrived "
                        "and this channel cannot deduplicate, so it is not re-sent"
                    )
                    conn.execute(
                        "UPDATE outbox SET status = 'needs_check', last_error = ? WHERE key = ?",
                        (error, row["key"]),
                    )
                    report.needs_check.append(row["key"])
                    report.errors[row["key"]] = error
            # Order per (channel, group): a row waits while an earlier one of its pair is
            # being sent elsewhere or is not due yet; a chain of due rows goes in one round
            # (sent in order, the rest handed back at the first RETRY), so a resolved
            # message right behind its firing one does not wait for the next round.
            unsettled = conn.execute(
                "SELECT * FROM outbox WHERE status IN ('pending', 'sending') ORDER BY seq"
            ).fetchall()
            blocked: set[tuple[str, str]] = set()
            claimed: list[Row] = []
            for row in unsettled:
                pair = (row["channel"], row["group_key"])
                if pair in blocked:
                    continue
                stamped = row["stamped_at"]
                due = row["next_attempt_at"] <= wall or (stamped is not None and stamped > wall)
                if row["status"] != "pending" or not due or len(claimed) >= limit:
                    blocked.add(pair)
                    continue
                channel = channels.get(row["channel"])
                if channel is None:
                    blocked.add(pair)
                    known = ", ".join(sorted(channels)) or "none"
                    error = f"unknown channel {row['channel']!r} (configured: {known})"
                    conn.execute(
                        "UPDATE outbox SET last_error = ?, next_attempt_at = ?, stamped_at = ? "
                        "WHERE key = ?",
                        (error, wall + 60.0, wall, row["key"]),
                    )
                    report.unknown_channel.append(row["key"])
                    report.errors[row["key"]] = error
                    continue
                conn.execute(
                    "UPDATE outbox SET status = 'sending', attempts = attempts + 1, "
                    "claimed_until = ?, stamped_at = ?, safe_resend = ? WHERE key = ?",
                    (
                        wall + self.send_timeout + self.lease_margin,
                        wall,
                        1 if channel.dedupes else 0,
                        row["key"],
                    ),
                )
                claimed.append(row)
        return claimed, wall

    async def _send_channel(
        self, channel: Channel, rows: list[Row]
    ) -> list[tuple[Row, DeliveryResult | None]]:
        """Send a channel's rows in order; stop at the first RETRY (the channel is down)."""
        idempotent = channel.dedupes
        out: list[tuple[Row, DeliveryResult | None]] = []
        stopped = False
        for row in rows:
            if stopped:
                out.append((row, None))  # not attempted: back to pending, attempt not counted
                continue
            notification = Notification.from_json(json.loads(row["payload_json"]))
            try:
                result = await asyncio.wait_for(channel.send(notification), self.send_timeout)
            except TimeoutError:
                result = DeliveryResult(
                    DeliveryOutcome.RETRY if idempotent else DeliveryOutcome.AMBIGUOUS,
                    f"send timed out after {self.send_timeout:g} s",
                )
            except Exception as exc:  # a channel must not raise; if it does, stay safe
                result = DeliveryResult(
                    DeliveryOutcome.RETRY if idempotent else DeliveryOutcome.AMBIGUOUS,
                    f"channel raised {type(exc).__name__}: {exc}",
                )
            out.append((row, result))
            if result.outcome is DeliveryOutcome.RETRY:
                stopped = True
        return out

    def _record(
        self,
        outcomes: list[tuple[Row, DeliveryResult | None]],
        wall: float,
        report: DeliveryReport,
    ) -> None:
        conn = self.conn
        with self._tx():
            for row, result in outcomes:
                key = row["key"]
                if result is None:
                    conn.execute(
                        "UPDATE outbox SET status = 'pending', attempts = attempts - 1, "
                        "claimed_until = NULL WHERE key = ?",
                        (key,),
                    )
                    report.retrying.append(key)
                    continue
                outcome = result.outcome
                if outcome is DeliveryOutcome.DELIVERED:
                    conn.execute(
                        "UPDATE outbox SET status = 'delivered', delivered_at = ?, "
                        "claimed_until = NULL, last_error = NULL WHERE key = ?",
                        (_iso(datetime.fromtimestamp(wall, UTC)), key),
                    )
                    report.delivered.append(key)
                    continue
                report.errors[key] = result.detail or outcome.value
                if outcome is DeliveryOutcome.RETRY:
                    attempts = int(row["attempts"]) + 1
                    delay = self.backoff(attempts, result.retry_after_seconds)
                    conn.execute(
                        "UPDATE outbox SET status = 'pending', next_attempt_at = ?, "
                        "stamped_at = ?, claimed_until = NULL, last_error = ? WHERE key = ?",
                        (wall + delay, wall, result.detail or "retry", key),
                    )
                    report.retrying.append(key)
                elif outcome is DeliveryOutcome.AMBIGUOUS:
                    conn.execute(
                        "UPDATE outbox SET status = 'needs_check', claimed_until = NULL, "
                        "last_error = ? WHERE key = ?",
                        (result.detail or "ambiguous delivery", key),
                    )
                    report.needs_check.append(key)
                    log.warning(
                        "notification %s to %s may or may not have arrived: %s",
                        key,
                        row["channel"],
                        result.detail,
                    )
                else:
                    conn.execute(
                        "UPDATE outbox SET status = 'failed', claimed_until = NULL, "
                        "last_error = ? WHERE key = ?",
                        (result.detail or "failed", key),
                    )
                    report.failed.append(key)
                    log.error(
                        "notification %s to %s failed: %s", key, row["channel"], result.detail
                    )

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Delay before attempt ``attempts + 1``: ``base * 2**(attempts-1)`` capped, with
        "equal jitter" (uniform in [d/2, d]); never shorter than ``retry_after``."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1))
        delay = self.rng.uniform(delay / 2, delay)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        return delay

    def summary(self) -> dict[str, Any]:
        """Row counts per status."""
        counts = {s: 0 for s in STATUSES}
        for row in self.conn.execute("SELECT status, count(*) AS n FROM outbox GROUP BY status"):
            counts[row["status"]] = int(row["n"])
        return counts
