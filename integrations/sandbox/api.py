"""What a sandbox vendor module uses to play a service.

A vendor module (``integrations/sandbox/vendors/<service>.py``) defines ``routes =
VendorRoutes("okta")`` and decorates async handlers with ``@routes.route("GET",
"/api/v1/users/{user_id}")``. Paths are the vendor's own, below the service's sandbox
prefix (``/okta``) *and* the vendor's base path from the catalog (for OpenAI the
handler path is ``/chat/completions``: base ``https://api.openai.com/v1`` maps to
``/openai/v1``). The app (``integrations.sandbox.app``) checks auth per the catalog
entry, applies fault injection, and passes a :class:`SandboxRequest`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass
class ServiceState:
    """Mutable state of one sandboxed service: named collections of JSON objects.

    Everything a test or benchmark needs to count side effects (users created,
    messages posted) lives here and is exposed by the admin API.
    """

    service: str
    collections: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def collection(self, name: str) -> dict[str, dict[str, Any]]:
        """The collection ``name`` (created empty on first use), id -> object."""
        with self._lock:
            return self.collections.setdefault(name, {})

    def next_id(self, prefix: str = "") -> str:
        """A new id unique within this service (``prefix`` + a counter)."""
        with self._lock:
            return f"{prefix}{next(self._ids)}"

    def reset(self) -> None:
        """Forget everything (admin ``POST /_admin/reset``)."""
        with self._lock:
            self.collections.clear()
            self._ids = itertools.count(1)

    def counts(self) -> dict[str, int]:
        """Number of objects per collection."""
        with self._lock:
            return {k: len(v) for k, v in self.collections.items()}


@dataclass
class SandboxRequest:
    """One request to a sandboxed vendor, as a handler sees it."""

    service: str
    request: Request
    state: ServiceState
    path_params: dict[str, str]
    body: bytes
    principal: str  # the authenticated user/token name (e.g. "sandbox-user")

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins)."""
        return dict(self.request.query_params)

    @property
    def headers(self) -> dict[str, str]:
        """Request headers, lower-cased names."""
        return {k.lower(): v for k, v in self.request.headers.items()}

    def json(self) -> Any:
        """The JSON body, or raise :class:`VendorError` 400 like a real API would."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise VendorError(400, {"message": "Problems parsing JSON"}) from None

    def form(self) -> dict[str, str]:
        """A urlencoded form body."""
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode("utf-8", "replace")))


class VendorError(Exception):
    """Raise from a handler to answer with a vendor-shaped error body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = headers or {}


