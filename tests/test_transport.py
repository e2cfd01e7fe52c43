"""The sweep transports: ``AiohttpTransport`` must fail exactly as httpx's own stack does.

Every engine-level test runs twice, over httpcore (``httpx.AsyncHTTPTransport``) and over
``AiohttpTransport``, and asserts the same typed error out of ``IntegrationClient``:
against the shared sandbox with injected faults, a closed port, a listener whose accept
queue is full (connect timeout), and tiny raw TCP servers that answer exactly the broken
bytes a test needs (the sandbox cannot disconnect before answering, garble a status
line or gzip a body). The decisive one: a POST whose connection drops after it was sent
is never retried, which the ``httpx-aiohttp`` package's mapping would break.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.base import IntegrationClient, RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import (
    APIConnectionError,
    APITimeoutError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
)
from integrations.sandbox.app import SandboxServer
from integrations.transport import (
    AiohttpTransport,
    ShardedTransport,
    map_aiohttp_error,
    sweep_client,
)
from junction.clients import get_client, sweep
from junction.settings import Settings

BACKENDS = ("httpcore", "aiohttp")
#: Three attempts, no waiting: retries are counted, not timed.
FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, backoff_max=0.0, jitter=0.0)
#: A generic catalog entry (no vendor module) for the GET faults.
GENERIC = "asana"
HEALTH = "/users/me"  # its catalog health check


def make_transport(backend: str) -> httpx.AsyncBaseTransport:
    """The transport under test: httpx's default (httpcore) or ours."""
    return httpx.AsyncHTTPTransport() if backend == "httpcore" else AiohttpTransport()


