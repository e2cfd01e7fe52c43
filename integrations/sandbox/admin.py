"""The sandbox's admin API (``/_admin``) and who may use it.

Routes: ``health``, ``state[/{service}]``, ``faults[/{service}]``, ``outage/{service}``,
``reset``, ``requests``, ``profile``, ``synthetic``, ``records``.

The admin API can change a developer's sandbox (take services down, reset state) and
read everything it holds, so :class:`AdminGuard` lets through only:

* requests without a browser's cross-site marks: an ``Origin`` header must be the
  sandbox's own, and ``Sec-Fetch-Site`` must not be ``cross-site``/``same-site`` (a web
  page the developer visits cannot drive the sandbox);
* requests whose ``Host`` is an IP address, ``localhost`` or the name the sandbox was
  bound to (a DNS-rebinding page sends its own name); any name passes with the token;
* writes whose body is JSON (``application/json``; YAML types on ``/_admin/profile``),
  since an HTML form or a "simple" cross-site ``fetch`` can only send ``text/plain``,
  form and multipart bodies;
* when an admin token is set (``JUNCTION_SANDBOX_ADMIN_TOKEN``), requests that carry it
  as ``Authorization: Bearer <token>``.

The checks run on ``/_admin`` (and other non-vendor paths) only: vendor requests and the
benchmark endpoints never pay for them.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from integrations.catalog import load_catalog
from integrations.sandbox.auth import Headers, header
from integrations.sandbox.faults import FaultController
from integrations.sandbox.profile import FaultProfile, OutageRequest, ProfileError, SyntheticConfig
from integrations.sandbox.records import listing
from integrations.sandbox.routing import Mount
from integrations.sandbox.state import RequestLog, StateRegistry
from integrations.urls import LOOPBACK_NAMES, host_name, is_loopback
from integrations.yamlconfig import ConfigError, load_model

ADMIN_TOKEN_ENV = "JUNCTION_SANDBOX_ADMIN_TOKEN"
"""The setting that turns on the admin token (read by the CLI, passed in explicitly)."""

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
# --- the guard ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an admin request is refused: the status, JSON body and extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _refuse(status: int, message: str, *headers: tuple[bytes, bytes]) -> Refusal:
    return Refusal(status, json.dumps({"error": message}).encode(), headers)


class AdminGuard:
    """Decides whether an admin request may proceed (see the module docstring).

    Args:
        bind_host: The interface the sandbox listens on.
        token: The admin token; ``None`` means none is required.
    """

    def __init__(self, bind_host: str, token: str | None = None) -> None:
        self.bind_name = host_name(bind_host)
        self._token = token.encode() if token else None

    @property
    def token_required(self) -> bool:
        """Whether requests must carry the admin token."""
        return self._token is not None

    def _host_ok(self, host: str | None) -> bool:
        if host is None:  # HTTP/1.0 without Host: not a browser
            return True
        name = host_name(host)
        if name in LOOPBACK_NAMES or name == self.bind_name:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True  # a DNS-rebinding page always sends a name, never an address

    def _token_ok(self, authorization: str | None) -> bool:
        if self._token is None:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self._token
        )

    def check(self, scope: Scope) -> Refusal | None:
        """``None`` when the request in ``scope`` may proceed, else what to answer."""
        headers = scope["headers"]
        host = header(headers, b"host")
        origin = header(headers, b"origin")
        if origin is not None and (
            host is None
            or origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower())
        ):
            return _refuse(403, f"cross-origin admin request refused (Origin {origin})")
        fetch_site = header(headers, b"sec-fetch-site")
        if fetch_site in ("cross-site", "same-site"):
            return _refuse(403, f"cross-site admin request refused (Sec-Fetch-Site {fetch_site})")
        token_ok = self._token_ok(header(headers, b"authorization"))
        if not token_ok:
            return _refuse(
                401,
                f"the admin API needs the admin token ({ADMIN_TOKEN_ENV}) as a bearer token",
                (b"www-authenticate", b'Bearer realm="junction-sandbox"'),
            )
        if self._token is None and not self._host_ok(host):
            return _refuse(
                403,
                f"Host {host!r} is not this sandbox's address: the admin API answers to an IP "
                f"address, localhost or {self.bind_name}, or to any name with the admin token "
                f"({ADMIN_TOKEN_ENV})",
            )
        if scope["method"] in _WRITES:
            return self._check_body_type(scope["path"], headers)
        return None

    @staticmethod
    def _check_body_type(path: str, headers: Headers) -> Refusal | None:
        ctype = header(headers, b"content-type")
        if ctype is None:
            length = header(headers, b"content-length")
            chunked = header(headers, b"transfer-encoding") is not None
            if chunked or (length is not None and length.strip() not in ("", "0")):
                return _refuse(415, "an admin request body must be sent as application/json")
            return None  # no body: nothing a browser form could have shaped
        media = ctype.split(";", 1)[0].strip().lower()
        if media == "application/json" or media.endswith("+json"):
            return None
        if media in _YAML_TYPES and path == "/_admin/profile":
            return None
        return _refuse(415, f"admin writes take application/json, not {media or 'nothing'}")


def exposure_warning(host: str, token_set: bool) -> str | None:
    """What to tell the user when binding to ``host`` reaches beyond this machine."""
    if is_loopback(host):
        return None
    reach = f"the sandbox listens on {host}, reachable from other machines"
    if token_set:
        return f"{reach}; its admin API requires the admin token"
    return (
        f"{reach}: anyone who can reach it can read its state and change its faults through "
        f"/_admin. Set {ADMIN_TOKEN_ENV} to require a token, or bind to 127.0.0.1."
    )


# --- the API --------------------------------------------------------------------------------


class Sandbox(Protocol):
    """What the admin API needs from the app (:class:`integrations.sandbox.asgi.SandboxApp`)."""

    registry: StateRegistry
    faults: FaultController
    request_log: RequestLog
    mounts: dict[str, Mount]
    vendor_modules: list[str]
    smtp_port: int | None

    def reset(self, *, keep_faults: bool = False) -> None:
        """Forget state, tokens and the request log (and faults unless ``keep_faults``)."""


def _app(request: Request) -> Sandbox:
    app: Sandbox = request.app
    return app


def _bad(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _no_constants(text: str) -> Any:
    raise ValueError(f"{text} is not a number")


async def _json_body(request: Request) -> Any:
    """The JSON body (``{}`` when empty); ``NaN``/``Infinity`` are refused."""
    raw = await request.body()
    if not raw.strip():
        return {}
    return json.loads(raw, parse_constant=_no_constants)


def _unknown(service: str, *, star: bool = False) -> JSONResponse | None:
    """The 404 for a service that is not a catalog name (nor ``"*"`` with ``star``)."""
    if (star and service == "*") or service in load_catalog():
        return None
    return _bad(f"unknown service {service!r}", 404)


async def admin_health(request: Request) -> Response:
    """``GET /_admin/health``: liveness plus what is mounted."""
    app = _app(request)
    return JSONResponse(
        {
            "ok": True,
            "services": len(app.mounts) + (1 if app.smtp_port is not None else 0),
            "vendor_modules": app.vendor_modules,
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
    if (refusal := _unknown(service)) is not None:
        return refusal
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
    if (refusal := _unknown(service, star=True)) is not None:
        return refusal
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
    if (refusal := _unknown(service, star=True)) is not None:
        return refusal
    if request.method == "DELETE":
        app.faults.end_outage(service)
        return JSONResponse({"service": service, "outage": None})
    try:
        outage = OutageRequest.from_json(await _json_body(request))
        app.faults.start_outage(service, outage.seconds, outage.mode)
    except ValueError as exc:
        return _bad(str(exc))
    return JSONResponse(
        {"service": service, "outage": {"seconds": outage.seconds, "mode": outage.mode}}
    )


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
    """``GET/POST /_admin/profile``: the profile; load a whole one (JSON, or YAML by type)."""
    app = _app(request)
    if request.method == "GET":
        return JSONResponse(app.faults.profile.model_dump(mode="json", exclude_unset=True))
    source = "POST /_admin/profile"
    try:
        if "yaml" in request.headers.get("content-type", ""):
            profile = load_model(FaultProfile, source, text=await request.body(), empty={})
        else:
            profile = FaultProfile.from_dict(await _json_body(request), source=source)
    except (ConfigError, ProfileError) as exc:
        return _bad(str(exc))
    except ValueError as exc:
        return _bad(f"body is not JSON: {exc}", 400)
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


async def admin_records(request: Request) -> Response:
    """``GET /_admin/records[?service=x]``: the records users need ids from, per service
    (seeded first where a service was not used yet), e.g. Workday workers."""
    app = _app(request)
    only = request.query_params.get("service")
    if only is not None and only not in app.mounts:
        return _bad(f"unknown service {only!r}", 404)
    base = str(request.base_url).rstrip("/")
    out: dict[str, Any] = {}
    for name, mount in sorted(app.mounts.items()):
        vendor = mount.vendor
        if vendor is None or not vendor.listings or (only is not None and name != only):
            continue
        state = vendor.seeded(app.registry.get(name), base + mount.prefix)
        out[name] = listing(vendor, state)
    return JSONResponse({"services": out})


def admin_routes() -> list[Route]:
    """The admin API's routes (the app guards them with :class:`AdminGuard`)."""
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
        Route("/_admin/records", admin_records, methods=["GET"]),
    ]
