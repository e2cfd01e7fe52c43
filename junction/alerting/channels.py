"""Delivery channels: one alert notification to Webex, Slack, email, PagerDuty,
Alertmanager or a generic webhook, through the integration clients.

A channel is configured by name in the alerting configuration::

    channels:
      ops-chat:  {type: slack, channel: "#ops"}
      oncall:    {type: pagerduty}                 # routing key: JUNCTION_PAGERDUTY_ROUTING_KEY
      mail:      {type: email, to: [ops@example.com], from: junction@example.com}
      am:        {type: alertmanager, base_url: http://127.0.0.1:9093/api/v2}
      hook:      {type: webhook, url: https://hooks.example.com, path: /junction}

and built with :func:`build_channel`, which validates the parameters of its type and
names the channel and the field in every error. Credentials come from the settings
(``JUNCTION_<INTEGRATION>_TOKEN`` ...), never from the channel file; the only secrets a
channel spec may name are read from environment variables (``secret_env``,
``routing_key_env``).

What a send does and how its outcome is judged: :mod:`junction.alerting.channel_base`.

Vendor semantics:

- **pagerduty**: Events API v2. Firing, escalation and repeat notifications are
  ``trigger`` events with ``dedup_key = Notification.dedup_key``, so PagerDuty folds them
  into one incident; resolved is a ``resolve`` event with the same key.
- **alertmanager**: ``POST /api/v2/alerts``. The label set (``alertname``, ``service``,
  ``severity``, ``junction_group`` + the notification's labels) is the alert's identity,
  so a resend refreshes the same alert. Firing alerts carry ``endsAt = now + hold_seconds``
  (Alertmanager would otherwise resolve them itself after its ``resolve_timeout``);
  resolved sets ``endsAt`` in the past. When the notification's labels carry no
  severity, a resolve ends both severities, so a group that escalated from warning to
  critical leaves nothing firing.
- **webhook**: JSON body ``Notification.to_json()``, ``Idempotency-Key`` =
  ``Notification.key``, ``X-Junction-Signature: sha256=<HMAC>`` when a secret is set.
- **email**: SMTP via :class:`integrations.email.SmtpClient`; ``Message-ID`` derived from
  ``Notification.key`` (:func:`integrations.email.message_id`), so a resend is
  recognisable.
- **webex** / **slack**: one markdown / mrkdwn message per notification. Slack carries
  ``Notification.key`` as the message's idempotency key, so a redelivery to a channel the
  token can read finds the first message instead of posting again.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from integrations.alertmanager import AlertmanagerClient, PostableAlert, PostAlertsParams
from integrations.base import IntegrationClient
from integrations.email import SendEmailParams, SmtpClient
from integrations.errors import IntegrationError
from integrations.pagerduty import PagerDutyClient, SendEventParams
from integrations.slack import PostMessageParams, SlackClient
from integrations.webex import CreateMessageParams, WebexClient
from integrations.webhook import SendWebhookParams, WebhookClient
from junction.alerting.channel_base import (
    BaseChannel,
    ChannelConfigError,
    ChannelParams,
    headline,
    timestamp_text,
)
from junction.alerting.model import Notification, NotificationKind, Severity
from junction.settings import Settings, get_settings

_EMAIL = r"^[^@\s<>]+@[^@\s<>]+$"
_KEY_CHARS = re.compile(r"^[\x21-\x7e]{1,255}$")


# --- per-type parameters ------------------------------------------------------------------


class WebexParams(ChannelParams):
    """``type: webex``: a Webex room (or a person, 1:1)."""

    room_id: str | None = Field(None, min_length=1)
    to_person_email: str | None = Field(None, pattern=_EMAIL)

    @model_validator(mode="after")
    def _one_target(self) -> WebexParams:
        if (self.room_id is None) == (self.to_person_email is None):
            raise ValueError("give exactly one of room_id and to_person_email")
        return self


class SlackParams(ChannelParams):
    """``type: slack``: a Slack channel id or name."""

    channel: str = Field(min_length=1)


class EmailParams(ChannelParams):
    """``type: email``: SMTP recipients and sender."""

    to: list[str] = Field(min_length=1)
    sender: str = Field("junction@junction.local", alias="from", pattern=_EMAIL)
    subject_prefix: str = "[Junction]"

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for addr in value:
            if not re.match(_EMAIL, addr):
                raise ValueError(f"not an email address: {addr!r}")
        return value


class PagerDutyParams(ChannelParams):
    """``type: pagerduty``: Events API v2."""

    routing_key_env: str | None = Field(
        None, description="Environment variable holding the routing key (else the settings')."
    )
    events_url: str | None = None
    source: str | None = Field(None, description="payload.source (default: the service label).")


class AlertmanagerParams(ChannelParams):
    """``type: alertmanager``: ``POST /api/v2/alerts``."""

    hold_seconds: float = Field(
        3600,
        gt=0,
        le=7 * 86400,
        description="endsAt of a firing alert = now + this (renewed by repeats).",
    )
    generator_url: str | None = None
    extra_labels: dict[str, str] = Field(default_factory=dict)


class WebhookParams(ChannelParams):
    """``type: webhook``: JSON POST, HMAC-signed when a secret is set."""

    url: str | None = Field(None, description="Receiver base URL (alias of base_url).")
    path: str = Field("/", pattern=r"^/")
    secret_env: str | None = Field(
        None, description="Environment variable holding the HMAC secret (else the settings')."
    )
    headers: dict[str, str] = Field(default_factory=dict)


# --- the channel types ---------------------------------------------------------------------


class WebexChannel(BaseChannel):
    """A Webex room or 1:1 conversation; one markdown message per notification."""

    kind = "webex"
    Params = WebexParams
    integration = "webex"
    params: WebexParams

    @staticmethod
    def markdown(n: Notification) -> str:
        """The message's markdown."""
        lines = [f"**{headline(n)}** {n.title}", "", n.text]
        lines.append(
            f"_since {timestamp_text(n.starts_at)}_"
            + (f" _until {timestamp_text(n.ends_at)}_" if n.ends_at else "")
        )
        return "\n".join(lines)[:7000]

    async def _deliver(self, notification: Notification) -> str:
        client = self.client
        assert isinstance(client, WebexClient)
        text = f"{headline(notification)} {notification.title}\n\n{notification.text}"[:7000]
        # dedupe_window 0: post exactly once (a bot cannot read back a group room).
        message = await client.create_message(
            CreateMessageParams(
                room_id=self.params.room_id,
                to_person_email=self.params.to_person_email,
                text=text,
                markdown=self.markdown(notification),
                dedupe_window_seconds=0,
            )
        )
        return f"webex message {message.id}"


