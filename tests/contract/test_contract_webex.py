"""Contract: the Webex actions, sent to Prism serving Webex's messaging spec, are
accepted; a request that breaks the spec is rejected.

Not covered, because the trimmed spec does not contain the endpoints (they are tested
against the sandbox): ``POST /rooms`` (create_room's lookup, ``GET /rooms``, is checked
here), ``/memberships`` (add_membership) and ``GET /messages/direct`` (the duplicate
check of 1:1 messages; the POST is checked through ``post_message``).
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import BadRequestError
from integrations.webex import CreateMessageParams, CreateRoomParams, GetMeParams, WebexClient
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


def client(prism_servers: dict[str, str]) -> WebexClient:
    c = get_client(
        "webex",
        base_url=prism_servers["webex"],
        credentials=Credentials(token=SecretStr("webex-test")),
        retry=ONCE,
        breaker=CircuitBreaker("webex", failure_threshold=1000),
    )
    assert isinstance(c, WebexClient)
    return c


async def test_get_me_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        me = await c.get_me(GetMeParams())
    assert me.id and me.emails


async def test_create_message_in_room_accepted(prism_servers: dict[str, str]) -> None:
    """The whole action: /people/me, GET /messages?roomId (duplicate check), POST."""
    params = CreateMessageParams(
        room_id="Y2lzY29zcGFyazovL3VzL1JPT00vYmJj", text="Build failed", markdown="**Build failed**"
    )
    async with (c := client(prism_servers)):
        message = await c.create_message(params)
    assert message.id


async def test_direct_message_post_accepted(prism_servers: dict[str, str]) -> None:
    params = CreateMessageParams(to_person_email="julie@example.com", text="Your access is ready")
    async with (c := client(prism_servers)):
        message = await c.post_message(params)
    assert message.id


async def test_create_room_lookup_accepted(prism_servers: dict[str, str]) -> None:
    """create_room's duplicate search (``GET /people/me``, ``GET /rooms?type=group&
    sortBy=created&max=100``) is valid; Prism's example room was created by its example
    person, so the action returns it without reaching the (unspecified) POST."""
    async with (c := client(prism_servers)):
        room = await c.create_room(CreateRoomParams(title="Project Unicorn - Sprint 0"))
    assert room.unchanged
    assert room.title == "Project Unicorn - Sprint 0"


async def test_malformed_request_rejected(prism_servers: dict[str, str]) -> None:
    """``GET /messages`` without the required ``roomId``: Prism answers 400."""
    async with (c := client(prism_servers)):
        with pytest.raises(BadRequestError):
            await c.request("GET", "/messages", action="raw")


async def test_health_check_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        result = await c.health_check()
    assert result.ok, result.error
