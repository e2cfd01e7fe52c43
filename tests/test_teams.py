"""Microsoft Teams (Graph) client against the sandbox: OAuth2 client credentials through
the shared engine, the channel message landing in state, Graph's errors typed, and no
re-post after a lost response."""

from __future__ import annotations

import pytest

from integrations.errors import AuthenticationError, BadRequestError, NotFoundError, ServerError
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.teams import SendChannelMessageParams, TeamsClient
from tests.helpers import ClientFactory, collection

TEAM = "7a1f3c2e-0000-4000-8000-000000000001"
OPS = "19:ops000000000000000000000000000@thread.tacv2"


def test_action_is_registered_not_idempotent() -> None:
    spec = get_action("teams", "send_channel_message")
    assert spec.input is SendChannelMessageParams
    assert (spec.read_only, spec.idempotent) == (False, False)


async def test_send_channel_message_html(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(TeamsClient)):
        sent = await client.send_channel_message(
            SendChannelMessageParams(
                team_id=TEAM, channel_id=OPS, content="<b>deploy</b> done", subject="Deploy"
            )
        )
    assert sent.body.content_type == "html" and sent.body.content == "<b>deploy</b> done"
    stored = collection(sb, "teams", "messages")
    assert list(stored) == [sent.id]
    assert stored[sent.id]["channelIdentity"] == {"teamId": TEAM, "channelId": OPS}
    assert stored[sent.id]["subject"] == "Deploy"
    # The token came from the sandbox's OAuth2 endpoint, once.
    assert sb.request_log.count("teams", "POST /oauth2/token") == 1


async def test_send_text_message(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(TeamsClient)):
        sent = await client.send_channel_message(
            SendChannelMessageParams(
                team_id=TEAM, channel_id=OPS, content="plain", content_type="text"
            )
        )
    assert collection(sb, "teams", "messages")[sent.id]["body"] == {
        "contentType": "text",
        "content": "plain",
    }


async def test_unknown_channel_is_not_found(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(TeamsClient)):
        with pytest.raises(NotFoundError):
            await client.send_channel_message(
                SendChannelMessageParams(
                    team_id=TEAM, channel_id="19:nope@thread.tacv2", content="x"
                )
            )
        with pytest.raises(BadRequestError):
            await client.request(
                "POST",
                f"/teams/{TEAM}/channels/{OPS}/messages",
                action="raw",
                json={"body": {"contentType": "markdown", "content": "x"}},
            )
    assert collection(sb, "teams", "messages") == {}


async def test_bad_client_secret_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(TeamsClient, wrong_secret="wrong-secret")):
        with pytest.raises(AuthenticationError):
            await client.send_channel_message(
                SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="x")
            )
    assert collection(sb, "teams", "messages") == {}


async def test_not_reposted_after_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("teams", lost_after_commit=1.0)
    async with (client := make_client(TeamsClient)):
        with pytest.raises(ServerError):
            await client.send_channel_message(
                SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="once")
            )
    assert len(collection(sb, "teams", "messages")) == 1
