"""Slack client: every action against the sandbox, Slack's HTTP-200 errors mapped to the
typed hierarchy (inside the engine's attempt: retries and metrics see them), and
chat.postMessage once per idempotency key (the key in the message metadata, the
history searched before posting and after an ambiguous failure)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
)
from integrations.metrics import collecting
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.slack import (
    METADATA_EVENT,
    LookupUserParams,
    PostMessageParams,
    SlackClient,
)
from tests.helpers import ClientFactory, mock_client, route_requests, state

OPS = "C0000000002"


def test_actions_are_registered_with_their_safety() -> None:
    post = get_action("slack", "post_message")
    assert (post.input, post.read_only, post.idempotent) == (PostMessageParams, False, True)
    assert post.key_field == "idempotency_key"
    lookup = get_action("slack", "lookup_user_by_email")
    assert lookup.read_only and lookup.idempotent


async def test_post_message_lands_in_the_channel(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* done"}}]
    async with (client := make_client(SlackClient)):
        sent = await client.post_message(
            PostMessageParams(channel="#ops", text="deploy done", blocks=blocks)
        )
    assert sent.ok and sent.channel == OPS and not sent.existing
    messages = state(sb, "slack")["messages"]
    assert list(messages) == [f"{OPS}:{sent.ts}"]
    stored = messages[f"{OPS}:{sent.ts}"]
    assert stored["text"] == "deploy done" and stored["blocks"] == blocks
    assert stored["metadata"]["event_type"] == METADATA_EVENT
    assert stored["metadata"]["event_payload"]["idempotency_key"]


async def test_post_message_unknown_channel_is_not_found_and_recorded(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    with collecting() as metrics:
        async with (client := make_client(SlackClient)):
            with pytest.raises(NotFoundError) as err:
                await client.post_message(PostMessageParams(channel="#nope", text="x"))
            # A name not listed is remembered: no second conversations.list.
            with pytest.raises(NotFoundError):
                await client.post_message(PostMessageParams(channel="#nope", text="y"))
    assert "channel_not_found" in str(err.value) and err.value.status_code == 404
    # The name is looked for among the channels (none has it), then posted once.
    assert [m.action for m in metrics if m.service == "slack"] == [
        "post_message.channel",
        "post_message",
        "post_message",
    ]
    metric = next(m for m in metrics if m.action == "post_message")
    assert (metric.ok, metric.error_class, metric.attempts) == (False, "NotFoundError", 1)
    assert state(sb, "slack")["messages"] == {}


def test_post_message_needs_text_or_blocks() -> None:
    with pytest.raises(ValidationError):
        PostMessageParams(channel="C0123ABCD")


async def test_lookup_user_by_email(make_client: ClientFactory) -> None:
    async with (client := make_client(SlackClient)):
        user = await client.lookup_user_by_email(LookupUserParams(email="Grace.Hopper@example.com"))
        assert (user.id, user.real_name) == ("U0000000002", "Grace Hopper")
        assert user.profile.email == "grace.hopper@example.com"
        with pytest.raises(NotFoundError, match="users_not_found"):
            await client.lookup_user_by_email(LookupUserParams(email="nobody@example.com"))


async def test_bad_token_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(SlackClient, wrong_secret="xoxb-wrong-token-123")):
        with pytest.raises(AuthenticationError) as err:
            await client.post_message(PostMessageParams(channel="#ops", text="x"))
        health = await client.health_check()
    assert err.value.status_code == 401 and "invalid_auth" in str(err.value)
    assert "wrong-token" not in str(err.value)
    assert (health.ok, health.error_class) == (False, "AuthenticationError")
    assert not state(sb, "slack").get("messages")


# --- once per idempotency key --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["504", "reset"])
async def test_a_lost_response_is_found_not_reposted(
    sb: SandboxServer, make_client: ClientFactory, mode: str
) -> None:
    sb.faults.set("slack", lost_after_commit=1.0, lost_mode=mode)
    with collecting() as metrics:
        async with (client := make_client(SlackClient)):
            sent = await client.post_message(PostMessageParams(channel="#alerts", text="once"))
    assert sent.existing and sent.channel == "C0000000003"
    assert len(state(sb, "slack")["messages"]) == 1  # committed once, found, not re-posted
    assert [m.action for m in metrics] == [
        "post_message.channel",
        "post_message.lookup",
        "post_message",
        "post_message.lookup",
    ]


async def test_a_rerun_by_a_fresh_client_finds_the_first_message(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = PostMessageParams(channel="#ops", text="deploy done")
    async with (client := make_client(SlackClient)):
        first = await client.post_message(params)
    async with (client := make_client(SlackClient)):
        rerun = await client.post_message(params)
        other = await client.post_message(PostMessageParams(channel="#ops", text="rolled back"))
    assert (rerun.ts, rerun.existing, first.existing) == (first.ts, True, False)
    assert rerun.message is not None and rerun.message.text == "deploy done"
    assert not other.existing and other.ts != first.ts
    assert len(state(sb, "slack")["messages"]) == 2
    # One conversations.list per client: the channel id is cached.
    assert route_requests(sb, "slack", "GET /conversations.list") == 2


async def test_the_callers_key_decides_what_is_the_same_message(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(SlackClient)):
        first = await client.post_message(
            PostMessageParams(channel=OPS, text="run 7 done", idempotency_key="run-7:notify")
        )
        # The same step of the same run, its text rendered differently: still one message.
        again = await client.post_message(
            PostMessageParams(channel=OPS, text="run 7 done!", idempotency_key="run-7:notify")
        )
        other_run = await client.post_message(
            PostMessageParams(channel=OPS, text="run 7 done", idempotency_key="run-8:notify")
        )
    assert (again.ts, again.existing) == (first.ts, True)
    assert not other_run.existing
    assert len(state(sb, "slack")["messages"]) == 2
    # A channel id needs no conversations.list.
    assert route_requests(sb, "slack", "GET /conversations.list") == 0


async def test_window_zero_always_posts_but_a_retry_still_finds_its_message(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = PostMessageParams(channel=OPS, text="tick", dedupe_window_seconds=0)
    async with (client := make_client(SlackClient)):
        await client.post_message(params)
        await client.post_message(params)
        assert route_requests(sb, "slack", "GET /conversations.history") == 0  # no lookup
        sb.faults.set("slack", lost_after_commit=1.0)
        lost = await client.post_message(params)
    assert lost.existing
    assert len(state(sb, "slack")["messages"]) == 3


async def test_a_thread_reply_is_looked_up_in_its_thread(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(SlackClient)):
        parent = await client.post_message(PostMessageParams(channel=OPS, text="incident"))
        reply = PostMessageParams(channel=OPS, text="mitigated", thread_ts=parent.ts)
        first = await client.post_message(reply)
        sb.faults.set("slack", lost_after_commit=1.0)
        again = await client.post_message(reply)
    assert (again.ts, again.existing) == (first.ts, True)
    assert len(state(sb, "slack")["messages"]) == 2
    assert route_requests(sb, "slack", "GET /conversations.replies") >= 2


async def test_http_429_on_the_post_is_retried_after_a_lookup(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    # A two-token bucket: the health check and the lookup take them, the post meets HTTP
    # 429 (nothing processed); after Retry-After the lookup runs again, then the post.
    sb.faults.set("slack", rate_limit={"requests_per_second": 2, "burst": 2})
    with collecting() as metrics:
        async with (client := make_client(SlackClient)):
            assert (await client.health_check()).ok
            sent = await client.post_message(PostMessageParams(channel=OPS, text="after 429"))
    assert sent.ts and not sent.existing and len(state(sb, "slack")["messages"]) == 1
    assert [(m.action, m.status) for m in metrics if m.action != "health_check"] == [
        ("post_message.lookup", 200),
        ("post_message", 429),
        ("post_message.lookup", 200),
        ("post_message", 200),
    ]


async def test_history_list_and_replies_page_like_slack(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(SlackClient)):
        sent = [
            await client.post_message(PostMessageParams(channel=OPS, text=f"m{i}"))
            for i in range(3)
        ]
        first = await client.request(
            "GET", "/conversations.history", action="raw", params={"channel": OPS, "limit": 2}
        )
        second = await client.request(
            "GET",
            "/conversations.history",
            action="raw",
            params={
                "channel": OPS,
                "limit": 2,
                "cursor": first["response_metadata"]["next_cursor"],
                "include_all_metadata": "true",
            },
        )
        channels = await client.request(
            "GET", "/conversations.list", action="raw", params={"limit": 2}
        )
        with pytest.raises(BadRequestError, match="invalid_cursor"):
            await client.request(
                "GET",
                "/conversations.history",
                action="raw",
                params={"channel": OPS, "cursor": "x"},
            )
        with pytest.raises(NotFoundError, match="channel_not_found"):  # names are not ids
            await client.request(
                "GET", "/conversations.history", action="raw", params={"channel": "ops"}
            )
    newest_first = [m["ts"] for m in first["messages"] + second["messages"]]
    assert newest_first == [m.ts for m in reversed(sent)]
    assert first["has_more"] and not second["has_more"]
    assert "metadata" not in first["messages"][0]  # only with include_all_metadata
    assert second["messages"][0]["metadata"]["event_type"] == METADATA_EVENT
    assert second["response_metadata"]["next_cursor"] == ""
    assert [c["name"] for c in channels["channels"]] == ["general", "ops"]
    assert channels["response_metadata"]["next_cursor"]


# --- Slack's HTTP-200 error codes, on a MockTransport -------------------------------------


EMPTY_HISTORY = {"ok": True, "messages": [], "has_more": False}


def mocked(
    answers: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> tuple[SlackClient, list[httpx.Request]]:
    """A client whose Slack answers each ``chat.postMessage`` with the next of ``answers``
    and each history read with the next of ``history`` (the last repeats; default:
    empty). Returns the client and the posts it sent."""
    calls: list[httpx.Request] = []
    reads: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/conversations.history"):
            reads.append(request)
            pages = history or [EMPTY_HISTORY]
            return httpx.Response(200, json=pages[min(len(reads), len(pages)) - 1])
        calls.append(request)
        body = answers[min(len(calls), len(answers)) - 1]
        return httpx.Response(200, json=body, headers=headers or {})

    client = mock_client(
        SlackClient,
        handler,
        base_url="https://slack.example/api",
        credentials=Credentials(token=SecretStr("xoxb-test-token")),
    )
    return client, calls


OK_POST = {"ok": True, "channel": "C0123ABCD", "ts": "1.000001", "message": {"text": "x"}}


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


async def test_ratelimited_body_is_retried_even_for_post_message() -> None:
    client, calls = mocked(
        [{"ok": False, "error": "ratelimited"}, OK_POST], headers={"Retry-After": "0"}
    )
    with collecting() as metrics:
        sent = await client.post_message(PostMessageParams(channel="C0123ABCD", text="x"))
    assert sent.ts == "1.000001" and len(calls) == 2
    assert calls[0].headers["Authorization"] == "Bearer xoxb-test-token"
    assert calls[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    sent_form = form(calls[0])
    assert (sent_form["channel"], sent_form["text"]) == ("C0123ABCD", "x")
    metadata = json.loads(sent_form["metadata"])
    assert metadata["event_type"] == METADATA_EVENT
    assert form(calls[1])["metadata"] == sent_form["metadata"]  # the same key both times
    actions = [(m.action, m.ok) for m in metrics]
    assert actions == [
        ("post_message.lookup", True),
        ("post_message", False),
        ("post_message.lookup", True),
        ("post_message", True),
    ]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("not_authed", AuthenticationError),
        ("missing_scope", PermissionDeniedError),
        ("not_in_channel", PermissionDeniedError),
        ("msg_too_long", BadRequestError),
        ("some_new_code", BadRequestError),
    ],
)
async def test_error_codes_map_to_typed_errors(code: str, error: type[Exception]) -> None:
    client, calls = mocked([{"ok": False, "error": code}])
    with pytest.raises(error) as err:
        await client.post_message(PostMessageParams(channel="C0123ABCD", text="x"))
    assert code in str(err.value) and type(err.value) is error
    assert len(calls) == 1


async def test_a_server_error_is_reposted_only_when_the_lookup_finds_nothing() -> None:
    client, calls = mocked([{"ok": False, "error": "fatal_error"}, OK_POST])
    sent = await client.post_message(PostMessageParams(channel="C0123ABCD", text="x"))
    assert sent.ts == "1.000001" and not sent.existing and len(calls) == 2
    # Committed despite the error: the lookup after it finds the message.
    key = PostMessageParams(channel="C0123ABCD", text="x").scope().key
    found = {
        "ts": "9.000001",
        "text": "x",
        "metadata": {"event_type": METADATA_EVENT, "event_payload": {"idempotency_key": key}},
    }
    client2, calls2 = mocked(
        [{"ok": False, "error": "fatal_error"}, OK_POST],
        history=[EMPTY_HISTORY, {"ok": True, "messages": [found], "has_more": False}],
    )
    again = await client2.post_message(PostMessageParams(channel="C0123ABCD", text="x"))
    assert (again.ts, again.existing, len(calls2)) == ("9.000001", True, 1)
    reader, _ = mocked([{"ok": True, "user": {"id": "U1"}}])
    user = await reader.lookup_user_by_email(LookupUserParams(email="a@b.co"))
    assert user.id == "U1"


async def test_the_lookup_follows_the_history_cursor() -> None:
    key = "run-1:notify"
    mine = {
        "ts": "5.000001",
        "metadata": {"event_type": METADATA_EVENT, "event_payload": {"idempotency_key": key}},
    }
    others = [{"ts": f"6.00000{i}", "text": "other"} for i in range(3)]
    client, calls = mocked(
        [OK_POST],
        history=[
            {
                "ok": True,
                "messages": others,
                "has_more": True,
                "response_metadata": {"next_cursor": "bmV4dF90czo1"},
            },
            {"ok": True, "messages": [mine], "has_more": False},
        ],
    )
    with collecting() as metrics:
        found = await client.post_message(
            PostMessageParams(channel="C0123ABCD", text="x", idempotency_key=key)
        )
    assert (found.ts, found.existing, len(calls)) == ("5.000001", True, 0)
    lookups = [m for m in metrics if m.action == "post_message.lookup"]
    assert len(lookups) == 2


async def test_a_dm_by_user_id_is_posted_once_and_a_lost_answer_raised() -> None:
    client, calls = mocked([{"ok": False, "error": "service_unavailable"}, OK_POST])
    with pytest.raises(ServerError):
        await client.post_message(PostMessageParams(channel="U0123ABCD", text="x"))
    assert len(calls) == 1  # no history to read back: never re-posted blind


async def test_without_history_scope_the_message_is_posted_once() -> None:
    client, calls = mocked(
        [OK_POST], history=[{"ok": False, "error": "missing_scope", "needed": "channels:history"}]
    )
    sent = await client.post_message(PostMessageParams(channel="C0123ABCD", text="x"))
    assert sent.ts == "1.000001" and len(calls) == 1
