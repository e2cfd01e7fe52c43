"""The sandbox's ASGI app: a request to a sandboxed vendor, from arrival to answer.

Per request to ``/<service>/...``: find the route (:mod:`integrations.sandbox.routing`),
let the fault controller decide what goes wrong (latency, an injected error, a hang, a
reset, a garbled body, a committed write whose answer is lost), check auth as the
catalog entry says (:mod:`integrations.sandbox.auth`), run the vendor handler or the
generic health answer (:mod:`integrations.sandbox.services`), and add the vendor's
rate-limit headers (:mod:`integrations.sandbox.ratelimit`). The vendor and benchmark
paths are raw ASGI (the sweeps hammer them); everything else, the admin API first, goes
through Starlette behind the admin guard (:mod:`integrations.sandbox.admin`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from integrations.catalog import load_catalog
from integrations.sandbox import auth as sandbox_auth
from integrations.sandbox.admin import AdminGuard, admin_routes
from integrations.sandbox.api import SandboxRequest, VendorError, VendorRoutes, vendor_error_body
from integrations.sandbox.faults import Fault, FaultController
from integrations.sandbox.profile import FaultProfile
from integrations.sandbox.ratelimit import Headers, rate_limit_headers
from integrations.sandbox.routing import CompiledRoute, Mount, build_mounts
from integrations.sandbox.services import RateLimitStyle, health_json, sandbox_services
from integrations.sandbox.state import RequestLog, RouteStats, StateRegistry

log = logging.getLogger("integrations.sandbox")

_JSON = (b"content-type", b"application/json")
_SYNTH_PREFIX = "/_synthetic/"
_SYNTH_404 = b'{"ok":false,"error":"no such synthetic endpoint"}'
_SYNTH_HEADERS_404 = [_JSON, (b"content-length", b"%d" % len(_SYNTH_404))]


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


class SandboxApp(Starlette):
    """The sandbox ASGI app: a Starlette app with fast paths for vendor and benchmark
    requests.

    Args:
        profile: Initial fault profile (default: no faults).
        bind_host: The interface the server listens on (the admin API's ``Host`` check).
        admin_token: When set, the admin API requires ``Authorization: Bearer <token>``.

    Attributes:
        registry: The services' state.
        faults: The live fault configuration.
        request_log: Counters per service and route.
        tokens: OAuth2 tokens issued.
        mounts: One per HTTP catalog entry, by name.
        vendor_modules: Services played by a vendor module (the rest: generic answers).
        admin_guard: Who may use the admin API.
    """

    def __init__(
        self,
        profile: FaultProfile | None = None,
        *,
        bind_host: str = "127.0.0.1",
        admin_token: str | None = None,
    ) -> None:
        super().__init__(routes=admin_routes(), exception_handlers={HTTPException: _http_error})
        self.registry = StateRegistry()
        self.faults = FaultController(profile)
        self.request_log = RequestLog()
        self.tokens = sandbox_auth.TokenStore()
        self.smtp_port: int | None = None
        self.admin_guard = AdminGuard(bind_host, admin_token)
        self._closing: asyncio.Event | None = None
        services = sandbox_services()  # a broken services.yaml stops start-up, with its line
        self.mounts: dict[str, Mount] = build_mounts(load_catalog())
        self.vendor_modules = sorted(m.name for m in self.mounts.values() if m.vendor)
        self._rate_styles: dict[str, RateLimitStyle] = {
            name: services.entry(name).rate_limit_headers for name in self.mounts
        }
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
            # The admin API and whatever else Starlette answers: guarded here, so the
            # vendor and benchmark paths above pay nothing for it.
            refusal = self.admin_guard.check(scope)
            if refusal is not None:
                await _send_raw(send, refusal.status, refusal.body, [_JSON, *refusal.headers])
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

    async def _service(self, mount: Mount, scope: Scope, receive: Receive, send: Send) -> None:
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

        if await self._fault_answered(service, stats, receive, send):
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
        mount: Mount,
        route: CompiledRoute,
        scope: Scope,
        receive: Receive,
        params: dict[str, Any],
        body: bytes,
        principal: str,
    ) -> Response:
        service = mount.name
        if route.handler is None:
            return Response(
                health_json(service, tuple(sorted(params.items())), principal),
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
        self, mount: Mount, scope: Scope, receive: Receive, send: Send, body: bytes
    ) -> None:
        service = mount.name
        stats = self.request_log.start(service, f"POST {sandbox_auth.TOKEN_PATH}")
        faults = self.faults.effective(service)
        if faults.include_token_endpoint and await self._fault_answered(
            service, stats, receive, send
        ):
            return
        status, answer = sandbox_auth.token_endpoint(
            mount.spec, scope["headers"], body, self.tokens, faults.token_ttl_seconds
        )
        stats.status(status)
        await _send_raw(
            send, status, json.dumps(answer).encode(), [_JSON, (b"cache-control", b"no-store")]
        )

    # -- fault actions

    async def _fault_answered(
        self, service: str, stats: RouteStats, receive: Receive, send: Send
    ) -> bool:
        """Apply the fault controller's verdict before the handler: its latency, and any
        injected answer. True when the request was answered (or the client left)."""
        latency, fault = self.faults.before(service)
        if fault is not None:
            stats.fault(fault.kind)
            if fault.action == "hang":
                if not await self._hang(receive, fault.hang_seconds):
                    stats.status("hang")
                    return True
                fault = None  # a hang shorter than the client's patience is just slow
        if latency and fault is None:
            with self.faults.queues.serving(service):
                await asyncio.sleep(self.faults.queued_latency(service, latency))
        elif latency:
            await asyncio.sleep(latency)
        if fault is not None:
            await self._inject(service, fault, stats, send)
            return True
        return False

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

    def _rate_headers(self, service: str) -> Headers:
        return rate_limit_headers(self._rate_styles[service], self.faults.rate_limit_state(service))

    # -- used by both the admin API and SandboxServer

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


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    return JSONResponse({"error": detail, "path": request.url.path}, status_code=status)
