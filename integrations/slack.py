"""Slack Web API: post a message, look a user up by email.

Follows Slack's method reference, https://api.slack.com/methods/chat.postMessage,
https://api.slack.com/methods/users.lookupByEmail and https://api.slack.com/web (spec:
slackapi/slack-api-specs, ``web-api/slack_web_openapi_v2.json``). The base URL keeps the
API path (``https://slack.com/api``), so methods are called as ``/chat.postMessage``.
The token goes in ``Authorization: Bearer``. ``chat.postMessage`` is sent form-encoded
(``blocks`` as a JSON string): Slack accepts form and JSON bodies, and its published
spec documents only the form parameters, so form works against both.

Slack reports most failures as HTTP 200 with ``{"ok": false, "error": "<code>"}``. The
engine only sees HTTP codes, so this client checks ``ok`` in the engine's
``_check_response`` hook (inside the attempt, so retries, metrics and the breaker see the
failure) and raises the typed error the code means: ``invalid_auth``/``not_authed`` ->
:class:`AuthenticationError`, ``ratelimited`` -> :class:`RateLimitError`,
``channel_not_found``/``users_not_found`` -> :class:`NotFoundError`, anything else
:class:`BadRequestError` (plus permission and server-side codes, see ``_ERROR_CODES``).
The error's ``status_code`` is the HTTP status the code stands for (Slack sent 200).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

# Slack error code -> (typed error, the HTTP status it stands for).
_ERROR_CODES: dict[str, tuple[type[APIStatusError], int]] = {
    "not_authed": (AuthenticationError, 401),
    "invalid_auth": (AuthenticationError, 401),
    "account_inactive": (AuthenticationError, 401),
    "token_revoked": (AuthenticationError, 401),
    "token_expired": (AuthenticationError, 401),
    "missing_scope": (PermissionDeniedError, 403),
    "no_permission": (PermissionDeniedError, 403),
    "not_allowed_token_type": (PermissionDeniedError, 403),
    "ekm_access_denied": (PermissionDeniedError, 403),
    "ratelimited": (RateLimitError, 429),
    "rate_limited": (RateLimitError, 429),  # the spelling in Slack's 2020 spec
    "channel_not_found": (NotFoundError, 404),
    "users_not_found": (NotFoundError, 404),
    "user_not_found": (NotFoundError, 404),
    # Slack's own transient failures: retried like a 5xx (only when that is safe).
    "fatal_error": (ServerError, 500),
    "internal_error": (ServerError, 500),
    "service_unavailable": (ServerError, 503),
    "request_timeout": (ServerError, 504),
}


# --- inputs -------------------------------------------------------------------------------


class PostMessageParams(BaseModel):
    """Input of :meth:`SlackClient.post_message` (``chat.postMessage``).

    Attributes:
        channel: Channel id (``C0123ABCDE``) or name (``#ops``).
        text: Message text (mrkdwn); with ``blocks`` it becomes the notification fallback.
        blocks: Block Kit blocks.
        thread_ts: Reply in the thread of this message ``ts``.
        unfurl_links: Unfurl links in the text.
    """

    channel: str = Field(min_length=1)
    text: str | None = None
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    unfurl_links: bool | None = None

    @model_validator(mode="after")
    def _text_or_blocks(self) -> PostMessageParams:
        if not self.text and not self.blocks:
            raise ValueError("chat.postMessage needs text or blocks")
        return self

    def form(self) -> dict[str, str]:
        """The form fields (``blocks`` JSON-encoded, booleans as ``true``/``false``)."""
        form = {"channel": self.channel}
        if self.text:
            form["text"] = self.text
        if self.blocks:
            form["blocks"] = json.dumps(self.blocks, separators=(",", ":"))
        if self.thread_ts:
            form["thread_ts"] = self.thread_ts
        if self.unfurl_links is not None:
            form["unfurl_links"] = "true" if self.unfurl_links else "false"
        return form


class LookupUserParams(BaseModel):
    """Input of :meth:`SlackClient.lookup_user_by_email`.

    Attributes:
        email: Email address of a member of the workspace.
    """

    email: str = Field(pattern=_EMAIL)


# --- outputs ------------------------------------------------------------------------------


class SlackMessage(BaseModel):
    """A message as Slack echoes it."""

    model_config = ConfigDict(extra="allow")

    type: str = "message"
    text: str | None = None
    ts: str | None = None
    user: str | None = None
    bot_id: str | None = None


class PostMessageResult(BaseModel):
    """Success answer of ``chat.postMessage``.

    Attributes:
        channel: Id of the channel the message went to.
        ts: The message's timestamp id (use it as ``thread_ts`` to reply).
    """

    model_config = ConfigDict(extra="allow")

    ok: Literal[True]
    channel: str
    ts: str
    message: SlackMessage | None = None


class SlackUserProfile(BaseModel):
    """The part of a user's profile Junction reads."""

    model_config = ConfigDict(extra="allow")

    email: str | None = None
    real_name: str | None = None
    display_name: str | None = None


class SlackUser(BaseModel):
    """A workspace member."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    real_name: str | None = None
    deleted: bool = False
    is_bot: bool = False
    tz: str | None = None
    profile: SlackUserProfile = Field(default_factory=SlackUserProfile)


class LookupUserResult(BaseModel):
    """Success answer of ``users.lookupByEmail``."""

    model_config = ConfigDict(extra="allow")

    ok: Literal[True]
    user: SlackUser


# --- client -------------------------------------------------------------------------------


class SlackClient(IntegrationClient):
    """Typed Slack Web API client (``get_client("slack")``)."""

    service = "slack"

    @action(read_only=False, idempotent=False)
    async def post_message(self, params: PostMessageParams) -> PostMessageResult:
        """Post a message to a channel (``chat.postMessage``).

        Not retry-safe, so not retried after the request may have reached Slack:
        ``chat.postMessage`` documents no idempotency key, so a retry after a lost
        response would post the message twice. The
        engine still retries when nothing was processed: a refused connection, HTTP 429
        or ``{"error": "ratelimited"}``.

        Args:
            params: Channel and content.

        Returns:
            The posted message's channel id and ``ts``.

        Raises:
            NotFoundError: ``channel_not_found``.
            AuthenticationError: ``invalid_auth`` / ``not_authed``.
            RateLimitError: Slack throttled the call.
            BadRequestError: Any other Slack error code.
        """
        return await self.request(
            "POST",
            "/chat.postMessage",
            action="post_message",
            model=PostMessageResult,
            data=params.form(),
            idempotent=False,
        )

    @action(read_only=True)
    async def lookup_user_by_email(self, params: LookupUserParams) -> SlackUser:
        """Find a workspace member by email (``users.lookupByEmail``).

        Args:
            params: The email address.

        Returns:
            The member.

        Raises:
            NotFoundError: ``users_not_found``.
        """
        result = await self.request(
            "GET",
            "/users.lookupByEmail",
            action="lookup_user_by_email",
            model=LookupUserResult,
            params={"email": params.email},
        )
        return result.user

    # -- Slack's HTTP-200 errors

    def _check_response(
        self, response: httpx.Response, body: Any, *, where: str, action: str
    ) -> None:
        """Raise the typed error of an ``{"ok": false, "error": "<code>"}`` body."""
        if not (isinstance(body, dict) and body.get("ok") is False):
            return
        code = str(body.get("error") or "unknown_error")
        cls, status = _ERROR_CODES.get(code, (BadRequestError, 400))
        message = f"Slack error {code!r} from {where} (HTTP {response.status_code})"
        if cls is AuthenticationError:
            message += " (check JUNCTION_SLACK_TOKEN)"
        if cls is ServerError:
            self.breaker.record_failure()  # Slack is failing even though HTTP said 200
        raise self._make_status_error(cls, message, response, action=action, status_code=status)
