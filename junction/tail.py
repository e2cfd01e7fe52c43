"""Follow a metrics-store table as other processes write it: each row once, soon after.

The monitor uses this to see the integration calls of *other* processes (workflow runs,
CLI commands) without waiting for them to flush: a writer's rows reach its spool
(``<store>/_spool/<table>/<pid>-<uid>.jsonl``) with one ``write(2)`` per ``append``, long
before they become a Parquet segment. A :class:`StoreTailer` reads:

* the live spools, read-only and from a per-file offset, so each line is read once; a
  last line without its newline (an ``append`` still being written, or a writer killed
  mid-write whose ``append`` never returned) is left for the next poll, never parsed;
* the Parquet files of the day partitions that can hold rows newer than ``since``,
  each file once (a spool's rows come back in its segment ``seg-<uid>.parquet`` when the
  writer flushes, and a compaction re-writes rows into ``part-<uuid>.parquet``).

Rows are deduplicated by their ``id`` (the store gives every row a unique one), which
makes all the overlaps above harmless: spool then segment, segment then compacted file,
a file read while a compaction swaps it. Nothing here takes the store's locks or writes
anything, so a tailer can never disturb a writer or a compaction.

:meth:`StoreTailer.spools_changed` tells, with one directory listing and a ``stat`` per
spool, whether a poll would find new spooled lines: the monitor checks it often and reads
only then, so a live call reaches it within a fraction of a second without re-reading the
Parquet partitions each time (``poll(files=False)``).

Rows older than ``since`` are skipped; :meth:`StoreTailer.advance` moves ``since`` forward
and forgets the ids that fell behind it (memory stays bounded by the rows in the window).
Parquet files last modified more than :data:`MTIME_SLACK` before ``since`` are not opened:
a segment is written after its rows were created, so it cannot hold newer rows.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from junction.store import TABLES

log = logging.getLogger(__name__)

MTIME_SLACK = timedelta(minutes=2)
"""Files older than ``since`` by more than this are skipped without being opened."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ts(value: Any) -> datetime:
    """A row's timestamp as an aware UTC datetime (spools hold epoch microseconds)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return _EPOCH + timedelta(microseconds=int(value))


class StoreTailer:
    """Incremental reader of one table of a :class:`junction.store.MetricsStore` root.

    Args:
        root: The store's directory.
        table: Table to follow (``calls``, ``probes``...).
        since: Oldest row timestamp of interest (UTC).
        skip_own_spools: Do not read this process's own spools (its rows are usually
            seen in-process already; they are still read once flushed, and deduplicated
            by id only if the caller remembers them: see :meth:`mark_seen`).
    """

    def __init__(
        self,
        root: str | Path,
        table: str = "calls",
        *,
        since: datetime,
        skip_own_spools: bool = True,
    ) -> None:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; known tables: {', '.join(TABLES)}")
        self.root = Path(root)
        self.table = table
        self.since = _ts(since)
        self.skip_own_spools = skip_own_spools
        self._offsets: dict[str, int] = {}
        # Spool sizes at the last read: a partial last line of a dead writer stays unread
        # but does not count as a change again.
        self._sizes: dict[str, int] = {}
        self._files_done: set[str] = set()
        self._seen: dict[str, datetime] = {}

    def mark_seen(self, row_id: str, ts: datetime) -> None:
        """Remember a row seen by other means so :meth:`poll` does not return it."""
        self._seen[row_id] = _ts(ts)

    def advance(self, since: datetime) -> None:
        """Move the horizon forward; forget ids and files that fell behind it."""
        since = _ts(since)
        if since <= self.since:
            return
        self.since = since
        self._seen = {k: v for k, v in self._seen.items() if v >= since}
        first = self._first_partition()
        self._files_done = {p for p in self._files_done if _partition_date(p) >= first}

    def spools_changed(self) -> bool:
        """Whether a spool (other than this process's when skipped) grew or appeared since
        it was last read: cheap enough to ask many times a second."""
        spool_dir = self.root / "_spool" / self.table
        own = f"{os.getpid()}-"
        try:
            entries = list(os.scandir(spool_dir))
        except FileNotFoundError:
            return False
        for entry in entries:
            name = entry.name
            if not name.endswith(".jsonl") or (self.skip_own_spools and name.startswith(own)):
                continue
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue
            if size != self._sizes.get(entry.path, 0):
                return True
        return False

    def poll(self, *, files: bool = True) -> list[dict[str, Any]]:
        """Rows that appeared since the last poll (``ts >= since``), oldest first.

        Timestamps (``ts``, ``started_at``...) are aware UTC datetimes, as in the
        segments. Unreadable files and corrupt lines are logged and skipped.

        Args:
            files: Also read new Parquet files (``False``: the live spools only; their
                rows reach the files only when a writer flushes, after they were spooled).
        """
        rows = self._poll_files() if files else []
        rows.extend(self._poll_spools())
        fresh = []
        for row in rows:
            row_id = row.get("id")
            ts = row.get("ts")
            if not isinstance(row_id, str) or ts is None:
                continue
            stamp = _ts(ts)
            if stamp < self.since or row_id in self._seen:
                continue
            self._seen[row_id] = stamp
            row["ts"] = stamp
            fresh.append(row)
        fresh.sort(key=lambda r: r["ts"])
        return fresh

    # -- Parquet files

    def _first_partition(self) -> date:
        return (self.since - MTIME_SLACK).date()

    def _poll_files(self) -> list[dict[str, Any]]:
        table_dir = self.root / self.table
        try:
            parts = [e for e in os.scandir(table_dir) if e.name.startswith("date=")]
        except FileNotFoundError:
            return []
        first = self._first_partition()
        horizon = (self.since - MTIME_SLACK).timestamp()
        rows: list[dict[str, Any]] = []
        for part in parts:
            try:
                if date.fromisoformat(part.name[5:]) < first:
                    continue
                entries = list(os.scandir(part.path))
            except (ValueError, FileNotFoundError):
                continue
            for entry in entries:
                if not entry.name.endswith(".parquet") or entry.path in self._files_done:
                    continue
                try:
                    if entry.stat().st_mtime < horizon:
                        self._files_done.add(entry.path)
                        continue
                    rows.extend(self._read_parquet(entry.path))
                except FileNotFoundError:
                    continue  # compacted away meanwhile: its rows are in the new file
                except Exception:
                    log.exception("tail: cannot read %s", entry.path)
                self._files_done.add(entry.path)
        return rows

    def _read_parquet(self, path: str) -> list[dict[str, Any]]:
        table = pq.read_table(path)
        if "ts" in table.column_names:
            table = table.filter(pc.greater_equal(table["ts"], self.since))
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows

    # -- spools

    def _poll_spools(self) -> list[dict[str, Any]]:
        spool_dir = self.root / "_spool" / self.table
        try:
            names = os.listdir(spool_dir)
        except FileNotFoundError:
            self._offsets.clear()
            return []
        own = f"{os.getpid()}-"
        present = set()
        rows: list[dict[str, Any]] = []
        for name in names:
            if not name.endswith(".jsonl") or (self.skip_own_spools and name.startswith(own)):
                continue
            path = str(spool_dir / name)
            present.add(path)
            rows.extend(self._read_spool(path))
        for gone in set(self._offsets) - present:
            del self._offsets[gone]
        for gone in set(self._sizes) - present:
            del self._sizes[gone]
        return rows

    def _read_spool(self, path: str) -> list[dict[str, Any]]:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._sizes[path] = offset + len(data)
        end = data.rfind(b"\n")
        if end < 0:
            return []  # nothing complete yet (or a partial line of a dead writer)
        self._offsets[path] = offset + end + 1
        rows = []
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                log.warning("tail: skipping a corrupt line of %s", path)
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows


def _partition_date(path: str) -> date:
    """The ``date=`` partition of a segment path (``date.min`` if it has none)."""
    for part in Path(path).parts:
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[5:])
            except ValueError:
                break
    return date.min


def read_since(
    root: str | Path, table: str, since: datetime, *, skip_own_spools: bool = False
) -> list[dict[str, Any]]:
    """Every row of ``table`` with ``ts >= since``, published or still spooled, each once.

    Args:
        root: The store's directory.
        table: Table name.
        since: Oldest timestamp wanted.
        skip_own_spools: Leave out this process's own unflushed rows.
    """
    return StoreTailer(root, table, since=since, skip_own_spools=skip_own_spools).poll()


__all__ = ["MTIME_SLACK", "StoreTailer", "read_since"]
