"""Sandbox Okta: users (unique logins, lifecycle statuses), groups, group members.

Plays the Okta Management API (https://developer.okta.com/docs/api/): error bodies with
``errorCode``/``errorSummary``/``errorCauses``, ``Link: <...>; rel="next"`` pagination
with an ``after`` cursor, and the user statuses ``STAGED`` (``activate=false``),
``PROVISIONED`` (activated without a password), ``ACTIVE`` (with a password) and
``DEPROVISIONED`` (deactivated). A second user with the same login gets Okta's 400
``E0000001`` "login: An object with this field already exists in the current
organization"; deactivating a ``DEPROVISIONED`` user gets 404 ``E0000007``, as Okta does.
Collections: ``users``, ``groups``, ``group_members``.
"""

from __future__ import annotations

from datetime import UTC, datetime
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

routes = VendorRoutes("okta")
routes.lists("users", "id", "profile.login", "status")
routes.lists("groups", "id", "profile.name")

ADMIN_LOGIN = "sandbox-admin@example.com"
SEED_GROUPS = [
    ("Everyone", "All users in your organization", "BUILT_IN"),
    ("Engineering", "Product engineering", "OKTA_GROUP"),
    ("Engineering-Oncall", "On-call rotation", "OKTA_GROUP"),
    ("Sales", "Sales team", "OKTA_GROUP"),
    ("Support", "Customer support", "OKTA_GROUP"),
    ("Finance", "Finance and accounting", "OKTA_GROUP"),
    ("HR", "People operations", "OKTA_GROUP"),
    ("Contractors", "External contractors", "OKTA_GROUP"),
    ("VPN-Users", "Remote access", "OKTA_GROUP"),
    ("GitHub-Admins", "Pushed to GitHub", "APP_GROUP"),
]
SEED_USERS = [
    # login, first, last, status
    (ADMIN_LOGIN, "Sandbox", "Admin", "ACTIVE"),
    ("ada.lovelace@example.com", "Ada", "Lovelace", "ACTIVE"),
    ("grace.hopper@example.com", "Grace", "Hopper", "ACTIVE"),
    ("alan.turing@example.com", "Alan", "Turing", "DEPROVISIONED"),
]
_SEED_TIME = "2024-01-02T03:04:05.000Z"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id(state: ServiceState, prefix: str) -> str:
    return f"{prefix}{int(state.next_id()):017d}"


def _user(
    state: ServiceState, base: str, profile: dict[str, Any], status: str, when: str
) -> dict[str, Any]:
    uid = _new_id(state, "00u")
    return {
        "id": uid,
        "status": status,
        "created": when,
        "activated": when if status in ("ACTIVE", "PROVISIONED") else None,
        "statusChanged": when,
        "lastLogin": None,
        "lastUpdated": when,
        "passwordChanged": None,
        "type": {"id": "oty00000000000000001"},
        "profile": profile,
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": f"{base}/api/v1/users/{uid}"}},
    }


@routes.seeder("users")
def seed(state: ServiceState, base: str = "") -> None:
    """Fill an empty state with the admin, a few users and ten groups."""
    users = state.collection("users")
    groups = state.collection("groups")
    state.collection("group_members")
    for login, first, last, status in SEED_USERS:
        profile = {"firstName": first, "lastName": last, "email": login, "login": login}
        user = _user(state, base, profile, status, _SEED_TIME)
        users[user["id"]] = user
    for name, description, kind in SEED_GROUPS:
        gid = _new_id(state, "00g")
        groups[gid] = {
            "id": gid,
            "created": _SEED_TIME,
            "lastUpdated": _SEED_TIME,
            "lastMembershipUpdated": _SEED_TIME,
            "objectClass": ["okta:user_group"],
            "type": kind,
            "profile": {"name": name, "description": description},
        }


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state, lambda: _base(req))


def _base(req: SandboxRequest) -> str:
    url = req.request.url
    path = url.path
    cut = path.find("/api/v1/")
    return f"{url.scheme}://{url.netloc}{path[:cut] if cut >= 0 else ''}"


def _find_user(state: ServiceState, ref: str) -> dict[str, Any] | None:
    """By id, login (case-insensitive) or unambiguous short name, like Okta."""
    users = state.collection("users")
    if ref in users:
        return users[ref]
    lowered = ref.lower()
    for user in users.values():
        if user["profile"]["login"].lower() == lowered:
            return user
    short = [u for u in users.values() if u["profile"]["login"].lower().split("@")[0] == lowered]
    return short[0] if len(short) == 1 else None


def _not_found(ref: str, kind: str) -> VendorError:
    return vendor_error("okta", 404, f"Not found: Resource not found: {ref} ({kind})")


def _page(req: SandboxRequest, items: list[dict[str, Any]], default_limit: int) -> Response:
    try:
        limit = int(req.query.get("limit", default_limit))
    except ValueError:
        raise vendor_error("okta", 400, "Api validation failed: limit") from None
    page = paginate(items, cursor=req.query.get("after"), limit=limit)
    headers = {}
    link = link_header(str(req.request.url), page, "after", limit)
    if link:
        headers["Link"] = link
    response = json_response(page.items, headers=headers)
    # Okta also sends rel="self"; two Link headers, as the real API does.
    response.headers.append("Link", f'<{req.request.url}>; rel="self"')
    return response


# --- users --------------------------------------------------------------------------------


@routes.route("GET", "/api/v1/users/me")
async def get_me(req: SandboxRequest) -> Response:
    """The token's own user (the seeded admin)."""
    user = _find_user(_state(req), ADMIN_LOGIN)
    assert user is not None
    return json_response(user)


