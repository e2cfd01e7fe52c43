"""Generic webhook client against the sandbox receiver: JSON delivery, HMAC signature,
one Idempotency-Key across retries (duplicates visible), health on a plain-text body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import APIStatusError, BadRequestError, ServerError
from integrations.registry import get_action, get_client
from integrations.sandbox.app import SandboxServer
from integrations.webhook import SendWebhookParams, WebhookClient, sign, verify
from junction.settings import Settings

FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0)
SECRET = "whsec-sandbox-0123456789"


@pytest.fixture(scope="module")
def sb() -> Iterator[SandboxServer]:
    with SandboxServer(smtp_port=None) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(sb: SandboxServer) -> None:
    sb.reset()


def webhook(sb: SandboxServer, token: str | None = None, **kwargs: Any) -> WebhookClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("breaker", CircuitBreaker("webhook", failure_threshold=1000))
    settings = Settings(sandbox_url=sb.url)
    # As JUNCTION_WEBHOOK_TOKEN would set it.
    config = settings.integration("webhook", token=SecretStr(token) if token else None)
    client = get_client("webhook", settings=settings, config=config, **kwargs)
    assert isinstance(client, WebhookClient)
    return client


def collection(sb: SandboxServer, name: str) -> dict[str, Any]:
    answer = httpx.get(f"{sb.url}/_admin/state/webhook", timeout=10).json()
    found: dict[str, Any] = answer["collections"].get(name, {})
    return found


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


async def test_send_signed_delivery(sb: SandboxServer) -> None:
    async with (client := webhook(sb, token=SECRET)):
        sent = await client.send(
            SendWebhookParams(payload={"event": "deploy", "ok": True}, path="/hooks/deploy",
                              idempotency_key="run-1:notify")
        )
    assert (sent.status_code, sent.signed, sent.response) == (
        200, True, {"received": True, "duplicate": False})
    stored = collection(sb, "deliveries")["run-1:notify"]
    assert stored["path"] == "/webhook/hooks/deploy"
    assert json.loads(stored["body"]) == {"event": "deploy", "ok": True}
    assert stored["content_type"] == "application/json"
    assert verify(SECRET, stored["body"].encode(), stored["signature"])
    assert not verify("another-secret", stored["body"].encode(), stored["signature"])


async def test_secret_from_junction_webhook_token(
    sb: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUNCTION_WEBHOOK_TOKEN", SECRET)
    client = get_client("webhook", settings=Settings(sandbox_url=sb.url), retry=FAST,
                        breaker=CircuitBreaker("webhook", failure_threshold=1000))
    async with client:
        assert isinstance(client, WebhookClient)
        sent = await client.send(SendWebhookParams(payload={"env": True}))
    stored = collection(sb, "deliveries")[sent.idempotency_key]
    assert sent.signed and verify(SECRET, stored["body"].encode(), stored["signature"])


async def test_unsigned_without_token_and_key_always_sent(sb: SandboxServer) -> None:
    async with (client := webhook(sb)):
        sent = await client.send(SendWebhookParams(payload=[1, 2, 3]))
    assert not sent.signed and len(sent.idempotency_key) == 32
    stored = collection(sb, "deliveries")[sent.idempotency_key]
    assert stored["signature"] is None and stored["path"] == "/webhook/"


async def test_retries_reuse_the_idempotency_key(sb: SandboxServer) -> None:
    sb.faults.set("webhook", lost_after_commit=1.0)
    async with (client := webhook(sb, token=SECRET)):
        with pytest.raises(ServerError):
            await client.send(SendWebhookParams(payload={"n": 1}, idempotency_key="k-lost"))
    deliveries = collection(sb, "deliveries")
    assert list(deliveries) == ["k-lost"] and deliveries["k-lost"]["attempts"] == 3
    duplicates = collection(sb, "duplicates")
    assert sorted(duplicates) == ["k-lost#2", "k-lost#3"]
    # Every attempt carried the same body and signature.
    assert {d["signature"] for d in duplicates.values()} == {deliveries["k-lost"]["signature"]}


async def test_resend_with_same_key_is_seen_as_duplicate(sb: SandboxServer) -> None:
    async with (client := webhook(sb)):
        params = SendWebhookParams(payload={"x": 1}, idempotency_key="same")
        first = await client.send(params)
        second = await client.send(params)
    assert first.response["duplicate"] is False and second.response["duplicate"] is True
    assert len(collection(sb, "deliveries")) == 1 and len(collection(sb, "duplicates")) == 1


async def test_health_accepts_plain_text(sb: SandboxServer) -> None:
    async with (client := webhook(sb)):
        health = await client.health_check()
    assert health.ok and health.status == 200


async def test_receiver_errors_are_typed() -> None:
    answers = {"/bad": httpx.Response(400, json={"error": "nope"}),
               "/moved": httpx.Response(301, headers={"Location": "/x"}),
               "/health": httpx.Response(302, headers={"Location": "/login"})}

    def handler(request: httpx.Request) -> httpx.Response:
        return answers[request.url.path]

    client = get_client("webhook", base_url="https://hooks.example",
                        transport=httpx.MockTransport(handler), retry=FAST,
                        breaker=CircuitBreaker("webhook", failure_threshold=1000))
    assert isinstance(client, WebhookClient)
    with pytest.raises(BadRequestError):
        await client.send(SendWebhookParams(payload={}, path="/bad"))
    with pytest.raises(APIStatusError) as err:
        await client.send(SendWebhookParams(payload={}, path="/moved"))
    assert err.value.status_code == 301
    health = await client.health_check()
    assert not health.ok and health.status == 302
