"""The service's routers: each module here exposes ``router`` (a ``fastapi.APIRouter``
carrying its own prefix), and :data:`ROUTERS` lists them; ``create_app`` includes them in
this order. Adding a router is one module and one entry here.
"""

from __future__ import annotations

from fastapi import APIRouter

from junction.service.routes import (
    alerts,
    incidents,
    integrations,
    intelligence,
    logs,
    metrics,
    monitoring,
    optimization,
    services,
    status,
    workflows,
)

ROUTERS: list[APIRouter] = [
    status.router,  # the anonymous read
    # the product plan's seven endpoints (/api/v2/workflows/enhanced/...)
    intelligence.router,
    optimization.router,
    monitoring.router,
    metrics.router,  # /metrics, Prometheus
    # then the dashboard's data, in its nav order
    integrations.router,
    services.router,
    alerts.router,
    incidents.router,
    workflows.router,
    logs.router,
]

__all__ = ["ROUTERS"]
