"""Daily uptime of services from the metrics store's probes: the status page's 90 bars.

Uptime is time-weighted exactly as the monitor's (:mod:`junction.scoring`): each probe's
state (up if ``ok``) holds from its timestamp until the next probe of the service, but at
most :func:`hold_seconds` (a monitor that stopped says nothing about the hours after), never
past the end of its UTC day nor past ``now``. A day's uptime is the up time divided by the
time held; a day without probes has no data (it is not 100 %). Minutes down are the time
held by failed probes, rounded up to whole minutes.

Only probes count, not live calls: a workflow's 4xx or a caller's bad request is not the
vendor being down, and calls come in bursts while probes sample evenly.

One DuckDB aggregate (a window over the probes, grouped by service and day) computes every
day of the range at once. :class:`UptimeHistory` keeps days that ended more than
:data:`FINAL_AFTER` ago (late-flushed rows have landed by then, so they cannot change) and
recomputes only the recent ones.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import pandas as pd

DAYS = 90
"""Days of history the status page shows (today included)."""

FINAL_AFTER = timedelta(hours=1)
"""A day is final (cached for good) once it ended this long ago."""

MIN_HOLD_SECONDS = 600.0
"""A probe's state holds at least this long when no later probe comes (see hold_seconds)."""

QueryFn = Callable[[str, list[Any]], pd.DataFrame]
"""Runs SQL with ``?`` parameters against the store's views (``MetricsStore.query``)."""


@dataclass(frozen=True)
class DayUptime:
    """One service's day.

    Attributes:
        day: The UTC day.
        up_seconds: Time held by successful probes.
        down_seconds: Time held by failed probes.
        probes: Probes that day.
    """

    day: date
    up_seconds: float
    down_seconds: float
    probes: int

    @property
    def observed_seconds(self) -> float:
        """Time covered by probes."""
        return self.up_seconds + self.down_seconds

    @property
    def uptime_percent(self) -> float | None:
        """Up time over observed time, in percent (``None``: no data)."""
        total = self.observed_seconds
        return None if total <= 0 else 100.0 * self.up_seconds / total

    @property
    def minutes_down(self) -> int:
        """Down time in whole minutes, rounded up (a short failure is one minute, not 0)."""
        return math.ceil(round(self.down_seconds, 3) / 60.0)


def hold_seconds(monitor_interval_seconds: float) -> float:
    """How long a probe's state holds without a later probe: twice the monitor's interval,
    at least :data:`MIN_HOLD_SECONDS`."""
    return max(MIN_HOLD_SECONDS, 2.0 * monitor_interval_seconds)


def window(now: datetime, days: int = DAYS) -> list[date]:
    """The ``days`` UTC days ending today, oldest first."""
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


_SQL = """
WITH p AS (
    SELECT service, ts, ok, lead(ts) OVER (PARTITION BY service ORDER BY ts) AS next_ts
    FROM probes
    WHERE "date" BETWEEN ? AND ? AND service IN ({services})
), held AS (
    SELECT service, CAST(ts AS DATE) AS day, ok,
        greatest(0.0, epoch(least(
            coalesce(next_ts, CAST(? AS TIMESTAMPTZ)),
            ts + to_seconds(CAST(? AS DOUBLE)),
            date_trunc('day', ts) + INTERVAL 1 DAY,
            CAST(? AS TIMESTAMPTZ)
        )) - epoch(ts)) AS held_s
    FROM p
)
SELECT service, day,
    coalesce(sum(held_s) FILTER (WHERE ok), 0.0) AS up_s,
    coalesce(sum(held_s) FILTER (WHERE NOT ok), 0.0) AS down_s,
    count(*) AS probes
FROM held
GROUP BY service, day
"""


def daily_uptime(
    query: QueryFn,
    services: Sequence[str],
    first: date,
    last: date,
    now: datetime,
    hold: float,
) -> dict[tuple[str, date], DayUptime]:
    """Every day from ``first`` to ``last`` of ``services`` with probes, in one aggregate.

    Args:
        query: Runs the SQL (``MetricsStore.query``).
        services: Catalog names.
        first: First UTC day.
        last: Last UTC day (a probe's state never holds past ``now``).
        now: The current time.
        hold: Longest a probe's state holds (:func:`hold_seconds`).

    Returns:
        ``(service, day) -> DayUptime`` for the days with probes.
    """
    if not services:
        return {}
    sql = _SQL.format(services=", ".join("?" for _ in services))
    at = now.astimezone(UTC)
    frame = query(sql, [first, last, *services, at, float(hold), at])
    out: dict[tuple[str, date], DayUptime] = {}
    for row in frame.to_dict("records"):
        day = pd.Timestamp(row["day"]).date()
        out[(str(row["service"]), day)] = DayUptime(
            day, float(row["up_s"]), float(row["down_s"]), int(row["probes"])
        )
    return out


class UptimeHistory:
    """Daily uptime of services over the last :data:`DAYS` days, past days cached.

    Thread-safe (one computation at a time).

    Args:
        query: Runs SQL against the store (``MetricsStore.query``).
        hold: Longest a probe's state holds (:func:`hold_seconds`).
        days: Days shown.
    """

    def __init__(self, query: QueryFn, hold: float, *, days: int = DAYS) -> None:
        self._query = query
        self._hold = hold
        self._days = days
        self._lock = threading.Lock()
        self._final: dict[tuple[str, date], DayUptime] = {}
        self._final_through: dict[str, date] = {}

    def days(self, services: Sequence[str], now: datetime) -> dict[str, list[DayUptime | None]]:
        """Per service, the window's days oldest first (``None``: no data that day)."""
        with self._lock:
            return self._compute(tuple(services), now)

    def _compute(
        self, services: tuple[str, ...], now: datetime
    ) -> dict[str, list[DayUptime | None]]:
        days = window(now, self._days)
        start, today = days[0], days[-1]
        need = [
            max(start, self._final_through[s] + timedelta(days=1))
            if s in self._final_through
            else start
            for s in services
        ]
        first = min(need, default=today)
        fresh = daily_uptime(self._query, services, first, today, now, self._hold)
        for day in days:
            if day < first:
                continue
            ended = datetime.combine(day + timedelta(days=1), dtime(), UTC)
            if now - ended < FINAL_AFTER:
                break
            for s in services:
                if (s, day) in fresh:
                    self._final[(s, day)] = fresh[(s, day)]
                self._final_through[s] = max(self._final_through.get(s, day), day)
        # Days that left the window are no longer needed.
        for key in [k for k in self._final if k[1] < start]:
            del self._final[key]
        return {
            s: [fresh.get((s, d)) if d >= first else self._final.get((s, d)) for d in days]
            for s in services
        }


__all__ = [
    "DAYS",
    "FINAL_AFTER",
    "DayUptime",
    "UptimeHistory",
    "daily_uptime",
    "hold_seconds",
    "window",
]
