"""Contract: every Slack action, sent to Prism serving Slack's Web API spec (the 2020
``slack_web_openapi_v2.json``), is accepted; a request that breaks the spec is rejected.

The 2020 spec makes Prism enforce a ``token`` header (and a ``token`` query parameter on
users.lookupByEmail) besides the Bearer header real Slack uses; that is added here, by a
shared ``httpx.AsyncClient``'s defaults, never by the client. Prism serves Swagger 2.0
without its basePath, so the base URL is Prism's root (real Slack: ``.../api``).

Spec gap: the 2020 spec has no ``conversations.history`` or ``conversations.replies``
(and no ``metadata`` argument on chat.postMessage, which Prism lets through as an extra
form field), the reads ``post_message`` searches for its idempotency key before posting
to a channel id. The action is therefore sent to a channel *name* the spec's
``conversations.list`` example does not hold (posted once, no history read), and the
create body with its metadata is sent on its own; the history lookup is exercised
against the sandbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from integrations.auth import Credentials
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import UnprocessableEntityError
from integrations.slack import (
    LookupUserParams,
    PostMessageParams,
    PostMessageResult,
    SlackClient,
)
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


@pytest.fixture
async def slack(prism_servers: dict[str, str]) -> AsyncIterator[SlackClient]:
    async with httpx.AsyncClient(headers={"token": "xoxb-x"}, params={"token": "xoxb-x"}) as http:
        client = get_client(
            "slack",
            base_url=prism_servers["slack"],
            credentials=Credentials(token=SecretStr("xoxb-x")),
            http=http,
            retry=ONCE,
            breaker=CircuitBreaker("slack", failure_threshold=1000),
        )
        assert isinstance(client, SlackClient)
        yield client


async def test_post_message_accepted(slack: SlackClient) -> None:
    params = PostMessageParams(
        channel="C0123ABCDE",
        text="deploy done",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* done"}}],
        unfurl_links=False,
        idempotency_key="run-1:notify",
    )
    # The create the action sends, metadata included.
    sent = await slack.request(
        "POST",
        "/chat.postMessage",
        action="post_message",
        model=PostMessageResult,
        data=params.form(params.scope().key),
    )
    # The action: conversations.list (the name is not among the example's channels),
    # then one post.
    named = await slack.post_message(params.model_copy(update={"channel": "#junction-ci"}))
    assert sent.ok and sent.channel and sent.ts
    assert named.ok and named.ts and not named.existing


async def test_lookup_user_by_email_accepted(slack: SlackClient) -> None:
    user = await slack.lookup_user_by_email(LookupUserParams(email="spengler@example.com"))
    assert user.id and user.profile.email


async def test_health_check_accepted(slack: SlackClient) -> None:
    health = await slack.health_check()
    assert health.ok, health.error


async def test_malformed_request_rejected(slack: SlackClient) -> None:
    """chat.postMessage without the required ``channel``: Prism answers 422."""
    with pytest.raises(UnprocessableEntityError):
        await slack.request("POST", "/chat.postMessage", action="raw", data={"text": "x"})
