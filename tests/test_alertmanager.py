"""Alertmanager client: every action against the sandbox (with faults) and against a REAL
Prometheus Alertmanager (Debian's prometheus-alertmanager, fixture ``alertmanager``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

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
from integrations.errors import BadRequestError, ServerError, UnprocessableEntityError
from integrations.metrics import collecting
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from tests.helpers import ClientFactory, collection, new_client
from tests.servers import AlertmanagerServer


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


async def assert_rejects_malformed(client: AlertmanagerClient) -> None:
    """What the real Alertmanager answers to bodies its API rejects (the sandbox too)."""
    now = datetime.now(UTC)
    with pytest.raises(UnprocessableEntityError, match="labels in body is required"):
        await client.request("POST", "/alerts", action="raw", json=[{"annotations": {}}])
    with pytest.raises(UnprocessableEntityError, match="createdBy in body is required"):
        await client.request(
            "POST", "/silences", action="raw", json={"matchers": [], "comment": "x"}
        )
    backwards = PostableAlert(
        labels={"alertname": "x"}, startsAt=now, endsAt=now - timedelta(hours=1)
    )
    with pytest.raises(BadRequestError) as err:
        await client.post_alerts(PostAlertsParams(alerts=[backwards]))
    assert "start time must be before end time" in err.value.body_excerpt


# --- sandbox ------------------------------------------------------------------------------


async def test_sandbox_post_list_silence_status(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(AlertmanagerClient)):
        sent = await client.post_alerts(
            PostAlertsParams(alerts=[alert("DiskFull", host="db1"), alert("CpuHot", host="web1")])
        )
        assert sent.accepted == 2
        disk = await client.list_alerts(ListAlertsParams(filter=['alertname="DiskFull"']))
        assert [a.labels["host"] for a in disk] == ["db1"]
        assert disk[0].status.state == "active" and disk[0].annotations["summary"]
        silence = await client.create_silence(
            CreateSilenceParams(
                matchers=[Matcher(name="alertname", value="DiskFull")],
                comment="maintenance",
                created_by="ops",
            )
        )
        silenced = await client.list_alerts(ListAlertsParams(filter=['alertname="DiskFull"']))
        status = await client.get_status(GetStatusParams())
    assert silenced[0].status.state == "suppressed"
    assert silenced[0].status.silenced_by == [silence.silence_id]
    assert status.version_info.version == "0.25.0"
    stored = collection(sb, "alertmanager", "silences")[silence.silence_id]
    assert stored["createdBy"] == "ops" and stored["comment"].startswith("maintenance [junction:")
    assert len(collection(sb, "alertmanager", "alerts")) == 2


async def test_sandbox_post_alerts_idempotent_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("alertmanager", lost_after_commit=1.0)
    async with (client := make_client(AlertmanagerClient)):
        with pytest.raises(ServerError):
            await client.post_alerts(PostAlertsParams(alerts=[alert("Lost", host="a")]))
    alerts = collection(sb, "alertmanager", "alerts")
    assert len(alerts) == 1  # three deliveries, merged into one alert by its label set
    assert next(iter(alerts.values()))["posts"] == 3


async def test_sandbox_create_silence_retry_safe_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("alertmanager", lost_after_commit=1.0)
    with collecting() as metrics:
        async with (client := make_client(AlertmanagerClient)):
            silence = await client.create_silence(
                CreateSilenceParams(
                    matchers=[Matcher(name="alertname", value="X")], comment="lost answer"
                )
            )
    assert silence.existing
    assert list(collection(sb, "alertmanager", "silences")) == [silence.silence_id]
    # a lookup before the first attempt (a rerun must find the first run's silence) and
    # before the re-attempt
    assert [m.action for m in metrics] == [
        "create_silence.lookup",
        "create_silence",
        "create_silence.lookup",
    ]


async def test_sandbox_rejects_malformed_requests_like_alertmanager(
    make_client: ClientFactory,
) -> None:
    async with (client := make_client(AlertmanagerClient)):
        await assert_rejects_malformed(client)


# --- a real Alertmanager -------------------------------------------------------------------


@pytest.mark.alertmanager
async def test_real_alertmanager_post_and_list(alertmanager: AlertmanagerServer) -> None:
    name = f"JunctionTest{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with (client := new_client(AlertmanagerClient, base_url=alertmanager.api_url)):
        status = await client.get_status(GetStatusParams())
        assert status.version_info.version.startswith("0.")
        sent = await client.post_alerts(
            PostAlertsParams(
                alerts=[
                    PostableAlert(
                        labels={"alertname": name, "severity": "page"},
                        annotations={"summary": "from junction"},
                        startsAt=now - timedelta(minutes=1),
                        endsAt=now + timedelta(minutes=30),
                        generatorURL="http://junction.local/x",
                    ),
                ]
            )
        )
        assert sent.accepted == 1
        # Posting the same label set again is a refresh, not a second alert.
        await client.post_alerts(
            PostAlertsParams(
                alerts=[
                    PostableAlert(
                        labels={"alertname": name, "severity": "page"},
                        annotations={"summary": "refreshed"},
                    )
                ]
            )
        )
        found = await client.list_alerts(ListAlertsParams(filter=[f'alertname="{name}"']))
    assert len(found) == 1
    (got,) = found
    assert got.labels == {"alertname": name, "severity": "page"}
    assert got.annotations["summary"] == "refreshed"
    assert got.fingerprint and got.status.state in ("active", "unprocessed")


@pytest.mark.alertmanager
async def test_real_alertmanager_silence(alertmanager: AlertmanagerServer) -> None:
    name = f"JunctionSilenced{uuid.uuid4().hex[:8]}"
    async with (client := new_client(AlertmanagerClient, base_url=alertmanager.api_url)):
        firing = PostableAlert(labels={"alertname": name})
        await client.post_alerts(PostAlertsParams(alerts=[firing]))
        key = f"test-{uuid.uuid4().hex}"
        params = CreateSilenceParams(
            matchers=[Matcher(name="alertname", value=name)],
            comment="junction test",
            created_by="pytest",
            duration_minutes=10,
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
    async with (client := new_client(AlertmanagerClient, base_url=alertmanager.api_url)):
        await assert_rejects_malformed(client)
