"""Junction's Prefect events and automations on a REAL `prefect server start`.

One server for the module (own PREFECT_HOME, scheduler off, no worker: a triggered run
stays scheduled, which is all the automation tests look at). The events come from a real
alert engine's transitions and the monitor's status emitter (:mod:`junction.events`);
the automations are the ones ``python -m
deployments.automations`` applies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from deployments.local import PrefectServer, ensure_work_pool
from tests.alerting_helpers import SETTINGS, T0, at, engine, snap

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

T = TypeVar("T")
WAIT_S = 60.0


def _until(fetch: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """Poll ``fetch`` until it returns something (a deadline loop, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value is not None:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server() -> Iterator[PrefectServer]:
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with PrefectServer(scheduler=False, ui=False, startup_timeout=300) as srv:
        EventsWorker.drain_all()  # a worker of an earlier server must not get our events
        with temporary_settings(updates={PREFECT_API_URL: srv.api_url}):
            yield srv
            EventsWorker.drain_all()


@pytest.fixture(scope="module")
def api(server: PrefectServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_url, timeout=60.0) as client:
        yield client


@pytest.fixture(scope="module")
def deployed(server: PrefectServer, api: httpx.Client) -> dict[str, Any]:
    """The incident-response and onboarding spec deployments, then the automations."""
    from deployments import automations
    from deployments.specs import planned, runner_deployment

    ensure_work_pool(env=server.env)
    ids = {}
    for plan in planned():
        if plan.name in ("incident_response", "employee_onboarding"):
            ids[plan.name] = str(runner_deployment(plan).apply())
    first = automations.apply_all()
    # Again, as `make serve` runs it (a subprocess on the server's environment).
    again = automations.deploy_automations(env=server.env).stdout
    return {"ids": ids, "first": first, "again": again}


def _events(api: httpx.Client, name: str) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"name": [name]}}, "limit": 50}
    response = api.post("/events/filter", json=body)
    response.raise_for_status()
    return list(response.json()["events"])


def test_automations_are_applied_once_by_name(deployed: dict[str, Any], api: httpx.Client) -> None:
    from deployments.automations import INCIDENT_FIRED, PAUSE, RESUME

    first, again = deployed["first"], deployed["again"]
    assert all(created for _, created in first.values())
    # Updated in place by name, same ids: nothing created the second time.
    assert "created" not in again
    for name, (automation_id, _) in first.items():
        assert f"updated automation {name!r} ({automation_id})" in again
    for name in (INCIDENT_FIRED, PAUSE.format(service="okta"), RESUME.format(service="okta")):
        assert name in first
    # Incident response is never paused: pagerduty's deployments are only itself.
    assert PAUSE.format(service="pagerduty") not in first
    listed = api.post("/automations/filter", json={}).json()
    assert len(listed) == len(first)


def test_alert_transitions_are_events_once_each(tmp_path: Path, api: httpx.Client) -> None:
    from junction.events import alert_transitions

    eng = engine(tmp_path)
    try:
        fired = alert_transitions(eng.evaluate([snap("gitlab", T0, rate=0.0, down=True)], T0))
        repeat = alert_transitions(
            eng.evaluate([snap("gitlab", at(5), rate=0.0, down=True)], at(5))
        )
        resolved: list[Any] = []
        for i in range(1, 40):  # resolve_after passes on engine time
            now = at(5 + 30 * i)
            resolved += alert_transitions(eng.evaluate([snap("gitlab", now, down=False)], now))
    finally:
        eng.close()
    assert fired and not repeat  # a sweep that changes nothing emits nothing
    down = [e for e in fired if e.payload["rule"] == "down"]
    assert len(down) == 1 and down[0].payload["severity"] == "critical"
    assert {e.payload["fingerprint"] for e in resolved} == {e.payload["fingerprint"] for e in fired}
    assert len(resolved) == len(fired)

    def seen() -> list[dict[str, Any]] | None:
        got = [
            e
            for e in _events(api, "junction.alert.resolved")
            if e["payload"]["fingerprint"] == "gitlab:down"
        ]
        return got or None

    (event,) = _until(seen, "junction.alert.resolved on the server")
    assert event["resource"]["prefect.resource.id"] == "junction.integration.gitlab"
    assert event["related"][0]["prefect.resource.id"] == "junction.alert.gitlab:down"
    assert event["related"][0]["prefect.resource.role"] == "alert"
    on_server = [
        e
        for e in _events(api, "junction.alert.fired")
        if e["payload"]["fingerprint"] == "gitlab:down"
    ]
    assert len(on_server) == 1
    assert on_server[0]["resource"]["junction.severity"] == "critical"


