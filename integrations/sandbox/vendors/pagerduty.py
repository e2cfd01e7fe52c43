"""Sandbox PagerDuty: REST v2 incidents, services, abilities, on-calls, and the Events API v2.

Plays https://developer.pagerduty.com/api-reference/: errors are ``{"error": {"message",
"code", "errors": [...]}}``; writes need a ``From`` header naming a user (400 code 2001
otherwise); an incident's ``incident_key`` may not repeat among the service's open
incidents (400 "Open incident with matching dedup key already exists on this service");
lists page with ``limit``/``offset``/``more`` and filter on ``statuses[]``,
``service_ids[]``, ``urgencies[]`` and ``incident_key``.

The Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/) is
served at ``/pagerduty/v2/enqueue``: ``trigger`` creates or refreshes the alert of a
``dedup_key`` (generated when absent), ``acknowledge``/``resolve`` change it; answers are
202 ``{"status": "success", "message": "Event processed", "dedup_key"}`` or 400
``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``.

Collections: ``services`` and ``users`` (seeded), ``incidents``, ``alerts`` (Events API,
by dedup key), ``events`` (every accepted event).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
)

routes = VendorRoutes("pagerduty")
routes.lists("services", "id", "name")
routes.lists("users", "id", "name", "email")

SEED_SERVICES = [("PSANDB1", "Checkout API"), ("PSANDB2", "Payments worker")]
SEED_USERS = [
    ("PUSER01", "Sandbox User", "sandbox-user@example.com"),
    ("PUSER02", "On Call", "oncall@example.com"),
]
SEED_ONCALLS = [  # (escalation policy, level, user): PUSER02 answers first
    ("PPOLICY1", 1, "PUSER02"),
    ("PPOLICY1", 2, "PUSER01"),
]
ABILITIES = ["teams", "read_only_users", "service_support_hours", "urgencies"]
HTML = "https://junction-sandbox.pagerduty.com"


@routes.seeder("services")
def seed(state: ServiceState, base: str = "") -> None:
    """Two services and two users."""
    services = state.collection("services")
    for sid, name in SEED_SERVICES:
        services[sid] = {
            "id": sid,
            "type": "service",
            "summary": name,
            "name": name,
            "status": "active",
            "self": f"https://api.pagerduty.com/services/{sid}",
            "html_url": f"{HTML}/service-directory/{sid}",
        }
    users = state.collection("users")
    for uid, name, email in SEED_USERS:
        users[uid] = {"id": uid, "type": "user", "name": name, "email": email, "summary": name}
    for name in ("incidents", "alerts", "events"):
        state.collection(name)


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, message: str, code: int, *errors: str) -> VendorError:
    body: dict[str, Any] = {"error": {"message": message, "code": code}}
    if errors:
        body["error"]["errors"] = list(errors)
    return VendorError(status, body)


def _invalid(*errors: str) -> VendorError:
    return _error(400, "Invalid Input Provided", 2001, *errors)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _requester(req: SandboxRequest, state: ServiceState) -> dict[str, Any]:
    email = req.headers.get("from", "").strip().lower()
    if not email:
        raise _invalid(
            'You must specify a user\'s email address in the "From" header to perform this action'
        )
    for user in state.collection("users").values():
        if user["email"] == email:
            return user
    raise _invalid(
        'The email address in the "From" header does not belong to a user in this account'
    )


def _ref(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "type": "user_reference", "summary": user["name"]}


# --- REST: incidents ------------------------------------------------------------------------


@routes.route("POST", "/incidents")
async def create_incident(req: SandboxRequest) -> Response:
    """Open an incident (201); a repeated open ``incident_key`` is 400."""
    state = _state(req)
    requester = _requester(req, state)
    body = req.json()
    incident = body.get("incident") if isinstance(body, dict) else None
    if not isinstance(incident, dict):
        raise _invalid("incident is required")
    problems = []
    if incident.get("type") != "incident":
        problems.append("Incident type must be 'incident'")
    title = incident.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append("Title cannot be empty")
    service_ref = _obj(incident.get("service"))
    service = state.collection("services").get(str(service_ref.get("id", "")))
    if service is None:
        problems.append("Service not found")
    urgency = incident.get("urgency", "high")
    if urgency not in ("high", "low"):
        problems.append("Urgency must be high or low")
    if problems:
        raise _invalid(*problems)
    assert service is not None
    key = incident.get("incident_key") or uuid.uuid4().hex
    incidents = state.collection("incidents")
    for other in incidents.values():
        if (
            other["incident_key"] == key
            and other["service"]["id"] == service["id"]
            and other["status"] != "resolved"
        ):
            raise _invalid("Open incident with matching dedup key already exists on this service")
    number = len(incidents) + 1
    iid = f"Q{int(state.next_id()):013d}"
    now = _now()
    details = (
        incident.get("body", {}).get("details") if isinstance(incident.get("body"), dict) else None
    )
    record = {
        "id": iid,
        "type": "incident",
        "summary": f"[#{number}] {title}",
        "self": f"https://api.pagerduty.com/incidents/{iid}",
        "html_url": f"{HTML}/incidents/{iid}",
        "incident_number": number,
        "title": title,
        "created_at": now,
        "updated_at": now,
        "status": "triggered",
        "incident_key": key,
        "urgency": urgency,
        "service": {
            "id": service["id"],
            "type": "service_reference",
            "summary": service["name"],
            "self": service["self"],
        },
        "assignments": [],
        "acknowledgements": [],
        "last_status_change_at": now,
        "last_status_change_by": _ref(requester),
        "body": {"type": "incident_body", "details": details} if details else None,
        "resolved_at": None,
    }
    incidents[iid] = record
    return json_response({"incident": record}, status=201)


def _multi(req: SandboxRequest, name: str) -> list[str]:
    return [v for v in req.request.query_params.getlist(name) if v]


@routes.route("GET", "/incidents")
async def list_incidents(req: SandboxRequest) -> Response:
    """List incidents, oldest first (PagerDuty's default), with the usual filters."""
    state = _state(req)
    items = list(state.collection("incidents").values())
    statuses = _multi(req, "statuses[]")
    if statuses:
        items = [i for i in items if i["status"] in statuses]
    services = _multi(req, "service_ids[]")
    if services:
        items = [i for i in items if i["service"]["id"] in services]
    urgencies = _multi(req, "urgencies[]")
    if urgencies:
        items = [i for i in items if i["urgency"] in urgencies]
    key = req.query.get("incident_key")
    if key:
        items = [i for i in items if i["incident_key"] == key]
    try:
        limit = max(1, min(100, int(req.query.get("limit", 25))))
        offset = max(0, int(req.query.get("offset", 0)))
    except ValueError:
        raise _invalid("limit and offset must be integers") from None
    page = items[offset : offset + limit]
    total = len(items) if req.query.get("total") == "true" else None
    return json_response(
        {
            "incidents": page,
            "limit": limit,
            "offset": offset,
            "more": offset + limit < len(items),
            "total": total,
        }
    )


@routes.route("GET", "/incidents/{incident_id}")
async def get_incident(req: SandboxRequest) -> Response:
    """One incident."""
    incident = _state(req).collection("incidents").get(req.path_params["incident_id"])
    if incident is None:
        raise _error(404, "Incident Not Found", 2100)
    return json_response({"incident": incident})


@routes.route("PUT", "/incidents/{incident_id}")
async def update_incident(req: SandboxRequest) -> Response:
    """Acknowledge, resolve or re-trigger an incident."""
    state = _state(req)
    requester = _requester(req, state)
    incident = state.collection("incidents").get(req.path_params["incident_id"])
    if incident is None:
        raise _error(404, "Incident Not Found", 2100)
    body = req.json()
    change = body.get("incident") if isinstance(body, dict) else None
    if not isinstance(change, dict):
        raise _invalid("incident is required")
    if change.get("type") not in ("incident", "incident_reference"):
        raise _invalid("Incident type must be 'incident' or 'incident_reference'")
    status = change.get("status")
    if status is not None:
        if status not in ("triggered", "acknowledged", "resolved"):
            raise _invalid(f"Status '{status}' is not valid")
        now = _now()
        if status != incident["status"]:
            incident["last_status_change_at"] = now
            incident["last_status_change_by"] = _ref(requester)
        incident["status"] = status
        incident["updated_at"] = now
        if status == "acknowledged":
            incident["acknowledgements"] = [{"at": now, "acknowledger": _ref(requester)}]
        if status == "resolved":
            incident["resolved_at"] = incident["resolved_at"] or now
            if change.get("resolution"):
                incident["resolution"] = change["resolution"]
    return json_response({"incident": incident})


# --- REST: the rest ----------------------------------------------------------------------


@routes.route("GET", "/oncalls")
async def list_oncalls(req: SandboxRequest) -> Response:
    """Who is on call (seeded), filtered by ``escalation_policy_ids[]``; ``include[]=users``
    expands each user reference into the user (with email), as PagerDuty does."""
    state = _state(req)
    users = state.collection("users")
    policies = _multi(req, "escalation_policy_ids[]")
    expand = "users" in _multi(req, "include[]")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    oncalls = []
    for policy, level, uid in SEED_ONCALLS:
        if policies and policy not in policies:
            continue
        user = users[uid]
        oncalls.append(
            {
                "user": dict(user) if expand else {**_ref(user), "type": "user_reference"},
                "escalation_level": level,
                "escalation_policy": {
                    "id": policy,
                    "type": "escalation_policy_reference",
                    "summary": "Sandbox escalation policy",
                },
                "schedule": None,
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": None,
            }
        )
    return json_response(
        {"oncalls": oncalls, "limit": 25, "offset": 0, "more": False, "total": None}
    )


@routes.route("GET", "/abilities")
async def abilities(req: SandboxRequest) -> Response:
    """The account's abilities (the health check)."""
    _state(req)
    return json_response({"abilities": ABILITIES})


@routes.route("GET", "/services")
async def list_services(req: SandboxRequest) -> Response:
    """Services."""
    items = list(_state(req).collection("services").values())
    return json_response(
        {"services": items, "limit": 25, "offset": 0, "more": False, "total": None}
    )


# --- Events API v2 -------------------------------------------------------------------------


def _event_error(*errors: str) -> VendorError:
    return VendorError(
        400,
        {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)},
    )