@routes.route("GET", "/api/v1/users")
async def list_users(req: SandboxRequest) -> Response:
    """List users; ``q`` is a login/email/name prefix; DEPROVISIONED only with ``search``."""
    users = list(_state(req).collection("users").values())
    q = req.query.get("q", "").lower()
    if q:
        users = [
            u
            for u in users
            if any(
                str(u["profile"].get(f, "")).lower().startswith(q)
                for f in ("login", "email", "firstName", "lastName")
            )
        ]
    if "search" not in req.query:
        users = [u for u in users if u["status"] != "DEPROVISIONED"]
    return _page(req, users, 200)


@routes.route("POST", "/api/v1/users")
async def create_user(req: SandboxRequest) -> Response:
    """Create a user; a duplicate login gets 400 E0000001 like Okta."""
    state = _state(req)
    body = req.json()
    profile = body.get("profile") if isinstance(body, dict) else None
    if not isinstance(profile, dict):
        raise vendor_error("okta", 400, "Api validation failed: profile")
    causes = [
        {"errorSummary": f"{field}: The field cannot be left blank"}
        for field in ("login", "email", "firstName", "lastName")
        if not str(profile.get(field) or "").strip()
    ]
    login = str(profile.get("login") or "")
    if login and "@" not in login:
        causes.append({"errorSummary": "login: Username must be in the form of an email address"})
    if not causes and _find_user(state, login) is not None:
        causes.append(
            {
                "errorSummary": "login: An object with this field already exists in the current "
                "organization"
            }
        )
    group_ids = body.get("groupIds") or []
    groups = state.collection("groups")
    for gid in group_ids:
        if gid not in groups:
            causes.append({"errorSummary": f"groupIds: Group {gid} not found"})
    if causes:
        field = causes[0]["errorSummary"].split(":")[0]
        error = vendor_error("okta", 400, f"Api validation failed: {field}")
        error.body["errorCauses"] = causes
        raise error
    activate = req.query.get("activate", "true").lower() != "false"
    has_password = bool(((body.get("credentials") or {}).get("password") or {}).get("value"))
    status = "STAGED" if not activate else ("ACTIVE" if has_password else "PROVISIONED")
    user = _user(state, _base(req), dict(profile), status, _now())
    state.collection("users")[user["id"]] = user
    members = state.collection("group_members")
    for gid in group_ids:
        members[f"{gid}:{user['id']}"] = {"groupId": gid, "userId": user["id"]}
    return json_response(user)


@routes.route("GET", "/api/v1/users/{user_id}")
async def get_user(req: SandboxRequest) -> Response:
    """Get a user by id, login or short name."""
    ref = req.path_params["user_id"]
    user = _find_user(_state(req), ref)
    if user is None:
        raise _not_found(ref, "User")
    return json_response(user)


@routes.route("POST", "/api/v1/users/{user_id}/lifecycle/deactivate")
async def deactivate_user(req: SandboxRequest) -> Response:
    """Deactivate; Okta answers 404 E0000007 for an already DEPROVISIONED user."""
    ref = req.path_params["user_id"]
    user = _find_user(_state(req), ref)
    if user is None or user["status"] == "DEPROVISIONED":
        raise _not_found(ref, "User")
    when = _now()
    user.update(status="DEPROVISIONED", statusChanged=when, lastUpdated=when)
    return Response(status_code=200)


# --- groups -------------------------------------------------------------------------------


@routes.route("GET", "/api/v1/groups")
async def list_groups(req: SandboxRequest) -> Response:
    """List groups; ``q`` is a name prefix (case-insensitive), ``search`` supports ``type eq``."""
    groups = list(_state(req).collection("groups").values())
    q = req.query.get("q", "").lower()
    if q:
        groups = [g for g in groups if g["profile"]["name"].lower().startswith(q)]
    search = req.query.get("search", "")
    if search.startswith("type eq "):
        wanted = search[len("type eq ") :].strip().strip('"')
        groups = [g for g in groups if g["type"] == wanted]
    return _page(req, groups, 10000)


@routes.route("GET", "/api/v1/groups/{group_id}/users")
async def list_group_users(req: SandboxRequest) -> Response:
    """The members of a group."""
    state = _state(req)
    gid = req.path_params["group_id"]
    if gid not in state.collection("groups"):
        raise _not_found(gid, "UserGroup")
    users = state.collection("users")
    members = [
        users[m["userId"]]
        for m in state.collection("group_members").values()
        if m["groupId"] == gid and m["userId"] in users
    ]
    return _page(req, members, 1000)


@routes.route("PUT", "/api/v1/groups/{group_id}/users/{user_id}")
async def add_group_user(req: SandboxRequest) -> Response:
    """Add a member (204; adding an existing member is a no-op)."""
    state = _state(req)
    gid, uid = req.path_params["group_id"], req.path_params["user_id"]
    group = state.collection("groups").get(gid)
    if group is None:
        raise _not_found(gid, "UserGroup")
    if uid not in state.collection("users"):
        raise _not_found(uid, "User")
    if group["type"] != "OKTA_GROUP":
        raise vendor_error(
            "okta", 403, "You do not have permission to perform the requested action"
        )  # Okta refuses to manage BUILT_IN/APP_GROUP members
    state.collection("group_members")[f"{gid}:{uid}"] = {"groupId": gid, "userId": uid}
    group["lastMembershipUpdated"] = _now()
    return Response(status_code=204)
