"""Sandbox Atlassian Statuspage: a public status page per catalog service, and the
management API that posts incidents to it.

Every catalog service has a status page here whose page id is the service name, at
``<sandbox_url>/statuspage/v1/pages/<service>``. The status page lives on the
``statuspage`` mount, not on the service's own, because a real vendor's status page is
hosted apart from its API: an outage of ``gitlab`` (``/_admin/outage/gitlab``) does not
take GitLab's status page down, while faults set on ``statuspage`` (hang, malformed
answers) hit every page, which is how the poller's failure handling is tested.

Public (no auth), as a Statuspage page serves them
(https://metastatuspage.com/api and any ``<page>/api/v2/``):

- ``GET /pages/{page_id}/api/v2/summary.json``: page, components, unresolved incidents,
  scheduled maintenances, ``status: {indicator, description}``.
- ``GET /pages/{page_id}/api/v2/status.json``: page and status only.

Management API (``Authorization: OAuth <key>``; https://developer.statuspage.io/), how
a test or a demo declares a vendor incident:

- ``POST /pages/{page_id}/incidents`` ``{"incident": {"name", "status", "impact_override",
  "body", "components": {"<component id>": "partial_outage"}}}``
- ``PATCH /pages/{page_id}/incidents/{incident_id}`` (e.g. ``{"incident": {"status":
  "resolved"}}``), ``GET /pages/{page_id}/incidents``
- ``PATCH /pages/{page_id}/components/{component_id}`` ``{"component": {"status": ...}}``

``status.indicator`` is derived as Statuspage does: the worst of the unresolved
incidents' impact and the components' statuses (degraded_performance -> minor,
partial_outage -> major, major_outage -> critical). State lives in the ``statuspage``
service's collections ``incidents`` and ``components`` (``GET /_admin/state/statuspage``)
and is cleared by ``POST /_admin/reset``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from integrations.catalog import load_catalog
from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
)

routes = VendorRoutes("statuspage")

IMPACTS = ("none", "minor", "major", "critical")
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved", "postmortem")
COMPONENT_STATUSES = {
    "operational": "none",
    "under_maintenance": "none",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
DESCRIPTIONS = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}
_COMPONENTS = ("API", "Web application")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str) -> VendorError:
    return VendorError(status, {"error": message})


def _page_id(req: SandboxRequest) -> str:
    page_id = req.path_params["page_id"]
    catalog = load_catalog()
    if page_id not in catalog:
        raise _error(404, "The requested resource could not be found.")
    return page_id


def _components(state: ServiceState, page_id: str) -> list[dict[str, Any]]:
    """The page's components (two, created on first use)."""
    components = state.collection("components")
    mine = [c for c in components.values() if c["page_id"] == page_id]
    if not mine:
        for position, name in enumerate(_COMPONENTS, start=1):
            cid = f"{page_id}-c{position}"
            components[cid] = {
                "id": cid,
                "name": name,
                "status": "operational",
                "created_at": _now(),
                "updated_at": _now(),
                "position": position,
                "description": None,
                "showcase": True,
                "group_id": None,
                "page_id": page_id,
                "group": False,
                "only_show_if_degraded": False,
            }
        mine = [c for c in components.values() if c["page_id"] == page_id]
    return sorted(mine, key=lambda c: c["position"])


def _page(page_id: str) -> dict[str, Any]:
    title = load_catalog().get(page_id).title
    return {
        "id": page_id,
        "name": title,
        "url": f"https://status.{page_id}.example",
        "time_zone": "Etc/UTC",
        "updated_at": _now(),
    }


def _open_incidents(state: ServiceState, page_id: str) -> list[dict[str, Any]]:
    found = [
        i
        for i in state.collection("incidents").values()
        if i["page_id"] == page_id and i["status"] not in ("resolved", "postmortem")
    ]
    return sorted(found, key=lambda i: i["created_at"], reverse=True)


def _status(state: ServiceState, page_id: str) -> dict[str, str]:
    levels = [IMPACTS.index(i["impact"]) for i in _open_incidents(state, page_id)]
    levels += [
        IMPACTS.index(COMPONENT_STATUSES.get(c["status"], "none"))
        for c in _components(state, page_id)
    ]
    indicator = IMPACTS[max(levels, default=0)]
    return {"indicator": indicator, "description": DESCRIPTIONS[indicator]}


@routes.route("GET", "/pages/{page_id}/api/v2/summary.json", public=True)
async def summary(req: SandboxRequest) -> Response:
    """The public summary of a page."""
    page_id = _page_id(req)
    state = req.state
    return json_response(
        {
            "page": _page(page_id),
            "components": _components(state, page_id),
            "incidents": _open_incidents(state, page_id),
            "scheduled_maintenances": [],
            "status": _status(state, page_id),
        }
    )


@routes.route("GET", "/pages/{page_id}/api/v2/status.json", public=True)
async def status(req: SandboxRequest) -> Response:
    """The public status of a page."""
    page_id = _page_id(req)
    return json_response({"page": _page(page_id), "status": _status(req.state, page_id)})


