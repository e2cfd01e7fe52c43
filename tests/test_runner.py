"""The workflow runner on the real sandbox: DAG, bounds, cache, coalescing, breaker and
fallback, routing, idempotency under lost responses, faults, recording."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from integrations.breaker import breakers
from integrations.sandbox.app import SandboxServer
from junction.store import MetricsStore
from junction.workflows.outcomes import RunResult
from junction.workflows.runner import WorkflowRunner
from junction.workflows.runtime import Runtime
from junction.workflows.spec import WorkflowSpec
from junction.workflows.validate import validate_text
from tests.helpers import FAST, collection, route_requests, sandbox_settings, set_faults

WORKER_0 = "2f5d8d236660d0591e487847bd050202"  # the sandbox's worker 0 (Ada Lovelace 0)


def make_spec(data: dict[str, Any]) -> WorkflowSpec:
    """A spec from a dict, through the real validator (a test spec must be valid)."""
    result = validate_text(yaml.safe_dump(data, sort_keys=False), source="test")
    assert result.ok and result.spec is not None, [str(e) for e in result.errors]
    return result.spec


def onboarding(**overrides: Any) -> dict[str, Any]:
    """The onboarding shape: hire -> (okta user, gitlab member) -> (welcome, ticket)."""
    spec: dict[str, Any] = {
        "name": "onboarding_test",
        "parameters": {
            "worker_id": {"type": "string"},
            "gitlab_user_id": {"type": "integer", "default": 3},
            "notify_email": {"type": "string", "default": "bob@example.com"},
        },
        "steps": [
            {
                "id": "hire",
                "uses": "workday.get_worker",
                "with": {"worker_id": "{{ params.worker_id }}"},
            },
            {
                "id": "okta_user",
                "uses": "okta.create_user",
                "with": {
                    "first_name": "{{ (steps.hire.output.descriptor | split(' '))[0] }}",
                    "last_name": "{{ (steps.hire.output.descriptor | split(' '))[1] }}",
                    "email": "{{ steps.hire.output.primary_work_email }}",
                },
            },
            {
                "id": "gitlab_member",
                "uses": "gitlab.add_project_member",
                "needs": ["hire"],
                "with": {
                    "project": "acme/backend",
                    "user_id": "{{ params.gitlab_user_id }}",
                    "access_level": 30,
                },
            },
            {
                "id": "welcome",
                "uses": "notify.send",
                "with": {
                    "recipient_email": "{{ params.notify_email }}",
                    "text": "Welcome {{ steps.hire.output.descriptor }} "
                    "({{ steps.okta_user.output.id }})",
                },
            },
            {
                "id": "equipment",
                "uses": "jira.create_issue",
                "with": {
                    "project_key": "OPS",
                    "summary": "Equipment for {{ steps.hire.output.descriptor }}",
                },
            },
        ],
    }
    spec.update(overrides)
    return spec


class Recorder(httpx.AsyncBaseTransport):
    """A real transport to the sandbox that notes each request's start and end (monotonic
    clock) and the most requests in flight per service."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.spans: list[tuple[str, str, str, float, float]] = []
        self.inflight: dict[str, int] = defaultdict(int)
        self.max_inflight: dict[str, int] = defaultdict(int)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = request.url.path.split("/")[1]
        start = time.monotonic()
        self.inflight[service] += 1
        self.max_inflight[service] = max(self.max_inflight[service], self.inflight[service])
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()
        finally:
            self.inflight[service] -= 1
            self.spans.append((service, request.method, request.url.path, start, time.monotonic()))
        return response

    def span(self, service: str, method: str, contains: str = "") -> tuple[float, float]:
        """The first request matching (start, end)."""
        for svc, m, path, start, end in self.spans:
            if svc == service and m == method and contains in path:
                return start, end
        raise AssertionError(f"no {method} {service} {contains} in {self.spans}")

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(autouse=True)
def fresh_breakers() -> Iterator[None]:
    """Each test starts with closed breakers (they are process-wide)."""
    breakers.clear()
    yield
    breakers.clear()


