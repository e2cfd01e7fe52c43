"""Trends in DuckDB SQL, straight from the metrics store's Parquet files.

Every function aggregates in DuckDB straight from the Parquet files and returns only the
aggregated rows as a DataFrame: no row-level data passes through pandas. Hourly and
daily buckets are computed one UTC-day partition at a time
(:func:`analytics.partitions.aggregate_by_partition`: exact, since a bucket never spans
two partitions); a time window skips whole day directories. Buckets are UTC
(``date_trunc`` in a UTC session).

* :func:`latency_trends`: per bucket (hour/day), service and action: calls, ok calls,
  success rate, p50/p95/p99 and mean latency (``quantile_cont`` with a list of
  quantiles: one sort per group instead of three).
* :func:`uptime`: per bucket and service, from ``probes``: probes, ok probes, uptime.
* :func:`week_over_week`: the last 7 days against the 7 before, per service (and action).
* :func:`service_summary`: one row per service over the window (the overview table).
* :func:`compute_trends`: all of the above in one :class:`Trends`.

Empty tables give empty frames with the documented columns, never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
import pandas as pd

from analytics.partitions import aggregate_by_partition, store_connection, tuning, utc, window_sql
from analytics.rollups import Rollups
from junction.settings import get_settings
from junction.store import MetricsStore

Grain = Literal["hour", "day"]

LATENCY_COLUMNS = [
    "bucket",
    "service",
    "action",
    "calls",
    "ok_calls",
    "success_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
]
UPTIME_COLUMNS = ["bucket", "service", "probes", "ok_probes", "uptime", "p50_ms", "p95_ms"]


def _connect(store: MetricsStore) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
    """:func:`analytics.partitions.store_connection` tuned by the settings."""
    return store_connection(store, **tuning(get_settings()))


def _run(store: MetricsStore, sql: str, params: list[Any]) -> pd.DataFrame:
    with _connect(store) as con:
        return con.execute(sql, params).df()


def latency_trends(
    store: MetricsStore,
    grain: Grain = "hour",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
    by_action: bool = True,
    sources: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per bucket, service (and action): volume, success rate and latency percentiles.

    Args:
        store: The metrics store (reads ``calls``).
        grain: ``hour`` or ``day`` (UTC).
        since: Inclusive start.
        until: Exclusive end.
        services: Only these services.
        by_action: Group by action too (``action`` is ``"*"`` otherwise).
        sources: Only calls from these sources (``workflow``, ``probe``, ``cli``...).

    Returns:
        Columns :data:`LATENCY_COLUMNS`, sorted by bucket, service, action.
    """
    if grain not in ("hour", "day"):
        raise ValueError("grain must be 'hour' or 'day'")
    where, params = window_sql("ts", since, until, services, partition_column=False)
    if sources is not None:
        where += " AND list_contains(?, source)"
        params.append(list(sources))
    action = "action" if by_action else "'*'"
    agg = f"""
        SELECT date_trunc('{grain}', ts) AS bucket, service, {action} AS action,
               count(*) AS calls, count(*) FILTER (WHERE ok) AS ok_calls,
               quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q,
               avg(latency_ms) AS mean_ms
        FROM {{source}} WHERE true {where}
        GROUP BY ALL
    """
    finish = """
        SELECT bucket, service, action, calls, ok_calls,
               ok_calls / calls AS success_rate,
               q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms, mean_ms
        FROM {agg}
        ORDER BY bucket, service, action
    """
    with _connect(store) as con:
        return aggregate_by_partition(
            con, store, "calls", agg, finish, since=since, until=until, params=params
        )


