"""The vendor's status page on the service page: what the monitor's poller last read.

Never a fetch: a page load must not wait for a vendor. Without a monitor in this process,
or before its poller read the page (it reads it when the service is in trouble), the
state is ``not_polled``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from junction.alerting.statuspage import StatusPagePoller, VendorStatus

VendorState = Literal["operational", "degraded", "unusable", "not_polled", "no_page"]


class VendorIncidentView(BaseModel):
    """An unresolved incident on the vendor's page."""

    name: str
    status: str
    impact: str
    shortlink: str | None
    latest_update: str | None


class VendorView(BaseModel):
    """The vendor's own status page, as last read by the monitor's poller."""

    state: VendorState = Field(
        description="operational/degraded (read), unusable (the last read failed), "
        "not_polled (no read yet in this process), no_page (none configured)."
    )
    indicator: str | None
    description: str | None
    incidents: list[VendorIncidentView]
    degraded_components: list[str]
    fetched_at: datetime | None
    url: str | None
    error: str | None = Field(description="Why the last read failed.")


def vendor_view(service: str, poller: StatusPagePoller | None, url: str | None) -> VendorView:
    """What the vendor's status page last said, from ``poller``'s cache (never a fetch).

    Args:
        service: The service.
        poller: The running monitor's poller, or ``None`` (no monitor in this process).
        url: The page's summary URL (:func:`junction.alerting.statuspage.status_page_url`),
            or ``None`` when the service has none.
    """
    status: VendorStatus | None = None
    error: str | None = None
    state: VendorState
    if url is None:
        state = "no_page"
    elif poller is None or not poller.polled(service):
        state = "not_polled"
    else:
        status = poller.cached(service)
        if status is None:
            state = "unusable"
            error = poller.last_error.get(service)
        else:
            state = "degraded" if status.degraded else "operational"
    return VendorView(
        state=state,
        indicator=status.indicator if status else None,
        description=status.description if status else None,
        incidents=[
            VendorIncidentView(
                name=i.name,
                status=i.status,
                impact=i.impact,
                shortlink=i.shortlink,
                latest_update=i.latest_update,
            )
            for i in (status.incidents if status else ())
        ],
        degraded_components=list(status.degraded_components if status else ()),
        fetched_at=status.fetched_at if status else None,
        url=url,
        error=error,
    )


__all__ = ["VendorIncidentView", "VendorState", "VendorView", "vendor_view"]