def run(
    sb: SandboxServer,
    spec: WorkflowSpec,
    params: dict[str, Any],
    *,
    times: int = 1,
    store: MetricsStore | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **runtime: Any,
) -> list[RunResult]:
    """Run ``spec`` ``times`` times in a row on one runtime."""

    async def go() -> list[RunResult]:
        options: dict[str, Any] = {"retry": FAST}
        if transport is not None:
            options["transport"] = transport
        async with Runtime(
            sandbox_settings(sb), store=store, client_options=options, **runtime
        ) as rt:
            runner = WorkflowRunner(spec, rt)
            return [await runner.run(params) for _ in range(times)]

    return asyncio.run(go())


# --- DAG --------------------------------------------------------------------------------------


def test_independent_steps_overlap_and_dependents_wait(sb: SandboxServer) -> None:
    for service in ("okta", "gitlab", "workday"):
        set_faults(sb, service, latency_ms=150)
    recorder = Recorder()
    [result] = run(sb, make_spec(onboarding()), {"worker_id": WORKER_0}, transport=recorder)
    assert result.ok, result.error
    hire = recorder.span("workday", "GET", WORKER_0)
    okta_create = recorder.span("okta", "POST", "/api/v1/users")
    gitlab_add = recorder.span("gitlab", "POST", "/members")
    jira_create = recorder.span("jira", "POST", "/rest/api/3/issue")
    # dependents start after their upstream's request answered
    assert okta_create[0] >= hire[1] and gitlab_add[0] >= hire[1] and jira_create[0] >= hire[1]
    # okta and gitlab have no path between them: their requests were in flight together
    assert okta_create[0] < gitlab_add[1] and gitlab_add[0] < okta_create[1]
    welcome = recorder.span("webex", "POST", "/messages")
    assert welcome[0] >= okta_create[1]  # welcome reads the okta user's id
    assert [s.status for s in result.steps.values()] == ["ok"] * 5


def test_per_integration_bound_limits_calls_in_flight(sb: SandboxServer) -> None:
    set_faults(sb, "workday", latency_ms=100)
    steps = [
        {"id": f"read_{i}", "uses": "workday.get_worker", "with": {"worker_id": WORKER_0}}
        for i in range(4)
    ]

    def max_in_flight(bound: int) -> int:
        recorder = Recorder()
        spec = make_spec({"name": "bound", "concurrency": {"workday": bound}, "steps": steps})
        [result] = run(sb, spec, {}, transport=recorder, coalesce=False)
        assert result.ok, result.error
        assert len([s for s in recorder.spans if s[0] == "workday" and s[1] == "GET"]) >= 4
        return recorder.max_inflight["workday"]

    assert max_in_flight(1) == 1
    assert max_in_flight(4) >= 2


# --- cache and coalescing ---------------------------------------------------------------------


def test_cached_read_is_not_called_again_and_steps_do_not_share_entries(sb: SandboxServer) -> None:
    spec = make_spec(
        {
            "name": "cached",
            "steps": [
                {
                    "id": "first",
                    "uses": "workday.get_worker",
                    "with": {"worker_id": WORKER_0},
                    "cache": "5m",
                },
                {
                    "id": "second",
                    "uses": "workday.get_worker",
                    "needs": ["first"],
                    "with": {"worker_id": WORKER_0},
                    "cache": "5m",
                },
            ],
        }
    )
    route = "GET /workers/{worker_id}"
    one, two = run(sb, spec, {}, times=2)
    # run 1: the second step has the same inputs but is another step: its own call
    assert not one.steps["first"].cached and not one.steps["second"].cached
    assert route_requests(sb, "workday", route) == 2
    # run 2: both from the cache, no request at all
    assert two.steps["first"].cached and two.steps["second"].cached
    assert two.steps["first"].calls == 0
    assert route_requests(sb, "workday", route) == 2
    assert two.steps["first"].output == one.steps["first"].output


