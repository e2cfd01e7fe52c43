"""Sandbox Webex: people (``/people/me`` is the bot), rooms, memberships, messages.

Plays the Webex messaging API (https://developer.webex.com/docs/api/v1/): base64
``ciscospark://us/<KIND>/<n>`` ids, ``{"message", "errors": [{"description"}],
"trackingId"}`` error bodies, ``Link: <...>; rel="next"`` pagination with ``max``, 409
when a person already is a member of a room, and 1:1 messages (``toPersonEmail``) that
open a direct room. ``GET /rooms`` lists only rooms the bot belongs to, and like a real
bot it may list a group room's messages only with ``mentionedPeople=me`` (403
otherwise; the status is assumed). Seeded: the bot
(``junction-bot@webex.bot``), two people, 105 group rooms created by Alice with the bot
in them (more than a page), and an older room "Ops Alerts" created by the bot.
Collections: ``people``, ``rooms``, ``memberships``, ``messages``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
    link_header,
    paginate,
    vendor_error,
)

routes = VendorRoutes("webex")
routes.lists("people", "id", "emails", "displayName")
routes.lists("rooms", "id", "title")

BOT_EMAIL = "junction-bot@webex.bot"
ORG_ID = base64.b64encode(b"ciscospark://us/ORGANIZATION/sandbox").decode().rstrip("=")
_T0 = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)


def webex_id(kind: str, n: int | str) -> str:
    """A Webex-style id: unpadded base64 of ``ciscospark://us/<KIND>/<n>``."""
    return base64.b64encode(f"ciscospark://us/{kind}/{n}".encode()).decode().rstrip("=")


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _person(state: ServiceState, email: str, name: str, kind: str = "person") -> dict[str, Any]:
    people = state.collection("people")
    pid = webex_id("PEOPLE", state.next_id())
    person = {
        "id": pid,
        "emails": [email],
        "displayName": name,
        "nickName": name.split()[0],
        "firstName": name.split()[0],
        "lastName": name.split()[-1],
        "orgId": ORG_ID,
        "type": kind,
        "created": _iso(_T0),
        "status": "active",
    }
    people[pid] = person
    return person


def _add_room(
    state: ServiceState, title: str, creator: dict[str, Any], when: str, kind: str = "group"
) -> dict[str, Any]:
    rid = webex_id("ROOM", state.next_id())
    room = {
        "id": rid,
        "title": title,
        "type": kind,
        "isLocked": False,
        "lastActivity": when,
        "creatorId": creator["id"],
        "created": when,
        "ownerId": ORG_ID,
        "isPublic": False,
        "isReadOnly": False,
    }
    state.collection("rooms")[rid] = room
    return room


def _add_membership(
    state: ServiceState, room: dict[str, Any], person: dict[str, Any], moderator: bool, when: str
) -> dict[str, Any]:
    mid = webex_id("MEMBERSHIP", state.next_id())
    membership = {
        "id": mid,
        "roomId": room["id"],
        "personId": person["id"],
        "personEmail": person["emails"][0],
        "personDisplayName": person["displayName"],
        "personOrgId": ORG_ID,
        "isModerator": moderator,
        "isMonitor": False,
        "roomType": room["type"],
        "created": when,
    }
    state.collection("memberships")[mid] = membership
    return membership


@routes.seeder("people")
def seed(state: ServiceState, base: str = "") -> None:
    """Fill an empty state: the bot, Alice, Bob, 106 rooms."""
    state.collection("messages")
    bot = _person(state, BOT_EMAIL, "Junction Bot", "bot")
    alice = _person(state, "alice@example.com", "Alice Example")
    _person(state, "bob@example.com", "Bob Example")
    ops = _add_room(state, "Ops Alerts", bot, _iso(_T0 - timedelta(days=30)))
    _add_membership(state, ops, bot, True, ops["created"])
    for n in range(105):
        when = _iso(_T0 + timedelta(hours=n))
        room = _add_room(state, f"Project room {n}", alice, when)
        _add_membership(state, room, alice, True, when)
        _add_membership(state, room, bot, False, when)


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _me(state: ServiceState) -> dict[str, Any]:
    return next(p for p in state.collection("people").values() if BOT_EMAIL in p["emails"])


def _person_by_email(state: ServiceState, email: str, create: bool) -> dict[str, Any] | None:
    for person in state.collection("people").values():
        if email.lower() in (e.lower() for e in person["emails"]):
            return person
    if not create:
        return None
    # Webex invites unknown addresses; the sandbox simply makes the person.
    return _person(state, email, email.split("@")[0].replace(".", " ").title())


