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

On S3-compatible object storage (``JUNCTION_STORE_URL``): :class:`ObjectMetricsStore`
(:mod:`junction.store.objectstore`) keeps the spools on the local disk and uploads the
segments; its module docstring gives the layout and its consistency argument.
:func:`open_store` opens the store the settings name.
"""

from junction.store.core import COMPACT_MAX_INPUT_BYTES, MetricsStore
from junction.store.files import (
    DIR_MODE,
    FILE_MODE,
    QUARANTINE_DIR,
    create_private,
    make_private_dir,
    segment_problem,
)
from junction.store.objectstore import ObjectMetricsStore, open_store
from junction.store.schema import (
    ALERTS_SCHEMA,
    CALLS_SCHEMA,
    PARTITION_COLUMNS,
    PROBES_SCHEMA,
    TABLES,
    WORKFLOW_RUNS_SCHEMA,
)

__all__ = [
    "ALERTS_SCHEMA",
    "CALLS_SCHEMA",
    "COMPACT_MAX_INPUT_BYTES",
    "DIR_MODE",
    "FILE_MODE",
    "PARTITION_COLUMNS",
    "PROBES_SCHEMA",
    "QUARANTINE_DIR",
    "TABLES",
    "WORKFLOW_RUNS_SCHEMA",
    "MetricsStore",
    "ObjectMetricsStore",
    "create_private",
    "make_private_dir",
    "open_store",
    "segment_problem",
]
