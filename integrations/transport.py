"""HTTP plumbing shared by every client: one TLS context, and the transports of a sweep.

A health sweep sends ~1,000 concurrent requests through one ``httpx.AsyncClient``. Two
transports can carry them (``JUNCTION_HTTP_BACKEND``):

* ``httpcore`` (:class:`ShardedTransport`): httpx's own stack. Its connection pool
  re-scans every queued request against every connection on each state change, so one
  pool with ~1,000 concurrent requests spends seconds of CPU in bookkeeping
  (encode/httpx#3215); several small pools behind one transport keep each scan short.
  Even so, httpcore on the anyio backend costs ~3 ms of CPU per request.
* ``aiohttp`` (:class:`AiohttpTransport`): the same httpx client API (``httpx.Auth``
  flows, ``httpx.Request``/``Response``, httpx's decoding), with the wire work done by one
  ``aiohttp.ClientSession``, whose C parser and pool cost a fraction of that.

Why not the ``httpx-aiohttp`` package: it maps every ``aiohttp.ClientConnectionError``,
``ServerDisconnectedError`` included (the server dropped the connection after the request
was written), to ``httpx.ConnectTimeout``. Our engine reads ``ConnectTimeout`` and
``ConnectError`` as "the request never left" (``request_sent=False``) and retries even a
non-idempotent POST on them, so that mapping can duplicate side effects. Here only
failures that provably happen before a byte of the request is written map to those two;
see :func:`map_aiohttp_error`.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    import aiohttp

HttpBackend = Literal["httpcore", "aiohttp"]


@lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process (building one loads the CA bundle: ~10-100 ms)."""
    return httpx.create_ssl_context()


class ShardedTransport(httpx.AsyncBaseTransport):
    """Spread requests round-robin over several independent httpcore pools.

    Args:
        shards: Number of pools.
        connections_per_shard: Connection limit of each pool.
    """

    def __init__(self, shards: int, connections_per_shard: int) -> None:
        limits = httpx.Limits(
            max_connections=connections_per_shard,
            max_keepalive_connections=connections_per_shard,
        )
        self._pools = [
            httpx.AsyncHTTPTransport(verify=shared_ssl_context(), limits=limits)
            for _ in range(max(1, shards))
        ]
        self._next = itertools.cycle(range(len(self._pools)))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pools[next(self._next)].handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


# --- aiohttp -------------------------------------------------------------------------------

# aiohttp adds these when a request lacks them (its own User-Agent, "Accept: */*", an
# "application/octet-stream" Content-Type for bytes): httpx already chose the headers.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


def map_aiohttp_error(
    exc: BaseException, request: httpx.Request
) -> httpx.TransportError | httpx.InvalidURL | None:
    """The httpx exception standing for an aiohttp failure (``None``: not aiohttp's).

    Only what provably happens before any byte of the request is written becomes
    ``ConnectError``/``ConnectTimeout`` (the engine retries those even for a POST);
    everything after the connection is up means "the request may have been sent".

    ======================================================  =========================
    aiohttp                                                 httpx
    ======================================================  =========================
    ``ConnectionTimeoutError`` (pool wait or TCP/TLS)       ``ConnectTimeout``
    ``ClientConnectorError`` (refused, DNS, TLS, cert)      ``ConnectError``
    ``SocketTimeoutError``/``ServerTimeoutError``, other    ``ReadTimeout``
    ``TimeoutError``
    ``ServerDisconnectedError`` (closed before an answer)   ``RemoteProtocolError``
    ``ClientPayloadError`` (body cut short, bad chunking)   ``RemoteProtocolError``
    ``ClientResponseError`` (unparsable status/headers)     ``RemoteProtocolError``
    ``ClientConnectionResetError`` (writing to a closed     ``WriteError``
    connection)
    ``ClientOSError`` (reset after connect), other          ``ReadError``
    ``ClientConnectionError``
    ``NonHttpUrlClientError``                               ``UnsupportedProtocol``
    ``InvalidURL``                                          ``InvalidURL``
    any other ``ClientError``                               ``TransportError``
    ======================================================  =========================

    Args:
        exc: What aiohttp raised.
        request: The httpx request (attached to the new exception).
    """
    # Function-level: aiohttp loads only with the aiohttp backend (httpcore users skip it).
    import aiohttp

    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    error: type[httpx.TransportError]
    # Order matters: the timeout classes are also ClientConnectionErrors and OSErrors,
    # ClientConnectorError is a ClientOSError.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError
    elif isinstance(exc, TimeoutError):  # SocketTimeoutError, ServerTimeoutError
        error = httpx.ReadTimeout
    elif isinstance(
        exc,
        aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
    ):
        error = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ClientConnectionResetError):
        error = httpx.WriteError
    elif isinstance(exc, aiohttp.ClientConnectionError):  # ClientOSError and the rest
        error = httpx.ReadError
    elif isinstance(exc, aiohttp.NonHttpUrlClientError):
        error = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.InvalidURL):
        return httpx.InvalidURL(message)
    elif isinstance(exc, aiohttp.ClientError):
        error = httpx.TransportError
    else:
        return None
    return error(message, request=request)