@pytest.fixture(params=BACKENDS)
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A shared client over each transport in turn."""
    async with httpx.AsyncClient(transport=make_transport(request.param)) as client:
        yield client


def client_for(
    name: str, http: httpx.AsyncClient, sandbox: SandboxServer | None = None, **kwargs: Any
) -> IntegrationClient:
    """A client with fast retries and a private breaker (failures here trip no other test)."""
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("breaker", CircuitBreaker(name, failure_threshold=1000))
    if sandbox is not None:
        kwargs.setdefault("settings", Settings(sandbox_url=sandbox.url))
    return get_client(name, http=http, **kwargs)


# --- the sandbox's admin API -----------------------------------------------------------------


@pytest.fixture
def admin(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """A plain client for ``/_admin``."""
    with httpx.Client(base_url=f"{sandbox.url}/_admin", timeout=10.0) as client:
        yield client


@pytest.fixture
def faults(admin: httpx.Client) -> Iterator[Callable[..., None]]:
    """``faults(service, **fields)`` sets faults; every service touched is cleared after."""
    touched: set[str] = set()

    def set_faults(service: str, **fields: Any) -> None:
        touched.add(service)
        admin.post(f"/faults/{service}", json=fields).raise_for_status()

    yield set_faults
    for service in touched:
        admin.delete(f"/faults/{service}").raise_for_status()


def requests_seen(admin: httpx.Client, service: str) -> int:
    """Requests ``service`` has received since the last reset (tests compare deltas)."""
    resp = admin.get("/requests", params={"service": service})
    resp.raise_for_status()
    return int(resp.json()["services"].get(service, {}).get("requests", 0))


# --- the sandbox's faults, through IntegrationClient -----------------------------------------


async def test_refused_connection_is_not_sent_and_retried(http: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = client_for(
        GENERIC,
        http,
        base_url=f"http://127.0.0.1:{port}",
        credentials=Credentials(token=SecretStr("x")),
    )
    with pytest.raises(APIConnectionError) as caught:
        await client.request("GET", HEALTH, action="probe")
    assert type(caught.value) is APIConnectionError
    assert caught.value.request_sent is False
    assert client.last_attempts == 3  # never sent: the policy may retry anything


async def test_hang_is_a_timeout(
    http: httpx.AsyncClient, sandbox: SandboxServer, faults: Callable[..., None]
) -> None:
    faults(GENERIC, hang_rate=1.0, hang_seconds=30)
    client = client_for(GENERIC, http, sandbox, timeout=0.3)
    with pytest.raises(APITimeoutError) as caught:
        await client.request("GET", HEALTH, action="probe", max_attempts=1)
    assert caught.value.request_sent is True  # a read timeout: it may have arrived


async def test_reset_mid_response_is_sent_and_a_get_is_retried(
    http: httpx.AsyncClient,
    sandbox: SandboxServer,
    faults: Callable[..., None],
    admin: httpx.Client,
) -> None:
    faults(GENERIC, reset_rate=1.0)
    client = client_for(GENERIC, http, sandbox)
    before = requests_seen(admin, GENERIC)
    with pytest.raises(APIConnectionError) as caught:
        await client.request("GET", HEALTH, action="probe")
    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.request_sent is True
    # Exactly the engine's three attempts: no hidden retry inside the transport.
    assert requests_seen(admin, GENERIC) - before == 3
    assert client.last_attempts == 3


async def test_post_lost_after_commit_is_not_retried(
    http: httpx.AsyncClient,
    sandbox: SandboxServer,
    faults: Callable[..., None],
    admin: httpx.Client,
) -> None:
    faults("webhook", lost_after_commit=1.0, lost_mode="reset")
    client = client_for("webhook", http, sandbox)
    path = f"/transport-test/{uuid.uuid4().hex}"
    before = requests_seen(admin, "webhook")
    with pytest.raises(APIConnectionError) as caught:
        await client.request("POST", path, action="deliver", json={"event": "x"})
    assert caught.value.request_sent is True
    assert client.last_attempts == 1
    assert requests_seen(admin, "webhook") - before == 1
    deliveries = admin.get("/state/webhook").json()["collections"].get("deliveries", {})
    assert [d for d in deliveries.values() if d["path"].endswith(path)] != []  # committed once


async def test_rate_limit_carries_retry_after(
    http: httpx.AsyncClient, sandbox: SandboxServer, faults: Callable[..., None]
) -> None:
    faults(GENERIC, burst_429=1.0, retry_after_seconds=1)
    client = client_for(GENERIC, http, sandbox)
    with pytest.raises(RateLimitError) as caught:
        await client.request("GET", HEALTH, action="probe", max_attempts=1)
    assert caught.value.retry_after == 1.0


async def test_malformed_body(
    http: httpx.AsyncClient, sandbox: SandboxServer, faults: Callable[..., None]
) -> None:
    faults(GENERIC, malformed_rate=1.0)
    client = client_for(GENERIC, http, sandbox)
    with pytest.raises(MalformedResponseError):
        await client.request("GET", HEALTH, action="probe", max_attempts=1)


async def test_server_error(
    http: httpx.AsyncClient, sandbox: SandboxServer, faults: Callable[..., None]
) -> None:
    faults(GENERIC, error_rate=1.0)
    client = client_for(GENERIC, http, sandbox)
    with pytest.raises(ServerError) as caught:
        await client.request("GET", HEALTH, action="probe", max_attempts=1)
    assert caught.value.status_code == 503


async def test_oauth2_flow(
    http: httpx.AsyncClient, sandbox: SandboxServer, admin: httpx.Client
) -> None:
    client = client_for("teams", http, sandbox)
    before = requests_seen(admin, "teams")
    result = await client.health_check()
    assert result.ok, result.error
    assert requests_seen(admin, "teams") - before == 2  # the token, then the check


async def test_sweep_runs_on_either_backend(sandbox: SandboxServer) -> None:
    for backend in BACKENDS:
        settings = Settings(sandbox_url=sandbox.url, http_backend=backend)
        results = await sweep([GENERIC, "teams"], settings=settings, concurrency=4)
        assert [r.ok for r in results] == [True, True], results


def test_sweep_client_picks_the_transport() -> None:
    timeout = httpx.Timeout(5.0)
    # The transport is private to httpx.AsyncClient; this is the one place it matters.
    assert isinstance(sweep_client(8, timeout, backend="aiohttp")._transport, AiohttpTransport)
    assert isinstance(sweep_client(8, timeout, backend="httpcore")._transport, ShardedTransport)
    assert isinstance(sweep_client(8, timeout)._transport, ShardedTransport)


def test_http_backend_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUNCTION_HTTP_BACKEND", "httpcore")
    assert Settings().http_backend == "httpcore"
    with pytest.raises(ValidationError):
        Settings(http_backend="urllib3")


# --- raw servers: the bytes the sandbox cannot send ------------------------------------------


@dataclass
class RawServer:
    """A loopback TCP server that reads each request and runs a script to answer it."""

    url: str
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[RawServer]:
    """Serve ``script`` on a free port; each request (head, body) is read and recorded first."""
    tasks: set[asyncio.Task[None]] = set()
    server_box: list[RawServer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                server_box[0].heads.append(head)
                server_box[0].bodies.append(await _read_body(reader, head))
                await script(reader, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server_box.append(RawServer(url=f"http://127.0.0.1:{port}"))
    try:
        yield server_box[0]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    if fields.get(b"transfer-encoding") == b"chunked":
        body = b""
        while size := int((await reader.readline()).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readline()  # the empty trailer
        return body
    return await reader.readexactly(int(fields.get(b"content-length", b"0")))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def close_without_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def reset_without_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _reset(writer)


def answer(raw: bytes, *, then: str = "keep") -> Script:
    """A script sending ``raw``, then keeping the connection, closing it, or hanging."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if then == "close":
            writer.close()
        elif then == "reset":
            await asyncio.sleep(0.05)
            _reset(writer)
        elif then == "hang":
            await asyncio.sleep(30)

    return script


