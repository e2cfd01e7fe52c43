"""Sandbox Workday: the REST ``workers`` resource, below ``/ccx/api/v1/{tenant}``.

Plays Workday's REST API (Common v1 ``workers``; see ``integrations/workday.py`` for the
reference and assumptions): ``GET /workers?limit&offset&search`` answers ``{"total": N,
"data": [...]}`` (``limit`` at most 100), ``GET /workers/{ID}`` one worker, errors are
``{"error": ..., "errors": [{"error": ...}]}``. OAuth2 tokens come from the sandbox's
token endpoint. Seeded relative to today: 130 workers (two pages), of whom 5 were hired
in the last 30 days (one more 45 days ago) and 3 were terminated in the last 30 days.
Collection ``workers``.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

from starlette.responses import Response

from integrations.sandbox.api import (
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    json_response,
)

routes = VendorRoutes("workday")
routes.lists("workers", "id", "descriptor", "primaryWorkEmail", "hireDate", "terminationDate")

WORKER_COUNT = 130
RECENT_HIRES = 5
RECENT_TERMINATIONS = 3
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie")
_TITLES = ("Software Engineer", "Account Executive", "Support Specialist", "HR Partner")
_ORGS = ("Engineering", "Sales", "Support", "People")


def _wid(seed: str) -> str:
    """A stable 32-hex Workday ID."""
    return hashlib.md5(seed.encode(), usedforsecurity=False).hexdigest()


def _ref(kind: str, name: str) -> dict[str, Any]:
    return {"id": _wid(f"{kind}-{name}"), "descriptor": name}


def _error(status: int, message: str) -> VendorError:
    return VendorError(status, {"error": message, "errors": [{"error": message}]})


@routes.seeder("workers")
def seed(state: ServiceState, base: str = "", today: date | None = None) -> None:
    """Seed the workers, dated relative to ``today``.

    Workers 0..4 were hired 1, 6, 11, 16, 21 days ago; workers 5..7 were terminated 2, 9
    and 16 days ago; everyone else was hired years ago.
    """
    today = today or date.today()
    workers = state.collection("workers")
    for n in range(WORKER_COUNT):
        first, last = _FIRST[n % len(_FIRST)], _LAST[n % len(_LAST)]
        org = _ORGS[n % len(_ORGS)]
        if n < RECENT_HIRES:
            hired = today - timedelta(days=1 + 5 * n)
        elif n == RECENT_HIRES:
            hired = today - timedelta(days=45)
        else:
            hired = today - timedelta(days=400 + 17 * n)
        wid = _wid(f"worker-{n}")
        worker: dict[str, Any] = {
            "id": wid,
            "descriptor": f"{first} {last} {n}",
            "href": f"/workers/{wid}",
            "workerId": f"{21000 + n}",
            "primaryWorkEmail": f"{first.lower()}.{last.lower()}{n}@example.com",
            "businessTitle": _TITLES[n % len(_TITLES)],
            "isManager": n % 10 == 0,
            "primarySupervisoryOrganization": _ref("org", org),
            "location": _ref("loc", "San Francisco" if n % 2 else "Dublin"),
            "workerType": _ref("type", "Employee"),
            "hireDate": hired.isoformat(),
        }
        if RECENT_HIRES <= n < RECENT_HIRES + RECENT_TERMINATIONS:
            worker["terminationDate"] = (
                today - timedelta(days=2 + 7 * (n - RECENT_HIRES))
            ).isoformat()
        workers[wid] = worker


def _state(req: SandboxRequest) -> ServiceState:
    return routes.seeded(req.state)


def _int(req: SandboxRequest, name: str, default: int, low: int, high: int) -> int:
    raw = req.query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _error(400, f"invalid request: {name} must be an integer") from None
    if not low <= value <= high:
        raise _error(400, f"invalid request: {name} must be between {low} and {high}")
    return value


@routes.route("GET", "/workers")
async def list_workers(req: SandboxRequest) -> Response:
    """Workers by ``limit``/``offset``; ``search`` matches the name case-insensitively."""
    workers = list(_state(req).collection("workers").values())
    search = req.query.get("search", "").lower()
    if search:
        workers = [w for w in workers if search in w["descriptor"].lower()]
    limit = _int(req, "limit", 20, 1, 100)
    offset = _int(req, "offset", 0, 0, 10_000_000)
    return json_response({"total": len(workers), "data": workers[offset : offset + limit]})


@routes.route("GET", "/workers/{worker_id}")
async def get_worker(req: SandboxRequest) -> Response:
    """One worker by Workday ID."""
    worker = _state(req).collection("workers").get(req.path_params["worker_id"])
    if worker is None:
        raise _error(404, "Resource not found: invalid Workday ID")
    return json_response(worker)
