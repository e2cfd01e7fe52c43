"""The metrics store on S3-compatible storage, against moto's S3 server run as a real
process (no mocks): hosts writing and compacting at once, reads after compaction, a dead
endpoint at flush, crash recovery after compaction, the lease, and secrets kept out."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import s3fs
from pydantic import ValidationError

from deployments.local import free_port
from junction.health import open_store as health_store
from junction.settings import Settings
from junction.store import MetricsStore
from junction.store.lease import LEASE_KEY, LeaseLost, PgAdvisoryLock, S3Lease
from junction.store.objectstore import ObjectMetricsStore, make_filesystem, open_store

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-SECRET"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIATESTJUNCTION",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_DEFAULT_REGION": "us-east-1",
}
DAY = datetime(2024, 5, 1, 23, 59, 50, tzinfo=UTC)


def start_moto(port: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server as a child process; returns it and its endpoint.

    Its request log goes to a file: a pipe nobody reads fills up and blocks the server.
    """
    log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if match := re.search(r"Running on http://127\.0\.0\.1:(\d+)", Path(log.name).read_text()):
            return proc, f"http://127.0.0.1:{match[1]}"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"moto server did not start: {Path(log.name).read_text()[-500:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    proc, url = start_moto()
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module", autouse=True)
def _aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def fs(endpoint: str) -> s3fs.S3FileSystem:
    """One client for the module: each new one costs about a second of setup."""
    return make_filesystem(endpoint)


@pytest.fixture
def bucket(fs: s3fs.S3FileSystem) -> str:
    name = f"metrics-{uuid.uuid4().hex[:12]}"
    fs.call_s3("create_bucket", Bucket=name)
    return name


def call_row(i: int, service: str = "crm") -> dict[str, Any]:
    # Straddles midnight: every flush writes two day partitions.
    return {
        "ts": DAY + timedelta(seconds=i % 20),
        "service": service,
        "action": "get_contact",
        "method": "GET",
        "path": f"/contacts/{i}",
        "status": 200,
        "ok": True,
        "latency_ms": float(i),
        "attempts": 1,
        "breaker_state": "closed",
        "source": "probe",
    }


