"""Sandbox Microsoft Teams (Graph v1.0): channel messages and the organization.

Plays ``POST /teams/{team-id}/channels/{channel-id}/messages``
(https://learn.microsoft.com/en-us/graph/api/channel-post-messages), ``GET`` of the same
path (https://learn.microsoft.com/en-us/graph/api/channel-list-messages: the channel's
root messages, last changed first, ``$top`` 1..50 (default 20), an absolute
``@odata.nextLink`` with an opaque ``$skiptoken``; other OData options are 400 as in
Graph) and ``GET /organization``, with Graph's error shape (``{"error": {"code",
"message", "innerError"}}``): an unknown team or channel is 404 ``NotFound``, a body
without ``body.content`` or with another ``contentType`` than ``text``/``html`` is 400
``BadRequest``. The body's HTML is stored as sent. OAuth2 tokens come from the sandbox's
token endpoint (the app checks them). Collections: ``teams`` (seeded: one team, three
channels) and ``messages``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorRoutes,
    json_response,
    vendor_error,
)

routes = VendorRoutes("teams")
routes.lists("teams", "id", "displayName")

TEAM_ID = "7a1f3c2e-0000-4000-8000-000000000001"
CHANNELS = {
    "19:general0000000000000000000000@thread.tacv2": "General",
    "19:ops000000000000000000000000000@thread.tacv2": "Ops",
    "19:alerts0000000000000000000000000@thread.tacv2": "Alerts",
}
TENANT_ID = "00000000-0000-4000-8000-00000000a11c"


@routes.seeder("teams")
def seed(state: ServiceState, base: str = "") -> None:
    """One team with three channels."""
    teams = state.collection("teams")
    teams[TEAM_ID] = {
        "id": TEAM_ID,
        "displayName": "Junction Sandbox",
        "channels": {cid: {"id": cid, "displayName": name} for cid, name in CHANNELS.items()},
    }
    state.collection("messages")


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _channel(req: SandboxRequest) -> tuple[ServiceState, dict[str, Any], str]:
    """The state, team and channel id of a channel route (404 ``NotFound`` otherwise)."""
    state = _state(req)
    team = state.collection("teams").get(req.path_params["team_id"])
    if team is None:
        raise vendor_error(
            "teams", 404, f"No team found with Group Id {req.path_params['team_id']}"
        )
    channel_id = req.path_params["channel_id"]
    if channel_id not in team["channels"]:
        raise vendor_error("teams", 404, f"Channel {channel_id} not found")
    return state, team, channel_id


def _page_args(req: SandboxRequest) -> tuple[int, int]:
    """``$top`` and the offset in ``$skiptoken``; anything else Graph refuses is 400."""
    query = req.query
    unsupported = sorted(k for k in query if k not in ("$top", "$skiptoken", "$expand"))
    if unsupported:
        raise vendor_error("teams", 400, f"Query option '{unsupported[0]}' is not supported.")
    try:
        top = int(query.get("$top", "20"))
    except ValueError:
        raise vendor_error("teams", 400, "Invalid value for $top") from None
    if not 1 <= top <= 50:
        raise vendor_error("teams", 400, f"Invalid page size requested: {top}. Maximum is 50.")
    token = query.get("$skiptoken")
    if not token:
        return top, 0
    try:
        tag, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        start = int(offset)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise vendor_error("teams", 400, "Invalid $skiptoken") from None
    if tag != "junction-sandbox" or start < 0:
        raise vendor_error("teams", 400, "Invalid $skiptoken")
    return top, start


@routes.route("GET", "/teams/{team_id}/channels/{channel_id}/messages")
async def list_channel_messages(req: SandboxRequest) -> Response:
    """The channel's root messages, last changed first, paged by ``@odata.nextLink``."""
    state, team, channel_id = _channel(req)
    top, start = _page_args(req)
    roots = [
        m
        for m in state.collection("messages").values()
        if m["channelIdentity"] == {"teamId": team["id"], "channelId": channel_id}
        and m.get("replyToId") is None
    ]
    roots.sort(key=lambda m: (m["lastModifiedDateTime"], int(m["id"])), reverse=True)
    page = roots[start : start + top]
    url = req.request.url
    answer: dict[str, Any] = {
        "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#teams('{team['id']}')"
        f"/channels('{channel_id}')/messages",
        "@odata.count": len(page),
        "value": page,
    }
    if start + top < len(roots):
        token = base64.urlsafe_b64encode(f"junction-sandbox:{start + top}".encode()).decode()
        query = urlencode({"$top": top, "$skiptoken": token})
        answer["@odata.nextLink"] = f"{url.scheme}://{url.netloc}{url.path}?{query}"
    return json_response(answer)


@routes.route("POST", "/teams/{team_id}/channels/{channel_id}/messages")
async def send_channel_message(req: SandboxRequest) -> Response:
    """Create a ``chatMessage`` in a channel (201)."""
    state, team, channel_id = _channel(req)
    body = req.json()
    item: Any = body.get("body") if isinstance(body, dict) else None
    if not isinstance(item, dict) or not str(item.get("content") or "").strip():
        raise vendor_error("teams", 400, "Missing body content")
    content_type = str(item.get("contentType") or "text")
    if content_type.lower() not in ("text", "html"):
        raise vendor_error("teams", 400, f"Invalid contentType {content_type!r}")
    mid = str(int(datetime.now(UTC).timestamp() * 1000) * 1000 + int(state.next_id()) % 1000)
    now = _now()
    message = {
        "id": mid,
        "replyToId": None,
        "etag": mid,
        "messageType": "message",
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "lastEditedDateTime": None,
        "deletedDateTime": None,
        "subject": body.get("subject"),
        "importance": "normal",
        "locale": "en-us",
        "webUrl": f"https://teams.microsoft.com/l/message/{channel_id}/{mid}",
        "from": {
            "application": {
                "id": req.principal,
                "displayName": "Junction",
                "applicationIdentityType": "bot",
            },
            "user": None,
        },
        "body": {"contentType": content_type.lower(), "content": item["content"]},
        "channelIdentity": {"teamId": team["id"], "channelId": channel_id},
        "attachments": [],
        "mentions": [],
    }
    state.collection("messages")[mid] = message
    return json_response(
        {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#teams('{team['id']}')"
            f"/channels('{channel_id}')/messages/$entity",
            **message,
        },
        status=201,
    )


@routes.route("GET", "/organization")
async def organization(req: SandboxRequest) -> Response:
    """The tenant (the health check)."""
    _state(req)
    return json_response(
        {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
            "value": [
                {
                    "id": TENANT_ID,
                    "displayName": "Junction Sandbox",
                    "verifiedDomains": [{"name": "sandbox.onmicrosoft.com", "isDefault": True}],
                    "tenantType": "AAD",
                    "createdDateTime": "2024-01-02T03:04:05Z",
                    "requestId": str(uuid.UUID(int=0)),
                }
            ],
        }
    )
