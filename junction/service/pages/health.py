"""``/``: the health grid (every enabled integration: status, score, p95, success rate,
uptime, latency sparkline, open alerts), and ``/events/health``: its live updates.

Live updates are server-sent events carrying the changed rows as HTML rendered by the
same partial as the page (``_health_row.html``), swapped in by ``static/health.js``: one
renderer, escaped by Jinja, instead of a second one in JavaScript. The rows come from one
shared :class:`~junction.service.web.feed.HealthFeed` per process, woken by the live view
(``state.live``) as soon as a probe or a live call is read from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from markupsafe import Markup

from integrations.catalog import load_catalog
from junction.alerting.alerts import Alert
from junction.service.detail import window_label
from junction.service.errors import ApiError
from junction.service.live import LiveView
from junction.service.state import ServiceState
from junction.service.web import PageDep, WebState, render, render_fragment, web_state
from junction.service.web.feed import HEARTBEAT_SECONDS, HealthFeed, TooManyStreams
from junction.service.web.grid import GridRow, Spark, grid_rows

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


class Sparks:
    """Latency sparklines from the live view, recomputed only for the services with new
    rows since the last call, and for all of them when the minute turns.

    Args:
        live: The state's live view.
    """

    def __init__(self, live: LiveView) -> None:
        self.live = live
        self._cache: dict[str, Spark] = {}
        self._version = -1
        self._minute = -1

    def get(self, names: Sequence[str]) -> dict[str, Spark]:
        """The sparkline of each of ``names``."""
        version = self.live.version  # before reading: a change meanwhile is read next time
        minute = int(time.time() // 60)
        wanted = set(names)
        if minute != self._minute:
            stale = wanted
        else:
            stale = (self.live.changed_since(self._version) & wanted) | (wanted - set(self._cache))
        for name in stale:
            self._cache[name] = Spark.from_points(self.live.sparkline(name))
        self._version, self._minute = version, minute
        return {name: self._cache[name] for name in names}


async def grid_of(state: ServiceState, sparks: Sparks) -> list[GridRow]:
    """The grid's rows: the health table, open alerts and sparklines of every integration."""
    health, _ = await state.health()
    alerts: list[Alert] = []
    try:
        alerts = await asyncio.to_thread(state.open_alerts)
    except ApiError as exc:  # a damaged alert database: the grid still shows health
        log.warning("the health grid shows no alerts: %s", exc.message)
    pages = set(load_catalog().names)  # /services/{name} knows catalog integrations only
    return grid_rows(health, alerts, sparks.get([h.service for h in health]), pages)


def health_feed(request: Request) -> HealthFeed:
    """The app's grid feed (created on first use)."""
    return app_health_feed(request.app)


async def warm(app: FastAPI) -> None:
    """Render every row once, ahead of the first visitor (app start-up, in the background)."""
    try:
        await app_health_feed(app).refresh()
    except Exception as exc:  # the first visitor then pays, and sees the error if it lasts
        log.warning("the health grid could not be prepared at start-up: %s", exc)


def app_health_feed(app: FastAPI) -> HealthFeed:
    """``app``'s grid feed (created on first use)."""
    web: WebState = app.state.web
    feed = web.feeds.get("health")
    if feed is None:
        state: ServiceState = app.state.junction
        window = window_label(state.window_seconds(None))
        sparks = Sparks(state.live)

        async def wait_change(timeout: float) -> None:
            await state.live.wait_change(state.live.version, timeout)

        feed = HealthFeed(
            lambda: grid_of(state, sparks),
            lambda row: render_fragment("_health_row.html", {"row": row}),
            lambda counts: render_fragment(
                "_health_summary.html", {"counts": counts, "window_label": window}
            ),
            wait_change=wait_change,
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