def test_identical_concurrent_reads_are_coalesced(sb: SandboxServer) -> None:
    set_faults(sb, "workday", latency_ms=100)
    spec = make_spec(
        {
            "name": "coalesce",
            "steps": [
                {"id": "a", "uses": "workday.get_worker", "with": {"worker_id": WORKER_0}},
                {"id": "b", "uses": "workday.get_worker", "with": {"worker_id": WORKER_0}},
                {"id": "c", "uses": "workday.get_worker", "with": {"worker_id": WORKER_0}},
            ],
        }
    )
    [result] = run(sb, spec, {})
    assert result.ok
    assert route_requests(sb, "workday", "GET /workers/{worker_id}") == 1
    assert sum(s.coalesced for s in result.steps.values()) == 2
    assert result.steps["a"].output == result.steps["c"].output
    [again] = run(sb, spec, {}, coalesce=False)
    assert again.ok and route_requests(sb, "workday", "GET /workers/{worker_id}") == 4


def test_concurrent_user_lookups_are_batched_into_one_search(sb: SandboxServer) -> None:
    logins = ["ada.lovelace@example.com", "grace.hopper@example.com", "nobody@example.com"]
    spec = make_spec(
        {
            "name": "batch",
            "steps": [
                {"id": f"u{i}", "uses": "okta.get_user", "with": {"login": login}}
                for i, login in enumerate(logins)
            ]
            + [
                {
                    "id": "report",
                    "uses": "okta.get_user",
                    "needs": ["u0"],
                    "with": {"login": "{{ steps.u0.output.profile.login }}"},
                }
            ],
        }
    )
    [result] = run(sb, spec, {})
    assert result.steps["u0"].status == "ok", result.steps["u0"]
    # one search answered the three concurrent lookups (the later "report" step made a
    # second one); only the login the search did not find was asked singly (Okta's 404)
    assert route_requests(sb, "okta", "GET /api/v1/users") == 2
    assert route_requests(sb, "okta", "GET /api/v1/users/{user_id}") == 1
    assert result.steps["report"].status == "ok"
    assert result.steps["u0"].output["profile"]["login"] == logins[0]
    assert result.steps["u1"].output["profile"]["login"] == logins[1]
    assert result.steps["u2"].status == "failed"
    assert "NotFoundError" in (result.steps["u2"].error or "")


# --- breaker, fallback, routing ---------------------------------------------------------------


def notify_spec() -> WorkflowSpec:
    return make_spec(
        {
            "name": "notify",
            "steps": [
                {
                    "id": "tell",
                    "uses": "notify.send",
                    "providers": ["webex", "slack"],
                    "with": {"channel": "C0000000002", "text": "deploy done"},
                }
            ],
        }
    )


def test_open_breaker_goes_straight_to_the_fallback(sb: SandboxServer) -> None:
    webex = breakers.get("webex")
    for _ in range(webex.failure_threshold):
        webex.record_failure()
    [result] = run(sb, notify_spec(), {})
    step = result.steps["tell"]
    assert result.ok and step.provider == "slack" and step.fallback == "slack"
    assert "circuit breaker open" in step.tried[0]
    assert route_requests(sb, "webex", "POST /messages") == 0
    assert len(collection(sb, "slack", "messages")) == 1


def test_provider_down_falls_back_in_order(sb: SandboxServer) -> None:
    set_faults(sb, "webex", outages=[{"start": 0, "mode": "503"}])
    [result] = run(sb, notify_spec(), {})
    step = result.steps["tell"]
    assert result.ok and step.fallback == "slack", step
    assert step.tried and step.tried[0].startswith("webex.create_message")


def test_routing_prefers_the_provider_with_better_recent_metrics(
    sb: SandboxServer, tmp_path: Path
) -> None:
    store = MetricsStore(tmp_path / "metrics")
    now = datetime.now(UTC)
    rows = []
    for i in range(20):
        for service, ok, latency in (("webex", i % 2 == 0, 900.0), ("slack", True, 80.0)):
            rows.append(
                {
                    "ts": now,
                    "service": service,
                    "action": "x",
                    "method": "GET",
                    "path": "/",
                    "status": 200 if ok else 503,
                    "ok": ok,
                    "latency_ms": latency,
                    "attempts": 1,
                    "breaker_state": "closed",
                    "source": "probe",
                }
            )
    store.append("calls", rows)
    store.flush()
    [result] = run(sb, notify_spec(), {}, store=store)
    step = result.steps["tell"]
    assert step.provider == "slack" and step.fallback is None  # first choice, not a fallback
    assert route_requests(sb, "webex", "POST /messages") == 0
    store.close()


