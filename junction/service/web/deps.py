"""Dependencies of page routes: :data:`PageDep` (a session, logged in when a token is
configured) and :data:`CsrfDep` (the request carries the session's CSRF token)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from junction.service.errors import ApiError
from junction.service.web.sessions import Session
from junction.service.web.templating import request_session, web_state


class LoginRequired(Exception):
    """A page was asked for without a logged-in session (answered by :func:`login_redirect`).

    Args:
        next_path: Where to go back after logging in.
    """

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path on this site, else ``default``.

    Refuses anything that could leave the site: a scheme (``javascript:``, ``https:``), a
    host (``//evil``), backslashes (``/\\evil``, read as ``//evil`` by browsers), control
    characters.
    """
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def login_url(next_path: str) -> str:
    """``/login?next=<next_path>`` (quoted)."""
    return f"/login?next={quote(safe_next(next_path), safe='/')}"


async def login_redirect(request: Request, exc: Exception) -> Response:
    """Answer :class:`LoginRequired`: 303 to the login page; htmx and event streams get
    401 (with ``HX-Redirect`` for htmx, which then loads the login page)."""
    assert isinstance(exc, LoginRequired)
    target = login_url(exc.next_path)
    if request.headers.get("hx-request") or "text/event-stream" in request.headers.get(
        "accept", ""
    ):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def page_session(request: Request) -> Session:
    """The request's session; when ``JUNCTION_API_TOKEN`` is set it must be logged in.

    Raises:
        LoginRequired: No logged-in session (the page redirects to ``/login``).
    """
    session = request_session(request)
    if web_state(request).token_configured and not session.logged_in:
        path = request.url.path
        query = request.url.query
        raise LoginRequired(f"{path}?{query}" if query else path)
    return session


async def check_csrf(request: Request, session: Session) -> None:
    """Refuse the request unless it carries ``session``'s CSRF token (header
    ``X-CSRF-Token`` or form field ``csrf_token``).

    Raises:
        ApiError: 403 ``csrf_failed``.
    """
    given = request.headers.get("x-csrf-token")
    ctype = request.headers.get("content-type", "")
    if not given and ctype.startswith(("application/x-www-form-urlencoded", "multipart/")):
        field = (await request.form()).get("csrf_token")
        given = field if isinstance(field, str) else None
    if not web_state(request).sessions.check_csrf(session, given):
        raise ApiError(
            403,
            "csrf_failed",
            "the request's CSRF token is missing or not valid: reload the page and try again",
            {"field": "csrf_token"},
        )


async def require_csrf(
    request: Request, session: Annotated[Session, Depends(page_session)]
) -> None:
    """A logged-in (when required) session and its CSRF token (see :func:`check_csrf`)."""
    await check_csrf(request, session)


PageDep = Annotated[Session, Depends(page_session)]
"""A page route parameter: the browser's session (redirects to ``/login`` when needed)."""

CsrfDep = Annotated[None, Depends(require_csrf)]
"""A form (POST) route parameter: the session and its CSRF token are checked."""

__all__ = [
    "CsrfDep",
    "LoginRequired",
    "PageDep",
    "check_csrf",
    "login_redirect",
    "login_url",
    "page_session",
    "require_csrf",
    "safe_next",
]
