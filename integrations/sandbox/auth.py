"""Sandbox auth: check each request the way its catalog entry's ``auth`` says, and play
the OAuth2 client-credentials token endpoint (``POST /<service>/oauth2/token``).

The sandbox accepts the well-known credentials of :mod:`integrations.auth` (token
``sandbox-token``; basic ``sandbox-user``/``sandbox-password``; OAuth2 client
``sandbox-client``/``sandbox-password``, then only tokens it issued and that have not
expired). Like slack-sdk's mock server, behaviour is picked by the credential: the token
(or basic user/password) ``sandbox-forbidden`` gets 403, anything else 401, each with the
vendor's own error body (:func:`integrations.sandbox.api.vendor_error_body`). Slack
answers auth errors with HTTP 200 and ``{"ok": false, "error": "invalid_auth"}``, as the
real Slack does.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl

from integrations.auth import SANDBOX_PASSWORD, SANDBOX_TOKEN, SANDBOX_USER
from integrations.catalog import IntegrationSpec
from integrations.sandbox.api import vendor_error_body

SANDBOX_CLIENT_ID = "sandbox-client"
FORBIDDEN_CREDENTIAL = "sandbox-forbidden"
TOKEN_PATH = "/oauth2/token"

Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """An auth check that failed: what to answer."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "unauthorized"


def header(headers: Headers, name: bytes) -> str | None:
    """The value of header ``name`` (lower-case bytes) in ASGI ``scope["headers"]``."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


@dataclass
class _Issued:
    service: str
    client_id: str
    expires_at: float


class TokenStore:
    """OAuth2 access tokens the sandbox issued: per service, with their expiry.

    Args:
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Issued] = {}

    def issue(self, service: str, client_id: str, ttl: float) -> str:
        """Issue a token for ``service`` valid ``ttl`` seconds."""
        token = f"sbx-{service}-{secrets.token_hex(12)}"
        now = self._clock()
        with self._lock:
            if len(self._tokens) > 10_000:  # keep a long benchmark from growing forever
                self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
            self._tokens[token] = _Issued(service, client_id, now + ttl)
        return token

    def check(self, service: str, token: str) -> tuple[str, str | None]:
        """``("ok", client_id)``, ``("expired", client_id)`` or ``("unknown", None)``."""
        issued = self._tokens.get(token)
        if issued is None or issued.service != service:
            return "unknown", None
        if self._clock() >= issued.expires_at:
            return "expired", issued.client_id
        return "ok", issued.client_id

    def clear(self) -> None:
        """Forget every token (admin reset): clients must fetch new ones."""
        with self._lock:
            self._tokens.clear()

    def __len__(self) -> int:
        return len(self._tokens)


def _challenge(spec: IntegrationSpec) -> dict[str, str]:
    scheme = spec.auth.scheme
    if scheme == "basic":
        return {"WWW-Authenticate": 'Basic realm="sandbox"'}
    if scheme in ("bearer", "oauth2"):
        return {"WWW-Authenticate": 'Bearer realm="sandbox"'}
    return {}


def unauthorized(
    spec: IntegrationSpec, message: str | None = None, *, missing: bool = False
) -> AuthFailure:
    """The vendor's 401 (Slack: HTTP 200 ``invalid_auth`` / ``not_authed``)."""
    if spec.name == "slack":
        code = "not_authed" if missing else "invalid_auth"
        return AuthFailure(200, vendor_error_body("slack", 401, code), reason="unauthorized")
    return AuthFailure(401, vendor_error_body(spec.name, 401, message), _challenge(spec))


def forbidden(spec: IntegrationSpec) -> AuthFailure:
    """The vendor's 403 (Slack: HTTP 200 ``missing_scope``)."""
    if spec.name == "slack":
        return AuthFailure(
            200, vendor_error_body("slack", 403, "missing_scope"), reason="forbidden"
        )
    return AuthFailure(403, vendor_error_body(spec.name, 403), reason="forbidden")