Handler = Callable[[SandboxRequest], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """One vendor route: method, path template, handler."""

    method: str
    path: str
    handler: Handler
    public: bool = False  # skip the catalog auth check (the route authenticates itself)


class VendorRoutes:
    """The routes one vendor module contributes to the sandbox."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.routes: list[Route] = []

    def route(
        self, method: str, path: str, *, public: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method path`` (Starlette path syntax).

        Args:
            method: HTTP method.
            path: Path below the service's sandbox prefix and vendor base path.
            public: Skip the catalog entry's auth check for this route, for endpoints
                that authenticate otherwise (PagerDuty's Events API takes a routing key
                in the body); the handler then sees principal ``"anonymous"``. Faults
                still apply.
        """

        def decorate(handler: Handler) -> Handler:
            self.routes.append(Route(method.upper(), path, handler, public))
            return handler

        return decorate


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (the common case for vendor handlers)."""
    return JSONResponse(body, status_code=status, headers=headers)


# --- generic helpers for vendor modules (added with the sandbox app) ---------------------


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# Default messages where the vendor's wording is well known; otherwise the HTTP reason.
_DEFAULT_MESSAGES: dict[str, dict[int, str]] = {
    "okta": {
        400: "Api validation failed",
        401: "Invalid token provided",
        403: "You do not have permission to perform the requested action",
        404: "Not found: Resource not found",
        429: "API call exceeded rate limit due to too many requests.",
    },
    "github": {
        401: "Bad credentials",
        403: "Resource not accessible by integration",
        429: "API rate limit exceeded",
    },
    "gitlab": {
        400: "400 Bad request",
        401: "401 Unauthorized",
        403: "403 Forbidden",
        404: "404 Not Found",
        409: "409 Conflict",
        429: "Retry later",
    },
    "openai": {
        401: "Incorrect API key provided",
        429: "Rate limit reached for requests",
        500: "The server had an error while processing your request. Sorry about that!",
        503: "The engine is currently overloaded, please try again later",
    },
    "slack": {
        400: "invalid_arguments",
        401: "invalid_auth",
        403: "missing_scope",
        404: "unknown_method",
        429: "ratelimited",
        500: "fatal_error",
        503: "service_unavailable",
    },
    "jira": {
        401: "You are not authenticated. Authentication required to perform this operation.",
        403: "You do not have permission to perform this operation.",
    },
    "pagerduty": {
        400: "Invalid Input Provided",
        401: "Unauthorized",
        403: "Access Denied",
        404: "Not Found",
        429: "Rate Limit Exceeded",
        500: "Internal Error",
    },
    "teams": {401: "Access token is empty or invalid."},
    "msgraph": {401: "Access token is empty or invalid."},
    "zendesk": {401: "Couldn't authenticate you"},
    "salesforce": {401: "Session expired or invalid"},
    "twilio": {401: "Authenticate"},
    "notion": {401: "API token is invalid."},
    "zoom": {401: "Invalid access token."},
    "freshdesk": {401: "You have to be logged in to perform this action."},
    "discord": {401: "401: Unauthorized"},
    "stripe": {401: "Invalid API Key provided"},
}

_OKTA_CODES = {
    400: "E0000001",
    401: "E0000011",
    403: "E0000006",
    404: "E0000007",
    405: "E0000022",
    409: "E0000001",
    429: "E0000047",
}
_PAGERDUTY_CODES = {400: 2001, 401: 2006, 403: 2010, 404: 2100, 429: 2020}
_SLACK_CODE = re.compile(r"[a-z][a-z0-9_]*")
_GRAPH_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    409: "Conflict",
    429: "TooManyRequests",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
}


def _openai(status: int, msg: str) -> Any:
    if status == 401:
        kind, code = "invalid_request_error", "invalid_api_key"
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind, code = "server_error", None
    else:
        kind, code = "invalid_request_error", None
    return {"error": {"message": msg, "type": kind, "param": None, "code": code}}


def _slack(status: int, msg: str) -> Any:
    code = (
        msg
        if _SLACK_CODE.fullmatch(msg)
        else _DEFAULT_MESSAGES["slack"].get(
            status, "internal_error" if status >= 500 else "invalid_request"
        )
    )
    return {"ok": False, "error": code}


def _graph(status: int, msg: str) -> Any:
    code = _GRAPH_CODES.get(status, "generalException")
    return {
        "error": {
            "code": code,
            "message": msg,
            "innerError": {"request-id": "00000000-0000-0000-0000-000000000000"},
        }
    }


_ErrorShape = Callable[[int, str], Any]

_SHAPES: dict[str, _ErrorShape] = {
    "okta": lambda s, m: {
        "errorCode": _OKTA_CODES.get(s, "E0000009"),
        "errorSummary": m,
        "errorLink": _OKTA_CODES.get(s, "E0000009"),
        "errorId": "oaeSandbox000000000000",
        "errorCauses": [],
    },
    "github": lambda s, m: {
        "message": m,
        "documentation_url": "https://docs.github.com/rest",
        "status": str(s),
    },
    "gitlab": lambda s, m: {"message": m},
    "openai": _openai,
    "slack": _slack,
    "jira": lambda s, m: {"errorMessages": [m], "errors": {}},
    "confluence": lambda s, m: {"statusCode": s, "message": m},
    "pagerduty": lambda s, m: {"error": {"message": m, "code": _PAGERDUTY_CODES.get(s, 2000)}},
    "webex": lambda s, m: {
        "message": m,
        "errors": [{"description": m}],
        "trackingId": "SANDBOX_00000000",
    },
    "teams": _graph,
    "msgraph": _graph,
    "workday": lambda s, m: {"error": m, "errors": [{"error": m}]},
    "servicenow": lambda s, m: {"error": {"message": m, "detail": None}, "status": "failure"},
    "alertmanager": lambda s, m: {"code": s, "message": m},
    "webhook": lambda s, m: {"error": m},
    "statuspage": lambda s, m: {"error": m},
    "zendesk": lambda s, m: {"error": m} if s == 401 else {"error": _reason(s), "description": m},
    "salesforce": lambda s, m: [
        {
            "message": m,
            "errorCode": "INVALID_SESSION_ID"
            if s == 401
            else "REQUEST_LIMIT_EXCEEDED"
            if s in (403, 429)
            else "UNKNOWN_EXCEPTION",
        }
    ],
    "twilio": lambda s, m: {
        "code": 20003 if s == 401 else 20500 if s >= 500 else 20404,
        "message": m,
        "more_info": "https://www.twilio.com/docs/errors",
        "status": s,
    },
    "stripe": lambda s, m: {
        "error": {"message": m, "type": "api_error" if s >= 500 else "invalid_request_error"}
    },
    "datadog": lambda s, m: {"errors": [m]},
    "opsgenie": lambda s, m: {"message": m, "took": 0.001, "requestId": "sandbox"},
    "sendgrid": lambda s, m: {"errors": [{"field": None, "message": m}]},
    "hubspot": lambda s, m: {
        "status": "error",
        "message": m,
        "correlationId": "sandbox",
        "category": "INVALID_AUTHENTICATION"
        if s == 401
        else "RATE_LIMITS"
        if s == 429
        else "UNKNOWN",
    },
    "bitbucket": lambda s, m: {"type": "error", "error": {"message": m}},
    "asana": lambda s, m: {"errors": [{"message": m}]},
    "sentry": lambda s, m: {"detail": m},
    "azure_devops": lambda s, m: {
        "$id": "1",
        "innerException": None,
        "message": m,
        "typeName": "Microsoft.VisualStudio.Services.WebApi.VssServiceException",
        "typeKey": "VssServiceException",
        "errorCode": 0,
        "eventId": 3000,
    },
    "zoom": lambda s, m: {"code": 124 if s == 401 else s, "message": m},
    "discord": lambda s, m: {"message": m, "code": 0},
    "notion": lambda s, m: {
        "object": "error",
        "status": s,
        "code": "unauthorized"
        if s == 401
        else "rate_limited"
        if s == 429
        else "internal_server_error"
        if s >= 500
        else "object_not_found"
        if s == 404
        else "validation_error",
        "message": m,
    },
    "airtable": lambda s, m: {
        "error": {
            "type": "AUTHENTICATION_REQUIRED" if s == 401 else _reason(s).upper().replace(" ", "_"),
            "message": m,
        }
    },
    "freshdesk": lambda s, m: {
        "code": "invalid_credentials" if s == 401 else "error",
        "message": m,
    },
    "auth0": lambda s, m: {
        "statusCode": s,
        "error": _reason(s),
        "message": m,
        "errorCode": "invalid_token" if s == 401 else "error",
    },
    "box": lambda s, m: {
        "type": "error",
        "status": s,
        "code": _reason(s).lower().replace(" ", "_"),
        "message": m,
        "request_id": "sandbox",
    },
    "clickup": lambda s, m: {"err": m, "ECODE": "OAUTH_025" if s == 401 else "SANDBOX_ERR"},
    "intercom": lambda s, m: {
        "type": "error.list",
        "request_id": "sandbox",
        "errors": [{"code": _reason(s).lower().replace(" ", "_"), "message": m}],
    },
    "postmark": lambda s, m: {"ErrorCode": 10 if s == 401 else 0, "Message": m},
}


def vendor_error_body(service: str, status: int, message: str | None = None) -> Any:
    """The body ``service`` really answers for an HTTP ``status`` error.

    One table for every vendor, used by the sandbox app (auth failures, injected
    faults, unknown paths) and by vendor modules (``raise VendorError(404,
    vendor_error_body("okta", 404))``). Slack's shape is ``{"ok": false, "error":
    "<code>"}`` (pass the code as ``message``); Salesforce's is a list; everything else a
    dict. Unknown services get ``{"message": ...}``.

    Args:
        service: Catalog name.
        status: The HTTP status of the error.
        message: The human message; default: the vendor's usual wording, else the
            HTTP reason phrase.
    """
    msg = message or _DEFAULT_MESSAGES.get(service, {}).get(status) or _reason(status)
    shape = _SHAPES.get(service)
    return shape(status, msg) if shape else {"message": msg}


def vendor_error(
    service: str, status: int, message: str | None = None, headers: dict[str, str] | None = None
) -> VendorError:
    """A :class:`VendorError` with the vendor's body: ``raise vendor_error("okta", 404)``."""
    return VendorError(status, vendor_error_body(service, status, message), headers)


