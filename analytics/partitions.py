"""DuckDB over the metrics store's day partitions: the connection, the window filter and
per-partition aggregation, shared by :mod:`analytics.trends` and :mod:`analytics.rollups`.

Hourly and daily buckets are computed one UTC-day partition at a time
(:func:`aggregate_by_partition`): exact, since a bucket never spans two partitions, and
half the peak memory of one query over every file (see bench/analytics.py). A time
window skips whole day directories.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

from junction.store import MetricsStore

if TYPE_CHECKING:  # the settings are passed in: the per-partition path stays lean
    from junction.settings import Settings


def tuning(
    settings: Settings, memory_limit: str | None = None, threads: int | None = None
) -> dict[str, Any]:
    """``memory_limit`` and ``threads`` for :func:`store_connection`: the arguments, else
    the settings ``analytics_duckdb_memory_limit`` / ``analytics_duckdb_threads``."""
    return {
        "memory_limit": memory_limit or settings.analytics_duckdb_memory_limit,
        "threads": threads or settings.analytics_duckdb_threads,
    }


@contextlib.contextmanager
def store_connection(
    store: MetricsStore, *, memory_limit: str, threads: int
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with the store's views, tuned for aggregation, under the read lock.

    Args:
        store: The metrics store.
        memory_limit: DuckDB ``memory_limit``; DuckDB spills beyond it.
        threads: DuckDB threads.
    """
    con = store.connect()
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET threads = {int(threads)}")
        # Aggregates need no input order; dropping it lets DuckDB stream and spill freely.
        con.execute("SET preserve_insertion_order = false")
        with store.read_lock():
            yield con
    finally:
        con.close()


def utc(value: datetime) -> datetime:
    """An aware UTC datetime (naive ones are taken as UTC)."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def window_sql(
    ts_col: str,
    since: datetime | None,
    until: datetime | None,
    services: Sequence[str] | None,
    *,
    partition_column: bool = True,
) -> tuple[str, list[Any]]:
    """``AND ...`` filter for ``[since, until)`` and services.

    With ``partition_column`` (querying the store's views) it also filters the ``date``
    column, which prunes whole day directories.
    """
    sql: list[str] = []
    params: list[Any] = []
    if since is not None:
        s = utc(since)
        sql.append(f'AND "{ts_col}" >= ?')
        params.append(s)
        if partition_column:
            sql.append('AND "date" >= ?')
            params.append(s.date())
    if until is not None:
        u = utc(until)
        sql.append(f'AND "{ts_col}" < ?')
        params.append(u)
        if partition_column:
            sql.append('AND "date" <= ?')
            params.append(u.date())
    if services is not None:
        sql.append("AND list_contains(?, service)")
        params.append(list(services))
    return " ".join(sql), params


def partition_sources(
    store: MetricsStore, table: str, since: datetime | None, until: datetime | None
) -> list[str]:
    """One ``read_parquet([...])`` source per day partition of ``table`` inside the window."""
    lo = utc(since).date() if since is not None else None
    hi = utc(until).date() if until is not None else None
    out = []
    for part in sorted((store.root / table).glob("date=*")):
        try:
            day = date.fromisoformat(part.name.removeprefix("date="))
        except ValueError:
            continue
        if (lo is not None and day < lo) or (hi is not None and day > hi):
            continue
        files = sorted(part.glob("*.parquet"))
        if files:
            listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            out.append(f"read_parquet([{listed}], union_by_name = true)")
    return out


def aggregate_by_partition(
    con: duckdb.DuckDBPyConnection,
    store: MetricsStore,
    table: str,
    agg_sql: str,
    finish_sql: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    params: list[Any] | None = None,
) -> pd.DataFrame:
    """Run ``agg_sql`` and then ``finish_sql`` on it once per day partition; concatenate.

    Exact whenever every group lies inside one UTC day (hour and day buckets do: the
    partition is the UTC day of the timestamp). One day's groups at a time keeps DuckDB's
    memory bounded: on 10 M rows it peaked at half the memory of one query over every
    file, at about the same speed (bench/analytics.py). ``finish_sql`` must be a
    per-row projection whose ``ORDER BY`` starts with the time bucket: partitions are
    visited in date order, so the concatenation is sorted as one global query would be.

    Args:
        con: A connection from :func:`store_connection` (holds the read lock).
        store: The store.
        table: Table whose partitions to read.
        agg_sql: Aggregation with a ``{source}`` placeholder for the relation.
        finish_sql: Final projection/sort with an ``{agg}`` placeholder.
        since: Skip partitions before this day (rows are filtered by ``agg_sql``).
        until: Skip partitions after this day.
        params: Parameters of ``agg_sql``.
    """
    # No files: run over the (typed, empty) view so the columns are still right.
    sources = partition_sources(store, table, since, until) or [table]
    parts = []
    for src in sources:
        sql = finish_sql.format(agg=f"({agg_sql.format(source=src)})")
        parts.append(con.sql(sql, params=params).df())
    nonempty = [p for p in parts if len(p)]
    if len(nonempty) <= 1:
        return nonempty[0] if nonempty else parts[0]
    return pd.concat(nonempty, ignore_index=True)


__all__ = [
    "aggregate_by_partition",
    "partition_sources",
    "store_connection",
    "tuning",
    "utc",
    "window_sql",
]
