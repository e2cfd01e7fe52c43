"""Microsoft Teams through Microsoft Graph v1.0: send a channel message.

Follows https://learn.microsoft.com/en-us/graph/api/channel-post-messages (``POST
/teams/{team-id}/channels/{channel-id}/messages`` with a ``chatMessage`` body) and the
``chatMessage`` resource reference. The base URL keeps Graph's version path
(``https://graph.microsoft.com/v1.0``). Auth is OAuth2 client credentials against the
tenant's ``/oauth2/v2.0/token`` endpoint, handled by the shared engine (token cached and
refreshed, one replay on 401).

Note: Graph documents application permissions for this call only for message
migration (``Teamwork.Migrate.All``); ordinary posts need a delegated token
(``ChannelMessage.Send``). A client-credentials token therefore gets 403
(:class:`PermissionDeniedError`) from the real Graph for normal posts.

Retry- and rerun-safety of :meth:`TeamsClient.send_channel_message`: Graph takes no
idempotency key and a ``chatMessage`` has no custom property, so the body (always sent as
HTML; text is escaped) ends with an empty hidden element carrying the key,
``<span hidden itemprop="junction-idempotency-key" itemid="<key>"></span>``, and before
the first attempt and every re-attempt the channel's root messages (``GET
/teams/{team-id}/channels/{channel-id}/messages``, https://learn.microsoft.com/en-us/graph/
api/channel-list-messages: ``$top`` at most 50, ``@odata.nextLink`` paging) are searched
for it; a found message is returned with ``existing=True``. The key is the caller's
``idempotency_key`` (messages of the last 24 hours searched), else derived from team,
channel, subject and content (over ``dedupe_window_seconds``, default 300; 0 always
posts, and only this call's own re-attempts look). Reading needs
``ChannelMessage.Read.All`` (delegated) or ``ChannelMessage.Read.Group`` (application);
without it the lookup's 403 stops the call before anything is posted. Graph sanitises
message HTML by rules it does not document: the marker element is parsed, not matched as
text, but a tenant that strips it makes every lookup come back empty (a rerun then posts
again). Checked against the sandbox, not a live tenant.
"""

from __future__ import annotations

import html
from datetime import datetime
from html.parser import HTMLParser
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.idempotency import KeyScope, key_scope

MARKER_PROP = "junction-idempotency-key"
"""``itemprop`` of the hidden element that carries the idempotency key."""

LOOKUP_PAGES = 4
"""Pages of 50 root messages (newest first) read by one lookup."""


def marker(key: str) -> str:
    """The hidden element appended to a message body for idempotency key ``key``."""
    return f'<span hidden itemprop="{MARKER_PROP}" itemid="{html.escape(key)}"></span>'


class _MarkerFinder(HTMLParser):
    """Collects the keys of marker elements in a message body (attribute order, quoting
    and case as the server rewrote them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.keys: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("itemprop") == MARKER_PROP and found.get("itemid"):
            self.keys.add(str(found["itemid"]))


def marker_keys(content: str) -> set[str]:
    """The idempotency keys carried by marker elements in ``content``."""
    finder = _MarkerFinder()
    finder.feed(content)
    finder.close()
    return finder.keys


# --- inputs -------------------------------------------------------------------------------


class SendChannelMessageParams(BaseModel):
    """Input of :meth:`TeamsClient.send_channel_message`.

    Attributes:
        team_id: The team's id (a GUID).
        channel_id: The channel's id (``19:...@thread.tacv2``).
        content: The message body.
        content_type: ``html`` or ``text`` (text is sent as escaped HTML, with line
            breaks, so that the hidden idempotency marker can ride along).
        subject: Optional subject line (shown above the body in a channel).
        idempotency_key: Identifies this logical message across retries and reruns
            (e.g. ``<run id>:<step>``); a message carrying it in the last 24 hours is
            returned instead of posting again. Default: derived from team, channel,
            subject and content, searched over ``dedupe_window_seconds``.
        dedupe_window_seconds: Without ``idempotency_key``: the same message posted
            this recently is this one (0: always post).
    """

    team_id: str = Field(min_length=1)
    channel_id: str = Field(min_length=1)
    content: str = Field(min_length=1)
    content_type: Literal["html", "text"] = "html"
    subject: str | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=1000)
    dedupe_window_seconds: int = Field(300, ge=0, le=86400)

    def scope(self) -> KeyScope:
        """The idempotency key and how far back a lookup searches for it."""
        return key_scope(
            self.idempotency_key,
            self.dedupe_window_seconds,
            self.team_id,
            self.channel_id,
            self.subject,
            self.content_type,
            self.content,
        )

    def body(self, key: str) -> dict[str, object]:
        """The ``chatMessage`` request body: HTML, the hidden key marker at the end."""
        content = self.content
        if self.content_type == "text":
            content = html.escape(content).replace("\n", "<br>")
        body: dict[str, object] = {
            "body": {"contentType": "html", "content": content + marker(key)}
        }
        if self.subject is not None:
            body["subject"] = self.subject
        return body


# --- outputs ------------------------------------------------------------------------------


class ItemBody(BaseModel):
    """Graph ``itemBody``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    content_type: str = Field(alias="contentType")
    content: str


