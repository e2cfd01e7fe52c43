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
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from integrations.actions import action
from integrations.base import IntegrationClient

# --- inputs -------------------------------------------------------------------------------


class SendChannelMessageParams(BaseModel):
    """Input of :meth:`TeamsClient.send_channel_message`.

    Attributes:
        team_id: The team's id (a GUID).
        channel_id: The channel's id (``19:...@thread.tacv2``).
        content: The message body.
        content_type: ``html`` or ``text``.
        subject: Optional subject line (shown above the body in a channel).
    """

    team_id: str = Field(min_length=1)
    channel_id: str = Field(min_length=1)
    content: str = Field(min_length=1)
    content_type: Literal["html", "text"] = "html"
    subject: str | None = None

    def body(self) -> dict[str, object]:
        """The ``chatMessage`` request body."""
        body: dict[str, object] = {
            "body": {"contentType": self.content_type, "content": self.content}
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
    """Graph ``chatMessage`` (the fields Junction reads)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    created_date_time: datetime | None = Field(None, alias="createdDateTime")
    subject: str | None = None
    body: ItemBody
    web_url: str | None = Field(None, alias="webUrl")
    message_type: str | None = Field(None, alias="messageType")


# --- client -------------------------------------------------------------------------------


class TeamsClient(IntegrationClient):
    """Typed Microsoft Graph client for Teams (``get_client("teams")``)."""

    service = "teams"

    @action(read_only=False, idempotent=False)
    async def send_channel_message(self, params: SendChannelMessageParams) -> ChatMessage:
        """Post a message to a Teams channel.

        Not retry-safe, so not retried once the request may have reached Graph: the
        endpoint has no idempotency key and reading the channel back to check needs the
        protected ``ChannelMessage.Read.All`` permission. Refused connections and 429s
        (nothing processed) are still retried.

        Args:
            params: Team, channel and content.

        Returns:
            The created message.
        """
        # Channel ids look like "19:abc@thread.tacv2": Graph takes ':' and '@' encoded.
        path = self.path(
            "/teams/{team}/channels/{channel}/messages",
            team=params.team_id,
            channel=params.channel_id,
        )
        return await self.request(
            "POST",
            path,
            action="send_channel_message",
            model=ChatMessage,
            json=params.body(),
            idempotent=False,
        )
