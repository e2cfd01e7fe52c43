"""The monitor-continuous flow (one long run sweeping on a tick) on a real (ephemeral)
Prefect server: sweeps until its time is up, from its scheduled start, and publishes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.monitor_loop import sweeps_for

pytestmark = pytest.mark.prefect


def test_a_run_ends_at_its_scheduled_end() -> None:
    now = datetime.now(UTC)
    assert sweeps_for(3600, 5, None) == 720
    assert sweeps_for(3600, 5, now - timedelta(seconds=17)) == 716  # started late: catch up
    assert sweeps_for(3600, 5, now - timedelta(hours=2)) == 1  # long overdue: one sweep


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from tests.prefect_harness import harness

    with harness():
        yield


def test_one_run_keeps_sweeping(
    prefect_harness: None, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    from flows.monitor_loop import monitor_continuous
    from junction.settings import get_settings
    from junction.store import MetricsStore

    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sb.url)
    monkeypatch.setenv("JUNCTION_SANDBOX_SMTP_PORT", str(sb.smtp_port))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        # 12 s from the run's scheduled start (its creation): what creating it took on a
        # loaded machine is not swept, the rest is, once a second.
        out = asyncio.run(monitor_continuous(every_seconds=1.0, run_seconds=12.0, names=["okta"]))
    finally:
        get_settings.cache_clear()
    assert isinstance(out, dict) and 2 <= out["sweeps"] <= 12, out
    assert out["counts"]["healthy"] == 1
    assert MetricsStore(tmp_path / "metrics").count("probes") == out["sweeps"]
    artifact: Any = Artifact.get("service-health")
    assert artifact is not None and "1/1 services healthy" in (artifact.description or "")


def _junction_events(deadline_s: float, want: set[str]) -> list[dict[str, Any]]:
    """The server's junction.* events, polled until ``want`` are all there (or the time)."""
    import time

    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"filter": {"event": {"prefix": ["junction."]}}, "limit": 50}
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        response = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json=body, timeout=30)
        response.raise_for_status()
        events = response.json()["events"]
        if want <= {e["event"] for e in events}:
            break
        time.sleep(1)
    return events


def test_degraded_integrations_and_failed_workflows_are_prefect_events(
    prefect_harness: None, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import httpx

    from flows.monitor_loop import monitor_continuous
    from flows.workflow import run_workflow
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sb.url)
    monkeypatch.setenv("JUNCTION_SANDBOX_SMTP_PORT", str(sb.smtp_port))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS", "0.05")
    spec = tmp_path / "lookup.yaml"
    spec.write_text(
        "name: lookup\nparameters:\n  worker_id: {type: string, required: true}\nsteps:\n"
        "  - id: worker\n    uses: workday.get_worker\n"
        '    with: {worker_id: "{{ params.worker_id }}"}\n'
    )
    outage = threading.Timer(
        4.0,
        lambda: httpx.post(f"{sb.url}/_admin/outage/github", json={"seconds": 60}),
    )
    get_settings.cache_clear()
    try:
        outage.start()
        asyncio.run(monitor_continuous(every_seconds=1.0, run_seconds=14.0, names=["github"]))

        async def fail_once() -> Any:
            return await run_workflow(str(spec), {"worker_id": "nobody"}, return_state=True)

        failed = asyncio.run(fail_once())
    finally:
        outage.cancel()
        get_settings.cache_clear()
    assert failed.is_failed()

    events = _junction_events(60, {"junction.integration.degraded", "junction.workflow.failed"})
    by_name = {e["event"]: e for e in events}
    degraded = by_name.get("junction.integration.degraded")
    assert degraded is not None, events
    assert degraded["resource"]["prefect.resource.id"] == "junction.integration.github"
    assert degraded["payload"]["from"] == "healthy"
    assert degraded["payload"]["to"] in {"warning", "critical"}
    wf = by_name.get("junction.workflow.failed")
    assert wf is not None, events
    assert wf["resource"]["prefect.resource.id"] == "junction.integration.workday"
    assert wf["related"][0]["prefect.resource.id"] == "junction.workflow.lookup"
    assert wf["payload"]["failed_step"] == "worker"
