"""The service's ASGI app: ``create_app(settings)`` (``junction serve`` runs it).

The routers listed in :data:`junction.service.routes.ROUTERS` (each with its own prefix),
the one error shape (:mod:`junction.service.errors`), a request body limit
(``JUNCTION_API_MAX_BODY_BYTES``) and the :class:`~junction.service.state.ServiceState` on
``app.state.junction``; with ``monitor=True`` the monitor loop runs in the same process
from start-up to shutdown. The dashboard's pages (:data:`junction.service.pages.PAGE_ROUTERS`),
``/static`` and the browser-facing guard (sessions, CSRF origin check, security headers:
:mod:`junction.service.web`) come with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI

from junction.logsearch import warm_summaries
from junction.service.compaction import compact_periodically
from junction.service.errors import (
    ERROR_RESPONSES,
    ApiError,
    error_response,
    install_error_handlers,
    internal_error,
)
from junction.service.pages import PAGE_ROUTERS
from junction.service.pages.health import warm as warm_health_grid
from junction.service.public_page import public_status
from junction.service.routes import ROUTERS
from junction.service.state import ServiceState
from junction.service.web import WebSecurity, install_web
from junction.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    """ASGI middleware: bodies over ``max_body`` get 413; an unexpected error gets 500.

    The body is read (at most ``max_body`` bytes) before the app runs, so an oversized
    request is refused whole, with nothing done, whether or not it declared its length.
    An exception the app's handlers did not answer is logged once and answered in the one
    error shape (no traceback in the body), unless the response had already started.

    Args:
        app: The wrapped ASGI app.
        max_body: Largest body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_response(
            413,
            "payload_too_large",
            f"request body is larger than {self.max_body} bytes (JUNCTION_API_MAX_BODY_BYTES)",
            {"limit_bytes": self.max_body},
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body:
                    await too_large(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, once the client goes

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, replay, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = internal_error(scope.get("method", "?"), scope.get("path", "?"), exc)
            await response(scope, replay, send)


def create_app(settings: Settings, *, monitor: bool = False) -> FastAPI:
    """The service's app.

    Args:
        settings: Its settings (the token, the body limit, the store, the monitor's).
        monitor: Run the monitor loop in this process from start-up to shutdown.
    """
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()  # the live view reads the store once before serving
        if monitor:
            # A monitor that cannot open is logged with its reason by start_monitor; the
            # API serves without it and monitoring/start reports why (and retries).
            with contextlib.suppress(ApiError):
                await state.start_monitor()
        # The grid's 1,000 rows, the status page's 90-day uptime and log search's text
        # summaries built once ahead of the first visitor, not by it (each logs and
        # swallows its own errors).
        warming = [
            asyncio.create_task(warm_health_grid(app)),
            asyncio.create_task(public_status(state).warm()),
            asyncio.create_task(asyncio.to_thread(warm_summaries, settings)),
            # Today's segments merged every few minutes (reads stay fast).
            asyncio.create_task(
                compact_periodically(state, settings.serve_compact_interval_seconds)
            ),
        ]
        try:
            yield
        finally:
            for task in warming:
                task.cancel()
            await app.state.web.aclose()  # the pages' event streams end first
            await state.aclose()

    app = FastAPI(
        title="Junction",
        version=version("junction"),
        summary="Cross-service workflows, integration monitoring and analytics.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.junction = state
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    web = install_web(app, settings)
    for router in PAGE_ROUTERS:
        app.include_router(router)
    # Added last = outermost: the body limit and the 500 guard see every request first;
    # then cross-site writes are refused before any route runs.
    app.add_middleware(WebSecurity, sessions=web.sessions, token_configured=web.token_configured)
    app.add_middleware(RequestGuard, max_body=settings.api_max_body_bytes)
    return app


__all__ = ["RequestGuard", "create_app"]
