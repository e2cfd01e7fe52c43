"""``/api/v2/services/{name}``: one service in depth over a window (the service page's data).

``GET /api/v2/services/{name}?window=1h`` answers at once from the metrics store: latency
percentiles per bucket and overall, the error mix, recent errors, SLA and error-budget
burn, the workflows using the service and its dependencies, and its vendor status page's
state (the in-process monitor's cached read; never fetched here).
``GET /api/v2/services/{name}/insights?window=1h`` is the slower part: the forecast band
with anomalies and the co-failures, computed in a thread and cached for a few minutes per
(service, window). Both need the token. The page (:mod:`junction.service.pages.service`)
uses the same two functions, :func:`service_detail` and :func:`service_insights`.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from integrations.catalog import load_catalog
from junction.alerting.config import AlertConfigError, load_settings_config
from junction.alerting.statuspage import StatusPagePoller, status_page_url
from junction.monitor.alerts import EngineHook
from junction.service.deps import StateDep, require_token
from junction.service.detail import (
    DependencyView,
    LatencyAndErrors,
    RestoredSla,
    SlaView,
    Window,
    dependency_view,
    latency_and_errors,
    parse_window,
    restore_sla,
    sla_view,
    window_label,
)
from junction.service.detail_band import Insights, TtlCache, insights
from junction.service.detail_vendor import VendorView, vendor_view
from junction.service.lookups import error_responses, invalid, unknown
from junction.service.state import ServiceState
from junction.workflows.depmap import build_map

router = APIRouter(
    prefix="/api/v2/services",
    tags=["services"],
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 404, 422),
)

WindowQuery = Annotated[
    str | None,
    Query(
        max_length=32,
        description="The window: seconds (3600) or a duration (1h, 6h, 24h, 7d); "
        "1 minute to 7 days, default 1h.",
    ),
]


class ServiceDetail(LatencyAndErrors):
    """One service over a window."""

    service: str
    title: str
    window_seconds: int
    window: str = Field(description="The window as a duration (1h).")
    since: datetime
    until: datetime
    bucket_seconds: int = Field(description="Width of each latency bucket.")
    sla: SlaView | None = Field(description="Null when the alerting file is invalid.")
    sla_error: str | None = Field(description="Why there is no SLA (the alerting file).")
    dependencies: DependencyView
    vendor: VendorView


# --------------------------------------------------------------------------- shared with the page


def check_service(name: str) -> str:
    """``name`` when the catalog has it.

    Raises:
        ApiError: 404 ``unknown_service`` with a did-you-mean.
    """
    catalog = load_catalog()
    if name not in catalog:
        raise unknown("service", name, catalog.names, field="path.name")
    return name


def window_of(text: str | None) -> Window:
    """The window ending now that ``?window=`` asks for.

    Raises:
        ApiError: 422 naming ``query.window``.
    """
    try:
        return Window.ending(parse_window(text))
    except ValueError as exc:
        raise invalid("query.window", str(exc)) from None


def monitor_poller(state: ServiceState) -> StatusPagePoller | None:
    """The in-process monitor's status-page poller, if it runs with one."""
    mon = state.monitor
    hook = mon.alerts if mon is not None and state.monitor_running else None
    return hook.poller if isinstance(hook, EngineHook) else None


def _vendor(state: ServiceState, name: str) -> VendorView:
    poller = monitor_poller(state)
    try:
        url = poller.url(name) if poller else status_page_url(name, state.settings)
    except ValueError:  # JUNCTION_STATUS_PAGE_URLS malformed: the monitor logs it too
        url = None
    return vendor_view(name, poller, url)


SLA_CACHE_SECONDS = 60.0
"""How long one service's restored SLA tracker is reused (for every window): it reads the
whole SLA period (30 days of probes and calls), the page's most expensive query."""


@dataclass
class DetailCaches:
    """One app's caches: forecast bands and co-failures (computed one at a time), SLAs."""

    insights: TtlCache = field(default_factory=TtlCache)
    # A week of minute buckets is up to ~2.5 MB per service: a few dozen services at most.
    sla: TtlCache = field(
        default_factory=lambda: TtlCache(SLA_CACHE_SECONDS, max_entries=32, serial=False)
    )


_CACHES: weakref.WeakKeyDictionary[ServiceState, DetailCaches] = weakref.WeakKeyDictionary()


def caches(state: ServiceState) -> DetailCaches:
    """The app's :class:`DetailCaches` (created on first use)."""
    found = _CACHES.get(state)
    if found is None:
        found = _CACHES[state] = DetailCaches()
    return found


async def _sla(state: ServiceState, name: str, window: Window) -> tuple[SlaView | None, str | None]:
    try:
        policy = load_settings_config(state.settings).sla
    except AlertConfigError as exc:
        return None, f"the alerting file is invalid: {str(exc).splitlines()[0]}"
    store = state.store()
    restored: RestoredSla = await caches(state).sla.get(
        ("sla", name, repr(policy)),
        lambda: restore_sla(store, name, policy, datetime.now(UTC)),
    )
    # On the event loop: the cached tracker is read by one request at a time.
    return sla_view(restored, window), None


async def service_detail(state: ServiceState, name: str, window: Window) -> ServiceDetail:
    """Everything about ``name`` over ``window`` that the store answers at once (the SLA
    reused for up to :data:`SLA_CACHE_SECONDS`)."""
    check_service(name)
    store = state.store()
    latency, (sla, sla_error) = await asyncio.gather(
        asyncio.to_thread(latency_and_errors, store, name, window), _sla(state, name, window)
    )
    return ServiceDetail(
        **latency.model_dump(),
        service=name,
        title=load_catalog().get(name).title,
        window_seconds=window.seconds,
        window=window_label(window.seconds),
        since=window.since,
        until=window.until,
        bucket_seconds=window.bucket,
        sla=sla,
        sla_error=sla_error,
        dependencies=dependency_view(build_map(), name),
        vendor=_vendor(state, name),
    )


async def service_insights(state: ServiceState, name: str, window: Window) -> Insights:
    """The forecast band and co-failures of ``name`` over ``window`` (cached)."""
    return await insights(caches(state).insights, state.store(), check_service(name), window)


# --------------------------------------------------------------------------- routes


@router.get("/{name}", response_model=ServiceDetail, summary="One service over a window")
async def get_service(name: str, state: StateDep, window: WindowQuery = None) -> ServiceDetail:
    """Latency percentiles (per bucket and overall), the error mix, recent errors, SLA and
    error-budget burn, workflows and dependencies, and the vendor status page's state."""
    check_service(name)  # an unknown service is named before a bad window
    return await service_detail(state, name, window_of(window))


@router.get(
    "/{name}/insights",
    response_model=Insights,
    summary="Forecast band, anomalies and co-failures of one service",
)
async def get_service_insights(name: str, state: StateDep, window: WindowQuery = None) -> Insights:
    """The p95 latency against its forecast band (Prophet for windows over 6 h with a
    day of history, else the streaming detector or a robust band; ``method`` says which)
    and the services that failed together with it. Computed on demand, cached for a few
    minutes per (service, window)."""
    check_service(name)
    return await service_insights(state, name, window_of(window))
