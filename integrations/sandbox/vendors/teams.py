"""Sandbox Microsoft Teams (Graph v1.0): channel messages and the organization.

Plays ``POST /teams/{team-id}/channels/{channel-id}/messages``
(https://learn.microsoft.com/en-us/graph/api/channel-post-messages) and ``GET
/organization``, with Graph's error shape (``{"error": {"code", "message", "innerError"}}``):
an unknown team or channel is 404 ``NotFound``, a body without ``body.content`` or with
another ``contentType`` than ``text``/``html`` is 400 ``BadRequest``. OAuth2 tokens come
from the sandbox's token endpoint (the app checks them). Collections: ``teams``
(seeded: one team, three channels) and ``messages``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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


@routes.route("POST", "/teams/{team_id}/channels/{channel_id}/messages")
async def send_channel_message(req: SandboxRequest) -> Response:
    """Create a ``chatMessage`` in a channel (201)."""
    state = _state(req)
    team = state.collection("teams").get(req.path_params["team_id"])
    if team is None:
        raise vendor_error(
            "teams", 404, f"No team found with Group Id {req.path_params['team_id']}"
        )
    channel_id = req.path_params["channel_id"]
    if channel_id not in team["channels"]:
        raise vendor_error("teams", 404, f"Channel {channel_id} not found")
    body = req.json()
    item: Any = body.get("body") if isinstance(body, dict) else None
    if not isinstance(item, dict) or not str(item.get("content") or "").strip():
        raise vendor_error("teams", 400, "Missing body content")
    content_type = str(item.get("contentType") or "text")
    if content_type.lower() not in ("text", "html"):
        raise vendor_error("teams", 400, f"Invalid contentType {content_type!r}")
    mid = str(int(datetime.now(UTC).timestamp() * 1000) * 1000 + int(state.next_id()) % 1000)
    message = {
        "id": mid,
        "replyToId": None,
        "etag": mid,
        "messageType": "message",
        "createdDateTime": _now(),
        "lastModifiedDateTime": _now(),
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
