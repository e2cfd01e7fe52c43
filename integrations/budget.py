"""A rate-limit budget shared by every process on one host, with priorities.

One SQLite file (under Junction's state home) holds a token bucket per integration; each
process takes a token before a call, inside a ``BEGIN IMMEDIATE`` transaction (SQLite's
own file lock: no daemon). So concurrent workflows, in one process or many, share a
vendor's budget, and a bulk job cannot starve an incident workflow:

- a caller that finds no token registers as a waiter (with its priority); while a more
  urgent waiter is registered (and alive: seen in the last ``WAITER_TTL`` seconds), a less
  urgent caller does not take a token, so the next token goes to the most urgent;
- ``low`` callers may not take the last ``reserve`` share of the bucket, and while
  ``normal`` or ``high`` callers were served in the last ``RECENT`` seconds each low call
  costs ``1 / (1 - reserve)`` tokens: bulk work then gets ``1 - reserve`` of the rate, so
  the vendor's own bucket keeps room and an incident call finds it without a 429;
- :meth:`RateBudget.pause` (a vendor's ``Retry-After``, already clamped) stops ``normal``
  and ``low`` callers of every process until it passes.

Time is ``time.monotonic`` (one clock for every process on a Linux host, immune to
wall-clock steps); a stored stamp ahead of the clock (a reboot, a test clock stepped
back) refills nothing and is reset, and a pause never lasts longer than ``max_pause``
from now, whatever was stored.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from integrations.adaptive import PRIORITY_RANK, Priority

WAITER_TTL = 2.0
"""Seconds a waiter row counts without being refreshed (a crashed process's rows expire)."""

RECENT = 5.0
"""Seconds after a normal or high call during which low calls pay the reserve's price."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY, tokens REAL NOT NULL, stamp REAL NOT NULL,
    paused_until REAL NOT NULL DEFAULT 0, others_seen REAL NOT NULL DEFAULT -1e18
);
CREATE TABLE IF NOT EXISTS waiters (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, rank INTEGER NOT NULL, seen REAL NOT NULL
);
"""


@dataclass(frozen=True)
class BucketSpec:
    """One integration's budget: ``rate`` tokens per second, ``burst`` at most.

    Raises:
        ValueError: A rate or burst that is not a positive finite number.
    """

    rate: float
    burst: float

    def __post_init__(self) -> None:
        for key in ("rate", "burst"):
            value = getattr(self, key)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"rate budget {key} must be a positive number, got {value!r}")
        if self.burst < 1:
            raise ValueError(f"rate budget burst must be >= 1, got {self.burst:g}")


def parse_budgets(text: str) -> dict[str, BucketSpec]:
    """``okta=20, gitlab=5/10`` (rate per second, optional ``/burst``) as bucket specs.

    Raises:
        ValueError: A malformed entry, named.
    """
    out: dict[str, BucketSpec] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"rate budget {entry!r}: expected name=rate[/burst]")
        rate_text, _, burst_text = value.partition("/")
        try:
            rate = float(rate_text)
            burst = float(burst_text) if burst_text else max(1.0, rate)
        except ValueError:
            raise ValueError(f"rate budget {entry!r}: rate and burst must be numbers") from None
        try:
            out[name.strip()] = BucketSpec(rate, burst)
        except ValueError as exc:
            raise ValueError(f"rate budget {entry!r}: {exc}") from None
    return out