class SlackChannel(BaseChannel):
    """A Slack channel; one ``chat.postMessage`` per notification."""

    kind = "slack"
    Params = SlackParams
    integration = "slack"
    params: SlackParams

    @staticmethod
    def mrkdwn(n: Notification) -> str:
        """The message text (Slack mrkdwn)."""
        return f"*{headline(n)}* {n.title}\n{n.text}"[:3900]

    async def _deliver(self, notification: Notification) -> str:
        client = self.client
        assert isinstance(client, SlackClient)
        # The notification's key: a redelivery finds the message instead of posting again.
        result = await client.post_message(
            PostMessageParams(
                channel=self.params.channel,
                text=self.mrkdwn(notification),
                idempotency_key=notification.key,
            )
        )
        return f"slack message {result.channel}/{result.ts}"


class EmailChannel(BaseChannel):
    """Email over SMTP; ``Message-ID`` derived from the notification key."""

    kind = "email"
    Params = EmailParams
    integration = "smtp"
    params: EmailParams

    def subject(self, n: Notification) -> str:
        """The subject line."""
        return f"{self.params.subject_prefix} {headline(n)} {n.title}".strip()[:250]

    @staticmethod
    def body(n: Notification) -> str:
        """The plain-text body."""
        rows = [n.title, "", n.text, ""]
        rows.append(f"Started: {timestamp_text(n.starts_at)}")
        if n.ends_at:
            rows.append(f"Resolved: {timestamp_text(n.ends_at)}")
        if n.labels:
            rows.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items())))
        rows.append(f"Notification: {n.key}")
        return "\n".join(rows) + "\n"

    async def _deliver(self, notification: Notification) -> str:
        client = self.client
        assert isinstance(client, SmtpClient)
        sent = await client.send_email(
            SendEmailParams(
                sender=self.params.sender,
                to=self.params.to,
                subject=self.subject(notification),
                text=self.body(notification),
                idempotency_key=notification.key,
            )
        )
        return f"email {sent.message_id} to {len(sent.accepted)} recipient(s)"


