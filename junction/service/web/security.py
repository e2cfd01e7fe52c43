"""The dashboard's request guard (ASGI middleware, every request passes it).

- **DNS rebinding**: with no ``JUNCTION_API_TOKEN`` (loopback-only serve) a request whose
  ``Host`` is not a loopback name is refused: a hostile page whose name was re-pointed at
  127.0.0.1 would otherwise be "same origin" with the service.
- **Cross-site writes**: an unsafe request (POST, PUT, PATCH, DELETE) from another site
  (``Origin`` not the service's own, or ``Sec-Fetch-Site: cross-site``) is refused with
  403 in the one error shape, API included. Bearer-token clients send no ``Origin``.
  The service's own origin is the request's scheme and ``Host``: behind a TLS-terminating
  proxy, the proxy must pass ``X-Forwarded-Proto`` (uvicorn trusts it from loopback).
- **Sessions**: every page request carries a :class:`~.sessions.Session` in
  ``request.state.session``; a new or rotated one is sent as an HttpOnly, SameSite=Strict
  cookie (Secure on https).
- **Headers**: ``X-Content-Type-Options`` and ``Referrer-Policy`` on every response; on
  HTML a Content-Security-Policy without inline script, ``Cache-Control: no-store`` and
  ``X-Frame-Options: DENY`` (the public status page may be framed: it has no actions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from integrations.urls import host_name, is_loopback
from junction.service.errors import error_response
from junction.service.web.sessions import COOKIE_NAME, SessionManager

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The pages' Content-Security-Policy: our own files only, no inline script or style."""

FRAMEABLE = ("/status",)
"""Pages other sites may frame (read-only, no actions)."""

NO_SESSION_PREFIXES = ("/api/", "/static/")
NO_SESSION_PATHS = frozenset({"/metrics", "/openapi.json", "/docs", "/redoc"})
# FastAPI's own documentation pages load Swagger/ReDoc with inline script: no CSP there.
NO_CSP_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _origin_tuple(scheme: str, host: str) -> tuple[str, str, int | None]:
    port: int | None = None
    if host.startswith("["):
        tail = host[host.find("]") + 1 :]
        port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else None
    elif host.count(":") == 1:
        raw = host.rsplit(":", 1)[1]
        port = int(raw) if raw.isdigit() else None
    return scheme, host_name(host), port if port is not None else _DEFAULT_PORTS.get(scheme)


def cross_site_reason(scope: Scope) -> str | None:
    """Why an unsafe request is cross-site, or ``None`` when it is not.

    Args:
        scope: The request's ASGI scope.
    """
    if _header(scope, b"sec-fetch-site") == "cross-site":
        return "Sec-Fetch-Site: cross-site"
    origin = _header(scope, b"origin")
    if origin is None:
        return None  # not a browser (a bearer-token client) or a same-origin GET-like
    parts = urlsplit(origin)
    if not parts.scheme or not parts.netloc:
        return f"Origin {origin[:100]!r} is not this service's origin"
    host = _header(scope, b"host") or ""
    mine = _origin_tuple(str(scope.get("scheme", "http")), host)
    theirs = _origin_tuple(parts.scheme.lower(), parts.netloc.lower())
    if theirs != mine:
        return f"Origin {origin[:100]!r} is not this service's origin"
    return None


def wants_session(path: str) -> bool:
    """Whether a request to ``path`` is a page (it gets a browser session)."""
    return not path.startswith(NO_SESSION_PREFIXES) and path not in NO_SESSION_PATHS


class WebSecurity:
    """ASGI middleware: host check, cross-site refusal, sessions, security headers.

    Args:
        app: The wrapped ASGI app.
        sessions: The app's session manager.
        token_configured: Whether ``JUNCTION_API_TOKEN`` is set (no token: loopback
            ``Host`` names only).
    """

    def __init__(self, app: ASGIApp, sessions: SessionManager, token_configured: bool) -> None:
        self.app = app
        self.sessions = sessions
        self.token_configured = token_configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.token_configured and not is_loopback(_header(scope, b"host") or ""):
            refused = error_response(
                403,
                "forbidden_host",
                "this service answers loopback host names only (no JUNCTION_API_TOKEN set)",
            )
            await refused(scope, receive, send)
            return
        if scope.get("method", "GET") not in SAFE_METHODS:
            reason = cross_site_reason(scope)
            if reason is not None:
                refused = error_response(
                    403, "cross_site_request", f"cross-site request refused: {reason}"
                )
                await refused(scope, receive, send)
                return
        path: str = scope.get("path", "/")
        state: dict[str, Any] = scope.setdefault("state", {})
        incoming = None
        if wants_session(path):
            cookie = SimpleCookie()
            try:
                cookie.load(_header(scope, b"cookie") or "")
            except Exception:  # a malformed Cookie header: treated as none
                cookie = SimpleCookie()
            morsel = cookie.get(COOKIE_NAME)
            incoming = self.sessions.from_cookie(morsel.value if morsel else None)
            state["session"] = incoming or self.sessions.anonymous()
        secure = scope.get("scheme") == "https"
        frameable = path in FRAMEABLE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {bytes(k).lower() for k, _ in headers}

                def add(name: bytes, value: str) -> None:
                    if name not in names:
                        headers.append((name, value.encode("latin-1")))

                add(b"x-content-type-options", "nosniff")
                add(b"referrer-policy", "same-origin")
                ctype = next((bytes(v) for k, v in headers if k == b"content-type"), b"")
                if ctype.startswith(b"text/html") and path not in NO_CSP_PATHS:
                    csp = CSP.replace("frame-ancestors 'none'", "frame-ancestors *")
                    add(b"content-security-policy", csp if frameable else CSP)
                    add(b"cache-control", "no-store")
                    if not frameable:
                        add(b"x-frame-options", "DENY")
                session = state.get("session")
                if session is not None and session.issued:
                    value = self.sessions.cookie_value(session)
                    flags = "; HttpOnly; SameSite=Strict; Path=/" + ("; Secure" if secure else "")
                    headers.append((b"set-cookie", f"{COOKIE_NAME}={value}{flags}".encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = ["CSP", "WebSecurity", "cross_site_reason", "wants_session"]
