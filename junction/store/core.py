"""The store: :class:`MetricsStore` (appends, recovery, consistent reads, compaction)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from junction.store.files import (
    DIR_MODE,
    FILE_MODE,
    QUARANTINE_DIR,
    create_private,
    fsync_path,
    make_private_dir,
    parse_spool_name,
    pid_alive,
    segment_problem,
    spool_uid,
    tmp_name,
    tmp_owner,
)
from junction.store.schema import (
    CALLS_SCHEMA,
    COLUMN_NAMES,
    TABLES,
    as_mapping,
    check_spooled,
    check_table,
    conform,
    encode_row,
    ident,
    normalize_row,
    partition_rows,
    run_df,
    view_sql,
)
from junction.store.writer import Writer, close_writer

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

log = logging.getLogger("junction.store")

COMPACT_MAX_INPUT_BYTES = 256 * 1024 * 1024
"""Segments at least this large are left alone by compaction."""
_ROW_GROUP_ROWS = 256_000
_QUARANTINE_RETRIES = 5


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
        self._writer = Writer(self.root, flush_rows, flush_seconds, fsync)
        # Runs at garbage collection or interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, close_writer, self._writer)
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
        check_table(table)
        if (
            isinstance(rows, Mapping | str | bytes)
            or hasattr(rows, "model_dump")
            or (dataclasses.is_dataclass(rows))
        ):
            raise TypeError("append() takes an iterable of rows; wrap a single row in a list")
        normalized = [normalize_row(table, as_mapping(row)) for row in rows]
        if not normalized:
            return 0
        payload = b"".join(encode_row(table, row) for row in normalized)
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
            data = as_mapping(metric)
        except ValueError:
            data = {n: getattr(metric, n) for n in CALLS_SCHEMA.names if hasattr(metric, n)}
        names = COLUMN_NAMES["calls"]
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
                parsed = parse_spool_name(name)
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
            if size == 0 and pid_alive(pid):
                return 0  # possibly a writer between creating and locking its spool
            data = b""
            while chunk := os.read(fd, 1 << 20):
                data += chunk
            rows = self._read_spool(table, path, data)
            try:
                parts = partition_rows(table, rows)
            except (pa.ArrowException, ValueError, TypeError, KeyError):
                self._quarantine(path)
                raise
            written = self._writer.publish(self.root, table, uid, parts, self._writer.fsync)
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
                rows.append(check_spooled(table, json.loads(line)))
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
                        fsync_path(part_dir)
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
                    pid = tmp_owner(entry.name)
                    if pid is not None and not pid_alive(pid):
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
                con.execute(view_sql(self.root, table))
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
                return run_df(cursor, sql, params)
            finally:
                cursor.close()

    def count(self, table: str) -> int:
        """Number of published rows in ``table``."""
        check_table(table)
        return int(self.query(f"SELECT count(*) AS n FROM {ident(table)}")["n"].iloc[0])

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
            check_table(name)
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
            if spool_uid(p.name) not in pending and p.stat().st_size < COMPACT_MAX_INPUT_BYTES
        ]
        if len(inputs) < min_files:
            return 0
        schema = TABLES[table]
        output = part_dir / f"part-{uuid.uuid4().hex}.parquet"
        temp = part_dir / tmp_name(output.name)
        expected = sum(pq.ParquetFile(p).metadata.num_rows for p in inputs)
        try:
            written = 0
            with (
                create_private(temp) as fh,
                pq.ParquetWriter(fh, schema, compression="zstd") as writer,
            ):
                batch: list[pa.Table] = []
                for p in inputs:
                    batch.append(conform(pq.ParquetFile(p).read(), schema))
                    if sum(t.num_rows for t in batch) >= _ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(batch), _ROW_GROUP_ROWS)
                        written += sum(t.num_rows for t in batch)
                        batch = []
                if batch:
                    writer.write_table(pa.concat_tables(batch), _ROW_GROUP_ROWS)
                    written += sum(t.num_rows for t in batch)
            if written != expected or pq.ParquetFile(temp).metadata.num_rows != expected:
                raise RuntimeError(f"merged {written} rows, expected {expected}")
            fsync_path(temp)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        manifest = self._write_manifest(table, part_dir, inputs, output, temp)
        try:
            with self._read_lock(exclusive=True):
                os.replace(temp, output)
                for p in inputs:
                    p.unlink()
                fsync_path(part_dir)
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
        return {parsed[1] for n in names if (parsed := parse_spool_name(n)) is not None}

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
        tmp = manifest_dir / tmp_name(path.name)
        with create_private(tmp) as fh:
            fh.write(json.dumps(body, indent=1).encode())
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(manifest_dir)
        return path

    def _refresh_duckdb_file(self) -> None:
        """(Re)create ``metrics.duckdb`` with the views, for the duckdb CLI."""
        # Function-level: writers (every flow run, the monitor) never pay DuckDB's import.
        import duckdb

        try:
            con = duckdb.connect(str(self.root / "metrics.duckdb"))
        except duckdb.Error as exc:  # e.g. open read-write in someone's CLI
            log.warning("%r: metrics.duckdb not refreshed: %s", self, exc)
            return
        try:
            for table in TABLES:
                con.execute(view_sql(self.root, table))
        finally:
            con.close()
        with contextlib.suppress(OSError):
            os.chmod(self.root / "metrics.duckdb", FILE_MODE)
