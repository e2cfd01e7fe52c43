"""Alertmanager client: every action against the sandbox (with faults) and against a REAL
Prometheus Alertmanager (Debian's prometheus-alertmanager, fixture ``alertmanager``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from integrations.alertmanager import (
    AlertmanagerClient,
    CreateSilenceParams,
    GetStatusParams,
    ListAlertsParams,
    Matcher,
    PostableAlert,
    PostAlertsParams,
)
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import BadRequestError, ServerError, UnprocessableEntityError
from integrations.metrics import collecting
from integrations.registry import get_action, get_client
from integrations.sandbox.app import SandboxServer
from junction.settings import Settings
from tests.servers import AlertmanagerServer

FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


@pytest.fixture(scope="module")
def sb() -> Iterator[SandboxServer]:
    with SandboxServer(smtp_port=None) as server:
        yield server


@pytest.fixture
def clean(sb: SandboxServer) -> SandboxServer:
    sb.reset()
    return sb


def am(base_url: str | None = None, settings: Settings | None = None) -> AlertmanagerClient:
    client = get_client(
        "alertmanager",
        base_url=base_url,
        settings=settings,
        retry=FAST,
        breaker=CircuitBreaker("alertmanager", failure_threshold=1000),
    )
    assert isinstance(client, AlertmanagerClient)
    return client


def sandboxed(sb: SandboxServer) -> AlertmanagerClient:
    return am(settings=Settings(sandbox_url=sb.url))


def collection(sb: SandboxServer, name: str) -> dict[str, Any]:
    answer = httpx.get(f"{sb.url}/_admin/state/alertmanager", timeout=10).json()
    found: dict[str, Any] = answer["collections"].get(name, {})
    return found


def alert(name: str, **labels: str) -> PostableAlert:
    return PostableAlert(
        labels={"alertname": name, **labels},
        annotations={"summary": f"{name} is firing"},
        generatorURL="https://junction.local/graph",
    )


def test_actions_and_their_safety() -> None:
    assert get_action("alertmanager", "post_alerts").idempotent
    assert get_action("alertmanager", "create_silence").idempotent
    assert get_action("alertmanager", "list_alerts").read_only
    assert get_action("alertmanager", "get_status").read_only
    with pytest.raises(ValidationError):
        PostableAlert(labels={})


def test_matcher_filter_syntax() -> None:
    assert Matcher(name="job", value='a"b').filter_string() == 'job="a\\"b"'
    assert Matcher(name="sev", value="crit.*", is_regex=True, is_equal=False).filter_string() == (
        'sev!~"crit.*"'
    )


# --- sandbox ------------------------------------------------------------------------------


async def test_sandbox_post_list_silence_status(clean: SandboxServer) -> None:
    async with (client := sandboxed(clean)):
        sent = await client.post_alerts(
            PostAlertsParams(alerts=[alert("DiskFull", host="db1"), alert("CpuHot", host="web1")])
        )
        assert sent.accepted == 2
        disk = await client.list_alerts(ListAlertsParams(filter=['alertname="DiskFull"']))
        assert [a.labels["host"] for a in disk] == ["db1"]
        assert disk[0].status.state == "active" and disk[0].annotations["summary"]
        silence = await client.create_silence(
            CreateSilenceParams(matchers=[Matcher(name="alertname", value="DiskFull")],
                                comment="maintenance", created_by="ops")
        )
        silenced = await client.list_alerts(ListAlertsParams(filter=['alertname="DiskFull"']))
        status = await client.get_status(GetStatusParams())
    assert silenced[0].status.state == "suppressed"
    assert silenced[0].status.silenced_by == [silence.silence_id]
    assert status.version_info.version == "0.25.0"
    stored = collection(clean, "silences")[silence.silence_id]
    assert stored["createdBy"] == "ops" and stored["comment"].startswith("maintenance [junction:")
    assert len(collection(clean, "alerts")) == 2


async def test_sandbox_post_alerts_idempotent_after_lost_response(clean: SandboxServer) -> None:
    clean.faults.set("alertmanager", lost_after_commit=1.0)
    async with (client := sandboxed(clean)):
        with pytest.raises(ServerError):
            await client.post_alerts(PostAlertsParams(alerts=[alert("Lost", host="a")]))
    alerts = collection(clean, "alerts")
    assert len(alerts) == 1  # three deliveries, merged into one alert by its label set
    assert next(iter(alerts.values()))["posts"] == 3


async def test_sandbox_create_silence_retry_safe_after_lost_response(clean: SandboxServer) -> None:
    clean.faults.set("alertmanager", lost_after_commit=1.0)
    with collecting() as metrics:
        async with (client := sandboxed(clean)):
            silence = await client.create_silence(
                CreateSilenceParams(matchers=[Matcher(name="alertname", value="X")],
                                    comment="lost answer")
            )
    assert silence.existing and list(collection(clean, "silences")) == [silence.silence_id]
    assert [m.action for m in metrics] == ["create_silence", "create_silence.lookup"]


async def test_sandbox_rejects_malformed_requests_like_alertmanager(clean: SandboxServer) -> None:
    now = datetime.now(UTC)
    async with (client := sandboxed(clean)):
        with pytest.raises(UnprocessableEntityError, match="createdBy in body is required"):
            await client.request("POST", "/silences", action="raw",
                                 json={"matchers": [], "comment": "x"})
        with pytest.raises(UnprocessableEntityError, match="labels in body is required"):
            await client.request("POST", "/alerts", action="raw", json=[{"annotations": {}}])
        with pytest.raises(BadRequestError) as err:
            await client.post_alerts(PostAlertsParams(alerts=[PostableAlert(
                labels={"alertname": "x"}, startsAt=now, endsAt=now - timedelta(hours=1))]))
        assert "start time must be before end time" in err.value.body_excerpt


# --- a real Alertmanager -------------------------------------------------------------------


@pytest.mark.alertmanager
async def test_real_alertmanager_post_and_list(alertmanager: AlertmanagerServer) -> None:
    name = f"JunctionTest{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with (client := am(base_url=alertmanager.api_url)):
        status = await client.get_status(GetStatusParams())
        assert status.version_info.version.startswith("0.")
        sent = await client.post_alerts(
            PostAlertsParams(alerts=[
                PostableAlert(labels={"alertname": name, "severity": "page"},
                              annotations={"summary": "from junction"},
                              startsAt=now - timedelta(minutes=1),
                              endsAt=now + timedelta(minutes=30),
                              generatorURL="http://junction.local/x"),
            ])
        )
        assert sent.accepted == 1
        # Posting the same label set again is a refresh, not a second alert.
        await client.post_alerts(PostAlertsParams(alerts=[
            PostableAlert(labels={"alertname": name, "severity": "page"},
                          annotations={"summary": "refreshed"})
        ]))
        found = await client.list_alerts(ListAlertsParams(filter=[f'alertname="{name}"']))
    assert len(found) == 1
    (got,) = found
    assert got.labels == {"alertname": name, "severity": "page"}
    assert got.annotations["summary"] == "refreshed"
    assert got.fingerprint and got.status.state in ("active", "unprocessed")


@pytest.mark.alertmanager
async def test_real_alertmanager_silence(alertmanager: AlertmanagerServer) -> None:
    name = f"JunctionSilenced{uuid.uuid4().hex[:8]}"
    async with (client := am(base_url=alertmanager.api_url)):
        firing = PostableAlert(labels={"alertname": name})
        await client.post_alerts(PostAlertsParams(alerts=[firing]))
        key = f"test-{uuid.uuid4().hex}"
        params = CreateSilenceParams(
            matchers=[Matcher(name="alertname", value=name)],
            comment="junction test", created_by="pytest", duration_minutes=10,
            idempotency_key=key,
        )
        silence = await client.create_silence(params)
        again = await client.create_silence(params)  # same key: found, not re-created
        alerts = await client.list_alerts(ListAlertsParams(filter=[f'alertname="{name}"']))
        raw = await client.request("GET", f"/silence/{silence.silence_id}", action="raw")
    assert not silence.existing and (again.silence_id, again.existing) == (silence.silence_id, True)
    assert raw["createdBy"] == "pytest" and raw["status"]["state"] == "active"
    assert raw["comment"] == f"junction test [junction:{key}]"
    assert alerts and alerts[0].status.state == "suppressed"
    assert silence.silence_id in alerts[0].status.silenced_by


@pytest.mark.alertmanager
async def test_real_alertmanager_rejects_malformed_requests(
    alertmanager: AlertmanagerServer,
) -> None:
    now = datetime.now(UTC)
    async with (client := am(base_url=alertmanager.api_url)):
        with pytest.raises(UnprocessableEntityError, match="labels in body is required"):
            await client.request("POST", "/alerts", action="raw", json=[{"annotations": {}}])
        with pytest.raises(UnprocessableEntityError, match="createdBy in body is required"):
            await client.request("POST", "/silences", action="raw",
                                 json={"matchers": [], "comment": "x"})
        with pytest.raises(BadRequestError) as err:
            await client.post_alerts(PostAlertsParams(alerts=[PostableAlert(
                labels={"alertname": "x"}, startsAt=now, endsAt=now - timedelta(hours=1))]))
        assert "start time must be before end time" in err.value.body_excerpt