# Public: the Events API authenticates by the routing key in the body, not the REST
# API's "Authorization: Token token=" header.
@routes.route("POST", "/v2/enqueue", public=True)
async def enqueue(req: SandboxRequest) -> Response:
    """Accept an Events API v2 event (202)."""
    state = _state(req)
    body = req.json()
    if not isinstance(body, dict):
        raise _event_error("Event object must be a JSON object")
    problems = []
    routing_key = body.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key:
        problems.append("'routing_key' is missing or blank")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        problems.append(
            "'event_action' is invalid (must be one of the following: "
            "'trigger', 'acknowledge' or 'resolve')"
        )
    dedup_key = body.get("dedup_key")
    payload = body.get("payload")
    if action == "trigger":
        if not isinstance(payload, dict):
            problems.append("'payload' is missing or not an object")
        else:
            for field in ("summary", "source", "severity"):
                if not payload.get(field):
                    problems.append(f"'payload.{field}' is missing or blank")
            if payload.get("severity") not in (None, "critical", "error", "warning", "info"):
                problems.append(
                    "'payload.severity' is invalid (must be one of the following: "
                    "'critical', 'warning', 'error' or 'info')"
                )
    elif action in ("acknowledge", "resolve") and not dedup_key:
        problems.append("'dedup_key' is missing or blank")
    if problems:
        raise _event_error(*problems)
    key = str(dedup_key or uuid.uuid4().hex)
    alerts = state.collection("alerts")
    alert = alerts.get(key)
    now = _now()
    if action == "trigger" and isinstance(payload, dict):
        if alert is None or alert["status"] == "resolved":
            alert = {
                "dedup_key": key,
                "status": "triggered",
                "created_at": now,
                "events": 0,
                "routing_key_suffix": str(routing_key)[-4:],
            }
            alerts[key] = alert
        alert["summary"] = payload["summary"]
        alert["severity"] = payload["severity"]
        alert["source"] = payload["source"]
    elif alert is not None and alert["status"] != "resolved":
        alert["status"] = "acknowledged" if action == "acknowledge" else "resolved"
    if alert is not None:
        alert["events"] += 1
        alert["updated_at"] = now
    # The routing key is a secret: keep only its last characters, never the key.
    state.collection("events")[state.next_id("ev")] = {
        "event_action": action,
        "dedup_key": key,
        "received_at": now,
        "routing_key_suffix": str(routing_key)[-4:],
    }
    return json_response(
        {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
    )