def _basic(value: str | None) -> tuple[str, str] | None:
    if not value or value[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(value[6:].strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def check_request(
    spec: IntegrationSpec, headers: Headers, query_string: bytes, tokens: TokenStore
) -> str | AuthFailure:
    """Check one request's credentials against ``spec.auth``.

    Returns:
        The principal (``sandbox-user`` for tokens and basic auth, the OAuth2 client id,
        ``anonymous`` for ``none``), or the :class:`AuthFailure` to answer.
    """
    auth = spec.auth
    scheme = auth.scheme
    if scheme == "none":
        return "anonymous"
    if scheme == "basic":
        creds = _basic(header(headers, b"authorization"))
        if creds is None:
            return unauthorized(spec, missing=True)
        if FORBIDDEN_CREDENTIAL in creds:
            return forbidden(spec)
        if creds != (SANDBOX_USER, SANDBOX_PASSWORD):
            return unauthorized(spec)
        return creds[0]
    if scheme == "oauth2":
        token = _bearer(header(headers, b"authorization"))
        if token is None:
            return unauthorized(spec, missing=True)
        if token == FORBIDDEN_CREDENTIAL:
            return forbidden(spec)
        verdict, client = tokens.check(spec.name, token)
        if verdict == "expired":
            return unauthorized(spec, "Access token has expired")
        if verdict != "ok" or client is None:
            return unauthorized(spec)
        return client
    # bearer / api_key: a static token, in a header (with prefix) or a query parameter
    if auth.query_param:
        values = parse_qs(query_string.decode("latin-1")).get(auth.query_param)
        presented = values[-1] if values else None
        expected_prefix = ""
    else:
        name = "authorization" if scheme == "bearer" else auth.header.lower()
        presented = header(headers, name.encode("latin-1"))
        expected_prefix = "Bearer " if scheme == "bearer" else auth.prefix
    if presented is None:
        return unauthorized(spec, missing=True)
    if expected_prefix and presented[: len(expected_prefix)].lower() == expected_prefix.lower():
        token_value: str | None = presented[len(expected_prefix) :].strip()
    elif expected_prefix:
        token_value = None
    else:
        token_value = presented.strip()
    if token_value == FORBIDDEN_CREDENTIAL:
        return forbidden(spec)
    if token_value != SANDBOX_TOKEN:
        return unauthorized(spec)
    return SANDBOX_USER


def token_endpoint(
    spec: IntegrationSpec, headers: Headers, body: bytes, tokens: TokenStore, ttl: float
) -> tuple[int, dict[str, Any]]:
    """Answer ``POST /<service>/oauth2/token`` (client-credentials grant).

    The client authenticates with HTTP basic or ``client_id``/``client_secret`` fields in
    a form (or JSON, as Auth0 accepts) body. Errors follow RFC 6749 §5.2.

    Returns:
        ``(status, json_body)``.
    """
    ctype = (header(headers, b"content-type") or "").lower()
    fields: dict[str, Any]
    if "json" in ctype:
        try:
            loaded = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "invalid_request", "error_description": "malformed JSON body"}
        fields = loaded if isinstance(loaded, dict) else {}
    else:
        fields = dict(parse_qsl(body.decode("utf-8", "replace")))
    grant = fields.get("grant_type")
    if grant != "client_credentials":
        return 400, {
            "error": "unsupported_grant_type" if grant else "invalid_request",
            "error_description": "only grant_type=client_credentials is supported",
        }
    creds = _basic(header(headers, b"authorization"))
    if creds is None:
        creds = (str(fields.get("client_id", "")), str(fields.get("client_secret", "")))
    if creds != (SANDBOX_CLIENT_ID, SANDBOX_PASSWORD):
        return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
    token = tokens.issue(spec.name, creds[0], ttl)
    expires: int | float = int(ttl) if float(ttl).is_integer() else ttl
    answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": expires}
    scope = fields.get("scope") or spec.auth.scope
    if scope:
        answer["scope"] = scope
    return 200, answer
