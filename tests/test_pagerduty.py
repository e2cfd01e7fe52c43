"""PagerDuty client against the sandbox: REST incidents (create retry-safe by
incident_key, list, acknowledge/resolve) and the Events API v2 (idempotent by dedup_key,
routing key kept secret)."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    ServerError,
)
from integrations.metrics import collecting
from integrations.pagerduty import (
    EVENTS_URL,
    EVENTS_URL_EU,
    CreateIncidentParams,
    ListIncidentsParams,
    PagerDutyClient,
    SendEventParams,
    UpdateIncidentParams,
)
from integrations.redaction import install_log_redaction, redact
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from junction.clients import get_client
from junction.settings import Settings
from tests.helpers import ClientFactory, collection, mock_client

ME = "sandbox-user@example.com"
ROUTING_KEY = "R0UT1NGKEYsandbox0000000000000001"


def test_actions_and_their_safety() -> None:
    for name in ("create_incident", "update_incident", "send_event"):
        spec = get_action("pagerduty", name)
        assert spec.idempotent and not spec.read_only, name
    assert get_action("pagerduty", "list_incidents").read_only


def test_events_url_is_derived_from_the_base_url() -> None:
    settings = Settings(sandbox_url="http://127.0.0.1:9")
    sandboxed = get_client("pagerduty", settings=settings)
    assert isinstance(sandboxed, PagerDutyClient)
    assert sandboxed.events_url == "http://127.0.0.1:9/pagerduty/v2/enqueue"
    creds = Credentials(token=SecretStr("x"))
    real = get_client(
        "pagerduty", settings=settings, base_url="https://api.pagerduty.com", credentials=creds
    )
    eu = get_client(
        "pagerduty", settings=settings, base_url="https://api.eu.pagerduty.com", credentials=creds
    )
    assert isinstance(real, PagerDutyClient) and isinstance(eu, PagerDutyClient)
    assert (real.events_url, eu.events_url) == (EVENTS_URL, EVENTS_URL_EU)
    own = get_client("pagerduty", settings=settings, events_url="http://relay.local/enqueue")
    assert isinstance(own, PagerDutyClient) and own.events_url == "http://relay.local/enqueue"


async def test_incident_lifecycle(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(PagerDutyClient)):
        created = await client.create_incident(
            CreateIncidentParams(
                title="Checkout 5xx",
                service_id="PSANDB1",
                urgency="high",
                details="error rate 12%",
                from_email=ME,
            )
        )
        assert (created.status, created.existing) == ("triggered", False)
        listed = await client.list_incidents(ListIncidentsParams(statuses=["triggered"]))
        assert [i.id for i in listed.incidents] == [created.id]
        acked = await client.update_incident(
            UpdateIncidentParams(incident_id=created.id, status="acknowledged", from_email=ME)
        )
        resolved = await client.update_incident(
            UpdateIncidentParams(
                incident_id=created.id, status="resolved", resolution="rolled back", from_email=ME
            )
        )
        open_now = await client.list_incidents(
            ListIncidentsParams(statuses=["triggered", "acknowledged"])
        )
    assert (acked.status, resolved.status) == ("acknowledged", "resolved")
    assert open_now.incidents == []
    stored = collection(sb, "pagerduty", "incidents")[created.id]
    assert stored["status"] == "resolved" and stored["resolution"] == "rolled back"
    assert stored["incident_key"] == created.incident_key and stored["urgency"] == "high"
    assert stored["body"]["details"] == "error rate 12%"


async def test_create_incident_retry_safe_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("pagerduty", lost_after_commit=1.0)
    with collecting() as metrics:
        async with (client := make_client(PagerDutyClient)):
            incident = await client.create_incident(
                CreateIncidentParams(title="lost answer", service_id="PSANDB1", from_email=ME)
            )
    assert incident.existing
    assert list(collection(sb, "pagerduty", "incidents")) == [incident.id]  # one, not two
    # The retried POST met PagerDuty's duplicate-key rejection; the lookup found it.
    assert sb.request_log.count("pagerduty", "POST /incidents") == 2
    create = next(m for m in metrics if m.action == "create_incident")
    assert (create.ok, create.error_class) == (False, "BadRequestError")


async def test_same_incident_key_returns_the_open_incident(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateIncidentParams(
        title="disk", service_id="PSANDB2", incident_key="disk-db1", from_email=ME
    )
    async with (client := make_client(PagerDutyClient)):
        first = await client.create_incident(params)
        again = await client.create_incident(params)
        await client.update_incident(
            UpdateIncidentParams(incident_id=first.id, status="resolved", from_email=ME)
        )
        reopened = await client.create_incident(params)  # resolved: a new one is right
    assert (again.id, again.existing) == (first.id, True)
    assert reopened.id != first.id and not reopened.existing
    assert len(collection(sb, "pagerduty", "incidents")) == 2


async def test_rest_errors_are_typed(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(PagerDutyClient)):
        with pytest.raises(BadRequestError, match="Invalid Input"):
            await client.create_incident(
                CreateIncidentParams(title="x", service_id="PNOPE", from_email=ME)
            )
        with pytest.raises(NotFoundError):
            await client.update_incident(
                UpdateIncidentParams(incident_id="QNOPE", status="resolved", from_email=ME)
            )
        with pytest.raises(ConfigurationError, match="JUNCTION_PAGERDUTY_USERNAME"):
            await client.create_incident(CreateIncidentParams(title="x", service_id="PSANDB1"))
    assert collection(sb, "pagerduty", "incidents") == {}


async def test_bad_token_is_authentication_error(make_client: ClientFactory) -> None:
    async with (client := make_client(PagerDutyClient, wrong_secret="u+wrongtokenvalue")):
        with pytest.raises(AuthenticationError):
            await client.list_incidents(ListIncidentsParams())
        health = await client.health_check()
    assert (health.ok, health.error_class) == (False, "AuthenticationError")


# --- Events API v2 ------------------------------------------------------------------------


async def test_send_event_trigger_then_resolve(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(PagerDutyClient, routing_key=ROUTING_KEY)):
        trig = await client.send_event(
            SendEventParams(
                summary="disk 95% on db1",
                source="db1",
                severity="critical",
                custom_details={"free_gb": 3},
            )
        )
        again = await client.send_event(
            SendEventParams(
                summary="disk 96% on db1",
                source="db1",
                severity="critical",
                dedup_key=trig.dedup_key,
            )
        )
        done = await client.send_event(
            SendEventParams(event_action="resolve", dedup_key=trig.dedup_key)
        )
    assert trig.status == "success" and again.dedup_key == done.dedup_key == trig.dedup_key
    alert = collection(sb, "pagerduty", "alerts")[trig.dedup_key]
    assert (alert["status"], alert["events"]) == ("resolved", 3)
    assert alert["summary"] == "disk 96% on db1"
    assert ROUTING_KEY not in str(collection(sb, "pagerduty", "events"))


async def test_send_event_is_idempotent_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("pagerduty", lost_after_commit=1.0)
    async with (client := make_client(PagerDutyClient)):
        with pytest.raises(ServerError) as err:
            await client.send_event(
                SendEventParams(
                    summary="x",
                    source="y",
                    severity="info",
                    dedup_key="k-1",
                    routing_key=SecretStr(ROUTING_KEY),
                )
            )
    assert ROUTING_KEY not in str(err.value)
    alerts = collection(sb, "pagerduty", "alerts")
    assert list(alerts) == ["k-1"] and alerts["k-1"]["events"] == 3  # one alert, 3 deliveries


async def test_routing_key_is_secret(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    install_log_redaction()
    with pytest.raises(ConfigurationError, match="routing key"):
        async with (client := make_client(PagerDutyClient)):
            await client.send_event(SendEventParams(summary="x", source="y", severity="info"))
    secret = "R0UT1NGKEYsecret00000000000000099"
    async with (client := make_client(PagerDutyClient)):
        with caplog.at_level(logging.DEBUG):
            await client.send_event(
                SendEventParams(
                    summary="x", source="y", severity="info", routing_key=SecretStr(secret)
                )
            )
            logging.getLogger("test").info("sent with %s", secret)
    assert secret not in caplog.text and redact(f"key {secret}") == "key ***"
    with pytest.raises(ValidationError):
        SendEventParams(event_action="resolve")  # needs the dedup_key


async def test_events_request_carries_no_rest_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            202, json={"status": "success", "message": "Event processed", "dedup_key": "d1"}
        )

    client = mock_client(
        PagerDutyClient,
        handler,
        base_url="https://api.pagerduty.com",
        credentials=Credentials(token=SecretStr("rest-api-key-1")),
        routing_key=ROUTING_KEY,
    )
    result = await client.send_event(SendEventParams(summary="s", source="x", severity="error"))
    (req,) = seen
    assert str(req.url) == EVENTS_URL and result.dedup_key == "d1"
    assert "authorization" not in req.headers
    assert b'"routing_key":"' + ROUTING_KEY.encode() in req.content.replace(b" ", b"")
