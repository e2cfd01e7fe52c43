"""Sandbox Slack: chat.postMessage, users.lookupByEmail, auth.test.

Plays the Slack Web API (https://api.slack.com/web): every answer is HTTP 200 with
``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}`` (``channel_not_found``,
``no_text``, ``users_not_found``, ``invalid_arguments``), bodies are JSON or form-encoded,
and channels are found by id (``C...``) or name (``general`` / ``#general``). Collections:
``channels`` and ``users`` (seeded), ``messages`` (keyed by ``<channel>:<ts>``).
"""

from __future__ import annotations

import json
import time
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


_seq = [0]


def _ts() -> str:
    # Slack's ts: epoch seconds with a 6-digit suffix, unique per channel.
    _seq[0] = (_seq[0] + 1) % 1_000_000
    return f"{int(time.time())}.{_seq[0]:06d}"


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
    state.collection("messages")[f"{channel['id']}:{ts}"] = {**message, "channel": channel["id"]}
    return json_response({"ok": True, "channel": channel["id"], "ts": ts, "message": message})


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
