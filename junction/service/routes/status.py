"""``GET /api/v2/status``: the one anonymous read of the API (is the service up?).

It says nothing internal: no service names, hosts, errors or settings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version

from fastapi import APIRouter
from pydantic import BaseModel, Field

from junction.service.deps import StateDep

router = APIRouter(prefix="/api/v2", tags=["status"])


class StatusResponse(BaseModel):
    """Whether the service answers, and since when."""

    status: str = Field(description="Always 'ok' when the service answers.")
    version: str = Field(description="Junction's version.")
    time: datetime = Field(description="The server's time (UTC).")
    uptime_seconds: float = Field(description="Seconds since the service started.")
    monitoring: bool = Field(description="Whether the monitor loop runs in this process.")


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
    )
