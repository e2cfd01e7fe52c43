"""Junction's metrics store: append-only Parquet segments read through DuckDB views.

DuckDB lets a single process open a database file read-write, but every Prefect flow run
is its own process and many of them write metrics at once. So nothing writes a DuckDB
file on the hot path: each process appends to its own spool file, turns it into
immutable Parquet segments, and readers query the segments through DuckDB views.

Tables (schemas in :data:`TABLES`; ``*`` = nullable, everything else is required)::

    calls          id, ts, service, action, method, path, status*, ok, latency_ms,
                   error_class*, error*, attempts, breaker_state, source, run_id*
    probes         id, ts, sweep_id, service, ok, status*, latency_ms, error_class*,
                   error*, breaker_state
    workflow_runs  id, run_id, workflow, started_at, ended_at*, status, duration_ms,
                   steps, retries, fallbacks, error*, params_json*
    alerts         id, ts, fingerprint, service, rule, severity, state, message,
                   labels_json

``id`` is a uuid4 hex generated when missing, ``ts`` defaults to now (UTC); timestamps are
``timestamp[us, tz=UTC]`` (naive datetimes are taken as UTC, ISO-8601 strings accepted),
``status``/``attempts``/``steps``/``retries``/``fallbacks`` are int32, ``latency_ms`` and
``duration_ms`` float64, ``ok`` bool, ``*_json`` columns also accept a dict/list (stored
as JSON text). Views add a ``date`` (DATE) column from the partition directory.

Layout under ``root``::

    <table>/date=YYYY-MM-DD/seg-<spool uuid>.parquet  flushed segment (UTC day of ts/started_at)
    <table>/date=YYYY-MM-DD/part-<uuid>.parquet       compacted segment
    _spool/<table>/<pid>-<uuid>.jsonl                  a writer's unflushed rows
    _manifests/<uuid>.json                             an in-flight compaction step
    _quarantine/<table>/date=YYYY-MM-DD/<file>         an unreadable segment, moved aside
    .compact.lock                                      one compactor at a time (FileLock)
    .read.lock                                         readers shared / compaction swap exclusive
    metrics.duckdb                                     views for the duckdb CLI (set by compact)

Write path: ``append`` validates the rows, writes them as JSON lines to the process's
spool (one ``write(2)`` per call, so they reach the OS before ``append`` returns; optional
fsync) and keeps an exclusive ``flock`` on the spool for the writer's whole life. A flush
writes one segment per day partition to a temp name in the partition directory,
``os.replace``-s it to ``seg-<spool uuid>.parquet`` and only then deletes the spool.

Guarantees:

* A row ``append`` accepted is published exactly once, even if its process is killed at
  any point (with ``fsync=True`` also across power loss; without it, an OS crash may
  lose the rows that were still in page cache). A dead writer's spool (nobody holds its
  flock, and its pid is gone or it is non-empty) is published by ``recover()``, which
  drops a partially written last line (its ``append`` never returned) and skips every
  partition whose deterministic ``seg-<spool uuid>`` already exists, so a crash between
  rename and spool delete cannot duplicate rows.
* Compaction never merges a segment whose spool still exists, so recovery can always
  trust "segment exists => rows already published".
* Compaction (one at a time, ``FileLock`` on ``.compact.lock``) writes the merged file to a
  temp name, records ``{"table", "partition", "inputs", "output", "temp"}`` in a manifest,
  then, holding ``.read.lock`` exclusively, renames the output into place and deletes the
  inputs; finally the manifest is removed. A manifest left by a crash is rolled back
  (output absent: drop temp) or forward (output present: delete remaining inputs).
* ``query()``/``count()`` hold ``.read.lock`` shared while they run, and first finish any
  half-applied compaction step, so they never see a compaction's inputs and output
  together: every published row appears exactly once and counts never go down.
  Connections from ``connect()`` re-glob on each statement; wrap statements in
  :meth:`MetricsStore.read_lock` for the same guarantee while compactions may run.
* A segment that is not a complete Parquet file (truncated by a full disk, a bad copy)
  is moved to ``_quarantine/`` with a warning naming it, the first time a reader sees
  it (or when DuckDB names it in an error); queries go on without its rows.
* The store is private: directories are created 0700 and files 0600 (they hold
  workflow parameters and error text); an older store's root is tightened to 0700.
* Rows become visible at flush: after ``flush_rows`` rows, ``flush_seconds`` (checked on
  append), ``flush()``, ``close()``/context exit/garbage collection/interpreter exit, or
  recovery of a dead writer. The root must be on a local filesystem (``flock``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import json
import logging
import numbers
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

log = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")


def _req(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _opt(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=True)


CALLS_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("ts", _TS),
        _req("service", pa.string()),
        _req("action", pa.string()),
        _req("method", pa.string()),
        _req("path", pa.string()),
        _opt("status", pa.int32()),
        _req("ok", pa.bool_()),
        _req("latency_ms", pa.float64()),
        _opt("error_class", pa.string()),
        _opt("error", pa.string()),
        _req("attempts", pa.int32()),
        _req("breaker_state", pa.string()),
        _req("source", pa.string()),
        _opt("run_id", pa.string()),
    ]
)
"""One row per integration call (after its last attempt); ``source`` is probe/workflow/cli/..."""

PROBES_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("ts", _TS),
        _req("sweep_id", pa.string()),
        _req("service", pa.string()),
        _req("ok", pa.bool_()),
        _opt("status", pa.int32()),
        _req("latency_ms", pa.float64()),
        _opt("error_class", pa.string()),
        _opt("error", pa.string()),
        _req("breaker_state", pa.string()),
    ]
)
"""One row per service per health sweep."""

WORKFLOW_RUNS_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("run_id", pa.string()),
        _req("workflow", pa.string()),
        _req("started_at", _TS),
        _opt("ended_at", _TS),
        _req("status", pa.string()),
        _req("duration_ms", pa.float64()),
        _req("steps", pa.int32()),
        _req("retries", pa.int32()),
        _req("fallbacks", pa.int32()),
        _opt("error", pa.string()),
        _opt("params_json", pa.string()),
    ]
)
"""One row per workflow run; partitioned by the day of ``started_at``."""

ALERTS_SCHEMA = pa.schema(
    [
        _req("id", pa.string()),
        _req("ts", _TS),
        _req("fingerprint", pa.string()),
        _req("service", pa.string()),
        _req("rule", pa.string()),
        _req("severity", pa.string()),
        _req("state", pa.string()),
        _req("message", pa.string()),
        _req("labels_json", pa.string()),
    ]
)
"""One row per alert state change (firing/resolved/...)."""

TABLES: dict[str, pa.Schema] = {
    "calls": CALLS_SCHEMA,
    "probes": PROBES_SCHEMA,
    "workflow_runs": WORKFLOW_RUNS_SCHEMA,
    "alerts": ALERTS_SCHEMA,
}
"""Table name -> fixed Arrow schema of its Parquet segments."""

PARTITION_COLUMNS: dict[str, str] = {
    "calls": "ts",
    "probes": "ts",
    "workflow_runs": "started_at",
    "alerts": "ts",
}
"""Table name -> timestamp column whose UTC day names the ``date=`` partition."""

DIR_MODE = 0o700
"""Mode of every directory of the store: it holds workflow parameters and error text."""
FILE_MODE = 0o600
"""Mode of every file of the store."""

QUARANTINE_DIR = "_quarantine"
"""Where unreadable segments are moved, under the root (``<table>/<date=...>/<file>``)."""
_MAGIC = b"PAR1"
_QUARANTINE_RETRIES = 5

COMPACT_MAX_INPUT_BYTES = 256 * 1024 * 1024
"""Segments at least this large are left alone by compaction."""

_US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_ROW_GROUP_ROWS = 256_000
_DUCK_TYPES = {
    "string": "VARCHAR",
    "ts": "TIMESTAMPTZ",
    "int32": "INTEGER",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
}


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # string | ts | int32 | float64 | bool
    nullable: bool


def _kind(type_: pa.DataType) -> str:
    if pa.types.is_string(type_):
        return "string"
    if pa.types.is_timestamp(type_):
        return "ts"
    if pa.types.is_int32(type_):
        return "int32"
    if pa.types.is_float64(type_):
        return "float64"
    if pa.types.is_boolean(type_):
        return "bool"
    raise TypeError(f"unsupported column type {type_}")


_COLUMNS: dict[str, tuple[_Column, ...]] = {
    t: tuple(_Column(f.name, _kind(f.type), f.nullable) for f in s) for t, s in TABLES.items()
}
_COLUMN_NAMES: dict[str, frozenset[str]] = {t: frozenset(s.names) for t, s in TABLES.items()}


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known tables: {', '.join(TABLES)}")


# --------------------------------------------------------------------------- validation


def _as_mapping(row: object) -> Mapping[str, Any]:
    if isinstance(row, Mapping):
        return row
    dump = getattr(row, "model_dump", None)
    if callable(dump):
        data = dump()
        if isinstance(data, Mapping):
            return data
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    raise ValueError(
        f"row must be a Mapping, a pydantic model or a dataclass instance, got {type(row).__name__}"
    )


def _bad(table: str, col: str, expected: str, value: object) -> ValueError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ValueError(f"{table}.{col}: expected {expected}, got {type(value).__name__} {shown}")


def _to_micros(value: datetime) -> int:
    if value.tzinfo is None:  # naive datetimes are taken as UTC (datetime.utcnow() style)
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _coerce(table: str, col: _Column, value: object) -> Any:
    """Validate one value and return its JSON-able spool form (timestamps -> epoch µs)."""
    if isinstance(value, enum.Enum):
        value = value.value
    kind = col.kind
    if kind == "string":
        if isinstance(value, str):
            return str(value)
        if col.name.endswith("_json") and isinstance(value, Mapping | list | tuple):
            return json.dumps(value, sort_keys=True, default=str)
        raise _bad(table, col.name, "str", value)
    if kind == "ts":
        if isinstance(value, datetime):
            return _to_micros(value)
        if isinstance(value, str):
            try:
                return _to_micros(datetime.fromisoformat(value))
            except ValueError:
                raise _bad(table, col.name, "an ISO-8601 timestamp", value) from None
        raise _bad(table, col.name, "datetime", value)
    if kind == "int32":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            number = int(value)
            if not _INT32_MIN <= number <= _INT32_MAX:
                raise _bad(table, col.name, "an int32", value)
            return number
        raise _bad(table, col.name, "int", value)
    if kind == "float64":
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _bad(table, col.name, "float", value)
    if isinstance(value, bool):
        return value
    raise _bad(table, col.name, "bool", value)


def _normalize(table: str, data: Mapping[str, Any]) -> dict[str, Any]:
    names = _COLUMN_NAMES[table]
    for key in data:
        if key not in names:
            known = ", ".join(TABLES[table].names)
            raise ValueError(f"unknown column {key!r} for table {table!r}; columns: {known}")
    out: dict[str, Any] = {}
    for col in _COLUMNS[table]:
        value = data.get(col.name)
        if value is None:
            if col.name == "id":
                out["id"] = uuid.uuid4().hex
                continue
            if col.name == "ts":
                out["ts"] = time.time_ns() // 1000
                continue
            if not col.nullable:
                what = "is required" if col.name not in data else "must not be null"
                raise ValueError(f"{table}.{col.name} {what}")
            out[col.name] = None
            continue
        out[col.name] = _coerce(table, col, value)
    return out


def _encode(table: str, row: dict[str, Any]) -> bytes:
    try:
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    except UnicodeEncodeError:  # lone surrogates cannot go to Parquet either
        for key, value in row.items():
            if isinstance(value, str):
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise ValueError(f"{table}.{key}: string is not valid UTF-8") from None
        raise


def _check_spooled(table: str, row: object) -> dict[str, Any]:
    """Light check of a row read back from a spool (it was validated when appended)."""
    if not isinstance(row, dict) or not set(row) <= _COLUMN_NAMES[table]:
        raise ValueError(f"spooled row does not match table {table!r}")
    for col in _COLUMNS[table]:
        if not col.nullable and row.get(col.name) is None:
            raise ValueError(f"spooled row lacks {table}.{col.name}")
    return row


def _partitions(table: str, rows: list[dict[str, Any]]) -> dict[str, pa.Table]:
    """Split rows by UTC day of the partition column into Arrow tables."""
    pcol = PARTITION_COLUMNS[table]
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[pcol] // _US_PER_DAY, []).append(row)
    schema = TABLES[table]
    return {
        (_EPOCH_DATE + timedelta(days=day)).isoformat(): pa.Table.from_pylist(group, schema=schema)
        for day, group in sorted(groups.items())
    }


def _conform(tbl: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a segment read from disk to the current schema (missing nullable cols -> null)."""
    extra = set(tbl.column_names) - set(schema.names)
    if extra:
        raise ValueError(f"segment has unknown columns {sorted(extra)}")
    arrays = []
    for fld in schema:
        if fld.name in tbl.column_names:
            arrays.append(tbl[fld.name].cast(fld.type))
        elif fld.nullable:
            arrays.append(pa.chunked_array([pa.nulls(tbl.num_rows, fld.type)]))
        else:
            raise ValueError(f"segment lacks required column {fld.name!r}")
    return pa.Table.from_arrays(arrays, schema=schema)


