"""The service's data engine: DuckDB health, the live view, monitor supervision, compaction.

* The DuckDB path and the live view judge a seeded mixed history exactly as the monitor's
  row-by-row replay does (the replay is kept here only, as the oracle).
* Rows written by another process reach the live view (version, changed services, health,
  sparkline), synthetic services outside the catalog included.
* The monitor inside the service fails for real (its alert database damaged under it) and
  is restarted with backoff, logged once, counted; the API serves throughout.
* A compaction running while health is read loses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from integrations.sandbox.app import SandboxServer
from junction.monitor import ServiceHealth
from junction.monitor import ServiceState as MonitoredService
from junction.monitor.passive import LiveCall
from junction.monitor.probing import probe_observation
from junction.scoring import ServiceWindow
from junction.service.aggregates import StoreReader, store_health
from junction.service.live import probe_result
from junction.service.state import ServiceState
from junction.settings import Settings
from junction.store import MetricsStore
from junction.tail import read_since
from tests.service_helpers import ServiceServer, service_settings

MONITORING = "/api/v2/workflows/enhanced/monitoring"
NAMES = [f"svc-{i}" for i in range(12)]


def _replay(
    root: Path, names: list[str], seconds: float, now: datetime, settings: Settings
) -> list[ServiceHealth]:
    """The oracle: every row of the window replayed through the monitor's own state."""
    since = now - timedelta(seconds=seconds)
    states = {n: MonitoredService(n, ServiceWindow(timedelta(seconds=seconds))) for n in names}
    events: list[tuple[datetime, int, dict[str, Any]]] = []
    for row in read_since(root, "probes", since):
        if row["service"] in states:
            events.append((row["ts"], 0, row))
    for row in read_since(root, "calls", since):
        # The monitor leaves its own probe calls out of its windows (LiveCallFeed).
        if row["service"] in states and row.get("source") != "probe":
            events.append((row["ts"], 1, row))
    events.sort(key=lambda e: (e[0], e[1]))
    for _, kind, row in events:
        state = states[row["service"]]
        if kind == 0:
            state.add(probe_observation(row, now), now)
            state.probed(probe_result(row), row["ts"])
        elif (obs := LiveCall.from_row(row).observation(now)) is not None:
            state.add(obs, now)
    return [st.health(now, settings, settings.monitor_down_after) for st in states.values()]


def _seed(store: MetricsStore, now: datetime, *, future: bool, seed: int = 7) -> int:
    """A mixed history: probes and calls, failures of every kind, half flushed, half spooled."""
    rng = random.Random(seed)
    probes, calls = [], []
    for _ in range(2400):
        service = rng.choice(NAMES[:-1])  # the last name has no rows: unknown
        ago = rng.uniform(-4.0 if future else 0.5, 1300.0)
        ts = now - timedelta(seconds=ago)
        status: int | None = 503
        if service == NAMES[0] and ago < 200:  # a streak of failures: down
            ok = False
        else:
            ok = rng.random() < 0.8
            status = 200 if ok else rng.choice([None, 500, 503, 404, 401, 429])
        error_class = None if ok else rng.choice(["ServerError", "APITimeoutError",
                                                  "CircuitOpenError", "NotFoundError"])  # fmt: skip
        common = {"id": uuid.uuid4().hex, "ts": ts, "service": service, "ok": ok,
                  "status": status, "latency_ms": round(rng.uniform(1, 900), 3),
                  "error_class": error_class, "error": None if ok else "boom"}  # fmt: skip
        breaker = rng.choice(["closed", "closed", "closed", "half_open", "open"])
        if rng.random() < 0.35:
            probes.append({**common, "sweep_id": "s", "breaker_state": breaker})
        else:
            calls.append({**common, "action": "a", "method": "GET", "path": "/", "attempts": 1,
                          "breaker_state": breaker,
                          "source": rng.choice(["workflow", "cli", "probe"])})  # fmt: skip
    half_p, half_c = len(probes) // 2, len(calls) // 2
    store.append("probes", probes[:half_p])
    store.append("calls", calls[:half_c])
    store.flush()  # published segments...
    store.append("probes", probes[half_p:])  # ...and rows still in this writer's spool
    store.append("calls", calls[half_c:])
    return len(probes) + len(calls)


def _same(a: list[ServiceHealth], b: list[ServiceHealth]) -> None:
    assert [r.service for r in a] == [r.service for r in b]
    for x, y in zip(a, b, strict=True):
        assert x.to_json() == y.to_json(), x.service
        assert x.stats is not None and y.stats is not None
        assert x.stats.uptime == pytest.approx(y.stats.uptime, abs=1e-9)


