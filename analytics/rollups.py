"""Incremental hourly (and exact daily) rollups of the metrics store, idempotent per hour.

Layout, under ``<store root>/_rollups/`` (outside the store's table directories, so the
store's views and compaction never see it)::

    state.json                                   watermark: every ingested segment file
                                                 (size, mtime, the hours it holds, max ts)
    calls_hourly/date=YYYY-MM-DD.parquet         a day's hourly rows: (hour, service, action)
    calls_daily/date=YYYY-MM-DD.parquet          a day's daily rows:  (day, service, action)
    probes_hourly/..., probes_daily/...          the same for probes, per service
    .lock                                        one refresher at a time

How a refresh knows what to recompute: store segments are immutable files, so the state
records each ingested file with the hours its rows fall in. A refresh lists the table's
files; a new (or changed) file dirties the hours it contains (read from its ``ts`` column),
a vanished file dirties the hours it held. Late rows, out-of-order flushes, a writer's
recovered spool, compaction (which replaces inputs by one output with the same rows) are
all caught this way, which a max-timestamp watermark alone would miss. The max
timestamp seen is kept too (``watermark``), for display.

Idempotence: each dirty hour is recomputed from *all* raw rows of that hour (the day
partition's files, filtered to the hour; files are sorted by time so DuckDB skips most
row groups); the day's hourly file is rewritten with that hour's rows replaced (old rows
of the hour dropped, new ones added) through a temp file and an atomic rename. Running a
refresh twice, or after a crash at any point, replaces the same rows: it never
duplicates. (One file per day rather than per hour: reading 720 tiny files for a 30-day
report cost more than rewriting a small day file per refresh.) The state is written after
the rollup files, so a crash in between only recomputes some hours again.

Exactness: every hourly number is computed from raw rows with the same SQL as a full
recompute (:func:`hourly_from_raw`), so incremental and full results are identical,
percentiles included. Sums are taken as ``DECIMAL(18,3)`` (exact integer arithmetic, in
any order) so means are bit-identical too. Percentiles cannot be merged from hourly
percentiles, so the *daily* rollup of every dirty day is recomputed from that day's raw
rows (one partition directory; ``daily=False`` skips it): daily numbers are exact and
equal to :func:`daily_from_raw`, at the cost of one day's scan per refresh that touches it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from analytics.partitions import aggregate_by_partition, store_connection, tuning
from junction.settings import get_settings
from junction.store import FILE_MODE, MetricsStore, create_private, make_private_dir

ROLLUP_TABLES = ("calls", "probes")
"""Store tables that have rollups."""

_STATE_VERSION = 1
_HOUR_US = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Per table: the group keys and the aggregate expressions (shared by the incremental and
# the full-recompute paths, which is what makes their numbers identical).
_KEYS = {"calls": ["service", "action"], "probes": ["service"]}
_AGGREGATES = """
    count(*) AS n,
    count(*) FILTER (WHERE ok) AS ok_n,
    sum(CAST(latency_ms AS DECIMAL(18, 3))) AS latency_sum_ms,
    min(latency_ms) AS min_ms,
    max(latency_ms) AS max_ms,
    quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q
