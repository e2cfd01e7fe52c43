"""Metrics store tests: real DuckDB, real files, real OS processes (no mocks)."""

from __future__ import annotations

import dataclasses
import fcntl
import gc
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filelock import FileLock
from pydantic import BaseModel

from integrations.metrics import CallMetric
from junction.store import TABLES, MetricsStore

WRITER = Path(__file__).with_name("store_writer_proc.py")
DAY = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def call_row(i: int = 0, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ts": DAY + timedelta(seconds=i),
        "service": "crm",
        "action": "get_contact",
        "method": "GET",
        "path": f"/contacts/{i}",
        "status": 200,
        "ok": True,
        "latency_ms": 12.5,
        "error_class": None,
        "error": None,
        "attempts": 1,
        "breaker_state": "closed",
        "source": "probe",
        "run_id": None,
    }
    row.update(overrides)
    return row


FULL_ROWS: dict[str, list[dict[str, Any]]] = {
    "calls": [
        call_row(0, id="c1"),
        call_row(
            1,
            id="c2",
            ts=DAY + timedelta(days=1),
            status=None,
            ok=False,
            latency_ms=3001.25,
            error_class="TimeoutError",
            error="read timed out\nline 2 ünïcode",
            attempts=3,
            breaker_state="open",
            source="workflow",
            run_id="run-9",
        ),
    ],
    "probes": [
        {
            "id": "p1",
            "ts": DAY,
            "sweep_id": "s1",
            "service": "crm",
            "ok": True,
            "status": 200,
            "latency_ms": 8.0,
            "error_class": None,
            "error": None,
            "breaker_state": "closed",
        },
        {
            "id": "p2",
            "ts": DAY,
            "sweep_id": "s1",
            "service": "erp",
            "ok": False,
            "status": None,
            "latency_ms": 0.0,
            "error_class": "ConnectError",
            "error": "refused",
            "breaker_state": "half_open",
        },
    ],
    "workflow_runs": [
        {
            "id": "w1",
            "run_id": "r1",
            "workflow": "sync_orders",
            "started_at": DAY,
            "ended_at": DAY + timedelta(seconds=90),
            "status": "completed",
            "duration_ms": 90_000.0,
            "steps": 5,
            "retries": 1,
            "fallbacks": 0,
            "error": None,
            "params_json": '{"since": "2024-05-01"}',
        },
        {
            "id": "w2",
            "run_id": "r2",
            "workflow": "sync_orders",
            "started_at": DAY - timedelta(days=2),
            "ended_at": None,
            "status": "failed",
            "duration_ms": 10.5,
            "steps": 1,
            "retries": 0,
            "fallbacks": 2,
            "error": "boom",
            "params_json": None,
        },
    ],
    "alerts": [
        {
            "id": "a1",
            "ts": DAY,
            "fingerprint": "f1",
            "service": "crm",
            "rule": "error_rate",
            "severity": "critical",
            "state": "firing",
            "message": "5xx > 10%",
            "labels_json": '{"team": "core"}',
        },
    ],
}


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain dicts (NA -> None, Timestamp -> datetime) for comparison."""
    out = []
    for rec in df.to_dict("records"):
        clean: dict[str, Any] = {}
        for name, value in rec.items():
            key = str(name)
            if not isinstance(value, str) and pd.isna(value):
                clean[key] = None
            elif isinstance(value, pd.Timestamp):
                clean[key] = value.to_pydatetime()
            else:
                clean[key] = value.item() if hasattr(value, "item") else value
        out.append(clean)
    return out


_CHILD_ENV: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _child_bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Let writer processes share compiled bytecode kept out of the source tree.

    With PYTHONDONTWRITEBYTECODE every child would recompile pyarrow/pandas from source,
    which dominates the multi-process tests on a small machine.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    subprocess.run([sys.executable, "-c", "import junction.store, pandas"], env=env, check=True)
    _CHILD_ENV.clear()
    _CHILD_ENV.update(env)


def spawn_writer(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_CHILD_ENV or None,
    )


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def files(root: Path, table: str, pattern: str = "*.parquet") -> list[Path]:
    return sorted((root / table).glob(f"date=*/{pattern}"))


def spools(root: Path, table: str = "calls") -> list[Path]:
    return sorted((root / "_spool" / table).glob("*.jsonl"))


def raw_count(root: Path, table: str) -> int:
    """Count straight from the files, with no lock or recovery (what a naive reader sees)."""
    con = duckdb.connect()
    try:
        row = con.execute(
            f"SELECT count(*) FROM read_parquet('{root / table}/*/*.parquet')"
        ).fetchone()
        assert row is not None
        return int(row[0])
    finally:
        con.close()


def ids(store: MetricsStore, table: str = "calls") -> list[str]:
    return list(store.query(f"SELECT id FROM {table} ORDER BY id")["id"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetricsStore]:
    with MetricsStore(tmp_path / "store") as s:
        yield s


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("table", list(TABLES))
def test_round_trip(store: MetricsStore, table: str) -> None:
    assert store.append(table, FULL_ROWS[table]) == len(FULL_ROWS[table])
    assert store.count(table) == 0  # not flushed yet
    assert store.flush() == len(FULL_ROWS[table])
    got = records(store.query(f"SELECT * EXCLUDE (date) FROM {table} ORDER BY id"))
    assert got == sorted(FULL_ROWS[table], key=lambda r: r["id"])
    for row in got:
        for name in TABLES[table].names:
            if isinstance(row[name], datetime):
                assert row[name].utcoffset() == timedelta(0)


def test_types_and_partitions(store: MetricsStore) -> None:
    store.append("calls", FULL_ROWS["calls"])
    store.append("workflow_runs", FULL_ROWS["workflow_runs"])
    store.flush()
    types = dict(store.query("DESCRIBE calls")[["column_name", "column_type"]].values)
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE"
    assert types["status"] == types["attempts"] == "INTEGER"
    assert types["latency_ms"] == "DOUBLE" and types["ok"] == "BOOLEAN"
    assert types["date"] == "DATE"
    assert [p.parent.name for p in files(store.root, "calls")] == [
        "date=2024-05-01",
        "date=2024-05-02",
    ]
    # workflow_runs partitions by started_at
    assert [p.parent.name for p in files(store.root, "workflow_runs")] == [
        "date=2024-04-29",
        "date=2024-05-01",
    ]
    df = store.query("SELECT id, date FROM workflow_runs WHERE date = ?", ["2024-04-29"])
    assert list(df["id"]) == ["w2"]
    schema = pq.read_schema(files(store.root, "calls")[0])
    assert schema.equals(TABLES["calls"])


def test_empty_tables_queryable(store: MetricsStore) -> None:
    for table, schema in TABLES.items():
        assert store.count(table) == 0
        df = store.query(f"SELECT * FROM {table}")
        assert list(df.columns) == [*schema.names, "date"]
        assert df.empty
    con = store.connect()
    try:
        assert con.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
        store.append("alerts", FULL_ROWS["alerts"])
        store.flush()
        # the same connection sees segments written after it was opened
        assert con.execute("SELECT count(*) FROM alerts").fetchone() == (1,)
    finally:
        con.close()


def test_accepts_models_dataclasses_mappings_and_defaults(store: MetricsStore) -> None:
    class Probe(BaseModel):
        sweep_id: str
        service: str
        ok: bool
        status: int | None
        latency_ms: float
        error_class: str | None = None
        error: str | None = None
        breaker_state: str = "closed"

    @dataclasses.dataclass
    class ProbeDC:
        sweep_id: str
        service: str
        ok: bool
        status: int | None
        latency_ms: int  # ints are fine for float columns
        error_class: str | None
        error: str | None
        breaker_state: str

    before = datetime.now(UTC)
    store.append(
        "probes",
        [
            Probe(sweep_id="s", service="a", ok=True, status=200, latency_ms=1.0),
            ProbeDC("s", "b", False, None, 7, "X", "y", "open"),
            {
                "sweep_id": "s",
                "service": "c",
                "ok": True,
                "status": 204,
                "latency_ms": 2.0,
                "breaker_state": "closed",
                "ts": "2024-05-01T10:00:00Z",
            },
        ],
    )
    store.flush()
    df = store.query("SELECT * FROM probes ORDER BY service")
    assert list(df["service"]) == ["a", "b", "c"]
    assert df["id"].str.fullmatch(r"[0-9a-f]{32}").all() and df["id"].nunique() == 3
    assert df["ts"].iloc[0] >= before  # missing ts -> now (UTC)
    assert df["ts"].iloc[2] == pd.Timestamp("2024-05-01T10:00:00Z")
    assert df["latency_ms"].iloc[1] == 7.0


def test_naive_datetime_is_utc_and_json_columns(store: MetricsStore) -> None:
    row = dict(FULL_ROWS["alerts"][0], ts=datetime(2024, 5, 1, 23, 30), labels_json={"b": 1})
    store.append("alerts", [row])
    store.flush()
    got = records(store.query("SELECT ts, labels_json, date FROM alerts"))[0]
    assert got["ts"] == datetime(2024, 5, 1, 23, 30, tzinfo=UTC)
    assert got["labels_json"] == '{"b": 1}'
    assert got["date"].date().isoformat() == "2024-05-01"


def test_record_call_ignores_extra_attributes(store: MetricsStore) -> None:
    @dataclasses.dataclass
    class ExtendedMetric(CallMetric):  # the engine's metric plus attributes that are not columns
        request_bytes: int = 0
        tags: tuple[str, ...] = ("x",)

    store.record_call(
        ExtendedMetric("crm", "get", "GET", "/c", 200, True, 1.5, None, None, 1, "closed", "cli")
    )
    with pytest.raises(ValueError, match="request_bytes"):
        store.append(
            "calls",
            [ExtendedMetric("crm", "get", "GET", "/c", 200, True, 1.5, None, None, 1, "closed")],
        )
    store.flush()
    assert records(store.query("SELECT service, source, attempts FROM calls")) == [
        {"service": "crm", "source": "cli", "attempts": 1}
    ]


# --------------------------------------------------------------------------- errors


def test_unknown_table(store: MetricsStore) -> None:
    for call in (
        lambda: store.append("nope", [{}]),
        lambda: store.count("nope"),
        lambda: store.compact("nope"),
    ):
        with pytest.raises(ValueError, match=r"unknown table 'nope'.*calls.*probes"):
            call()


def test_unknown_column_names_key_and_table(store: MetricsStore) -> None:
    with pytest.raises(ValueError, match=r"unknown column 'colour' for table 'calls'"):
        store.append("calls", [call_row(colour="red")])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("status", "200", r"calls\.status: expected int"),
        ("status", 2**31, r"calls\.status: expected an int32"),
        ("attempts", True, r"calls\.attempts: expected int"),
        ("ok", 1, r"calls\.ok: expected bool"),
        ("latency_ms", "fast", r"calls\.latency_ms: expected float"),
        ("ts", 1714560000, r"calls\.ts: expected datetime"),
        ("ts", "yesterday", r"calls\.ts: expected an ISO-8601 timestamp"),
        ("service", 42, r"calls\.service: expected str"),
        ("service", None, r"calls\.service must not be null"),
        ("error", "\ud800", r"calls\.error: string is not valid UTF-8"),
    ],
)
def test_bad_values_name_the_column(
    store: MetricsStore, column: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.append("calls", [call_row(0, **{column: value})])


def test_missing_required_and_atomic_batches(store: MetricsStore) -> None:
    row = call_row()
    del row["service"]
    with pytest.raises(ValueError, match=r"calls\.service is required"):
        store.append("calls", [call_row(1), row])  # the good row is not written either
    with pytest.raises(TypeError, match="iterable of rows"):
        store.append("calls", call_row())
    with pytest.raises(ValueError, match="Mapping, a pydantic model or a dataclass"):
        store.append("calls", [("not", "a", "row")])
    assert store.flush() == 0
    assert spools(store.root) == []
    assert store.count("calls") == 0


def test_fsync_mode_and_read_lock_with_connect(tmp_path: Path) -> None:
    with MetricsStore(tmp_path / "s", fsync=True, flush_rows=2) as s:
        s.append("calls", FULL_ROWS["calls"])
        con = s.connect()
        try:
            with s.read_lock():
                assert con.execute("SELECT count(*) FROM calls").fetchone() == (2,)
        finally:
            con.close()


# --------------------------------------------------------------------------- flushing


def test_auto_flush_by_rows_and_seconds(tmp_path: Path) -> None:
    with MetricsStore(tmp_path / "s", flush_rows=10, flush_seconds=3600) as s:
        s.append("calls", [call_row(i) for i in range(9)])
        assert s.count("calls") == 0 and len(spools(s.root)) == 1
        s.append("calls", [call_row(9)])  # 10th row triggers the flush
        assert s.count("calls") == 10 and spools(s.root) == []
    with MetricsStore(tmp_path / "t", flush_rows=1000, flush_seconds=0) as t:
        t.append("calls", [call_row(0)])
        assert t.count("calls") == 1


def test_close_and_context_manager(tmp_path: Path) -> None:
    with MetricsStore(tmp_path / "s") as s:
        s.append("calls", [call_row(i) for i in range(5)])
    assert spools(s.root) == [] and s.count("calls") == 5
    s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.append("calls", [call_row()])


def test_spool_file_format(store: MetricsStore) -> None:
    store.append("calls", [call_row(0), call_row(1)])
    (spool,) = spools(store.root)
    pid, _, uid = spool.stem.partition("-")
    assert int(pid) == os.getpid() and len(uid) == 32
    lines = spool.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3  # two complete, newline-terminated rows
    assert json.loads(lines[0])["path"] == "/contacts/0"
    store.flush()
    assert (store.root / "calls/date=2024-05-01" / f"seg-{uid}.parquet").exists()


def test_threads_append_concurrently(tmp_path: Path) -> None:
    with MetricsStore(tmp_path / "s", flush_rows=150) as s:

        def work(k: int) -> None:
            for b in range(20):
                s.append("calls", [call_row(i, id=f"{k}-{b}-{i}") for i in range(100)])

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert s.count("calls") == 8000
    assert s.query("SELECT count(DISTINCT id) AS n FROM calls")["n"][0] == 8000


def test_atexit_flushes_unclosed_store(tmp_path: Path) -> None:
    root = tmp_path / "s"
    proc = spawn_writer(root, "--rows", "700", "--batch", "100", "--no-close")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert spools(root) == []  # published by the atexit hook, not by recovery
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in files(root, "calls")) == 700


def test_garbage_collected_store_flushes(tmp_path: Path) -> None:
    root = tmp_path / "s"
    s = MetricsStore(root)
    s.append("calls", [call_row(i) for i in range(3)])
    del s
    gc.collect()
    assert spools(root) == [] and len(files(root, "calls")) == 1


def test_unlocked_spool_of_live_pid_is_an_orphan(tmp_path: Path) -> None:
    # pid alive (reused, or a writer that lost its lock) but no flock holder: recover it.
    root = tmp_path / "s"
    spool = _orphan_spool(root, 20)
    spool.rename(spool.with_name(f"{os.getpid()}-{spool.name.partition('-')[2]}"))
    assert MetricsStore(root).count("calls") == 20


# --------------------------------------------------------------------------- the proof


def _run_writers(
    store: MetricsStore, procs: list[subprocess.Popen[str]], *, compact: bool
) -> list[tuple[int, int]]:
    """Wait for the writers while a reader thread samples (count, distinct ids) in a loop
    (and, if asked, the main thread compacts in a loop). Returns the samples."""
    samples: list[tuple[int, int]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                df = store.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM calls")
                samples.append((int(df["n"][0]), int(df["d"][0])))
                time.sleep(0.02)  # leave the two cores mostly to the writers
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        while any(p.poll() is None for p in procs):
            if compact:
                store.compact()
            time.sleep(0.2)
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        stop.set()
        thread.join()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "READY" in out and err == ""  # no lock errors, no failed flushes
    assert not errors, errors
    assert samples and all(n == d for n, d in samples), "a reader saw duplicate rows"
    counts = [n for n, _ in samples]
    assert counts == sorted(counts), "a reader saw rows disappear"
    return samples


def test_eight_processes_write_concurrently_then_compact_under_reads(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = MetricsStore(root)
    procs = [
        spawn_writer(
            root, "--rows", "10000", "--batch", "700", "--flush-rows", "2500", "--days", "3"
        )
        for _ in range(8)
    ]
    _run_writers(store, procs, compact=False)
    df = store.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM calls")
    assert (df["n"][0], df["d"][0]) == (80_000, 80_000)
    assert spools(root) == []
    segments = files(root, "calls")
    assert len(segments) >= 8 * 4 * 3  # >= 4 flushes per writer, each into 3 day partitions

    # Compact while a reader thread counts in a loop: always exactly 80,000.
    during: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def counter() -> None:
        try:
            while not stop.is_set() or len(during) < 2:
                during.append(store.count("calls"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=counter)
    thread.start()
    while not during:
        time.sleep(0.01)
    result = store.compact()
    stop.set()
    thread.join()
    assert not errors, errors
    assert set(during) == {80_000}
    assert result == {"calls": len(segments), "probes": 0, "workflow_runs": 0, "alerts": 0}
    assert [len(list(p.glob("*.parquet"))) for p in sorted((root / "calls").glob("date=*"))] == [
        1,
        1,
        1,
    ]
    df = store.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM calls")
    assert (df["n"][0], df["d"][0]) == (80_000, 80_000)


def test_compaction_while_writers_flush(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = MetricsStore(root)
    procs = [
        spawn_writer(root, "--rows", "3000", "--batch", "200", "--flush-rows", "400", "--days", "2")
        for _ in range(4)
    ]
    _run_writers(store, procs, compact=True)
    assert store.count("calls") == 12_000
    store.compact()
    assert store.query("SELECT count(DISTINCT id) AS d FROM calls")["d"][0] == 12_000


# --------------------------------------------------------------------------- crash safety


def _read_until_ready(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            return int(line.split()[1])
    raise AssertionError(f"writer exited early: {proc.communicate()}")


def _digest(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_sigkill_mid_run_with_partial_spool_line(tmp_path: Path) -> None:
    root = tmp_path / "store"
    proc = spawn_writer(
        root,
        "--rows",
        "2500",
        "--batch",
        "500",
        "--flush-rows",
        "1000",
        "--days",
        "2",
        "--prefix",
        "k",
        "--base",
        DAY.isoformat(),
        "--hang",
    )
    try:
        assert _read_until_ready(proc) == 2500
        # Two flushes happened (2 x 1000 rows over 2 partitions); 500 rows wait in the spool.
        (spool,) = spools(root)
        assert spool.read_bytes().count(b"\n") == 500
        published = _digest(files(root, "calls"))
        assert len(published) == 4
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with spool.open("ab") as fh:  # the crash interrupted a write mid-line
        fh.write(b'{"id":"k-partial","ts":17145')

    store = MetricsStore(root)
    assert store.recover() == 500
    assert ids(store) == [f"k-{i:06d}" for i in range(2500)]
    assert spools(root) == []
    assert _digest(list(published)) == published  # earlier segments untouched
    assert store.recover() == 0
    assert store.count("calls") == 2500


def _orphan_spool(root: Path, rows: int) -> Path:
    """Leave a SIGKILLed writer's unflushed spool behind; return its path."""
    proc = spawn_writer(
        root,
        "--rows",
        str(rows),
        "--batch",
        "100",
        "--flush-rows",
        "100000",
        "--prefix",
        "o",
        "--days",
        "2",
        "--base",
        DAY.isoformat(),
        "--hang",
    )
    try:
        _read_until_ready(proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    (spool,) = spools(root)
    return spool


def test_crash_between_segment_rename_and_spool_delete(tmp_path: Path) -> None:
    root = tmp_path / "store"
    spool = _orphan_spool(root, 300)
    content = spool.read_bytes()
    store = MetricsStore(root)
    assert store.recover() == 300

    # Recreate "segments renamed into place, spool not yet deleted" for the dead writer.
    spool.write_bytes(content)
    assert store.recover() == 0
    assert store.count("calls") == 300 and spools(root) == []

    # Same state, this time found by compaction, which recovers before merging.
    spool.write_bytes(content)
    store.compact()
    assert store.count("calls") == 300 and spools(root) == []
    assert ids(store) == [f"o-{i:06d}" for i in range(300)]

    # Only one partition's segment made it before the crash: the other is written once.
    uid = spool.stem.partition("-")[2]
    first, second = files(root, "calls", f"seg-{uid}.parquet")
    spool.write_bytes(content)
    second.unlink()
    assert store.recover() == 150
    assert first.exists() and second.exists()
    assert store.count("calls") == 300


def test_compaction_skips_segments_whose_spool_is_still_live(tmp_path: Path) -> None:
    root = tmp_path / "store"
    spool = _orphan_spool(root, 200)
    content = spool.read_bytes()
    store = MetricsStore(root)
    store.recover()
    with MetricsStore(root, flush_rows=1) as other:  # more segments in the same partitions
        for i in range(4):
            other.append("calls", [call_row(i, id=f"x{i}", ts=DAY - timedelta(days=i % 2))])
    spool.write_bytes(content)
    uid = spool.stem.partition("-")[2]
    fd = os.open(spool, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a "live writer" mid-flush owns the spool
        store.compact()
        assert len(files(root, "calls", f"seg-{uid}.parquet")) == 2  # left alone
        assert len(files(root, "calls")) == 4  # the others were merged
        assert store.count("calls") == 204
    finally:
        os.close(fd)
    assert store.recover() == 0
    store.compact()
    assert files(root, "calls", "seg-*.parquet") == []
    assert len(files(root, "calls")) == 2
    assert store.count("calls") == 204


def _three_segments(root: Path) -> list[Path]:
    with MetricsStore(root, flush_rows=10) as s:
        for b in range(3):
            s.append("calls", [call_row(i, id=f"m{i:02d}") for i in range(b * 10, b * 10 + 10)])
    segments = files(root, "calls")
    assert len(segments) == 3
    return segments


def _merged(segments: list[Path]) -> pa.Table:
    return pa.concat_tables(pq.ParquetFile(p).read() for p in segments)


def _write_manifest(root: Path, inputs: list[Path], output: str, temp: str) -> Path:
    (root / "_manifests").mkdir(exist_ok=True)
    manifest = root / "_manifests" / "deadbeef.json"
    manifest.write_text(
        json.dumps(
            {
                "table": "calls",
                "partition": inputs[0].parent.name,
                "inputs": [p.name for p in inputs],
                "output": output,
                "temp": temp,
            }
        )
    )
    return manifest


def test_manifest_rolled_back_when_output_not_in_place(tmp_path: Path) -> None:
    root = tmp_path / "store"
    segments = _three_segments(root)
    temp = segments[0].parent / f"part-abc.parquet.{dead_pid()}-0000.tmp"
    pq.write_table(_merged(segments), temp)
    manifest = _write_manifest(root, segments, "part-abc.parquet", temp.name)
    store = MetricsStore(root)
    assert store.recover() == 0
    assert not manifest.exists() and not temp.exists()
    assert files(root, "calls") == segments
    assert store.count("calls") == 30


def test_manifest_rolled_forward_when_output_in_place(tmp_path: Path) -> None:
    root = tmp_path / "store"
    segments = _three_segments(root)
    output = segments[0].parent / "part-abc.parquet"
    pq.write_table(_merged(segments), output)
    segments[0].unlink()  # the crash came after deleting the first input
    manifest = _write_manifest(root, segments, output.name, "gone.tmp")
    assert raw_count(root, "calls") == 50  # duplicates, for whoever reads without the store
    store = MetricsStore(root)

    # While another compactor holds the lock, a reader still finishes the half-applied
    # step (it cannot be that compactor's own) but leaves the manifest to the lock owner.
    lock = FileLock(str(root / ".compact.lock"))
    with lock:
        assert store.count("calls") == 30
        assert manifest.exists()
    assert files(root, "calls") == [output]
    store.recover()
    assert not manifest.exists()
    assert ids(store) == [f"m{i:02d}" for i in range(30)]


def test_corrupt_middle_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "store"
    spool = _orphan_spool(root, 100)
    lines = spool.read_bytes().split(b"\n")
    lines[10] = b'{"id": "broken'
    spool.write_bytes(b"\n".join(lines))
    store = MetricsStore(root)
    assert store.recover() == 99
    assert "o-000010" not in ids(store) and spools(root) == []


def test_temp_files_of_dead_processes_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "store"
    segments = _three_segments(root)
    stale = segments[0].parent / f"seg-1.parquet.{dead_pid()}-0000.tmp"
    live = segments[0].parent / f"seg-2.parquet.{os.getpid()}-0000.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    MetricsStore(root).recover()
    assert not stale.exists() and live.exists()


# --------------------------------------------------------------------------- idempotence & CLI db


def test_flush_recover_compact_are_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with MetricsStore(root, flush_rows=7) as s:
        for table, rows in FULL_ROWS.items():
            s.append(table, rows)
        for b in range(8):  # a flush every second batch: several segments per partition
            s.append("calls", [call_row(i) for i in range(b * 5, b * 5 + 5)])
        s.flush()
        expected = {t: s.count(t) for t in TABLES}
        assert expected == {"calls": 42, "probes": 2, "workflow_runs": 2, "alerts": 1}
        assert len(files(root, "calls")) > 3
        layouts = []
        for attempt in range(3):
            assert s.flush() == 0
            assert s.recover() == 0
            merged = s.compact()
            assert (merged["calls"] > 0) == (attempt == 0)
            assert {t: s.count(t) for t in TABLES} == expected
            layouts.append(sorted(p.relative_to(root) for p in root.glob("*/date=*/*")))
        assert layouts[0] == layouts[1] == layouts[2]
        assert len(files(root, "calls")) == 2  # one file per partition


def test_compact_writes_duckdb_file_for_cli(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with MetricsStore(root) as s:
        s.append("probes", FULL_ROWS["probes"])
        s.flush()
        s.compact()
    con = duckdb.connect(str(root / "metrics.duckdb"), read_only=True)
    try:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in TABLES}
    finally:
        con.close()
    assert counts == {"calls": (0,), "probes": (2,), "workflow_runs": (0,), "alerts": (0,)}


def test_store_can_move_with_spools(tmp_path: Path) -> None:
    # Spool file names carry everything recovery needs; nothing is tied to the old path.
    spool = _orphan_spool(tmp_path / "a", 50)
    assert spool.exists()
    shutil.move(tmp_path / "a", tmp_path / "b")
    assert MetricsStore(tmp_path / "b").count("calls") == 50


# --------------------------------------------------------------------------- privacy, damage


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def test_store_directories_are_0700_and_files_0600(tmp_path: Path) -> None:
    """The store holds workflow parameters and error text: nobody else may read it,
    whatever the umask (spools, segments, compacted parts, manifests, locks, duckdb)."""
    old = os.umask(0o022)
    try:
        root = tmp_path / "deep" / "metrics"
        store = MetricsStore(root, flush_rows=1)
        for table, rows in FULL_ROWS.items():
            store.append(table, rows)
        store.compact()
        live = MetricsStore(root)
        live.append("calls", [call_row(6)])  # a spool that stays until close
        assert spools(root)
        modes = _modes(root)
        live.close()
        store.close()
    finally:
        os.umask(old)
    dirs = {p: m for p, m in modes.items() if (root / p).is_dir()}
    regular = {p: m for p, m in modes.items() if (root / p).is_file()}
    assert any(p.endswith(".parquet") for p in regular) and "metrics.duckdb" in regular
    assert all(m == 0o700 for m in dirs.values()), dirs
    assert all(m == 0o600 for m in regular.values()), regular


def test_an_existing_world_readable_store_root_is_closed(tmp_path: Path) -> None:
    root = tmp_path / "metrics"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    MetricsStore(root).close()
    assert root.stat().st_mode & 0o777 == 0o700


def _two_segments(root: Path) -> tuple[MetricsStore, list[Path]]:
    store = MetricsStore(root)
    store.append("calls", [call_row(i) for i in range(10)])
    store.flush()
    store.append("calls", [call_row(i) for i in range(10, 15)])
    store.flush()
    return store, files(root, "calls")


def test_truncated_segment_is_quarantined_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer, segments = _two_segments(tmp_path)
    writer.close()
    sizes = {p: pq.ParquetFile(p).metadata.num_rows for p in segments}
    bad = segments[0]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # a full disk, a bad copy
    reader = MetricsStore(tmp_path)
    with caplog.at_level("WARNING", logger="junction.store"):
        assert reader.count("calls") == 15 - sizes[bad]
    moved = tmp_path / "_quarantine" / bad.relative_to(tmp_path)
    assert reader.quarantined == [moved] and moved.exists() and not bad.exists()
    assert bad.name in caplog.text and "unreadable" in caplog.text
    # Everything else still works on the store: trends, compaction, new rows.
    assert len(reader.query("SELECT * FROM calls")) == reader.count("calls")
    reader.append("calls", [call_row(99)])
    reader.flush()
    reader.compact()
    assert reader.count("calls") == 16 - sizes[bad]


def test_segment_damaged_after_it_was_checked_is_quarantined_when_duckdb_fails(
    tmp_path: Path,
) -> None:
    """Same size, garbage in the middle: the cheap check passes, DuckDB names the file."""
    store, segments = _two_segments(tmp_path)
    assert store.count("calls") == 15  # both segments checked and fine
    bad = segments[0]
    rows_left = 15 - pq.ParquetFile(bad).metadata.num_rows
    data = bytearray(bad.read_bytes())
    data[40:90] = b"x" * 50
    bad.write_bytes(bytes(data))
    assert store.count("calls") == rows_left
    assert store.quarantined and store.quarantined[0].name == bad.name
    store.close()
