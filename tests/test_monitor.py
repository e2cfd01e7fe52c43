"""The Monitor (junction/monitor/) and the store tailer (junction/tail.py) against the real
sandbox and real metrics stores: sweeps, confirmation, hangs, passive detection, restore,
clock jumps, continuous mode and its shutdown, the alert engine hook."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.breaker import CircuitBreaker
from junction.clients import get_client
from junction.monitor import (
    EngineHook,
    Monitor,
    MonitorClock,
    MonitorEvent,
    SweepResult,
    classify_call,
    next_tick,
    parse_duration,
    run_once,
)
from junction.settings import Settings
from junction.store import MetricsStore
from junction.tail import StoreTailer, read_since
from tests.helpers import FAST, clear_faults, set_faults

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["okta", "github", "jira", "smtp"]


def make_settings(sb: Any, home: Path, **kw: Any) -> Settings:
    return Settings(
        sandbox_url=sb.url,
        sandbox_smtp_port=sb.smtp_port,
        home=home,
        monitor_probe_timeout_seconds=kw.pop("monitor_probe_timeout_seconds", 2.0),
        monitor_confirm_delay_seconds=kw.pop("monitor_confirm_delay_seconds", 0.05),
        monitor_min_interval_seconds=kw.pop("monitor_min_interval_seconds", 0.1),
        **kw,
    )


def outage(sb: Any, service: str, seconds: float = 60, mode: str = "503") -> None:
    httpx.post(
        f"{sb.url}/_admin/outage/{service}", json={"seconds": seconds, "mode": mode}
    ).raise_for_status()


def end_outage(sb: Any, service: str) -> None:
    httpx.delete(f"{sb.url}/_admin/outage/{service}").raise_for_status()


async def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until ``check()``; fail after ``timeout`` (a safety net, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def probe_ids(root: Path) -> list[str]:
    return list(MetricsStore(root).query("select id from probes")["id"])


# --- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m", 60.0), ("1m30s", 90.0), ("2", 2.0), (" 1.5s ", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "s", "5 parsecs", "-1s", "0s", "1s5", "nan", "inf"])
def test_parse_duration_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration .*e\.g\. 500ms, 5s, 1m"):
        parse_duration(text)


def test_ticks_stay_on_the_grid_and_skip_missed_ones() -> None:
    assert next_tick(0, 0.01, 5.0) == 1  # on time: the next grid point
    assert next_tick(1, 5.3, 5.0) == 2  # a sweep started late does not shift the grid
    assert next_tick(2, 23.0, 5.0) == 5  # ticks 3 and 4 are in the past: skipped
    assert next_tick(5, 25.0, 5.0) == 6  # exactly on a grid point: that one ran


def test_classify_call_judges_service_health() -> None:
    assert classify_call(True, 200, None) is True
    assert classify_call(False, 503, "ServerError") is False
    assert classify_call(False, None, "APITimeoutError") is False
    assert classify_call(False, 401, "AuthenticationError") is False
    assert classify_call(False, 404, "NotFoundError") is True  # the service answered
    assert classify_call(False, 409, "ConflictError") is True
    assert classify_call(False, None, "CircuitOpenError") is None  # never reached it
    assert classify_call(False, None, "MissingCredentialsError") is None
    # Refused before sending (a pagination link to another host): says nothing either.
    assert classify_call(False, None, "CrossOriginError") is None
    assert classify_call(False, None, "UnsafeRequestError") is None
    assert classify_call(False, None, "UnknownCapabilityError") is None


# --- sweeps ------------------------------------------------------------------------------


async def test_sweep_probes_records_and_scores(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path)
    async with Monitor(settings, names=NAMES, alerts=False) as mon:
        await mon.restore()
        first = await mon.sweep(sweep_id="s1")
        second = await mon.sweep(sweep_id="s2")
    assert isinstance(first, SweepResult)
    assert [s.service for s in second.services] == NAMES
    for s in second.services:
        assert s.status == "healthy", s
        assert s.ok is True and s.observations == 2 and s.success_rate == 1.0
        assert s.score == 100.0 and s.uptime == pytest.approx(1.0)
        assert s.breaker_state == "closed"
        assert s.p50_latency_ms is not None and s.p95_latency_ms is not None
        assert s.p50_latency_ms <= s.p95_latency_ms
    assert second.confirmations == 0 and second.counts()["healthy"] == 4
    data = json.loads(json.dumps(second.to_json()))
    assert data["services"][0]["service"] == "okta" and data["counts"]["healthy"] == 4

    store = MetricsStore(settings.metrics_dir)
    rows = store.query("select sweep_id, service, ok from probes order by sweep_id, service")
    assert len(rows) == 8 and set(rows["sweep_id"]) == {"s1", "s2"}
    assert sorted(rows[rows.sweep_id == "s1"]["service"]) == sorted(NAMES)
    # The probes' own calls are recorded too (source=probe), once each.
    calls = store.query("select count(*) as n from calls where source = 'probe'")
    assert int(calls["n"].iloc[0]) == 8


async def test_first_failure_is_confirmed_at_once_and_marks_the_service_down(
    sb: Any, tmp_path: Path
) -> None:
    settings = make_settings(sb, tmp_path)
    events: list[MonitorEvent] = []
    async with Monitor(settings, names=NAMES, alerts=False, on_event=events.append) as mon:
        await mon.sweep()
        outage(sb, "okta")
        result = await mon.sweep()
        okta = result.service("okta")
        assert [p.service for p in result.probes].count("okta") == 2  # probe + re-probe
        assert result.confirmations == 1
        assert okta.down and okta.status == "critical" and okta.consecutive_failures == 2
        assert okta.reasons[0] == "down: last 2 checks failed"
        assert okta.error_class == "ServerError" and okta.http_status == 503
        assert result.service("github").status == "healthy"
        assert any(
            e.kind == "status" and e.service == "okta" and e.new == "critical" for e in events
        )

        # Already failing: no more re-probes, one probe per sweep.
        again = await mon.sweep()
        assert [p.service for p in again.probes].count("okta") == 1
        assert again.service("okta").consecutive_failures == 3

        end_outage(sb, "okta")
        up = (await mon.sweep()).service("okta")  # recovered at once, not "critical" for 15 min
        assert not up.down and up.ok is True and up.status == "healthy", up.reasons
        assert up.reasons[0].startswith("recovered: 3 failures")
        assert up.success_rate is not None and up.success_rate < 0.9  # shown: the window's
    probes = MetricsStore(settings.metrics_dir).count("probes")
    assert probes == 4 + 4 + 1 + 4 + 4  # every probe, the confirmation included, recorded


async def test_a_blip_is_confirmed_away(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path)
    async with Monitor(settings, names=["github"], alerts=False) as mon:
        for _ in range(24):  # enough history that one failure keeps the rate >= 95 %
            await mon.sweep()
        set_faults(sb, "github", error_next=1)
        result = await mon.sweep()
    github = result.service("github")
    assert [p.ok for p in result.probes] == [False, True]
    assert not github.down and github.consecutive_failures == 0
    assert github.failures == 1 and github.status == "healthy"


async def test_a_hanging_probe_is_cut_by_its_timeout(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path, monitor_probe_timeout_seconds=0.5)
    set_faults(sb, "jira", hang_rate=1.0)
    async with Monitor(settings, names=["jira", "github"], alerts=False) as mon:
        result = await mon.sweep()
    jira = result.service("jira")
    assert jira.ok is False and jira.error_class == "APITimeoutError" and jira.down
    assert all(not p.ok for p in result.probes if p.service == "jira")
    assert result.service("github").ok is True
    assert MetricsStore(settings.metrics_dir).count("probes") == 3


async def test_unknown_names_and_unusable_configuration(sb: Any, tmp_path: Path) -> None:
    from integrations.errors import UnknownIntegrationError

    settings = make_settings(sb, tmp_path)
    with pytest.raises(UnknownIntegrationError):
        async with Monitor(settings, names=["no-such-thing"], alerts=False):
            pass
    os.environ["JUNCTION_GITHUB_BASE_URL"] = "not a url"
    try:
        result = await run_once(settings, ["github", "okta"], alerts=False)
    finally:
        del os.environ["JUNCTION_GITHUB_BASE_URL"]
    github = result.service("github")
    assert github.ok is False and github.error_class == "InvalidBaseURLError" and github.down
    assert result.service("okta").ok is True


# --- restore across processes -----------------------------------------------------------


async def test_windows_are_restored_from_the_store(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path)
    await run_once(settings, ["okta", "github"], alerts=False)
    outage(sb, "okta")
    await run_once(settings, ["okta", "github"], alerts=False)
    end_outage(sb, "okta")
    third = await run_once(settings, ["okta", "github"], alerts=False)
    okta = third.service("okta")
    # 1 ok + 2 failed (probe + confirmation) from earlier runs + this run's ok.
    assert okta.observations == 4 and okta.failures == 2 and okta.success_rate == 0.5
    assert third.service("github").observations == 3
    assert not okta.down


# --- passive monitoring -----------------------------------------------------------------


async def test_live_call_in_process_triggers_detection_before_any_sweep(
    sb: Any, tmp_path: Path
) -> None:
    from integrations.errors import IntegrationError

    settings = make_settings(sb, tmp_path)
    events: list[MonitorEvent] = []
    async with Monitor(settings, names=["okta"], alerts=False, on_event=events.append) as mon:
        await mon.sweep()  # healthy history
        outage(sb, "okta")
        client = get_client(
            "okta", settings=settings, breaker=CircuitBreaker("okta"), retry=FAST, source="workflow"
        )
        with pytest.raises(IntegrationError):
            await client.request("GET", "/api/v1/users/me", action="get_me")
        await client.aclose()
        await wait_for(lambda: mon.snapshot("okta").down)
        obs = mon.observations("okta")
    # sweep probe ok, live failure, confirmation probe failure
    assert [o.ok for o in obs] == [True, False, False]
    assert any(e.kind == "passive_failure" for e in events)
    assert any(e.kind == "status" and e.new == "critical" for e in events)
    rows = MetricsStore(settings.metrics_dir).query("select sweep_id from probes")
    assert sum(s.startswith("passive-") for s in rows["sweep_id"]) == 1


async def test_client_errors_of_live_calls_count_as_the_service_answering(
    sb: Any, tmp_path: Path
) -> None:
    from integrations.errors import NotFoundError

    settings = make_settings(sb, tmp_path)
    async with Monitor(settings, names=["okta"], alerts=False) as mon:
        client = get_client("okta", settings=settings, breaker=CircuitBreaker("okta"), retry=FAST)
        with pytest.raises(NotFoundError):
            await client.request("GET", "/api/v1/users/nobody-here", action="get_user")
        await client.aclose()
        await wait_for(lambda: len(mon.observations("okta")) == 1)
        assert mon.observations("okta")[0].ok is True


WRITER = """
import sys, time
from datetime import UTC, datetime
from junction.store import MetricsStore
store = MetricsStore(sys.argv[1], flush_seconds=3600)
store.append("calls", [{
    "id": sys.argv[2], "service": "okta", "action": "create_user", "method": "POST",
    "path": "/api/v1/users", "status": 503, "ok": False, "latency_ms": 12.0,
    "error_class": "ServerError", "error": "down", "attempts": 3, "breaker_state": "closed",
    "source": "workflow", "run_id": "run-1",
}])
print("written", flush=True)
time.sleep(3600)
"""


async def test_live_call_of_another_process_is_read_from_its_spool(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path)
    root = settings.metrics_dir
    async with Monitor(settings, names=["okta"], alerts=False) as mon:
        await mon.sweep()
        outage(sb, "okta")
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), "row-from-workflow"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            # The writer is alive and has not flushed: only its spool has the row.
            assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
            added = await mon.poll_store()
            assert added == 1
            await wait_for(lambda: mon.snapshot("okta").down)
            assert [o.ok for o in mon.observations("okta")] == [True, False, False]
            assert await mon.poll_store() == 0  # each row once
        finally:
            proc.kill()
            proc.wait()
        # Dead writer: its spool is published by recovery; the monitor does not count it twice.
        MetricsStore(root).recover()
        assert await mon.poll_store() == 0
        assert len(mon.observations("okta")) == 3


# --- the tailer --------------------------------------------------------------------------


def _call(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "id": f"c{i}",
        "service": "okta",
        "action": "get_user",
        "method": "GET",
        "path": "/x",
        "status": 200,
        "ok": True,
        "latency_ms": float(i),
        "attempts": 1,
        "breaker_state": "closed",
        "source": "workflow",
    }
    row.update(kw)
    return row


def test_tailer_reads_each_row_once_across_spool_flush_and_compaction(tmp_path: Path) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    tailer = StoreTailer(tmp_path, "calls", since=since, skip_own_spools=False)
    store = MetricsStore(tmp_path, flush_seconds=3600)
    store.append("calls", [_call(1), _call(2)])
    assert [r["id"] for r in tailer.poll()] == ["c1", "c2"]  # from the live spool
    store.append("calls", [_call(3)])
    store.flush()  # spool -> segment; c3 was never read from the spool
    assert [r["id"] for r in tailer.poll()] == ["c3"]
    store.append("calls", [_call(4)])
    store.flush()
    store.compact()  # rewrites everything into one part file
    assert [r["id"] for r in tailer.poll()] == ["c4"]
    assert tailer.poll() == []
    old = _call(5, ts=since - timedelta(minutes=1))
    store.append("calls", [old])
    assert tailer.poll() == []  # older than the horizon
    store.close()
    assert {r["id"] for r in read_since(tmp_path, "calls", since)} == {"c1", "c2", "c3", "c4"}


def test_tailer_skips_a_partial_last_line_until_it_is_complete(tmp_path: Path) -> None:
    spool = tmp_path / "_spool" / "calls"
    spool.mkdir(parents=True)
    path = spool / "999999-abc.jsonl"
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    line = json.dumps({**_call(1), "ts": now_us}).encode()
    path.write_bytes(line + b"\n" + line[:20].replace(b"c1", b"c2"))
    tailer = StoreTailer(tmp_path, "calls", since=datetime.now(UTC) - timedelta(minutes=1))
    assert [r["id"] for r in tailer.poll()] == ["c1"]
    second = json.dumps({**_call(2), "ts": now_us}).encode()
    path.write_bytes(line + b"\n" + second + b"\n")
    assert [r["id"] for r in tailer.poll()] == ["c2"]
    assert tailer.poll() == []


def test_tailer_rejects_unknown_tables(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        StoreTailer(tmp_path, "nope", since=datetime.now(UTC))


# --- clock jumps -------------------------------------------------------------------------


class FakeWall:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.mark.parametrize("jump", [timedelta(hours=-1), timedelta(hours=1)])
async def test_a_clock_jump_does_not_break_the_windows(
    sb: Any, tmp_path: Path, jump: timedelta
) -> None:
    wall = FakeWall()
    settings = make_settings(sb, tmp_path)
    events: list[MonitorEvent] = []
    clock = MonitorClock(wall=wall)
    async with Monitor(
        settings, names=["okta"], alerts=False, clock=clock, on_event=events.append
    ) as mon:
        for _ in range(3):
            await mon.sweep()
        wall.offset = jump
        outage(sb, "okta")
        result = await mon.sweep()
        okta = result.service("okta")
        # Nothing evicted (a forward jump) and the new failures are the newest (backward).
        assert okta.observations == 5 and okta.failures == 2
        assert okta.down and okta.consecutive_failures == 2
        assert 0 < okta.uptime < 1  # type: ignore[operator]
        assert [o.ok for o in mon.observations("okta")] == [True, True, True, False, False]
        assert abs((mon.clock.now() - wall()).total_seconds()) < 2
    assert any(e.kind == "clock_jump" for e in events)


# --- continuous mode ---------------------------------------------------------------------


async def test_run_forever_sweeps_and_skips_services_still_probing(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path, monitor_probe_timeout_seconds=1.0)
    set_faults(sb, "jira", hang_rate=1.0)
    results: list[SweepResult] = []
    async with Monitor(settings, names=["github", "jira"], alerts=False, confirm_delay=-1) as mon:
        started = await mon.run_forever(0.25, on_sweep=results.append, max_sweeps=4)
    assert started == 4 and len(results) == 4
    assert all(r.service("github").ok for r in results)
    # jira hangs for the whole timeout: the sweeps in between do not wait for it.
    assert any("jira" in r.skipped for r in results)
    clear_faults(sb, "jira")
    probes = MetricsStore(settings.metrics_dir).query("select service from probes")
    assert list(probes["service"]).count("github") == 4


def test_run_forever_rejects_a_bad_interval(sb: Any, tmp_path: Path) -> None:
    async def go() -> None:
        async with Monitor(make_settings(sb, tmp_path), names=["okta"], alerts=False) as mon:
            await mon.run_forever(0)

    with pytest.raises(ValueError, match="positive"):
        asyncio.run(go())


def _env(sb: Any, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUNCTION_", "PREFECT_"))}
    env.update(
        JUNCTION_HOME=str(home),
        JUNCTION_SANDBOX_URL=sb.url,
        JUNCTION_SANDBOX_SMTP_PORT=str(sb.smtp_port),
        COLUMNS="200",
        **extra,
    )
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_every_stops_cleanly_on_a_signal_and_flushes(
    sb: Any, tmp_path: Path, sig: signal.Signals
) -> None:
    env = _env(
        sb,
        tmp_path,
        JUNCTION_INTEGRATIONS="okta,github",
        JUNCTION_MONITOR_MIN_INTERVAL_SECONDS="0.1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "junction", "monitor", "--every", "200ms", "--no-alerts"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while sum("sweep of 2" in line for line in lines) < 3:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "2 healthy" in "".join(lines)
    root = tmp_path / "metrics"
    assert not list((root / "_spool").glob("*/*.jsonl"))  # flushed, nothing left to recover
    assert MetricsStore(root).count("probes") >= 6


KILLED_SWEEP_SCRIPT = """
import asyncio, sys
from junction.monitor import run_once
asyncio.run(run_once(alerts=False))
"""


def test_kill_9_mid_sweep_then_rerun_loses_and_duplicates_nothing(sb: Any, tmp_path: Path) -> None:
    names = ["okta", "github", "jira", "slack", "smtp"]
    env = _env(
        sb,
        tmp_path,
        JUNCTION_INTEGRATIONS=",".join(names),
        JUNCTION_MONITOR_PROBE_TIMEOUT_SECONDS="120",
    )
    set_faults(sb, "jira", hang_rate=1.0)  # the sweep stays mid-way on jira
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SWEEP_SCRIPT], cwd=ROOT, env=env)
    spool_dir = tmp_path / "metrics" / "_spool" / "probes"

    def spooled() -> list[dict[str, Any]]:
        rows = []
        for path in spool_dir.glob("*.jsonl"):
            for line in path.read_bytes().split(b"\n"):
                if line.strip():
                    rows.append(json.loads(line))
        return rows

    try:
        deadline = time.monotonic() + 120
        while len(spooled()) < len(names) - 1:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    written = spooled()
    assert {r["service"] for r in written} == set(names) - {"jira"}
    clear_faults(sb, "jira")

    settings = make_settings(sb, tmp_path, integrations=",".join(names))
    rerun = asyncio.run(run_once(settings, alerts=False))
    # The rerun restored the killed sweep's probes: they were recorded, so they count.
    assert rerun.service("okta").observations == 2
    assert rerun.service("jira").observations == 1
    ids = probe_ids(tmp_path / "metrics")
    assert len(ids) == len(set(ids)) == len(written) + len(names)
    assert {r["id"] for r in written} <= set(ids)


# --- the command line --------------------------------------------------------------------


def test_cli_once_json(sb: Any, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "junction", "monitor", "--once", "--json", "okta", "github"],
        cwd=ROOT,
        env=_env(sb, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [s["service"] for s in data["services"]] == ["okta", "github"]
    assert all(s["status"] == "healthy" and s["score"] == 100.0 for s in data["services"])
    assert data["counts"]["healthy"] == 2
    assert MetricsStore(tmp_path / "metrics").count("probes") == 2


def test_cli_once_table_and_critical_exit_status(sb: Any, tmp_path: Path) -> None:
    outage(sb, "github")
    env = _env(sb, tmp_path)
    env["COLUMNS"] = "80"  # what a pipe (`| cat`, a CI log) gets
    out = subprocess.run(
        [sys.executable, "-m", "junction", "monitor", "--once", "okta", "github"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr
    assert "Service health" in out.stdout and "critical" in out.stdout
    assert "1/2 healthy" in out.stdout
    assert "hint" not in out.stderr  # the sandbox answers; github is down on its own
    # Piped at 80 columns, each row is one line: no cell folded mid-word ("servi/ce").
    header = next(line for line in out.stdout.splitlines() if "service" in line)
    assert all(word in header for word in ("status", "score", "breaker", "alerts", "why"))
    github = next(line for line in out.stdout.splitlines() if "github" in line)
    assert "critical" in github and "down: last 2 checks failed" in github
    assert "down/critical/firing" in github  # the alert engine ran and fired
    okta = next(line for line in out.stdout.splitlines() if "okta" in line)
    assert "healthy" in okta and "closed" in okta


def test_cli_once_without_a_sandbox_gives_the_hint(tmp_path: Path) -> None:
    from deployments.local import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
    env.update(JUNCTION_HOME=str(tmp_path), JUNCTION_SANDBOX_URL=f"http://127.0.0.1:{free_port()}")
    out = subprocess.run(
        [sys.executable, "-m", "junction", "monitor", "--once", "--no-alerts", "okta"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "hint: nothing answers at the sandbox" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "5x"], "--every: invalid duration '5x'"),
        (["--every", "0s"], "duration must be positive"),
        (["--once", "--every", "5s"], "exclusive"),
    ],
)
def test_cli_bad_options_are_one_clear_line(args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from junction.cli import app

    # These fail before anything runs, so in-process is faithful (and cheap).
    out = CliRunner().invoke(app, ["monitor", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output and "error:" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


def test_cli_unknown_integration_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
    env.update(JUNCTION_HOME=str(tmp_path), COLUMNS="200")
    out = subprocess.run(
        [sys.executable, "-m", "junction", "monitor", "--once", "no-such-integration"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "error:" in out.stderr and "no-such-integration" in out.stderr
    assert "Traceback" not in out.stderr


# --- the alert engine --------------------------------------------------------------------


async def test_alert_engine_fires_for_the_failing_service_only(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path)
    events: list[MonitorEvent] = []
    async with Monitor(settings, names=["okta", "github"], on_event=events.append) as mon:
        assert mon.alerts is not None
        await mon.sweep()
        assert mon.alerts.active() == {}
        outage(sb, "okta")
        result = await mon.sweep()
        assert result.service("okta").alerts, result.service("okta")
        assert "github" not in mon.alerts.active()
        end_outage(sb, "okta")
    fired = [e for e in events if e.kind == "alert" and "firing" in e.message]
    assert fired and all("okta:" in e.message for e in fired)


async def test_outage_reaches_a_webhook_once_and_resolves_once(sb: Any, tmp_path: Path) -> None:
    from tests.helpers import collection

    config = tmp_path / "alerting.yaml"
    config.write_text(
        "defaults:\n"
        "  success_rate: {enabled: false}\n"
        "  response_time: {enabled: false}\n"
        "  health_score: {enabled: false}\n"
        "  burn_rate: {enabled: false}\n"
        "channels:\n"
        "  hook: {type: webhook, path: /junction}\n"
        "routes: {warning: [hook], critical: [hook]}\n"
    )
    settings = make_settings(sb, tmp_path, alerting_file=config)

    def kinds() -> list[tuple[str, str]]:
        bodies = [json.loads(d["body"]) for d in collection(sb, "webhook", "deliveries").values()]
        return sorted((b["kind"], ",".join(b["fingerprints"])) for b in bodies)

    async with Monitor(settings, names=["okta", "github"]) as mon:
        for _ in range(3):
            await mon.sweep()
        assert kinds() == []
        outage(sb, "okta")
        await mon.sweep()
        await wait_for(lambda: kinds() == [("firing", "okta:down")])
        await mon.sweep()  # still down: deduplicated, nothing new
        end_outage(sb, "okta")
        await mon.sweep()
        await wait_for(lambda: len(kinds()) == 2)
        await mon.sweep()
    assert kinds() == [("firing", "okta:down"), ("resolved", "okta:down")]
    assert collection(sb, "webhook", "duplicates") == {}


async def test_a_shared_dependency_outage_is_one_notification(sb: Any, tmp_path: Path) -> None:
    from tests.helpers import collection

    dependents = ["github", "jira", "slack", "gitlab"]
    config = tmp_path / "alerting.yaml"
    config.write_text(
        "defaults:\n"
        "  success_rate: {enabled: false}\n"
        "  response_time: {enabled: false}\n"
        "  health_score: {enabled: false}\n"
        "  burn_rate: {enabled: false}\n"
        "channels:\n"
        "  hook: {type: webhook, path: /junction}\n"
        "routes: {warning: [hook], critical: [hook]}\n"
        f"dependencies: {{{', '.join(f'{d}: [okta]' for d in dependents)}}}\n"
    )
    settings = make_settings(sb, tmp_path, alerting_file=config)

    def bodies() -> list[dict[str, Any]]:
        return [json.loads(d["body"]) for d in collection(sb, "webhook", "deliveries").values()]

    async with Monitor(settings, names=["okta", *dependents]) as mon:
        await mon.sweep()
        for name in ["okta", *dependents]:
            outage(sb, name)
        result = await mon.sweep()
        assert all(s.down for s in result.services)
        await wait_for(lambda: len(bodies()) >= 1)
        await mon.sweep()
        for name in ["okta", *dependents]:
            end_outage(sb, name)
        await mon.sweep()
        await wait_for(lambda: len(bodies()) >= 2)
        await mon.sweep()
    sent = bodies()
    assert sorted(b["kind"] for b in sent) == ["firing", "resolved"], sent
    firing = next(b for b in sent if b["kind"] == "firing")
    assert "okta:down" in firing["fingerprints"]


async def test_continuous_mode_alerts_on_another_process_failure_before_the_next_probe(
    sb: Any, tmp_path: Path
) -> None:
    settings = make_settings(sb, tmp_path, monitor_tail_seconds=0.1)
    results: list[SweepResult] = []
    async with Monitor(settings, names=["okta"], alerts=False) as mon:
        runner = asyncio.create_task(
            mon.run_forever(3600, on_sweep=results.append, handle_signals=False)
        )
        await wait_for(lambda: len(results) == 1)  # the first tick runs at once
        outage(sb, "okta")
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(settings.metrics_dir), "live-row"], cwd=ROOT
        )
        try:
            await wait_for(lambda: mon.snapshot("okta").down)
        finally:
            proc.kill()
            proc.wait()
            mon.stop()
            started = await runner
    assert started == 1  # detected from the live call + its confirmation, not a sweep
    assert [o.ok for o in mon.observations("okta")] == [True, False, False]


async def test_alerts_carry_the_vendor_status_page_note(sb: Any, tmp_path: Path) -> None:
    created = httpx.post(
        f"{sb.url}/statuspage/v1/pages/okta/incidents",
        headers={"Authorization": "OAuth sandbox-token"},
        json={"incident": {"name": "Login failures", "impact_override": "major"}},
    )
    assert created.status_code == 201, created.text
    settings = make_settings(sb, tmp_path)
    async with Monitor(settings, names=["okta", "github"]) as mon:
        assert isinstance(mon.alerts, EngineHook)
        await mon.sweep()
        outage(sb, "okta")
        await mon.sweep()
        alerts = mon.alerts.engine.active_alerts()
        assert alerts and {a.service for a in alerts} == {"okta"}
        assert all("reports:" in (a.annotation or "") for a in alerts), alerts
        assert "Login failures" in (alerts[0].annotation or "")


# --- hardening: defaults, interval floor, bad alert state --------------------------------


async def test_a_monitor_built_by_default_has_its_alert_engine(sb: Any, tmp_path: Path) -> None:
    from junction.alerting.engine import AlertEngine

    async with Monitor(make_settings(sb, tmp_path), names=["okta"]) as mon:
        assert isinstance(mon.alerts, EngineHook)
        assert isinstance(mon.alerts.engine, AlertEngine)
        assert mon.alerts.poller is not None  # vendor status pages (enhanced monitoring)
        assert (tmp_path / "alerts.db").exists()


def test_run_forever_refuses_an_interval_below_the_floor(sb: Any, tmp_path: Path) -> None:
    settings = make_settings(sb, tmp_path, monitor_min_interval_seconds=1.0)

    async def go() -> None:
        async with Monitor(settings, names=["okta"], alerts=False) as mon:
            await mon.run_forever(0.001)

    with pytest.raises(ValueError, match="below the minimum interval of 1 s"):
        asyncio.run(go())
    assert MetricsStore(settings.metrics_dir).count("probes") == 0  # nothing was probed


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--every", "1ms"], {}, "--every 1ms: 0.001 s is below the minimum interval of 1 s"),
        (
            ["--every", "2s"],
            {"JUNCTION_MONITOR_MIN_INTERVAL_SECONDS": "5"},
            "--every 2s: 2 s is below the minimum interval of 5 s",
        ),
        (
            [],
            {"JUNCTION_MONITOR_INTERVAL_SECONDS": "0.01"},
            "JUNCTION_MONITOR_INTERVAL_SECONDS: 0.01 s is below the minimum interval",
        ),
    ],
)
def test_cli_every_below_the_floor_is_one_clear_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    from typer.testing import CliRunner

    from junction.cli import app
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["monitor", *args])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 2, out.output
    assert message in out.output and "JUNCTION_MONITOR_MIN_INTERVAL_SECONDS" in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)
    assert not (tmp_path / "metrics").exists()  # refused before anything ran


def test_cli_with_a_corrupt_alert_database_is_one_clear_line(sb: Any, tmp_path: Path) -> None:
    (tmp_path / "alerts.db").write_bytes(b"this is not an SQLite database\n" * 64)
    out = subprocess.run(
        [sys.executable, "-m", "junction", "monitor", "--once", "okta"],
        cwd=ROOT,
        env=_env(sb, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(" ".join(lines).split("error:")) == 2, out.stderr  # one error
    text = " ".join(" ".join(lines).split())
    assert str(tmp_path / "alerts.db") in text and "junction alerts reset" in text
    assert not (tmp_path / "metrics" / "probes").exists()  # nothing was probed


def test_cli_with_a_bad_alerting_file_names_file_line_and_field(sb: Any, tmp_path: Path) -> None:
    config = tmp_path / "alerting.yaml"
    config.write_text("defaults:\n  success_rate:\n    warning: .nan\n")
    out = subprocess.run(
        [sys.executable, "-m", "junction", "monitor", "--once", "okta"],
        cwd=ROOT,
        env=_env(sb, tmp_path, JUNCTION_ALERTING_FILE=str(config)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    text = " ".join(out.stderr.split())
    assert f"{config}:3: defaults.success_rate.warning: must be a finite number" in text, text
    assert not (tmp_path / "metrics" / "probes").exists()


async def test_files_the_monitor_creates_are_private(sb: Any, tmp_path: Path) -> None:
    """Spools, segments, locks and the alert database: 0600 in 0700 directories, whatever
    the process umask (a Prefect worker does not go through the CLI)."""
    home = tmp_path / "home"
    settings = make_settings(sb, home)
    old = os.umask(0o022)
    try:
        async with Monitor(settings, names=["okta", "github"]) as mon:
            await mon.sweep()
            spools = list((home / "metrics" / "_spool").glob("*/*.jsonl"))
            assert spools  # a live spool, before the store flushes
            modes = {p: p.stat().st_mode & 0o777 for p in spools}
    finally:
        os.umask(old)
    for path in home.rglob("*"):
        modes[path] = path.stat().st_mode & 0o777
    loose = {str(p.relative_to(home)): oct(m) for p, m in modes.items() if m & 0o077}
    assert not loose, loose
    assert (home / "alerts.db").exists() and any(p.suffix == ".parquet" for p in modes)
