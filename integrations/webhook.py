"""Generic outgoing webhook: POST a JSON payload, optionally HMAC-signed.

Follows the common webhook conventions (the shape GitHub and Stripe use for theirs):
a JSON body, an ``Idempotency-Key`` header that stays the same across retries of one
delivery so the receiver can drop repeats (IETF draft-ietf-httpapi-idempotency-key-header),
and, when a secret is configured, ``X-Junction-Signature: sha256=<hex>`` = HMAC-SHA256 of
the exact body bytes keyed with the secret. The receiver recomputes it over the raw body
and compares in constant time.

The catalog entry has ``auth: none``; the optional signing secret is read from
``JUNCTION_WEBHOOK_TOKEN`` (the integration settings' ``token``) and registered with the
redactor. Deliveries are at-least-once: a delivery whose answer was lost is sent again
with the same ``Idempotency-Key`` (receivers are expected to dedupe on it). The key is
the caller's, else derived from path and payload (never random), so the same delivery
made again by a rerun is recognisable too.

The ``path`` stays under the base URL: a ``.`` or ``..`` segment (literal or
percent-encoded) is refused before anything is sent, so a path such as
``/../../tenant-b/x`` cannot reach a sibling tenant on a shared receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import status_error_class
from integrations.idempotency import derived_key
from integrations.redaction import register_secret
from integrations.urls import UnsafeURLError, relative_path

SIGNATURE_HEADER = "X-Junction-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Junction-Signature`` value for ``body``.

    Args:
        secret: The shared secret.
        body: The exact request body bytes.

    Returns:
        ``sha256=<hex digest>``.
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """Check a received signature (for receivers and tests), in constant time."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


# --- inputs / outputs ---------------------------------------------------------------------


class SendWebhookParams(BaseModel):
    """Input of :meth:`WebhookClient.send`.

    Attributes:
        payload: JSON payload.
        path: Path under the webhook base URL (default ``/``); no ``.``/``..`` segments.
        idempotency_key: Delivery id sent as ``Idempotency-Key`` (e.g. ``<run
            id>:<step>``); default derived from path and payload.
        headers: Extra headers (e.g. a receiver's routing header).
    """

    payload: dict[str, Any] | list[Any]
    path: str = "/"
    idempotency_key: str | None = Field(None, min_length=1, pattern=r"^[\x21-\x7e]+$")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _stays_under_base(cls, value: str) -> str:
        try:
            return relative_path(value)
        except UnsafeURLError as exc:
            raise ValueError(str(exc)) from None

    @property
    def key(self) -> str:
        """The ``Idempotency-Key``: the caller's, else derived from path and payload."""
        return derived_key(self.idempotency_key, self.path, self.payload)


class WebhookDelivery(BaseModel):
    """Outcome of one delivery.

    Attributes:
        status_code: The receiver's HTTP status (2xx).
        idempotency_key: The ``Idempotency-Key`` sent.
        signed: Whether a signature header was sent.
        response: The receiver's answer: parsed JSON if it was JSON, else the text.
    """

    model_config = ConfigDict(extra="allow")

    status_code: int
    idempotency_key: str
    signed: bool
    response: Any = None


class WebhookClient(IntegrationClient):
    """Generic webhook client (``get_client("webhook")``); base URL from
    ``JUNCTION_WEBHOOK_BASE_URL``."""

    service = "webhook"

    @property
    def _secret(self) -> str | None:
        token = self.config.token
        if token is None:
            return None
        value = token.get_secret_value()
        register_secret(value)
        return value or None

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def send(self, params: SendWebhookParams) -> WebhookDelivery:
        """POST the payload as JSON; signed when a secret is set; retried with the same key.

        Args:
            params: Payload, path, idempotency key, extra headers.

        Returns:
            The receiver's status and answer.

        Raises:
            APIStatusError: The receiver answered a non-2xx status (typed by status).
        """
        body = json.dumps(params.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            **params.headers,
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: params.key,
        }
        secret = self._secret
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        reply = await self.request(
            "POST",
            params.path,
            action="send",
            content=body,
            headers=headers,
            expect="text",  # receivers answer JSON or plain text: parsed leniently below
            idempotent=True,  # at-least-once delivery, deduped by Idempotency-Key
            with_response=True,  # this answer's status (last_status is the client's latest)
        )
        try:
            answer: Any = json.loads(reply.data) if reply.data else None
        except ValueError:
            answer = reply.data
        return WebhookDelivery(
            status_code=reply.status,
            idempotency_key=params.key,
            signed=bool(secret),
            response=answer,
        )

    def _check_response(
        self, response: httpx.Response, body: Any, *, where: str, action: str
    ) -> None:
        """Refuse a 3xx: redirects are not followed, so nothing was delivered.

        (The engine raises for >= 400 itself.) Raised inside the attempt, so metrics and
        retries see it.
        """
        status = response.status_code
        if not 200 <= status < 300:
            raise self._make_status_error(
                status_error_class(status),
                f"HTTP {status} from {where}: a webhook receiver must answer 2xx",
                response,
                action=action,
            )

    async def _health_request(self, max_attempts: int) -> None:
        """``GET /health``: any 2xx is healthy, whatever the body (often plain text)."""
        await self.request(
            "GET",
            self.spec.health.path,
            action="health_check",
            expect="text",
            max_attempts=max_attempts,
        )
