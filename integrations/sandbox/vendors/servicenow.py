"""Sandbox ServiceNow Table API: incidents and users.

Plays https://developer.servicenow.com/dev.do#!/reference/api/latest/rest/c_TableAPI:
answers wrap records in ``{"result": ...}``, every field value is a string, unknown
fields in a write are ignored, errors are ``{"error": {"message", "detail"}, "status":
"failure"}`` (404 "No Record found"; 400 for an unparsable body). ``sysparm_query`` takes
encoded queries of ``field=value``, ``field!=value``, ``fieldLIKEvalue`` and
``fieldSTARTSWITHvalue`` terms joined by ``^`` (AND), plus ``ORDERBY``/``ORDERBYDESC``;
``sysparm_limit``/``sysparm_offset`` page. Collections: ``sys_user`` (seeded) and
``incident`` (by sys_id).
"""

from __future__ import annotations

import re
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

routes = VendorRoutes("servicenow")
routes.lists("sys_user", "sys_id", "user_name", "email")

INCIDENT_FIELDS = (
    "short_description",
    "description",
    "urgency",
    "impact",
    "category",
    "caller_id",
    "assignment_group",
    "correlation_id",
    "correlation_display",
    "state",
    "comments",
    "work_notes",
    "assigned_to",
)
# ServiceNow's default priority matrix: (impact, urgency) -> priority.
_PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}


@routes.seeder("sys_user")
def seed(state: ServiceState, base: str = "") -> None:
    """One user, the sandbox principal."""
    users = state.collection("sys_user")
    sys_id = uuid.UUID(int=1).hex
    users[sys_id] = {
        "sys_id": sys_id,
        "user_name": "sandbox-user",
        "name": "Sandbox User",
        "email": "sandbox-user@example.com",
        "active": "true",
    }
    state.collection("incident")


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _error(status: int, message: str, detail: str | None = None) -> VendorError:
    return VendorError(
        status, {"error": {"message": message, "detail": detail}, "status": "failure"}
    )


_TERM = re.compile(r"^(?P<field>[a-z_][a-z0-9_.]*)(?P<op>!=|=|LIKE|STARTSWITH)(?P<value>.*)$")


def _filter(records: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    order: tuple[str, bool] | None = None
    for term in query.split("^") if query else []:
        if not term:
            continue
        if term.startswith("ORDERBYDESC"):
            order = (term[len("ORDERBYDESC") :], True)
            continue
        if term.startswith("ORDERBY"):
            order = (term[len("ORDERBY") :], False)
            continue
        m = _TERM.match(term)
        if m is None:
            # A real instance ignores a term it cannot parse (and returns every record)
            # unless glide.invalid_query.returns_no_rows is set; the sandbox rejects it
            # so that a client bug shows.
            raise _error(400, f"Invalid query term: {term}")
        field, op, value = m["field"], m["op"], m["value"]
        if op == "=":
            records = [r for r in records if str(r.get(field, "")) == value]
        elif op == "!=":
            records = [r for r in records if str(r.get(field, "")) != value]
        elif op == "LIKE":
            records = [r for r in records if value.lower() in str(r.get(field, "")).lower()]
        else:
            records = [r for r in records if str(r.get(field, "")).startswith(value)]
    if order is not None:
        records = sorted(records, key=lambda r: str(r.get(order[0], "")), reverse=order[1])
    return records


def _page(req: SandboxRequest, records: list[dict[str, Any]]) -> Response:
    records = _filter(records, req.query.get("sysparm_query", ""))
    try:
        limit = int(req.query.get("sysparm_limit", 10000))
        offset = int(req.query.get("sysparm_offset", 0))
    except ValueError:
        raise _error(400, "Invalid sysparm_limit or sysparm_offset") from None
    page = records[offset : offset + max(0, limit)]
    headers = {"X-Total-Count": str(len(records))}
    return json_response({"result": page}, headers=headers)


@routes.route("GET", "/api/now/table/sys_user")
async def list_users(req: SandboxRequest) -> Response:
    """Users (the health check reads one)."""
    return _page(req, list(_state(req).collection("sys_user").values()))


@routes.route("POST", "/api/now/table/incident")
async def create_incident(req: SandboxRequest) -> Response:
    """Insert an incident (201): number INC001000n, state 1 (New), priority from the matrix."""
    state = _state(req)
    try:
        body = req.json()
    except VendorError:
        raise _error(
            400, "Exception while reading request", "The payload is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise _error(400, "Exception while reading request", "The payload is not valid JSON.")
    incidents = state.collection("incident")
    sys_id = uuid.uuid4().hex
    now = _now()
    record: dict[str, Any] = {field: "" for field in INCIDENT_FIELDS}
    record.update({k: str(v) for k, v in body.items() if k in INCIDENT_FIELDS and v is not None})
    record["urgency"] = record["urgency"] or "3"
    record["impact"] = record["impact"] or "3"
    record["state"] = record["state"] or "1"
    record.update(
        {
            "sys_id": sys_id,
            "number": f"INC{10000 + len(incidents) + 1:07d}",
            "priority": _PRIORITY.get((record["impact"], record["urgency"]), "5"),
            "opened_at": now,
            "opened_by": "sandbox-user",
            "sys_created_on": now,
            "sys_created_by": req.principal,
            "sys_updated_on": now,
            "sys_class_name": "incident",
            "active": "true",
        }
    )
    incidents[sys_id] = record
    base = f"{req.request.url.scheme}://{req.request.url.netloc}"
    return json_response(
        {"result": record},
        status=201,
        headers={"Location": f"{base}/api/now/table/incident/{sys_id}"},
    )


@routes.route("GET", "/api/now/table/incident")
async def list_incidents(req: SandboxRequest) -> Response:
    """Query incidents."""
    return _page(req, list(_state(req).collection("incident").values()))


@routes.route("GET", "/api/now/table/incident/{sys_id}")
async def get_incident(req: SandboxRequest) -> Response:
    """One incident by sys_id."""
    record = _state(req).collection("incident").get(req.path_params["sys_id"])
    if record is None:
        raise _error(
            404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
        )
    return json_response({"result": record})
