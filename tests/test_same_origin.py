"""Credentials never leave the configured base URL (issue 9 #1, #11).

Two real local servers: a *vendor* that answers as the test scripts it (pagination links
to elsewhere, redirects), and a *foreign* host that records every request it receives.
Whatever the vendor says, the foreign host must receive nothing at all, and a request that
would climb out of the base path is refused before it is sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from integrations.auth import Credentials
from integrations.base import IntegrationClient
from integrations.catalog import load_catalog
from integrations.config import IntegrationConfig
from integrations.errors import (
    CrossOriginError,
    MalformedResponseError,
    NotFoundError,
    UnsafeRequestError,
)
from integrations.metrics import collecting
from integrations.okta import ListGroupsParams, OktaClient
from integrations.urls import BaseURL, UnsafeURLError, expand, relative_path
from integrations.webex import CreateMessageParams, WebexClient
from integrations.webhook import SendWebhookParams, WebhookClient
from tests.helpers import bad_credentials, new_client

TOKEN = "00okta-SECRET-token-value"


@dataclass
class Seen:
    """One request a server received."""

    method: str
    path: str  # the raw request target, as sent
    headers: dict[str, str]


Answer = Callable[[Seen], tuple[int, dict[str, str], Any]]


@dataclass
class Server:
    """A local HTTP server that records every request and answers with ``answer``."""

    answer: Answer = lambda seen: (200, {}, [])
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen = Seen(self.command, self.path, dict(self.headers.items()))
                outer.seen.append(seen)
                status, headers, body = outer.answer(seen)
                raw = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits up to one interval.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def foreign() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


@pytest.fixture
def vendor() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


GROUP = {"id": "00g1", "type": "OKTA_GROUP", "profile": {"name": "Engineering"}}


def okta(vendor: Server, **kwargs: Any) -> OktaClient:
    kwargs.setdefault("base_url", vendor.url)
    return new_client(OktaClient, credentials=Credentials(token=SecretStr(TOKEN)), **kwargs)


def link_to(url: str) -> Answer:
    def answer(seen: Seen) -> tuple[int, dict[str, str], Any]:
        return 200, {"Link": f'<{url}>; rel="next"'}, [GROUP]

    return answer


@pytest.mark.parametrize(
    "where",
    [
        "{foreign}/api/v1/groups?after=00g1",  # another port on the same host
        "http://localhost:{foreign_port}/api/v1/groups?after=00g1",  # another host name
        "https://127.0.0.1:{vendor_port}/api/v1/groups?after=00g1",  # another scheme
        "//127.0.0.1:{foreign_port}/api/v1/groups",  # scheme-relative
    ],
)
async def test_pagination_link_to_another_origin_is_refused(
    vendor: Server, foreign: Server, where: str
) -> None:
    target = where.format(foreign=foreign.url, foreign_port=foreign.port, vendor_port=vendor.port)
    vendor.answer = link_to(target)
    with collecting() as metrics:
        async with (client := okta(vendor)):
            with pytest.raises(CrossOriginError) as err:
                await client.list_groups(ListGroupsParams(limit=1, max_pages=5))
    message = str(err.value)
    assert message.startswith("okta.list_groups: refused a request to ")
    assert f"the configured base URL's origin, {vendor.url}" in message
    assert "\n" not in message and TOKEN not in message
    assert foreign.seen == []  # nothing at all, credentials or not
    assert len(vendor.seen) == 1 and vendor.seen[0].headers["Authorization"] == f"SSWS {TOKEN}"
    assert [m.error_class for m in metrics] == [None, "CrossOriginError"]


async def test_relative_and_same_origin_links_are_followed(vendor: Server) -> None:
    pages = iter(
        [
            (200, {"Link": '</api/v1/groups?after=1>; rel="next"'}, [GROUP]),
            (200, {"Link": f'<{vendor.url}/api/v1/groups?after=2>; rel="next"'}, [GROUP]),
            (200, {}, [GROUP]),
        ]
    )
    vendor.answer = lambda seen: next(pages)
    async with (client := okta(vendor)):
        groups = await client.list_groups(ListGroupsParams(limit=1, max_pages=5))
    assert groups.pages == 3 and not groups.truncated
    assert [s.path for s in vendor.seen] == [
        "/api/v1/groups?limit=1",
        "/api/v1/groups?after=1",
        "/api/v1/groups?after=2",
    ]
    assert all(s.headers["Authorization"] == f"SSWS {TOKEN}" for s in vendor.seen)


async def test_link_outside_the_base_path_is_refused(vendor: Server) -> None:
    """Same origin, another tenant's path: a shared host is not a trusted one."""
    vendor.answer = link_to(f"{vendor.url}/tenant-b/api/v1/groups")
    async with (client := okta(vendor, base_url=f"{vendor.url}/tenant-a")):
        with pytest.raises(UnsafeRequestError, match="outside the base URL's path /tenant-a/"):
            await client.list_groups(ListGroupsParams(limit=1, max_pages=5))
    assert [s.path for s in vendor.seen] == ["/tenant-a/api/v1/groups?limit=1"]


