"""Contract: every Okta action, sent to Prism serving Okta's Management API spec, is
accepted; a request that breaks the spec is rejected."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import BadRequestError
from integrations.okta import (
    AddUserToGroupParams,
    CreateUserParams,
    DeactivateUserParams,
    GetUserParams,
    ListGroupsParams,
    OktaClient,
)
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


def client(prism_servers: dict[str, str]) -> OktaClient:
    c = get_client(
        "okta",
        base_url=prism_servers["okta"],
        credentials=Credentials(token=SecretStr("00test")),
        retry=ONCE,
        breaker=CircuitBreaker("okta", failure_threshold=1000),
    )
    assert isinstance(c, OktaClient)
    return c


async def test_create_user_accepted(prism_servers: dict[str, str]) -> None:
    """GET-by-login then (Prism finds "the user") return: both requests valid."""
    params = CreateUserParams(
        first_name="Isaac",
        last_name="Brock",
        email="isaac.brock@example.com",
        group_ids=["00g1emaKYZTWRYYRRTSK"],
    )
    async with (c := client(prism_servers)):
        user = await c.create_user(params)
        assert user.id and user.profile.login
        # The POST itself (Prism always "finds" the user, so send it directly).
        created = await c.request(
            "POST",
            "/api/v1/users",
            action="raw",
            params={"activate": "true"},
            json={
                "profile": {
                    "firstName": "Isaac",
                    "lastName": "Brock",
                    "email": "isaac.brock@example.com",
                    "login": "isaac.brock@example.com",
                },
                "groupIds": ["00g1emaKYZTWRYYRRTSK"],
            },
        )
    assert created["id"]


async def test_get_user_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        user = await c.get_user(GetUserParams(login="isaac+tag@example.com"))
    assert user.status


async def test_list_groups_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        groups = await c.list_groups(ListGroupsParams(q="West", limit=50))
        searched = await c.list_groups(ListGroupsParams(search='type eq "OKTA_GROUP"'))
    assert groups.items and groups.items[0].profile.name
    assert searched.pages == 1


async def test_add_user_to_group_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        member = await c.add_user_to_group(AddUserToGroupParams(group_id="00g1", user_id="00u1"))
    assert member.group_id == "00g1"


async def test_deactivate_user_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        user = await c.deactivate_user(DeactivateUserParams(user_id="00ub0oNGTSWTBKOLGLNR"))
    assert user.id


async def test_malformed_request_rejected(prism_servers: dict[str, str]) -> None:
    """A create-user body without ``profile`` breaks the spec: Prism answers 400."""
    async with (c := client(prism_servers)):
        with pytest.raises(BadRequestError):
            await c.request("POST", "/api/v1/users", action="raw", json={"profile": "nope"})


async def test_health_check_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        result = await c.health_check()
    assert result.ok, result.error
