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
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from integrations.sandbox.services import vendor_error_body

__all__ = [
    "Handler",
    "Listing",
    "Page",
    "Route",
    "SandboxRequest",
    "Seeder",
    "ServiceState",
    "VendorError",
    "VendorRoutes",
    "json_response",
    "link_header",
    "paginate",
    "vendor_error",
    "vendor_error_body",
]


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


Seeder = Callable[[ServiceState, str], None]
"""Fills an empty service state: ``seed(state, base_url)`` (``base_url`` may be ``""``)."""


@dataclass(frozen=True)
class Listing:
    """Seeded records of one collection that users need ids from (``junction sandbox
    records``): the collection and the fields shown, dotted for nested ones
    (``profile.login``); the first field is the record's id."""

    collection: str
    fields: tuple[str, ...]


class VendorRoutes:
    """The routes one vendor module contributes to the sandbox, and how its state is
    seeded and which of its records are worth listing."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.routes: list[Route] = []
        self.listings: list[Listing] = []
        self._seed: Seeder | None = None
        self._seed_marker = ""

    def seeder(self, marker: str) -> Callable[[Seeder], Seeder]:
        """Register the function that seeds this service's state.

        Args:
            marker: A collection the seed always creates; while it is missing, the state
                is unseeded (after start-up or ``POST /_admin/reset``).
        """

        def decorate(seed: Seeder) -> Seeder:
            self._seed, self._seed_marker = seed, marker
            return seed

        return decorate

    def seeded(self, state: ServiceState, base: str | Callable[[], str] = "") -> ServiceState:
        """``state``, seeded first if it is not yet (handlers call this on entry).

        Args:
            state: The service's state.
            base: The service's base URL in the sandbox (for links in seeded objects), or
                a function computing it (called only when seeding: it is on every
                request's path).
        """
        if self._seed is not None and self._seed_marker not in state.collections:
            self._seed(state, base() if callable(base) else base)
        return state

    def lists(self, collection: str, *fields: str) -> None:
        """Show ``collection``'s ``fields`` in ``junction sandbox records`` (first: the id)."""
        self.listings.append(Listing(collection, fields))

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


# --- helpers for vendor modules -----------------------------------------------------------


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
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query[cursor_param] = page.next_cursor
    if limit is not None:
        query["limit"] = str(limit)
    return f'<{urlunsplit(parts._replace(query=urlencode(query)))}>; rel="next"'
