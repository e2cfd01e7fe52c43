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

Retry- and rerun-safety of :meth:`SlackClient.post_message`: ``chat.postMessage`` takes
no idempotency key, so each message carries one in its message metadata
(``metadata={"event_type": "junction_idempotency", "event_payload": {"idempotency_key":
<key>}}``, https://docs.slack.dev/messaging/message-metadata), and before the first
attempt and every re-attempt the channel's history (``conversations.history``, or
``conversations.replies`` for a thread reply; with ``include_all_metadata=true`` and
``oldest``, cursor-paged) is searched for it; a found message is returned with
``existing=True`` instead of posting again. The key is the caller's ``idempotency_key``
(searched over 24 hours), else derived from channel, text, blocks and thread (searched
over ``dedupe_window_seconds``, default 300; 0 always posts, and only this call's own
re-attempts look). History needs a channel id: a channel name is resolved through
``conversations.list``. Where the history cannot be read (a user id as the channel, a
channel the token cannot list, no ``channels:history``/``groups:history`` scope) the
message is posted once and an ambiguous failure is raised, never re-posted blind. (Slack
throttles the history methods hard for commercially distributed non-Marketplace apps;
an internal app, as Junction's is, gets the ordinary Tier 3 limits.)
"""

from __future__ import annotations

import json
import re
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
from integrations.idempotency import KeyScope, key_scope

_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

METADATA_EVENT = "junction_idempotency"
"""``event_type`` of the message metadata that carries the idempotency key."""

LOOKUP_PAGES = 5
"""Pages (of ``LOOKUP_PAGE_SIZE``) of history or channels read by one lookup."""
LOOKUP_PAGE_SIZE = 200  # Slack recommends at most 200 per page

# Conversation ids whose history can be read as they are (channels, private, DMs).
_CONVERSATION_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
# A user id as the channel posts to the app's DM with that user (no id to read back).
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")

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
    "not_in_channel": (PermissionDeniedError, 403),
    "channel_not_found": (NotFoundError, 404),
    "thread_not_found": (NotFoundError, 404),
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
        idempotency_key: Identifies this logical message across retries and reruns
            (e.g. ``<run id>:<step>``); a message carrying it in the last 24 hours is
            returned instead of posting again. Default: derived from channel, text,
            blocks and thread, searched over ``dedupe_window_seconds``.
        dedupe_window_seconds: Without ``idempotency_key``: the same message posted
            this recently is this one (0: always post).
    """

    channel: str = Field(min_length=1)
    text: str | None = None
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    unfurl_links: bool | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=1000)
    dedupe_window_seconds: int = Field(300, ge=0, le=86400)

    @model_validator(mode="after")
    def _text_or_blocks(self) -> PostMessageParams:
        if not self.text and not self.blocks:
            raise ValueError("chat.postMessage needs text or blocks")
        return self

    def scope(self) -> KeyScope:
        """The idempotency key and how far back a lookup searches for it."""
        return key_scope(
            self.idempotency_key,
            self.dedupe_window_seconds,
            self.channel.lstrip("#"),
            self.text,
            self.blocks,
            self.thread_ts,
        )

    def form(self, key: str) -> dict[str, str]:
        """The form fields (``blocks`` and ``metadata`` JSON-encoded, booleans as
        ``true``/``false``), the idempotency key in the message metadata."""
        form = {"channel": self.channel}
        if self.text:
            form["text"] = self.text
        if self.blocks:
            form["blocks"] = json.dumps(self.blocks, separators=(",", ":"))
        if self.thread_ts:
            form["thread_ts"] = self.thread_ts
        if self.unfurl_links is not None:
            form["unfurl_links"] = "true" if self.unfurl_links else "false"
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"idempotency_key": key}}
        form["metadata"] = json.dumps(metadata, separators=(",", ":"))
        return form


class LookupUserParams(BaseModel):
    """Input of :meth:`SlackClient.lookup_user_by_email`.

    Attributes:
        email: Email address of a member of the workspace.
    """

    email: str = Field(pattern=_EMAIL)


# --- outputs ------------------------------------------------------------------------------


class MessageMetadata(BaseModel):
    """Message metadata (``event_type`` plus a free-form ``event_payload``)."""

    model_config = ConfigDict(extra="allow")

    event_type: str
    event_payload: dict[str, Any] = Field(default_factory=dict)


class SlackMessage(BaseModel):
    """A message as Slack echoes it."""

    model_config = ConfigDict(extra="allow")

    type: str = "message"
    text: str | None = None
    ts: str | None = None
    user: str | None = None
    bot_id: str | None = None
    thread_ts: str | None = None
    metadata: MessageMetadata | None = None

    def carries(self, key: str) -> bool:
        """Whether the message's metadata holds the idempotency key ``key``."""
        meta = self.metadata
        return (
            meta is not None
            and meta.event_type == METADATA_EVENT
            and meta.event_payload.get("idempotency_key") == key
        )


class PostMessageResult(BaseModel):
    """Success answer of ``chat.postMessage``.

    Attributes:
        channel: Id of the channel the message went to.
        ts: The message's timestamp id (use it as ``thread_ts`` to reply).
        existing: Set by Junction (not a Slack field): the message was found by its
            idempotency key (an earlier attempt or run posted it), not posted by this call.
    """

    model_config = ConfigDict(extra="allow")

    ok: Literal[True]
    channel: str
    ts: str
    message: SlackMessage | None = None
    existing: bool = False