def _is_member(state: ServiceState, room_id: str, person_id: str) -> dict[str, Any] | None:
    for m in state.collection("memberships").values():
        if m["roomId"] == room_id and m["personId"] == person_id:
            return m
    return None


def _bad(message: str) -> VendorError:
    return vendor_error("webex", 400, message)


def _not_found() -> VendorError:
    return vendor_error("webex", 404, "The requested resource could not be found.")


def _page(req: SandboxRequest, items: list[dict[str, Any]], default_max: int = 100) -> Response:
    try:
        limit = int(req.query.get("max", default_max))
    except ValueError:
        raise _bad("Invalid max") from None
    page = paginate(items, cursor=req.query.get("cursor"), limit=limit)
    link = link_header(str(req.request.url), page, "cursor")
    return json_response({"items": page.items}, headers={"Link": link} if link else None)


def _now() -> str:
    return _iso(datetime.now(UTC))


# --- people -------------------------------------------------------------------------------


@routes.route("GET", "/people/me")
async def people_me(req: SandboxRequest) -> Response:
    """The bot."""
    return json_response(_me(_state(req)))


@routes.route("GET", "/people")
async def list_people(req: SandboxRequest) -> Response:
    """People by ``email``."""
    email = req.query.get("email")
    if not email:
        raise _bad("email, displayName, or id list should be specified.")
    person = _person_by_email(_state(req), email, create=False)
    return json_response({"items": [person] if person else []})


# --- rooms --------------------------------------------------------------------------------


@routes.route("GET", "/rooms")
async def list_rooms(req: SandboxRequest) -> Response:
    """Rooms the bot is in; ``type``, ``teamId``, ``sortBy=created|lastactivity`` (newest first)."""
    state = _state(req)
    me = _me(state)
    mine = {
        m["roomId"] for m in state.collection("memberships").values() if m["personId"] == me["id"]
    }
    rooms = [r for r in state.collection("rooms").values() if r["id"] in mine]
    if req.query.get("type"):
        rooms = [r for r in rooms if r["type"] == req.query["type"]]
    if req.query.get("teamId"):
        rooms = [r for r in rooms if r.get("teamId") == req.query["teamId"]]
    sort = req.query.get("sortBy", "id")
    if sort in ("created", "lastactivity"):
        key = "created" if sort == "created" else "lastActivity"
        rooms.sort(key=lambda r: r[key], reverse=True)
    return _page(req, rooms)


@routes.route("POST", "/rooms")
async def create_room(req: SandboxRequest) -> Response:
    """Create a group room with the bot as its first member (no title uniqueness)."""
    state = _state(req)
    body = req.json() or {}
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _bad("title: may not be empty")
    me = _me(state)
    when = _now()
    room = _add_room(state, title, me, when)
    if body.get("teamId"):
        room["teamId"] = body["teamId"]
    _add_membership(state, room, me, False, when)
    return json_response(room)


@routes.route("GET", "/rooms/{room_id}")
async def get_room(req: SandboxRequest) -> Response:
    """One room the bot belongs to."""
    state = _state(req)
    room = state.collection("rooms").get(req.path_params["room_id"])
    if room is None or not _is_member(state, room["id"], _me(state)["id"]):
        raise _not_found()
    return json_response(room)


# --- memberships --------------------------------------------------------------------------


@routes.route("GET", "/memberships")
async def list_memberships(req: SandboxRequest) -> Response:
    """Memberships, by ``roomId`` and optionally ``personEmail``/``personId``."""
    state = _state(req)
    found = list(state.collection("memberships").values())
    me = _me(state)
    visible = {m["roomId"] for m in found if m["personId"] == me["id"]}
    found = [m for m in found if m["roomId"] in visible]
    if req.query.get("roomId"):
        found = [m for m in found if m["roomId"] == req.query["roomId"]]
    if req.query.get("personEmail"):
        email = req.query["personEmail"].lower()
        found = [m for m in found if m["personEmail"].lower() == email]
    if req.query.get("personId"):
        found = [m for m in found if m["personId"] == req.query["personId"]]
    return _page(req, found)


@routes.route("POST", "/memberships")
async def add_membership(req: SandboxRequest) -> Response:
    """Add a person to a room; 409 when already a member."""
    state = _state(req)
    body = req.json() or {}
    room = state.collection("rooms").get(body.get("roomId") or "")
    if room is None or not _is_member(state, room["id"], _me(state)["id"]):
        raise _not_found()
    email = body.get("personEmail")
    if not email and not body.get("personId"):
        raise _bad("personId or personEmail must be specified")
    if email:
        person = _person_by_email(state, email, create=True)
    else:
        person = state.collection("people").get(body["personId"])
        if person is None:
            raise _not_found()
    assert person is not None
    if _is_member(state, room["id"], person["id"]):
        raise vendor_error(
            "webex", 409, "Failed to add participant. User is already a participant."
        )
    membership = _add_membership(state, room, person, bool(body.get("isModerator")), _now())
    return json_response(membership)