def uptime(
    store: MetricsStore,
    grain: Grain = "hour",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per bucket and service, from ``probes``: probes, ok probes, uptime (ok share), p50/p95.

    Returns:
        Columns :data:`UPTIME_COLUMNS`, sorted by bucket, service.
    """
    if grain not in ("hour", "day"):
        raise ValueError("grain must be 'hour' or 'day'")
    where, params = window_sql("ts", since, until, services, partition_column=False)
    agg = f"""
        SELECT date_trunc('{grain}', ts) AS bucket, service,
               count(*) AS probes, count(*) FILTER (WHERE ok) AS ok_probes,
               quantile_cont(latency_ms, [0.5, 0.95]) AS q
        FROM {{source}} WHERE true {where}
        GROUP BY ALL
    """
    finish = """
        SELECT bucket, service, probes, ok_probes, ok_probes / probes AS uptime,
               q[1] AS p50_ms, q[2] AS p95_ms
        FROM {agg}
        ORDER BY bucket, service
    """
    with _connect(store) as con:
        return aggregate_by_partition(
            con, store, "probes", agg, finish, since=since, until=until, params=params
        )


def week_over_week(
    store: MetricsStore,
    *,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
    by_action: bool = False,
) -> pd.DataFrame:
    """The 7 days before ``until`` against the 7 days before those, per service (and action).

    Args:
        store: The metrics store (reads ``calls``).
        until: End of "this week" (exclusive; default: the latest call's timestamp, so a
            finished synthetic history compares its own last two weeks).
        services: Only these services.
        by_action: One row per service and action instead of per service.

    Returns:
        Columns ``service``, ``action``, ``calls``/``success_rate``/``p95_ms`` for this and
        the previous week (``prev_*``), ``calls_change`` and ``p95_change`` (relative,
        0.1 = +10 %), ``success_rate_change`` (absolute, in rate units). A side without
        data gives NaN changes.
    """
    if until is None:
        with _connect(store) as con:
            row = con.execute("SELECT max(ts) FROM calls").fetchone()
        latest = row[0] if row else None
        # Just past the latest call, so the last call belongs to "this week".
        until = datetime.now(UTC) if latest is None else utc(latest) + timedelta(microseconds=1)
    end = utc(until)
    mid = end - timedelta(days=7)
    start = end - timedelta(days=14)
    where, params = window_sql("ts", start, end, services)
    action = "action" if by_action else "'*'"
    sql = f"""
        WITH w AS (
            SELECT service, {action} AS action, ts >= ? AS this_week,
                   count(*) AS calls, count(*) FILTER (WHERE ok) / count(*) AS success_rate,
                   quantile_cont(latency_ms, 0.95) AS p95_ms
            FROM calls WHERE true {where}
            GROUP BY ALL
        )
        SELECT coalesce(t.service, p.service) AS service,
               coalesce(t.action, p.action) AS action,
               t.calls AS calls, p.calls AS prev_calls,
               t.success_rate AS success_rate, p.success_rate AS prev_success_rate,
               t.p95_ms AS p95_ms, p.p95_ms AS prev_p95_ms,
               t.calls / p.calls - 1 AS calls_change,
               t.p95_ms / nullif(p.p95_ms, 0) - 1 AS p95_change,
               t.success_rate - p.success_rate AS success_rate_change
        FROM (SELECT * FROM w WHERE this_week) t
        FULL OUTER JOIN (SELECT * FROM w WHERE NOT this_week) p
          ON t.service = p.service AND t.action = p.action
        ORDER BY service, action
    """
    frame = _run(store, sql, [mid, *params])
    frame.attrs["this_week"] = (mid, end)
    frame.attrs["previous_week"] = (start, mid)
    return frame


def service_summary(
    store: MetricsStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per service over the window: calls, success rate, latency, probe uptime.

    Returns:
        Columns ``service``, ``calls``, ``success_rate``, ``p50_ms``, ``p95_ms``,
        ``p99_ms``, ``mean_ms``, ``probes``, ``uptime`` (NaN/<NA> where a table has no
        rows for the service), sorted by service.
    """
    where, params = window_sql("ts", since, until, services)
    sql = f"""
        WITH c AS (
            SELECT service, count(*) AS calls,
                   count(*) FILTER (WHERE ok) / count(*) AS success_rate,
                   quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q,
                   avg(latency_ms) AS mean_ms
            FROM calls WHERE true {where} GROUP BY service
        ), p AS (
            SELECT service, count(*) AS probes, count(*) FILTER (WHERE ok) / count(*) AS uptime
            FROM probes WHERE true {where} GROUP BY service
        )
        SELECT coalesce(c.service, p.service) AS service, c.calls, c.success_rate,
               c.q[1] AS p50_ms, c.q[2] AS p95_ms, c.q[3] AS p99_ms, c.mean_ms,
               p.probes, p.uptime
        FROM c FULL OUTER JOIN p ON c.service = p.service
        ORDER BY service
    """
    return _run(store, sql, [*params, *params])


@dataclass
class Trends:
    """Everything :func:`compute_trends` computes, as DataFrames."""

    hourly: pd.DataFrame
    daily: pd.DataFrame
    uptime_hourly: pd.DataFrame
    uptime_daily: pd.DataFrame
    week_over_week: pd.DataFrame
    summary: pd.DataFrame


def compute_trends(
    store: MetricsStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    services: Sequence[str] | None = None,
    rollups: Rollups | None = None,
) -> Trends:
    """Hourly and daily latency/volume/success per service and action, uptime, WoW, summary.

    Args:
        store: The metrics store.
        since: Inclusive start of the window (default: everything).
        until: Exclusive end (default: everything; also the end of "this week").
        services: Only these services.
        rollups: Read the hourly/daily frames from these incremental rollups (refreshed
            first; identical numbers, see :mod:`analytics.rollups`) instead of scanning
            the raw calls and probes.
    """
    if rollups is not None:
        rollups.refresh()

        def read(table: str, grain: str) -> pd.DataFrame:
            assert rollups is not None
            read_grain = rollups.hourly if grain == "hour" else rollups.daily
            frame = read_grain(table, since=since, until=until, services=services)
            return frame[LATENCY_COLUMNS if table == "calls" else UPTIME_COLUMNS]

        hourly, daily = read("calls", "hour"), read("calls", "day")
        uptime_hourly, uptime_daily = read("probes", "hour"), read("probes", "day")
    else:
        hourly = latency_trends(store, "hour", since=since, until=until, services=services)
        daily = latency_trends(store, "day", since=since, until=until, services=services)
        uptime_hourly = uptime(store, "hour", since=since, until=until, services=services)
        uptime_daily = uptime(store, "day", since=since, until=until, services=services)
    return Trends(
        hourly=hourly,
        daily=daily,
        uptime_hourly=uptime_hourly,
        uptime_daily=uptime_daily,
        week_over_week=week_over_week(store, until=until, services=services),
        summary=service_summary(store, since=since, until=until, services=services),
    )


__all__ = [
    "LATENCY_COLUMNS",
    "UPTIME_COLUMNS",
    "Grain",
    "Trends",
    "compute_trends",
    "latency_trends",
    "service_summary",
    "uptime",
    "week_over_week",
]
