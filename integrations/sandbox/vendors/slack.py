"""Sandbox Slack: chat.postMessage, conversations.history/replies/list,
users.lookupByEmail, auth.test.

Plays the Slack Web API (https://api.slack.com/web): every answer is HTTP 200 with
``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}`` (``channel_not_found``,
``no_text``, ``users_not_found``, ``invalid_arguments``, ``invalid_cursor``,
``invalid_metadata_format``, ``thread_not_found``), bodies are JSON or form-encoded (a
query string too). ``chat.postMessage`` finds a channel by id (``C...``) or name
(``general`` / ``#general``) and keeps the message's ``metadata``; the history methods
take an id only, as Slack's do. ``conversations.history`` lists a channel's messages
newest first without thread replies, ``conversations.replies`` a thread oldest first
(parent included); both filter by ``oldest``/``latest`` (exclusive unless
``inclusive``), return ``metadata`` only with ``include_all_metadata=true`` and page with
``limit`` + ``cursor`` (``has_more``, ``response_metadata.next_cursor``), as
``conversations.list`` does. Collections: ``channels`` and ``users`` (seeded),
``messages`` (keyed by ``<channel>:<ts>``).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from integrations.sandbox.api import SandboxRequest, ServiceState, VendorRoutes, json_response

routes = VendorRoutes("slack")
routes.lists("channels", "id", "name")

TEAM_ID = "T0SANDBOX"
BOT_USER_ID = "U0SANDBOT"
SEED_CHANNELS = [("C0000000001", "general"), ("C0000000002", "ops"), ("C0000000003", "alerts")]
SEED_USERS = [
    ("U0000000001", "ada", "Ada Lovelace", "ada.lovelace@example.com"),
    ("U0000000002", "grace", "Grace Hopper", "grace.hopper@example.com"),
    ("U0000000003", "alan", "Alan Turing", "alan.turing@example.com"),
]


@routes.seeder("channels")
def seed(state: ServiceState, base: str = "") -> None:
    """Fill an empty state with three channels and three members."""
    channels = state.collection("channels")
    for cid, name in SEED_CHANNELS:
        channels[cid] = {"id": cid, "name": name, "is_channel": True, "is_archived": False}
    users = state.collection("users")
    for uid, name, real, email in SEED_USERS:
        users[uid] = {
            "id": uid,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real,
            "deleted": False,
            "is_bot": False,
            "is_app_user": False,
            "updated": 1700000000,
            "tz": "Europe/London",
            "profile": {"email": email, "real_name": real, "display_name": name},
        }
    state.collection("messages")


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _error(code: str) -> Response:
    return json_response({"ok": False, "error": code})


def _args(req: SandboxRequest) -> dict[str, Any]:
    """Arguments from the query string and a JSON or form body, like Slack merges them."""
    args: dict[str, Any] = dict(req.query)
    ctype = req.headers.get("content-type", "")
    if req.body:
        if "json" in ctype:
            body = req.json()
            if not isinstance(body, dict):
                raise _Invalid("json_not_object")
            args.update(body)
        else:
            args.update(req.form())
    return args


class _Invalid(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _channel(state: ServiceState, ref: str) -> dict[str, Any] | None:
    channels = state.collection("channels")
    if ref in channels:
        return channels[ref]
    name = ref.lstrip("#")
    return next((c for c in channels.values() if c["name"] == name), None)


_last_ts = [0]
_ts_lock = threading.Lock()


def _ts() -> str:
    # Slack's ts: epoch seconds and microseconds, unique and increasing (it orders history).
    with _ts_lock:
        micros = max(time.time_ns() // 1000, _last_ts[0] + 1)
        _last_ts[0] = micros
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _metadata(raw: Any) -> dict[str, Any] | None:
    """The message metadata argument (a JSON string in a form), or raise ``_Invalid``."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise _Invalid("invalid_metadata_format") from None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("event_type"), str)
        or not isinstance(raw.get("event_payload", {}), dict)
    ):
        raise _Invalid("invalid_metadata_schema")
    return {"event_type": raw["event_type"], "event_payload": raw.get("event_payload", {})}


