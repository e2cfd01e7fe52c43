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
thread computes them (so a cold read costs what the exact query costs). The last
:data:`WARM_HOURS` hours are computed in the background as soon as the live view starts.

The route reads through :meth:`WindowedMetrics.rendered`: per window length in use, a
:class:`~junction.service.windowed_slide.Slide` built once from the parts above and then
moved along: the rows the live view gives are added, the store's rows at the window's
start (read :data:`HOLD_SECONDS` at a time) subtracted as they leave, and only the rows
of the services they touch computed and rendered again. A read after a new row costs
what changed (about a millisecond at 1,000 services), no store read.

Counts, failures, success rate, mean and ``last_at`` are exact (the mean up to float
summation order). Percentiles merge across buckets through histograms in log-spaced bins
(:mod:`junction.service.windowed_bins`), interpolated between ranks exactly as DuckDB's
``quantile_cont`` does from the bins' values, each within :data:`RELATIVE_ERROR` (1 %)
of the latencies it holds: the p50 and p95 are within **1 %** of the exact ones.

Invalidation: before every read the files of both tables are compared with the last look
(:mod:`junction.service.windowed_files`). A new or rewritten file (a late row's segment, a
recovered spool) drops the cached buckets its ``ts`` range covers, and the slides whose
store part it reaches; a removed file drops its range (its partition's day when never
read). A compaction (the same rows rewritten) drops nothing. What was dropped is
recomputed on the next read that needs it.

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
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from junction.service.aggregates import StoreReader, epoch_us, from_epoch_us
from junction.service.windowed_bins import (
    RELATIVE_ERROR,
    Block,
    Interior,
    NameIndex,
    RowColumns,
    answer_rows,
    blocks_of,
    concat,
    empty_block,
)
from junction.service.windowed_files import StoreFiles
from junction.service.windowed_slide import RowArrays, Slide
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

WARM_HOURS = 24
"""Hours before now computed in the background when the live view first gives rows."""
MAX_SLIDES = 4
"""Window lengths kept moving along (:class:`Slide`, ~8 MB each at 1,000 services)."""
HOLD_SECONDS = 1800
"""The store's rows at a slide's start read at once (to subtract as they leave it)."""
EXTEND_AHEAD_SECONDS = 120
"""The next rows are read when the window's start comes this close to the held ones' end."""
MAX_LOG_ROWS = 1_000_000
"""The live view's rows kept for slides at most (a slide further behind is built again)."""

RECENT_SECONDS = 600
"""Rows of the live view kept at least, for the current bucket (twice :data:`FINE_SECONDS`)."""
MAX_RECENT = 2_000_000
"""Rows of the live view kept for the whole of its window at most (then only the last
:data:`RECENT_SECONDS`, and shorter windows are read exactly)."""

