"""The metrics store on S3-compatible object storage (``JUNCTION_STORE_URL=s3://bucket/prefix``).

Same tables, schemas, ``append``/``flush``/``query``/``count``/``compact`` as the local
store; hosts share the store without a shared filesystem or a lock of ours::

    <prefix>/<table>/date=YYYY-MM-DD/seg-<spool uuid>.parquet   a flushed spool (one per day)
    <prefix>/<table>/date=YYYY-MM-DD/part-<uuid>.parquet        a compaction's output
    <prefix>/<table>/date=YYYY-MM-DD/part-<uuid>.json           what that output replaces
    <prefix>/_leases/compact.json                               the compaction lease
    <JUNCTION_STORE_DIR>/_spool/<table>/<pid>-<uuid>.jsonl       a host's unflushed rows

Write path: ``append`` spools to the local disk exactly as the local store does (a crash
loses nothing; ``recover()`` publishes a dead writer's spool). A flush uploads one segment
per day under ``seg-<spool uuid>`` with ``If-None-Match: *`` and only then deletes the
spool: keys never collide between hosts (uuid4), and a retried upload (same spool, same
key) cannot publish twice: see *idempotence* below.

Compaction (:meth:`ObjectMetricsStore.compact`) runs under the compaction lock
(:mod:`junction.store.lease`: an S3 conditional-write lease, or ``pg_try_advisory_lock``
when ``JUNCTION_STATE_URL`` is PostgreSQL); a compactor that finds it held skips the run.
Per partition it merges the live segments into ``part-<u>.parquet``, after first writing
``part-<u>.json``: the direct inputs, and transitively every ``seg-`` spool uuid and every
earlier ``part-`` it contains. It renews the lease right before publishing (the fence).
Inputs are not deleted then: a later compaction deletes files replaced by a part at least
``grace_seconds`` old (a replaced part only after its own inputs, its ``.json`` after it).

Consistency (S3 is strongly consistent for PUT, DELETE and LIST since 2020; keys are never
re-created once deleted):

* *No row twice.* A query lists the prefix once; every listed part's ``.json`` (written
  before the part, deleted after it) names transitively everything merged into it, and
  those files are left out. A row lives in a chain ``seg -> part -> part ...``; of any
  two listed files holding it, the later one's ``.json`` names the earlier one. Only one
  compactor runs at a time, so there is one chain per row.
* *No row lost.* A file is deleted no sooner than ``grace_seconds`` after the part
  replacing it appeared. A listing that takes less than that (the reader checks and
  re-lists otherwise) cannot miss every file of a chain: a file missing from it was
  deleted, so its successor existed since before the listing began, and so on up to
  the chain's newest file, which is never deleted.
* *Files gone mid-read.* DuckDB reads the listed files after the listing; if a file a
  query needs vanished (deleted after its grace), the query re-lists and runs once more.
* *Idempotence.* A first upload is ``If-None-Match: *``. A retry (an earlier attempt
  failed, perhaps after the server stored it) and a dead writer's recovery first check
  that the segment is neither there nor named by a part's ``.json`` of its partition (the
  chain argument again: once published, some file of its chain exists for good).
* Clocks: the lease's expiry and the grace compare the compactor's clock with S3's
  ``LastModified``; hosts' clocks must agree to well within ``grace_seconds``.

Credentials come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``) or AWS profiles; nothing
here logs them or puts them into an error. DuckDB reads ``s3://`` through the registered
fsspec filesystem (``s3fs``): it cannot install its httpfs extension here.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (registers its exit hook before ours, below)
import contextlib
import io
import json
import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from junction.store.core import COMPACT_MAX_INPUT_BYTES, MetricsStore
from junction.store.files import spool_uid
from junction.store.lease import LEASE_KEY, CompactionLock, PgAdvisoryLock, S3Lease, split_path
from junction.store.schema import TABLES, check_table, conform, run_df, view_sql

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import s3fs

    from junction.settings import Settings

log = logging.getLogger("junction.store")

_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
_PART = re.compile(r"^part-[0-9a-f]{32}\.parquet$")


def make_filesystem(endpoint_url: str | None = None) -> s3fs.S3FileSystem:
    """An ``s3fs`` filesystem with short, bounded retries (see the comment on its cache).

    Args:
        endpoint_url: An S3-compatible server (``http://host:port``); ``None``: AWS.
    """
    import s3fs  # deferred: aiobotocore's import is paid only by object stores

    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint_url,
        # Each listing (the snapshot) starts from an empty cache and fills it; DuckDB's
        # per-file size/info lookups are then answered from it instead of a HEAD each
        # (a query over 50 segments: 3.5 s -> 1.0 s). Nothing else trusts the cache.
        use_listings_cache=True,
        skip_instance_cache=True,
        config_kwargs={
            "retries": {"max_attempts": 2, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
        },
    )
    fs.retries = 2  # s3fs's own retry loop (a class default of 5, backing off each time)
    return fs


@dataclass(frozen=True)
class Replaces:
    """A part's ``.json``: what the part replaces."""

    inputs: tuple[str, ...]
    segments: frozenset[str]
    """Spool uuids of every ``seg-`` merged into the part, transitively."""
    parts: frozenset[str]
    """Names of every earlier ``part-`` merged into it, transitively."""

    def names(self) -> set[str]:
        """File names (in the part's partition) this part makes redundant."""
        return {*self.inputs, *self.parts, *(f"seg-{u}.parquet" for u in self.segments)}

    def to_json(self) -> bytes:
        body = {
            "inputs": list(self.inputs),
            "segments": sorted(self.segments),
            "parts": sorted(self.parts),
        }
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Replaces:
        body = json.loads(data)
        return cls(tuple(body["inputs"]), frozenset(body["segments"]), frozenset(body["parts"]))


class StaleListing(RuntimeError):
    """A part listed a moment ago is gone (compacted further): list again."""


@dataclass
class Snapshot:
    """One listing of the store: segments, what each part replaces, the lease."""

    files: dict[str, dict[str, Any]]
    """fsspec path -> info (``size``, ``LastModified``) of every listed ``.parquet``."""
    replaces: dict[str, Replaces] = field(default_factory=dict)
    """Path of each listed part -> its ``.json``."""
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Path of each listed ``.json`` -> info."""
    redundant: dict[str, str] = field(default_factory=dict)
    """Path of a listed file some listed part replaces -> that part."""

    def live(self, table: str, base: str) -> list[str]:
        """Paths of the table's files a query reads (nothing twice, nothing missing)."""
        prefix = f"{base}/{table}/"
        return sorted(p for p in self.files if p.startswith(prefix) and p not in self.redundant)


class ObjectMetricsStore(MetricsStore):
    """A :class:`MetricsStore` whose segments live on S3-compatible object storage.

    Args:
        spool_dir: Local directory for this host's spools (must survive a crash).
        url: ``s3://bucket/prefix``.
        filesystem: The ``s3fs`` filesystem (default: :func:`make_filesystem`).
        endpoint_url: The server, when ``filesystem`` is not given.
        lock_url: A ``postgresql://`` URL: compaction takes an advisory lock there
            instead of the S3 lease.
        lease_seconds: How long a compaction lease lasts between renewals.
        grace_seconds: How long replaced files stay after the part replacing them
            appeared (longer than any listing takes). 0 deletes them at the next
            compaction, giving up the no-row-lost guarantee for concurrent readers.
        **options: ``flush_rows``, ``flush_seconds``, ``fsync`` as for MetricsStore.
    """

    def __init__(
        self,
        spool_dir: str | Path,
        url: str,
        *,
        filesystem: s3fs.S3FileSystem | None = None,
        endpoint_url: str | None = None,
        lock_url: str | None = None,
        lease_seconds: float = 300.0,
        grace_seconds: float = 600.0,
        **options: Any,
    ) -> None:
        match = _URL.match(url.rstrip("/"))
        if match is None:
            raise ValueError(f"store URL {url!r} is not s3://bucket[/prefix]")
        super().__init__(spool_dir, **options)
        self.url = url.rstrip("/")
        self.base = "/".join(filter(None, [match["bucket"], (match["prefix"] or "").strip("/")]))
        self._given_fs = filesystem
        self._endpoint_url = endpoint_url
        self._fs = filesystem if filesystem is not None else make_filesystem(endpoint_url)
        self._fs_pid = os.getpid()
        self.lock_url = lock_url
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self._attempted: set[str] = set()  # spool uuids whose upload was tried and failed
        self._replaces: dict[str, Replaces] = {}  # parts are immutable: cache their .json
        # connect()'s connections -> the files each table's view reads now.
        self._connected: dict[duckdb.DuckDBPyConnection, dict[str, list[str]]] = {}
        self._writer.publish = self._publish
        _OPEN.add(self)

    def __repr__(self) -> str:
        return f"MetricsStore({self.url!r})"

    @property
    def fs(self) -> s3fs.S3FileSystem:
        """The store's filesystem (a forked child gets its own client)."""
        if self._given_fs is None and self._fs_pid != os.getpid():
            # The S3 client is bound to the parent's event loop thread, absent after fork.
            self._fs = make_filesystem(self._endpoint_url)
            self._fs_pid = os.getpid()
        return self._fs

    # ------------------------------------------------------------------ writing

    def _publish(
        self, root: Path, table: str, uid: str, parts: dict[str, pa.Table], fsync: bool
    ) -> int:
        """Upload ``seg-<uid>.parquet`` into each day partition that lacks it."""
        retry = uid in self._attempted or uid not in self._writer.own_uids()
        self._attempted.add(uid)
        written = 0
        for day, tbl in parts.items():
            path = f"{self.base}/{table}/date={day}/seg-{uid}.parquet"
            if retry and self._published(path, uid):
                continue
            buf = io.BytesIO()
            pq.write_table(tbl, buf, compression="zstd")
            try:
                self._put(path, buf.getvalue())
            except FileExistsError:  # a concurrent recovery of the same spool
                continue
            written += tbl.num_rows
        self._attempted.discard(uid)
        return written

    def _put(self, path: str, data: bytes) -> None:
        bucket, key = split_path(path)
        self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")

    def _published(self, path: str, uid: str) -> bool:
        """Whether the segment is there, or merged into a part of its partition."""
        self.fs.invalidate_cache()  # must see the store as it is now
        if self.fs.exists(path):
            return True
        directory = path.rsplit("/", 1)[0]
        try:
            names = self.fs.ls(directory, detail=False)
        except FileNotFoundError:
            return False
        for note in names:
            if note.rsplit("/", 1)[-1].startswith("part-") and note.endswith(".json"):
                with contextlib.suppress(FileNotFoundError):  # its part compacted further
                    if uid in self._load_replaces(note[: -len(".json")] + ".parquet").segments:
                        return True
        return False

    def recover(self) -> int:
        """Publish dead writers' local spools (the remote side needs no repair).

        Returns:
            Number of rows published.
        """
        return self._recover_spools()

    # ------------------------------------------------------------------ listing

    def _load_replaces(self, part: str) -> Replaces:
        cached = self._replaces.get(part)
        if cached is None:
            cached = Replaces.from_json(self.fs.cat_file(part[: -len(".parquet")] + ".json"))
            self._replaces[part] = cached
        return cached

    def snapshot(self) -> Snapshot:
        """List the store once (re-listing while a part vanishes under the listing)."""
        for _ in range(5):
            started = time.monotonic()
            try:
                snap = self._list()
            except StaleListing:
                continue
            took = time.monotonic() - started
            if self.grace_seconds <= 0 or took < self.grace_seconds / 2:
                return snap
            log.warning(
                "%r: listing took %.0f s (grace %.0f s); listing again",
                self,
                took,
                self.grace_seconds,
            )
        raise RuntimeError(f"{self!r}: no consistent listing after 5 attempts")

    def _list(self) -> Snapshot:
        try:
            self.fs.invalidate_cache()
            found: dict[str, dict[str, Any]] = self.fs.find(self.base, detail=True)
        except FileNotFoundError:
            found = {}
        snap = Snapshot(files={})
        for path, info in found.items():
            parts = path[len(self.base) + 1 :].split("/")
            if len(parts) != 3 or parts[0] not in TABLES or not parts[1].startswith("date="):
                continue
            if parts[2].endswith(".parquet"):
                snap.files[path] = info
            elif parts[2].startswith("part-") and parts[2].endswith(".json"):
                snap.notes[path] = info
        for path in snap.files:
            if _PART.match(path.rsplit("/", 1)[-1]):
                try:
                    snap.replaces[path] = self._load_replaces(path)
                except FileNotFoundError as exc:  # the part was deleted after the listing
                    raise StaleListing(path) from exc
        for part, replaces in snap.replaces.items():
            directory = part.rsplit("/", 1)[0]
            for name in replaces.names():
                if f"{directory}/{name}" in snap.files:
                    snap.redundant[f"{directory}/{name}"] = part
        return snap

    # ------------------------------------------------------------------ reading

    @contextlib.contextmanager
    def read_lock(self) -> Iterator[None]:
        """Point the views of :meth:`connect`'s connections at a fresh listing.

        Nothing is locked: each statement inside reads one consistent listing (see the
        module docstring); a file compacted away meanwhile fails the statement, and the
        next ``read_lock`` lists again.
        """
        if self._connected:
            import duckdb  # deferred: writer processes never pay for it

            snap = self.snapshot()
            with self._con_lock:
                for con in list(self._connected):
                    try:
                        self._refresh(con, snap)
                    except duckdb.ConnectionException:  # closed by its owner
                        del self._connected[con]
        yield

    def _refresh(self, con: duckdb.DuckDBPyConnection, snap: Snapshot) -> None:
        shown = self._connected[con]
        for table in TABLES:
            files = [f"s3://{p}" for p in snap.live(table, self.base)]
            if shown.get(table) != files:  # creating a view reads every file's footer
                con.execute(view_sql("", table, files))
                shown[table] = files

    def _base_connection(self) -> duckdb.DuckDBPyConnection:
        with self._con_lock:
            if self._con is None or self._con_pid != os.getpid():
                import duckdb  # deferred: writer processes never pay for it

                self._con = duckdb.connect()
                self._con.register_filesystem(self.fs)
                self._con_pid = os.getpid()
            return self._con

    def _views(self, con: duckdb.DuckDBPyConnection, snap: Snapshot, sql: str) -> None:
        con.execute("SET TimeZone = 'UTC'")
        for table in TABLES:
            # Tables the statement does not name get an empty view: no footers to fetch.
            used = re.search(rf"\b{table}\b", sql) is not None
            files = [f"s3://{p}" for p in snap.live(table, self.base)] if used else []
            con.execute(view_sql("", table, files, temp=True))

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per table over the files listed now.

        The views stay on that listing until :meth:`read_lock` lists again: wrap reads
        in it (as with the local store) to see new segments.
        """
        self.recover()
        import duckdb  # deferred: writer processes never pay for it

        con = duckdb.connect()
        con.register_filesystem(self.fs)
        con.execute("SET TimeZone = 'UTC'")
        with self._con_lock:
            self._connected[con] = {}
            self._refresh(con, self.snapshot())
        return con

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run SQL against the table views over one listing of the store.

        If a listed file vanished before DuckDB read it (compacted away after its
        grace), the store is listed again and the statement runs once more.
        """
        import duckdb  # deferred: writer processes never pay for it

        self.recover()
        snap = self.snapshot()
        try:
            return self._run(snap, sql, params)
        except duckdb.Error:
            again = self.snapshot()
            if set(snap.files) <= set(again.files):
                raise  # nothing vanished: a genuine error
            log.info("%r: files compacted away during a query; running it again", self)
            return self._run(again, sql, params)

    def _run(self, snap: Snapshot, sql: str, params: list[Any] | None) -> pd.DataFrame:
        cursor = self._base_connection().cursor()
        try:
            self._views(cursor, snap, sql)
            return run_df(cursor, sql, params)
        finally:
            cursor.close()

    # ------------------------------------------------------------------ compaction

    def _lock(self) -> CompactionLock:
        if self.lock_url:
            return PgAdvisoryLock(self.lock_url, self.url)
        return S3Lease(self.fs, f"{self.base}/{LEASE_KEY}", self.lease_seconds)

    def compact(self, table: str | None = None, min_files: int = 2) -> dict[str, int]:
        """Merge each partition's live files into one part (one compactor at a time).

        Skips the run (all zeros) when another compactor holds the lock. First deletes
        the files replaced by parts older than ``grace_seconds``.

        Args:
            table: Only this table; all tables when ``None``.
            min_files: Merge a partition only when it has at least this many live files
                (values below 2 are treated as 2).

        Returns:
            Table name -> number of files merged into new parts.
        """
        tables = list(TABLES) if table is None else [table]
        for name in tables:
            check_table(name)
        min_files = max(2, min_files)
        merged = dict.fromkeys(tables, 0)
        lock = self._lock()
        if not lock.acquire():
            log.info("%r: another compactor holds the lock; this run skipped", self)
            return merged
        try:
            self._recover_spools()
            snap = self.snapshot()
            self._delete_replaced(snap)
            for name in tables:
                for directory, inputs in _partitions(snap.live(name, self.base)).items():
                    inputs = [p for p in inputs if snap.files[p]["size"] < COMPACT_MAX_INPUT_BYTES]
                    if len(inputs) < min_files:
                        continue
                    try:
                        self._merge(name, directory, inputs, snap, lock)
                    except Exception:
                        log.exception("%r: compaction of %s failed", self, directory)
                        continue
                    merged[name] += len(inputs)
        finally:
            lock.release()
        return merged

    def _merge(
        self, table: str, directory: str, inputs: list[str], snap: Snapshot, lock: CompactionLock
    ) -> None:
        schema = TABLES[table]
        data = [conform(pq.read_table(io.BytesIO(self.fs.cat_file(p))), schema) for p in inputs]
        merged = pa.concat_tables(data)
        buf = io.BytesIO()
        pq.write_table(merged, buf, compression="zstd", row_group_size=256_000)
        segments: set[str] = set()
        parts: set[str] = set()
        for path in inputs:
            name = path.rsplit("/", 1)[-1]
            uid = spool_uid(name)
            if uid is not None:
                segments.add(uid)
            else:
                earlier = snap.replaces[path]
                parts.update({name, *earlier.parts})
                segments.update(earlier.segments)
        names = tuple(p.rsplit("/", 1)[-1] for p in inputs)
        note = Replaces(names, frozenset(segments), frozenset(parts))
        output = f"{directory}/part-{uuid.uuid4().hex}"
        lock.check()  # the fence: nobody else may be merging these inputs
        self._put(output + ".json", note.to_json())  # before the part, outliving it
        self._put(output + ".parquet", buf.getvalue())
        self._replaces[output + ".parquet"] = note

    def _delete_replaced(self, snap: Snapshot) -> None:
        """Delete replaced files whose replacing part is older than the grace."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.grace_seconds)
        due = {
            path for path, part in snap.redundant.items() if _modified(snap.files[part]) <= cutoff
        }
        gone: set[str] = set()
        while True:
            # A replaced part goes only after the files it replaces: while one of them
            # is listed, the part's .json is what keeps it out of queries.
            ready = [
                p
                for p in due - gone
                if p not in snap.replaces
                or not any(
                    f"{p.rsplit('/', 1)[0]}/{n}" in snap.files.keys() - gone
                    for n in snap.replaces[p].names()
                )
            ]
            if not ready:
                break
            for path in sorted(ready):
                self.fs.rm_file(path)
                if path in snap.replaces:
                    self.fs.rm_file(path[: -len(".parquet")] + ".json")
                gone.add(path)
        # A .json whose part never appeared: its compactor died between the two writes.
        for note, info in snap.notes.items():
            if note[: -len(".json")] + ".parquet" not in snap.files and _modified(info) <= cutoff:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(note)
        if gone:
            log.info("%r: deleted %d compacted files", self, len(gone))


_OPEN: weakref.WeakSet[ObjectMetricsStore] = weakref.WeakSet()


def _flush_at_exit() -> None:
    """Upload what is spooled while the interpreter can still make requests.

    The stores' own exit flush (``weakref.finalize``, an ``atexit`` hook) runs after
    thread pools refuse new work, which the S3 client needs (it resolves names in one).
    A failed upload leaves the rows in the spool for the next store opened on it.
    """
    for store in list(_OPEN):
        try:
            store.flush()
        except Exception:
            log.exception("%r: flush at exit failed; the rows stay in the spool", store)


# Hooks run newest first, so this runs before concurrent.futures (imported above) shuts
# its pools down.
threading._register_atexit(_flush_at_exit)  # type: ignore[attr-defined]


def _modified(info: dict[str, Any]) -> datetime:
    stamp = info.get("LastModified")
    return stamp if isinstance(stamp, datetime) else datetime.now(UTC)


def _partitions(paths: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for path in paths:
        grouped.setdefault(path.rsplit("/", 1)[0], []).append(path)
    return grouped


def open_store(settings: Settings, **options: Any) -> MetricsStore:
    """The metrics store the settings name.

    ``JUNCTION_STORE_URL`` set: an :class:`ObjectMetricsStore` there, spooling under
    ``settings.metrics_dir`` (compaction locks through ``JUNCTION_STATE_URL`` when that is
    PostgreSQL); unset: the local store in ``settings.metrics_dir``.

    Args:
        settings: The settings in effect.
        **options: ``flush_rows``, ``flush_seconds``, ``fsync``.
    """
    if not settings.store_url:
        return MetricsStore(settings.metrics_dir, **options)
    state = getattr(settings, "state_url", None)
    lock_url = state.get_secret_value() if state is not None else None
    return ObjectMetricsStore(
        settings.metrics_dir,
        settings.store_url,
        endpoint_url=settings.s3_endpoint_url,
        lock_url=lock_url if lock_url and lock_url.startswith("postgres") else None,
        **options,
    )
