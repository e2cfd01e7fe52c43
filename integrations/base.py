"""The shared async engine every integration client stands on.

:class:`IntegrationClient` owns, for one service: the base URL, auth, timeouts, the
service's circuit breaker, the typed errors, redaction and the metric hook. A catalog
entry alone makes a working client with ``health_check()``; vendor modules add typed
actions with :func:`~integrations.actions.action` and build paths with
:meth:`IntegrationClient.path`. Its parts, one module per job:

- :mod:`integrations.config`: the configuration objects it is built with (none: the
  sandbox at its default address; nothing here reads the environment);
- :mod:`integrations.urls`: where a request may go (never off the base URL's origin or
  path: pagination links, absolute paths, path parameters);
- :mod:`integrations.retry`: which failures are retried, and the wait;
- :mod:`integrations.responses`: what an answer becomes (body, headers, vendor message);
- :mod:`integrations.idempotency`: keys derived from the request, check-before-create;
- :mod:`integrations.actions`: the typed-action metadata the workflow layer reads.

What vendor modules share is on the client: ``request(..., with_response=True)`` (body
plus headers and status, for pagination), :meth:`IntegrationClient.link_pages` (``Link:
rel="next"`` pagination), :meth:`IntegrationClient.create_once` (and
:meth:`IntegrationClient.post_once`, the common case of a ``POST``), the
:meth:`IntegrationClient._check_response` hook (vendors that report failures inside a
2xx answer).
"""

from __future__ import annotations

import json as jsonlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self, TypeVar, Unpack, overload
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, stop_after_attempt

from integrations.actions import ActionSpec, action, actions_of
from integrations.adaptive_gate import gate_for
from integrations.auth import Credentials, build_auth, resolve_credentials
from integrations.breaker import BreakerState, CircuitBreaker, breakers
from integrations.catalog import IntegrationSpec, load_catalog
from integrations.config import EngineConfig, IntegrationConfig
from integrations.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CircuitOpenError,
    ConfigurationError,
    CrossOriginError,
    IntegrationError,
    InvalidBaseURLError,
    MalformedResponseError,
    RetryLaterError,
    UnsafeRequestError,
    status_error_class,
)
from integrations.idempotency import create_once, derived_key
from integrations.metrics import CallMetric, MetricSink, emit
from integrations.redaction import redact_path
from integrations.responses import (
    APIResponse,
    Expect,
    RequestOptions,
    typed_adapter,
    vendor_message,
)
from integrations.retry import RetryPolicy, parse_retry_after
from integrations.transport import shared_ssl_context
from integrations.urls import BaseURL, CrossOriginURLError, UnsafeURLError, expand, next_link

__all__ = [  # the engine's public names, importable from one place
    "APIResponse",
    "ActionSpec",
    "HealthResult",
    "IntegrationClient",
    "RequestOptions",
    "RetryPolicy",
    "action",
    "derived_key",
    "next_link",
    "parse_retry_after",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
P = TypeVar("P")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_-]*)\}")


# --- health -------------------------------------------------------------------------------


@dataclass
class HealthResult:
    """Outcome of one health check (a probe). Never raised, always returned."""

    service: str
    ok: bool
    status: int | None
    latency_ms: float
    error_class: str | None = None
    error: str | None = None
    breaker_state: str = BreakerState.CLOSED.value
    attempts: int = 1
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def unusable(cls, service: str, exc: IntegrationError) -> HealthResult:
        """The result of a service whose client cannot be built (bad URL, credentials):
        a failure reported like any other, never silently dropped."""
        return cls(
            service=service,
            ok=False,
            status=None,
            latency_ms=0.0,
            error_class=exc.error_class,
            error=exc.message,
            breaker_state="n/a",
            attempts=0,
        )


# --- the client ---------------------------------------------------------------------------


def _same_origin(url: str, other: str) -> bool:
    """Whether two absolute URLs share scheme, host and port."""
    a, b = urlsplit(url), urlsplit(other)
    try:
        return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
    except ValueError:  # a bad port: not the sandbox (the base URL check says why)
        return False


def _extract(template: str, actual: str) -> dict[str, str]:
    """Values of ``{placeholders}`` in a URL template, read off the actual URL."""
    parts = _PLACEHOLDER.split(template)
    pattern = ""
    for i, part in enumerate(parts):
        pattern += re.escape(part) if i % 2 == 0 else f"(?P<{part.replace('-', '_')}>[^/]+?)"
    match = re.match(pattern.rstrip("/") + "/?$", actual.rstrip("/") + "/")
    return match.groupdict() if match else {}