class PagerDutyChannel(BaseChannel):
    """PagerDuty Events API v2: trigger/resolve by ``dedup_key``."""

    kind = "pagerduty"
    Params = PagerDutyParams
    integration = "pagerduty"
    dedupes = True
    params: PagerDutyParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        key = None
        if self.params.routing_key_env:
            key = os.environ.get(self.params.routing_key_env)
            if not key:
                raise ChannelConfigError(
                    f"channel {self.name!r} (pagerduty): field 'routing_key_env': environment "
                    f"variable {self.params.routing_key_env} is not set"
                )
        else:
            configured = self.settings.integration("pagerduty").routing_key
            key = configured.get_secret_value() if configured else None
            if not key:
                raise ChannelConfigError(
                    f"channel {self.name!r} (pagerduty): no routing key: set "
                    "JUNCTION_PAGERDUTY_ROUTING_KEY or the field 'routing_key_env'"
                )
        self._routing_key = self._secret(key)

    def _client_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"routing_key": self._routing_key}
        if self.params.events_url:
            kw["events_url"] = self.params.events_url
        return kw

    @staticmethod
    def dedup_key(n: Notification) -> str:
        """PagerDuty's ``dedup_key`` (at most 255 characters)."""
        key = n.dedup_key or n.group_key
        return key if len(key) <= 255 else hashlib.sha256(key.encode()).hexdigest()

    async def _deliver(self, notification: Notification) -> str:
        client = self.client
        assert isinstance(client, PagerDutyClient)
        n = notification
        if n.kind is NotificationKind.RESOLVED:
            params = SendEventParams(event_action="resolve", dedup_key=self.dedup_key(n))
        else:
            params = SendEventParams(
                event_action="trigger",
                dedup_key=self.dedup_key(n),
                summary=f"{n.title}"[:1024],
                source=self.params.source or n.labels.get("service") or n.group_key,
                severity="critical" if n.severity is Severity.CRITICAL else "warning",
                component=n.labels.get("service"),
                group=n.labels.get("group"),
                event_class=n.labels.get("rule"),
                custom_details={"text": n.text, "labels": dict(n.labels), "kind": n.kind.value},
                timestamp=n.starts_at,
            )
        result = await client.send_event(params)
        return f"pagerduty {params.event_action} {result.dedup_key}"


class AlertmanagerChannel(BaseChannel):
    """Prometheus Alertmanager: ``POST /api/v2/alerts``, identity = label set."""

    kind = "alertmanager"
    Params = AlertmanagerParams
    integration = "alertmanager"
    dedupes = True
    params: AlertmanagerParams

    def labels(self, n: Notification, severity: str | None = None) -> dict[str, str]:
        """The alert's label set (its identity at Alertmanager)."""
        labels = {k: v for k, v in n.labels.items() if v}
        labels.update(self.params.extra_labels)
        labels["alertname"] = n.labels.get("alertname") or n.labels.get("rule") or "JunctionAlert"
        labels["service"] = n.labels.get("service") or n.group_key
        labels["severity"] = severity or n.labels.get("severity") or n.severity.value
        labels["junction_group"] = n.dedup_key or n.group_key
        return labels

    async def _deliver(self, notification: Notification) -> str:
        client = self.client
        assert isinstance(client, AlertmanagerClient)
        n = notification
        now = datetime.now(UTC)
        annotations = {"summary": n.title, "description": n.text, "junction_key": n.key}
        if n.kind is NotificationKind.RESOLVED:
            # endsAt must not be in the future, or Alertmanager keeps it firing until then.
            ends = min(n.ends_at, now) if n.ends_at else now
            severities = (
                [None] if "severity" in n.labels else [s.value for s in Severity]
            )  # an escalated group may have been posted under either severity
        else:
            ends = now + timedelta(seconds=self.params.hold_seconds)
            severities = [None]
        alerts = [
            PostableAlert(
                labels=self.labels(n, severity),
                annotations=annotations,
                starts_at=n.starts_at,
                ends_at=ends,
                generator_url=self.params.generator_url,
            )
            for severity in severities
        ]
        result = await client.post_alerts(PostAlertsParams(alerts=alerts))
        return f"alertmanager accepted {result.accepted} alert(s)"


class WebhookChannel(BaseChannel):
    """Generic webhook: JSON ``Notification.to_json()``, HMAC-signed, Idempotency-Key."""

    kind = "webhook"
    Params = WebhookParams
    integration = "webhook"
    dedupes = True
    params: WebhookParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        secret: str | None = None
        if self.params.secret_env:
            secret = os.environ.get(self.params.secret_env)
            if not secret:
                raise ChannelConfigError(
                    f"channel {self.name!r} (webhook): field 'secret_env': environment "
                    f"variable {self.params.secret_env} is not set"
                )
        self._hmac = self._secret(secret)

    def _base_url(self) -> str | None:
        return self.params.url or self.params.base_url

    def _client_kwargs(self) -> dict[str, Any]:
        if self._hmac is None:
            return {}
        config = self.settings.integration("webhook").model_copy(
            update={"token": SecretStr(self._hmac)}
        )
        return {"config": config}

    @staticmethod
    def idempotency_key(n: Notification) -> str:
        """``Notification.key`` when it is a valid header token, else its SHA-256."""
        if _KEY_CHARS.match(n.key):
            return n.key
        return hashlib.sha256(n.key.encode()).hexdigest()

    async def _deliver(self, notification: Notification) -> str:
        client = self.client
        assert isinstance(client, WebhookClient)
        delivery = await client.send(
            SendWebhookParams(
                payload=notification.to_json(),
                path=self.params.path,
                idempotency_key=self.idempotency_key(notification),
                headers=dict(self.params.headers),
            )
        )
        return f"webhook HTTP {delivery.status_code}"


