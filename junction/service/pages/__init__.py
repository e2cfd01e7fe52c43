"""The dashboard's pages: each module here exposes ``router`` (an ``APIRouter`` with
``include_in_schema=False``), and :data:`PAGE_ROUTERS` lists them; ``create_app`` includes
them after the API's routers. Adding a page is one module and one entry here.
"""

from __future__ import annotations

from fastapi import APIRouter

from junction.service.pages import (
    alerts,
    auth,
    health,
    incidents,
    logs,
    reports,
    service,
    status,
    workflows,
)

PAGE_ROUTERS: list[APIRouter] = [  # the nav's order, each service's page after the grid
    auth.router,
    health.router,
    service.router,
    alerts.router,
    incidents.router,
    workflows.router,
    logs.router,
    reports.router,
    status.router,
]

__all__ = ["PAGE_ROUTERS"]
