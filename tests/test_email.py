"""SMTP client against the sandbox's aiosmtpd server: delivery stored by Message-ID,
login, typed errors (outage 421, bad login 535, refused connection), safe retries only,
the shared breaker and the metric hook."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from integrations.breaker import BreakerState, CircuitBreaker
from integrations.email import EmailSent, SendEmailParams, SmtpClient, message_id
from integrations.errors import (
    APIConnectionError,
    AuthenticationError,
    CircuitOpenError,
    ServerError,
)
from integrations.metrics import collecting
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from tests.helpers import ClientFactory, collection
from tests.servers import free_port


def mail(**overrides: Any) -> SendEmailParams:
    fields: dict[str, Any] = {
        "sender": "junction@example.com",
        "to": ["oncall@example.com"],
        "cc": ["lead@example.com"],
        "subject": "Checkout API degraded",
        "text": "p95 is 4.2 s",
        "idempotency_key": "run-7:email",
    }
    fields.update(overrides)
    return SendEmailParams(**fields)


def test_action_and_message_id() -> None:
    spec = get_action("smtp", "send_email")
    assert (spec.input, spec.output, spec.idempotent) == (SendEmailParams, EmailSent, False)
    assert message_id("k", "a@example.com") == message_id("k", "a@example.com")
    assert message_id("k", "a@example.com") != message_id("k2", "a@example.com")
    assert message_id("k", "a@example.com").endswith("@example.com>")
    with pytest.raises(ValidationError):
        mail(text=None)
    with pytest.raises(ValidationError):
        mail(to=["not-an-address"])


async def test_send_email_is_stored_by_message_id(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    with collecting() as metrics:
        async with (client := make_client(SmtpClient)):
            sent = await client.send_email(
                mail(bcc=["audit@example.com"], html="<p>p95 is <b>4.2 s</b></p>")
            )
    assert sent.accepted == ["oncall@example.com", "lead@example.com", "audit@example.com"]
    assert sent.message_id == message_id("run-7:email", "junction@example.com")
    assert sent.response.startswith("250")
    stored = collection(sb, "smtp", "messages")[sent.message_id]
    assert stored["subject"] == "Checkout API degraded"
    assert stored["from"] == "junction@example.com"
    assert stored["to"] == ["oncall@example.com"] and stored["cc"] == ["lead@example.com"]
    assert stored["rcpt_tos"] == sent.accepted  # bcc only in the envelope
    assert stored["body"].strip() == "p95 is 4.2 s"
    assert stored["auth_user"] == "sandbox-user"  # logged in with the sandbox credentials
    (metric,) = [m for m in metrics if m.service == "smtp"]
    assert (metric.action, metric.method, metric.ok, metric.attempts) == (
        "send_email",
        "MAIL",
        True,
        1,
    )
    assert metric.status is None and metric.path == f"127.0.0.1:{sb.smtp_port}"


async def test_resend_is_recognisable(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (client := make_client(SmtpClient)):
        first = await client.send_email(mail())
        second = await client.send_email(mail())
        other = await client.send_email(mail(idempotency_key="run-8:email"))
    assert first.message_id == second.message_id != other.message_id
    stored = collection(sb, "smtp", "messages")
    assert stored[first.message_id]["deliveries"] == 2 and len(stored) == 2


async def test_health_check_logs_in_and_reports(make_client: ClientFactory) -> None:
    with collecting() as metrics:
        async with (client := make_client(SmtpClient)):
            health = await client.health_check()
    assert health.ok and health.error_class is None
    assert [(m.action, m.method, m.ok) for m in metrics if m.service == "smtp"] == [
        ("health_check", "EHLO", True)
    ]


async def test_outage_is_typed_server_error_and_retried(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.start_outage("smtp", 60)
    with collecting() as metrics:
        async with (client := make_client(SmtpClient)):
            health = await client.health_check()
            with pytest.raises(ServerError) as err:
                await client.send_email(mail())
    assert (health.ok, health.error_class, health.status) == (False, "ServerError", 421)
    assert err.value.status_code == 421 and err.value.retryable
    send = next(m for m in metrics if m.action == "send_email")
    assert (send.ok, send.attempts, send.error_class) == (False, 3, "ServerError")
    assert collection(sb, "smtp", "messages") == {}


async def test_451_at_data_is_retried_to_success(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("smtp", error_next=1)  # the first DATA answers 451: nothing taken
    with collecting() as metrics:
        async with (client := make_client(SmtpClient)):
            sent = await client.send_email(mail())
    assert collection(sb, "smtp", "messages")[sent.message_id]["deliveries"] == 1
    assert next(m for m in metrics if m.action == "send_email").attempts == 2


async def test_lost_after_data_is_not_retried(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    sb.faults.set("smtp", lost_after_commit=1.0)
    async with (client := make_client(SmtpClient)):
        with pytest.raises(APIConnectionError) as err:
            await client.send_email(mail())
    assert err.value.request_sent
    key = message_id("run-7:email", "junction@example.com")
    assert collection(sb, "smtp", "messages")[key]["deliveries"] == 1


async def test_bad_login_is_authentication_error(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (client := make_client(SmtpClient, wrong_secret="wrong-password")):
        with pytest.raises(AuthenticationError) as err:
            await client.send_email(mail())
        health = await client.health_check()
    assert err.value.status_code == 535 and "wrong-password" not in str(err.value)
    assert (health.ok, health.error_class) == (False, "AuthenticationError")
    assert collection(sb, "smtp", "messages") == {}


async def test_refused_connection_and_the_breaker(make_client: ClientFactory) -> None:
    breaker = CircuitBreaker("smtp", failure_threshold=3, reset_timeout=60)
    client = make_client(SmtpClient, base_url=f"smtp://127.0.0.1:{free_port()}", breaker=breaker)
    with pytest.raises(APIConnectionError) as err:
        await client.send_email(mail())
    assert not err.value.request_sent  # refused: safe to retry, and retried
    assert breaker.state is BreakerState.OPEN  # 3 refused attempts
    with pytest.raises(CircuitOpenError):
        await client.send_email(mail())
    health = await client.health_check()
    assert (health.ok, health.error_class, health.breaker_state) == (
        False,
        "CircuitOpenError",
        "open",
    )
