"""Fast passive detection and persistent sweeps: the store tailer's spool watch
(junction/tail.py), consecutive failed live calls judging a service while its
confirmation probe waits (junction/monitor/core.py), and the sweepers that keep clients
alive across sweeps, in this process or in worker processes (integrations/sweep.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.breaker import CircuitBreaker
from integrations.config import EngineConfig
from integrations.errors import IntegrationError
from integrations.sweep import ProcessSweeper, catalog_sweeper, shard_of
from junction.clients import get_client
from junction.monitor import Monitor
from junction.settings import Settings
from junction.store import MetricsStore
from junction.tail import StoreTailer
from tests.helpers import FAST
from tests.test_monitor import _call, wait_for


def test_spools_changed_sees_growth_once_and_not_a_dead_writers_partial_line(
    tmp_path: Path,
) -> None:
    tailer = StoreTailer(tmp_path, "calls", since=datetime.now(UTC) - timedelta(minutes=1))
    assert not tailer.spools_changed()  # no spool directory yet
    spool = tmp_path / "_spool" / "calls"
    spool.mkdir(parents=True)
    path = spool / "999999-abc.jsonl"
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    line = json.dumps({**_call(1), "ts": now_us}).encode()
    path.write_bytes(line + b"\n")
    assert tailer.spools_changed()
    assert [r["id"] for r in tailer.poll(files=False)] == ["c1"]
    assert not tailer.spools_changed()
    path.write_bytes(line + b"\n" + line[:20])  # a writer killed mid-line
    assert tailer.spools_changed()
    assert tailer.poll(files=False) == []
    assert not tailer.spools_changed()  # the partial line is not news twice


def test_poll_without_files_reads_the_spools_only(tmp_path: Path) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    tailer = StoreTailer(tmp_path, "calls", since=since, skip_own_spools=False)
    store = MetricsStore(tmp_path, flush_seconds=3600)
    store.append("calls", [_call(1)])
    store.flush()  # published as a segment, never seen in the spool
    store.append("calls", [_call(2)])
    assert [r["id"] for r in tailer.poll(files=False)] == ["c2"]
    assert [r["id"] for r in tailer.poll()] == ["c1"]
    store.close()


async def test_failed_live_calls_in_a_row_judge_the_service_before_the_confirmation(
    sb: Any, tmp_path: Path
) -> None:
    # A confirmation delay far longer than the two calls: the service is down from the
    # live calls alone, and the confirmation probe has not run yet.
    settings = Settings(
        sandbox_url=sb.url,
        sandbox_smtp_port=sb.smtp_port,
        home=tmp_path,
        monitor_probe_timeout_seconds=2.0,
        monitor_confirm_delay_seconds=3.0,
        monitor_min_interval_seconds=0.1,
    )
    async with Monitor(settings, names=["okta"], alerts=False) as mon:
        await mon.sweep()
        httpx.post(
            f"{sb.url}/_admin/outage/okta", json={"seconds": 60, "mode": "503"}
        ).raise_for_status()
        client = get_client(
            "okta", settings=settings, breaker=CircuitBreaker("okta"), retry=FAST, source="workflow"
        )
        for _ in range(2):
            with pytest.raises(IntegrationError):
                await client.request("GET", "/api/v1/users/me", action="get_me")
        await client.aclose()
        await wait_for(lambda: mon.snapshot("okta").down)
        # sweep probe ok, two failed live calls; the confirmation probe is still waiting
        assert [o.ok for o in mon.observations("okta")] == [True, False, False]


def test_shard_of_splits_round_robin_without_loss() -> None:
    items = list(range(7))
    parts = [shard_of(items, i, 3) for i in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(x for p in parts for x in p) == items


async def test_sweepers_keep_their_clients_across_sweeps_in_and_out_of_process(sb: Any) -> None:
    names = ["okta", "github", "jira", "slack", "pagerduty"]
    engine = EngineConfig(sandbox_url=sb.url)
    sweeper = catalog_sweeper(names, engine=engine)
    clients = list(sweeper.clients)
    try:
        first, second = await sweeper.run(), await sweeper.run()
    finally:
        await sweeper.aclose()
    assert [r.service for r in first] == [r.service for r in second] == names
    assert all(r.ok for r in [*first, *second])
    assert sweeper.clients == clients  # nothing rebuilt between sweeps

    pool = ProcessSweeper(partial(catalog_sweeper, names, engine=engine), shards=2)
    pool.start()
    try:
        results = [await pool.run() for _ in range(2)]
    finally:
        pool.close()
    expected = shard_of(names, 0, 2) + shard_of(names, 1, 2)
    for sweep in results:
        assert [r.service for r in sweep] == expected
        assert all(r.ok for r in sweep)
    assert len(pool.last_cpu_s) == 2


def test_sweepers_refuse_nonsense_sizes() -> None:
    with pytest.raises(ValueError, match="shards"):
        ProcessSweeper(partial(catalog_sweeper, ["okta"]), shards=0)
