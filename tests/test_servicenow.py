"""ServiceNow client against the sandbox: incidents created retry-safely by correlation
id, read by sys_id or number, typed errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from integrations.errors import AuthenticationError, NotFoundError
from integrations.metrics import collecting
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.servicenow import CreateIncidentParams, GetIncidentParams, ServiceNowClient
from tests.helpers import ClientFactory, collection


def test_actions_and_their_safety() -> None:
    create = get_action("servicenow", "create_incident")
    assert create.idempotent and not create.read_only
    assert get_action("servicenow", "get_incident").read_only


async def test_create_and_get_incident(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(ServiceNowClient)):
        created = await client.create_incident(
            CreateIncidentParams(
                short_description="VPN down in Lisbon",
                description="since 9:00",
                urgency=1,
                impact=2,
                category="network",
            )
        )
        by_id = await client.get_incident(GetIncidentParams(sys_id=created.sys_id))
        by_number = await client.get_incident(GetIncidentParams(number=created.number))
    assert created.number.startswith("INC") and not created.existing
    assert by_id.sys_id == by_number.sys_id == created.sys_id
    stored = collection(sb, "servicenow", "incident")[created.sys_id]
    assert (stored["urgency"], stored["impact"], stored["priority"]) == ("1", "2", "2")
    assert stored["correlation_id"] == created.correlation_id and created.correlation_id
    assert stored["correlation_display"] == "Junction"


async def test_create_incident_retry_safe_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("servicenow", lost_after_commit=1.0)
    with collecting() as metrics:
        async with (client := make_client(ServiceNowClient)):
            created = await client.create_incident(
                CreateIncidentParams(short_description="lost answer")
            )
    assert created.existing and list(collection(sb, "servicenow", "incident")) == [created.sys_id]
    lookup = "create_incident.lookup"
    assert [m.action for m in metrics] == [lookup, "create_incident", lookup]


async def test_same_correlation_id_returns_the_incident(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateIncidentParams(short_description="disk", correlation_id="run-9:ticket")
    async with (client := make_client(ServiceNowClient)):
        first = await client.create_incident(params)
        again = await client.create_incident(params)
    assert (again.sys_id, again.existing, first.existing) == (first.sys_id, True, False)
    assert len(collection(sb, "servicenow", "incident")) == 1


async def test_not_found_and_validation(make_client: ClientFactory) -> None:
    async with (client := make_client(ServiceNowClient)):
        with pytest.raises(NotFoundError):
            await client.get_incident(GetIncidentParams(sys_id="0" * 32))
        with pytest.raises(NotFoundError):
            await client.get_incident(GetIncidentParams(number="INC9999999"))
    with pytest.raises(ValidationError):
        GetIncidentParams()
    with pytest.raises(ValidationError):  # '^' would split the encoded query
        CreateIncidentParams(short_description="x", correlation_id="a^number=INC1")


async def test_bad_password_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(ServiceNowClient, wrong_secret="wrong-password")):
        with pytest.raises(AuthenticationError):
            await client.create_incident(CreateIncidentParams(short_description="x"))
    assert collection(sb, "servicenow", "incident") == {}
