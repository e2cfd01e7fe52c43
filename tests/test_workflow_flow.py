"""The generic workflow flow on a real (ephemeral) Prefect server: one task run per step,
named after it; Prefect's cache keyed on step identity and inputs; a failed step fails
the flow run with a message naming it; runs recorded in the metrics store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import route_requests, set_faults

pytestmark = pytest.mark.prefect

WORKER_0 = "2f5d8d236660d0591e487847bd050202"

SPEC = {
    "name": "flow_test",
    "parameters": {"worker_id": {"type": "string"}},
    "steps": [
        {
            "id": "hire",
            "uses": "workday.get_worker",
            "with": {"worker_id": "{{ params.worker_id }}"},
            "cache": "5m",
        },
        {
            # same action and inputs as "hire", another step: must not get hire's entry
            "id": "hire_again",
            "uses": "workday.get_worker",
            "needs": ["hire"],
            "with": {"worker_id": "{{ params.worker_id }}"},
            "cache": "5m",
        },
        {
            "id": "ticket",
            "uses": "jira.create_issue",
            "with": {"project_key": "OPS", "summary": "Laptop for {{ steps.hire.output.id }}"},
        },
    ],
}


@pytest.fixture(scope="module")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from tests.prefect_harness import harness

    storage = tmp_path_factory.mktemp("prefect-results")
    # results (the cache) in a fresh place: no entry from an earlier session
    with (
        harness(),
        temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}),
    ):
        yield


async def _task_run_names(flow_run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(r.name for r in runs)


def test_workflow_flow_tasks_cache_failure_and_recording(
    prefect_harness: None, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.workflow import run_workflow
    from junction.settings import get_settings
    from junction.store import MetricsStore

    spec_file = tmp_path / "flow_test.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sb.url)
    monkeypatch.setenv("JUNCTION_SANDBOX_SMTP_PORT", str(sb.smtp_port))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()

    async def flow_run() -> Any:
        return await run_workflow(str(spec_file), {"worker_id": WORKER_0}, return_state=True)

    try:
        first = asyncio.run(flow_run())
        second = asyncio.run(flow_run())
        set_faults(sb, "jira", outages=[{"start": 0, "mode": "503"}])
        failed = asyncio.run(flow_run())
    finally:
        get_settings.cache_clear()

    route = "GET /workers/{worker_id}"
    assert first.is_completed(), first.message
    one = first.result(raise_on_failure=False)
    assert one["status"] == "completed"
    names = asyncio.run(_task_run_names(first.state_details.flow_run_id))
    assert names == ["hire", "hire_again", "ticket"]

    # the second flow run answered both reads from Prefect's cache: no new request,
    # while in the first run the second step made its own call despite equal inputs
    assert second.is_completed(), second.message
    two = second.result(raise_on_failure=False)
    steps = {s["step_id"]: s for s in two["steps"]}
    assert steps["hire"]["cached"] and steps["hire_again"]["cached"]
    assert route_requests(sb, "workday", route) == 2
    assert steps["ticket"]["cached"] is False

    assert failed.is_failed()
    assert "step 'ticket'" in (failed.message or "")
    three = failed.result(raise_on_failure=False)
    assert three["failed_step"] == "ticket"

    store = MetricsStore(tmp_path / "home" / "metrics")
    runs = store.query("SELECT run_id, status FROM workflow_runs ORDER BY started_at")
    assert list(runs["status"]) == ["completed", "completed", "failed"]
    assert runs["run_id"].iloc[0] == str(first.state_details.flow_run_id)
    calls = store.query("SELECT DISTINCT run_id FROM calls WHERE source = 'workflow'")
    assert set(calls["run_id"]) == set(runs["run_id"])
    store.close()


def test_cli_runs_on_the_configured_prefect_server_without_tracebacks(
    prefect_harness: None, sb: Any, tmp_path: Path
) -> None:
    """``junction workflow run`` with PREFECT_API_URL set: a flow run on that server; a
    failed step is one line, no traceback, and nothing of Prefect's leaks at exit
    ("Still processing items: 1 items remaining...")."""
    from prefect.settings import PREFECT_API_URL

    spec_file = tmp_path / "flow_test.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    set_faults(sb, "jira", outages=[{"start": 0, "mode": "503"}])
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "JUNCTION_SANDBOX_URL": sb.url,
        "JUNCTION_SANDBOX_SMTP_PORT": str(sb.smtp_port),
        "JUNCTION_HOME": str(tmp_path / "home"),
    }
    command = ["workflow", "run", str(spec_file), "-p", f"worker_id={WORKER_0}"]
    out = subprocess.run(
        [sys.executable, "-m", "junction", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("running flow_test as a Prefect flow run on the Prefect server")
    assert lines[1:] == [line for line in lines[1:] if "step 'ticket'" in line], out.stderr
    assert len(lines) == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "Still processing items" not in out.stderr + out.stdout
    assert "failed" in out.stdout