_B_US = BUCKET_SECONDS * 1_000_000
_F_US = FINE_SECONDS * 1_000_000
_PER_HOUR = BUCKET_SECONDS // FINE_SECONDS
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
        self._started = False
        self._closing = False
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
        # The live view's batches since the oldest slide's last move (batch numbers from
        # _log_base on), and the slides by window length (us), least recently used first.
        self._log: list[RowColumns] = []
        self._log_base = 0
        self._log_rows = 0
        self._following = False
        self._slides: dict[int, Slide] = {}
        self._entries = 0
        self._store_files = StoreFiles()
        self._lock = threading.RLock()
        # Ranges found changed while a background computation runs (it drops them).
        self._dirty: list[tuple[int, int]] = []
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
        with self._lock:
            parts = self._parts(since, now, hold_us=None)
            if parts is None:
                return None
            interior, fine, rows = parts[:3]
            return answer_rows(interior, concat([fine, rows.rollup()]), names, self._index)

    def rendered(
        self,
        names: Sequence[str],
        since: datetime,
        now: datetime,
        render: Callable[[dict[str, Any]], str],
    ) -> list[str] | None:
        """:meth:`metrics`' rows, each as ``render`` makes it, from a :class:`Slide` of the
        window's length moved to ``since`` (built on first use).

        ``None`` when the window is not covered: read it by :meth:`metrics` (or exactly).
        """
        if not self.covers(since, now):
            return None
        s_us, n_us = epoch_us(since), epoch_us(now)
        length = n_us - s_us
        with self._lock:
            self._check_files(self._reader())
            slide = self._slides.pop(length, None)
            if slide is not None and not self._moved(slide, s_us):
                slide = None
            if slide is None:
                slide = self._build_slide(since, now)
                if slide is None:
                    return None
            self._slides[length] = slide  # most recently used last
            while len(self._slides) > MAX_SLIDES:
                self._slides.pop(next(iter(self._slides)))
            self._trim_log()
            return slide.rendered(names, self._index, render)

    def _build_slide(self, since: datetime, now: datetime) -> Slide | None:
        """A new slide of the window ``[since, now]`` (``None``: not covered now)."""
        with self._recent_lock:
            self._following = True  # the live view's batches are kept from now on
        parts = self._parts(since, now, hold_us=HOLD_SECONDS * 1_000_000)
        if parts is None:
            return None
        interior, fine, rows, live_from, seq, held = parts
        size = 2 * len(self._names)
        if interior.size != size:
            interior = interior.grown(size)
        s_us = epoch_us(since)
        edge = rows.take((rows.us < held[0]) | (rows.us >= live_from)).rollup()
        merged = interior.plus(concat([fine, edge]))
        start = rows.take(rows.us < held[1])  # ordered by time (the live part follows)
        if not np.isfinite(start.lat).all():
            return None  # its latency sum cannot be subtracted: read by metrics()
        return Slide(merged, s_us, live_from, seq, start, held[1])

    def _moved(self, slide: Slide, s_us: int) -> bool:
        """Move ``slide`` to start at ``s_us`` (``False``: it cannot, build it again)."""
        ahead = slide.start_until_us - EXTEND_AHEAD_SECONDS * 1_000_000
        if s_us > ahead and slide.start_until_us < slide.live_from_us:
            until = min(slide.start_until_us + HOLD_SECONDS * 1_000_000, slide.live_from_us)
            lo, hi = from_epoch_us(slide.start_until_us), from_epoch_us(until)
            slide.extend(self._edge_rows(self._reader(), lo, hi, None), until)
        if not slide.reaches(s_us):
            return False
        with self._recent_lock:
            if slide.seq < self._log_base:
                return False  # batches it needs were dropped
            batches = self._log[slide.seq - self._log_base :]
            seq = self._log_base + len(self._log)
            services = list(self._recent_names.names)
        cols = RowColumns.merged(batches, None)
        arrivals = RowArrays(
            self._cache_keys(cols.svc, cols.src, services), cols.us, cols.okv, cols.failv,
            cols.has, cols.lat,
        )  # fmt: skip
        return slide.move(s_us, arrivals, seq)

    def _trim_log(self) -> None:
        """Drop the live view's batches every slide has taken."""
        with self._recent_lock:
            upto = min((s.seq for s in self._slides.values()), default=None)
            if upto is None:  # no slide: no batch is kept
                upto, self._following = self._log_base + len(self._log), False
            drop = max(0, upto - self._log_base)
            if drop:
                self._log_rows -= sum(len(b.us) for b in self._log[:drop])
                del self._log[:drop]
                self._log_base += drop

    def _parts(
        self, since: datetime, now: datetime, hold_us: int | None
    ) -> tuple[Interior, Block, RowArrays, int, int, tuple[int, int]] | None:
        """The window's whole buckets merged, and its edges; ``None``: not covered.

        Returns:
            The interior; the partial hours' cached buckets; the edges' rows, by time:
            from ``since`` to the first cached bucket (with ``hold_us``: on to ``hold_us``
            after ``since``, short of the live view's part) and the current bucket's (the
            live view's, else the store's); where the current bucket starts; the live
            view's batches taken; ``(first cached bucket, end of the start's rows read)``.
        """
        s_us, n_us = epoch_us(since), epoch_us(now)
        first, last = -(-s_us // _B_US), n_us // _B_US
        # Fine buckets inside the partial hours; rows outside them are read as rows.
        fine = [
            *range(-(-s_us // _F_US), first * _PER_HOUR),
            *range(last * _PER_HOUR, n_us // _F_US),
        ]
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
        end_from = last * _PER_HOUR
        if fine and fine[-1] >= end_from:
            end_from = fine[-1] + 1
        live_from = end_from * _F_US
        recent = self._recent_block(live_from)  # the current bucket, from memory
        if recent is None and hold_us is not None:
            return None  # a slide needs the live view's rows
        held = until * _F_US
        if hold_us is not None:
            held = max(held, min(s_us + hold_us, live_from))
        rows = self._edge_rows(
            reader, since, from_epoch_us(held), None if recent else from_epoch_us(live_from)
        )
        seq = 0
        if recent is not None:
            rows = RowArrays.joined([rows, recent[0]])
            seq = recent[1]
        interior = self._interior_of(first, last, blocks)
        return interior, concat(edge_blocks), rows, live_from, seq, (until * _F_US, held)

    def _warm_later(self, missing: list[int]) -> None:
        """Compute the hours ``missing`` in a background thread, a few per hold of the lock."""
        if self._warming is not None and self._warming.is_alive():
            return

        def run() -> None:
            try:
                with self._lock:  # the files as they are now: later changes are seen as such
                    reader = self._reader()
                    self._check_files(reader)
                for i in range(0, len(missing), MAX_SYNC_FILL):
                    if self._closing:
                        return
                    with self._lock:
                        todo = [b for b in missing[i : i + MAX_SYNC_FILL] if b not in self._blocks]
                        mark = len(self._dirty)
                    # Read without the lock (requests go on); then what changed meanwhile
                    # is dropped before the hours are kept.
                    got: dict[int, Block] = {}
                    for lo, hi in _runs(todo):
                        got.update(self._compute(reader, lo, hi, _B_US))
                    with self._lock:
                        for lo, hi in self._dirty[mark:]:
                            got = {
                                b: v for b, v in got.items() if not lo // _B_US <= b <= hi // _B_US
                            }
                        for b, block in got.items():
                            if b not in self._blocks:
                                self._blocks[b] = block
                                self._entries += block.entries
            except Exception as exc:  # requests read exactly meanwhile and retry
                log.warning("windowed metrics: computing hourly rollups failed: %s", exc)

        self._warming = threading.Thread(target=run, name="junction-windowed-warm", daemon=True)
        self._warming.start()

    def close(self) -> None:
        """Stop computing in the background (before the store's reader is closed)."""
        self._closing = True
        warming = self._warming
        if warming is not None:
            warming.join(60)

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
        dirty = self._store_files.changes(reader.store.root)
        self.generation = self._store_files.generation
        if self._warming is not None and self._warming.is_alive():
            self._dirty.extend(dirty)
        else:
            self._dirty.clear()
        for lo, hi in dirty:
            for b in [b for b in self._blocks if lo // _B_US <= b <= hi // _B_US]:
                self._entries -= self._blocks.pop(b).entries
                self._interiors = {k: v for k, v in self._interiors.items() if not k[0] <= b < k[1]}
            for b in [b for b in self._fine if lo // _F_US <= b <= hi // _F_US]:
                del self._fine[b]
            # A slide holds the store's rows before its live part as they were.
            for length in [n for n, s in self._slides.items() if lo < s.live_from_us]:
                del self._slides[length]

    def _fill(
        self, reader: StoreReader, lo: int, hi: int, width_us: int, into: dict[int, Block]
    ) -> None:
        """Compute and keep the buckets ``lo`` .. ``hi - 1`` (``width_us`` wide)."""
        for b, block in self._compute(reader, lo, hi, width_us).items():
            into[b] = block
            if into is self._blocks:
                self._entries += block.entries

    def _compute(self, reader: StoreReader, lo: int, hi: int, width_us: int) -> dict[int, Block]:
        """The buckets ``lo`` .. ``hi - 1`` (``width_us`` wide) from the store."""
        start, end = from_epoch_us(lo * width_us), from_epoch_us(hi * width_us)
        params = {"lo": start, "hi": end, "dlo": start.date(), "dhi": (end - _US).date()}
        got = self._read(reader, range_sql(width_us), params)
        return {b: got.get(b, empty_block()) for b in range(lo, hi)}

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
        with self._lock:  # the names (the background computation reads without the lock)
            idx = self._indices(table.column("service"))
        cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names[1:]}
        return blocks_of(idx, cols)

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
        if self._background and not self._started and not self._closing:
            # The last day's hours, computed behind the first reads: windows up to a day
            # are then served from rollups (and slides) from the start.
            self._started = True
            last = epoch_us(datetime.now(UTC)) // _B_US
            self._warm_later(list(range(last - WARM_HOURS, last)))
        with self._recent_lock:
            new: list[tuple[int, str, int, Any, Any]] = []
            for src, rows in ((0, probes), (1, calls)):
                for r in rows:
                    name = r.get("service")
                    if isinstance(name, str):
                        lat = r.get("latency_ms")
                        new.append((epoch_us(r["ts"]), name, src, r.get("ok"), lat))
            if new:
                batch = self._recent_names.columns(new)
                self._columns.append(batch)
                if self._following:  # slides take the batches they have not seen
                    self._log.append(batch)
                    self._log_rows += len(batch.us)
                    while self._log_rows > MAX_LOG_ROWS and self._log:
                        self._log_rows -= len(self._log.pop(0).us)
                        self._log_base += 1  # a slide behind it is built again
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

    def _recent_block(self, after_us: int) -> tuple[RowArrays, int] | None:
        """The rows from ``after_us`` on given by :meth:`add_rows`, and the batches given
        so far (``None``: not all held)."""
        with self._recent_lock:
            if self._recent_from is None or self._recent_from > after_us:
                return None
            self._columns = [RowColumns.merged(self._columns, None)]
            columns = self._columns[0]
            services = list(self._recent_names.names)
            seq = self._log_base + len(self._log)
        mask = columns.us >= after_us
        keys = self._cache_keys(columns.svc[mask], columns.src[mask], services)
        return RowArrays(
            keys, columns.us[mask], columns.okv[mask], columns.failv[mask], columns.has[mask],
            columns.lat[mask],
        ), seq  # fmt: skip

    def _cache_keys(self, svc: np.ndarray, src: np.ndarray, services: list[str]) -> np.ndarray:
        """Keys of this cache of the live view's service numbers and sources."""
        if not len(svc):
            return np.zeros(0, np.int64)
        # The live view's service numbers -> this cache's indices (only those present).
        present = np.unique(svc)
        to_index = np.zeros(len(services), np.int64)
        to_index[present] = self._indices(
            pa.chunked_array([pa.array([services[i] for i in present.tolist()], pa.string())])
        )
        return to_index[svc] * 2 + src

    def _edge_rows(
        self, reader: StoreReader, since: datetime, until: datetime, after: datetime | None
    ) -> RowArrays:
        """Rows in ``[since, until)`` and from ``after`` on (read exactly, as rows: few),
        ordered by time."""
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
                return RowArrays.empty()
            used = {k: v for k, v in params.items() if f"${k}" in sql}
            table = _arrow(cur, sql, used)
        if table.num_rows == 0:
            return RowArrays.empty()
        idx = self._indices(table.column("service"))
        c = {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names[1:]}
        us = c["us"].astype(np.int64)
        order = np.argsort(us, kind="stable")
        has = c["has_lat"].astype(bool)
        return RowArrays(
            (idx * 2 + c["src"].astype(np.int64))[order],
            us[order],
            c["okv"].astype(bool)[order],
            c["failv"].astype(bool)[order],
            has[order],
            np.where(has, c["latency_ms"], 0.0).astype(np.float64)[order],
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


__all__ = ["BUCKET_SECONDS", "MAX_ENTRIES", "RELATIVE_ERROR", "WindowedMetrics"]
