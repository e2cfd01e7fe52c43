"""Junction's sandbox: one local server that plays every catalog integration.

Each HTTP catalog entry is mounted at ``/<name><vendor base path>`` (OpenAI at
``/openai/v1``, Okta at ``/okta``, Workday at ``/workday/ccx/api/v1/tenant``: exactly
``IntegrationSpec.sandbox_base_url``), with:

* the routes of its vendor module (every module in ``integrations/sandbox/vendors``
  defining ``routes: VendorRoutes``), plus a generic answer to the catalog health check
  when the module does not define it, and a vendor-shaped 404 for anything else;
* auth per the catalog entry (:mod:`integrations.sandbox.auth`), an OAuth2 token endpoint
  at ``POST /<name>/oauth2/token`` for OAuth2 services;
* fault injection (:mod:`integrations.sandbox.faults`) and the vendor's rate-limit headers
  on every answer.

Around them: the admin API under ``/_admin`` (state, faults, outages, request log,
profile; no auth), the benchmark endpoints ``GET /_synthetic/{i}/health``, and an SMTP
server (:mod:`integrations.sandbox.smtp`).

Use :class:`SandboxServer` in tests (``with SandboxServer() as sb: sb.url``) and
:func:`serve` for ``junction sandbox serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import importlib
import json
import logging
import math
import pkgutil
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import yaml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, compile_path
from starlette.types import Message, Receive, Scope, Send

from integrations.catalog import IntegrationSpec, load_catalog
from integrations.sandbox import auth as sandbox_auth
from integrations.sandbox.api import (
    Handler,
    SandboxRequest,
    ServiceState,
    VendorError,
    VendorRoutes,
    vendor_error_body,
)
from integrations.sandbox.faults import (
    PROFILES_DIR,
    Fault,
    FaultController,
    FaultProfile,
    ProfileError,
    SyntheticConfig,
)

log = logging.getLogger("integrations.sandbox")

VENDORS_PACKAGE = "integrations.sandbox.vendors"
DEFAULT_PORT = 8765
DEFAULT_SMTP_PORT = 8025

_JSON = (b"content-type", b"application/json")
_SYNTH_PREFIX = "/_synthetic/"
_SYNTH_404 = b'{"ok":false,"error":"no such synthetic endpoint"}'
_SYNTH_HEADERS_404 = [_JSON, (b"content-length", b"%d" % len(_SYNTH_404))]


# --- state --------------------------------------------------------------------------------


class StateRegistry:
    """The state of every sandboxed service (``ServiceState`` per service, made on demand)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, ServiceState] = {}

    def get(self, service: str) -> ServiceState:
        """The state of ``service`` (created empty on first use)."""
        state = self._services.get(service)
        if state is None:
            with self._lock:
                state = self._services.setdefault(service, ServiceState(service))
        return state

    __getitem__ = get

    def collections(self, service: str) -> dict[str, dict[str, dict[str, Any]]]:
        """A deep copy of ``service``'s collections (safe to read from another thread)."""
        state = self.get(service)
        with state._lock:
            return copy.deepcopy(state.collections)

    def counts(self) -> dict[str, dict[str, int]]:
        """Objects per collection, per service that has any state."""
        with self._lock:
            services = dict(self._services)
        return {name: s.counts() for name, s in sorted(services.items()) if s.collections}

    def reset(self, service: str | None = None) -> None:
        """Forget the state of ``service`` (default: every service)."""
        with self._lock:
            targets = (
                list(self._services.values())
                if service is None
                else [s for n, s in self._services.items() if n == service]
            )
        for state in targets:
            state.reset()


# --- request log --------------------------------------------------------------------------


