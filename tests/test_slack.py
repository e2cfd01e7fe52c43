"""Slack client: every action against the sandbox, Slack's HTTP-200 errors mapped to the
typed hierarchy (inside the engine's attempt: retries and metrics see them), no retry of
chat.postMessage once it may have been processed."""

from __future__ import annotations

from typing import Any

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
from integrations.slack import LookupUserParams, PostMessageParams, SlackClient
from tests.helpers import ClientFactory, mock_client, state


def test_actions_are_registered_with_their_safety() -> None:
    post = get_action("slack", "post_message")
    assert (post.input, post.read_only, post.idempotent) == (PostMessageParams, False, False)
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
    assert sent.ok and sent.channel == "C0000000002"
    messages = state(sb, "slack")["messages"]
    assert list(messages) == [f"C0000000002:{sent.ts}"]
    stored = messages[f"C0000000002:{sent.ts}"]
    assert stored["text"] == "deploy done" and stored["blocks"] == blocks


async def test_post_message_unknown_channel_is_not_found_and_recorded(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    with collecting() as metrics:
        async with (client := make_client(SlackClient)):
            with pytest.raises(NotFoundError) as err:
                await client.post_message(PostMessageParams(channel="#nope", text="x"))
    assert "channel_not_found" in str(err.value) and err.value.status_code == 404
    (metric,) = [m for m in metrics if m.service == "slack"]
    assert (metric.ok, metric.error_class, metric.attempts) == (False, "NotFoundError", 1)
    assert state(sb, "slack")["messages"] == {}


def test_post_message_needs_text_or_blocks() -> None:
    with pytest.raises(ValidationError):
        PostMessageParams(channel="C1")


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


async def test_post_message_not_retried_after_a_lost_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("slack", lost_after_commit=1.0)
    async with (client := make_client(SlackClient)):
        with pytest.raises(ServerError) as err:
            await client.post_message(PostMessageParams(channel="#alerts", text="once"))
    assert err.value.status_code == 504
    assert len(state(sb, "slack")["messages"]) == 1  # committed once, never re-posted


async def test_http_429_is_retried_even_for_post_message(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    # A one-token bucket: the health check takes it, the post meets HTTP 429 with
    # Retry-After: 1 (nothing processed), waits and succeeds.
    sb.faults.set("slack", rate_limit={"requests_per_second": 10, "burst": 1})
    with collecting() as metrics:
        async with (client := make_client(SlackClient)):
            assert (await client.health_check()).ok
            sent = await client.post_message(PostMessageParams(channel="#ops", text="after 429"))
    assert sent.ts and len(state(sb, "slack")["messages"]) == 1
    post = next(m for m in metrics if m.action == "post_message")
    assert (post.ok, post.attempts) == (True, 2)


# --- Slack's HTTP-200 error codes, on a MockTransport -------------------------------------


def mocked(
    answers: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> tuple[SlackClient, list[httpx.Request]]:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
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


OK_POST = {"ok": True, "channel": "C1", "ts": "1.000001", "message": {"text": "x"}}


async def test_ratelimited_body_is_retried_even_for_post_message() -> None:
    client, calls = mocked(
        [{"ok": False, "error": "ratelimited"}, OK_POST], headers={"Retry-After": "0"}
    )
    with collecting() as metrics:
        sent = await client.post_message(PostMessageParams(channel="C1", text="x"))
    assert sent.ts == "1.000001" and len(calls) == 2
    assert calls[0].headers["Authorization"] == "Bearer xoxb-test-token"
    assert calls[0].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert calls[0].content == b"channel=C1&text=x"
    metric = next(m for m in metrics if m.action == "post_message")
    assert (metric.ok, metric.attempts) == (True, 2)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("not_authed", AuthenticationError),
        ("missing_scope", PermissionDeniedError),
        ("msg_too_long", BadRequestError),
        ("some_new_code", BadRequestError),
    ],
)
async def test_error_codes_map_to_typed_errors(code: str, error: type[Exception]) -> None:
    client, calls = mocked([{"ok": False, "error": code}])
    with pytest.raises(error) as err:
        await client.post_message(PostMessageParams(channel="C1", text="x"))
    assert code in str(err.value) and type(err.value) is error
    assert len(calls) == 1


async def test_fatal_error_is_server_error_not_retried_for_a_post() -> None:
    client, calls = mocked([{"ok": False, "error": "fatal_error"}, OK_POST])
    with pytest.raises(ServerError):
        await client.post_message(PostMessageParams(channel="C1", text="x"))
    assert len(calls) == 1  # may have posted: not repeated
    client2, calls2 = mocked(
        [{"ok": False, "error": "fatal_error"}, {"ok": True, "user": {"id": "U1"}}]
    )
    user = await client2.lookup_user_by_email(LookupUserParams(email="a@b.co"))
    assert user.id == "U1" and len(calls2) == 2  # a read is retried
