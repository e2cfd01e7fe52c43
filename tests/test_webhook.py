"""Generic webhook client against the sandbox receiver: JSON delivery, HMAC signature,
one Idempotency-Key across retries (duplicates visible), health on a plain-text body."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from integrations.errors import APIStatusError, BadRequestError, ServerError
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.webhook import SendWebhookParams, WebhookClient, sign, verify
from tests.helpers import ClientFactory, collection, mock_client, sandbox_settings

SECRET = "whsec-sandbox-0123456789"


def webhook(make_client: ClientFactory, token: str | None = None) -> WebhookClient:
    # As JUNCTION_WEBHOOK_TOKEN would set it.
    secret = SecretStr(token) if token else None
    config = sandbox_settings(make_client.sb).integration("webhook", token=secret)
    return make_client(WebhookClient, config=config)


def test_send_is_idempotent_by_key() -> None:
    spec = get_action("webhook", "send")
    assert spec.idempotent and not spec.read_only


def test_signature_helpers() -> None:
    # RFC 4231-style known vector (the HMAC-SHA256 example from Wikipedia).
    fox = b"The quick brown fox jumps over the lazy dog"
    assert sign("key", fox) == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )
    body = b'{"a":1}'
    assert verify("k", body, sign("k", body))
    assert not verify("k", body + b" ", sign("k", body))
    assert not verify("other", body, sign("k", body)) and not verify("k", body, None)


async def test_send_signed_delivery(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := webhook(make_client, token=SECRET)):
        sent = await client.send(
            SendWebhookParams(
                payload={"event": "deploy", "ok": True},
                path="/hooks/deploy",
                idempotency_key="run-1:notify",
            )
        )
    assert (sent.status_code, sent.signed, sent.response) == (
        200,
        True,
        {"received": True, "duplicate": False},
    )
    stored = collection(sb, "webhook", "deliveries")["run-1:notify"]
    assert stored["path"] == "/webhook/hooks/deploy"
    assert json.loads(stored["body"]) == {"event": "deploy", "ok": True}
    assert stored["content_type"] == "application/json"
    assert verify(SECRET, stored["body"].encode(), stored["signature"])
    assert not verify("another-secret", stored["body"].encode(), stored["signature"])


async def test_secret_from_junction_webhook_token(
    sb: SandboxServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUNCTION_WEBHOOK_TOKEN", SECRET)
    async with (client := make_client(WebhookClient)):
        sent = await client.send(SendWebhookParams(payload={"env": True}))
    stored = collection(sb, "webhook", "deliveries")[sent.idempotency_key]
    assert sent.signed and verify(SECRET, stored["body"].encode(), stored["signature"])


async def test_unsigned_without_token_and_key_always_sent(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := webhook(make_client)):
        sent = await client.send(SendWebhookParams(payload=[1, 2, 3]))
    assert not sent.signed and len(sent.idempotency_key) == 32
    stored = collection(sb, "webhook", "deliveries")[sent.idempotency_key]
    assert stored["signature"] is None and stored["path"] == "/webhook/"


async def test_retries_reuse_the_idempotency_key(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("webhook", lost_after_commit=1.0)
    async with (client := webhook(make_client, token=SECRET)):
        with pytest.raises(ServerError):
            await client.send(SendWebhookParams(payload={"n": 1}, idempotency_key="k-lost"))
    deliveries = collection(sb, "webhook", "deliveries")
    assert list(deliveries) == ["k-lost"] and deliveries["k-lost"]["attempts"] == 3
    duplicates = collection(sb, "webhook", "duplicates")
    assert sorted(duplicates) == ["k-lost#2", "k-lost#3"]
    # Every attempt carried the same body and signature.
    assert {d["signature"] for d in duplicates.values()} == {deliveries["k-lost"]["signature"]}


async def test_resend_with_same_key_is_seen_as_duplicate(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := webhook(make_client)):
        params = SendWebhookParams(payload={"x": 1}, idempotency_key="same")
        first = await client.send(params)
        second = await client.send(params)
    assert first.response["duplicate"] is False and second.response["duplicate"] is True
    assert len(collection(sb, "webhook", "deliveries")) == 1
    assert len(collection(sb, "webhook", "duplicates")) == 1


async def test_health_accepts_plain_text(make_client: ClientFactory) -> None:
    async with (client := webhook(make_client)):
        health = await client.health_check()
    assert health.ok and health.status == 200


async def test_receiver_errors_are_typed() -> None:
    answers = {
        "/bad": httpx.Response(400, json={"error": "nope"}),
        "/moved": httpx.Response(301, headers={"Location": "/x"}),
        "/health": httpx.Response(302, headers={"Location": "/login"}),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return answers[request.url.path]

    client = mock_client(WebhookClient, handler, base_url="https://hooks.example")
    with pytest.raises(BadRequestError):
        await client.send(SendWebhookParams(payload={}, path="/bad"))
    with pytest.raises(APIStatusError) as err:
        await client.send(SendWebhookParams(payload={}, path="/moved"))
    assert err.value.status_code == 301
    health = await client.health_check()
    assert not health.ok and health.status == 302