def keys(fs: s3fs.S3FileSystem, bucket: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(fs.find(bucket))


HOST = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from junction.store.objectstore import ObjectMetricsStore

    spool, url, endpoint, service, batches, go = sys.argv[1:7]
    day = datetime(2024, 5, 1, 23, 59, 50, tzinfo=UTC)
    store = ObjectMetricsStore(spool, url, endpoint_url=endpoint, flush_rows=10**6)
    for b in range(int(batches)):
        store.append("calls", [
            {"ts": day + timedelta(seconds=i % 20), "service": service, "action": "a",
             "method": "GET", "path": f"/{b}/{i}", "status": 200, "ok": True,
             "latency_ms": float(i), "attempts": 1, "breaker_state": "closed",
             "source": "probe"}
            for i in range(50)
        ])
        store.flush()
    print("flushed", flush=True)
    while not Path(go).exists():
        time.sleep(0.01)
    print(json.dumps(store.compact()), flush=True)
    # Left unflushed: the exit flush uploads it.
    store.append("calls", [{"ts": day, "service": service, "action": "a", "method": "GET",
                            "path": "/exit", "ok": True, "latency_ms": 1.0, "attempts": 1,
                            "breaker_state": "closed", "source": "probe"}])
    """
)


def test_two_hosts_write_and_compact_at_once(
    endpoint: str,
    fs: s3fs.S3FileSystem,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="junction")
    url = f"s3://{bucket}/junction"
    go = tmp_path / "go"
    env = {**os.environ, **AWS_ENV}
    hosts = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                HOST,
                str(tmp_path / f"host{n}"),
                url,
                endpoint,
                f"svc{n}",
                "3",
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in (1, 2)
    ]
    for proc in hosts:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "flushed"
    go.touch()  # both compact now
    results = []
    for proc in hosts:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert SECRET not in out + err
        results.append(json.loads(out))
    # Each host flushed 3 spools x 2 days: 12 segments. One compactor held the lease and
    # merged all 12 (the other skipped, or ran after it and found one part per day).
    assert sorted(r["calls"] for r in results) == [0, 12]

    reader = ObjectMetricsStore(tmp_path / "reader", url, filesystem=fs, grace_seconds=0)
    per = reader.query(
        "SELECT service, date, count(*) AS n, count(DISTINCT path) AS paths "
        "FROM calls GROUP BY ALL ORDER BY ALL"
    )
    # 30 of each batch's 50 rows fall on May 1, and each host's exit flush added one.
    assert per["n"].tolist() == [91, 60, 91, 60]
    assert per["paths"].tolist() == per["n"].tolist()  # no row twice
    assert per["date"].astype(str).tolist() == ["2024-05-01", "2024-05-02"] * 2
    listed = keys(fs, bucket)
    assert sum("/seg-" in k for k in listed) == 14  # 12 replaced (kept for the grace) + 2

    # grace 0: the next compaction deletes what the parts replaced; the rows stay exact.
    assert reader.compact()["calls"] == 3  # May 1's part and the two exit segments
    assert reader.compact()["calls"] == 0
    listed = keys(fs, bucket)
    assert not any("/seg-" in k for k in listed)
    assert sum(k.endswith(".parquet") for k in listed) == 2  # one part per day
    assert reader.count("calls") == 302
    assert reader.query("SELECT count(DISTINCT (service, path)) AS n FROM calls")["n"][0] == 302
    assert SECRET not in caplog.text


def test_dead_endpoint_keeps_rows_spooled_until_a_later_flush(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="junction")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    store = ObjectMetricsStore(tmp_path, "s3://later/m", endpoint_url=endpoint, flush_seconds=3600)
    store.append("calls", [call_row(i) for i in range(30)])
    with pytest.raises(Exception) as failed:
        store.flush()
    assert SECRET not in str(failed.value) and SECRET not in repr(failed.value)
    spooled = list((tmp_path / "_spool" / "calls").glob("*.jsonl"))
    assert len(spooled) == 1 and spooled[0].read_bytes().count(b"\n") == 30

    proc, _ = start_moto(port)  # the endpoint comes back
    try:
        store.fs.call_s3("create_bucket", Bucket="later")
        store.append("calls", [call_row(30)])
        assert store.flush() == 31
        assert not list((tmp_path / "_spool" / "calls").glob("*.jsonl"))
        assert store.count("calls") == 31
        store.close()
    finally:
        stop(proc)
    assert SECRET not in caplog.text
    assert SECRET not in repr(store)


def test_crash_after_upload_is_not_published_twice_after_compaction(
    fs: s3fs.S3FileSystem, bucket: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}"
    store = ObjectMetricsStore(tmp_path, url, filesystem=fs, grace_seconds=0)
    store.append("calls", [call_row(i) for i in range(20)])
    (spool,) = (tmp_path / "_spool" / "calls").glob("*.jsonl")
    copy = spool.read_bytes()
    store.flush()  # uploaded, spool deleted
    store.append("calls", [call_row(i + 100) for i in range(20)])
    store.flush()
    assert store.compact()["calls"] == 4  # two spools x two days
    store.compact()  # grace 0: the segments are deleted, only the parts name them
    assert not any("/seg-" in k for k in keys(fs, bucket))
    # The writer "died" between upload and spool delete: its spool is back, unlocked.
    dead = spool.with_name(f"999999-{spool.name.split('-', 1)[1]}")
    dead.write_bytes(copy)
    other = ObjectMetricsStore(tmp_path, url, filesystem=fs)
    assert other.recover() == 0
    assert not dead.exists()
    assert other.count("calls") == 40


def test_query_whose_files_vanish_lists_again(
    fs: s3fs.S3FileSystem, bucket: str, tmp_path: Path
) -> None:
    store = ObjectMetricsStore(tmp_path, f"s3://{bucket}/p", filesystem=fs, grace_seconds=0)
    for k in range(2):
        store.append("calls", [call_row(k * 20 + i) for i in range(20)])
        store.flush()
    stale = store.snapshot()
    assert store.compact()["calls"] == 4
    store.compact()  # the listed segments are gone now
    with pytest.raises(duckdb.Error):
        store._run(stale, "SELECT count(*) FROM calls", None)
    assert store.count("calls") == 40
    assert store.count("probes") == 0
    # connect()'s views stay on their listing until read_lock() lists again.
    con = store.connect()
    assert con.execute("SELECT count(*) FROM calls").fetchone() == (40,)
    store.append("calls", [call_row(i) for i in range(5)])
    store.flush()
    assert con.execute("SELECT count(*) FROM calls").fetchone() == (40,)
    with store.read_lock():
        assert con.cursor().execute("SELECT count(*) FROM calls").fetchone() == (45,)
    con.close()
    with store.read_lock():  # a closed connection is forgotten
        pass


def test_lease_is_exclusive_renewed_and_taken_over_when_expired(
    fs: s3fs.S3FileSystem, bucket: str
) -> None:
    path = f"{bucket}/x/{LEASE_KEY}"
    first, second = S3Lease(fs, path, 60), S3Lease(fs, path, 60)
    assert first.acquire()
    assert not second.acquire()
    first.check()  # renewed
    first.release()
    assert second.acquire()

    # An expired lease is taken over; its old holder is fenced off.
    stale, taker = S3Lease(fs, f"{bucket}/y/{LEASE_KEY}", 0), S3Lease(fs, f"{bucket}/y/l", 60)
    taker.path = stale.path
    assert stale.acquire()
    assert taker.acquire()
    with pytest.raises(LeaseLost):
        stale.check()
    stale.release()  # not ours any more: left in place
    assert fs.exists(stale.path)


def test_compaction_lock_on_postgresql(
    postgres_url: str, fs: s3fs.S3FileSystem, bucket: str, tmp_path: Path
) -> None:
    url = re.sub(r"^postgresql\+\w+://", "postgresql://", postgres_url)
    store_url = f"s3://{bucket}/pg"
    store = ObjectMetricsStore(tmp_path, store_url, filesystem=fs, lock_url=url)
    for k in range(2):
        store.append("calls", [call_row(k * 20 + i) for i in range(20)])
        store.flush()
    first, second = PgAdvisoryLock(url, store_url), PgAdvisoryLock(url, store_url)
    assert first.acquire()
    assert not second.acquire()
    assert store.compact()["calls"] == 0  # another compactor holds the lock: skipped
    first.check()
    first.release()
    assert store.compact()["calls"] == 4
    assert not any("_leases" in k for k in keys(fs, bucket))  # no S3 lease was used
    assert store.count("calls") == 40
    assert second.acquire()  # released after the compaction
    second.release()
    wrong = PgAdvisoryLock(
        url.replace("@", "x@", 1) if "@" in url else url + "?user=nobody", "s3://b/p"
    )
    with pytest.raises(RuntimeError) as failed:
        wrong.acquire()
    assert "compaction lock" in str(failed.value)


def test_settings_choose_the_store(tmp_path: Path) -> None:
    local = open_store(Settings(home=tmp_path))
    assert type(local) is MetricsStore and local.root == tmp_path / "metrics"
    local.close()
    remote = open_store(
        Settings(home=tmp_path, store_url="s3://bucket-a/x/", s3_endpoint_url="http://h:1")
    )
    assert isinstance(remote, ObjectMetricsStore)
    assert repr(remote) == "MetricsStore('s3://bucket-a/x')" and remote.base == "bucket-a/x"
    remote.close()
    # The product's one entry point (flows, service, CLI) follows the setting.
    product = health_store(Settings(home=tmp_path, store_url="s3://bucket-a"))
    assert isinstance(product, ObjectMetricsStore) and product.base == "bucket-a"
    product.close()
    with pytest.raises(ValidationError, match="store_url"):
        Settings(home=tmp_path, store_url="/local/path")
    shutil.rmtree(tmp_path / "metrics")