class RouteStats:
    """Counters of one service route: requests, injected faults by kind, statuses."""

    __slots__ = ("faults", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.faults: dict[str, int] = {}
        self.statuses: dict[str, int] = {}

    def fault(self, kind: str) -> None:
        """Count one injected fault of ``kind``."""
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def status(self, status: int | str) -> None:
        """Count one answer (an HTTP status, or ``reset``/``hang``/``disconnected``)."""
        key = str(status)
        self.statuses[key] = self.statuses.get(key, 0) + 1


class RequestLog:
    """Per service and route (``"GET /api/v1/users/{user_id}"``): how many requests came
    in and what was injected. Tests read it to count a client's attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, dict[str, RouteStats]] = {}
        self.synthetic = 0

    def start(self, service: str, route: str) -> RouteStats:
        """Count a request to ``service``/``route`` and return its counters."""
        routes = self._services.get(service)
        if routes is None:
            with self._lock:
                routes = self._services.setdefault(service, {})
        stats = routes.get(route)
        if stats is None:
            with self._lock:
                stats = routes.setdefault(route, RouteStats())
        stats.requests += 1
        return stats

    def summary(self, service: str | None = None) -> dict[str, Any]:
        """``{"services": {svc: {"requests", "faults", "routes": {route: {...}}}}}``."""
        with self._lock:
            items = [
                (n, dict(r)) for n, r in self._services.items() if service is None or n == service
            ]
        out: dict[str, Any] = {}
        for name, routes in sorted(items):
            total = 0
            faults: dict[str, int] = {}
            route_out: dict[str, Any] = {}
            for key, stats in sorted(routes.items()):
                f, st = dict(stats.faults), dict(stats.statuses)
                route_out[key] = {"requests": stats.requests, "faults": f, "statuses": st}
                total += stats.requests
                for kind, n in f.items():
                    faults[kind] = faults.get(kind, 0) + n
            out[name] = {"requests": total, "faults": faults, "routes": route_out}
        return {"services": out, "synthetic": {"requests": self.synthetic}}

    def count(self, service: str, route: str | None = None) -> int:
        """Requests to ``service`` (optionally one route key) so far."""
        routes = self._services.get(service, {})
        if route is not None:
            stats = routes.get(route)
            return stats.requests if stats else 0
        return sum(s.requests for s in list(routes.values()))

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._services.clear()
            self.synthetic = 0


# --- generic health answers -------------------------------------------------------------------

_USER = {"id": "sandbox-user-1", "name": "Sandbox User", "email": "sandbox-user@example.com"}


@functools.lru_cache(maxsize=512)
def _health_json(name: str, params: tuple[tuple[str, Any], ...], principal: str) -> bytes:
    """The encoded health body (cached: the health path is what sweeps hammer)."""
    return json.dumps(_health_body(name, dict(params), principal)).encode()


def _health_body(name: str, params: Mapping[str, Any], principal: str) -> Any:
    """A plausible vendor-shaped body for the catalog health check of ``name``."""
    u = _USER
    bodies: dict[str, Callable[[], Any]] = {
        "openai": lambda: {
            "object": "list",
            "data": [
                {
                    "id": "gpt-4o-mini",
                    "object": "model",
                    "created": 1721172741,
                    "owned_by": "system",
                }
            ],
        },
        "gitlab": lambda: {
            "id": 1,
            "username": principal,
            "name": u["name"],
            "state": "active",
            "email": u["email"],
            "web_url": "https://gitlab.example/sandbox-user",
        },
        "workday": lambda: {"total": 1, "data": [{"id": "w-1", "descriptor": u["name"]}]},
        "okta": lambda: {
            "id": "00u1sandbox",
            "status": "ACTIVE",
            "profile": {
                "login": u["email"],
                "email": u["email"],
                "firstName": "Sandbox",
                "lastName": "User",
            },
        },
        "webex": lambda: {
            "id": "Y2lzY29zcGFyazovL3NhbmRib3g",
            "emails": [u["email"]],
            "displayName": u["name"],
            "type": "person",
        },
        "slack": lambda: {
            "ok": True,
            "url": "https://sandbox.slack.com/",
            "team": "Sandbox",
            "user": principal,
            "team_id": "T0SANDBOX",
            "user_id": "U0SANDBOX",
        },
        "teams": lambda: {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
            "value": [{"id": "00000000-0000-0000-0000-000000000001", "displayName": "Sandbox Org"}],
        },
        "jira": lambda: {
            "accountId": "5b10a2844c20165700ede21g",
            "emailAddress": u["email"],
            "displayName": u["name"],
            "active": True,
            "accountType": "atlassian",
        },
        "github": lambda: {"login": principal, "id": 1, "type": "User", "name": u["name"]},
        "pagerduty": lambda: {"abilities": ["teams", "read_only_users", "urgencies"]},
        "servicenow": lambda: {
            "result": [
                {
                    "sys_id": "6816f79cc0a8016401c5a33be04be441",
                    "user_name": principal,
                    "name": u["name"],
                }
            ]
        },
        "alertmanager": lambda: {
            "cluster": {"name": "sandbox", "status": "ready", "peers": []},
            "config": {"original": "route:\n  receiver: sandbox\nreceivers:\n- name: sandbox\n"},
            "uptime": "2024-01-01T00:00:00.000Z",
            "versionInfo": {
                "version": "0.25.0",
                "revision": "sandbox",
                "branch": "HEAD",
                "buildUser": "sandbox",
                "buildDate": "20230101-00:00:00",
                "goVersion": "go1.19",
            },
        },
        "webhook": lambda: {"status": "ok"},
        "statuspage": lambda: [
            {"id": "sandboxpage1", "name": "Sandbox Status", "subdomain": "sandbox"}
        ],
        "zendesk": lambda: {
            "user": {"id": 1, "name": u["name"], "email": u["email"], "role": "admin"}
        },
        "salesforce": lambda: {"DailyApiRequests": {"Max": 15000, "Remaining": 14999}},
        "twilio": lambda: {
            "sid": str(params.get("username", principal)),
            "friendly_name": "Sandbox",
            "status": "active",
            "type": "Full",
        },
        "stripe": lambda: {
            "object": "balance",
            "livemode": False,
            "available": [{"amount": 0, "currency": "usd"}],
            "pending": [{"amount": 0, "currency": "usd"}],
        },
        "datadog": lambda: {"valid": True},
        "msgraph": lambda: {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
            "value": [{"id": "00000000-0000-0000-0000-000000000001", "displayName": "Sandbox Org"}],
        },
        "opsgenie": lambda: {
            "data": {"name": "sandbox", "userCount": 1, "plan": {"name": "Enterprise"}},
            "took": 0.01,
            "requestId": "sandbox",
        },
        "sendgrid": lambda: {"scopes": ["mail.send", "user.profile.read"]},
        "hubspot": lambda: {
            "portalId": 1,
            "accountType": "SANDBOX",
            "timeZone": "US/Eastern",
            "companyCurrency": "USD",
        },
        "bitbucket": lambda: {
            "type": "user",
            "uuid": "{sandbox}",
            "username": principal,
            "display_name": u["name"],
        },
        "confluence": lambda: {
            "type": "known",
            "accountId": "sandbox-1",
            "displayName": u["name"],
            "email": u["email"],
        },
        "asana": lambda: {
            "data": {"gid": "1", "name": u["name"], "email": u["email"], "resource_type": "user"}
        },
        "sentry": lambda: [{"id": "1", "slug": "sandbox", "name": "Sandbox"}],
        "circleci": lambda: {"id": "sandbox-1", "login": principal, "name": u["name"]},
        "azure_devops": lambda: {
            "count": 1,
            "value": [{"id": "sandbox-project-1", "name": "Sandbox", "state": "wellFormed"}],
        },
        "zoom": lambda: {
            "id": "sandbox1",
            "email": u["email"],
            "first_name": "Sandbox",
            "last_name": "User",
            "type": 2,
            "status": "active",
        },
        "discord": lambda: {
            "id": "100000000000000001",
            "username": "sandbox-bot",
            "bot": True,
            "discriminator": "0000",
        },
        "mailgun": lambda: {
            "total_count": 1,
            "items": [{"name": "sandbox.example.com", "state": "active"}],
        },
        "notion": lambda: {
            "object": "user",
            "id": "sandbox-bot-1",
            "type": "bot",
            "name": "Sandbox",
            "bot": {"owner": {"type": "workspace", "workspace": True}},
        },
        "airtable": lambda: {"id": "usrSandbox0000001", "scopes": ["data.records:read"]},
        "freshdesk": lambda: {
            "id": 1,
            "available": True,
            "contact": {"name": u["name"], "email": u["email"]},
        },
        "bamboohr": lambda: {
            "1": {
                "id": 1,
                "employeeId": 1,
                "firstName": "Sandbox",
                "lastName": "User",
                "email": u["email"],
                "status": "enabled",
            }
        },
        "auth0": lambda: [{"user_id": "auth0|sandbox1", "email": u["email"], "name": u["name"]}],
        "box": lambda: {
            "type": "user",
            "id": "1",
            "name": u["name"],
            "login": u["email"],
            "status": "active",
        },
        "clickup": lambda: {"user": {"id": 1, "username": u["name"], "email": u["email"]}},
        "intercom": lambda: {"type": "admin", "id": "1", "name": u["name"], "email": u["email"]},
        "postmark": lambda: {
            "ID": 1,
            "Name": "Sandbox",
            "ApiTokens": [],
            "DeliveryType": "Sandbox",
        },
        "grafana": lambda: {
            "id": 1,
            "login": principal,
            "email": u["email"],
            "name": u["name"],
            "isGrafanaAdmin": False,
        },
    }
    maker = bodies.get(name)
    if maker is not None:
        return maker()
    return {"id": u["id"], "name": u["name"], "login": principal}


# --- per-service mounts ---------------------------------------------------------------------


@dataclass
class _CompiledRoute:
    method: str
    path: str
    regex: re.Pattern[str]
    convertors: dict[str, Any]
    handler: Handler | None  # None = the generic health answer
    public: bool = False
    key: str = ""

    def __post_init__(self) -> None:
        self.key = f"{self.method} {self.path}"


@dataclass
class _Mount:
    spec: IntegrationSpec
    prefix: str
    token_path: str | None
    routes: list[_CompiledRoute] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def add(
        self,
        method: str,
        path: str,
        handler: Handler | None,
        *,
        first: bool = False,
        public: bool = False,
    ) -> None:
        regex, _fmt, convertors = compile_path(path)
        route = _CompiledRoute(method.upper(), path, regex, convertors, handler, public)
        if first:
            self.routes.insert(0, route)
        else:
            self.routes.append(route)

    def match(self, method: str, rest: str) -> tuple[_CompiledRoute | None, dict[str, Any], bool]:
        """``(route, path_params, path_exists_for_another_method)``."""
        candidates = [rest]
        if rest != "/":
            candidates.append(rest[:-1] if rest.endswith("/") else rest + "/")
        other_method = False
        for path in candidates:
            for route in self.routes:
                m = route.regex.match(path)
                if m is None:
                    continue
                if route.method != method and not (route.method == "GET" and method == "HEAD"):
                    other_method = True
                    continue
                params = {k: route.convertors[k].convert(v) for k, v in m.groupdict().items()}
                return route, params, False
        return None, {}, other_method


def _service_prefix(spec: IntegrationSpec) -> str:
    return urlsplit(spec.sandbox_base_url("http://sandbox")).path.rstrip("/")


def discover_vendor_routes() -> tuple[list[VendorRoutes], dict[str, str]]:
    """Import every module of ``integrations.sandbox.vendors`` and collect its ``routes``.

    A module that fails to import is logged and reported (``/_admin/health``), not fatal:
    the other services keep working.

    Returns:
        ``(routes, errors)`` where ``errors`` maps module name to the error text.
    """
    found: list[VendorRoutes] = []
    errors: dict[str, str] = {}
    try:
        package = importlib.import_module(VENDORS_PACKAGE)
    except ImportError as exc:
        return found, {VENDORS_PACKAGE: repr(exc)}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module_name = f"{VENDORS_PACKAGE}.{info.name}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            log.exception("sandbox vendor module %s failed to import", module_name)
            errors[module_name] = f"{type(exc).__name__}: {exc}"
            continue
        routes = getattr(module, "routes", None)
        if isinstance(routes, VendorRoutes):
            found.append(routes)
    return found, errors


# --- the app --------------------------------------------------------------------------------


class AbortConnection(Exception):
    """Raised inside the app to make uvicorn drop the connection (a simulated reset)."""


class _QuietAborts(logging.Filter):
    """Drop uvicorn's 'Exception in ASGI application' log for simulated resets."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, AbortConnection)


_quiet = _QuietAborts()


_TRUNCATED_JSON = b'{"ok": true, "id": "sandbox-1", "items": [{"id": "1", "name": "trunc'
_HTML_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_RESET_BODY = b'{"id": "sandbox-1", "data": [' + b'{"n": 0}, ' * 40 + b"]}"


def _epoch_in(seconds: float) -> bytes:
    return str(math.ceil(time.time() + seconds)).encode()


def _openai_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:.0f}s" if minutes else f"{secs:.3g}s"