class RateBudget:
    """Token buckets in one SQLite file, shared by processes.

    Args:
        path: The database file (created with its directory).
        buckets: Budget of each integration; others are not limited.
        reserve: Share of a bucket ``low`` callers may not take (0-1).
        max_pause: Longest pause :meth:`pause` may set (seconds).
        waiter_ttl: Seconds a waiter row counts without being refreshed.
        clock: Monotonic seconds, the same in every process sharing the file.
    """

    def __init__(
        self,
        path: str | Path,
        buckets: Mapping[str, BucketSpec],
        *,
        reserve: float = 0.25,
        max_pause: float = 30.0,
        waiter_ttl: float = WAITER_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= reserve < 1:
            raise ValueError(f"rate budget reserve must be in [0, 1), got {reserve:g}")
        self.path = Path(path)
        self.buckets = dict(buckets)
        self.reserve = reserve
        self.max_pause = max_pause
        self.waiter_ttl = waiter_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pollers: dict[tuple[int, str, str], asyncio.Lock] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # Bucket levels are worth nothing after a crash: no fsync per take (a commit then
        # holds the file lock for microseconds, not a disk flush).
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def limited(self, name: str) -> bool:
        """Whether ``name`` has a budget here."""
        return name in self.buckets

    def _bucket(self, name: str, spec: BucketSpec, now: float) -> tuple[float, float, bool]:
        """The bucket's tokens after refilling to ``now``, its pause (seconds left), and
        whether normal or high callers were served recently."""
        row = self._db.execute(
            "SELECT tokens, stamp, paused_until, others_seen FROM buckets WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            tokens, paused_until, others = spec.burst, 0.0, -math.inf
        else:
            tokens, stamp, paused_until, others = row
            elapsed = now - stamp
            if elapsed > 0:  # a stamp ahead of the clock refills nothing
                tokens = min(spec.burst, tokens + elapsed * spec.rate)
        left = paused_until - now
        if left > self.max_pause:  # a clock stepped back: never wait beyond the cap
            left = self.max_pause
        return tokens, max(0.0, left), 0 <= now - others < RECENT

    def _save(
        self, name: str, tokens: float, now: float, pause_left: float, others: bool = False
    ) -> None:
        self._db.execute(
            "INSERT INTO buckets(name, tokens, stamp, paused_until, others_seen) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET tokens = excluded.tokens, "
            "stamp = excluded.stamp, paused_until = excluded.paused_until, "
            "others_seen = CASE WHEN ? THEN excluded.others_seen ELSE others_seen END",
            (
                name,
                tokens,
                now,
                now + pause_left if pause_left > 0 else 0.0,
                now if others else -1e18,
                others,
            ),
        )

    def try_take(
        self, name: str, priority: Priority = "normal", waiter: str | None = None
    ) -> float:
        """Take one token of ``name`` if this caller may.

        Args:
            name: The integration.
            priority: The caller's priority.
            waiter: The caller's waiter id (registered while it waits; removed on success).

        Returns:
            0.0 when taken, else the seconds to wait before asking again.
        """
        spec = self.buckets.get(name)
        if spec is None:
            return 0.0
        rank = PRIORITY_RANK[priority]
        with self._lock:
            now = self._clock()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                tokens, pause_left, others = self._bucket(name, spec, now)
                wait = 0.0
                if pause_left > 0 and priority != "high":
                    wait = pause_left
                else:
                    urgent = self._db.execute(
                        "SELECT COUNT(*) FROM waiters WHERE name = ? AND rank < ? AND seen > ? "
                        "AND id != ?",
                        (name, rank, now - self.waiter_ttl, waiter or ""),
                    ).fetchone()[0]
                    cost, floor = 1.0, 1.0
                    if priority == "low":
                        floor += spec.burst * self.reserve
                        if others:
                            cost = 1.0 / (1.0 - self.reserve)
                    if urgent:
                        wait = max(1.0 / spec.rate, 0.001)
                    elif tokens < max(floor, cost):
                        wait = (max(floor, cost) - tokens) / spec.rate
                    else:
                        tokens -= cost
                served = wait == 0 and priority != "low"
                self._save(name, tokens, now, pause_left, served)
                if waiter is not None:
                    if wait > 0:
                        self._db.execute(
                            "INSERT INTO waiters(id, name, rank, seen) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT(id) DO UPDATE SET seen = excluded.seen",
                            (waiter, name, rank, now),
                        )
                    else:
                        self._db.execute("DELETE FROM waiters WHERE id = ?", (waiter,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return wait

    def forget(self, waiter: str) -> None:
        """Remove a waiter row (a cancelled caller)."""
        with self._lock:
            self._db.execute("DELETE FROM waiters WHERE id = ?", (waiter,))

    async def acquire(self, name: str, priority: Priority = "normal") -> None:
        """Wait for a token of ``name`` (returns at once for an unlimited name).

        Waits are short slices (at most a quarter of ``waiter_ttl``) so the waiter row stays
        alive and a more urgent caller's arrival is noticed. One task per process and
        priority asks the database at a time (the others queue behind it in process), and
        a caller that has to wait asks again from a worker thread: 64 bulk callers are one
        poller, and a lock held by another process stalls this event loop once at most.
        """
        if name not in self.buckets:
            return
        loop = asyncio.get_running_loop()
        key = (id(loop), name, priority)
        lock = self._pollers.get(key)
        if lock is None:
            lock = self._pollers[key] = asyncio.Lock()
        waiter = f"{os.getpid()}:{next(self._ids)}"
        async with lock:
            try:
                # The first ask inline: a commit without fsync is microseconds, and a
                # thread hop costs more than that on a busy host.
                wait = self.try_take(name, priority, waiter)
                while wait > 0:
                    await asyncio.sleep(min(wait, self.waiter_ttl / 4))
                    wait = await asyncio.to_thread(self.try_take, name, priority, waiter)
            except BaseException:
                self.forget(waiter)
                raise

    def pause(self, name: str, seconds: float) -> None:
        """Stop ``normal`` and ``low`` callers of ``name`` for ``seconds`` (capped at
        ``max_pause``; an earlier, longer pause stays)."""
        spec = self.buckets.get(name)
        if spec is None or not seconds > 0:
            return
        seconds = min(seconds, self.max_pause)
        with self._lock:
            now = self._clock()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                tokens, left, _ = self._bucket(name, spec, now)
                self._save(name, tokens, now, max(left, seconds))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def tokens(self, name: str) -> float:
        """Tokens left in ``name``'s bucket now (for display and tests)."""
        spec = self.buckets.get(name)
        if spec is None:
            return math.inf
        with self._lock:
            return self._bucket(name, spec, self._clock())[0]