# (script, the httpx error both transports raise, AiohttpTransport's if it differs)
WIRE_FAULTS: dict[str, tuple[Script, type[Exception], type[Exception] | None]] = {
    "closed before answering": (close_without_answer, httpx.RemoteProtocolError, None),
    "reset before answering": (reset_without_answer, httpx.ReadError, None),
    "garbage status line": (
        answer(b"HELLO WORLD\r\n\r\n", then="close"),
        httpx.RemoteProtocolError,
        None,
    ),
    "invalid header line": (
        answer(b"HTTP/1.1 200 OK\r\nNo Colon Here\r\nContent-Length: 2\r\n\r\nok", then="close"),
        httpx.RemoteProtocolError,
        None,
    ),
    "body shorter than content-length": (
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", then="close"),
        httpx.RemoteProtocolError,
        None,
    ),
    "invalid chunk size": (
        answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nxx\r\n", then="close"),
        httpx.RemoteProtocolError,
        None,
    ),
    # httpcore sees the RST on its read; aiohttp reports the short body. Both: "sent".
    "reset inside the body": (
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", then="reset"),
        httpx.ReadError,
        httpx.RemoteProtocolError,
    ),
    "no answer": (answer(b"", then="hang"), httpx.ReadTimeout, None),
    "body stalls": (
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123", then="hang"),
        httpx.ReadTimeout,
        None,
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", list(WIRE_FAULTS))
async def test_wire_fault_maps_like_httpcore(backend: str, fault: str) -> None:
    script, expected, aiohttp_expected = WIRE_FAULTS[fault]
    if backend == "aiohttp" and aiohttp_expected is not None:
        expected = aiohttp_expected
    async with (
        raw_server(script) as server,
        httpx.AsyncClient(transport=make_transport(backend), timeout=0.3) as http,
    ):
        with pytest.raises(httpx.TransportError) as caught:
            await http.get(f"{server.url}/x")
    assert type(caught.value) is expected
    assert caught.value.request.url == f"{server.url}/x"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("script", [close_without_answer, reset_without_answer])
async def test_dropped_post_is_sent_once_and_a_get_once_per_attempt(
    backend: str, script: Script
) -> None:
    """The ``httpx-aiohttp`` bug: its ConnectTimeout here would retry the POST."""
    async with (
        raw_server(script) as server,
        httpx.AsyncClient(transport=make_transport(backend)) as http,
    ):
        client = client_for(
            GENERIC, http, base_url=server.url, credentials=Credentials(token=SecretStr("x"))
        )
        with pytest.raises(APIConnectionError) as caught:
            await client.request("POST", "/things", action="create", json={"a": 1})
        assert caught.value.request_sent is True
        assert len(server.heads) == 1
        # aiohttp by itself resends an idempotent request once on a dropped connection;
        # switched off, a GET reaches the server once per engine attempt.
        with pytest.raises(APIConnectionError):
            await client.request("GET", "/things", action="list", max_attempts=1)
        assert len(server.heads) == 2


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connect_timeout_is_not_sent(backend: str) -> None:
    # A listener that never accepts, its accept queue filled: the next SYN goes unanswered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                with suppress(BlockingIOError):  # the handshake completes in the kernel
                    filler.connect(("127.0.0.1", port))
            await asyncio.sleep(0.05)
            async with httpx.AsyncClient(transport=make_transport(backend)) as http:
                with pytest.raises(httpx.ConnectTimeout):
                    await http.get(
                        f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(5, connect=0.2)
                    )
                client = client_for(
                    GENERIC,
                    http,
                    base_url=f"http://127.0.0.1:{port}",
                    credentials=Credentials(token=SecretStr("x")),
                    settings=Settings(connect_timeout_seconds=0.2),
                )
                with pytest.raises(APITimeoutError) as caught:
                    await client.request("POST", "/x", action="create", max_attempts=1)
                assert caught.value.request_sent is False
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://127.0.0.1/x", httpx.UnsupportedProtocol),
        ("http://nonexistent.invalid/x", httpx.ConnectError),  # DNS
    ],
)
async def test_bad_urls(backend: str, url: str, expected: type[Exception]) -> None:
    async with httpx.AsyncClient(transport=make_transport(backend), timeout=5) as http:
        with pytest.raises(expected):
            await http.get(url)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_gzip_body_is_decoded_by_httpx(backend: str) -> None:
    body = gzip.compress(b'{"ok": true, "items": [1, 2, 3]}')
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    async with (
        raw_server(answer(raw)) as server,
        httpx.AsyncClient(transport=make_transport(backend)) as http,
    ):
        client = client_for(
            GENERIC, http, base_url=server.url, credentials=Credentials(token=SecretStr("x"))
        )
        assert await client.request("GET", "/items", action="list") == {
            "ok": True,
            "items": [1, 2, 3],
        }
        response = await http.get(f"{server.url}/items")
        assert response.headers["content-encoding"] == "gzip"
        assert response.num_bytes_downloaded == len(body)  # undecoded on the wire
        assert response.json() == {"ok": True, "items": [1, 2, 3]}
    assert b"accept-encoding: gzip" in server.heads[0].lower()


