"""Delivery channels against real components: a real Alertmanager, an aiosmtpd SMTP
server, the sandbox's PagerDuty/Webex/Slack/webhook, and a local HMAC-checking receiver.
Faults (hang, 503, 429 + Retry-After, bad credentials, refused) come from the sandbox's
admin fault API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from integrations.alertmanager import AlertmanagerClient, ListAlertsParams
from integrations.email import message_id
from integrations.webex import CreateRoomParams, WebexClient
from integrations.webhook import verify
from junction.alerting.channel_base import ChannelConfigError
from junction.alerting.channels import AlertmanagerChannel, build_channel, build_channels
from junction.alerting.model import (
    DeliveryOutcome,
    Notification,
    NotificationKind,
    Severity,
)
from junction.clients import get_client
from junction.settings import Settings
from tests.helpers import collection, sandbox_settings, set_faults
from tests.servers import free_port

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer
    from tests.servers import AlertmanagerServer

ROUTING_KEY = "R0UTINGKEYsecret0123456789abcdef"
HMAC_SECRET = "hmac-secret-value-4242"

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def note(
    kind: NotificationKind = NotificationKind.FIRING,
    *,
    channel: str = "ch",
    group: str = "grp-gitlab",
    seq: int = 0,
    severity: Severity = Severity.CRITICAL,
    labels: dict[str, str] | None = None,
) -> Notification:
    """A notification as the engine would build one."""
    return Notification(
        key=f"{group}:{kind.value}:{seq}:{channel}",
        channel=channel,
        kind=kind,
        group_key=group,
        severity=severity,
        title=f"{severity.value.upper()} gitlab: success rate 12% < 90%",
        text="gitlab failed 22 of 25 probes in the last 2 minutes.",
        fingerprints=("fp-gitlab-success",),
        labels=labels if labels is not None else {"service": "gitlab", "rule": "success_rate"},
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=5) if kind is NotificationKind.RESOLVED else None,
        dedup_key=group,
        created_at=T0,
    )


@pytest.fixture
def settings(sb: SandboxServer) -> Settings:
    return sandbox_settings(sb)


# --- configuration errors -------------------------------------------------------------------


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ChannelConfigError) as err:
        build_channel("pager", {"type": "pagerdooty"}, Settings())
    msg = str(err.value)
    assert "'pager'" in msg and "pagerdooty" in msg
    for kind in ("alertmanager", "email", "pagerduty", "slack", "webex", "webhook"):
        assert kind in msg


def test_missing_and_bad_fields_name_channel_and_field() -> None:
    with pytest.raises(ChannelConfigError, match=r"channel 'chat' \(slack\): field 'channel'"):
        build_channel("chat", {"type": "slack"}, Settings())
    with pytest.raises(ChannelConfigError, match=r"'mail' \(email\): field 'to'.*not-an-address"):
        build_channel("mail", {"type": "email", "to": ["not-an-address"]}, Settings())
    with pytest.raises(
        ChannelConfigError, match=r"field 'rooom': unknown field \(known: .*room_id"
    ):
        build_channel("w", {"type": "webex", "rooom": "x"}, Settings())
    with pytest.raises(ChannelConfigError, match="exactly one of room_id and to_person_email"):
        build_channel("w", {"type": "webex"}, Settings())
    with pytest.raises(ChannelConfigError, match=r"missing 'type' \(one of: alertmanager, email"):
        build_channel("w", {"room_id": "x"}, Settings())


def test_secret_env_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    monkeypatch.delenv("JUNCTION_PAGERDUTY_ROUTING_KEY", raising=False)
    with pytest.raises(ChannelConfigError, match=r"'routing_key_env'.*NO_SUCH_KEY_VAR"):
        build_channel("pd", {"type": "pagerduty", "routing_key_env": "NO_SUCH_KEY_VAR"})
    with pytest.raises(ChannelConfigError, match="JUNCTION_PAGERDUTY_ROUTING_KEY"):
        build_channel("pd", {"type": "pagerduty"}, Settings())


def test_build_channels_reports_every_bad_channel() -> None:
    with pytest.raises(ChannelConfigError) as err:
        build_channels({"a": {"type": "slack"}, "b": {"type": "nope"}, "c": {"type": "webhook"}})
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and "'a'" in lines[0] and "'b'" in lines[1]


# --- webhook: local receiver checks the HMAC --------------------------------------------------


class Receiver:
    """A tiny aiohttp receiver recording deliveries and checking the signature."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append(
            {
                "body": body,
                "valid": verify(HMAC_SECRET, body, request.headers.get("X-Junction-Signature")),
                "key": request.headers.get("Idempotency-Key"),
                "path": request.path,
            }
        )
        return web.json_response({"ok": True}, status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield rec, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_webhook_signed_json_with_idempotency_key(
    receiver: tuple[Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rec, url = receiver
    monkeypatch.setenv("ALERT_HOOK_SECRET", HMAC_SECRET)
    ch = build_channel(
        "hook",
        {"type": "webhook", "url": url, "path": "/junction", "secret_env": "ALERT_HOOK_SECRET"},
        Settings(),
    )
    n = note(channel="hook")
    try:
        result = await ch.send(n)
    finally:
        await ch.aclose()
    assert result.outcome is DeliveryOutcome.DELIVERED, result.detail
    assert len(rec.got) == 1
    got = rec.got[0]
    assert got["valid"] is True
    assert got["key"] == n.key
    assert got["path"] == "/junction"
    assert json.loads(got["body"]) == n.to_json()
    assert HMAC_SECRET not in result.detail


async def test_webhook_receiver_refusal_is_failed(
    receiver: tuple[Receiver, str],
) -> None:
    rec, url = receiver
    rec.status = 400
    ch = build_channel("hook", {"type": "webhook", "url": url}, Settings())
    try:
        result = await ch.send(note())
    finally:
        await ch.aclose()
    assert result.outcome is DeliveryOutcome.FAILED
    assert "400" in result.detail


async def test_connection_refused_is_retry() -> None:
    ch = build_channel(
        "hook", {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}"}, Settings()
    )
    try:
        result = await ch.send(note())
    finally:
        await ch.aclose()
    assert result.outcome is DeliveryOutcome.RETRY, result.detail


# --- sandbox faults: hang, 503, 429 + Retry-After ------------------------------------------


async def test_hang_is_retry_for_webhook_and_ambiguous_for_slack(
    sb: SandboxServer, settings: Settings
) -> None:
    set_faults(sb, "webhook", hang_rate=1.0, hang_seconds=30)
    set_faults(sb, "slack", hang_rate=1.0, hang_seconds=30)
    hook = build_channel("hook", {"type": "webhook", "timeout_seconds": 0.5}, settings)
    chat = build_channel(
        "chat", {"type": "slack", "channel": "#ops", "timeout_seconds": 0.5}, settings
    )
    try:
        hooked, chatted = await asyncio.gather(hook.send(note()), chat.send(note()))
    finally:
        await hook.aclose()
        await chat.aclose()
    assert hooked.outcome is DeliveryOutcome.RETRY, hooked.detail
    assert chatted.outcome is DeliveryOutcome.AMBIGUOUS, chatted.detail


async def test_503_is_retry_and_429_carries_retry_after(
    sb: SandboxServer, settings: Settings
) -> None:
    set_faults(sb, "webex", error_rate=1.0, error_status=503)
    set_faults(sb, "slack", burst_429=1.0, retry_after_seconds=7)
    webex = build_channel("w", {"type": "webex", "room_id": "room-x"}, settings)
    slack = build_channel("s", {"type": "slack", "channel": "#ops"}, settings)
    try:
        down, limited = await asyncio.gather(webex.send(note()), slack.send(note()))
    finally:
        await webex.aclose()
        await slack.aclose()
    assert down.outcome is DeliveryOutcome.RETRY and "503" in down.detail
    assert limited.outcome is DeliveryOutcome.RETRY
    assert limited.retry_after_seconds == 7


async def test_bad_credentials_are_failed_without_the_secret(
    sb: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "xoxb-wrong-token-123456789"
    monkeypatch.setenv("JUNCTION_SLACK_TOKEN", wrong)
    slack = build_channel(
        "s",
        {"type": "slack", "channel": "#ops", "base_url": f"{sb.url}/slack/api"},
        sandbox_settings(sb),
    )
    try:
        result = await slack.send(note())
    finally:
        await slack.aclose()
    assert result.outcome is DeliveryOutcome.FAILED
    assert "invalid_auth" in result.detail or "401" in result.detail
    assert wrong not in result.detail
    assert collection(sb, "slack", "messages") == {}


# --- sandbox vendors: delivered and visible ---------------------------------------------------


async def test_slack_and_webex_post_one_message(sb: SandboxServer, settings: Settings) -> None:
    webex_client = get_client("webex", settings)
    assert isinstance(webex_client, WebexClient)
    async with webex_client:
        room = await webex_client.create_room(CreateRoomParams(title="Junction alerts"))
    webex = build_channel("w", {"type": "webex", "room_id": room.id}, settings)
    slack = build_channel("s", {"type": "slack", "channel": "C0000000002"}, settings)
    n = note()
    try:
        results = await asyncio.gather(webex.send(n), slack.send(n))
    finally:
        await webex.aclose()
        await slack.aclose()
    assert [r.outcome for r in results] == [DeliveryOutcome.DELIVERED] * 2, results
    messages = [m for m in collection(sb, "webex", "messages").values() if m["roomId"] == room.id]
    assert len(messages) == 1
    assert "[FIRING] CRITICAL" in messages[0]["markdown"] and n.title in messages[0]["markdown"]
    posted = list(collection(sb, "slack", "messages").values())
    assert len(posted) == 1 and n.title in posted[0]["text"]


async def test_pagerduty_one_incident_per_dedup_key(
    sb: SandboxServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_KEY_FOR_TEST", ROUTING_KEY)
    pd = build_channel("pd", {"type": "pagerduty", "routing_key_env": "PD_KEY_FOR_TEST"}, settings)
    kinds = [NotificationKind.FIRING, NotificationKind.ESCALATION, NotificationKind.RESOLVED]
    try:
        results = [await pd.send(note(kind, seq=i)) for i, kind in enumerate(kinds)]
        other = await pd.send(note(group="grp-okta"))
    finally:
        await pd.aclose()
    assert all(r.outcome is DeliveryOutcome.DELIVERED for r in [*results, other]), results
    alerts = collection(sb, "pagerduty", "alerts")
    assert set(alerts) == {"grp-gitlab", "grp-okta"}
    assert alerts["grp-gitlab"]["status"] == "resolved"
    assert alerts["grp-gitlab"]["events"] == 3
    assert alerts["grp-okta"]["status"] == "triggered"
    events = [e["event_action"] for e in collection(sb, "pagerduty", "events").values()]
    assert events == ["trigger", "trigger", "resolve", "trigger"]
    assert all(ROUTING_KEY not in r.detail for r in results)


async def test_pagerduty_timeout_is_retry(
    sb: SandboxServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_KEY_FOR_TEST", ROUTING_KEY)
    set_faults(sb, "pagerduty", hang_rate=1.0, hang_seconds=30)
    pd = build_channel(
        "pd",
        {"type": "pagerduty", "routing_key_env": "PD_KEY_FOR_TEST", "timeout_seconds": 0.5},
        settings,
    )
    try:
        result = await pd.send(note())
    finally:
        await pd.aclose()
    assert result.outcome is DeliveryOutcome.RETRY, result.detail
    assert ROUTING_KEY not in result.detail


# --- a real Alertmanager --------------------------------------------------------------------


async def _active(am: AlertmanagerServer, group: str) -> list[Any]:
    async with AlertmanagerClient(base_url=am.api_url) as client:
        alerts = await client.list_alerts(ListAlertsParams(filter=[f'junction_group="{group}"']))
    return [a for a in alerts if a.status.state == "active"]


async def test_alertmanager_shows_then_resolves(alertmanager: AlertmanagerServer) -> None:
    group = f"grp-am-{free_port()}"
    ch = build_channel("am", {"type": "alertmanager", "base_url": alertmanager.api_url}, Settings())
    assert isinstance(ch, AlertmanagerChannel)
    try:
        fired = await ch.send(note(group=group, severity=Severity.WARNING))
        escalated = await ch.send(note(NotificationKind.ESCALATION, group=group, seq=1))
        active = await _active(alertmanager, group)
        assert fired.outcome is escalated.outcome is DeliveryOutcome.DELIVERED
        # an escalation posted the critical variant; the warning one is still held
        assert {a.labels["severity"] for a in active} == {"warning", "critical"}
        assert all(a.labels["alertname"] == "success_rate" for a in active)
        assert all(a.labels["service"] == "gitlab" for a in active)
        again = await ch.send(note(NotificationKind.REPEAT, group=group, seq=2))
        assert again.outcome is DeliveryOutcome.DELIVERED
        assert len(await _active(alertmanager, group)) == 2  # same label sets: no new alert
        resolved = await ch.send(note(NotificationKind.RESOLVED, group=group, seq=3))
        assert resolved.outcome is DeliveryOutcome.DELIVERED, resolved.detail
        assert await _active(alertmanager, group) == []
    finally:
        await ch.aclose()


# --- a real SMTP server (aiosmtpd) ----------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_email_subject_body_message_id(
    smtp_inbox: tuple[_Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp_inbox
    monkeypatch.setenv("PD_KEY_FOR_TEST", ROUTING_KEY)  # a secret in the process: not leaked
    settings = Settings(sandbox_url="http://127.0.0.1:9", sandbox_smtp_port=port)
    ch = build_channel(
        "mail", {"type": "email", "to": "ops@example.com", "from": "alerts@example.com"}, settings
    )
    n = note(NotificationKind.RESOLVED)
    try:
        result = await ch.send(n)
    finally:
        await ch.aclose()
    assert result.outcome is DeliveryOutcome.DELIVERED, result.detail
    assert len(inbox.messages) == 1
    rcpts, msg = inbox.messages[0]
    assert rcpts == ["ops@example.com"]
    assert msg["Subject"] == f"[Junction] [RESOLVED] {n.title}"
    assert msg["Message-ID"] == message_id(n.key, "alerts@example.com")
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert n.text in text and "Resolved: 2026-01-01 12:05:00 UTC" in text
    assert ROUTING_KEY not in msg.as_string()


async def test_email_server_down_is_retry() -> None:
    settings = Settings(sandbox_url="http://127.0.0.1:9", sandbox_smtp_port=free_port())
    ch = build_channel("mail", {"type": "email", "to": ["ops@example.com"]}, settings)
    try:
        result = await ch.send(note())
    finally:
        await ch.aclose()
    assert result.outcome is DeliveryOutcome.RETRY, result.detail


def test_send_never_raises_on_a_broken_client() -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise httpx.InvalidURL("boom")

    ch = build_channel(
        "hook", {"type": "webhook", "url": "http://127.0.0.1:1"}, Settings(), client_factory=broken
    )
    result = asyncio.run(ch.send(note()))
    assert result.outcome is DeliveryOutcome.FAILED and "InvalidURL" in result.detail


def test_send_budget_defaults_to_the_outbox_timeout() -> None:
    settings = Settings(alert_send_timeout_seconds=3)
    assert build_channel("h", {"type": "webhook"}, settings).timeout == 3
    assert build_channel("h", {"type": "webhook", "timeout_seconds": 1.5}, settings).timeout == 1.5
    with pytest.raises(ChannelConfigError, match="timeout_seconds"):
        build_channel("h", {"type": "webhook", "timeout_seconds": -1}, settings)