class ChatMessage(BaseModel):
    """Graph ``chatMessage`` (the fields Junction reads).

    Attributes:
        existing: Set by Junction (not a Graph field): found by its idempotency marker
            (an earlier attempt or run posted it), not posted by this call.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    created_date_time: datetime | None = Field(None, alias="createdDateTime")
    subject: str | None = None
    body: ItemBody
    web_url: str | None = Field(None, alias="webUrl")
    message_type: str | None = Field(None, alias="messageType")
    existing: bool = False


class ListedMessage(BaseModel):
    """A root message as ``GET .../messages`` lists it (system and deleted messages
    included, so the body is optional)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    created_date_time: datetime | None = Field(None, alias="createdDateTime")
    last_modified_date_time: datetime | None = Field(None, alias="lastModifiedDateTime")
    deleted_date_time: datetime | None = Field(None, alias="deletedDateTime")
    body: ItemBody | None = None


class ChatMessageList(BaseModel):
    """One page of ``GET .../messages`` (``value`` plus ``@odata.nextLink``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    value: list[ListedMessage] = Field(default_factory=list)
    next_link: str | None = Field(None, alias="@odata.nextLink")


# --- client -------------------------------------------------------------------------------


class TeamsClient(IntegrationClient):
    """Typed Microsoft Graph client for Teams (``get_client("teams")``)."""

    service = "teams"

    @action(read_only=False, idempotent=True, key_field="idempotency_key")
    async def send_channel_message(self, params: SendChannelMessageParams) -> ChatMessage:
        """Post a message to a Teams channel, once per idempotency key.

        The key rides in a hidden marker at the end of the HTML body. Before the first
        attempt and after an ambiguous failure (5xx, timeout, reset, 429), the
        channel's recent root messages are searched for it and a found message is
        returned with ``existing=True``; only when the lookup proves nothing was posted
        is the message posted (again). A lookup that fails stops the call.

        Args:
            params: Team, channel, content, idempotency key and dedupe window.

        Returns:
            The created (or found) message.
        """
        # Channel ids look like "19:abc@thread.tacv2": Graph takes ':' and '@' encoded.
        path = self.path(
            "/teams/{team}/channels/{channel}/messages",
            team=params.team_id,
            channel=params.channel_id,
        )
        scope = params.scope()

        return await self.post_once(
            path,
            action="send_channel_message",
            model=ChatMessage,
            json=params.body(scope.key),
            lookup=lambda: self._find_message(path, scope),
            lookup_first=scope.lookup_first,
        )

    async def _find_message(self, path: str, scope: KeyScope) -> ChatMessage | None:
        """The root message carrying ``scope.key``, among those changed since
        ``scope.since`` (Graph lists root messages newest first, by last change)."""
        url: str | None = path
        for _ in range(LOOKUP_PAGES):
            if url is None:
                break
            page = await self.request(
                "GET",
                url,
                action="send_channel_message.lookup",
                model=ChatMessageList,
                params={"$top": 50} if url == path else None,
            )
            recent = False
            for listed in page.value:
                changed = listed.last_modified_date_time or listed.created_date_time
                if changed is not None and changed < scope.since:
                    continue
                recent = True
                if (
                    listed.deleted_date_time is None
                    and listed.body is not None
                    and scope.key in marker_keys(listed.body.content)
                ):
                    found = listed.model_dump(by_alias=True)
                    return ChatMessage.model_validate({**found, "existing": True})
            if not recent:
                break  # this page is older than the window: so are the next ones
            url = page.next_link
        return None