def _flag(args: dict[str, Any], name: str) -> bool:
    return str(args.get(name, "")).lower() in ("1", "true")


def _limit(args: dict[str, Any], default: int, maximum: int) -> int:
    try:
        return max(1, min(maximum, int(args.get("limit") or default)))
    except (TypeError, ValueError):
        raise _Invalid("invalid_limit") from None


def _page(items: list[dict[str, Any]], args: dict[str, Any], limit: int) -> tuple[list[Any], str]:
    """Slack cursor paging: an opaque base64 ``next_ts:<offset>`` cursor ("" when done)."""
    cursor = str(args.get("cursor") or "")
    start = 0
    if cursor:
        try:
            tag, _, offset = base64.b64decode(cursor, validate=True).decode().partition(":")
            start = int(offset)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _Invalid("invalid_cursor") from None
        if tag != "next_ts" or start < 0:
            raise _Invalid("invalid_cursor")
    end = start + limit
    more = end < len(items)
    return items[start:end], base64.b64encode(f"next_ts:{end}".encode()).decode() if more else ""


def _window(args: dict[str, Any]) -> tuple[float, float, bool]:
    try:
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or time.time() + 86400)
    except ValueError:
        raise _Invalid("invalid_ts_oldest") from None
    return oldest, latest, _flag(args, "inclusive")


def _in_window(ts: str, window: tuple[float, float, bool]) -> bool:
    oldest, latest, inclusive = window
    value = float(ts)
    if inclusive:
        return oldest <= value <= latest
    return oldest < value < latest