# --------------------------------------------------------------------------- filesystem helpers


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (owner only).

    ``Path.mkdir(parents=True, mode=...)`` applies the mode to the last directory only.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
            directory.mkdir(mode=DIR_MODE)


def create_private(path: Path) -> BinaryIO:
    """A new file opened for binary writing, mode 0600 from its creation on.

    Raises:
        FileExistsError: ``path`` exists.
    """
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")


def segment_problem(path: Path, *, deep: bool = False) -> str | None:
    """Why ``path`` is not a complete Parquet file (``None``: it looks fine).

    Cheap by default (the magic bytes at both ends and a footer that fits in the file:
    what a truncated or half-copied segment fails); ``deep`` also reads every row.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
            fh.seek(max(size - 8, 0))
            tail = fh.read(8)
    except FileNotFoundError:
        return None  # compacted away meanwhile
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if size < 12 or head != _MAGIC or tail[4:] != _MAGIC:
        return f"truncated or not Parquet ({size} bytes, no Parquet markers at both ends)"
    if int.from_bytes(tail[:4], "little") + 12 > size:
        return "truncated (its footer is longer than the file)"
    if deep:
        try:
            for _ in pq.ParquetFile(path).iter_batches():
                pass
        except (OSError, pa.ArrowException) as exc:
            return f"unreadable: {exc}"
    return None


def _tmp_name(final: str) -> str:
    # The pid lets recover() tell a dead writer's leftover from a live writer's work.
    return f"{final}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def _tmp_owner(name: str) -> int | None:
    try:
        return int(name.rsplit(".", 2)[-2].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _spool_uid(segment_name: str) -> str | None:
    if segment_name.startswith("seg-") and segment_name.endswith(".parquet"):
        return segment_name[4:-8]
    return None


def _parse_spool_name(name: str) -> tuple[int, str] | None:
    if not name.endswith(".jsonl"):
        return None
    pid, _, uid = name[:-6].partition("-")
    if not pid.isdigit() or not uid:
        return None
    return int(pid), uid


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _view_sql(root: Path, table: str) -> str:
    """``CREATE OR REPLACE VIEW`` over the table's segments, valid even with no files yet.

    The empty typed select fixes column names/types when the glob matches nothing
    (``allow_empty`` then yields a dummy column that the outer projection drops).
    """
    typed = ", ".join(
        f"CAST(NULL AS {_DUCK_TYPES[c.kind]}) AS {_ident(c.name)}" for c in _COLUMNS[table]
    )
    cols = ", ".join([*(_ident(c.name) for c in _COLUMNS[table]), '"date"'])
    glob = _sql_str(f"{root / table}/*/*.parquet")
    return (
        f"CREATE OR REPLACE VIEW {_ident(table)} AS SELECT {cols} FROM ("
        f'SELECT {typed}, CAST(NULL AS DATE) AS "date" WHERE false '
        f"UNION ALL BY NAME SELECT * FROM read_parquet({glob}, hive_partitioning = true, "
        f"union_by_name = true, allow_empty = true, hive_types = {{'date': 'DATE'}}))"
    )


# --------------------------------------------------------------------------- write side


@dataclass
class _Spool:
    table: str
    uid: str
    path: Path
    fd: int
    opened: float
    size: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


def _materialize(
    root: Path, table: str, uid: str, parts: dict[str, pa.Table], *, fsync: bool
) -> int:
    """Write ``seg-<uid>.parquet`` into each partition that lacks it; return rows written."""
    written = 0
    for day, tbl in parts.items():
        part_dir = root / table / f"date={day}"
        make_private_dir(part_dir)
        target = part_dir / f"seg-{uid}.parquet"
        if target.exists():  # published before a crash; compaction leaves it alone
            continue
        tmp = part_dir / _tmp_name(target.name)
        try:
            with create_private(tmp) as fh:
                pq.write_table(tbl, fh, compression="zstd")
            if fsync:
                _fsync_file(tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if fsync:
            _fsync_dir(part_dir)
        written += tbl.num_rows
    return written


class _Writer:
    """A store's spools and their lock.

    Kept apart from :class:`MetricsStore` so that a ``weakref.finalize`` can flush it when
    the store is garbage collected or the interpreter exits, without keeping it alive.
    """

    def __init__(self, root: Path, flush_rows: int, flush_seconds: float, fsync: bool) -> None:
        self.root = root
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.fsync = fsync
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
            parts = _partitions(spool.table, spool.rows)
            _materialize(self.root, spool.table, spool.uid, parts, fsync=self.fsync)
        os.unlink(spool.path)  # the segments are in place: the spool's job is done
        if self.fsync:
            _fsync_dir(spool.path.parent)
        os.close(spool.fd)
        del self.spools[spool.table]
        return len(spool.rows)


_WRITERS: weakref.WeakSet[_Writer] = weakref.WeakSet()


def _writers_after_fork() -> None:
    for writer in list(_WRITERS):
        writer.after_fork()


os.register_at_fork(after_in_child=_writers_after_fork)


def _close_writer(writer: _Writer) -> None:
    """Finalizer of a store that was garbage collected or is alive at interpreter exit."""
    try:
        writer.close()
    except Exception:
        log.exception("%r: flush at exit/garbage collection failed", writer)


# --------------------------------------------------------------------------- the store


class MetricsStore:
    """Multi-process metrics store: per-writer spools -> Parquet segments -> DuckDB views.

    Safe to share between threads; each process (flow run) opens its own instance on the
    same root. See the module docstring for the layout and the guarantees.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 5.0,
        fsync: bool = False,
    ) -> None:
        """Open (creating if needed) the store rooted at ``root``.

        Args:
            root: Store directory; must be on a local filesystem.
            flush_rows: Flush a table's spool once it holds this many rows.
            flush_seconds: Flush a table's spool on the first append at least this many
                seconds after its first row.
            fsync: fsync the spool on every append and segments on flush (survives power
                loss, not just process crashes, at a large cost per append).
        """
        if flush_rows < 1:
            raise ValueError("flush_rows must be >= 1")
        self.root = Path(root).absolute()
        make_private_dir(self.root)
        # A store made before stores were private: closing the root closes all of it.
        if self.root.stat().st_mode & 0o077:
            with contextlib.suppress(PermissionError):
                os.chmod(self.root, DIR_MODE)
        self._writer = _Writer(self.root, flush_rows, flush_seconds, fsync)
        # Runs at garbage collection or interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, _close_writer, self._writer)
        self._con: duckdb.DuckDBPyConnection | None = None  # views for query(), built lazily
        self._con_lock = threading.Lock()
        self._con_pid = os.getpid()
        # Partition directory -> its mtime when every segment in it was last checked.
        self._checked_dirs: dict[Path, int] = {}
        self.quarantined: list[Path] = []
        """Segments this instance moved aside as unreadable (their new paths)."""

    def __repr__(self) -> str:
        return f"MetricsStore({str(self.root)!r})"

    # ------------------------------------------------------------------ writing

    def append(self, table: str, rows: Iterable[Any]) -> int:
        """Validate rows and append them to this process's spool for ``table``.

        All rows are validated before any is written, so a bad row rejects the whole call.
        Rows become queryable at the next flush (automatic after ``flush_rows`` rows or
        ``flush_seconds``). A failing automatic flush is logged, not raised: the rows are
        already durable in the spool and the flush is retried later.

        Args:
            table: One of :data:`TABLES`.
            rows: Mappings, pydantic models (``model_dump()``) or dataclass instances.

        Returns:
            Number of rows accepted.

        Raises:
            ValueError: Unknown table, unknown column, missing/null required column or a
                value of the wrong type (the message names the table and column).
            TypeError: ``rows`` is a single row instead of an iterable of rows.
            RuntimeError: The store is closed.
        """
        _check_table(table)
        if (
            isinstance(rows, Mapping | str | bytes)
            or hasattr(rows, "model_dump")
            or (dataclasses.is_dataclass(rows))
        ):
            raise TypeError("append() takes an iterable of rows; wrap a single row in a list")
        normalized = [_normalize(table, _as_mapping(row)) for row in rows]
        if not normalized:
            return 0
        payload = b"".join(_encode(table, row) for row in normalized)
        self._writer.append(table, normalized, payload)
        return len(normalized)

    def record_call(self, metric: object) -> None:
        """Metric sink for the integration hook: append one row to ``calls``.

        Args:
            metric: A dataclass / pydantic object / mapping (or any object with the
                attributes) carrying the ``calls`` columns; other attributes are ignored.
        """
        data: Mapping[str, Any]
        try:
            data = _as_mapping(metric)
        except ValueError:
            data = {n: getattr(metric, n) for n in CALLS_SCHEMA.names if hasattr(metric, n)}
        names = _COLUMN_NAMES["calls"]
        self.append("calls", [{k: v for k, v in data.items() if k in names}])

    def flush(self) -> int:
        """Publish every spooled row of this instance as Parquet segments.

        Returns:
            Number of rows published.
        """
        return self._writer.flush()

    def close(self) -> None:
        """Flush and release the spools; further appends raise. Idempotent.

        A spool whose flush fails is released anyway, so ``recover()`` (in any process)
        publishes it later; the first error is re-raised.
        """
        self._finalizer.detach()
        try:
            self._writer.close()
        finally:
            with self._con_lock:
                if self._con is not None:
                    self._con.close()
                    self._con = None

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Publish dead writers' spools, repair interrupted compactions, drop stale temps.

        Cheap when there is nothing to do; called by :meth:`connect`, :meth:`query` and
        :meth:`compact`. Problems with one file are logged and do not stop the others.

        Returns:
            Number of rows published from orphaned spools (rows whose segment already
            existed are not counted).
        """
        rows = self._recover_spools()
        self._recover_manifests(compact_lock_held=False)
        self._sweep_temp_files()
        return rows

    def _recover_spools(self) -> int:
        spool_root = self.root / "_spool"
        if not spool_root.is_dir():
            return 0
        own = self._writer.own_uids()
        total = 0
        for table in TABLES:
            spool_dir = spool_root / table
            try:
                names = os.listdir(spool_dir)
            except FileNotFoundError:
                continue
            for name in names:
                parsed = _parse_spool_name(name)
                if parsed is None or parsed[1] in own:
                    continue
                try:
                    total += self._recover_spool(table, spool_dir / name, *parsed)
                except Exception:
                    log.exception("%r: could not recover spool %s", self, spool_dir / name)
        return total

    def _recover_spool(self, table: str, path: Path, pid: int, uid: str) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # a live writer (or another recoverer) owns it
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    return 0  # published and unlinked by whoever held the lock before us
            except FileNotFoundError:
                return 0
            size = os.fstat(fd).st_size
            if size == 0 and _pid_alive(pid):
                return 0  # possibly a writer between creating and locking its spool
            data = b""
            while chunk := os.read(fd, 1 << 20):
                data += chunk
            rows = self._read_spool(table, path, data)
            try:
                parts = _partitions(table, rows)
            except (pa.ArrowException, ValueError, TypeError, KeyError):
                self._quarantine(path)
                raise
            written = _materialize(self.root, table, uid, parts, fsync=self._writer.fsync)
            os.unlink(path)
            if written:
                log.info("%r: recovered %d %s rows from %s", self, written, table, path.name)
            return written
        finally:
            os.close(fd)

    def _read_spool(self, table: str, path: Path, data: bytes) -> list[dict[str, Any]]:
        lines = data.split(b"\n")
        if lines[-1]:
            # No newline: the writer died mid-write and append() never returned.
            log.warning("%r: ignoring partial last line of %s", self, path.name)
        rows = []
        for number, line in enumerate(lines[:-1], 1):
            if not line.strip():
                continue
            try:
                rows.append(_check_spooled(table, json.loads(line)))
            except ValueError:
                log.error("%r: skipping corrupt line %d of %s", self, number, path.name)
        return rows

    def _quarantine(self, path: Path) -> None:
        target = self.root / "_spool" / "_corrupt"
        make_private_dir(target)
        os.replace(path, target / f"{path.parent.name}-{path.name}")
        log.error("%r: unreadable spool moved to %s", self, target)

    def _recover_manifests(self, *, compact_lock_held: bool) -> None:
        manifest_dir = self.root / "_manifests"
        try:
            names = [n for n in os.listdir(manifest_dir) if n.endswith(".json")]
        except FileNotFoundError:
            return
        if not names:
            return
        if compact_lock_held:
            for name in names:
                self._resolve_manifest(manifest_dir / name, owner=True)
            return
        lock = FileLock(str(self.root / ".compact.lock"), mode=FILE_MODE)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            # A compactor is running; it repaired old manifests at start. Only a
            # half-applied step (visible duplicates) is urgent, and it is safe to finish.
            for name in names:
                self._resolve_manifest(manifest_dir / name, owner=False)
            return
        try:
            for name in names:
                self._resolve_manifest(manifest_dir / name, owner=True)
        finally:
            lock.release()

    def _load_manifest(self, path: Path) -> tuple[Path, Path, list[Path], Path] | None:
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("%r: unreadable manifest %s", self, path)
            return None
        part_dir = self.root / manifest["table"] / manifest["partition"]
        inputs = [part_dir / n for n in manifest["inputs"]]
        return part_dir, part_dir / manifest["output"], inputs, part_dir / manifest["temp"]

    def _resolve_manifest(self, path: Path, *, owner: bool) -> None:
        """Finish (output in place) or roll back (output absent) one compaction step.

        Only the compaction-lock owner may roll back or delete manifests: without the lock
        the manifest may belong to a live compactor. Rolling forward is safe for anyone:
        under the exclusive read lock "output and an input both present" only exists
        after a compactor died between its rename and its deletes.
        """
        loaded = self._load_manifest(path)
        if loaded is None:
            return
        part_dir, output, inputs, temp = loaded
        if output.exists():
            if any(p.exists() for p in inputs):
                # Re-check under the lock: a live compactor may have been mid-swap above.
                with self._read_lock(exclusive=True):
                    leftovers = [p for p in inputs if p.exists()] if output.exists() else []
                    for p in leftovers:
                        p.unlink(missing_ok=True)
                    if leftovers:
                        _fsync_dir(part_dir)
                if leftovers:
                    log.warning("%r: finished interrupted compaction of %s", self, part_dir)
        elif owner:
            temp.unlink(missing_ok=True)
            log.warning("%r: rolled back interrupted compaction of %s", self, part_dir)
        if owner:
            path.unlink(missing_ok=True)

    def _has_half_applied_manifest(self) -> bool:
        manifest_dir = self.root / "_manifests"
        try:
            names = [n for n in os.listdir(manifest_dir) if n.endswith(".json")]
        except FileNotFoundError:
            return False
        for name in names:
            loaded = self._load_manifest(manifest_dir / name)
            if loaded and loaded[1].exists() and any(p.exists() for p in loaded[2]):
                return True
        return False

    def _sweep_temp_files(self) -> None:
        """Drop dead writers' temp files; check segments not seen before (quarantine)."""
        dirs = [self.root / "_manifests"]
        for table in TABLES:
            with contextlib.suppress(FileNotFoundError):
                dirs.extend(p for p in (self.root / table).iterdir() if p.name.startswith("date="))
        for directory in dirs:
            try:
                # Segments are immutable and renamed into place: a directory whose mtime
                # has not moved holds the files checked last time.
                stamp = directory.stat().st_mtime_ns
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            check = self._checked_dirs.get(directory) != stamp
            healthy = True
            for entry in entries:
                if entry.name.endswith(".tmp"):
                    pid = _tmp_owner(entry.name)
                    if pid is not None and not _pid_alive(pid):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                elif check and entry.name.endswith(".parquet"):
                    problem = segment_problem(Path(entry.path))
                    if problem is not None:
                        healthy = False
                        self.quarantine_segment(Path(entry.path), problem)
            if check and healthy:
                self._checked_dirs[directory] = stamp

    def quarantine_segment(self, path: Path, reason: str) -> Path | None:
        """Move an unreadable segment out of the tables, with a warning naming it.

        It goes to ``_quarantine/<table>/<date=...>/`` under the root, where no view
        reads it; its rows are missing from every query until it is repaired and moved
        back. ``None`` if it was gone already.
        """
        try:
            relative = path.relative_to(self.root)
        except ValueError:
            return None
        target = self.root / QUARANTINE_DIR / relative
        make_private_dir(target.parent)
        with self._read_lock(exclusive=True):
            try:
                os.replace(path, target)
            except FileNotFoundError:
                return None
        self.quarantined.append(target)
        log.warning(
            "%r: segment %s is unreadable (%s): moved to %s; its rows are left out",
            self,
            relative,
            reason,
            target.relative_to(self.root),
        )
        return target

    def _quarantine_from_error(self, error: Exception) -> bool:
        """Quarantine the unreadable segments a DuckDB error names; True if any was."""
        moved = False
        for name in re.findall(r"[^\s'\"]+\.parquet", str(error)):
            path = Path(name)
            if not path.is_absolute() or not path.is_file():
                continue
            problem = segment_problem(path, deep=True)
            if problem is not None and self.quarantine_segment(path, problem) is not None:
                moved = True
        return moved

    # ------------------------------------------------------------------ reading

    @contextlib.contextmanager
    def _read_lock(self, *, exclusive: bool) -> Iterator[None]:
        # A fresh descriptor per use: flock conflicts between descriptors, so this also
        # works between threads of one process.
        fd = os.open(self.root / ".read.lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def read_lock(self) -> Iterator[None]:
        """Hold the shared read lock: compaction cannot swap files inside the block.

        Use around statements on a :meth:`connect` connection when a compaction may run
        concurrently; :meth:`query` and :meth:`count` already do this.
        """
        for _ in range(10):
            with self._read_lock(exclusive=False):
                if not self._has_half_applied_manifest():
                    yield
                    return
            self._recover_manifests(compact_lock_held=False)
        raise RuntimeError(f"{self!r}: could not repair an interrupted compaction")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """Run :meth:`recover` and return an in-memory DuckDB connection with one view per table.

        Views re-read the segment directory on every statement (new segments show up
        without reconnecting); the session time zone is UTC.
        """
        self.recover()
        with self.read_lock():  # creating a view reads the current files' footers
            return self._new_connection()

    def _new_connection(self) -> duckdb.DuckDBPyConnection:
        import duckdb  # deferred: writer processes never pay for it

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            for table in TABLES:
                con.execute(_view_sql(self.root, table))
        except BaseException:
            con.close()
            raise
        return con

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run SQL against the table views and return a DataFrame (consistent snapshot).

        A segment that cannot be read (truncated, corrupt) is moved aside with a warning
        (:meth:`quarantine_segment`) and the query runs without it.

        Args:
            sql: A DuckDB statement referring to the table names.
            params: Values for ``?`` / ``$1`` placeholders.
        """
        import duckdb  # deferred: writer processes never pay for it

        for attempt in range(_QUARANTINE_RETRIES + 1):
            self.recover()
            try:
                return self._query(sql, params)
            except duckdb.Error as exc:
                # A segment corrupted in a way the cheap check misses: DuckDB names it.
                # Quarantine outside the shared read lock (it takes the exclusive one).
                if attempt == _QUARANTINE_RETRIES or not self._quarantine_from_error(exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _query(self, sql: str, params: list[Any] | None) -> pd.DataFrame:
        with self.read_lock():
            with self._con_lock:
                if self._con is None or self._con_pid != os.getpid():
                    # DuckDB is not fork-safe: a forked child builds its own connection.
                    self._con = self._new_connection()
                    self._con_pid = os.getpid()
                # A cursor is an independent connection to the same in-memory catalog, so
                # threads can query concurrently; the views re-glob on every statement.
                cursor = self._con.cursor()
            try:
                if params is not None:
                    cursor.execute(sql, params)
                else:
                    cursor.execute(sql)
                return cursor.df()
            finally:
                cursor.close()

    def count(self, table: str) -> int:
        """Number of published rows in ``table``."""
        _check_table(table)
        return int(self.query(f"SELECT count(*) AS n FROM {_ident(table)}")["n"].iloc[0])

    # ------------------------------------------------------------------ compaction

    def compact(self, table: str | None = None, min_files: int = 2) -> dict[str, int]:
        """Merge each partition's small segments into one file (crash-safe, one compactor).

        Waits for a running compactor to finish. Segments whose spool still exists (a
        flush or recovery in progress) are skipped. Ends by refreshing ``metrics.duckdb``.

        Args:
            table: Only this table; all tables when ``None``.
            min_files: Merge a partition only when it has at least this many eligible
                segments (values below 2 are treated as 2).

        Returns:
            Table name -> number of segment files merged away (inputs replaced).
        """
        tables = list(TABLES) if table is None else [table]
        for name in tables:
            _check_table(name)
        min_files = max(2, min_files)
        merged = dict.fromkeys(tables, 0)
        with FileLock(str(self.root / ".compact.lock"), mode=FILE_MODE):
            self._recover_spools()
            self._recover_manifests(compact_lock_held=True)
            self._sweep_temp_files()
            for name in tables:
                table_dir = self.root / name
                if not table_dir.is_dir():
                    continue
                for part_dir in sorted(table_dir.glob("date=*")):
                    try:
                        merged[name] += self._compact_partition(name, part_dir, min_files)
                    except Exception:
                        log.exception("%r: compaction of %s failed", self, part_dir)
            self._refresh_duckdb_file()
        return merged

    def _compact_partition(self, table: str, part_dir: Path, min_files: int) -> int:
        # List segments before spools: a segment whose spool is gone by then is final.
        files = sorted(p for p in part_dir.iterdir() if p.name.endswith(".parquet"))
        pending = self._pending_spool_uids(table)
        inputs = [
            p
            for p in files
            if _spool_uid(p.name) not in pending and p.stat().st_size < COMPACT_MAX_INPUT_BYTES
        ]
        if len(inputs) < min_files:
            return 0
        schema = TABLES[table]
        output = part_dir / f"part-{uuid.uuid4().hex}.parquet"
        temp = part_dir / _tmp_name(output.name)
        expected = sum(pq.ParquetFile(p).metadata.num_rows for p in inputs)
        try:
            written = 0
            with (
                create_private(temp) as fh,
                pq.ParquetWriter(fh, schema, compression="zstd") as writer,
            ):
                batch: list[pa.Table] = []
                for p in inputs:
                    batch.append(_conform(pq.ParquetFile(p).read(), schema))
                    if sum(t.num_rows for t in batch) >= _ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(batch), _ROW_GROUP_ROWS)
                        written += sum(t.num_rows for t in batch)
                        batch = []
                if batch:
                    writer.write_table(pa.concat_tables(batch), _ROW_GROUP_ROWS)
                    written += sum(t.num_rows for t in batch)
            if written != expected or pq.ParquetFile(temp).metadata.num_rows != expected:
                raise RuntimeError(f"merged {written} rows, expected {expected}")
            _fsync_file(temp)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        manifest = self._write_manifest(table, part_dir, inputs, output, temp)
        try:
            with self._read_lock(exclusive=True):
                os.replace(temp, output)
                for p in inputs:
                    p.unlink()
                _fsync_dir(part_dir)
            manifest.unlink()
        except BaseException:
            self._resolve_manifest(manifest, owner=True)
            raise
        return len(inputs)

    def _pending_spool_uids(self, table: str) -> set[str]:
        try:
            names = os.listdir(self.root / "_spool" / table)
        except FileNotFoundError:
            return set()
        return {parsed[1] for n in names if (parsed := _parse_spool_name(n)) is not None}

    def _write_manifest(
        self, table: str, part_dir: Path, inputs: list[Path], output: Path, temp: Path
    ) -> Path:
        manifest_dir = self.root / "_manifests"
        make_private_dir(manifest_dir)
        path = manifest_dir / f"{uuid.uuid4().hex}.json"
        body = {
            "table": table,
            "partition": part_dir.name,
            "inputs": [p.name for p in inputs],
            "output": output.name,
            "temp": temp.name,
        }
        tmp = manifest_dir / _tmp_name(path.name)
        with create_private(tmp) as fh:
            fh.write(json.dumps(body, indent=1).encode())
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(manifest_dir)
        return path

    def _refresh_duckdb_file(self) -> None:
        """(Re)create ``metrics.duckdb`` with the views, for the duckdb CLI."""
        import duckdb

        try:
            con = duckdb.connect(str(self.root / "metrics.duckdb"))
        except duckdb.Error as exc:  # e.g. open read-write in someone's CLI
            log.warning("%r: metrics.duckdb not refreshed: %s", self, exc)
            return
        try:
            for table in TABLES:
                con.execute(_view_sql(self.root, table))
        finally:
            con.close()
        with contextlib.suppress(OSError):
            os.chmod(self.root / "metrics.duckdb", FILE_MODE)


__all__ = [
    "ALERTS_SCHEMA",
    "CALLS_SCHEMA",
    "PARTITION_COLUMNS",
    "PROBES_SCHEMA",
    "TABLES",
    "WORKFLOW_RUNS_SCHEMA",
    "MetricsStore",
]