async def test_requests_leave_byte_for_byte_as_over_httpcore() -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield b"part-1/"
        yield b"part-2"

    ok = answer(b"HTTP/1.1 200 OK\r\nSet-Cookie: seen=1\r\nContent-Length: 2\r\n\r\nok")
    sent: dict[str, list[bytes]] = {}
    bodies: dict[str, list[bytes]] = {}
    for backend in BACKENDS:
        async with (
            raw_server(ok) as server,
            httpx.AsyncClient(transport=make_transport(backend)) as http,
        ):
            # A host name, not an IP: aiohttp's own cookie jar would act on it (it must not)
            url = server.url.replace("127.0.0.1", "localhost")
            responses = [
                await http.get(
                    f"{url}/a b?q=%2F&u=é",
                    headers=[("X-Multi", "1"), ("X-Multi", "2"), ("X-Case", "MiXeD")],
                ),
                await http.post(f"{url}/json", json={"a": 1}),
                await http.post(f"{url}/empty"),
                await http.put(f"{url}/stream", content=stream()),
            ]
            assert [r.text for r in responses] == ["ok"] * 4
            assert http.cookies.get("seen") == "1"  # httpx, not aiohttp, keeps cookies
            sent[backend] = [h.replace(url[7:].encode(), b"HOST") for h in server.heads]
            bodies[backend] = server.bodies
    assert sent["aiohttp"] == sent["httpcore"]
    assert bodies["aiohttp"] == bodies["httpcore"] == [b"", b'{"a":1}', b"", b"part-1/part-2"]
    assert b"transfer-encoding: chunked" in sent["aiohttp"][3].lower()