def _shown(message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
    skip = {"channel"} if with_metadata else {"channel", "metadata"}
    return {k: v for k, v in message.items() if k not in skip}


@routes.route("POST", "/chat.postMessage")
async def post_message(req: SandboxRequest) -> Response:
    """Post a message; ``channel_not_found`` / ``no_text`` as Slack answers."""
    state = _state(req)
    try:
        args = _args(req)
    except _Invalid as exc:
        return _error(exc.code)
    channel_ref = str(args.get("channel") or "")
    if not channel_ref:
        return _error("channel_not_found")
    channel = _channel(state, channel_ref)
    if channel is None:
        return _error("channel_not_found")
    if channel.get("is_archived"):
        return _error("is_archived")
    blocks = args.get("blocks")
    if isinstance(blocks, str):  # form-encoded: a JSON string
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return _error("invalid_blocks")
    if blocks is not None and not isinstance(blocks, list):
        return _error("invalid_blocks")
    text = args.get("text")
    if not text and not blocks:
        return _error("no_text")
    try:
        metadata = _metadata(args.get("metadata"))
    except _Invalid as exc:
        return _error(exc.code)
    ts = _ts()
    message: dict[str, Any] = {
        "type": "message",
        "subtype": "bot_message",
        "text": text or "",
        "ts": ts,
        "user": BOT_USER_ID,
        "bot_id": "B0SANDBOX",
        "team": TEAM_ID,
    }
    if blocks:
        message["blocks"] = blocks
    if args.get("thread_ts"):
        message["thread_ts"] = str(args["thread_ts"])
    if metadata is not None:
        message["metadata"] = metadata
    state.collection("messages")[f"{channel['id']}:{ts}"] = {**message, "channel": channel["id"]}
    return json_response({"ok": True, "channel": channel["id"], "ts": ts, "message": message})


def _channel_messages(state: ServiceState, channel_id: str) -> list[dict[str, Any]]:
    found = [m for m in state.collection("messages").values() if m["channel"] == channel_id]
    return sorted(found, key=lambda m: float(m["ts"]))


Select = Callable[[list[dict[str, Any]], dict[str, Any]], list[dict[str, Any]]]


def _read(req: SandboxRequest, select: Select, **extra: Any) -> Response:
    """A history method: ``select(messages oldest first, args)`` picks and orders the
    messages (or raises ``_Invalid``); the page, its cursor and metadata as Slack answers."""
    state = _state(req)
    try:
        args = _args(req)
        limit = _limit(args, 100, 999)
        channel_id = str(args.get("channel") or "")
        if channel_id not in state.collection("channels"):
            return _error("channel_not_found")
        page, cursor = _page(select(_channel_messages(state, channel_id), args), args, limit)
    except _Invalid as exc:
        return _error(exc.code)
    meta = _flag(args, "include_all_metadata")
    return json_response(
        {
            "ok": True,
            "messages": [_shown(m, meta) for m in page],
            "has_more": bool(cursor),
            **extra,
            "response_metadata": {"next_cursor": cursor},
        }
    )


def _history(messages: list[dict[str, Any]], args: dict[str, Any]) -> list[dict[str, Any]]:
    window = _window(args)
    return [
        m
        for m in reversed(messages)
        if m.get("thread_ts") in (None, m["ts"]) and _in_window(m["ts"], window)
    ]


def _thread(messages: list[dict[str, Any]], args: dict[str, Any]) -> list[dict[str, Any]]:
    window = _window(args)
    parent_ts = str(args.get("ts") or "")
    if not parent_ts:
        raise _Invalid("invalid_arguments")
    if not any(m["ts"] == parent_ts for m in messages):
        raise _Invalid("thread_not_found")
    return [
        m
        for m in messages
        if m["ts"] == parent_ts or (m.get("thread_ts") == parent_ts and _in_window(m["ts"], window))
    ]


@routes.route("GET", "/conversations.history")
@routes.route("POST", "/conversations.history")
async def history(req: SandboxRequest) -> Response:
    """A channel's messages, newest first, without thread replies (by id, not name)."""
    return _read(req, _history, pin_count=0)


@routes.route("GET", "/conversations.replies")
@routes.route("POST", "/conversations.replies")
async def replies(req: SandboxRequest) -> Response:
    """A thread: its parent, then the replies, oldest first."""
    return _read(req, _thread)


@routes.route("GET", "/conversations.list")
@routes.route("POST", "/conversations.list")
async def list_conversations(req: SandboxRequest) -> Response:
    """The workspace's channels (public ones unless ``types`` says otherwise), paged."""
    state = _state(req)
    try:
        args = _args(req)
        limit = _limit(args, 100, 1000)
        types = set(str(args.get("types") or "public_channel").split(","))
        listed = [
            {
                "id": c["id"],
                "name": c["name"],
                "name_normalized": c["name"],
                "is_channel": True,
                "is_group": False,
                "is_im": False,
                "is_private": bool(c.get("is_private")),
                "is_archived": bool(c.get("is_archived")),
                "is_member": True,
                "created": 1700000000,
                "creator": "U0000000001",
            }
            for c in state.collection("channels").values()
            if ("private_channel" if c.get("is_private") else "public_channel") in types
            and not (_flag(args, "exclude_archived") and c.get("is_archived"))
        ]
        page, cursor = _page(listed, args, limit)
    except _Invalid as exc:
        return _error(exc.code)
    return json_response(
        {"ok": True, "channels": page, "response_metadata": {"next_cursor": cursor}}
    )


@routes.route("GET", "/users.lookupByEmail")
@routes.route("POST", "/users.lookupByEmail")
async def lookup_by_email(req: SandboxRequest) -> Response:
    """Find a member by email; ``users_not_found`` otherwise."""
    state = _state(req)
    try:
        args = _args(req)
    except _Invalid as exc:
        return _error(exc.code)
    email = str(args.get("email") or "").lower()
    if not email:
        return _error("invalid_arguments")
    for user in state.collection("users").values():
        if str(user["profile"].get("email", "")).lower() == email:
            return json_response({"ok": True, "user": user})
    return _error("users_not_found")


@routes.route("GET", "/auth.test")
@routes.route("POST", "/auth.test")
async def auth_test(req: SandboxRequest) -> Response:
    """Who the token is (the health check)."""
    _state(req)
    return json_response(
        {
            "ok": True,
            "url": "https://junction-sandbox.slack.com/",
            "team": "Junction Sandbox",
            "user": "junction-bot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": "B0SANDBOX",
        }
    )