@dataclass(frozen=True)
class Page:
    """One page of a collection: the items and the cursor of the next page (or ``None``)."""

    items: list[Any]
    next_cursor: str | None
    total: int


def paginate(items: Sequence[Any], *, cursor: str | int | None = None, limit: int = 50) -> Page:
    """Slice ``items`` into a page (offset-based; the cursor is the offset as text).

    Vendor modules turn the result into the vendor's own pagination (Okta/GitHub ``Link``
    header, Slack ``response_metadata.next_cursor``, PagerDuty ``offset``/``more``).

    Args:
        items: Every item, in a stable order.
        cursor: Where to start (``None``/``""`` = the beginning); a bad cursor raises
            :class:`VendorError` 400.
        limit: Page size (at least 1).
    """
    try:
        start = int(cursor) if cursor not in (None, "") else 0
    except (TypeError, ValueError):
        raise VendorError(400, {"message": f"invalid cursor {cursor!r}"}) from None
    if start < 0:
        raise VendorError(400, {"message": f"invalid cursor {cursor!r}"})
    limit = max(1, limit)
    end = start + limit
    return Page(list(items[start:end]), str(end) if end < len(items) else None, len(items))


def link_header(url: str, page: Page, cursor_param: str = "after", limit: int | None = None) -> str:
    """An RFC 8288 ``Link: <url?after=N>; rel="next"`` header for ``page`` ("" if last)."""
    if page.next_cursor is None:
        return ""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[cursor_param] = page.next_cursor
    if limit is not None:
        query["limit"] = str(limit)
    return f'<{urlunsplit(parts._replace(query=urlencode(query)))}>; rel="next"'
