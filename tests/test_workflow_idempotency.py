"""Reruns never duplicate a side effect: every built-in workflow runs twice per provider
(each fallback too, by taking the preferred provider down through the sandbox's admin
API) and the vendor objects are counted after each run; and a run killed with SIGKILL
mid-way, then rerun, leaves one of each (issue 9 #2: a ServiceNow incident per rerun)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.breaker import breakers
from integrations.sandbox.app import SandboxServer
from junction.workflows.journal import SideEffectJournal
from junction.workflows.runner import run_workflow_once
from junction.workflows.validate import load_workflow
from tests.helpers import sandbox_settings, state

ROOT = Path(__file__).resolve().parents[1]

SIDE_EFFECT_SERVICES = (
    "okta",
    "gitlab",
    "webex",
    "slack",
    "smtp",
    "jira",
    "servicenow",
    "pagerduty",
)
"""Services the built-in workflows write to (their collections are counted)."""

READ_LOGS = frozenset({"completions", "requests", "tokens"})
"""Collections that log reads rather than hold objects (never counted)."""


@pytest.fixture(autouse=True)
def fresh_breakers() -> Iterator[None]:
    """Each test starts with closed breakers (they are process-wide)."""
    breakers.clear()
    yield
    breakers.clear()


def wid(n: int) -> str:
    """The sandbox's Workday ID of seeded worker ``n``."""
    return hashlib.md5(f"worker-{n}".encode(), usedforsecurity=False).hexdigest()


def objects(sb: SandboxServer) -> dict[str, int]:
    """How many objects each side-effect collection of the sandbox holds."""
    counts: dict[str, int] = {}
    for service in SIDE_EFFECT_SERVICES:
        for name, items in state(sb, service).items():
            if name not in READ_LOGS:
                counts[f"{service}.{name}"] = len(items)
    return counts


def take_down(sb: SandboxServer, service: str) -> None:
    """An outage of ``service`` (503) for the rest of the test (``POST /_admin/outage``)."""
    resp = httpx.post(
        f"{sb.url}/_admin/outage/{service}", json={"seconds": 600, "mode": "503"}, timeout=10
    )
    resp.raise_for_status()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[SideEffectJournal]:
    """The side-effect journal the runs of one test share (as the CLI's and the flow's do)."""
    found = SideEffectJournal(tmp_path / "workflow_journal.db")
    yield found
    found.close()


async def run(
    sb: SandboxServer, name: str, params: dict[str, Any], journal: SideEffectJournal
) -> dict[str, Any]:
    spec = load_workflow(name)
    result = await run_workflow_once(spec, params, settings=sandbox_settings(sb), journal=journal)
    data: dict[str, Any] = result.to_dict()
    return data


ONBOARD = {"worker_id": wid(3)}
OFFBOARD = {"worker_id": wid(3), "force": True}
TRIAGE = {"pipeline_id": 1001, "pagerduty_requester": "sandbox-user@example.com"}
INCIDENT = {
    "alert_name": "HighErrorRate",
    "fingerprint": "f00d",
    "requester_email": "sandbox-user@example.com",
}

SCENARIOS: list[tuple[str, dict[str, Any], tuple[str, ...], dict[str, str]]] = [
    ("employee_onboarding", ONBOARD, (), {"welcome": "webex", "equipment": "jira"}),
    ("employee_onboarding", ONBOARD, ("webex",), {"welcome": "smtp"}),
    ("employee_onboarding", ONBOARD, ("jira",), {"equipment": "servicenow"}),
    ("employee_offboarding", OFFBOARD, (), {"notify": "slack"}),
    ("employee_offboarding", OFFBOARD, ("slack",), {"notify": "webex"}),
    ("incident_response", INCIDENT, (), {"incident": "pagerduty", "announce": "webex"}),
    ("ci_failure_triage", TRIAGE, (), {"notify": "webex", "page": "pagerduty"}),
    ("ci_failure_triage", TRIAGE, ("webex",), {"notify": "slack"}),
    ("ci_failure_triage", TRIAGE, ("pagerduty",), {"page": "servicenow"}),
]