def test_critical_alert_runs_incident_response(
    deployed: dict[str, Any], tmp_path: Path, api: httpx.Client
) -> None:
    import asyncio

    from junction.monitor.alerts import EngineHook
    from junction.monitor.results import ServiceHealth

    deployment_id = deployed["ids"]["incident_response"]
    down = snap("okta", T0, rate=0.0, down=True)
    health = ServiceHealth(
        service="okta",
        status="critical",
        score=down.score.score,
        ok=False,
        latency_ms=None,
        http_status=None,
        error_class="APIConnectionError",
        error="connection refused",
        success_rate=0.0,
        p50_latency_ms=None,
        p95_latency_ms=None,
        uptime=0.0,
        breaker_state="closed",
        observations=100,
        failures=100,
        consecutive_failures=5,
        down=True,
        checked_at=T0,
        as_of=T0,
        stats=down.stats,
        breakdown=down.score,
    )

    # The monitor's alert hook, as a sweep calls it: the engine's transition is the event.
    async def sweep() -> None:
        hook = EngineHook(SETTINGS, engine=engine(tmp_path), channels={})
        try:
            await hook.evaluate([health], T0)
        finally:
            await hook.aclose()

    asyncio.run(sweep())

    def run() -> dict[str, Any] | None:
        body = {"deployments": {"id": {"any_": [deployment_id]}}}
        runs = api.post("/flow_runs/filter", json=body).json()
        mine = [r for r in runs if r["parameters"].get("fingerprint") == "okta:down"]
        return mine[0] if mine else None

    flow_run = _until(run, "the incident-response flow run")
    params = flow_run["parameters"]
    assert params["alert_name"] == "okta:down"
    assert params["severity"] == "critical"
    assert params["status"] == "firing"
    assert params["summary"]  # the alert's message


def test_an_integration_down_pauses_its_deployments_until_it_recovers(
    deployed: dict[str, Any], api: httpx.Client
) -> None:
    from junction.events import status_changed

    onboarding = deployed["ids"]["employee_onboarding"]
    incident = deployed["ids"]["incident_response"]

    def paused(want: bool) -> Callable[[], bool | None]:
        return lambda: (
            True if api.get(f"/deployments/{onboarding}").json()["paused"] is want else None
        )

    assert api.get(f"/deployments/{onboarding}").json()["paused"] is False
    assert status_changed("okta", "healthy", "critical", "3 failures") is not None
    _until(paused(True), "the onboarding deployment paused")
    assert api.get(f"/deployments/{incident}").json()["paused"] is False
    assert status_changed("okta", "critical", "healthy", "recovered") is not None
    _until(paused(False), "the onboarding deployment resumed")


def test_event_payloads_are_redacted(server: PrefectServer) -> None:
    from integrations.redaction import register_secret
    from junction.events import emit, integration_resource

    secret = "s3cr3t-events-token-value"
    register_secret(secret)
    event = emit(
        "junction.workflow.failed",
        integration_resource("okta"),
        payload={"error": f"401 for token {secret}", "attempts": 3},
    )
    assert event is not None
    assert secret not in event.model_dump_json()
    assert event.payload["attempts"] == 3
