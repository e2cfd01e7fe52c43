"""``/``: the health grid (every enabled integration: status, score, p95, success rate,
uptime, latency sparkline, open alerts), and ``/events/health``: its live updates.

Live updates are server-sent events carrying the changed rows as HTML rendered by the
same partial as the page (``_health_row.html``), swapped in by ``static/health.js``: one
renderer, escaped by Jinja, instead of a second one in JavaScript. The rows come from one
shared :class:`~junction.service.web.feed.HealthFeed` per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from markupsafe import Markup

from junction.alerting.alerts import Alert
from junction.service.errors import ApiError
from junction.service.state import ServiceState
from junction.service.web import PageDep, render, render_fragment, web_state
from junction.service.web.feed import HEARTBEAT_SECONDS, HealthFeed, TooManyStreams
from junction.service.web.grid import GridRow, grid_rows

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


def window_label(seconds: float) -> str:
    """``900`` -> ``15m``; ``7200`` -> ``2h``; ``45`` -> ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


async def grid_of(state: ServiceState) -> list[GridRow]:
    """The grid's rows: the health table, open alerts and sparklines of every integration."""
    health, _ = await state.health()
    alerts: list[Alert] = []
    try:
        alerts = await asyncio.to_thread(state.open_alerts)
    except ApiError as exc:  # a damaged alert database: the grid still shows health
        log.warning("the health grid shows no alerts: %s", exc.message)
    return grid_rows(health, alerts)


def health_feed(request: Request) -> HealthFeed:
    """The app's grid feed (created on first use)."""
    web = web_state(request)
    feed = web.feeds.get("health")
    if feed is None:
        state: ServiceState = request.app.state.junction
        window = window_label(state.window_seconds(None))
        feed = HealthFeed(
            lambda: grid_of(state),
            lambda row: render_fragment("_health_row.html", {"row": row}),
            lambda counts: render_fragment(
                "_health_summary.html", {"counts": counts, "window_label": window}
            ),
        )
        web.feeds["health"] = feed
    return feed


@router.get("/", response_class=HTMLResponse)
async def health_grid(request: Request, _session: PageDep) -> HTMLResponse:
    """The health grid."""
    snapshot = await health_feed(request).refresh(max_age=1.0)
    return render(
        request,
        "health.html",
        {
            # Markup: rows rendered by our own autoescaping partial, not raw data.
            "rows_html": [Markup(snapshot.html[row.service]) for row in snapshot.rows],
            "summary_html": Markup(snapshot.summary_html),
            "version": snapshot.version,
        },
        active="health",
    )


@router.get("/events/health")
async def health_events(
    request: Request,
    session: PageDep,
    after: str | None = None,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """Server-sent events: ``rows`` events with the rows changed since the client's
    version (``Last-Event-ID`` on a reconnect, else ``after``); a comment every
    :data:`~junction.service.web.feed.HEARTBEAT_SECONDS` when nothing changes.

    Raises:
        ApiError: 503 ``too_many_streams`` when the process has its maximum open.
    """
    feed = health_feed(request)
    if feed.streams >= feed.max_streams:
        raise ApiError(
            503,
            "too_many_streams",
            f"{feed.max_streams} live streams are open; the page works without live updates",
            headers={"Retry-After": "30"},
        )
    web = web_state(request)
    must_stay_logged_in = web.token_configured

    async def events() -> AsyncIterator[str]:
        try:
            async with feed.stream():
                yield "retry: 2000\n\n"
                seen = last_event_id or after
                await feed.refresh(max_age=1.0)
                last_write = time.monotonic()
                while not feed.closed:
                    if must_stay_logged_in and not web.sessions.is_logged_in(session.id):
                        return  # logged out: the client's reconnect gets 401
                    payload = feed.payload(seen)
                    if payload is not None:
                        seen = feed.version
                        yield f"id: {seen}\nevent: rows\ndata: {payload}\n\n"
                        last_write = time.monotonic()
                    elif time.monotonic() - last_write >= HEARTBEAT_SECONDS:
                        yield ": ping\n\n"
                        last_write = time.monotonic()
                    await feed.wait(HEARTBEAT_SECONDS)
        except TooManyStreams:
            return

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
