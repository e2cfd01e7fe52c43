"""WebexClient end to end against the running sandbox (state checked via the admin API),
plus MockTransport cases for what the sandbox cannot produce."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.errors import (
    AuthenticationError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
)
from integrations.registry import get_action
from integrations.sandbox.app import SandboxServer
from integrations.urls import next_link
from integrations.webex import (
    AddMembershipParams,
    CreateMessageParams,
    CreateRoomParams,
    GetMeParams,
    WebexClient,
)
from tests.helpers import (
    ClientFactory,
    clear_faults,
    faults_seen,
    mock_client,
    route_requests,
    set_faults,
    state,
)

BOT = "junction-bot@webex.bot"


def rooms_titled(sb: SandboxServer, title: str) -> list[dict[str, Any]]:
    return [r for r in state(sb, "webex")["rooms"].values() if r["title"] == title]


async def new_room(make_client: ClientFactory, title: str = "Incident 42") -> str:
    async with (wx := make_client(WebexClient)):
        return (await wx.create_room(CreateRoomParams(title=title))).id


# --- me and rooms -----------------------------------------------------------------------------


async def test_get_me(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (wx := make_client(WebexClient)):
        me = await wx.get_me(GetMeParams())
    assert me.emails == [BOT] and me.type == "bot"
    assert me.id in state(sb, "webex")["people"]


async def test_create_room_then_reuse(sb: SandboxServer, make_client: ClientFactory) -> None:
    async with (wx := make_client(WebexClient)):
        me = await wx.get_me(GetMeParams())
        room = await wx.create_room(CreateRoomParams(title="Incident 42"))
        again = await wx.create_room(CreateRoomParams(title="Incident 42"))
    assert not room.unchanged and again.unchanged and again.id == room.id
    [stored] = rooms_titled(sb, "Incident 42")
    assert stored["creatorId"] == me.id and stored["type"] == "group"
    assert any(
        m["roomId"] == room.id and m["personId"] == me.id
        for m in state(sb, "webex")["memberships"].values()
    )


async def test_create_room_finds_ours_beyond_the_first_page(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """'Ops Alerts' (ours) is the oldest of 106 rooms: found on page 2 via Link."""
    async with (wx := make_client(WebexClient)):
        found = await wx.create_room(CreateRoomParams(title="Ops Alerts"))
        assert found.unchanged
        shallow = await wx.create_room(CreateRoomParams(title="Ops Alerts", max_pages=1))
    assert not shallow.unchanged  # search depth is the documented limit of the strategy
    assert len(rooms_titled(sb, "Ops Alerts")) == 2


async def test_create_room_never_takes_over_someone_elses_room(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    async with (wx := make_client(WebexClient)):
        room = await wx.create_room(CreateRoomParams(title="Project room 7"))
    assert not room.unchanged
    creators = {r["creatorId"] for r in rooms_titled(sb, "Project room 7")}
    assert len(creators) == 2  # Alice's and ours


async def test_create_room_lost_response_never_duplicates(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "webex", lost_after_commit=1.0)
    async with (wx := make_client(WebexClient)):
        room = await wx.create_room(CreateRoomParams(title="War room"))
        assert faults_seen(sb, "webex", "lost_after_commit") == 1
        clear_faults(sb, "webex")
        again = await wx.create_room(CreateRoomParams(title="War room"))
    assert room.unchanged and again.id == room.id
    assert len(rooms_titled(sb, "War room")) == 1


# --- messages -------------------------------------------------------------------------------


async def test_direct_messages_are_deduplicated(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateMessageParams(to_person_email="bob@example.com", text="Your laptop is ready")
    async with (wx := make_client(WebexClient)):
        msg = await wx.create_message(params)
        dup = await wx.create_message(params)
        # The same 1:1 room addressed by id: a bot may read its direct rooms back.
        by_room = await wx.create_message(CreateMessageParams(room_id=msg.roomId, text=params.text))
        md = await wx.create_message(CreateMessageParams(room_id=msg.roomId, markdown="**Down**"))
        md_dup = await wx.create_message(
            CreateMessageParams(room_id=msg.roomId, markdown="**Down**")
        )
        forced = await wx.create_message(params.model_copy(update={"dedupe_window_seconds": 0}))
    assert msg.roomType == "direct" and msg.toPersonEmail == "bob@example.com"
    assert not msg.unchanged and dup.unchanged and by_room.unchanged
    assert dup.id == by_room.id == msg.id
    assert md_dup.unchanged and md_dup.id == md.id and md.markdown == "**Down**"
    assert forced.id not in (msg.id, md.id)
    stored = list(state(sb, "webex")["messages"].values())
    assert sorted(m["text"] for m in stored) == ["Down", params.text, params.text]
    assert all(m["personEmail"] == BOT and m["roomId"] == msg.roomId for m in stored)
    assert msg.roomId is not None
    assert state(sb, "webex")["rooms"][msg.roomId]["type"] == "direct"


async def test_direct_message_lost_response_never_duplicates(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    params = CreateMessageParams(to_person_email="alice@example.com", text="Paging on-call")
    set_faults(sb, "webex", lost_after_commit=1.0)
    async with (wx := make_client(WebexClient)):
        msg = await wx.create_message(params)
        assert faults_seen(sb, "webex", "lost_after_commit") == 1
        clear_faults(sb, "webex")
        again = await wx.create_message(params)
    assert msg.unchanged and again.id == msg.id
    assert len(state(sb, "webex")["messages"]) == 1


async def test_bot_group_room_message_is_posted_once(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """A bot cannot list its own posts in a group room (Webex wants mentionedPeople=me),
    so the client does not try, posts once per call and never blindly re-posts."""
    room_id = await new_room(make_client)
    async with (wx := make_client(WebexClient)):
        first = await wx.create_message(CreateMessageParams(room_id=room_id, text="Build failed"))
        second = await wx.create_message(CreateMessageParams(room_id=room_id, text="Build failed"))
        set_faults(sb, "webex", lost_after_commit=1.0)
        with pytest.raises(ServerError):
            await wx.create_message(CreateMessageParams(room_id=room_id, text="Build fixed"))
    assert first.id != second.id and not second.unchanged
    assert (
        faults_seen(sb, "webex", "lost_after_commit") == 1
    )  # one POST: the ambiguous failure was not retried
    assert route_requests(sb, "webex", "GET /messages") == 0
    assert route_requests(sb, "webex", "GET /rooms/{room_id}") == 1  # room type, cached per client
    texts = sorted(m["text"] for m in state(sb, "webex")["messages"].values())
    assert texts == ["Build failed", "Build failed", "Build fixed"]


async def test_sandbox_refuses_bot_listing_group_messages(make_client: ClientFactory) -> None:
    room_id = await new_room(make_client)
    async with (wx := make_client(WebexClient)):
        with pytest.raises(PermissionDeniedError, match="mentionedPeople"):
            await wx.request("GET", "/messages", action="raw", params={"roomId": room_id})
        listed = await wx.request(
            "GET", "/messages", action="raw", params={"roomId": room_id, "mentionedPeople": "me"}
        )
    assert listed == {"items": []}


def webex_mock(handler: Any) -> WebexClient:
    return mock_client(
        WebexClient,
        handler,
        base_url="https://webexapis.test/v1",
        credentials=Credentials(token=SecretStr("t")),
    )


async def test_user_token_reads_group_room_back() -> None:
    """With a person's (integration) token, group-room messages are deduplicated too."""
    seen: list[str] = []
    ours = {
        "id": "m1",
        "roomId": "r1",
        "roomType": "group",
        "text": "hi",
        "personId": "me",
        "created": "2099-01-01T00:00:00.000Z",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/people/me":
            return httpx.Response(200, json={"id": "me", "type": "person"})
        if request.method == "GET" and request.url.path == "/v1/messages":
            assert request.url.params["roomId"] == "r1"
            return httpx.Response(200, json={"items": [ours]})
        return httpx.Response(200, json={**ours, "id": "m2"})

    async with (wx := webex_mock(handler)):
        found = await wx.create_message(CreateMessageParams(room_id="r1", text="hi"))
        posted = await wx.create_message(CreateMessageParams(room_id="r1", text="other"))
    assert found.unchanged and found.id == "m1"
    assert posted.id == "m2" and not posted.unchanged
    assert seen.count("POST /v1/messages") == 1 and "GET /v1/rooms/r1" not in seen


async def test_create_message_without_dedupe_is_not_retried(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    """With the check off, an ambiguous failure is raised, never blindly re-posted."""
    params = CreateMessageParams(
        to_person_email="bob@example.com", text="x", dedupe_window_seconds=0
    )
    set_faults(sb, "webex", lost_after_commit=1.0)
    async with (wx := make_client(WebexClient)):
        with pytest.raises(ServerError):
            await wx.create_message(params)
    assert len(state(sb, "webex")["messages"]) == 1
    assert route_requests(sb, "webex", "GET /messages/direct") == 0


async def test_message_to_unknown_room(make_client: ClientFactory) -> None:
    async with (wx := make_client(WebexClient)):
        with pytest.raises(NotFoundError):
            await wx.create_message(CreateMessageParams(room_id="nope", text="x"))


def test_message_params_validate() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        CreateMessageParams(room_id="r", to_person_email="a@example.com", text="x")
    with pytest.raises(ValidationError, match="exactly one"):
        CreateMessageParams(text="x")
    with pytest.raises(ValidationError, match="text or markdown"):
        CreateMessageParams(room_id="r")
    assert CreateMessageParams(to_person_email="a@example.com", markdown="*m*").body() == {
        "toPersonEmail": "a@example.com",
        "markdown": "*m*",
    }


# --- memberships ----------------------------------------------------------------------------


async def test_add_membership_then_409_returns_existing(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    room_id = await new_room(make_client)
    params = AddMembershipParams(
        room_id=room_id, person_email="alice@example.com", is_moderator=True
    )
    async with (wx := make_client(WebexClient)):
        added = await wx.add_membership(params)
        again = await wx.add_membership(params)
    assert not added.unchanged and again.unchanged and again.id == added.id
    assert added.isModerator and added.personEmail == "alice@example.com"
    members = [m for m in state(sb, "webex")["memberships"].values() if m["roomId"] == room_id]
    assert sorted(m["personEmail"] for m in members) == ["alice@example.com", BOT]


async def test_add_membership_lost_response(sb: SandboxServer, make_client: ClientFactory) -> None:
    room_id = await new_room(make_client)
    set_faults(sb, "webex", lost_after_commit=1.0)
    async with (wx := make_client(WebexClient)):
        member = await wx.add_membership(
            AddMembershipParams(room_id=room_id, person_email="new.hire@example.com")
        )
    assert faults_seen(sb, "webex", "lost_after_commit") == 1 and member.unchanged
    emails = [
        m["personEmail"]
        for m in state(sb, "webex")["memberships"].values()
        if m["roomId"] == room_id
    ]
    assert sorted(emails) == [BOT, "new.hire@example.com"]


# --- errors ---------------------------------------------------------------------------------


async def test_bad_token_is_authentication_error(make_client: ClientFactory) -> None:
    async with (wx := make_client(WebexClient, wrong_secret="wrong")):
        with pytest.raises(AuthenticationError):
            await wx.get_me(GetMeParams())
        with pytest.raises(AuthenticationError):
            await wx.create_room(CreateRoomParams(title="x"))


async def test_garbled_answer_is_malformed_response(
    sb: SandboxServer, make_client: ClientFactory
) -> None:
    set_faults(sb, "webex", malformed_rate=1.0, malformed="html")
    async with (wx := make_client(WebexClient)):
        with pytest.raises(MalformedResponseError, match="HTML"):
            await wx.get_me(GetMeParams())


async def test_rooms_page_without_items_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/people/me":
            return httpx.Response(200, json={"id": "me", "emails": [BOT]})
        return httpx.Response(200, json={"rooms": []})

    async with (wx := webex_mock(handler)):
        with pytest.raises(MalformedResponseError, match="items"):
            await wx.create_room(CreateRoomParams(title="x"))


def test_next_link() -> None:
    headers = httpx.Headers({"link": '<https://webexapis.com/v1/rooms?cursor=abc>; rel="next"'})
    assert next_link(headers) == "https://webexapis.com/v1/rooms?cursor=abc"
    assert next_link(httpx.Headers()) is None


def test_action_flags() -> None:
    assert get_action("webex", "get_me").read_only
    for name in ("create_room", "add_membership"):
        spec = get_action("webex", name)
        assert spec.idempotent and not spec.read_only
    # Not every target can be read back (bots in group rooms): declared non-idempotent.
    message = get_action("webex", "create_message")
    assert not message.idempotent and not message.read_only
