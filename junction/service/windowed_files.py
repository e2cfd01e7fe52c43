"""What changed in the metrics store's files since the last look (for the windowed metrics).

The store's views read ``<table>/*/*.parquet``. :meth:`StoreFiles.changes` lists both
tables' files (names, sizes, modification times) and returns the ``ts`` ranges whose rows
may have changed: a new or rewritten file's (from its Parquet footer's statistics), a
removed file's (its partition's day when its range was never read).

A compaction is not a change: within one partition, files that disappear while others
appear holding exactly as many rows, within the removed files' ``ts`` range, are the same
rows rewritten (the store's compaction checks the counts it writes and only merges
segments that no writer still spools). So a periodic compaction does not drop rollups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from junction.service.aggregates import epoch_us

_TABLES = ("probes", "calls")


@dataclass(frozen=True)
class _Seen:
    """A file as last seen: modification time, size, and (when read) ``ts`` range, rows."""

    mtime_ns: int
    size: int
    span: tuple[int, int] | None = None
    rows: int | None = None


class StoreFiles:
    """The Parquet files of a store's ``probes`` and ``calls`` as last seen."""

    def __init__(self) -> None:
        self._files: dict[str, _Seen] = {}
        self.generation = 0
        """Grows whenever the store's rows change (a cached answer is then stale)."""

    def changes(self, root: Path) -> list[tuple[int, int]]:
        """Look at the files now; the ``ts`` ranges (epoch us) whose rows changed.

        A new file's footer is read once (its ``ts`` range and row count).
        """
        now_files = _list(root)
        dirty: list[tuple[int, int]] = []
        gone = {p: s for p, s in self._files.items() if p not in now_files}
        fresh: dict[str, _Seen] = {}
        added: dict[str, _Seen] = {}
        for path, (mtime, size) in now_files.items():
            old = self._files.get(path)
            if old is not None and (old.mtime_ns, old.size) == (mtime, size):
                fresh[path] = old
                continue
            fresh[path] = added[path] = _Seen(mtime, size, *_footer(path))
        rewritten = _compacted(gone, added)
        for path, seen in gone.items():
            if path not in rewritten:
                dirty.append(seen.span or _day_range(path))
        dirty.extend(s.span or _day_range(p) for p, s in added.items() if p not in rewritten)
        if dirty or (len(fresh) != len(self._files) and not rewritten):
            self.generation += 1
        self._files = fresh
        return dirty


def _compacted(gone: dict[str, _Seen], added: dict[str, _Seen]) -> set[str]:
    """The removed and new files that are a compaction's inputs and outputs (same rows)."""
    out: set[str] = set()
    for part in {os.path.dirname(p) for p in gone}:
        before = [(p, s) for p, s in gone.items() if os.path.dirname(p) == part]
        after = [(p, s) for p, s in added.items() if os.path.dirname(p) == part]
        if not after or any(s.rows is None or s.span is None for _, s in before + after):
            continue
        lo = min(s.span[0] for _, s in before if s.span)
        hi = max(s.span[1] for _, s in before if s.span)
        same_rows = sum(s.rows or 0 for _, s in before) == sum(s.rows or 0 for _, s in after)
        inside = all(s.span and lo <= s.span[0] and s.span[1] <= hi for _, s in after)
        if same_rows and inside:
            out.update(p for p, _ in before + after)
    return out


def _list(root: Path) -> dict[str, tuple[int, int]]:
    """Both tables' Parquet files: path -> (modification time ns, size)."""
    out: dict[str, tuple[int, int]] = {}
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
                    out[e.path] = (st.st_mtime_ns, st.st_size)
    return out


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


def _footer(path: str) -> tuple[tuple[int, int] | None, int | None]:
    """A Parquet file's ``ts`` range and row count from its footer (``None``: unknown)."""
    try:
        meta = pq.read_metadata(path)
        col = meta.schema.names.index("ts")
        lo: int | None = None
        hi: int | None = None
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(col).statistics
            if stats is None or not stats.has_min_max:
                return None, meta.num_rows
            a, b = epoch_us(_aware(stats.min)), epoch_us(_aware(stats.max))
            lo = a if lo is None else min(lo, a)
            hi = b if hi is None else max(hi, b)
    except (OSError, ValueError, pa.ArrowException):
        return None, None
    return (None if lo is None or hi is None else (lo, hi)), meta.num_rows


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


__all__ = ["StoreFiles"]
