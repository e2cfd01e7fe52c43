"""Microsoft Teams (Graph) client against the sandbox: OAuth2 client credentials through
the shared engine, the channel message landing in state, Graph's errors typed, and one
message per idempotency key (a hidden marker in the body, the channel's messages
searched before posting and after an ambiguous failure)."""

from __future__ import annotations

import pytest

from integrations.errors import AuthenticationError, BadRequestError, NotFoundError
from integrations.metrics import collecting
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.teams import (
    SendChannelMessageParams,
    TeamsClient,
    marker,
    marker_keys,
)
from tests.helpers import ClientFactory, collection

TEAM = "7a1f3c2e-0000-4000-8000-000000000001"
OPS = "19:ops000000000000000000000000000@thread.tacv2"
ALERTS = "19:alerts0000000000000000000000000@thread.tacv2"


def test_action_is_registered_idempotent_with_its_key_field() -> None:
    spec = get_action("teams", "send_channel_message")
    assert spec.input is SendChannelMessageParams
    assert (spec.read_only, spec.idempotent, spec.key_field) == (False, True, "idempotency_key")


def test_the_marker_is_found_however_the_server_rewrites_its_attributes() -> None:
    key = 'run-1:"notify"<&>'
    assert marker_keys("<p>hi</p>" + marker(key)) == {key}
    rewritten = (
        '<div><span itemid="k-2" hidden="" itemprop="junction-idempotency-key"></span></div>'
    )
    assert marker_keys(rewritten) == {"k-2"}
    assert marker_keys('<span itemprop="other" itemid="k-3"></span>') == set()


async def test_send_channel_message_html(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(TeamsClient)):
        sent = await client.send_channel_message(
            SendChannelMessageParams(
                team_id=TEAM, channel_id=OPS, content="<b>deploy</b> done", subject="Deploy"
            )
        )
    assert sent.body.content_type == "html" and not sent.existing
    assert sent.body.content.startswith("<b>deploy</b> done<span hidden")
    assert len(marker_keys(sent.body.content)) == 1
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
                team_id=TEAM, channel_id=OPS, content="a <b> tag\nnext line", content_type="text"
            )
        )
    body = collection(sb, "teams", "messages")[sent.id]["body"]
    assert body["contentType"] == "html"  # text goes as escaped HTML, to carry the marker
    assert body["content"].startswith("a &lt;b&gt; tag<br>next line<span hidden")


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


@pytest.mark.parametrize("mode", ["504", "reset"])
async def test_a_lost_response_is_found_not_reposted(
    sb: SandboxServer, make_client: ClientFactory, mode: str
) -> None:
    sb.faults.set("teams", lost_after_commit=1.0, lost_mode=mode)
    with collecting() as metrics:
        async with (client := make_client(TeamsClient)):
            sent = await client.send_channel_message(
                SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="once")
            )
    assert sent.existing and len(collection(sb, "teams", "messages")) == 1
    assert [m.action for m in metrics if m.action.startswith("send")] == [
        "send_channel_message.lookup",
        "send_channel_message",
        "send_channel_message.lookup",
    ]


async def test_a_rerun_by_a_fresh_client_finds_the_first_message(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="deploy done")
    async with (client := make_client(TeamsClient)):
        first = await client.send_channel_message(params)
    async with (client := make_client(TeamsClient)):
        rerun = await client.send_channel_message(params)
        elsewhere = await client.send_channel_message(
            params.model_copy(update={"channel_id": ALERTS})
        )
        other = await client.send_channel_message(
            params.model_copy(update={"content": "rolled back"})
        )
    assert (rerun.id, rerun.existing, first.existing) == (first.id, True, False)
    assert not elsewhere.existing and not other.existing
    assert len(collection(sb, "teams", "messages")) == 3


async def test_the_callers_key_decides_and_window_zero_always_posts(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(TeamsClient)):
        first = await client.send_channel_message(
            SendChannelMessageParams(
                team_id=TEAM, channel_id=OPS, content="run 7 done", idempotency_key="run-7"
            )
        )
        again = await client.send_channel_message(
            SendChannelMessageParams(
                team_id=TEAM, channel_id=OPS, content="run 7 done!", idempotency_key="run-7"
            )
        )
        tick = SendChannelMessageParams(
            team_id=TEAM, channel_id=OPS, content="tick", dedupe_window_seconds=0
        )
        await client.send_channel_message(tick)
        await client.send_channel_message(tick)
    assert (again.id, again.existing) == (first.id, True)
    assert len(collection(sb, "teams", "messages")) == 3


async def test_the_lookup_follows_next_links_past_newer_messages(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content="first")
    async with (client := make_client(TeamsClient)):
        first = await client.send_channel_message(params)
        for i in range(55):  # 55 newer messages: the first is on the second page of 50
            await client.send_channel_message(
                SendChannelMessageParams(
                    team_id=TEAM, channel_id=OPS, content=f"n{i}", dedupe_window_seconds=0
                )
            )
        with collecting() as metrics:
            rerun = await client.send_channel_message(params)
    assert (rerun.id, rerun.existing) == (first.id, True)
    assert [m.action for m in metrics] == ["send_channel_message.lookup"] * 2
    assert len(collection(sb, "teams", "messages")) == 56


async def test_the_list_route_speaks_graph(sb: SandboxServer, make_client: ClientFactory) -> None:
    path = f"/teams/{TEAM}/channels/{OPS}/messages"
    async with (client := make_client(TeamsClient)):
        for text in ("a", "b", "c"):
            await client.send_channel_message(
                SendChannelMessageParams(team_id=TEAM, channel_id=OPS, content=text)
            )
        page = await client.request("GET", path, action="raw", params={"$top": 2})
        rest = await client.request("GET", page["@odata.nextLink"], action="raw")
        with pytest.raises(BadRequestError):
            await client.request("GET", path, action="raw", params={"$top": 51})
        with pytest.raises(BadRequestError):
            await client.request("GET", path, action="raw", params={"$filter": "x"})
        with pytest.raises(NotFoundError):
            await client.request("GET", f"/teams/{TEAM}/channels/19:nope/messages", action="raw")
    listed = [m["body"]["content"][0] for m in page["value"] + rest["value"]]
    assert listed == ["c", "b", "a"]  # newest first
    assert "@odata.nextLink" not in rest
