"""Windowed call and probe metrics from cached per-service rollups of closed hours.

``GET .../monitoring/metrics`` asks, per service and source (probes, calls), for the
requests, failures, success rate, mean latency, last row time and the p50/p95 latency of
successes over the last ``window`` seconds. One DuckDB scan of a day per request costs
hundreds of milliseconds over a large store; here a window is answered from:

* **closed buckets** (:data:`BUCKET_SECONDS`, whole UTC hours) inside the window, each
  computed once from the store by one DuckDB aggregate and kept: per service and source
  the exact counts, failures, successes, latency sum and count and newest ``ts``, and a
  histogram of the successes' latencies in log-spaced bins;
* **the partial hours at both ends** as cached 5-minute buckets (:data:`FINE_SECONDS`),
  computed the same way;
* **the open edges**, exactly, as rows rolled up by numpy per request: the rows between
  the window's start and its first 5-minute bucket from that day's files only, and the
  current 5-minute bucket's rows (rows written ahead of now included) from the live view
  (:meth:`WindowedMetrics.add_rows`, fed by :class:`junction.service.live.LiveView` with
  every new row, spooled ones too), or from the store when the view does not hold them.

A window with fewer than :data:`MIN_BUCKETS` whole hours is computed exactly from the live
view's rows when it holds them all (:data:`MAX_RECENT`), else read exactly by the route;
one that needs more than :data:`MAX_SYNC_FILL` uncached hours too, while a background
thread computes them (so a cold read costs what the exact query costs).

Counts, failures, success rate, mean and ``last_at`` are exact (the mean up to float
summation order). Percentiles merge across buckets through histograms in log-spaced bins
(:mod:`junction.service.windowed_bins`), interpolated between ranks exactly as DuckDB's
``quantile_cont`` does from the bins' values, each within :data:`RELATIVE_ERROR` (1 %)
of the latencies it holds: the p50 and p95 are within **1 %** of the exact ones.

Invalidation: the store's views read ``<table>/*/*.parquet``; before every read the file
list of both tables is compared with the last one (names, sizes, modification times).
A new or rewritten file (a late row's segment, a recovered spool, a compaction's output)
drops the cached buckets its ``ts`` range covers (from the Parquet footer's statistics);
a removed file (compacted away) drops its partition's day. They are recomputed on the
next read that needs them.

Memory: per bucket, one row per service and source (~60 bytes) plus 10 bytes per
distinct (service, source, bin): at most one per row, fewer when a service is busy.
Measured at 1,000 services and 10 M calls over 10 days: 12 MB per day, 107 MB for all
10 days (7.8 M entries). The total is capped at :data:`MAX_ENTRIES` histogram entries
(~150 MB; the buckets furthest from the window asked for are dropped first); a window
that would need more is read exactly. A merged interior per window length in use
(:data:`MAX_INTERIORS`) holds services x bins counts (~10 MB at 1,000 services).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from junction.service.aggregates import StoreReader, epoch_us, from_epoch_us
from junction.service.windowed_bins import (
    RELATIVE_ERROR,
    Block,
    Interior,
    NameIndex,
    RowColumns,
    concat,
    empty_block,
    num,
    quantiles,
    rollup_rows,
)
from junction.service.windowed_sql import edges_sql, range_sql

log = logging.getLogger(__name__)

BUCKET_SECONDS = 3600
"""Width of a cached bucket (whole UTC hours)."""
MAX_ENTRIES = 12_000_000
"""Histogram entries kept at most, all buckets together (12 bytes each)."""
MIN_BUCKETS = 1
"""A window with fewer whole buckets than this is read exactly (one DuckDB query)."""
MAX_SYNC_FILL = 3
"""Hours a request computes itself at most; more are computed by a background thread
(a few at a time) while requests read exactly, so a cold window costs no more than the
exact query."""

FINE_SECONDS = 300
"""Width of the buckets cached inside the partial hours at the window's two ends."""
MAX_FINE = 64
"""Fine buckets kept at most (the oldest used go first)."""

