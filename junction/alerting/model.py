"""Types shared by the alert engine, the outbox and the delivery channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Severity(StrEnum):
    """How bad an alert is; ordering: warning < critical."""

    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """1 for warning, 2 for critical."""
        return 1 if self is Severity.WARNING else 2


class AlertState(StrEnum):
    """Lifecycle of one alert (one fingerprint): firing -> acknowledged -> resolved."""

    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class NotificationKind(StrEnum):
    """Why a notification is sent."""

    FIRING = "firing"
    ESCALATION = "escalation"
    REPEAT = "repeat"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Notification:
    """One message to one channel about one alert group.

    ``key`` is stable for a given (group, kind, sequence, channel) and is what makes
    delivery exactly-once: the outbox stores it with a unique constraint and channels pass
    it on as the vendor's idempotency/dedup key where the vendor has one.

    Attributes:
        key: Unique, deterministic id of this notification.
        channel: Name of the configured channel that must deliver it.
        kind: Firing, escalation, repeat or resolved.
        group_key: The alert group (one outage of a shared dependency is one group).
        severity: Highest severity in the group.
        title: One-line summary ("CRITICAL gitlab: success rate 12% < 90%").
        text: Plain-text body (several lines).
        fingerprints: Fingerprints of the alerts this notification covers.
        labels: Labels of the group (service, rule, severity, ...), for routing and for
            channels that carry labels (Alertmanager, PagerDuty custom details).
        starts_at: When the group started firing.
        ends_at: When it resolved (resolved notifications only).
        dedup_key: Key that identifies the incident across notifications at vendors that
            correlate (PagerDuty ``dedup_key``, Alertmanager labels): same for the firing,
            escalation and resolved messages of one group.
        created_at: When the engine created the notification.
    """

    key: str
    channel: str
    kind: NotificationKind
    group_key: str
    severity: Severity
    title: str
    text: str
    fingerprints: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    dedup_key: str = ""
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (outbox row payload, webhook body)."""
        return {
            "key": self.key,
            "channel": self.channel,
            "kind": self.kind.value,
            "group_key": self.group_key,
            "severity": self.severity.value,
            "title": self.title,
            "text": self.text,
            "fingerprints": list(self.fingerprints),
            "labels": dict(self.labels),
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "dedup_key": self.dedup_key,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        """Inverse of :meth:`to_json`."""

        def ts(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return cls(
            key=data["key"],
            channel=data["channel"],
            kind=NotificationKind(data["kind"]),
            group_key=data["group_key"],
            severity=Severity(data["severity"]),
            title=data["title"],
            text=data["text"],
            fingerprints=tuple(data.get("fingerprints", ())),
            labels=dict(data.get("labels", {})),
            starts_at=ts(data.get("starts_at")),
            ends_at=ts(data.get("ends_at")),
            dedup_key=data.get("dedup_key", ""),
            created_at=ts(data.get("created_at")),
        )


class DeliveryOutcome(StrEnum):
    """Result of one delivery attempt.

    ``DELIVERED``: the channel confirmed it. ``RETRY``: it certainly did not arrive
    (connection refused, 429, 5xx before processing, or the vendor deduplicates so a resend
    is harmless): try again later. ``AMBIGUOUS``: it may have arrived (timeout after the
    request was sent) on a channel with no idempotency key and no way to check: do not
    resend blindly. ``FAILED``: permanent (bad credentials, 4xx): give up and report.
    """

    DELIVERED = "delivered"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryResult:
    """What a channel says about one attempt."""

    outcome: DeliveryOutcome
    detail: str = ""
    retry_after_seconds: float | None = None


class Channel(Protocol):
    """A configured delivery channel (Webex room, Slack channel, SMTP, PagerDuty, ...)."""

    name: str

    @property
    def kind(self) -> str:
        """Channel type: webex, slack, email, pagerduty, alertmanager, webhook."""
        ...

    @property
    def dedupes(self) -> bool:
        """True when the vendor deduplicates resends (PagerDuty dedup_key, Alertmanager
        labels, webhook Idempotency-Key), so a send interrupted by a crash may be redone."""
        ...

    async def send(self, notification: Notification) -> DeliveryResult:
        """Deliver one notification; never raises for delivery problems."""
        ...

    async def aclose(self) -> None:
        """Release clients."""
        ...