@pytest.mark.parametrize(
    ("name", "params", "down", "expected"),
    SCENARIOS,
    ids=[f"{n}-{'+'.join(d) or 'preferred'}-down" for n, _, d, _ in SCENARIOS],
)
async def test_a_rerun_creates_nothing_new(
    sb: SandboxServer,
    journal: SideEffectJournal,
    name: str,
    params: dict[str, Any],
    down: tuple[str, ...],
    expected: dict[str, str],
) -> None:
    if name == "employee_offboarding":  # someone to offboard
        assert (await run(sb, "employee_onboarding", ONBOARD, journal))["status"] == "completed"
    for service in down:
        take_down(sb, service)
    first = await run(sb, name, params, journal)
    assert first["status"] == "completed", first["error"]
    used = {s["step_id"]: s["provider"] for s in first["steps"]}
    assert {k: used[k] for k in expected} == expected
    after_first = objects(sb)
    second = await run(sb, name, params, journal)
    assert second["status"] == "completed", second["error"]
    assert objects(sb) == after_first


# --- kill -9 mid-run, then rerun ------------------------------------------------------------

RUNNER = """
import asyncio, json, sys
from junction.settings import Settings
from junction.workflows.journal import SideEffectJournal
from junction.workflows.runner import run_workflow_once
from junction.workflows.validate import load_workflow

url, smtp, name, params, path = sys.argv[1:6]
settings = Settings(sandbox_url=url, sandbox_smtp_port=int(smtp))
spec = load_workflow(name)
journal = SideEffectJournal(path)
run = run_workflow_once(spec, json.loads(params), settings=settings, journal=journal)
result = asyncio.run(run)
print(json.dumps({"status": result.status, "error": result.error}))
"""


def _run_in_child(
    sb: SandboxServer, name: str, params: dict[str, Any], journal: SideEffectJournal
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sb.url, str(sb.smtp_port), name, json.dumps(params), str(journal.path)]
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _faults(sb: SandboxServer, service: str, **faults: Any) -> None:
    httpx.post(f"{sb.url}/_admin/faults/{service}", json=faults, timeout=10).raise_for_status()


@pytest.mark.parametrize("down", [(), ("jira",)], ids=["jira", "servicenow-fallback"])
def test_kill_9_mid_run_then_rerun_leaves_one_of_each(
    sb: SandboxServer, journal: SideEffectJournal, down: tuple[str, ...]
) -> None:
    """The process dies (SIGKILL) once the first side effect has committed and others are
    in flight; the rerun completes and nothing exists twice."""
    for service in down:
        take_down(sb, service)
    # slow writes, so that the kill lands between side effects
    for service in ("okta", "gitlab", "webex", "jira", "servicenow", "smtp"):
        _faults(sb, service, latency_ms=300)
    # seed the vendors' records now, so that the counts below are the workflow's objects
    httpx.get(f"{sb.url}/_admin/records", timeout=10).raise_for_status()
    before = objects(sb)
    child = _run_in_child(sb, "employee_onboarding", ONBOARD, journal)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if objects(sb).get("okta.users", 0) > before.get("okta.users", 0):
                break  # the first side effect committed; the others are in flight
            time.sleep(0.05)
        assert child.poll() is None, child.communicate()
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert objects(sb).get("okta.users", 0) == before.get("okta.users", 0) + 1
    rerun = asyncio.run(run(sb, "employee_onboarding", ONBOARD, journal))
    assert rerun["status"] == "completed", rerun["error"]
    after = objects(sb)
    again = asyncio.run(run(sb, "employee_onboarding", ONBOARD, journal))
    assert again["status"] == "completed", again["error"]
    assert objects(sb) == after
    created = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    ticket = "servicenow.incident" if down else "jira.issues"
    assert created.get(ticket) == 1, sorted(created.items())
    assert created["okta.users"] == 1 and created["gitlab.users"] == 1, created