async def test_status_headers_and_version_come_through(sandbox: SandboxServer) -> None:
    async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
        response = await http.get(f"{sandbox.url}/_admin/health")
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        assert response.reason_phrase == "OK"
        assert response.headers["content-type"] == "application/json"
        assert response.json()["ok"] is True
        missing = await http.get(f"{sandbox.url}/_admin/nothing-here")
        assert missing.status_code == 404


async def test_timeouts_come_from_the_request() -> None:
    async with (
        raw_server(answer(b"", then="hang")) as server,
        httpx.AsyncClient(transport=AiohttpTransport(), timeout=30) as http,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{server.url}/x", timeout=httpx.Timeout(30, read=0.2))
        assert loop.time() - started < 10  # the per-request read timeout, not the client's


def test_session_is_bound_to_one_loop() -> None:
    transport = AiohttpTransport()

    async def use() -> None:
        async with raw_server(answer(b"HTTP/1.1 204 No Content\r\n\r\n")) as server:
            client = httpx.AsyncClient(transport=transport)
            assert (await client.get(server.url)).status_code == 204

    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        first.run_until_complete(use())
        with pytest.raises(RuntimeError, match="event loop"):
            second.run_until_complete(use())
        first.run_until_complete(transport.aclose())
        second.run_until_complete(use())  # closed: the next loop gets a new session
        second.run_until_complete(transport.aclose())
    finally:
        first.close()
        second.close()


# --- the mapping table, for errors a local server cannot provoke ------------------------------


def test_mapping_of_every_aiohttp_error() -> None:
    request = httpx.Request("POST", "https://example.test/x")
    key = aiohttp.client_reqrep.ConnectionKey("example.test", 443, True, True, None, None, None)
    refused = ConnectionRefusedError(111, "Connection refused")
    cases: list[tuple[BaseException, type[Exception] | None]] = [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (aiohttp.ClientConnectorError(key, refused), httpx.ConnectError),
        (aiohttp.ClientConnectorDNSError(key, OSError(-2, "no name")), httpx.ConnectError),
        (aiohttp.ClientConnectorSSLError(key, OSError(1, "tls")), httpx.ConnectError),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (aiohttp.ServerTimeoutError("read"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("short"), httpx.RemoteProtocolError),
        (aiohttp.ClientConnectionResetError("closing transport"), httpx.WriteError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (aiohttp.ClientConnectionError("lost"), httpx.ReadError),
        (aiohttp.NonHttpUrlClientError("ftp://x"), httpx.UnsupportedProtocol),
        (aiohttp.InvalidURL("http://"), httpx.InvalidURL),
        (aiohttp.ClientError("other"), httpx.TransportError),
        (ValueError("not aiohttp's"), None),
    ]
    for exc, expected in cases:
        mapped = map_aiohttp_error(exc, request)
        if expected is None:
            assert mapped is None
            continue
        assert type(mapped) is expected, (exc, mapped)
        if isinstance(mapped, httpx.TransportError):
            assert mapped.request is request
    # Only the two "never sent" classes may come from a failure after connecting.
    never_sent = (httpx.ConnectError, httpx.ConnectTimeout)
    for exc, expected in cases:
        if expected is not None and issubclass(expected, never_sent):
            assert isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