class SandboxApp(Starlette):
    """The sandbox ASGI app (a Starlette app with fast paths; build it with
    :func:`build_app`).

    Attributes:
        registry: The services' state.
        faults: The live fault configuration.
        request_log: Counters per service and route.
        tokens: OAuth2 tokens issued.
        vendor_errors: Vendor modules that failed to import.
    """

    def __init__(self, profile: FaultProfile | None = None) -> None:
        super().__init__(
            routes=_admin_routes(), exception_handlers={HTTPException: _http_exception}
        )
        self.registry = StateRegistry()
        self.faults = FaultController(profile)
        self.request_log = RequestLog()
        self.tokens = sandbox_auth.TokenStore()
        self.smtp_port: int | None = None
        self._closing: asyncio.Event | None = None
        catalog = load_catalog()
        self.mounts: dict[str, _Mount] = {}
        for spec in catalog:
            if spec.transport != "http":
                continue
            prefix = _service_prefix(spec)
            token_path = (
                f"/{spec.name}{sandbox_auth.TOKEN_PATH}" if spec.auth.scheme == "oauth2" else None
            )
            self.mounts[spec.name] = _Mount(spec, prefix, token_path)
        vendor_routes, self.vendor_errors = discover_vendor_routes()
        self.vendor_modules: list[str] = []
        for routes in vendor_routes:
            mount = self.mounts.get(routes.service)
            if mount is None:
                log.warning(
                    "sandbox vendor routes for %r: no such HTTP catalog entry", routes.service
                )
                continue
            self.vendor_modules.append(routes.service)
            for r in routes.routes:
                mount.add(r.method, r.path, r.handler, public=r.public)
        for mount in self.mounts.values():
            health = mount.spec.health
            probe = re.sub(r"\{[^}]+\}", "x", health.path)
            route, _, _ = mount.match(health.method, probe)
            if route is None:
                mount.add(health.method, health.path, None)
        logging.getLogger("uvicorn.error").addFilter(_quiet)

    def add_routes(self, routes: VendorRoutes) -> None:
        """Mount extra vendor routes ahead of the discovered ones (tests plug handlers in).

        Raises:
            KeyError: ``routes.service`` is not an HTTP catalog entry.
        """
        mount = self.mounts[routes.service]
        for r in reversed(routes.routes):
            mount.add(r.method, r.path, r.handler, first=True, public=r.public)

    # -- ASGI entry: fast paths first, admin and 404s through Starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(_SYNTH_PREFIX):
                await self._synthetic(path, send)
                return
            if not path.startswith("/_"):
                end = path.find("/", 1)
                mount = self.mounts.get(path[1:] if end < 0 else path[1:end])
                if mount is not None:
                    await self._service(mount, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    def begin_shutdown(self) -> None:
        """Release hung requests (called on the server's loop when it stops)."""
        self._closing_event().set()

    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    # -- /_synthetic/{i}/health: the benchmark's server side, kept lean

    async def _synthetic(self, path: str, send: Send) -> None:
        num, _, rest = path[len(_SYNTH_PREFIX) :].partition("/")
        table = self.faults.synthetic
        i = int(num) if num.isdigit() and rest == "health" else -1
        if not 0 <= i < len(table.delays):
            await send(
                {"type": "http.response.start", "status": 404, "headers": _SYNTH_HEADERS_404}
            )
            await send({"type": "http.response.body", "body": _SYNTH_404})
            return
        self.request_log.synthetic += 1
        delay = table.delays[i]
        if delay:
            await asyncio.sleep(delay)
        failing = table.failing and table.failing[i]
        body = b'{"ok":%s,"i":%d}' % (b"false" if failing else b"true", i)
        await send(
            {
                "type": "http.response.start",
                "status": 503 if failing else 200,
                "headers": [_JSON, (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # -- a vendor request

    async def _service(self, mount: _Mount, scope: Scope, receive: Receive, send: Send) -> None:
        service = mount.name
        method: str = scope["method"]
        path: str = scope["path"]
        body = await _read_body(receive)
        if mount.token_path is not None and path == mount.token_path and method == "POST":
            await self._token(mount, scope, receive, send, body)
            return
        prefix = mount.prefix
        rest: str | None = None
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            rest = path[len(prefix) :] or "/"
        route, params, other_method = (
            mount.match(method, rest) if rest is not None else (None, {}, False)
        )
        stats = self.request_log.start(
            service, route.key if route is not None else f"{method} {rest or path}"
        )

        latency, fault = self.faults.before(service)
        if fault is not None:
            stats.fault(fault.kind)
            if fault.action == "hang":
                if not await self._hang(receive, fault.hang_seconds):
                    stats.status("hang")
                    return
                fault = None  # a hang shorter than the client's patience is just slow
        if latency:
            await asyncio.sleep(latency)
        if fault is not None:
            await self._inject(service, fault, stats, send)
            return

        outcome: str | sandbox_auth.AuthFailure = "anonymous"
        if route is None or not route.public:
            outcome = sandbox_auth.check_request(
                mount.spec, scope["headers"], scope.get("query_string", b""), self.tokens
            )
        if isinstance(outcome, sandbox_auth.AuthFailure):
            await self._send_json(
                service, send, outcome.status, outcome.body, stats, outcome.headers
            )
            return

        if route is None:
            status = 405 if other_method else 404
            await self._send_json(service, send, status, vendor_error_body(service, status), stats)
            return

        response = await self._run_handler(mount, route, scope, receive, params, body, outcome)
        lost = self.faults.after(service, method, response.status_code)
        if lost is not None:
            stats.fault(lost.kind)
            if lost.action == "reset":
                payload = bytes(getattr(response, "body", b"") or b"") or _RESET_BODY
                await self._reset(send, stats, response.status_code, payload)
            else:
                await self._send_json(
                    service, send, lost.status, vendor_error_body(service, lost.status), stats
                )
            return
        present = {name for name, _ in response.raw_headers}
        response.raw_headers.extend(h for h in self._rate_headers(service) if h[0] not in present)
        stats.status(response.status_code)
        await response(scope, receive, send)

    async def _run_handler(
        self,
        mount: _Mount,
        route: _CompiledRoute,
        scope: Scope,
        receive: Receive,
        params: dict[str, Any],
        body: bytes,
        principal: str,
    ) -> Response:
        service = mount.name
        if route.handler is None:
            return Response(
                _health_json(service, tuple(sorted(params.items())), principal),
                media_type="application/json",
            )
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        request = SandboxRequest(
            service=service,
            request=Request(scope, replay),
            state=self.registry.get(service),
            path_params=params,
            body=body,
            principal=principal,
        )
        try:
            result: Any = await route.handler(request)
        except VendorError as exc:
            return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
        except Exception:
            log.exception("sandbox handler %s %s failed", service, route.key)
            return JSONResponse(vendor_error_body(service, 500), status_code=500)
        if isinstance(result, Response):
            return result
        return JSONResponse(result)  # lenient: a handler returned plain data

    async def _token(
        self, mount: _Mount, scope: Scope, receive: Receive, send: Send, body: bytes
    ) -> None:
        service = mount.name
        stats = self.request_log.start(service, f"POST {sandbox_auth.TOKEN_PATH}")
        faults = self.faults.effective(service)
        if faults.include_token_endpoint:
            latency, fault = self.faults.before(service)
            if fault is not None:
                stats.fault(fault.kind)
                if fault.action == "hang":
                    if not await self._hang(receive, fault.hang_seconds):
                        stats.status("hang")
                        return
                    fault = None
            if latency:
                await asyncio.sleep(latency)
            if fault is not None:
                await self._inject(service, fault, stats, send)
                return
        status, answer = sandbox_auth.token_endpoint(
            mount.spec, scope["headers"], body, self.tokens, faults.token_ttl_seconds
        )
        stats.status(status)
        await _send_raw(
            send, status, json.dumps(answer).encode(), [_JSON, (b"cache-control", b"no-store")]
        )

    # -- fault actions

    async def _inject(self, service: str, fault: Fault, stats: RouteStats, send: Send) -> None:
        if fault.action == "reset":
            await self._reset(send, stats, 200, _RESET_BODY)
        elif fault.action == "malformed":
            stats.status(fault.status)
            if fault.malformed == "html":
                await _send_raw(
                    send,
                    fault.status,
                    _HTML_PAGE,
                    [(b"content-type", b"text/html"), (b"server", b"nginx")],
                )
            else:
                await _send_raw(send, fault.status, _TRUNCATED_JSON, [_JSON])
        else:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            await self._send_json(
                service,
                send,
                fault.status,
                vendor_error_body(service, fault.status),
                stats,
                headers,
            )

    async def _hang(self, receive: Receive, seconds: float) -> bool:
        """Sleep ``seconds`` unless the client leaves first. True if the sleep completed."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
        gone = asyncio.ensure_future(disconnected())
        closing = asyncio.ensure_future(self._closing_event().wait())
        done, pending = await asyncio.wait(
            {sleeper, gone, closing}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if closing in done:
            raise AbortConnection("sandbox shutting down")
        return sleeper in done and gone not in done

    async def _reset(self, send: Send, stats: RouteStats, status: int, payload: bytes) -> None:
        """Announce ``payload``, send part of it, then drop the connection."""
        stats.status("reset")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [_JSON, (b"content-length", b"%d" % len(payload))],
            }
        )
        await send(
            {"type": "http.response.body", "body": payload[: len(payload) // 3], "more_body": True}
        )
        raise AbortConnection("simulated connection reset")

    async def _send_json(
        self,
        service: str,
        send: Send,
        status: int,
        body: Any,
        stats: RouteStats,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        raw = [_JSON, *self._rate_headers(service)]
        if headers:
            raw.extend(
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            )
        stats.status(status)
        await _send_raw(send, status, json.dumps(body).encode(), raw)

    def _rate_headers(self, service: str) -> list[tuple[bytes, bytes]]:
        st = self.faults.rate_limit_state(service)
        limit, remaining = b"%d" % st.limit, b"%d" % st.remaining
        if service == "github":
            return [
                (b"x-ratelimit-limit", limit),
                (b"x-ratelimit-remaining", remaining),
                (b"x-ratelimit-reset", _epoch_in(st.reset_in)),
                (b"x-ratelimit-used", b"%d" % st.used),
                (b"x-ratelimit-resource", b"core"),
            ]
        if service == "gitlab":
            return [
                (b"ratelimit-limit", limit),
                (b"ratelimit-remaining", remaining),
                (b"ratelimit-reset", _epoch_in(st.reset_in)),
                (b"ratelimit-observed", b"%d" % st.used),
            ]
        if service == "okta":
            return [
                (b"x-rate-limit-limit", limit),
                (b"x-rate-limit-remaining", remaining),
                (b"x-rate-limit-reset", _epoch_in(st.reset_in)),
            ]
        if service == "openai":
            return [
                (b"x-ratelimit-limit-requests", limit),
                (b"x-ratelimit-remaining-requests", remaining),
                (b"x-ratelimit-reset-requests", _openai_duration(st.reset_in).encode()),
            ]
        return [
            (b"x-ratelimit-limit", limit),
            (b"x-ratelimit-remaining", remaining),
            (b"x-ratelimit-reset", _epoch_in(st.reset_in)),
        ]

    # -- admin helpers used by both the HTTP admin API and SandboxServer

    def reset(self, *, keep_faults: bool = False) -> None:
        """Forget state, tokens and the request log; faults too unless ``keep_faults``."""
        self.registry.reset()
        self.tokens.clear()
        self.request_log.clear()
        self.faults.reset(keep_faults=keep_faults)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_raw(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- admin API ------------------------------------------------------------------------------


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    return JSONResponse({"error": detail, "path": request.url.path}, status_code=status)


def _app(request: Request) -> SandboxApp:
    app = request.app
    assert isinstance(app, SandboxApp)
    return app


def _bad(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    ctype = request.headers.get("content-type", "")
    if "yaml" in ctype:
        return yaml.safe_load(raw)
    return json.loads(raw)


def _known(service: str, *, star: bool = False) -> bool:
    return (star and service == "*") or service in load_catalog()


async def admin_health(request: Request) -> Response:
    """``GET /_admin/health``: liveness plus what is mounted."""
    app = _app(request)
    return JSONResponse(
        {
            "ok": True,
            "services": len(app.mounts) + (1 if app.smtp_port is not None else 0),
            "vendor_modules": sorted(app.vendor_modules),
            "vendor_errors": app.vendor_errors,
            "smtp_port": app.smtp_port,
            "synthetic": app.faults.synthetic.count,
        }
    )


async def admin_state(request: Request) -> Response:
    """``GET /_admin/state``: per service, objects per collection."""
    return JSONResponse({"services": _app(request).registry.counts()})


async def admin_service_state(request: Request) -> Response:
    """``GET /_admin/state/{service}``: every collection; ``DELETE`` forgets them."""
    app = _app(request)
    service = request.path_params["service"]
    if not _known(service):
        return _bad(f"unknown service {service!r}", 404)
    if request.method == "DELETE":
        app.registry.reset(service)
    collections = app.registry.collections(service)
    return JSONResponse(
        {
            "service": service,
            "collections": collections,
            "counts": {k: len(v) for k, v in collections.items()},
        }
    )


async def admin_faults_all(request: Request) -> Response:
    """``GET /_admin/faults``: every configured entry."""
    app = _app(request)
    entries = app.faults.entries()
    return JSONResponse(
        {
            "seed": app.faults.profile.seed,
            "services": {
                name: e.model_dump(mode="json", exclude_unset=True) for name, e in entries.items()
            },
        }
    )


async def admin_faults(request: Request) -> Response:
    """``GET/POST/DELETE /_admin/faults/{service}`` (``"*"`` allowed): read, merge, clear."""
    app = _app(request)
    service = request.path_params["service"]
    if not _known(service, star=True):
        return _bad(f"unknown service {service!r}", 404)
    if request.method == "POST":
        try:
            fields = await _json_body(request)
        except ValueError as exc:
            return _bad(f"body is not JSON: {exc}", 400)
        if not isinstance(fields, dict):
            return _bad("body must be a JSON object of fault fields", 400)
        try:
            app.faults.update(service, fields)
        except ProfileError as exc:
            return _bad(str(exc))
    elif request.method == "DELETE":
        app.faults.clear(service)
    return JSONResponse(app.faults.describe(service))


async def admin_outage(request: Request) -> Response:
    """``POST /_admin/outage/{service}`` ``{"seconds": 30, "mode": "503"}``; ``DELETE`` ends."""
    app = _app(request)
    service = request.path_params["service"]
    if not _known(service, star=True):
        return _bad(f"unknown service {service!r}", 404)
    if request.method == "DELETE":
        app.faults.end_outage(service)
        return JSONResponse({"service": service, "outage": None})
    try:
        body = await _json_body(request)
        seconds = float(body.get("seconds", 30))
        mode = str(body.get("mode", "503"))
        app.faults.start_outage(service, seconds, mode)
    except (ValueError, AttributeError, TypeError) as exc:
        return _bad(str(exc))
    return JSONResponse({"service": service, "outage": {"seconds": seconds, "mode": mode}})


async def admin_reset(request: Request) -> Response:
    """``POST /_admin/reset[?keep_faults=1]``: state, tokens, request log (and faults)."""
    keep = request.query_params.get("keep_faults", "").lower() in ("1", "true", "yes")
    _app(request).reset(keep_faults=keep)
    return JSONResponse({"ok": True, "kept_faults": keep})


async def admin_requests(request: Request) -> Response:
    """``GET /_admin/requests[?service=x]``: request and fault counts per service/route."""
    service = request.query_params.get("service")
    return JSONResponse(_app(request).request_log.summary(service))


async def admin_profile(request: Request) -> Response:
    """``POST /_admin/profile``: load a whole profile (JSON, or YAML by content type)."""
    app = _app(request)
    if request.method == "GET":
        return JSONResponse(app.faults.profile.model_dump(mode="json", exclude_unset=True))
    try:
        data = await _json_body(request)
        profile = FaultProfile.from_dict(data, source="posted to /_admin/profile")
    except (ValueError, yaml.YAMLError) as exc:
        return _bad(str(exc))
    app.faults.load(profile)
    return JSONResponse(
        {"ok": True, "services": sorted(profile.services), "synthetic": app.faults.synthetic.count}
    )


async def admin_synthetic(request: Request) -> Response:
    """``GET/POST /_admin/synthetic``: the benchmark endpoints' config."""
    app = _app(request)
    if request.method == "POST":
        try:
            config = SyntheticConfig.model_validate(await _json_body(request))
        except ValueError as exc:
            return _bad(f"invalid synthetic config: {exc}")
        app.faults.set_synthetic(config)
    cfg = app.faults.synthetic.config
    return JSONResponse(
        {
            "count": app.faults.synthetic.count,
            "config": cfg.model_dump(mode="json") if cfg else None,
        }
    )


def _admin_routes() -> list[Route]:
    return [
        Route("/_admin/health", admin_health, methods=["GET"]),
        Route("/_admin/state", admin_state, methods=["GET"]),
        Route("/_admin/state/{service}", admin_service_state, methods=["GET", "DELETE"]),
        Route("/_admin/faults", admin_faults_all, methods=["GET"]),
        Route("/_admin/faults/{service}", admin_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_admin/outage/{service}", admin_outage, methods=["POST", "DELETE"]),
        Route("/_admin/reset", admin_reset, methods=["POST"]),
        Route("/_admin/requests", admin_requests, methods=["GET"]),
        Route("/_admin/profile", admin_profile, methods=["GET", "POST"]),
        Route("/_admin/synthetic", admin_synthetic, methods=["GET", "POST"]),
    ]


def build_app(profile: FaultProfile | None = None) -> SandboxApp:
    """Build the sandbox ASGI app (a :class:`~starlette.applications.Starlette`).

    Args:
        profile: Initial fault profile (default: no faults).
    """
    return SandboxApp(profile)


# --- running it ---------------------------------------------------------------------------


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the lock file
        return None
    return uvloop.new_event_loop


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover
        return "h11"
    return "httptools"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class SandboxServer:
    """The sandbox on a background thread with its own event loop (uvloop + httptools).

    Use as a context manager::

        with SandboxServer() as sb:
            settings = Settings(sandbox_url=sb.url, sandbox_smtp_port=sb.smtp_port)
            sb.faults.set("okta", error_rate=1.0)
            ...

    Args:
        host: Interface to listen on.
        port: HTTP port (0 = a free port).
        profile: Initial fault profile (default: no faults).
        smtp_port: SMTP port (0 = a free port, ``None`` = no SMTP server).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        profile: FaultProfile | None = None,
        smtp_port: int | None = 0,
    ) -> None:
        self.host = host
        self.app = build_app(profile)
        self._requested_port = port
        self._requested_smtp = smtp_port
        self._sock: socket.socket | None = None
        self._port = 0
        self._smtp_port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- what tests use

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>`` (pass it as ``Settings.sandbox_url``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The HTTP port."""
        return self._port

    @property
    def smtp_port(self) -> int | None:
        """The SMTP port (``None`` without an SMTP server)."""
        return self._smtp_port

    @property
    def state(self) -> StateRegistry:
        """The in-process state registry (``sb.state.get("okta").collection("users")``)."""
        return self.app.registry

    @property
    def faults(self) -> FaultController:
        """The live fault configuration (``sb.faults.set("okta", error_rate=1.0)``)."""
        return self.app.faults

    @property
    def request_log(self) -> RequestLog:
        """Request and fault counters (same data as ``GET /_admin/requests``)."""
        return self.app.request_log

    def requests(self, service: str | None = None) -> dict[str, Any]:
        """The request-log summary (as ``GET /_admin/requests?service=...``)."""
        return self.app.request_log.summary(service)

    def reset(self, *, keep_faults: bool = False) -> None:
        """Forget state, tokens, the request log, and faults unless ``keep_faults``."""
        self.app.reset(keep_faults=keep_faults)

    # -- lifecycle

    def start(self, timeout: float = 15.0) -> Self:
        """Start serving and wait until the sockets accept connections.

        Raises:
            RuntimeError: The server did not come up (with the reason).
        """
        self._sock = _bind(self.host, self._requested_port)
        self._port = self._sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._thread_main, name="junction-sandbox", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise RuntimeError(f"sandbox did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving (hung requests are released) and join the thread."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.app.begin_shutdown)
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("sandbox thread did not stop within %.0fs", timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _main(self, on_ready: Callable[[], None] | None = None) -> None:
        import uvicorn

        self._loop = asyncio.get_running_loop()
        self.app._closing = asyncio.Event()
        smtp_server: asyncio.Server | None = None
        if self._requested_smtp is not None:
            from integrations.sandbox.smtp import start_smtp_server

            smtp_server = await start_smtp_server(
                self.app.registry,
                self.app.faults,
                self.app.request_log,
                self.host,
                self._requested_smtp,
            )
            self._smtp_port = smtp_server.sockets[0].getsockname()[1]
            self.app.smtp_port = self._smtp_port
        config = uvicorn.Config(
            self.app,
            http=_http_impl(),
            loop="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            backlog=4096,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        self._server = server
        assert self._sock is not None
        task = asyncio.create_task(server.serve(sockets=[self._sock]))
        try:
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            if not server.started:
                await task
                raise RuntimeError("uvicorn exited during startup")
            if on_ready is not None:
                on_ready()
            self._ready.set()
            await task
        finally:
            if smtp_server is not None:
                smtp_server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(smtp_server.wait_closed(), 2)

    def run_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM."""
        self._sock = _bind(self.host, self._requested_port)
        self._port = self._sock.getsockname()[1]
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._main(on_ready))
        finally:
            self._sock.close()
            self._sock = None


def load_profile(faults_file: str | Path | None) -> tuple[FaultProfile, str]:
    """A fault profile from a YAML path or a packaged name (``flaky``); default ``default.yaml``."""
    if faults_file is None:
        path = PROFILES_DIR / "default.yaml"
    else:
        path = Path(faults_file)
        packaged = PROFILES_DIR / f"{faults_file}.yaml"
        if not path.exists() and packaged.exists():
            path = packaged
    return FaultProfile.from_yaml(path), str(path)


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    faults_file: str | Path | None = None,
    smtp_port: int | None = DEFAULT_SMTP_PORT,
) -> None:
    """Run the sandbox in the foreground (``junction sandbox serve``) until Ctrl-C.

    Args:
        host: Interface to listen on.
        port: HTTP port (0 = a free one).
        faults_file: A fault profile YAML, or the name of a packaged one (``flaky``);
            default: the packaged ``default.yaml`` (small realistic latencies, no errors).
        smtp_port: SMTP port (0 = a free one, ``None`` = no SMTP server).

    Raises:
        ProfileError: The profile is invalid (the message names the bad fields).
        OSError: A port is taken (the message names host and ports).
    """
    profile, source = load_profile(faults_file)
    server = SandboxServer(host, port, profile, smtp_port)

    def ready() -> None:
        smtp = f", SMTP on {host}:{server.smtp_port}" if server.smtp_port else ""
        print(
            f"Junction sandbox listening on {server.url}{smtp}\n"
            f"  {len(server.app.mounts)} HTTP services at {server.url}/<name>, admin API at "
            f"{server.url}/_admin, fault profile {source}\n"
            f"  point Junction at it with JUNCTION_SANDBOX_URL={server.url}"
            + (f" JUNCTION_SANDBOX_SMTP_PORT={server.smtp_port}" if server.smtp_port else ""),
            flush=True,
        )

    try:
        server.run_forever(on_ready=ready)
    except OSError as exc:  # port taken, or no such interface: say which
        smtp = f" / SMTP port {smtp_port}" if smtp_port is not None else ""
        raise OSError(
            exc.errno, f"sandbox cannot listen on {host}:{port}{smtp}: {exc.strerror or exc}"
        ) from None