@pytest.mark.parametrize("shared", [False, True])
async def test_redirects_are_never_followed(vendor: Server, foreign: Server, shared: bool) -> None:
    """Not even through a caller's client that follows redirects."""
    vendor.answer = lambda seen: (302, {"Location": f"{foreign.url}/steal"}, None)
    http = httpx.AsyncClient(follow_redirects=True) if shared else None
    async with (client := okta(vendor, http=http)):
        with pytest.raises(MalformedResponseError):  # a 302 is no list of groups
            await client.list_groups(ListGroupsParams(limit=1, max_pages=1))
    if http is not None:
        await http.aclose()
    assert foreign.seen == [] and len(vendor.seen) == 1


@pytest.mark.parametrize("service", ["okta", "jira", "teams", "pagerduty", "slack"])
async def test_absolute_url_to_another_origin_is_refused_for_every_scheme(
    vendor: Server, foreign: Server, service: str
) -> None:
    """``request()`` and ``url()`` with an absolute URL: refused before the auth flow runs
    (an OAuth2 client does not even fetch a token)."""
    client = new_client(
        service,
        base_url=vendor.url,
        credentials=bad_credentials(service, "s3cret-value"),
        config=IntegrationConfig(token_url=f"{vendor.url}/oauth2/token"),
    )
    async with client:
        with pytest.raises(CrossOriginError, match=r"refused a request to http://127\.0\.0\.1"):
            await client.request("GET", f"{foreign.url}/x", action="probe")
        with pytest.raises(CrossOriginError):
            client.url(f"{foreign.url}/x")
    assert foreign.seen == [] and vendor.seen == []


def test_path_parameters_are_one_segment_and_dot_segments_are_refused() -> None:
    assert expand("/users/{u}", {"u": "a b?c#d@e/f"}) == "/users/a%20b%3Fc%23d%40e%2Ff"
    assert expand("/p/{p}", {"p": "grp/a..b/.c"}) == "/p/grp%2Fa..b%2F.c"
    for bad in ("..", ".", "", "../../people/me", "a/../b", "%2e%2e"):
        with pytest.raises(UnsafeURLError):
            expand("/rooms/{r}", {"r": bad})
    base = BaseURL.parse("http://h:1/okta")
    for escape in ("/a/../../x", "/%2e%2e/x", "/a/%2E/b", "http://h:1/okta/../x"):
        with pytest.raises(UnsafeURLError):
            base.resolve(escape)
    assert str(base.resolve("/a/b?x=1")) == "http://h:1/okta/a/b?x=1"
    assert str(base.resolve("http://h:1/okta/a")) == "http://h:1/okta/a"
    with pytest.raises(UnsafeURLError):
        base.resolve("http://h:1/oktafake/a")  # a prefix of the text is not the base path


async def test_webex_room_id_cannot_reach_another_route(vendor: Server) -> None:
    """A room id is one encoded segment under /rooms; ``../../people/me`` is refused (a
    server decoding ``%2F`` would route it elsewhere): only ``/people/me`` of the bot's own
    lookup is sent."""

    def answer(seen: Seen) -> tuple[int, dict[str, str], Any]:
        if seen.path == "/v1/people/me":
            return 200, {}, {"id": "bot-1", "type": "bot", "emails": ["bot@x"]}
        if seen.path.startswith("/v1/rooms/"):
            return 404, {}, {"message": "room not found"}
        return 200, {}, {"items": []}

    vendor.answer = answer
    client = new_client(
        WebexClient, base_url=f"{vendor.url}/v1", credentials=Credentials(token=SecretStr("t0k"))
    )
    async with client:
        for escape in ("../../people/me", ".."):
            with pytest.raises(UnsafeRequestError, match="not a valid path parameter"):
                await client.create_message(CreateMessageParams(room_id=escape, text="hello"))
        with pytest.raises(NotFoundError, match="room not found"):
            await client.create_message(CreateMessageParams(room_id="a/b?c#d", text="hello"))
    assert [s.path for s in vendor.seen] == ["/v1/people/me", "/v1/rooms/a%2Fb%3Fc%23d"]


@pytest.mark.parametrize(
    "path", ["/../../tenant-b/x", "/hooks/%2e%2e/%2E%2E/tenant-b", "/./x", "//evil.test/x"]
)
def test_webhook_path_cannot_climb_out_of_the_base_path(path: str) -> None:
    with pytest.raises(ValidationError, match="path"):
        SendWebhookParams(payload={"a": 1}, path=path)
    with pytest.raises(UnsafeURLError):
        relative_path(path)


async def test_webhook_stays_under_its_tenant(vendor: Server) -> None:
    client = new_client(WebhookClient, base_url=f"{vendor.url}/tenant-a")
    async with client:
        await client.send(SendWebhookParams(payload={"a": 1}, path="/hooks/x"))
        with pytest.raises(UnsafeRequestError):
            await client.request("POST", "/hooks/../../tenant-b/x", action="send", json={})
    assert [s.path for s in vendor.seen] == ["/tenant-a/hooks/x"]


def test_generic_client_default_is_the_sandbox_and_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client built without configuration talks to the sandbox's default address."""
    monkeypatch.setenv("JUNCTION_SANDBOX_URL", "http://elsewhere.test:1")
    monkeypatch.setenv("JUNCTION_OKTA_BASE_URL", "https://acme.okta.com")
    okta = OktaClient()
    assert okta.base_url == "http://127.0.0.1:8765/okta" and okta.sandbox
    assert okta.credentials.source == "sandbox"
    generic = IntegrationClient(load_catalog().get("asana"))
    assert generic.base_url == "http://127.0.0.1:8765/asana/api/1.0"
