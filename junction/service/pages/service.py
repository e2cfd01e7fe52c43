"""``/services/{name}``: one service in depth over a window (1h, 6h, 24h, 7d).

The page renders what :func:`~junction.service.routes.services.service_detail` answers
at once (latency, errors, SLA, dependencies, vendor status) and then loads
``/services/{name}/insights`` with htmx: the forecast band and co-failures, which may
take seconds (a Prophet fit) and are cached per (service, window). Charts are JSON data
blocks drawn by ``static/charts.js``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from junction.service.deps import StateDep
from junction.service.detail import WINDOW_CHOICES, LatencyBucket, window_label
from junction.service.detail_band import ForecastBand
from junction.service.errors import ApiError
from junction.service.routes.services import (
    check_service,
    service_detail,
    service_insights,
    window_of,
)
from junction.service.web import PageDep, render, render_fragment

router = APIRouter(include_in_schema=False)

WindowParam = Annotated[str | None, Query(max_length=32)]


def http_url(value: str | None) -> str | None:
    """``value`` when it is an http(s) URL (safe in an ``href``), else ``None``: a vendor's
    link may be ``javascript:``."""
    if value and value.strip().lower().startswith(("https://", "http://")):
        return value.strip()
    return None


def _epochs(buckets: list[LatencyBucket]) -> list[int]:
    return [int(b.start.timestamp()) for b in buckets]


def latency_chart(buckets: list[LatencyBucket]) -> dict[str, Any]:
    """``charts.js`` timeseries data: p50/p95/p99 per bucket."""
    return {
        "t": _epochs(buckets),
        "series": [
            {"label": "p50", "values": [b.p50_ms for b in buckets]},
            {"label": "p95", "values": [b.p95_ms for b in buckets]},
            {"label": "p99", "values": [b.p99_ms for b in buckets]},
        ],
        "y_label": "ms",
    }


def calls_chart(buckets: list[LatencyBucket]) -> dict[str, Any]:
    """``charts.js`` timeseries data: calls and failures per bucket."""
    return {
        "t": _epochs(buckets),
        "series": [
            {"label": "calls", "values": [b.calls for b in buckets]},
            {"label": "failures", "values": [b.failures for b in buckets], "color": "#dc2626"},
        ],
        "y_label": "calls",
        "height": 160,
    }


def band_chart(band: ForecastBand) -> dict[str, Any]:
    """``charts.js`` timeseries data: p95 against the expected band, anomalies marked."""
    points = band.points
    return {
        "t": [int(p.ts.timestamp()) for p in points],
        "series": [
            {"label": "p95", "values": [p.value for p in points]},
            {"label": "expected", "values": [p.expected for p in points], "color": "#64748b"},
        ],
        "band": {
            "label": "expected",
            "lower": [p.lower for p in points],
            "upper": [p.upper for p in points],
        },
        "points": [
            {"label": "anomaly", "values": [p.value if p.anomaly else None for p in points]}
        ],
        "y_label": "ms",
    }


def _choices(current: int) -> list[tuple[str, bool]]:
    return [(label, seconds == current) for label, seconds in WINDOW_CHOICES.items()]


@router.get("/services/{name}", response_class=HTMLResponse)
async def service_page(
    request: Request, name: str, state: StateDep, _session: PageDep, window: WindowParam = None
) -> HTMLResponse:
    """The service page."""
    try:
        check_service(name)
        chosen = window_of(window)
    except ApiError as exc:
        return render(
            request,
            "service.html",
            {"name": name, "error": exc.message, "choices": _choices(0), "detail": None},
            active="health",
            status_code=exc.status,
        )
    detail = await service_detail(state, name, chosen)
    return render(
        request,
        "service.html",
        {
            "name": name,
            "error": None,
            "detail": detail,
            "choices": _choices(chosen.seconds),
            "window": window_label(chosen.seconds),
            "latency_chart": latency_chart(detail.buckets),
            "calls_chart": calls_chart(detail.buckets),
            "http_url": http_url,
        },
        active="health",
    )


@router.get("/services/{name}/insights", response_class=HTMLResponse)
async def service_insights_fragment(
    name: str, state: StateDep, _session: PageDep, window: WindowParam = None
) -> HTMLResponse:
    """The forecast band and co-failures (a partial the page loads with htmx)."""
    try:
        check_service(name)
        chosen = window_of(window)
    except ApiError as exc:
        html = render_fragment("_service_insights.html", {"error": exc.message})
        return HTMLResponse(html, status_code=exc.status)
    found = await service_insights(state, name, chosen)
    html = render_fragment(
        "_service_insights.html",
        {"error": None, "insights": found, "band_chart": band_chart(found.band), "name": name},
    )
    return HTMLResponse(html)
