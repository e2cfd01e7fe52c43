"""ServiceNow client against the sandbox: incidents created retry-safely by correlation
id, read by sys_id or number, typed errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import AuthenticationError, NotFoundError
from integrations.metrics import collecting
from integrations.registry import get_action, get_client
from integrations.sandbox.app import SandboxServer
from integrations.servicenow import CreateIncidentParams, GetIncidentParams, ServiceNowClient
from junction.settings import Settings

FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


@pytest.fixture(scope="module")
def sb() -> Iterator[SandboxServer]:
    with SandboxServer(smtp_port=None) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sb: SandboxServer) -> None:
    sb.reset()


def servicenow(sb: SandboxServer, **kwargs: Any) -> ServiceNowClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("breaker", CircuitBreaker("servicenow", failure_threshold=1000))
    client = get_client("servicenow", settings=Settings(sandbox_url=sb.url), **kwargs)
    assert isinstance(client, ServiceNowClient)
    return client


def incidents(sb: SandboxServer) -> dict[str, Any]:
    answer = httpx.get(f"{sb.url}/_admin/state/servicenow", timeout=10).json()
    found: dict[str, Any] = answer["collections"].get("incident", {})
    return found


def test_actions_and_their_safety() -> None:
    create = get_action("servicenow", "create_incident")
    assert create.idempotent and not create.read_only
    assert get_action("servicenow", "get_incident").read_only


async def test_create_and_get_incident(sb: SandboxServer) -> None:
    async with (client := servicenow(sb)):
        created = await client.create_incident(
            CreateIncidentParams(short_description="VPN down in Lisbon", description="since 9:00",
                                 urgency=1, impact=2, category="network")
        )
        by_id = await client.get_incident(GetIncidentParams(sys_id=created.sys_id))
        by_number = await client.get_incident(GetIncidentParams(number=created.number))
    assert created.number.startswith("INC") and not created.existing
    assert by_id.sys_id == by_number.sys_id == created.sys_id
    stored = incidents(sb)[created.sys_id]
    assert (stored["urgency"], stored["impact"], stored["priority"]) == ("1", "2", "2")
    assert stored["correlation_id"] == created.correlation_id
    assert stored["correlation_display"] == "Junction"


async def test_create_incident_retry_safe_after_lost_response(sb: SandboxServer) -> None:
    sb.faults.set("servicenow", lost_after_commit=1.0)
    with collecting() as metrics:
        async with (client := servicenow(sb)):
            created = await client.create_incident(
                CreateIncidentParams(short_description="lost answer")
            )
    assert created.existing and list(incidents(sb)) == [created.sys_id]
    assert [m.action for m in metrics] == ["create_incident", "create_incident.lookup"]


async def test_same_correlation_id_returns_the_incident(sb: SandboxServer) -> None:
    params = CreateIncidentParams(short_description="disk", correlation_id="run-9:ticket")
    async with (client := servicenow(sb)):
        first = await client.create_incident(params)
        again = await client.create_incident(params)
    assert (again.sys_id, again.existing, first.existing) == (first.sys_id, True, False)
    assert len(incidents(sb)) == 1


async def test_not_found_and_validation(sb: SandboxServer) -> None:
    async with (client := servicenow(sb)):
        with pytest.raises(NotFoundError):
            await client.get_incident(GetIncidentParams(sys_id="0" * 32))
        with pytest.raises(NotFoundError):
            await client.get_incident(GetIncidentParams(number="INC9999999"))
    with pytest.raises(ValidationError):
        GetIncidentParams()
    with pytest.raises(ValidationError):  # '^' would split the encoded query
        CreateIncidentParams(short_description="x", correlation_id="a^number=INC1")


async def test_bad_password_is_authentication_error(sb: SandboxServer) -> None:
    bad = Credentials(username="sandbox-user", password=SecretStr("wrong-password"))
    async with (client := servicenow(sb, credentials=bad)):
        with pytest.raises(AuthenticationError):
            await client.create_incident(CreateIncidentParams(short_description="x"))
    assert incidents(sb) == {}