class IntegrationClient:
    """Async client of one integration, built from its catalog entry.

    Use as ``async with IntegrationClient(spec) as client: await client.health_check()``
    (the core's ``junction.clients.get_client("okta")`` builds one from the settings).

    Args:
        spec: The catalog entry (default: the entry named by the class's ``service``).
        config: This integration's base URL, credentials and overrides (default: none
            set, i.e. the sandbox with its well-known credentials).
        engine: Engine-wide behaviour: sandbox address, timeouts, retry policy, breaker
            thresholds (default: :class:`~integrations.config.EngineConfig`'s defaults).
        base_url: Overrides ``config.base_url`` and the sandbox default.
        credentials: Overrides the configured credentials and Secret blocks.
        http: A shared ``httpx.AsyncClient`` (not closed by this client).
        transport: An httpx transport for an owned client (``MockTransport`` in tests).
        retry: Retry policy (default: the engine's).
        breaker: Circuit breaker (default: the process-wide one of this service).
        metric_hook: Extra sink for this client's metrics (besides the global sinks).
        source: Recorded with each metric (``probe``, ``workflow``, ``cli``).
        run_id: Recorded with each metric (a flow or workflow run id).
        timeout: Read timeout (default: ``config.timeout_seconds``, else the engine's).
    """

    service: ClassVar[str] = ""

    def __init__(
        self,
        spec: IntegrationSpec | None = None,
        *,
        config: IntegrationConfig | None = None,
        engine: EngineConfig | None = None,
        base_url: str | None = None,
        credentials: Credentials | None = None,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        metric_hook: MetricSink | None = None,
        source: str = "call",
        run_id: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if spec is None:
            if not self.service:
                raise ConfigurationError("IntegrationClient needs a catalog spec")
            spec = load_catalog().get(self.service)
        self.spec = spec
        self.name = spec.name
        engine = engine or EngineConfig()
        self.engine = engine
        cfg = config or IntegrationConfig()
        self.config = cfg
        chosen = base_url or cfg.base_url
        self.sandbox = chosen is None or _same_origin(chosen, engine.sandbox_url)
        if spec.transport == "smtp" and chosen is None:
            chosen = f"smtp://{urlsplit(engine.sandbox_url).hostname}:{engine.sandbox_smtp_port}"
        self.base_url = self._check_base_url(chosen or spec.sandbox_base_url(engine.sandbox_url))
        self._base = BaseURL.parse(self.base_url) if spec.transport == "http" else None
        self.credentials = resolve_credentials(
            spec, cfg, sandbox=self.sandbox, explicit=credentials
        )
        self.retry = retry or engine.retry
        self.breaker = breaker or breakers.get(
            spec.name,
            failure_threshold=engine.breaker_failure_threshold,
            reset_timeout=engine.breaker_reset_seconds,
        )
        self.gate = gate_for(spec.name, engine.adaptive)  # None: adaptive execution off
        self.metric_hook = metric_hook
        self.source = source
        self.run_id = run_id
        read = timeout or cfg.timeout_seconds or engine.timeout_seconds
        self.timeout = httpx.Timeout(read, connect=min(read, engine.connect_timeout_seconds))
        self._auth: httpx.Auth | None = None
        if spec.transport == "http":
            self._auth = build_auth(
                spec.auth,
                self.credentials,
                token_url=self._token_url(),
                scope=cfg.scope,
            )
        self.last_status: int | None = None
        self.last_attempts = 0
        self._owns_http = http is None
        self._http = http
        self._transport = transport

    # -- configuration helpers

    def _check_base_url(self, url: str) -> str:
        missing = _PLACEHOLDER.findall(url)
        if missing:
            raise InvalidBaseURLError(
                f"base URL {url!r} still has placeholders ({', '.join(missing)}): set "
                f"JUNCTION_{self.name.upper()}_BASE_URL to your real URL",
                service=self.name,
            )
        parts = urlsplit(url)
        allowed = ("smtp", "smtps") if self.spec.transport == "smtp" else ("http", "https")
        if parts.scheme not in allowed or not parts.hostname:
            raise InvalidBaseURLError(
                f"malformed base URL {url!r}: expected {allowed[0]}://host[:port][/path] "
                f"(set JUNCTION_{self.name.upper()}_BASE_URL)",
                service=self.name,
            )
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise InvalidBaseURLError(
                f"malformed base URL {url!r}: bad port", service=self.name
            ) from None
        if parts.query or parts.fragment:
            raise InvalidBaseURLError(
                f"malformed base URL {url!r}: no query string or fragment", service=self.name
            )
        return url.rstrip("/")

    def _token_url(self) -> str | None:
        if self.spec.auth.scheme != "oauth2":
            return None
        if self.config.token_url:
            return self.config.token_url
        if self.sandbox:
            return f"{self.engine.sandbox_url}/{self.name}/oauth2/token"
        template = self.spec.auth.token_url or ""
        values = _extract(self.spec.base_url, self.base_url)
        try:
            return template.format(**values) if template else None
        except KeyError:
            raise ConfigurationError(
                f"cannot derive the OAuth2 token URL from {template!r}: set "
                f"JUNCTION_{self.name.upper()}_TOKEN_URL",
                service=self.name,
            ) from None

    @classmethod
    def actions(cls) -> dict[str, ActionSpec]:
        """The typed actions of this client class, by name."""
        return actions_of(cls)

    # -- lifecycle

    @property
    def http(self) -> httpx.AsyncClient:
        """The underlying ``httpx.AsyncClient`` (created on first use)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=self._transport,
                timeout=self.timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                verify=shared_ssl_context(),  # a fresh context per client costs 10-100 ms
            )
        return self._http

    async def aclose(self) -> None:
        """Close the owned HTTP client (a shared one is left open)."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the call path

    def url(self, path: str) -> str:
        """Absolute URL of ``path``, which must stay under the base URL.

        Args:
            path: A path under the base URL, or an absolute URL on its origin and path.

        Raises:
            CrossOriginError: ``path`` is a URL on another origin (scheme, host, port).
            UnsafeRequestError: It leaves the base path or has a ``.``/``..`` segment.
        """
        return str(self._target(path, None))

    def path(self, template: str, **params: str | int) -> str:
        """A request path with each parameter as one percent-encoded segment.

        ``client.path("/rooms/{room_id}", room_id=rid)``: vendor modules build every
        path from parameters this way, never by formatting, so an id holding ``/``,
        ``?`` or ``#`` stays one segment and ``..`` cannot reach another route.

        Args:
            template: The path with ``{name}`` placeholders.
            **params: A value for each placeholder.

        Raises:
            UnsafeRequestError: A value is empty, ``.`` or ``..`` (nothing is sent).
        """
        try:
            return expand(template, params)
        except UnsafeURLError as exc:
            raise UnsafeRequestError(str(exc), service=self.name) from None

    def _target(self, path: str, action: str | None) -> httpx.URL:
        """The URL of one request, refused (typed, nothing sent) off the base URL."""
        if self._base is None:
            raise ConfigurationError(f"{self.spec.transport} integration has no HTTP URLs")
        try:
            return self._base.resolve(path)
        except CrossOriginURLError as exc:
            raise CrossOriginError(str(exc), service=self.name, action=action) from None
        except UnsafeURLError as exc:
            raise UnsafeRequestError(str(exc), service=self.name, action=action) from None

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        model: type[M],
        with_response: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> APIResponse[M]: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        model: Any = ...,
        with_response: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> APIResponse[Any]: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        model: type[M],
        with_response: Literal[False] = ...,
        **options: Unpack[RequestOptions],
    ) -> M: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        model: Any = ...,
        with_response: Literal[False] = ...,
        **options: Unpack[RequestOptions],
    ) -> Any: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        action: str,
        model: Any = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        expect: Expect = "json",
        max_attempts: int | None = None,
        with_response: bool = False,
    ) -> Any:
        """Send one logical request (with retries) and return its parsed body.

        Args:
            method: HTTP method.
            path: Path under the base URL (or an absolute URL).
            action: Action name, recorded in the metric and error messages.
            model: Validate the JSON body into this type (a model or ``list[Model]``).
            params: Query parameters.
            json: JSON body.
            data: Form body.
            content: Raw body.
            headers: Extra headers.
            idempotent: Whether a retry is safe; default by method.
            idempotency_key: Sent in the vendor's idempotency header (if it has one),
                which makes the request safe to retry.
            timeout: Read timeout for this call.
            expect: ``json`` (parse and check), ``text`` or ``none``.
            max_attempts: Overrides the policy's attempts for this call.
            with_response: Return an :class:`APIResponse` (the body as above, plus this
                answer's headers and status) instead of the body alone.

        Returns:
            The validated model, the parsed JSON, the text, or ``None``; wrapped in an
            :class:`APIResponse` when ``with_response``.

        Raises:
            IntegrationError: A typed subclass; the message names service and action.
        """
        method = method.upper()
        started = time.perf_counter()
        metric_path = redact_path(urlsplit(path).path or path)  # no query, no secrets
        try:
            target = self._target(path, action)
        except UnsafeRequestError as exc:
            self.last_attempts = 0
            self._report(action, method, metric_path, None, False, started, 0, exc)
            raise
        where = f"{method} {target.path}"
        send_headers = dict(self.spec.headers)
        if headers:
            send_headers.update(headers)
        safe = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        if idempotency_key and self.spec.idempotency_header:
            send_headers[self.spec.idempotency_header] = idempotency_key
            safe = True
        policy = self.retry
        attempts_allowed = max_attempts or policy.max_attempts
        call_timeout = httpx.Timeout(timeout, connect=self.timeout.connect) if timeout else None
        attempts = 0
        status: int | None = None

        async def attempt() -> Any:
            nonlocal attempts, status
            attempts += 1
            response = await self._send_once(
                method,
                target,
                where,
                action,
                params,
                json,
                data,
                content,
                send_headers,
                call_timeout,
            )
            status = response.status_code
            self.last_status = status
            body = self._decode(response, where, action, model, expect)
            if with_response:
                return APIResponse(body, response.headers, status, str(response.request.url))
            return body

        try:
            if attempts_allowed == 1:
                # Probes ask for the raw signal: skip building a retry controller, which
                # was ~15% of a health check's CPU in bench/sweep.py.
                result: Any = await attempt()
            else:
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(attempts_allowed),
                    wait=lambda rs: policy.wait_seconds(
                        rs.outcome.exception() if rs.outcome else None, rs.attempt_number
                    ),
                    retry=lambda rs: bool(
                        rs.outcome
                        and rs.outcome.failed
                        and policy.should_retry(rs.outcome.exception(), idempotent=safe)
                    ),
                    reraise=True,
                )
                result = await retrying(attempt)
        except IntegrationError as exc:
            if isinstance(exc, APIStatusError):
                status = exc.status_code
            self.last_attempts = attempts
            self._report(action, method, metric_path, status, False, started, attempts, exc)
            raise
        self.last_attempts = attempts
        self._report(action, method, metric_path, status, True, started, attempts, None)
        return result

    def _admit(self, action: str) -> None:
        """Take the breaker's permission for one attempt; raise when it is open."""
        allowed, retry_in = self.breaker.allow()
        if not allowed:
            raise CircuitOpenError(
                f"circuit breaker open after repeated failures; next trial in {retry_in:.1f}s",
                service=self.name,
                action=action,
                retry_in=retry_in,
            )

    async def _send_once(
        self,
        method: str,
        target: httpx.URL,
        where: str,
        action: str,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Mapping[str, Any] | None,
        content: bytes | str | None,
        headers: dict[str, str],
        timeout: httpx.Timeout | None,
    ) -> httpx.Response:
        self._admit(action)
        chosen = timeout if timeout is not None else self.timeout

        async def exchange(read: float | None = None) -> httpx.Response:
            answer = await self.http.request(
                method,
                target,
                params=params,
                json=json,
                data=data,
                content=content,
                headers=headers,
                auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
                timeout=chosen if read is None else httpx.Timeout(read, connect=chosen.connect),
                # Never follow, whatever a shared client says: a redirect may point
                # anywhere, and httpx would carry the auth along.
                follow_redirects=False,
            )
            await answer.aread()
            return answer

        try:
            if self.gate is None:
                response = await exchange()
            else:  # adaptive timeout, concurrency and budget (integrations.adaptive_gate)
                response = await self.gate.send(action, chosen.read, exchange)
        except IntegrationError:
            self.breaker.release()
            raise
        except httpx.ConnectTimeout:
            self.breaker.record_failure()
            raise APITimeoutError(
                f"connect timeout to {where}", service=self.name, action=action, request_sent=False
            ) from None
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise APITimeoutError(
                f"{type(exc).__name__}: no answer to {where} within the timeout",
                service=self.name,
                action=action,
            ) from None
        except httpx.ConnectError as exc:
            self.breaker.record_failure()
            raise APIConnectionError(
                f"cannot connect for {where}: {exc}",
                service=self.name,
                action=action,
                request_sent=False,
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            self.breaker.release()
            raise InvalidBaseURLError(
                f"bad URL for {where}: {exc}", service=self.name, action=action
            ) from None
        except httpx.TransportError as exc:
            self.breaker.record_failure()
            raise APIConnectionError(
                f"connection failed during {where}: {type(exc).__name__}: {exc}",
                service=self.name,
                action=action,
            ) from None

        code = response.status_code
        if code >= 500:
            self.breaker.record_failure()
        elif code == 429:
            self.breaker.release()  # alive but throttling us: neither verdict
        else:
            self.breaker.record_success()
        if code >= 400:
            raise self._status_error(response, where, action)
        return response

    def _status_error(self, response: httpx.Response, where: str, action: str) -> APIStatusError:
        code = response.status_code
        text = response.text
        try:
            detail = vendor_message(response.json())
        except ValueError:
            detail = None
        message = f"HTTP {code} from {where}"
        if detail:
            message += f": {detail[:300]}"
        elif text.lstrip().startswith("<"):
            message += " (HTML error page)"
        if code == 401:
            message += f" (check JUNCTION_{self.name.upper()}_* credentials)"
        return self._make_status_error(status_error_class(code), message, response, action=action)

    def _make_status_error(
        self,
        cls: type[APIStatusError],
        message: str,
        response: httpx.Response,
        *,
        action: str,
        status_code: int | None = None,
    ) -> APIStatusError:
        """A typed status error for ``response``, filled in the engine's way.

        For subclasses that map a failure the HTTP status does not show (a Slack
        ``{"ok": false}``, a webhook's 3xx): service, action, the body excerpt, and the
        ``Retry-After`` hint when ``cls`` is a :class:`RetryLaterError`.

        Args:
            cls: The error class.
            message: The message (the service and action prefix is added by the error).
            response: The answer being refused.
            action: The action name.
            status_code: The status the failure stands for (default: the response's).
        """
        kwargs: dict[str, Any] = {
            "status_code": response.status_code if status_code is None else status_code,
            "service": self.name,
            "action": action,
            "body_excerpt": response.text[:500],
        }
        if issubclass(cls, RetryLaterError):
            kwargs["retry_after"] = parse_retry_after(response.headers.get("Retry-After"))
        return cls(message, **kwargs)

    def _decode(
        self,
        response: httpx.Response,
        where: str,
        action: str,
        model: Any,
        expect: Expect,
    ) -> Any:
        if expect == "none" or response.status_code == 204:
            body: Any = None
        elif expect == "text":
            body = response.text
        else:
            body = self._json_body(response, where, action)
        self._check_response(response, body, where=where, action=action)
        if expect != "json" or response.status_code == 204 or model is None:
            return body
        try:
            return typed_adapter(model).validate_python(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
            raise MalformedResponseError(
                f"response of {where} does not match the documented shape ({problems})",
                service=self.name,
                action=action,
            ) from None

    def _json_body(self, response: httpx.Response, where: str, action: str) -> Any:
        """The parsed JSON body (``None`` when empty); garbled JSON is a retryable error."""
        if not response.content:
            return None
        try:
            return jsonlib.loads(response.content)
        except ValueError:
            ctype = response.headers.get("content-type", "")
            body_start = response.text[:80].strip().replace("\n", " ")
            kind = "HTML" if body_start.startswith("<") else "invalid JSON"
            err = MalformedResponseError(
                f"expected JSON from {where}, got {kind} (content-type {ctype or 'none'}, "
                f"starts {body_start!r})",
                service=self.name,
                action=action,
            )
            err.retryable = True  # garbled bodies from proxies are usually transient
            self.breaker.record_failure()
            raise err from None

    def _check_response(
        self, response: httpx.Response, body: Any, *, where: str, action: str
    ) -> None:
        """Hook: refuse an answer whose HTTP status (below 400) hides a failure.

        Called inside each attempt, after the body is decoded (the parsed JSON, the text
        or ``None``, as ``expect`` asks) and before it is validated against ``model``.
        An :class:`IntegrationError` raised here (build it with
        :meth:`_make_status_error`) fails the attempt like an HTTP error status: the
        retry policy and the call's metric see it. The breaker has already counted the
        answer as a success; a hook refusing a server-side failure records that itself.
        Slack overrides it for ``{"ok": false}`` bodies, the webhook client for 3xx
        answers. The default accepts every answer.

        Args:
            response: The answer (its status is below 400).
            body: The decoded body.
            where: ``METHOD /path``, for messages.
            action: The action name.
        """

    def _report(
        self,
        action: str,
        method: str,
        path: str,
        status: int | None,
        ok: bool,
        started: float,
        attempts: int,
        exc: IntegrationError | None,
    ) -> None:
        """Emit the call's metric; ``path`` is recorded as given (already redacted)."""
        emit(
            CallMetric(
                service=self.name,
                action=action,
                method=method,
                path=path,
                status=status,
                ok=ok,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                error_class=exc.error_class if exc else None,
                error=exc.message[:500] if exc else None,
                attempts=attempts,
                breaker_state=self.breaker.state.value,
                source=self.source,
                run_id=self.run_id,
            ),
            self.metric_hook,
        )

    # -- building blocks of vendor actions

    async def link_pages(
        self,
        path: str,
        *,
        action: str,
        model: type[P],
        params: Mapping[str, Any] | None = None,
        max_pages: int,
    ) -> tuple[list[P], bool]:
        """GET a list and follow its ``Link: <...>; rel="next"`` headers (Okta, Webex).

        The next URL carries the whole query (cursor included), so ``params`` go with the
        first request only. A relative link resolves against the page's URL; a link off
        the base URL (another origin, another path) raises :class:`CrossOriginError` /
        :class:`UnsafeRequestError` before anything is sent to it.

        Args:
            path: The list's path.
            action: Action name for the metrics.
            model: The type of one page's body (``list[OktaGroup]``, a page model).
            params: Query of the first request.
            max_pages: Stop after this many pages.

        Returns:
            Each page's validated body, in order, and whether a next page was left
            unread (the ``max_pages`` cap cut the list short).
        """
        pages: list[P] = []
        url: str | None = path
        while url and len(pages) < max_pages:
            page = await self.request(
                "GET",
                url,
                action=action,
                model=model,
                params=params if not pages else None,
                with_response=True,
            )
            pages.append(page.data)
            url = next_link(page.headers, base=page.url)
        return pages, url is not None

    async def create_once(
        self,
        *,
        lookup: Callable[[], Awaitable[T | None]],
        create: Callable[[], Awaitable[T]],
        lookup_first: bool,
    ) -> T:
        """Create an object once (check-before-create): :func:`~integrations.idempotency.
        create_once` with this client's retry policy.

        Args:
            lookup: Finds the object an earlier attempt (or run) created, else ``None``.
            create: One create attempt.
            lookup_first: Look up before the first attempt too.
        """
        return await create_once(
            self.retry, lookup=lookup, create=create, lookup_first=lookup_first
        )

    async def post_once(
        self,
        path: str,
        *,
        action: str,
        model: type[M],
        lookup: Callable[[], Awaitable[M | None]],
        lookup_first: bool,
        **options: Unpack[RequestOptions],
    ) -> M:
        """POST a create once: :meth:`create_once` around a ``POST`` that is never
        re-sent blind (non-idempotent, one attempt; re-attempts go through ``lookup``).

        Args:
            path: Path under the base URL.
            action: Action name, as for :meth:`request`.
            model: The created object's model.
            lookup: Finds the object an earlier attempt (or run) created, else ``None``.
            lookup_first: Look up before the first attempt too.
            **options: The request's body, query and headers (``json=``, ``params=``...).
        """
        send: RequestOptions = {**options, "idempotent": False, "max_attempts": 1}

        async def create() -> M:
            return await self.request("POST", path, action=action, model=model, **send)

        return await self.create_once(lookup=lookup, create=create, lookup_first=lookup_first)

    # -- health

    async def health_check(self, *, max_attempts: int = 1) -> HealthResult:
        """Run the catalog's health check; never raises.

        Args:
            max_attempts: Attempts (1 = report the raw signal, as probes want).
        """
        started = time.perf_counter()
        try:
            await self._health_request(max_attempts)
        except IntegrationError as exc:
            return HealthResult(
                service=self.name,
                ok=False,
                status=getattr(exc, "status_code", None),
                latency_ms=(time.perf_counter() - started) * 1000.0,
                error_class=exc.error_class,
                error=exc.message,
                breaker_state=self.breaker.state.value,
                attempts=self.last_attempts,
            )
        return HealthResult(
            service=self.name,
            ok=True,
            status=self.last_status,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            breaker_state=self.breaker.state.value,
            attempts=self.last_attempts,
        )

    async def _health_request(self, max_attempts: int) -> None:
        health = self.spec.health
        path = health.path
        if "{username}" in path:
            path = self.path(path, username=self.credentials.username or "")
        await self.request(
            health.method,
            path,
            action="health_check",
            params=health.params or None,
            max_attempts=max_attempts,
        )