"""
# Public column names per table (``n``/``ok_n`` renamed to calls/ok_calls or probes/ok_probes).
_COUNT_NAMES = {"calls": ("calls", "ok_calls"), "probes": ("probes", "ok_probes")}


def _agg_sql(table: str, grain: str, source: str, where: str = "") -> str:
    keys = ", ".join(_KEYS[table])
    return f"""
        SELECT date_trunc('{grain}', ts) AS bucket, {keys}, {_AGGREGATES}
        FROM {source} WHERE true {where}
        GROUP BY ALL
    """


def _finish_sql(table: str, inner: str) -> str:
    """Stored columns -> public columns (rates, mean, percentiles), sorted."""
    n, ok = _COUNT_NAMES[table]
    keys = ", ".join(_KEYS[table])
    return f"""
        SELECT bucket, {keys}, n AS {n}, ok_n AS {ok},
               ok_n / n AS {"success_rate" if table == "calls" else "uptime"},
               q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms,
               CAST(latency_sum_ms AS DOUBLE) / n AS mean_ms,
               min_ms, max_ms
        FROM ({inner})
        ORDER BY bucket, {keys}
    """


def _files_sql(files: Sequence[Path]) -> str:
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listed}], union_by_name = true)"


def _check_table(table: str) -> None:
    if table not in ROLLUP_TABLES:
        raise ValueError(f"no rollups for table {table!r}; known: {', '.join(ROLLUP_TABLES)}")


def _window(since: datetime | None, until: datetime | None) -> str:
    clauses = []
    for op, value in ((">=", since), ("<", until)):
        if value is not None:
            v = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
            clauses.append(f"AND ts {op} TIMESTAMPTZ '{v.isoformat()}'")
    return " ".join(clauses)


def _from_raw(
    store: MetricsStore,
    table: str,
    grain: str,
    since: datetime | None,
    until: datetime | None,
    duck: dict[str, Any],
) -> pd.DataFrame:
    _check_table(table)
    agg = _agg_sql(table, grain, "{source}", _window(since, until))
    finish = _finish_sql(table, "SELECT * FROM {agg}")
    with store_connection(store, **duck) as con:
        return aggregate_by_partition(con, store, table, agg, finish, since=since, until=until)


def hourly_from_raw(
    store: MetricsStore,
    table: str = "calls",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """Full recompute of the hourly rollup from the raw Parquet files (the reference).

    Computed one day partition at a time (see :func:`analytics.partitions.aggregate_by_partition`).

    Returns:
        The same columns and order as :meth:`Rollups.hourly`.
    """
    return _from_raw(
        store, table, "hour", since, until, tuning(get_settings(), memory_limit, threads)
    )


def daily_from_raw(
    store: MetricsStore,
    table: str = "calls",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """Full recompute of the daily rollup from the raw Parquet files (the reference).

    Returns:
        The same columns and order as :meth:`Rollups.daily`.
    """
    return _from_raw(
        store, table, "day", since, until, tuning(get_settings(), memory_limit, threads)
    )


@dataclass
class RefreshResult:
    """What one :meth:`Rollups.refresh` did."""

    new_files: int = 0
    gone_files: int = 0
    hours_recomputed: dict[str, int] = field(default_factory=dict)
    days_recomputed: dict[str, int] = field(default_factory=dict)
    watermark: datetime | None = None
    seconds: float = 0.0


@dataclass
class _FileState:
    size: int
    mtime_ns: int
    hours: list[int]  # epoch hours holding rows of this file
    max_us: int | None


class Rollups:
    """Hourly/daily rollups kept under ``<store root>/_rollups`` (see the module docstring)."""

    def __init__(
        self,
        store: MetricsStore | str | Path,
        *,
        tables: Sequence[str] = ROLLUP_TABLES,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        """Open the rollups of a store (nothing is computed until :meth:`refresh`).

        Args:
            store: The metrics store (or its root).
            tables: Which tables to roll up (``calls``, ``probes``).
            memory_limit: DuckDB memory limit (default: the analytics setting).
            threads: DuckDB threads (default: the analytics setting).
        """
        for table in tables:
            _check_table(table)
        self.store = store if isinstance(store, MetricsStore) else MetricsStore(store)
        self.dir = self.store.root / "_rollups"
        self.tables = tuple(tables)
        self._tuning = tuning(get_settings(), memory_limit, threads)

    def __repr__(self) -> str:
        return f"Rollups({str(self.store.root)!r})"

    # ------------------------------------------------------------------ state

    def _load_state(self) -> dict[str, dict[str, _FileState]]:
        path = self.dir / "state.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return {t: {} for t in self.tables}
        if raw.get("version") != _STATE_VERSION:
            raise RuntimeError(f"{path}: unknown rollup state version; run rebuild()")
        return {
            t: {name: _FileState(**fs) for name, fs in raw["tables"].get(t, {}).items()}
            for t in self.tables
        }

    def _save_state(self, state: dict[str, dict[str, _FileState]], watermark: int | None) -> None:
        body = {
            "version": _STATE_VERSION,
            "watermark": _iso(watermark),
            "updated_at": datetime.now(UTC).isoformat(),
            "tables": {
                t: {name: vars(fs) for name, fs in sorted(files.items())}
                for t, files in state.items()
            },
        }
        _atomic_write(self.dir / "state.json", json.dumps(body, separators=(",", ":")).encode())

    @property
    def watermark(self) -> datetime | None:
        """Latest raw timestamp the rollups have ingested (None before the first refresh)."""
        try:
            raw = json.loads((self.dir / "state.json").read_text())
        except FileNotFoundError:
            return None
        value = raw.get("watermark")
        return datetime.fromisoformat(value) if value else None

    # ------------------------------------------------------------------ refresh

    def refresh(self, *, daily: bool = True) -> RefreshResult:
        """Bring the rollups up to date with the store's published segments.

        Only hours touched by new, changed or vanished files are recomputed (from raw);
        with ``daily`` the days containing them are recomputed too. Idempotent.

        Returns:
            What was recomputed and the new watermark.
        """
        started = time.perf_counter()
        make_private_dir(self.dir)
        result = RefreshResult()
        with FileLock(str(self.dir / ".lock"), mode=FILE_MODE):
            state = self._load_state()
            with store_connection(self.store, **self._tuning) as con:
                for table in self.tables:
                    self._refresh_table(con, table, state[table], result, daily=daily)
            maxes = [fs.max_us for files in state.values() for fs in files.values() if fs.max_us]
            watermark = max(maxes) if maxes else None
            self._save_state(state, watermark)
        result.watermark = _from_us(watermark) if watermark is not None else None
        result.seconds = time.perf_counter() - started
        return result

    def rebuild(self) -> RefreshResult:
        """Drop every rollup and recompute from scratch."""
        lock = FileLock(str(self.dir / ".lock"), mode=FILE_MODE)
        with lock if self.dir.exists() else contextlib.nullcontext():
            for table in self.tables:
                for suffix in ("hourly", "daily"):
                    shutil.rmtree(self.dir / f"{table}_{suffix}", ignore_errors=True)
            (self.dir / "state.json").unlink(missing_ok=True)
        return self.refresh()

    def _refresh_table(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        known: dict[str, _FileState],
        result: RefreshResult,
        *,
        daily: bool,
    ) -> None:
        table_dir = self.store.root / table
        current: dict[str, os.stat_result] = {}
        for path in sorted(table_dir.glob("date=*/*.parquet")):
            with contextlib.suppress(FileNotFoundError):
                current[path.relative_to(table_dir).as_posix()] = path.stat()
        dirty: set[int] = set()
        for name in set(known) - set(current):
            dirty.update(known.pop(name).hours)
            result.gone_files += 1
        fresh = [
            name
            for name, st in current.items()
            if name not in known
            or known[name].size != st.st_size
            or known[name].mtime_ns != st.st_mtime_ns
        ]
        for name in fresh:
            if name in known:
                dirty.update(known[name].hours)
        if fresh:
            # The hours (and latest ts) each new file holds: one scan of its ts column.
            paths = [table_dir / name for name in fresh]
            rows = con.execute(
                f"""
                SELECT filename,
                       list(DISTINCT CAST(epoch_us(ts) // {_HOUR_US} AS BIGINT)) AS hours,
                       epoch_us(max(ts)) AS max_us
                FROM read_parquet([{", ".join(_lit(p) for p in paths)}], filename = true)
                GROUP BY filename
                """
            ).fetchall()
            seen = {Path(f).relative_to(table_dir).as_posix(): (h, m) for f, h, m in rows}
            for name in fresh:
                hours, max_us = seen.get(name, ([], None))
                st = current[name]
                known[name] = _FileState(st.st_size, st.st_mtime_ns, sorted(hours), max_us)
                dirty.update(hours)
            result.new_files += len(fresh)
        by_day: dict[date, list[int]] = {}
        for hour in sorted(dirty):
            by_day.setdefault(_from_us(hour * _HOUR_US).date(), []).append(hour)
        files_by_day: dict[date, list[Path]] = {}
        for name in current:
            day = date.fromisoformat(name.split("/", 1)[0].removeprefix("date="))
            files_by_day.setdefault(day, []).append(table_dir / name)
        for day, hours in by_day.items():
            self._recompute_hours(con, table, day, hours, files_by_day.get(day, []))
            if daily:
                self._recompute_day(con, table, day, files_by_day.get(day, []))
        result.hours_recomputed[table] = len(dirty)
        result.days_recomputed[table] = len(by_day) if daily else 0

    def _recompute_hours(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        day: date,
        hours: list[int],
        files: list[Path],
    ) -> None:
        """Replace the rows of ``hours`` (and any hour between them) in the day's file."""
        target = self.dir / f"{table}_hourly" / f"date={day.isoformat()}.parquet"
        lo, hi = min(hours), max(hours) + 1
        parts: list[pa.Table] = []
        if target.exists():
            old = pq.read_table(target)
            old_hours = old["bucket"].cast(pa.int64()).to_numpy() // _HOUR_US
            # Every hour in [lo, hi) is recomputed from all its raw rows below: drop them.
            parts.append(old.filter(pa.array((old_hours < lo) | (old_hours >= hi))))
        if files:
            where = (
                f"AND ts >= make_timestamptz({lo * _HOUR_US}) "
                f"AND ts < make_timestamptz({hi * _HOUR_US})"
            )
            parts.append(_arrow(con, _agg_sql(table, "hour", _files_sql(files), where)))
        parts = [p for p in parts if p.num_rows]
        if not parts:  # no rows left that day (e.g. its files were deleted)
            target.unlink(missing_ok=True)
            return
        merged = pa.concat_tables(parts, promote_options="default")
        keys = [("bucket", "ascending"), *((k, "ascending") for k in _KEYS[table])]
        _write_parquet(merged.sort_by(keys), target)

    def _recompute_day(
        self, con: duckdb.DuckDBPyConnection, table: str, day: date, files: list[Path]
    ) -> None:
        target = self.dir / f"{table}_daily" / f"date={day.isoformat()}.parquet"
        if not files:
            target.unlink(missing_ok=True)
            return
        tbl = _arrow(con, _agg_sql(table, "day", _files_sql(files)))
        if tbl.num_rows:
            _write_parquet(tbl, target)
        else:
            target.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading

    def _read(
        self,
        table: str,
        grain: str,
        since: datetime | None,
        until: datetime | None,
        services: Sequence[str] | None,
    ) -> pd.DataFrame:
        _check_table(table)
        pattern = (
            self.dir / f"{table}_hourly" / "*.parquet"
            if grain == "hourly"
            else self.dir / f"{table}_daily" / "*.parquet"
        )
        where = _window(since, None).replace("ts", "bucket")
        if until is not None:
            where += " " + _window(None, until).replace("ts", "bucket")
        if services is not None:
            names = ", ".join("'" + s.replace("'", "''") + "'" for s in services)
            where += f" AND service IN ({names})" if services else " AND false"
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            if any(pattern.parent.glob("*.parquet")):
                source = f"read_parquet({_lit(pattern)})"
            else:  # no rollups yet: the same columns, no rows
                source = f"({_agg_sql(table, 'hour', self._empty(table))})"
            return con.execute(
                _finish_sql(table, f"SELECT * FROM {source} WHERE true {where}")
            ).df()
        finally:
            con.close()

    def _empty(self, table: str) -> str:
        keys = ", ".join(f"CAST(NULL AS VARCHAR) AS {k}" for k in _KEYS[table])
        return (
            f"(SELECT CAST(NULL AS TIMESTAMPTZ) AS ts, {keys}, CAST(NULL AS BOOLEAN) AS ok, "
            "CAST(NULL AS DOUBLE) AS latency_ms WHERE false)"
        )

    def hourly(
        self,
        table: str = "calls",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        services: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The hourly rollup as of the last refresh.

        Returns:
            Columns ``bucket``, the keys (``service``, ``action`` for calls), ``calls``/
            ``ok_calls``/``success_rate`` (probes: ``probes``/``ok_probes``/``uptime``),
            ``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``min_ms``, ``max_ms``; sorted.
        """
        return self._read(table, "hourly", since, until, services)

    def daily(
        self,
        table: str = "calls",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        services: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The daily rollup as of the last refresh (exact: see the module docstring).

        Returns:
            The columns of :meth:`hourly`, one row per UTC day.
        """
        return self._read(table, "daily", since, until, services)


# --------------------------------------------------------------------------- helpers


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    table = con.sql(sql).to_arrow_table()
    assert isinstance(table, pa.Table)
    return table


def _lit(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _iso(micros: int | None) -> str | None:
    return _from_us(micros).isoformat() if micros is not None else None


def _atomic_write(path: Path, data: bytes) -> None:
    make_private_dir(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with create_private(tmp) as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_parquet(tbl: pa.Table, path: Path) -> None:
    make_private_dir(path.parent)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with create_private(tmp) as fh:
            pq.write_table(tbl, fh, compression="zstd")
        os.replace(tmp, path)  # readers see the old hour or the new one, never half
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def iter_hours(start: datetime, end: datetime) -> Iterable[datetime]:
    """Whole UTC hours in ``[start, end)`` (helper for callers that page by hour)."""
    current = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while current < end:
        yield current
        current += timedelta(hours=1)


__all__ = [
    "ROLLUP_TABLES",
    "RefreshResult",
    "Rollups",
    "daily_from_raw",
    "hourly_from_raw",
    "iter_hours",
]
