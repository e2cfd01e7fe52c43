"""The API's anonymous reads: ``GET /api/v2/status`` (is the service up?) and
``GET /api/v2/status/page`` (the public status page, the model ``/status`` shows).

They say nothing internal: no internal service names, hosts, errors or settings; the page
shows only what the status-page file makes public (:mod:`junction.service.public`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version

from fastapi import APIRouter
from pydantic import BaseModel, Field

from junction.service.deps import StateDep
from junction.service.public import StatusPage
from junction.service.public_page import public_status

router = APIRouter(prefix="/api/v2", tags=["status"])


class StatusResponse(BaseModel):
    """Whether the service answers, and since when."""

    status: str = Field(description="Always 'ok' when the service answers.")
    version: str = Field(description="Junction's version.")
    time: datetime = Field(description="The server's time (UTC).")
    uptime_seconds: float = Field(description="Seconds since the service started.")
    monitoring: bool = Field(description="Whether the monitor loop runs in this process.")
    monitor_restarts: int = Field(
        description="Times the in-process monitor was restarted after a failure."
    )


@router.get("/status", summary="Service status (anonymous)", response_model=StatusResponse)
async def get_status(state: StateDep) -> StatusResponse:
    """Whether the service answers; anonymous, nothing internal."""
    now = datetime.now(UTC)
    return StatusResponse(
        status="ok",
        version=version("junction"),
        time=now,
        uptime_seconds=round((now - state.started_at).total_seconds(), 3),
        monitoring=state.monitor_running,
        monitor_restarts=state.monitor_info().restarts,
    )


@router.get("/status/page", summary="The public status page (anonymous)", response_model=StatusPage)
async def get_status_page(state: StateDep) -> StatusPage:
    """The public status page as JSON: the overall state, per public service its status and
    daily uptime, active and past incidents with their published updates, and scheduled
    maintenance. Anonymous; only what the status-page file makes public."""
    return await public_status(state).page()
