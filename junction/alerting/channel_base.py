"""What every alert delivery channel shares: its parameters, its client, the outcome rules.

A channel type is a :class:`BaseChannel` subclass with its :class:`ChannelParams` model,
listed in the registry :data:`junction.alerting.channels.CHANNELS`.

:meth:`BaseChannel.send` makes one attempt within the channel's own timeout and never
raises. It maps what happened to a :class:`~junction.alerting.model.DeliveryOutcome` that
the outbox acts on:

============================================  ==========================================
what happened                                 outcome
============================================  ==========================================
2xx (SMTP 250)                                DELIVERED
connection refused, 429, 5xx, 408,            RETRY (``retry_after_seconds`` from the
circuit open                                  vendor's ``Retry-After`` / the breaker)
timeout or lost answer after the request      RETRY where the vendor deduplicates
was sent                                      (PagerDuty ``dedup_key``, Alertmanager label
                                              set, webhook ``Idempotency-Key``);
                                              AMBIGUOUS for Webex, Slack and SMTP (no
                                              idempotency key: a resend may duplicate)
401, 403, other 4xx, bad configuration        FAILED (the detail says why)
============================================  ==========================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from integrations.base import IntegrationClient, RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import (
    APIConnectionError,
    APIStatusError,
    CircuitOpenError,
    ConfigurationError,
    IntegrationError,
    MalformedResponseError,
    RateLimitError,
    RequestTimeoutError,
    RetryLaterError,
)
from integrations.redaction import redact, register_secret
from integrations.yamlconfig import ConfigModel
from junction.alerting.model import DeliveryOutcome, DeliveryResult, Notification, NotificationKind
from junction.clients import get_client
from junction.settings import Settings

log = logging.getLogger("junction.alerting.channels")


class ChannelConfigError(ValueError):
    """A channel spec is invalid: unknown type, missing or bad field (names both)."""


class ChannelParams(ConfigModel):
    """Fields every channel type accepts (unknown fields, ``.inf`` and ``.nan`` refused)."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description="The channel type (a key of CHANNELS).")
    base_url: str | None = Field(
        None, description="Override the integration's base URL (else settings/sandbox)."
    )
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        le=300,
        description="Budget of one send (default JUNCTION_ALERT_SEND_TIMEOUT_SECONDS, 10).",
    )