# --- messages -----------------------------------------------------------------------------


def _direct_room(
    state: ServiceState, me: dict[str, Any], other: dict[str, Any], create: bool
) -> dict[str, Any] | None:
    for room in state.collection("rooms").values():
        if (
            room["type"] == "direct"
            and _is_member(state, room["id"], me["id"])
            and _is_member(state, room["id"], other["id"])
        ):
            return room
    if not create:
        return None
    when = _now()
    room = _add_room(state, other["displayName"], me, when, kind="direct")
    _add_membership(state, room, me, False, when)
    _add_membership(state, room, other, False, when)
    return room


@routes.route("POST", "/messages")
async def create_message(req: SandboxRequest) -> Response:
    """Post to a room (``roomId``) or a person (``toPersonEmail``)."""
    state = _state(req)
    body = req.json() or {}
    text, markdown = body.get("text"), body.get("markdown")
    if not text and not markdown and not body.get("files"):
        raise _bad("Message must contain text, markdown or files")
    me = _me(state)
    to_email = body.get("toPersonEmail")
    if body.get("roomId"):
        room = state.collection("rooms").get(body["roomId"])
        if room is None or not _is_member(state, room["id"], me["id"]):
            raise _not_found()
    elif to_email:
        other = _person_by_email(state, to_email, create=True)
        assert other is not None
        room = _direct_room(state, me, other, create=True)
        assert room is not None
    else:
        raise _bad("roomId, toPersonId or toPersonEmail must be specified")
    when = _now()
    message: dict[str, Any] = {
        "id": webex_id("MESSAGE", state.next_id()),
        "roomId": room["id"],
        "roomType": room["type"],
        # Webex renders markdown to plain text when no text is given.
        "text": text if text else str(markdown).replace("**", "").replace("_", ""),
        "personId": me["id"],
        "personEmail": BOT_EMAIL,
        "created": when,
    }
    if markdown:
        message["markdown"] = markdown
    if to_email:
        message["toPersonEmail"] = to_email
    state.collection("messages")[message["id"]] = message
    room["lastActivity"] = when
    return json_response(message)


def _newest_first(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(messages, key=lambda m: m["created"], reverse=True)


@routes.route("GET", "/messages/direct")
async def list_direct_messages(req: SandboxRequest) -> Response:
    """1:1 messages with ``personEmail`` (or ``personId``), newest first."""
    state = _state(req)
    email = req.query.get("personEmail")
    if email:
        other = _person_by_email(state, email, create=False)
    elif req.query.get("personId"):
        other = state.collection("people").get(req.query["personId"])
    else:
        raise _bad("personId or personEmail must be specified")
    room = _direct_room(state, _me(state), other, create=False) if other else None
    found = [m for m in state.collection("messages").values() if room and m["roomId"] == room["id"]]
    return json_response({"items": _newest_first(found)})


@routes.route("GET", "/messages")
async def list_messages(req: SandboxRequest) -> Response:
    """Messages of a room (``roomId`` required), newest first."""
    state = _state(req)
    room_id = req.query.get("roomId")
    if not room_id:
        raise _bad("roomId cannot be null")
    room = state.collection("rooms").get(room_id)
    if room is None or not _is_member(state, room_id, _me(state)["id"]):
        raise _not_found()
    me = _me(state)
    found = [m for m in state.collection("messages").values() if m["roomId"] == room_id]
    if req.query.get("mentionedPeople") in ("me", me["id"]):
        found = [m for m in found if me["id"] in m.get("mentionedPeople", [])]
    elif me["type"] == "bot" and room["type"] == "group":
        # Webex: "Bots must include this parameter [mentionedPeople] to list messages in
        # group rooms (spaces)". The status of the refusal is assumed (403).
        raise vendor_error(
            "webex", 403, "Bots must specify mentionedPeople=me to list messages in a space."
        )
    return _page(req, _newest_first(found), default_max=50)


@routes.route("GET", "/messages/{message_id}")
async def get_message(req: SandboxRequest) -> Response:
    """One message."""
    message = _state(req).collection("messages").get(req.path_params["message_id"])
    if message is None:
        raise _not_found()
    return json_response(message)