CHANNELS: dict[str, type[BaseChannel]] = {
    cls.kind: cls
    for cls in (
        AlertmanagerChannel,
        EmailChannel,
        PagerDutyChannel,
        SlackChannel,
        WebexChannel,
        WebhookChannel,
    )
}
"""The one registry of channel types: ``type`` -> channel class (its ``Params`` validate
the spec). Validation, ``junction alerts check-config`` and ``junction alerts
channel-types`` are derived from it; a new channel type is a class added here."""

CHANNEL_TYPES: tuple[str, ...] = tuple(sorted(CHANNELS))
"""The known ``type`` values, sorted (for messages)."""


def unknown_type_message(kind: object) -> str:
    """What to say about a spec whose ``type`` is ``kind`` (not a key of :data:`CHANNELS`)."""
    known = ", ".join(CHANNEL_TYPES)
    if kind is None:
        return f"missing 'type' (one of: {known})"
    close = difflib.get_close_matches(str(kind), CHANNEL_TYPES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown channel type {kind!r} ({hint}expected one of: {known})"


def _problems(name: str, kind: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(spec)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            fields = CHANNELS[kind].Params.model_fields
            known = ", ".join(sorted((i.alias or f) for f, i in fields.items() if f != "type"))
            msg = f"unknown field (known: {known})"
        parts.append(f"field {where!r}: {msg}")
    return f"channel {name!r} ({kind}): " + "; ".join(parts)


def validate_channel(name: str, spec: Mapping[str, Any]) -> ChannelParams:
    """Validate one channel spec without building clients.

    Args:
        name: The channel's name.
        spec: Its mapping (``type`` plus the type's fields).

    Returns:
        The validated parameters.

    Raises:
        ChannelConfigError: Unknown type (lists the known ones) or a bad field.
    """
    if not isinstance(spec, Mapping):
        raise ChannelConfigError(f"channel {name!r}: expected a mapping, got {type(spec).__name__}")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in CHANNELS:
        raise ChannelConfigError(f"channel {name!r}: {unknown_type_message(kind)}")
    try:
        return CHANNELS[kind].Params.model_validate(dict(spec))
    except ValidationError as exc:
        raise ChannelConfigError(_problems(name, kind, exc)) from None


def build_channel(
    name: str,
    spec: Mapping[str, Any],
    settings: Settings | None = None,
    *,
    client_factory: Callable[..., IntegrationClient] | None = None,
) -> BaseChannel:
    """Build the channel ``name`` from its spec.

    Nothing is sent; clients are created on the first :meth:`BaseChannel.send`.

    Args:
        name: The channel's configured name (used in messages and as ``Notification.channel``).
        spec: ``{"type": "<kind>", ...fields of that type}``.
        settings: Process settings (credentials, sandbox URL); default :func:`get_settings`.
        client_factory: Replaces :func:`junction.clients.get_client` (tests).

    Returns:
        A :class:`~junction.alerting.model.Channel`.

    Raises:
        ChannelConfigError: Unknown type, bad or missing field, unset secret variable.
    """
    params = validate_channel(name, spec)
    try:
        return CHANNELS[params.type](name, params, settings or get_settings(), client_factory)
    except ChannelConfigError:
        raise
    except (IntegrationError, ValueError) as exc:
        raise ChannelConfigError(f"channel {name!r} ({params.type}): {exc}") from None


def build_channels(
    specs: Mapping[str, Mapping[str, Any]], settings: Settings | None = None
) -> dict[str, BaseChannel]:
    """Build every channel of a ``channels:`` mapping (all errors reported together).

    Raises:
        ChannelConfigError: One line per bad channel.
    """
    built: dict[str, BaseChannel] = {}
    errors: list[str] = []
    for name, spec in specs.items():
        try:
            built[name] = build_channel(name, spec, settings)
        except ChannelConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ChannelConfigError("\n".join(errors))
    return built