def test_duckdb_health_agrees_with_the_monitors_replay(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    now = datetime.now(UTC)
    with MetricsStore(settings.metrics_dir) as store:
        _seed(store, now, future=True)
        reader = StoreReader(store)
        for seconds in (900.0, 120.0, 3600.0):
            got = store_health(reader, NAMES, seconds, settings, now=now)
            _same(got, _replay(store.root, NAMES, seconds, now, settings))
        reader.close()
    statuses = {r.service: r for r in got}
    assert statuses[NAMES[0]].down and statuses[NAMES[0]].status == "critical"
    assert statuses[NAMES[-1]].status == "unknown"
    assert {r.status for r in got} >= {"critical", "unknown"}


def test_live_view_judges_as_the_monitor_and_sees_other_processes(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    now = datetime.now(UTC)
    with MetricsStore(settings.metrics_dir) as store:
        _seed(store, now, future=False)
    synthetic = f"bench-{uuid.uuid4().hex[:6]}"  # not in the catalog

    async def scenario() -> None:
        state = ServiceState(settings)
        await state.start()
        try:
            assert state.live.ready
            rows = await state.live.health(NAMES)
            # Verdicts are computed at some instant each: replay at that instant.
            for at in {r.as_of for r in rows}:
                batch = [r for r in rows if r.as_of == at]
                oracle = _replay(settings.metrics_dir, [r.service for r in batch], 900, at,
                                 settings)  # fmt: skip
                _same(batch, oracle)
            spark = state.live.sparkline(NAMES[1], 60)
            assert len(spark) == 60 and any(p95 is not None for _, p95 in spark)
            assert spark[-1][0] - spark[0][0] == 59 * 60

            version = state.live.version
            code = (
                "import sys, time\n"
                "from datetime import UTC, datetime\n"
                "from junction.store import MetricsStore\n"
                f"store = MetricsStore({str(settings.metrics_dir)!r})\n"
                "row = dict(ts=datetime.now(UTC), service=sys.argv[1], action='get',"
                " method='GET', path='/', status=503, ok=False, latency_ms=12.0,"
                " error_class='ServerError', error='down', attempts=1,"
                " breaker_state='closed', source='workflow')\n"
                "store.append('calls', [row, row | {'latency_ms': 9.0}])\n"
                "store.append('probes', [dict(ts=datetime.now(UTC), sweep_id='x',"
                " service=sys.argv[1], ok=False, status=503, latency_ms=3.0,"
                " error_class='ServerError', error='down', breaker_state='open')])\n"
                "print('written', flush=True)\n"
                "sys.stdin.read()\n"  # stays alive: its rows are only in its spool
            )
            writer = subprocess.Popen(
                [sys.executable, "-c", code, synthetic],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert writer.stdout is not None and writer.stdout.readline() == "written\n"
                seen: set[str] = set()
                for _ in range(100):  # bounded; the loop polls every 0.3 s
                    version = await state.live.wait_change(version, 1.0)
                    seen |= state.live.changed_since(version - 1)
                    if synthetic in seen:
                        break
                assert synthetic in seen
                assert synthetic in state.service_names()  # the store knows it
                rows, source = await state.health([synthetic])
                assert source == "store"
                row = rows[0]
                assert row.ok is False and row.error == "down" and row.http_status == 503
                assert row.consecutive_failures == 3 and row.down and row.status == "critical"
                assert row.observations == 3 and row.breaker_state == "open"
                assert any(p is None for _, p in state.live.sparkline(synthetic, 5))
                assert state.live.counts(synthetic, 5) == (3, 3)
            finally:
                writer.communicate("", timeout=30)
        finally:
            await state.aclose()

    asyncio.run(scenario())


def test_the_monitor_restarts_after_failing_and_the_api_keeps_serving(
    sandbox: SandboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = service_settings(
        tmp_path, sandbox, integrations="okta", monitor_interval_seconds=1.0
    )
    db = tmp_path / "alerts.db"
    caplog.set_level("WARNING", logger="junction.service.state")
    with ServiceServer(settings, monitor=True) as server, server.info().client() as c:
        status = c.post(f"{MONITORING}/start").json()
        assert status["running"] is True and status["restarts"] == 0
        for _ in range(300):
            if db.exists() and c.get("/api/v2/status").json()["monitoring"]:
                break
            time.sleep(0.05)
        # The alert database is damaged under the running monitor by another program (a
        # table dropped): its evaluations fail. Its path then holds a directory, so a
        # restart cannot open it either, until the path is repaired.
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("DROP TABLE alerts")
        other.close()
        db.rename(tmp_path / "alerts.db.damaged")
        db.mkdir()
        body: dict[str, Any] = {}
        for _ in range(400):
            body = c.get("/api/v2/status").json()
            if body["monitor_restarts"] >= 2:
                break
            time.sleep(0.05)
        assert body["monitor_restarts"] >= 2 and body["monitoring"] is False
        info = c.post(f"{MONITORING}/start").json()  # reports; retries at once
        assert info["started"] is False and info["running"] is False
        assert "alerts.db" in (info["last_error"] or "")
        assert c.get(f"{MONITORING}/metrics").status_code == 200  # the API serves
        failures = [r for r in caplog.records if "the monitor failed" in r.getMessage()]
        assert len(failures) == 1  # once per streak, not per restart
        assert failures[0].exc_info is None
        db.rmdir()  # repaired: the next restart creates a fresh database
        c.post(f"{MONITORING}/start")
        for _ in range(400):
            info = c.post(f"{MONITORING}/start").json()
            if info["running"] and info["sweeps"] >= 1:
                break
            time.sleep(0.05)
        assert info["running"] is True and info["restarts"] >= 2
        assert c.get("/api/v2/status").json()["monitoring"] is True


def test_compaction_while_health_is_read_loses_nothing(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = service_settings(tmp_path, sandbox)
    now = datetime.now(UTC)
    per_round, rounds = 40, 4
    with ServiceServer(settings) as server, server.info().client() as c:
        writer = MetricsStore(settings.metrics_dir)
        compactor = MetricsStore(settings.metrics_dir)
        stop = threading.Event()
        seen: dict[str, list[int]] = {"900": [], "3600": []}
        errors: list[str] = []

        def call(r: int, i: int) -> dict[str, Any]:
            return {"ts": now - timedelta(seconds=60 + r * per_round + i), "service": "compacted",
                    "action": "a", "method": "GET", "path": "/", "status": 200, "ok": True,
                    "latency_ms": 5.0 + i, "attempts": 1, "breaker_state": "closed",
                    "source": "workflow"}  # fmt: skip

        def hammer() -> None:
            with server.info().client() as h:
                while not stop.is_set():
                    for window in ("900", "3600"):
                        params = {"service": "compacted", "window": window}
                        resp = h.get(f"{MONITORING}/health", params=params)
                        if resp.status_code != 200:
                            errors.append(f"{resp.status_code} {resp.text[:200]}")
                            continue
                        seen[window].append(resp.json()["services"][0]["observations"])

        writer.append("calls", [call(0, 0)])
        writer.flush()
        reader = threading.Thread(target=hammer)
        reader.start()
        try:
            total = 0
            for r in range(rounds):
                for i in range(1 if r == 0 else 0, per_round):  # many small segments
                    writer.append("calls", [call(r, i)])
                    writer.flush()
                total += per_round
                merged = compactor.compact("calls")
                assert merged["calls"] >= per_round
        finally:
            stop.set()
            reader.join(60)
            writer.close()
            compactor.close()
        final = {
            w: c.get(f"{MONITORING}/health", params={"service": "compacted", "window": w}).json()[
                "services"
            ][0]["observations"]
            for w in ("900", "3600")
        }
    assert not errors
    assert final == {"900": total, "3600": total}
    for counts in seen.values():
        assert counts, "the hammer got no answer"
        assert counts == sorted(counts) and max(counts) <= total  # never lost, never twice


def test_a_service_too_busy_to_hold_is_judged_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from junction.service import live

    monkeypatch.setattr(live, "MAX_SERVICE_OBSERVATIONS", 30)  # memory bound, made small
    settings = Settings(home=tmp_path)
    now = datetime.now(UTC)
    rows = [
        {"ts": now - timedelta(seconds=5 + i), "service": name, "action": "a",
         "method": "GET", "path": "/", "status": 200 if i % 7 else 500, "ok": bool(i % 7),
         "latency_ms": float(i), "attempts": 1, "breaker_state": "closed", "source": "cli"}
        for name, n in (("busy", 100), ("calm", 5)) for i in range(n)
    ]  # fmt: skip
    with MetricsStore(settings.metrics_dir) as store:
        store.append("calls", rows)

    async def scenario() -> list[ServiceHealth]:
        state = ServiceState(settings)
        await state.start()
        try:
            got, _ = await state.health(["busy", "calm"])
            return got
        finally:
            await state.aclose()

    caplog.set_level("INFO", logger="junction.service.live")
    got = asyncio.run(scenario())
    spilled = {r.getMessage() for r in caplog.records if "too many observations" in r.getMessage()}
    assert spilled == {"the live view judges busy from the store: too many observations"}
    assert [r.observations for r in got] == [100, 5]  # all of them, none held twice
    for row in got:
        _same([row], _replay(settings.metrics_dir, [row.service], 900, row.as_of, settings))


def test_a_store_that_cannot_be_opened_is_503_and_the_service_serves(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the metrics store should be")
    settings = service_settings(tmp_path, sandbox, store_dir=blocked)
    with ServiceServer(settings) as server, server.info().client() as c:
        for path, params in ((f"{MONITORING}/health", {}), (f"{MONITORING}/metrics", {})):
            resp = c.get(path, params=params)
            assert resp.status_code == 503, resp.text
            error = resp.json()["error"]
            assert error["code"] == "metrics_store" and "not-a-directory" in error["message"]
        assert c.get("/api/v2/status").status_code == 200
