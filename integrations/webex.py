"""Cisco Webex messaging: post messages, create rooms, add members, identify the bot.

Follows the Webex REST API reference, https://developer.webex.com/docs/api/v1/messages,
.../v1/rooms, .../v1/memberships and .../v1/people/get-my-own-details (spec:
webex/webex-openapi-specs ``public-spec/webex-messaging.json``). Base URL
``https://webexapis.com/v1``, bearer token; lists page with ``Link: <...>; rel="next"``.

Webex has no idempotency key, so the side-effecting actions are made retry-safe by
checking before creating (and again after an ambiguous failure):

- ``create_room``: a *group* room with exactly this title created by the caller
  (``creatorId`` = ``/people/me``) among the rooms it belongs to is reused. Room titles
  are not unique in Webex; scoping the match to rooms we created keeps us from
  hijacking someone else's room of the same name.
- ``add_membership``: Webex answers 409 when the person is already a member; the
  existing membership is then looked up and returned.
- ``create_message``: a message with the same text/markdown posted by us to the same
  room (or 1:1 person) within ``dedupe_window_seconds`` (default 300) is treated as
  this one. A notification repeated within five minutes is a duplicate to a reader
  anyway; set the window to 0 to always post. Limit: Webex lets a *bot* list a group
  room's messages only with ``mentionedPeople=me`` (its own posts are not listed), so
  a bot posting to a group room cannot read back what it sent. There, and with the
  window at 0, the message is posted once and an ambiguous failure (5xx, timeout) is
  raised rather than retried: a possible lost message beats a certain duplicate. For
  that reason the action is declared non-idempotent to the workflow runner.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from integrations.actions import action
from integrations.base import IntegrationClient
from integrations.errors import ConflictError

M = TypeVar("M", bound=BaseModel)


# --- inputs -------------------------------------------------------------------------------


class CreateMessageParams(BaseModel):
    """Input of :meth:`WebexClient.create_message`.

    Exactly one of ``room_id`` and ``to_person_email``; at least one of ``text`` and
    ``markdown``.

    Attributes:
        room_id: Post to this room.
        to_person_email: Post a 1:1 message to this person.
        text: Plain text (also the fallback for clients without rich text).
        markdown: Markdown text.
        dedupe_window_seconds: Reuse an identical message we posted this recently
            (0 disables the check).
    """

    room_id: str | None = None
    to_person_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    text: str | None = Field(None, max_length=7439)
    markdown: str | None = Field(None, max_length=7439)
    dedupe_window_seconds: int = Field(300, ge=0, le=86400)

    @model_validator(mode="after")
    def _one_target_some_content(self) -> CreateMessageParams:
        if (self.room_id is None) == (self.to_person_email is None):
            raise ValueError("give exactly one of room_id and to_person_email")
        if not self.text and not self.markdown:
            raise ValueError("give text or markdown")
        return self

    def body(self) -> dict[str, Any]:
        """The ``POST /messages`` body."""
        body: dict[str, Any] = {}
        if self.room_id:
            body["roomId"] = self.room_id
        else:
            body["toPersonEmail"] = self.to_person_email
        if self.text:
            body["text"] = self.text
        if self.markdown:
            body["markdown"] = self.markdown
        return body


class CreateRoomParams(BaseModel):
    """Input of :meth:`WebexClient.create_room`.

    Attributes:
        title: Room title.
        team_id: Create the room in this team.
        max_pages: Pages of our rooms searched for an existing one (100 rooms a page).
    """

    title: str = Field(min_length=1)
    team_id: str | None = None
    max_pages: int = Field(10, ge=1, le=100)


class AddMembershipParams(BaseModel):
    """Input of :meth:`WebexClient.add_membership`."""

    room_id: str = Field(min_length=1)
    person_email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    is_moderator: bool = False


class GetMeParams(BaseModel):
    """Input of :meth:`WebexClient.get_me` (no parameters)."""


# --- outputs ------------------------------------------------------------------------------


class Message(BaseModel):
    """A posted message.

    Attributes:
        unchanged: Set by Junction: an identical recent message of ours was returned
            instead of posting again.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    roomId: str | None = None  # Webex's camelCase names, kept as-is
    roomType: str | None = None
    text: str | None = None
    markdown: str | None = None
    personId: str | None = None
    personEmail: str | None = None
    toPersonEmail: str | None = None
    created: datetime | None = None
    unchanged: bool = False


