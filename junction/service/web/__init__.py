"""The dashboard's web layer: rendering, sessions, CSRF and the security middleware.

Pages (:mod:`junction.service.pages`) return :func:`render` and depend on :data:`PageDep`;
their POST routes also depend on :data:`CsrfDep`. :func:`install_web` wires it all into
the app (``create_app`` calls it): the middleware, the login redirect, ``/static`` and the
vendor files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from junction.service.web import vendor
from junction.service.web.deps import (
    CsrfDep,
    LoginRequired,
    PageDep,
    check_csrf,
    login_redirect,
    login_url,
    safe_next,
)
from junction.service.web.feed import HealthFeed
from junction.service.web.security import WebSecurity
from junction.service.web.sessions import Session, SessionManager
from junction.service.web.templating import (
    ENV,
    render,
    render_fragment,
    request_session,
    web_state,
)
from junction.service.web.vendor import find_vendor_files, vendor_warning
from junction.settings import Settings

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
"""``junction/service/static``, served at ``/static/``."""


@dataclass
class WebState:
    """The dashboard's per-app state (``app.state.web``).

    Attributes:
        sessions: Browser sessions.
        token_configured: ``JUNCTION_API_TOKEN`` is set (pages need a login).
        vendor: The npm files found (served name -> file).
        feeds: Live feeds of the pages (``health``: the grid's), created on first use.
    """

    sessions: SessionManager
    token_configured: bool
    vendor: dict[str, Path] = field(default_factory=dict)
    feeds: dict[str, HealthFeed] = field(default_factory=dict)

    async def aclose(self) -> None:
        """Stop the live feeds (app shutdown): their event streams end."""
        for feed in self.feeds.values():
            await feed.aclose()


def install_web(app: FastAPI, settings: Settings) -> WebState:
    """Give ``app`` the dashboard's plumbing: ``app.state.web``, the login redirect, the
    vendor route and ``/static``. The :class:`WebSecurity` middleware is added by the
    caller, in its place among the others.

    Returns:
        The :class:`WebState` (also on ``app.state.web``).
    """
    web = WebState(
        sessions=SessionManager(),
        token_configured=settings.api_token is not None,
        vendor=find_vendor_files(settings),
    )
    app.state.web = web
    app.add_exception_handler(LoginRequired, login_redirect)
    app.include_router(vendor.router)  # before the /static mount, which would shadow it
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return web


__all__ = [
    "ENV",
    "STATIC_DIR",
    "CsrfDep",
    "LoginRequired",
    "PageDep",
    "Session",
    "SessionManager",
    "WebSecurity",
    "WebState",
    "check_csrf",
    "install_web",
    "login_url",
    "render",
    "render_fragment",
    "request_session",
    "safe_next",
    "vendor_warning",
    "web_state",
]
