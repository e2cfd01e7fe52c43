"""Rendering pages: one Jinja2 environment (autoescape on) over ``junction/service/templates``.

:func:`render` is what every page route returns. Besides the route's own context, every
template sees ``request``, ``session``, ``csrf_token``, ``nav`` and ``active`` (the nav
entry to highlight), ``auth_enabled``, ``show_nav`` and ``charts`` (the uPlot files are
installed). Filters for numbers and times shared by every page: ``ms``, ``pct``,
``score``, ``when`` and ``ago``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

if TYPE_CHECKING:
    from junction.service.web import WebState
    from junction.service.web.sessions import Session

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
"""``junction/service/templates``."""


@dataclass(frozen=True)
class NavItem:
    """One entry of the nav bar."""

    key: str
    label: str
    href: str


NAV: tuple[NavItem, ...] = (
    NavItem("health", "Health", "/"),
    NavItem("alerts", "Alerts", "/alerts"),
    NavItem("incidents", "Incidents", "/incidents"),
    NavItem("workflows", "Workflows", "/workflows"),
    NavItem("logs", "Logs", "/logs"),
    NavItem("status", "Status", "/status"),
)
"""The nav bar (``active`` names one by key)."""


def fmt_ms(value: float | None) -> str:
    """``123.4`` -> ``123 ms``; ``1834`` -> ``1.83 s``; ``None`` -> ``–``."""
    if value is None:
        return "–"
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.0f} ms"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.9987`` -> ``99.9%``; ``None`` -> ``–``."""
    if value is None:
        return "–"
    return f"{value * 100:.{digits}f}%"


def fmt_score(value: float | None) -> str:
    """A 0-100 score: ``87.26`` -> ``87``; ``None`` -> ``–``."""
    return "–" if value is None else f"{value:.0f}"


def fmt_when(value: datetime | None) -> str:
    """A UTC time for tables: ``2026-12-07 15:04:05Z``; ``None`` -> ``–``."""
    if value is None:
        return "–"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago: ``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``; ``None`` -> ``–``."""
    if value is None:
        return "–"
    now = now or datetime.now(UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = max(0.0, (now - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # no stat() per render: the templates ship with the code
    )
    env.filters.update(ms=fmt_ms, pct=fmt_pct, score=fmt_score, when=fmt_when, ago=fmt_ago)
    return env


ENV = _environment()
"""The one template environment (autoescape on for every template)."""


def web_state(request: Request) -> WebState:
    """The app's :class:`~junction.service.web.WebState` (``app.state.web``)."""
    web: WebState = request.app.state.web
    return web


def request_session(request: Request) -> Session:
    """The request's browser session (set by :class:`~.security.WebSecurity`)."""
    session: Session | None = getattr(request.state, "session", None)
    if session is None:  # a path the middleware gives no session (never a page)
        session = web_state(request).sessions.anonymous()
        request.state.session = session
    return session


def page_context(request: Request, active: str | None = None) -> dict[str, Any]:
    """What every template sees (see the module docstring)."""
    web = web_state(request)
    session = request_session(request)
    return {
        "request": request,
        "session": session,
        "csrf_token": session.csrf_token,
        "nav": NAV,
        "active": active,
        "auth_enabled": web.token_configured,
        "show_nav": session.logged_in or not web.token_configured,
        "charts": "uPlot.iife.min.js" in web.vendor,
        "htmx": "htmx.min.js" in web.vendor,
    }


def render_fragment(template: str, context: Mapping[str, Any]) -> str:
    """A template (or partial) rendered to a string with ``context`` only."""
    return ENV.get_template(template).render(context)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    active: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page: ``template`` rendered with :func:`page_context` plus ``context``.

    Args:
        request: The request (its session gives ``csrf_token``).
        template: Template name under ``junction/service/templates``.
        context: The page's own values (they win over the common ones).
        active: The nav entry to highlight (``health``, ``alerts`` ...).
        status_code: The response's status.
    """
    values = page_context(request, active)
    values.update(context or {})
    return HTMLResponse(ENV.get_template(template).render(values), status_code=status_code)


__all__ = [
    "ENV",
    "NAV",
    "TEMPLATES_DIR",
    "NavItem",
    "fmt_ago",
    "fmt_ms",
    "fmt_pct",
    "fmt_score",
    "fmt_when",
    "page_context",
    "render",
    "render_fragment",
    "request_session",
    "web_state",
]