RECENT_SECONDS = 600
"""Rows of the live view kept at least, for the current bucket (twice :data:`FINE_SECONDS`)."""
MAX_RECENT = 2_000_000
"""Rows of the live view kept for the whole of its window at most (then only the last
:data:`RECENT_SECONDS`, and shorter windows are read exactly)."""

_B_US = BUCKET_SECONDS * 1_000_000
_F_US = FINE_SECONDS * 1_000_000
_PER_HOUR = BUCKET_SECONDS // FINE_SECONDS
_SOURCES = ("probes", "calls")
_TABLES = ("probes", "calls")


class WindowedMetrics:
    """Cached hour rollups of the store's ``probes`` and ``calls``; thread-safe.

    Args:
        reader: Gives the store's :class:`StoreReader` (called in the reading thread).
        max_entries: Histogram entries kept at most (see :data:`MAX_ENTRIES`).
    """

    def __init__(
        self,
        reader: Callable[[], StoreReader],
        *,
        max_entries: int = MAX_ENTRIES,
        background: bool = True,
    ) -> None:
        self._reader = reader
        self._background = background
        self._warming: threading.Thread | None = None
        self.max_entries = max_entries
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._blocks: dict[int, Block] = {}
        self._interiors: dict[tuple[int, int], Interior] = {}
        self._fine: dict[int, Block] = {}
        # Rows the live view gave, as arrays (time us, service number, source, ok, latency):
        # windows under an hour and the current bucket of longer ones come from them.
        self._recent_from: int | None = None
        self._recent_pruned: int | None = None
        self._columns: list[RowColumns] = []
        self._recent_names = NameIndex()
        self._recent_kept = 0
        self._recent_lock = threading.Lock()
        self._entries = 0
        # Parquet file -> (mtime ns, size, ts range in epoch us or None when never read).
        self._files: dict[str, tuple[int, int, tuple[int, int] | None]] = {}
        self._lock = threading.Lock()
        self.generation = 0
        """Grows whenever the store's files change (a cached answer is then stale)."""

    # ------------------------------------------------------------------ reads

    def covers(self, since: datetime, now: datetime) -> bool:
        """Whether ``[since, now]`` holds at least :data:`MIN_BUCKETS` whole buckets."""
        first = -(-epoch_us(since) // _B_US)
        return epoch_us(now) // _B_US - first >= MIN_BUCKETS

    def metrics(
        self, names: Sequence[str], since: datetime, now: datetime | None = None
    ) -> list[dict[str, Any]] | None:
        """Per service and source, the rows ``ts >= since``' metrics (``MetricsRow`` fields).

        Rows are ordered by service then source, one per pair that has rows, as the
        exact query's. ``None`` when the window is not covered (too short, or more than
        the memory cap): read it exactly.
        """
        now = datetime.now(UTC) if now is None else now
        if not self.covers(since, now):
            return self._recent_metrics(names, since)
        s_us, n_us = epoch_us(since), epoch_us(now)
        first, last = -(-s_us // _B_US), n_us // _B_US
        # Fine buckets inside the partial hours; rows outside them are read as rows.
        fine = [
            *range(-(-s_us // _F_US), first * _PER_HOUR),
            *range(last * _PER_HOUR, n_us // _F_US),
        ]
        with self._lock:
            reader = self._reader()
            self._check_files(reader)
            missing = [b for b in range(first, last) if b not in self._blocks]
            if self._background and len(missing) > MAX_SYNC_FILL:
                self._warm_later(missing)
                return None
            for lo, hi in _runs(missing):
                self._fill(reader, lo, hi, _B_US, self._blocks)
            blocks = [self._blocks[b] for b in range(first, last)]
            if sum(b.entries for b in blocks) > self.max_entries:
                return None
            self._evict(first, last)
            for lo, hi in _runs([b for b in fine if b not in self._fine]):
                self._fill(reader, lo, hi, _F_US, self._fine)
            edge_blocks = [self._fine[b] for b in fine]
            for b in fine:  # most recently used last
                self._fine[b] = self._fine.pop(b)
            while len(self._fine) > max(MAX_FINE, len(fine)):
                self._fine.pop(next(iter(self._fine)))
            # Rows before the first fine bucket (or the first whole hour) are read as rows.
            until = fine[0] if fine and fine[0] < first * _PER_HOUR else first * _PER_HOUR
            start = from_epoch_us(until * _F_US)
            end_from = last * _PER_HOUR
            if fine and fine[-1] >= end_from:
                end_from = fine[-1] + 1
            after = from_epoch_us(end_from * _F_US)
            recent = self._recent_block(end_from * _F_US)  # the current bucket, from memory
            edge = self._edge_rows(reader, since, start, None if recent else after)
            if recent is not None:
                edge = concat([edge, recent])
            interior = self._interior_of(first, last, blocks)
            return self._answer(interior, concat([*edge_blocks, edge]), names)

    def _warm_later(self, missing: list[int]) -> None:
        """Compute the hours ``missing`` in a background thread, a few per hold of the lock."""
        if self._warming is not None and self._warming.is_alive():
            return

        def run() -> None:
            try:
                for i in range(0, len(missing), MAX_SYNC_FILL):
                    with self._lock:
                        reader = self._reader()
                        todo = [b for b in missing[i : i + MAX_SYNC_FILL] if b not in self._blocks]
                        for lo, hi in _runs(todo):
                            self._fill(reader, lo, hi, _B_US, self._blocks)
            except Exception as exc:  # requests read exactly meanwhile and retry
                log.warning("windowed metrics: computing hourly rollups failed: %s", exc)

        self._warming = threading.Thread(target=run, name="junction-windowed-warm", daemon=True)
        self._warming.start()

    def check(self) -> int:
        """Compare the store's files with the last look (drop what changed); the generation."""
        with self._lock:
            self._check_files(self._reader())
            return self.generation

    def memory_bytes(self) -> int:
        """Bytes held by the cached buckets' arrays."""
        return sum(
            getattr(b, f).nbytes for b in self._blocks.values() for f in Block.__dataclass_fields__
        )

    # ------------------------------------------------------------------ the store

    def _check_files(self, reader: StoreReader) -> None:
        root = reader.store.root
        now_files: dict[str, tuple[int, int]] = {}
        for table in _TABLES:
            try:
                parts = [e for e in os.scandir(root / table) if e.is_dir()]
            except OSError:  # no table yet; an unreadable store fails its read instead
                continue
            for part in parts:
                try:
                    entries = list(os.scandir(part.path))
                except OSError:
                    continue
                for e in entries:
                    if e.name.endswith(".parquet"):
                        try:
                            st = e.stat()
                        except FileNotFoundError:
                            continue
                        now_files[e.path] = (st.st_mtime_ns, st.st_size)
        dirty: list[tuple[int, int]] = []
        for path, old in self._files.items():
            if path not in now_files:
                dirty.append(old[2] or _day_range(path))
        fresh: dict[str, tuple[int, int, tuple[int, int] | None]] = {}
        for path, (mtime, size) in now_files.items():
            old_entry = self._files.get(path)
            if old_entry is not None and old_entry[:2] == (mtime, size):
                fresh[path] = old_entry
                continue
            span = _ts_range(path) if self._blocks else None
            if self._blocks:
                dirty.append(span or _day_range(path))
            fresh[path] = (mtime, size, span)
        if dirty or len(fresh) != len(self._files):
            self.generation += 1
        self._files = fresh
        for lo, hi in dirty:
            for b in [b for b in self._blocks if lo // _B_US <= b <= hi // _B_US]:
                self._entries -= self._blocks.pop(b).entries
                self._interiors = {k: v for k, v in self._interiors.items() if not k[0] <= b < k[1]}
            for b in [b for b in self._fine if lo // _F_US <= b <= hi // _F_US]:
                del self._fine[b]

    def _fill(
        self, reader: StoreReader, lo: int, hi: int, width_us: int, into: dict[int, Block]
    ) -> None:
        """Compute and keep the buckets ``lo`` .. ``hi - 1`` (``width_us`` wide)."""
        start, end = from_epoch_us(lo * width_us), from_epoch_us(hi * width_us)
        params = {"lo": start, "hi": end, "dlo": start.date(), "dhi": (end - _US).date()}
        got = self._read(reader, range_sql(width_us), params)
        for b in range(lo, hi):
            block = got.get(b, empty_block())
            into[b] = block
            if into is self._blocks:
                self._entries += block.entries

    def _evict(self, first: int, last: int) -> None:
        """Drop the buckets furthest from the window asked for until under the cap."""
        if self._entries <= self.max_entries:
            return
        for b in sorted(self._blocks, key=lambda b: -abs(b - (first + last) / 2)):
            if self._entries <= self.max_entries:
                break
            if not first <= b < last:
                self._entries -= self._blocks.pop(b).entries
                self._interiors = {k: v for k, v in self._interiors.items() if not k[0] <= b < k[1]}

    def _read(self, reader: StoreReader, sql: str, params: dict[str, Any]) -> dict[int, Block]:
        """Run a rollup statement; its blocks by bucket."""
        with reader.cursor() as cur:
            used = {k: v for k, v in params.items() if f"${k}" in sql}
            table = _arrow(cur, sql, used)
        if table.num_rows == 0:
            return {}
        idx = self._indices(table.column("service"))
        cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names[1:]}
        order = np.argsort(cols["bucket"], kind="stable")
        cols = {c: v[order] for c, v in cols.items()}
        keys = idx[order] * 2 + cols["src"]
        buckets = cols["bucket"]
        whole = cols["whole"].astype(bool)
        bins = cols["bin"]
        out: dict[int, Block] = {}
        bounds = np.flatnonzero(np.diff(buckets)) + 1
        for sl in np.split(np.arange(len(buckets)), bounds):
            agg = sl[whole[sl]]
            hist = sl[~whole[sl] & ~np.isnan(bins[sl].astype(np.float64))]

            def col(name: str, dtype: Any, rows: np.ndarray = agg) -> np.ndarray:
                return np.asarray(cols[name][rows], dtype=dtype)

            out[int(buckets[sl[0]])] = Block(
                keys=keys[agg],
                n=col("n", np.int64),
                ok_n=col("ok_n", np.int64),
                fail_n=col("fail_n", np.int64),
                lat_sum=np.nan_to_num(col("lat_sum", np.float64)),
                lat_n=col("lat_n", np.int64),
                last_us=col("last_us", np.int64),
                hkeys=keys[hist].astype(np.int32),
                hbins=bins[hist].astype(np.int32),
                hcounts=col("ok_n", np.int32, hist),
            )
        return out

    # ------------------------------------------------------------------ merging

    def add_rows(
        self,
        probes: Iterable[dict[str, Any]],
        calls: Iterable[dict[str, Any]],
        complete_since: datetime,
    ) -> None:
        """New rows of the store as the live view reads them (spooled ones included).

        Args:
            probes: New ``probes`` rows.
            calls: New ``calls`` rows.
            complete_since: Every row from this time on has been (or is being) given.
        """
        since_us = epoch_us(complete_since)
        with self._recent_lock:
            new: list[tuple[int, str, int, Any, Any]] = []
            for src, rows in ((0, probes), (1, calls)):
                for r in rows:
                    name = r.get("service")
                    if isinstance(name, str):
                        lat = r.get("latency_ms")
                        new.append((epoch_us(r["ts"]), name, src, r.get("ok"), lat))
            if new:
                self._columns.append(self._recent_names.columns(new))
            now_us = epoch_us(datetime.now(UTC))
            # Pruned once a minute, not at every batch (the view reads every 0.3 s). The
            # view's whole window is kept (windows under an hour are answered from it),
            # at least the current bucket's rows when that would be too many.
            if self._recent_pruned is None or now_us - self._recent_pruned >= 60_000_000:
                horizon = now_us - RECENT_SECONDS * 1_000_000
                keep = min(horizon, since_us)
                held = RowColumns.merged(self._columns, keep)
                if len(held.us) > MAX_RECENT:
                    keep = horizon
                    held = RowColumns.merged([held], keep)
                self._columns = [held]
                self._recent_pruned = now_us
                self._recent_kept = keep
            # Rows older than the view's horizon are no longer followed (late ones missed).
            self._recent_from = max(self._recent_kept, since_us)

    def _recent_metrics(self, names: Sequence[str], since: datetime) -> list[dict[str, Any]] | None:
        """The window's metrics from the live view's rows (``None``: not all held)."""
        s_us = epoch_us(since)
        with self._recent_lock:
            if self._recent_from is None or self._recent_from > s_us:
                return None
            self._columns = [RowColumns.merged(self._columns, None)]
            columns = self._columns[0]
            services = list(self._recent_names.names)
        return columns.metrics(services, names, s_us)

    def _recent_block(self, after_us: int) -> Block | None:
        """The rows from ``after_us`` on given by :meth:`add_rows` (``None``: not all held)."""
        with self._recent_lock:
            if self._recent_from is None or self._recent_from > after_us:
                return None
            self._columns = [RowColumns.merged(self._columns, None)]
            columns = self._columns[0]
            services = list(self._recent_names.names)
        mask = columns.us >= after_us
        if not mask.any():
            return empty_block()
        svc = columns.svc[mask]
        # The live view's service numbers -> this cache's indices (only those present).
        present = np.unique(svc)
        to_index = np.zeros(len(services), np.int64)
        to_index[present] = self._indices(
            pa.chunked_array([pa.array([services[i] for i in present.tolist()], pa.string())])
        )
        return rollup_rows(
            to_index[svc] * 2 + columns.src[mask],
            columns.us[mask],
            columns.okv[mask],
            columns.failv[mask],
            columns.has[mask],
            columns.lat[mask],
        )

    def _edge_rows(
        self, reader: StoreReader, since: datetime, until: datetime, after: datetime | None
    ) -> Block:
        """Rows in ``[since, until)`` and from ``after`` on (read exactly, as rows: few),
        rolled up by numpy."""
        far = datetime(9999, 1, 1, tzinfo=UTC)  # `after` None: no rows from the query
        params = {
            "since": since,
            "first": until,
            "last": after or far,
            "dsince": since.date(),
            "dfirst": (until - _US).date(),
            "dlast": (after or far).date(),
        }
        with reader.cursor() as cur:  # the read lock: the files listed stay
            sql = edges_sql(reader.store.root, since, until, after is not None)
            if sql is None:
                return empty_block()
            used = {k: v for k, v in params.items() if f"${k}" in sql}
            table = _arrow(cur, sql, used)
        if table.num_rows == 0:
            return empty_block()
        idx = self._indices(table.column("service"))
        c = {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names[1:]}
        return rollup_rows(
            idx * 2 + c["src"].astype(np.int64),
            c["us"].astype(np.int64),
            c["okv"].astype(bool),
            c["failv"].astype(bool),
            c["has_lat"].astype(bool),
            np.where(c["has_lat"], c["latency_ms"], 0.0).astype(np.float64),
        )

    def _indices(self, service: pa.ChunkedArray) -> np.ndarray:
        """Service indices of a column of names (new names are added)."""
        for name in pc.unique(service).to_pylist():
            if name not in self._index:
                self._index[name] = len(self._names)
                self._names.append(name)
        idx = pc.index_in(service, value_set=pa.array(self._names, pa.string()))
        return np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)

    def _interior_of(self, first: int, last: int, blocks: Sequence[Block]) -> Interior:
        """The whole buckets' rollups merged (kept while they stay valid)."""
        size = 2 * len(self._names)
        hit = self._interiors.get((first, last))
        if hit is not None and hit.size == size:
            return hit
        interior = Interior.of(concat(blocks), size)
        if len(self._interiors) >= MAX_INTERIORS:
            self._interiors.pop(next(iter(self._interiors)))
        self._interiors[(first, last)] = interior
        return interior

    def _answer(
        self, interior: Interior, edge: Block, names: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The metrics rows of ``names``: the interior's rollups and the edges' together."""
        size = 2 * len(self._names)
        if interior.size != size:  # the edges named a new service
            interior = interior.grown(size)
        both = Interior.of(edge, size, like=interior)
        n = interior.n + both.n
        ok_n = interior.ok_n + both.ok_n
        fail_n = interior.fail_n + both.fail_n
        lat_sum = interior.lat_sum + both.lat_sum
        lat_n = interior.lat_n + both.lat_n
        last_us = np.maximum(interior.last_us, both.last_us)
        p50, p95 = quantiles(interior, both)
        out = []
        for name in sorted(set(names)):
            i = self._index.get(name)
            if i is None:
                continue
            for src in (1, 0):  # 'calls' sorts before 'probes'
                k = 2 * i + src
                if n[k] == 0:
                    continue
                out.append(
                    {
                        "service": name,
                        "source": _SOURCES[src],
                        "requests": int(n[k]),
                        "failures": int(fail_n[k]),
                        "success_rate": ok_n[k] / n[k],
                        "p50_latency_ms": num(p50[k]),
                        "p95_latency_ms": num(p95[k]),
                        "mean_latency_ms": lat_sum[k] / lat_n[k] if lat_n[k] else None,
                        "last_at": from_epoch_us(int(last_us[k])),
                    }
                )
        return out


_US = timedelta(microseconds=1)
MAX_INTERIORS = 4
"""Merged interiors kept (one per window length in use)."""


def _arrow(cur: Any, sql: str, params: dict[str, Any]) -> pa.Table:
    """A statement's result as an Arrow table (a relation's: no extra copy of the rows)."""
    table: pa.Table = cur.sql(sql, params=params).to_arrow_table()
    return table


def _runs(buckets: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous runs ``[lo, hi)`` of sorted bucket numbers."""
    runs: list[tuple[int, int]] = []
    for b in buckets:
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + 1)
        else:
            runs.append((b, b + 1))
    return runs


def _day_range(path: str) -> tuple[int, int]:
    """The ``ts`` range of a file's ``date=`` partition (everything when it has none)."""
    for part in reversed(os.path.dirname(path).split(os.sep)):
        if part.startswith("date="):
            try:
                day = date.fromisoformat(part[5:])
            except ValueError:
                break
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return epoch_us(start), epoch_us(start + timedelta(days=1))
    return np.iinfo(np.int64).min // 2, np.iinfo(np.int64).max // 2


def _ts_range(path: str) -> tuple[int, int] | None:
    """A Parquet file's ``ts`` range from its footer (``None``: unknown)."""
    try:
        meta = pq.read_metadata(path)
        col = meta.schema.names.index("ts")
        lo: int | None = None
        hi: int | None = None
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(col).statistics
            if stats is None or not stats.has_min_max:
                return None
            a, b = epoch_us(_aware(stats.min)), epoch_us(_aware(stats.max))
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    except (OSError, ValueError, pa.ArrowException):
        return None
    return None if lo is None or hi is None else (lo, hi)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


__all__ = ["BUCKET_SECONDS", "MAX_ENTRIES", "RELATIVE_ERROR", "WindowedMetrics"]