class _AiohttpBody(httpx.AsyncByteStream):
    """A response body read from aiohttp as httpx iterates it (errors mapped)."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except Exception as exc:
            mapped = map_aiohttp_error(exc, self._request)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to the end, else the connection closes.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends requests with one ``aiohttp.ClientSession``.

    httpx keeps everything above the wire: auth flows, cookies, redirects (off here:
    aiohttp never follows one), content decoding (aiohttp's is off), the typed
    ``Request``/``Response``. The session is made on first use, inside the running event
    loop, and is bound to that loop.

    Timeouts come from each request's ``timeout`` extension: ``connect`` bounds the TCP
    and TLS handshake (``sock_connect``), ``read`` each wait for data once the request is
    written, headers and body alike (``sock_read``), and ``pool + connect`` the whole wait
    for a connection (``connect``). There is no total deadline, as in httpcore. aiohttp
    has no write timeout: a body is buffered (up to 64 KiB beyond the socket's buffers)
    without waiting, but a larger upload to a server that stops reading it waits without
    bound. Sweeps send GETs and small bodies; keep ``httpcore`` for big uploads.

    aiohttp's own retry of an idempotent request on a dropped keep-alive connection is
    switched off: the engine's retry policy is the only one, and a request reaches the
    server as often with this transport as with httpcore.

    Args:
        limit: Most connections open at once.
        limit_per_host: Most connections to one host:port (0 = only ``limit``).
        ssl_context: TLS context (default: :func:`shared_ssl_context`).
        ttl_dns_cache: Seconds a DNS answer is reused.
    """

    def __init__(
        self,
        *,
        limit: int = 100,
        limit_per_host: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        ttl_dns_cache: int = 300,
    ) -> None:
        import aiohttp  # here, while the client is built, not inside its first request
        from yarl import URL  # comes with aiohttp

        self._aiohttp = aiohttp
        self._url = URL
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._ssl = ssl_context
        self._ttl_dns_cache = ttl_dns_cache
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_here(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None:
            aiohttp = self._aiohttp
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                ssl=self._ssl or shared_ssl_context(),
                ttl_dns_cache=self._ttl_dns_cache,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes, as it does over httpcore
                skip_auto_headers=_SKIP_AUTO_HEADERS,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps the cookies
                timeout=aiohttp.ClientTimeout(total=None),
            )
            # No hidden second attempt (see the class docstring); private, so a test
            # counts the requests a dropped GET makes.
            session._retry_connection = False
            self._session, self._loop = session, loop
        elif self._loop is not loop:
            raise RuntimeError(
                "AiohttpTransport is bound to the event loop it first ran in; "
                "build one client per loop"
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response; its body is read as httpx asks."""
        url = request.url
        # httpcore's checks and messages; aiohttp would say NonHttpUrlClientError
        if not url.scheme:
            raise httpx.UnsupportedProtocol(
                "Request URL is missing an 'http://' or 'https://' protocol.", request=request
            )
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{url.scheme}://'.", request=request
            )
        if not url.host:
            raise httpx.UnsupportedProtocol("Request URL has no host.", request=request)
        session = self._session_here()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            body: object = request.content or None
        except httpx.RequestNotRead:
            # A streamed upload. aiohttp chunks a body of unknown size itself and refuses
            # httpx's "Transfer-Encoding: chunked" on top (it adds its own, last).
            body = request.stream
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        try:
            response = await session.request(
                request.method,
                self._url(str(url), encoded=True),  # httpx already percent-encoded it
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=_client_timeout(request),
            )
        except Exception as exc:
            mapped = map_aiohttp_error(exc, request)
            if mapped is None:
                raise
            raise mapped from exc
        version = response.version
        extensions = {
            "http_version": f"HTTP/{version.major}.{version.minor}".encode()
            if version
            else b"HTTP/1.1",
            "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
        }
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_AiohttpBody(response, request),
            extensions=extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _client_timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    t = request.extensions.get("timeout") or {}
    return _timeout(t.get("connect"), t.get("read"), t.get("pool"))


@lru_cache(maxsize=64)
def _timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    # Function-level: aiohttp loads only with the aiohttp backend.
    import aiohttp

    acquire = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing: what a response sets is dropped."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep nothing (httpx calls this on every response)."""

    def set_cookie_header(self, request: httpx.Request) -> None:
        """Add nothing: the store is always empty."""


class CookielessClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that keeps no cookies from its responses.

    Health probes need none, and httpx's cookie handling (``extract_cookies`` on every
    response, through ``urllib``'s request and response wrappers) was ~19% of a
    steady-state probe's CPU in ``bench/sweep.py``. Cookies given to the client or to one
    request are still sent.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jar = _NoCookies(kwargs.get("cookies"))

    @property
    def cookies(self) -> httpx.Cookies:
        """The client's cookies: only those set on it, never a response's."""
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _NoCookies(cookies)


def sweep_client(
    concurrency: int, timeout: httpx.Timeout, backend: HttpBackend = "httpcore"
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for ``concurrency`` simultaneous requests to many hosts.

    The client keeps no cookies (:class:`CookielessClient`): health checks need none.

    Args:
        concurrency: Requests in flight at once.
        timeout: The client's default timeouts.
        backend: ``httpcore``: pools of at most 32 connections, small enough that
            httpcore's per-request scan stays cheap, large enough to keep a handful of
            pools for a full catalog sweep. ``aiohttp``: one :class:`AiohttpTransport`
            allowing ``concurrency`` connections, to any one host too (in the sandbox
            every integration is the same host).
    """
    transport: httpx.AsyncBaseTransport
    if backend == "aiohttp":
        transport = AiohttpTransport(limit=concurrency, limit_per_host=concurrency)
    else:
        per_shard = 32
        shards = max(1, -(-concurrency // per_shard))
        transport = ShardedTransport(shards, per_shard)
    return CookielessClient(transport=transport, timeout=timeout, follow_redirects=False)