class ResponseMetadata(BaseModel):
    """Slack's cursor pagination (an empty ``next_cursor`` ends the list)."""

    model_config = ConfigDict(extra="allow")

    next_cursor: str = ""


class ConversationHistory(BaseModel):
    """Answer of ``conversations.history`` / ``conversations.replies``."""

    model_config = ConfigDict(extra="allow")

    ok: Literal[True]
    messages: list[SlackMessage] = Field(default_factory=list)
    has_more: bool = False
    response_metadata: ResponseMetadata | None = None


class SlackChannel(BaseModel):
    """A conversation as ``conversations.list`` lists it."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    is_archived: bool = False


class ConversationList(BaseModel):
    """Answer of ``conversations.list``."""

    model_config = ConfigDict(extra="allow")

    ok: Literal[True]
    channels: list[SlackChannel] = Field(default_factory=list)
    response_metadata: ResponseMetadata | None = None


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Channel name -> id from conversations.list (None: not among the listed channels).
        self._channel_ids: dict[str, str | None] = {}

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def post_message(self, params: PostMessageParams) -> PostMessageResult:
        """Post a message to a channel (``chat.postMessage``), once per idempotency key.

        The key rides in the message metadata. Before the first attempt and after an
        ambiguous failure (5xx, timeout, reset, 429), the channel's history (the
        thread's replies for a reply) is searched for it and a found message is
        returned with ``existing=True``; only when the lookup proves nothing was posted
        is the message posted (again). A lookup that fails stops the call. Where the
        history cannot be read (see the module docstring) the message is posted once.

        Args:
            params: Channel, content, idempotency key and dedupe window.

        Returns:
            The posted (or found) message's channel id and ``ts``.

        Raises:
            NotFoundError: ``channel_not_found``.
            AuthenticationError: ``invalid_auth`` / ``not_authed``.
            RateLimitError: Slack throttled the call.
            BadRequestError: Any other Slack error code.
        """
        scope = params.scope()
        try:
            channel_id = await self._conversation_id(params.channel)
            if channel_id is not None and scope.lookup_first:
                found = await self._find_message(params, channel_id, scope)
                if found is not None:
                    return found
        except PermissionDeniedError:
            channel_id = None  # no scope to list or read the channel: cannot look back
        if channel_id is None:
            return await self._post(params, scope.key)  # once: a lost answer is raised
        conversation = channel_id
        return await self.create_once(
            lookup=lambda: self._find_message(params, conversation, scope),
            create=lambda: self._post(params, scope.key),
            lookup_first=False,  # looked above
        )

    async def _post(self, params: PostMessageParams, key: str) -> PostMessageResult:
        """Send the bare ``chat.postMessage`` (one attempt once it may have reached Slack)."""
        return await self.request(
            "POST",
            "/chat.postMessage",
            action="post_message",
            model=PostMessageResult,
            data=params.form(key),
            idempotent=False,
            max_attempts=1,  # re-attempts go through the lookup first
        )

    async def _conversation_id(self, channel: str) -> str | None:
        """The id whose history holds messages posted to ``channel``, or ``None``.

        Ids are used as they are; a name is looked up in ``conversations.list`` (public
        and private channels the token can see, once per client); a user id (a DM) gives
        ``None``.
        """
        if _CONVERSATION_ID.match(channel):
            return channel
        name = channel.lstrip("#").lower()
        if _USER_ID.match(channel) or not name:
            return None
        if name not in self._channel_ids:
            cursor = ""
            for _ in range(LOOKUP_PAGES):
                query: dict[str, Any] = {
                    "types": "public_channel,private_channel",
                    "exclude_archived": "true",
                    "limit": LOOKUP_PAGE_SIZE,
                }
                if cursor:
                    query["cursor"] = cursor
                page = await self.request(
                    "GET",
                    "/conversations.list",
                    action="post_message.channel",
                    model=ConversationList,
                    params=query,
                )
                for found in page.channels:
                    if found.name:
                        self._channel_ids.setdefault(found.name.lower(), found.id)
                cursor = page.response_metadata.next_cursor if page.response_metadata else ""
                if name in self._channel_ids or not cursor:
                    break
            self._channel_ids.setdefault(name, None)
        return self._channel_ids[name]

    async def _find_message(
        self, params: PostMessageParams, channel_id: str, scope: KeyScope
    ) -> PostMessageResult | None:
        """Our message carrying ``scope.key`` since ``scope.since``, newest pages first."""
        method = "/conversations.replies" if params.thread_ts else "/conversations.history"
        query: dict[str, Any] = {
            "channel": channel_id,
            "oldest": f"{scope.since.timestamp():.6f}",
            "limit": LOOKUP_PAGE_SIZE,
            "include_all_metadata": "true",
        }
        if params.thread_ts:
            query["ts"] = params.thread_ts
        for _ in range(LOOKUP_PAGES):
            page = await self.request(
                "GET", method, action="post_message.lookup", model=ConversationHistory, params=query
            )
            for message in page.messages:
                if message.ts and message.carries(scope.key):
                    return PostMessageResult(
                        ok=True, channel=channel_id, ts=message.ts, message=message, existing=True
                    )
            cursor = page.response_metadata.next_cursor if page.response_metadata else ""
            if not (page.has_more and cursor):
                break
            query["cursor"] = cursor
        return None

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
