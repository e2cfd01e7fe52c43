"""Microsoft Teams (Graph) client against the sandbox: OAuth2 client credentials through
the shared engine, the channel message landing in state, Graph's errors typed, and no
re-post after a lost response."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import AuthenticationError, BadRequestError, NotFoundError, ServerError
from integrations.registry import get_action, get_client
from integrations.sandbox.app import SandboxServer
from integrations.teams import SendChannelMessageParams, TeamsClient
from junction.settings import Settings

FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0)
TEAM = "7a1f3c2e-0000-4000-8000-000000000001"
OPS = "19:ops000000000000000000000000000@thread.tacv2"


@pytest.fixture(scope="module")
def sb() -> Iterator[SandboxServer]:
    with SandboxServer(smtp_port=None) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sb: SandboxServer) -> None:
    sb.reset()


def teams(sb: SandboxServer, **kwargs: Any) -> TeamsClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("breaker", CircuitBreaker("teams", failure_threshold=1000))
    client = get_client("teams", settings=Settings(sandbox_url=sb.url), **kwargs)
    assert isinstance(client, TeamsClient)
    return client


def messages(sb: SandboxServer) -> dict[str, Any]:
    answer = httpx.get(f"{sb.url}/_admin/state/teams", timeout=10).json()
    found: dict[str, Any] = answer["collections"].get("messages", {})
    return found


def test_action_is_registered_not_idempotent() -> None:
    spec = get_action("teams", "send_channel_message")
    assert spec.input is SendChannelMessageParams
    assert (spec.read_only, spec.idempotent) == (False, False)


async def test_send_channel_message_html(sb: SandboxServer) -> None:
    async with (client := teams(sb)):
        sent = await client.send_channel_message(
            SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="<b>deploy</b> done",
                                     subject="Deploy")
        )
    assert sent.body.content_type == "html" and sent.body.content == "<b>deploy</b> done"
    stored = messages(sb)
    assert list(stored) == [sent.id]
    assert stored[sent.id]["channelIdentity"] == {"teamId": TEAM, "channelId": OPS}
    assert stored[sent.id]["subject"] == "Deploy"
    # The token came from the sandbox's OAuth2 endpoint, once.
    assert sb.request_log.count("teams", "POST /oauth2/token") == 1


async def test_send_text_message(sb: SandboxServer) -> None:
    async with (client := teams(sb)):
        sent = await client.send_channel_message(
            SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="plain",
                                     content_type="text")
        )
    assert messages(sb)[sent.id]["body"] == {"contentType": "text", "content": "plain"}


async def test_unknown_channel_is_not_found(sb: SandboxServer) -> None:
    async with (client := teams(sb)):
        with pytest.raises(NotFoundError):
            await client.send_channel_message(
                SendChannelMessageParams(team_id=TEAM, channel_id="19:nope@thread.tacv2",
                                         content="x")
            )
        with pytest.raises(BadRequestError):
            await client.request(
                "POST", f"/teams/{TEAM}/channels/{OPS}/messages", action="raw",
                json={"body": {"contentType": "markdown", "content": "x"}},
            )
    assert messages(sb) == {}


async def test_bad_client_secret_is_authentication_error(sb: SandboxServer) -> None:
    bad = Credentials(client_id="sandbox-client", client_secret=SecretStr("wrong-secret"))
    async with (client := teams(sb, credentials=bad)):
        with pytest.raises(AuthenticationError):
            await client.send_channel_message(
                SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="x")
            )
    assert messages(sb) == {}


async def test_not_reposted_after_lost_response(sb: SandboxServer) -> None:
    sb.faults.set("teams", lost_after_commit=1.0)
    async with (client := teams(sb)):
        with pytest.raises(ServerError):
            await client.send_channel_message(
                SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="once")
            )
    assert len(messages(sb)) == 1