def _body(req: SandboxRequest, key: str) -> dict[str, Any]:
    data = req.json()
    inner = data.get(key) if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        raise _error(400, f"{key} is missing")
    return inner


def _apply(
    state: ServiceState, page_id: str, incident: dict[str, Any], fields: dict[str, Any]
) -> None:
    """Apply an incident create/update body (status, impact, update body, components)."""
    now = _now()
    if "name" in fields:
        if not isinstance(fields["name"], str) or not fields["name"].strip():
            raise _error(422, "Name can't be blank")
        incident["name"] = fields["name"]
    if "status" in fields:
        if fields["status"] not in INCIDENT_STATUSES:
            raise _error(
                422, f"Status is not included in the list ({', '.join(INCIDENT_STATUSES)})"
            )
        incident["status"] = fields["status"]
        if fields["status"] == "resolved":
            incident["resolved_at"] = now
        if fields["status"] == "monitoring":
            incident["monitoring_at"] = now
    if "impact_override" in fields:
        if fields["impact_override"] not in IMPACTS:
            raise _error(422, f"Impact override is not included in the list ({', '.join(IMPACTS)})")
        incident["impact"] = fields["impact_override"]
    components = state.collection("components")
    affected = fields.get("components") or {}
    if not isinstance(affected, dict):
        raise _error(422, "components must be an object of component id to status")
    for cid, cstatus in affected.items():
        comp = components.get(cid)
        if comp is None or comp["page_id"] != page_id:
            raise _error(404, f"component {cid} not found")
        if cstatus not in COMPONENT_STATUSES:
            raise _error(422, f"component status {cstatus!r} is not valid")
        comp["status"] = cstatus
        comp["updated_at"] = now
        if cid not in incident["component_ids"]:
            incident["component_ids"].append(cid)
    if incident["status"] == "resolved":  # resolving puts the components back
        for cid in incident["component_ids"]:
            if cid in components:
                components[cid]["status"] = "operational"
    incident["components"] = [components[c] for c in incident["component_ids"] if c in components]
    incident["updated_at"] = now
    incident["incident_updates"].insert(
        0,
        {
            "id": f"{incident['id']}-u{len(incident['incident_updates']) + 1}",
            "status": incident["status"],
            "body": str(fields.get("body") or ""),
            "incident_id": incident["id"],
            "created_at": now,
            "updated_at": now,
            "display_at": now,
        },
    )


@routes.route("POST", "/pages/{page_id}/incidents")
async def create_incident(req: SandboxRequest) -> Response:
    """Create an incident on a page (management API)."""
    page_id = _page_id(req)
    state = req.state
    _components(state, page_id)
    fields = _body(req, "incident")
    if "name" not in fields:
        raise _error(422, "Name can't be blank")
    iid = state.next_id(f"{page_id}-i")
    now = _now()
    incident: dict[str, Any] = {
        "id": iid,
        "name": "",
        "status": "investigating",
        "impact": "minor",
        "created_at": now,
        "updated_at": now,
        "started_at": now,
        "monitoring_at": None,
        "resolved_at": None,
        "shortlink": f"https://stspg.io/{iid}",
        "page_id": page_id,
        "incident_updates": [],
        "component_ids": [],
    }
    _apply(state, page_id, incident, fields)
    state.collection("incidents")[iid] = incident
    return json_response(incident, status=201)


@routes.route("PATCH", "/pages/{page_id}/incidents/{incident_id}")
async def update_incident(req: SandboxRequest) -> Response:
    """Update (e.g. resolve) an incident."""
    page_id = _page_id(req)
    state = req.state
    incident = state.collection("incidents").get(req.path_params["incident_id"])
    if incident is None or incident["page_id"] != page_id:
        raise _error(404, "The requested resource could not be found.")
    _apply(state, page_id, incident, _body(req, "incident"))
    return json_response(incident)


@routes.route("GET", "/pages/{page_id}/incidents")
async def list_incidents(req: SandboxRequest) -> Response:
    """Every incident of a page, newest first."""
    page_id = _page_id(req)
    found = [i for i in req.state.collection("incidents").values() if i["page_id"] == page_id]
    return json_response(sorted(found, key=lambda i: i["created_at"], reverse=True))


@routes.route("PATCH", "/pages/{page_id}/components/{component_id}")
async def update_component(req: SandboxRequest) -> Response:
    """Set a component's status."""
    page_id = _page_id(req)
    state = req.state
    _components(state, page_id)
    comp = state.collection("components").get(req.path_params["component_id"])
    if comp is None or comp["page_id"] != page_id:
        raise _error(404, "The requested resource could not be found.")
    fields = _body(req, "component")
    if fields.get("status") not in COMPONENT_STATUSES:
        raise _error(422, "Status is not included in the list")
    comp["status"] = fields["status"]
    comp["updated_at"] = _now()
    return json_response(comp)