# --- idempotency under lost responses ---------------------------------------------------------


def test_lost_responses_never_duplicate_side_effects(sb: SandboxServer) -> None:
    for service in ("okta", "gitlab", "jira", "webex"):
        set_faults(sb, service, lost_after_commit=1.0, lost_mode="504")
    spec = make_spec(onboarding())
    results = run(sb, spec, {"worker_id": WORKER_0}, times=2)  # a retry, then a rerun
    users = [
        u
        for u in collection(sb, "okta", "users").values()
        if u["profile"]["login"] == "ada.lovelace0@example.com"
    ]
    assert len(users) == 1
    assert len(collection(sb, "gitlab", "members")) == 2  # alice (seeded) + bob, once
    assert len(collection(sb, "jira", "issues")) == 1
    welcome = [m for m in collection(sb, "webex", "messages").values() if "Welcome" in str(m)]
    assert len(welcome) <= 1
    assert results[0].steps["okta_user"].status == "ok", results[0].steps["okta_user"]
    assert results[0].steps["equipment"].status == "ok", results[0].steps["equipment"]


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "faults", "expect"),
    [
        ("workday", {"error_next": 2}, "ok"),
        ("jira", {"burst_429": 0.5, "retry_after_seconds": 1}, "ok"),
        ("okta", {"reset_rate": 0.3}, "ok"),
        ("gitlab", {"malformed_rate": 1.0}, "failed:gitlab_member"),
        ("workday", {"hang_rate": 1.0}, "failed:hire"),
        ("jira", {"outages": [{"start": 0, "mode": "503"}]}, "failed:equipment"),
    ],
)
def test_fault_mix_ends_in_success_or_a_failure_naming_the_step(
    sb: SandboxServer, service: str, faults: dict[str, Any], expect: str
) -> None:
    set_faults(sb, service, **faults)
    data = onboarding()
    for step in data["steps"]:
        step["timeout"] = 2
        if step["id"] != "welcome":  # validation refuses retries of a non-idempotent step
            step["retries"] = 1
            step["retry_delay"] = 0.05
    [result] = run(sb, make_spec(data), {"worker_id": WORKER_0})
    if expect == "ok":
        assert result.ok, result.error
        return
    step_id = expect.split(":")[1]
    assert not result.ok and result.failed_step == step_id
    assert result.error and f"step {step_id!r}" in result.error
    assert result.steps[step_id].status == "failed"
    if service == "workday":
        assert "timed out after 2s" in result.error
        assert all(s.status == "skipped" for k, s in result.steps.items() if k != "hire")


def test_run_records_workflow_run_row_and_calls_with_run_id(
    sb: SandboxServer, tmp_path: Path
) -> None:
    store = MetricsStore(tmp_path / "metrics")
    set_faults(sb, "workday", error_next=1)
    [result] = run(sb, make_spec(onboarding()), {"worker_id": WORKER_0}, store=store)
    store.flush()
    rows = store.query("SELECT * FROM workflow_runs")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["run_id"] == result.run_id and row["workflow"] == "onboarding_test"
    assert row["status"] == "completed" and row["steps"] == 5 and row["retries"] >= 1
    assert row["fallbacks"] == 0 and row["error"] is None
    assert WORKER_0 in row["params_json"]
    calls = store.query("SELECT service, source, run_id FROM calls")
    assert set(calls["run_id"]) == {result.run_id}
    assert set(calls["source"]) == {"workflow"}
    assert {"workday", "okta", "gitlab", "jira", "webex"} <= set(calls["service"])
    store.close()


def test_failed_run_row_names_the_step(sb: SandboxServer, tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics")
    set_faults(sb, "gitlab", outages=[{"start": 0, "mode": "503"}])
    [result] = run(sb, make_spec(onboarding()), {"worker_id": WORKER_0}, store=store)
    store.flush()
    row = store.query("SELECT status, error FROM workflow_runs").iloc[0]
    assert row["status"] == "failed" and "step 'gitlab_member'" in row["error"]
    assert result.steps["hire"].status == "ok"
    store.close()
