"""The records a sandboxed service holds that a user needs ids from: Workday workers for
``worker_id``, Okta groups, GitLab projects and pipelines, PagerDuty services...

Each vendor module declares what is worth listing (``routes.lists("workers", "id",
"descriptor", ...)``). The seed is deterministic (ids are fixed; only Workday's dates
follow today), so the same records can be read from a running sandbox (``GET
/_admin/records``, which also shows what was created since) or computed without one
(:func:`seeded_records`). ``junction sandbox records`` prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from integrations.sandbox.api import ServiceState, VendorRoutes

Records = dict[str, dict[str, dict[str, Any]]]
"""``{service: {collection: {"fields": [...], "records": [{field: value}]}}}``."""


def _field(obj: Mapping[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def listing(vendor: VendorRoutes, state: ServiceState) -> dict[str, dict[str, Any]]:
    """The listed collections of one service's (already seeded) ``state``."""
    out: dict[str, dict[str, Any]] = {}
    for item in vendor.listings:
        objects = list(state.collections.get(item.collection, {}).values())
        out[item.collection] = {
            "fields": list(item.fields),
            "records": [{f: _field(obj, f) for f in item.fields} for obj in objects],
        }
    return out


def seeded_records(vendors: Iterable[VendorRoutes], service: str | None = None) -> Records:
    """What a freshly started sandbox holds, computed here (no server needed).

    Args:
        vendors: The vendor modules' routes (``routing.discover_vendor_routes()``).
        service: Only this service (default: every service with listings).
    """
    out: Records = {}
    for vendor in vendors:
        if not vendor.listings or (service is not None and vendor.service != service):
            continue
        out[vendor.service] = listing(vendor, vendor.seeded(ServiceState(vendor.service)))
    return out
