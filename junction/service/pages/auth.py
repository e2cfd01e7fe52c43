"""Logging in and out of the dashboard with the API token (``JUNCTION_API_TOKEN``).

``GET /login`` shows the form; ``POST /login`` checks the token (constant time), issues a
new session id (no fixation) and goes to ``next`` (a path on this site only);
``POST /logout`` ends the session. With no token configured there is nothing to log in
to: the login page sends the browser on.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from junction.service.deps import SettingsDep, token_retry_after
from junction.service.web import CsrfDep, check_csrf, render, request_session, safe_next, web_state

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, settings: SettingsDep, next: str = "/") -> Response:
    """The login form (or straight on to ``next`` when no login is needed)."""
    target = safe_next(next)
    if settings.api_token is None or request_session(request).logged_in:
        return RedirectResponse(target, status_code=303)
    return render(request, "login.html", {"next": target, "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=4096)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    """Check the token; on success a new logged-in session and 303 to ``next``."""
    session = request_session(request)
    await check_csrf(request, session)
    target = safe_next(next)
    if settings.api_token is None:
        return RedirectResponse(target, status_code=303)
    wait = token_retry_after(request, token)
    if wait is not None:
        if not wait:
            error = "That token is not valid."
            return render(request, "login.html", {"next": target, "error": error}, status_code=401)
        seconds = math.ceil(wait)
        error = f"Too many wrong tokens from this address; try again in {seconds} s."
        page = render(request, "login.html", {"next": target, "error": error}, status_code=429)
        page.headers["Retry-After"] = str(seconds)
        return page
    request.state.session = web_state(request).sessions.login(session)
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
async def logout(request: Request, _csrf: CsrfDep) -> Response:
    """End the session (the browser gets a new anonymous one) and go to the login page."""
    web = web_state(request)
    request.state.session = web.sessions.logout(request_session(request))
    return RedirectResponse("/login" if web.token_configured else "/", status_code=303)
