"""The built-in specs run end to end on the sandbox (in process, through the runner), and a
rerun or a lost response creates no second user, account, issue or incident."""

from __future__ import annotations

import hashlib
from typing import Any

from integrations.sandbox.app import SandboxServer
from junction.workflows import runner
from junction.workflows.validate import load_workflow
from tests.helpers import collection, faults_seen, sandbox_settings, set_faults


def wid(n: int) -> str:
    """The sandbox's Workday ID of seeded worker ``n``."""
    return hashlib.md5(f"worker-{n}".encode(), usedforsecurity=False).hexdigest()


async def run(sb: SandboxServer, name: str, **params: Any) -> dict[str, Any]:
    spec = load_workflow(name)
    result = await runner.run_workflow_once(spec, params, settings=sandbox_settings(sb))
    data: dict[str, Any] = result.to_dict()
    return data


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {s["step_id"]: s["status"] for s in data["steps"]}


def providers(data: dict[str, Any]) -> dict[str, str | None]:
    return {s["step_id"]: s["provider"] for s in data["steps"]}


def okta_logins(sb: SandboxServer) -> list[str]:
    return [u["profile"]["login"] for u in collection(sb, "okta", "users").values()]


def gitlab_usernames(sb: SandboxServer) -> list[str]:
    return [u["username"] for u in collection(sb, "gitlab", "users").values()]


async def test_onboarding_then_offboarding(sb: SandboxServer) -> None:
    first = await run(sb, "employee_onboarding", worker_id=wid(0))
    assert first["status"] == "completed", first["error"]
    assert set(statuses(first).values()) == {"ok"}
    assert providers(first)["welcome"] == "webex" and providers(first)["equipment"] == "jira"
    again = await run(sb, "employee_onboarding", worker_id=wid(0))
    assert again["status"] == "completed", again["error"]
    assert okta_logins(sb).count("ada.lovelace0@example.com") == 1
    assert gitlab_usernames(sb).count("ada.lovelace0") == 1
    assert len(collection(sb, "jira", "issues")) == 1
    members = [
        m for m in collection(sb, "gitlab", "members").values() if m["username"] == "ada.lovelace0"
    ]
    assert len(members) == 1 and members[0]["access_level"] == 30

    off = await run(sb, "employee_offboarding", worker_id=wid(0), force=True)
    assert off["status"] == "completed", off["error"]
    assert off["outputs"] == {"okta_status": "DEPROVISIONED", "gitlab_state": "blocked"}


async def test_offboarding_waits_for_a_termination(sb: SandboxServer) -> None:
    """Worker 0 has no termination date: without force nothing is deactivated."""
    data = await run(sb, "employee_offboarding", worker_id=wid(0))
    assert data["status"] == "completed", data["error"]
    assert statuses(data)["okta_user"] == "skipped" and statuses(data)["gitlab_block"] == "skipped"
    assert data["outputs"] == {"okta_status": "skipped", "gitlab_state": "skipped"}


async def test_onboarding_survives_lost_responses(sb: SandboxServer) -> None:
    """Every POST commits and its answer is lost (504): still one of each."""
    for service in ("okta", "gitlab", "jira"):
        set_faults(sb, service, lost_after_commit=1.0, lost_methods=["POST"])
    data = await run(sb, "employee_onboarding", worker_id=wid(1))
    assert data["status"] == "completed", data["error"]
    assert sum(faults_seen(sb, s, "lost_after_commit") for s in ("okta", "gitlab", "jira")) >= 1
    assert okta_logins(sb).count("grace.hopper1@example.com") == 1
    assert gitlab_usernames(sb).count("grace.hopper1") == 1
    assert len(collection(sb, "jira", "issues")) == 1


async def test_ci_failure_triage_pages_on_the_default_branch(sb: SandboxServer) -> None:
    data = await run(
        sb, "ci_failure_triage", pipeline_id=1001, pagerduty_requester="sandbox-user@example.com"
    )
    assert data["status"] == "completed", data["error"]
    assert set(statuses(data).values()) == {"ok"}
    assert providers(data)["page"] == "pagerduty"
    assert data["outputs"]["ref"] == "main" and data["outputs"]["issue"].startswith("JUN-")
    other_branch = await run(
        sb,
        "ci_failure_triage",
        pipeline_id=1001,
        default_branch="release",
        pagerduty_requester="sandbox-user@example.com",
    )
    assert statuses(other_branch)["page"] == "skipped"
    assert len(collection(sb, "pagerduty", "incidents")) == 1
    assert len(collection(sb, "jira", "issues")) == 1  # the rerun found the issue


async def test_incident_response_firing_then_resolved(sb: SandboxServer) -> None:
    params = {
        "alert_name": "HighErrorRate",
        "fingerprint": "f00d",
        "requester_email": "sandbox-user@example.com",
    }
    firing = await run(sb, "incident_response", **params)
    assert firing["status"] == "completed", firing["error"]
    assert statuses(firing)["resolve"] == "skipped"
    assert firing["outputs"]["oncall"] == ["oncall@example.com", "sandbox-user@example.com"]
    resolved = await run(sb, "incident_response", status="resolved", **params)
    assert resolved["status"] == "completed", resolved["error"]
    assert resolved["outputs"]["incident_id"] == firing["outputs"]["incident_id"]
    assert resolved["outputs"]["room_id"] == firing["outputs"]["room_id"]
    incidents = list(collection(sb, "pagerduty", "incidents").values())
    assert [i["status"] for i in incidents] == ["resolved"]