def timestamp_text(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def headline(n: Notification) -> str:
    """``[FIRING] CRITICAL`` / ``[RESOLVED]`` ... the first words of every message."""
    if n.kind is NotificationKind.RESOLVED:
        return "[RESOLVED]"
    return f"[{n.kind.value.upper()}] {n.severity.value.upper()}"


class BaseChannel:
    """What every channel shares: the client, the timeout, the error mapping.

    Subclasses set :attr:`kind`, :attr:`Params`, :attr:`integration`, :attr:`dedupes`,
    implement :meth:`_deliver`, and are listed in :data:`CHANNELS`.

    Args:
        name: The channel's configured name.
        params: Its validated parameters.
        settings: Process settings.
        client_factory: Builds the integration client (tests may pass their own).
    """

    kind: ClassVar[str] = ""
    """The ``type`` value that selects this channel in the configuration."""
    Params: ClassVar[type[ChannelParams]] = ChannelParams
    """The model of this type's fields."""
    integration: ClassVar[str] = ""
    dedupes: ClassVar[bool] = False
    """Whether the vendor drops a repeat of the same notification (retry is harmless)."""

    def __init__(
        self,
        name: str,
        params: ChannelParams,
        settings: Settings,
        client_factory: Callable[..., IntegrationClient] | None = None,
    ) -> None:
        self.name = name
        self.params = params
        self.settings = settings
        # The whole send fits in the budget the outbox gives it (its wait_for would
        # otherwise cut us and judge the outcome without knowing what was sent).
        self.timeout: float = params.timeout_seconds or settings.alert_send_timeout_seconds
        self._factory = client_factory
        self._client: IntegrationClient | None = None
        self._secrets: list[str] = []
        # One attempt per send: the outbox owns retries (with its durable backoff); a
        # private breaker keeps a dead channel from tripping the service's probes.
        self._retry = RetryPolicy(max_attempts=1)
        self._breaker = CircuitBreaker(f"channel:{name}", failure_threshold=5, reset_timeout=30.0)

    def _client_kwargs(self) -> dict[str, Any]:
        return {}

    @property
    def client(self) -> IntegrationClient:
        """The integration client (built on first use)."""
        if self._client is None:
            factory = self._factory or get_client
            self._client = factory(
                self.integration,
                settings=self.settings,
                base_url=self._base_url(),
                retry=self._retry,
                breaker=self._breaker,
                timeout=self.timeout * 0.8,
                source="alert",
                **self._client_kwargs(),
            )
        return self._client

    def _base_url(self) -> str | None:
        return self.params.base_url

    def _secret(self, value: str | None) -> str | None:
        if value:
            register_secret(value)
            self._secrets.append(value)
        return value

    async def _deliver(self, notification: Notification) -> str:
        """Send one notification; return a short detail. Raise IntegrationError on failure."""
        raise NotImplementedError

    async def send(self, notification: Notification) -> DeliveryResult:
        """Deliver ``notification`` once, within the channel's timeout; never raises.

        Args:
            notification: What to deliver.

        Returns:
            The outcome (see the module docstring for the mapping).
        """
        try:
            # The client's own read timeout (80 %) fires first; this guard bounds the
            # whole exchange (connect + TLS + SMTP dialogue) for a server that trickles.
            async with asyncio.timeout(self.timeout * 0.95):
                detail = await self._deliver(notification)
        except IntegrationError as exc:
            return self._classify(exc)
        except TimeoutError:
            return self._after_send(f"no answer within {self.timeout * 0.95:.3g}s")
        except Exception as exc:  # a bug or an unexpected library error: report, never raise
            log.exception("channel %s: unexpected error", self.name)
            return DeliveryResult(
                DeliveryOutcome.FAILED, self._clean(f"{type(exc).__name__}: {exc}")
            )
        return DeliveryResult(DeliveryOutcome.DELIVERED, self._clean(detail))

    def _clean(self, text: str) -> str:
        text = redact(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:500]

    def _after_send(self, why: str) -> DeliveryResult:
        """The request may have arrived: resend only where the vendor dedupes."""
        if self.dedupes:
            return DeliveryResult(
                DeliveryOutcome.RETRY, self._clean(f"{why}; resend is deduplicated by the vendor")
            )
        return DeliveryResult(
            DeliveryOutcome.AMBIGUOUS,
            self._clean(f"{why}; it may have been delivered and {self.kind} cannot deduplicate"),
        )

    def _classify(self, exc: IntegrationError) -> DeliveryResult:
        detail = exc.message
        if isinstance(exc, CircuitOpenError):
            return DeliveryResult(DeliveryOutcome.RETRY, self._clean(detail), exc.retry_in)
        if isinstance(exc, RateLimitError | RetryLaterError | RequestTimeoutError):
            hint = getattr(exc, "retry_after", None)
            return DeliveryResult(DeliveryOutcome.RETRY, self._clean(detail), hint)
        if isinstance(exc, APIConnectionError):
            if not exc.request_sent:
                return DeliveryResult(DeliveryOutcome.RETRY, self._clean(detail))
            return self._after_send(detail)
        if isinstance(exc, MalformedResponseError):
            # A 2xx with a garbled body: the vendor most likely took it.
            return self._after_send(detail)
        if isinstance(exc, APIStatusError | ConfigurationError):
            return DeliveryResult(DeliveryOutcome.FAILED, self._clean(detail))
        return DeliveryResult(DeliveryOutcome.FAILED, self._clean(detail))

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