class Room(BaseModel):
    """A room (space).

    Attributes:
        unchanged: Set by Junction: an existing room of ours with this title was reused.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    title: str | None = None
    type: Literal["direct", "group"] | None = None
    isLocked: bool | None = None
    teamId: str | None = None
    creatorId: str | None = None
    created: datetime | None = None
    lastActivity: datetime | None = None
    unchanged: bool = False


class Membership(BaseModel):
    """A person's membership of a room.

    Attributes:
        unchanged: Set by Junction: the person was already a member (Webex's 409).
    """

    model_config = ConfigDict(extra="allow")

    id: str
    roomId: str
    personId: str | None = None
    personEmail: str | None = None
    personDisplayName: str | None = None
    isModerator: bool = False
    created: datetime | None = None
    unchanged: bool = False


class Person(BaseModel):
    """A Webex person (for ``/people/me``: the token's bot or user)."""

    model_config = ConfigDict(extra="allow")

    id: str
    emails: list[str] = Field(default_factory=list)
    displayName: str | None = None
    nickName: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    orgId: str | None = None
    type: str | None = None
    created: datetime | None = None


class _Page(BaseModel, Generic[M]):
    """One page of a Webex list: ``{"items": [...]}``."""

    items: list[M]


# --- the client ---------------------------------------------------------------------------


class WebexClient(IntegrationClient):
    """Typed client of the Webex messaging API."""

    service = "webex"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._me: Person | None = None
        self._room_types: dict[str, str | None] = {}  # room id -> "direct"/"group"

    async def _me_cached(self, action: str) -> Person:
        if self._me is None:
            self._me = await self.request("GET", "/people/me", action=action, model=Person)
        return self._me

    async def _items(
        self, path: str, query: dict[str, Any], item: type[M], action: str, max_pages: int
    ) -> list[M]:
        pages, _ = await self.link_pages(
            path,
            action=action,
            model=_Page[item],  # type: ignore[valid-type]
            params=query,
            max_pages=max_pages,
        )
        return [entry for page in pages for entry in page.items]

    # -- actions

    @action(read_only=True)
    async def get_me(self, params: GetMeParams) -> Person:
        """Details of the person (or bot) the token belongs to.

        Args:
            params: No parameters.

        Returns:
            The person.
        """
        self._me = await self.request("GET", "/people/me", action="get_me", model=Person)
        return self._me

    async def _can_read_back(self, params: CreateMessageParams) -> bool:
        """Whether we may list the target conversation's messages (see the module doc)."""
        if params.dedupe_window_seconds == 0:
            return False
        me = await self._me_cached("create_message")
        if me.type != "bot" or params.room_id is None:
            return True  # people read any room they are in; bots read their 1:1 rooms
        if params.room_id not in self._room_types:
            room = await self.request(
                "GET",
                self.path("/rooms/{room_id}", room_id=params.room_id),
                action="create_message",
                model=Room,
            )
            self._room_types[params.room_id] = room.type
        return self._room_types[params.room_id] == "direct"

    async def _find_message(self, params: CreateMessageParams) -> Message | None:
        me = await self._me_cached("create_message")
        if params.room_id:
            path, query = "/messages", {"roomId": params.room_id, "max": 50}
        else:
            path, query = "/messages/direct", {"personEmail": params.to_person_email}
        since = datetime.now(UTC) - timedelta(seconds=params.dedupe_window_seconds)
        for message in await self._items(path, query, Message, "create_message", 1):
            if (
                message.personId == me.id
                and (message.created is None or message.created >= since)
                and (
                    message.markdown == params.markdown
                    if params.markdown is not None
                    else message.text == params.text
                )
            ):
                message.unchanged = True
                return message
        return None

    async def post_message(self, params: CreateMessageParams) -> Message:
        """Send the bare ``POST /messages`` (no duplicate check; not retry-safe alone)."""
        return await self.request(
            "POST", "/messages", action="create_message", model=Message, json=params.body()
        )

    @action(read_only=False, idempotent=False)
    async def create_message(self, params: CreateMessageParams) -> Message:
        """Post a message to a room or a person, without double-posting on retries.

        Where the conversation can be read back (see the module docstring), our
        identical message from the last ``dedupe_window_seconds`` is returned instead of
        posting again, before the first attempt and after an ambiguous failure. Where it
        cannot, the message is posted once and ambiguous failures are raised, not
        retried.

        Args:
            params: Target, content and dedupe window.

        Returns:
            The message; ``unchanged`` when an identical recent one was reused.
        """
        if not await self._can_read_back(params):
            return await self.post_message(params)  # once: a lost answer is raised
        return await self.create_once(
            lookup=lambda: self._find_message(params),
            create=lambda: self.post_message(params),
            lookup_first=True,
        )

    async def _find_room(self, params: CreateRoomParams) -> Room | None:
        me = await self._me_cached("create_room")
        query: dict[str, Any] = {"type": "group", "sortBy": "created", "max": 100}
        if params.team_id:
            query["teamId"] = params.team_id
        rooms = await self._items("/rooms", query, Room, "create_room", params.max_pages)
        for room in rooms:
            if room.title == params.title and room.creatorId == me.id:
                room.unchanged = True
                return room
        return None

    async def post_room(self, params: CreateRoomParams) -> Room:
        """Send the bare ``POST /rooms`` (no lookup; not retry-safe alone)."""
        body: dict[str, Any] = {"title": params.title}
        if params.team_id:
            body["teamId"] = params.team_id
        return await self.request("POST", "/rooms", action="create_room", model=Room, json=body)

    @action(read_only=False, idempotent=True)
    async def create_room(self, params: CreateRoomParams) -> Room:
        """Create a group room, or return our existing group room with this title.

        Retry-safe: the rooms we belong to (newest first, up to ``max_pages`` pages) are
        searched for a group room with exactly this title created by us, before creating
        and after any ambiguous failure.

        Args:
            params: Title, optional team, search depth.

        Returns:
            The room; ``unchanged`` when an existing one was reused.
        """
        return await self.create_once(
            lookup=lambda: self._find_room(params),
            create=lambda: self.post_room(params),
            lookup_first=True,
        )

    @action(read_only=False, idempotent=True)
    async def add_membership(self, params: AddMembershipParams) -> Membership:
        """Add a person to a room; an existing membership is returned as is.

        Retry-safe: a repeat gets Webex's 409, answered by looking the membership up.

        Args:
            params: Room, person email, moderator flag.

        Returns:
            The membership; ``unchanged`` when the person already was a member.
        """
        body = {
            "roomId": params.room_id,
            "personEmail": params.person_email,
            "isModerator": params.is_moderator,
        }
        try:
            return await self.request(
                "POST",
                "/memberships",
                action="add_membership",
                model=Membership,
                json=body,
                idempotent=True,  # a replay gets 409, handled below
            )
        except ConflictError:
            found = await self._items(
                "/memberships",
                {"roomId": params.room_id, "personEmail": params.person_email},
                Membership,
                "add_membership",
                1,
            )
            if not found:
                raise
            found[0].unchanged = True
            return found[0]
