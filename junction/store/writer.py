"""The write side: per-process spools (JSON lines under an exclusive flock) published as
Parquet segments, and flushing at close, garbage collection, interpreter exit and fork."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from junction.store.files import (
    FILE_MODE,
    create_private,
    fsync_path,
    make_private_dir,
    tmp_name,
)
from junction.store.schema import partition_rows

log = logging.getLogger("junction.store")


@dataclass
class _Spool:
    table: str
    uid: str
    path: Path
    fd: int
    opened: float
    size: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


Publisher = Callable[[Path, str, str, dict[str, pa.Table], bool], int]
"""Publishes a spool's day partitions: ``(root, table, spool uid, parts, fsync) -> rows``."""


def materialize(root: Path, table: str, uid: str, parts: dict[str, pa.Table], fsync: bool) -> int:
    """Write ``seg-<uid>.parquet`` into each partition that lacks it; return rows written."""
    written = 0
    for day, tbl in parts.items():
        part_dir = root / table / f"date={day}"
        make_private_dir(part_dir)
        target = part_dir / f"seg-{uid}.parquet"
        if target.exists():  # published before a crash; compaction leaves it alone
            continue
        tmp = part_dir / tmp_name(target.name)
        try:
            with create_private(tmp) as fh:
                pq.write_table(tbl, fh, compression="zstd")
            if fsync:
                fsync_path(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if fsync:
            fsync_path(part_dir)
        written += tbl.num_rows
    return written


class Writer:
    """A store's spools and their lock.

    Kept apart from :class:`MetricsStore` so that a ``weakref.finalize`` can flush it when
    the store is garbage collected or the interpreter exits, without keeping it alive.
    """

    def __init__(self, root: Path, flush_rows: int, flush_seconds: float, fsync: bool) -> None:
        self.root = root
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.fsync = fsync
        # Where flushed segments go: the local tree, or an object store's upload.
        self.publish: Publisher = materialize
        self.lock = threading.Lock()
        self.spools: dict[str, _Spool] = {}
        self.closed = False
        _WRITERS.add(self)

    def __repr__(self) -> str:
        return f"MetricsStore({str(self.root)!r})"

    def append(self, table: str, rows: list[dict[str, Any]], payload: bytes) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeError(f"{self!r} is closed")
            spool = self.spools.get(table) or self._open_spool(table)
            self._write(spool, payload)
            spool.rows.extend(rows)
            due = len(spool.rows) >= self.flush_rows or (
                time.monotonic() - spool.opened >= self.flush_seconds
            )
            if due:
                try:
                    self._flush_spool(spool)
                except Exception:  # the rows are safe in the spool; retried later
                    log.exception("%r: automatic flush of %s failed; will retry", self, table)

    def flush(self) -> int:
        with self.lock:
            return sum(self._flush_spool(s) for s in list(self.spools.values()))

    def close(self) -> None:
        error: Exception | None = None
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for spool in list(self.spools.values()):
                try:
                    self._flush_spool(spool)
                except Exception as exc:
                    log.exception("%r: flush of %s at close failed", self, spool.table)
                    error = error or exc
                    # Unlocked, the spool becomes an orphan that recover() publishes.
                    with contextlib.suppress(OSError):
                        os.close(spool.fd)
                    self.spools.pop(spool.table, None)
        if error is not None:
            raise error

    def own_uids(self) -> set[str]:
        return {s.uid for s in list(self.spools.values())}

    def after_fork(self) -> None:
        # The child must not write to (or unlock) the parent's spools; it starts fresh.
        self.lock = threading.Lock()
        for spool in self.spools.values():
            with contextlib.suppress(OSError):
                os.close(spool.fd)  # the parent's descriptor keeps the flock
        self.spools.clear()

    def _open_spool(self, table: str) -> _Spool:
        spool_dir = self.root / "_spool" / table
        make_private_dir(spool_dir)
        uid = uuid.uuid4().hex
        path = spool_dir / f"{os.getpid()}-{uid}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, FILE_MODE)
        try:
            # Held until the spool is deleted: recover() never touches a locked spool.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        spool = _Spool(table, uid, path, fd, time.monotonic())
        self.spools[table] = spool
        return spool

    def _write(self, spool: _Spool, payload: bytes) -> None:
        view = memoryview(payload)
        try:
            while view:
                written = os.write(spool.fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(spool.fd)
        except OSError:
            # Drop the partial write so the next append does not glue onto half a line.
            with contextlib.suppress(OSError):
                os.ftruncate(spool.fd, spool.size)
            raise
        spool.size += len(payload)

    def _flush_spool(self, spool: _Spool) -> int:
        """Publish one spool. Caller holds ``self.lock``."""
        if spool.rows:
            parts = partition_rows(spool.table, spool.rows)
            self.publish(self.root, spool.table, spool.uid, parts, self.fsync)
        os.unlink(spool.path)  # the segments are in place: the spool's job is done
        if self.fsync:
            fsync_path(spool.path.parent)
        os.close(spool.fd)
        del self.spools[spool.table]
        return len(spool.rows)


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()


def _writers_after_fork() -> None:
    for writer in list(_WRITERS):
        writer.after_fork()


os.register_at_fork(after_in_child=_writers_after_fork)


def close_writer(writer: Writer) -> None:
    """Finalizer of a store that was garbage collected or is alive at interpreter exit."""
    try:
        writer.close()
    except Exception:
        log.exception("%r: flush at exit/garbage collection failed", writer)
