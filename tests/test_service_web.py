"""The dashboard's web layer over the wire: login, sessions, CSRF and the cross-site guard,
security headers, the health grid (escaping) and its live event stream."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.responses import HTMLResponse

from junction.alerting import state as alert_state
from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from junction.service.web import WebSecurity, safe_next
from junction.service.web.feed import HealthFeed, TooManyStreams
from junction.service.web.grid import GridRow
from junction.service.web.sessions import COOKIE_NAME, SessionManager
from junction.service.web.vendor import find_vendor_files, vendor_warning
from junction.settings import Settings
from junction.store import MetricsStore
from tests.alerting_helpers import at, failing
from tests.service_helpers import ApiServer, ServiceServer, service_settings

if TYPE_CHECKING:  # the sandbox takes over a second to import; the fixtures bring it
    from integrations.sandbox.app import SandboxServer

HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)> javascript:alert(3)"


@pytest.fixture(scope="module")
def web(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A service of its own with a token (its alert database is seeded by the tests)."""
    settings = service_settings(tmp_path_factory.mktemp("service-web-home"), sandbox)
    with ServiceServer(settings) as server:
        yield server.info()


def browser(server: ApiServer) -> httpx.Client:
    """A cookie-keeping client, like a browser (no bearer token)."""
    return httpx.Client(base_url=server.url, timeout=30.0)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


@contextmanager
def logged_in(server: ApiServer) -> Iterator[httpx.Client]:
    """A browser that logged in with the token."""
    with browser(server) as client:
        token = csrf_of(client.get("/login").text)
        data = {"token": server.token, "next": "/", "csrf_token": token}
        resp = client.post("/login", data=data)
        assert resp.status_code == 303, resp.text
        yield client


def error_code(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) == {"code", "message", "details"}
    code: str = body["error"]["code"]
    return code


# --- login and sessions --------------------------------------------------------------------------


def test_pages_need_a_login_and_htmx_gets_401(web: ApiServer) -> None:
    with browser(web) as client:
        resp = client.get("/?x=1")
        assert resp.status_code == 303 and resp.headers["location"] == "/login?next=/%3Fx%3D1"
        htmx = client.get("/", headers={"HX-Request": "true"})
        assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/login?next=/"
        events = client.get("/events/health", headers={"Accept": "text/event-stream"})
        assert events.status_code == 401
        # the API's bearer token is not a page session
        assert client.get("/", headers=web.headers).status_code == 303


def test_login_refuses_a_wrong_token_and_issues_a_new_session(web: ApiServer) -> None:
    with browser(web) as client:
        form = client.get("/login?next=/alerts")
        assert form.status_code == 200 and 'name="next" value="/alerts"' in form.text
        planted = client.cookies[COOKIE_NAME]  # what an attacker could have planted
        token = csrf_of(form.text)
        wrong = client.post("/login", data={"token": "nope", "csrf_token": token})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        assert client.get("/").status_code == 303
        no_csrf = client.post("/login", data={"token": web.token})
        assert error_code(no_csrf, 403) == "csrf_failed"
        good = client.post(
            "/login", data={"token": web.token, "next": "/alerts", "csrf_token": token}
        )
        assert good.status_code == 303 and good.headers["location"] == "/alerts"
        fresh = client.cookies[COOKIE_NAME]
        assert fresh.split(".")[0] != planted.split(".")[0]  # no session fixation
        assert client.get("/").status_code == 200
    with httpx.Client(base_url=web.url, cookies={COOKIE_NAME: planted}) as attacker:
        assert attacker.get("/").status_code == 303
    forged = fresh.split(".")[0] + ".AAAA"
    with httpx.Client(base_url=web.url, cookies={COOKIE_NAME: forged}) as attacker:
        assert attacker.get("/").status_code == 303


NOT_LOCAL = [
    "//evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "/\\evil.example",
    "\x00/",
    "evil.example",
    " //evil.example",
]


@pytest.mark.parametrize("target", NOT_LOCAL)
def test_login_next_never_leaves_the_site(web: ApiServer, target: str) -> None:
    with browser(web) as client:
        token = csrf_of(client.get("/login").text)
        resp = client.post("/login", data={"token": web.token, "next": target, "csrf_token": token})
        assert resp.status_code == 303 and resp.headers["location"] == "/"


def test_safe_next_keeps_local_paths_only() -> None:
    assert safe_next("/alerts?service=okta") == "/alerts?service=okta"
    for bad in ("//x", "/\\x", "http://x", "javascript:alert(1)", "", None, "x", "/a\nb"):
        assert safe_next(bad) == "/"


def test_sessions_table_is_bounded_and_logout_ends_a_session() -> None:
    manager = SessionManager(max_sessions=3)
    sessions = [manager.login(manager.anonymous()) for _ in range(5)]
    assert len(manager) == 3
    assert not manager.is_logged_in(sessions[0].id) and manager.is_logged_in(sessions[4].id)
    cookie = manager.cookie_value(sessions[4])
    restored = manager.from_cookie(cookie)
    assert restored is not None and restored.logged_in
    manager.logout(sessions[4])
    after = manager.from_cookie(cookie)
    assert after is not None and not after.logged_in
    assert manager.from_cookie(cookie + "x") is None and manager.from_cookie("a.b.c") is None


# --- CSRF and the cross-site guard ---------------------------------------------------------------


def test_csrf_refused_without_the_token_or_from_another_site(web: ApiServer) -> None:
    with logged_in(web) as client:
        token = csrf_of(client.get("/").text)
        assert error_code(client.post("/logout"), 403) == "csrf_failed"
        bad = client.post("/logout", data={"csrf_token": "x" + token})
        assert error_code(bad, 403) == "csrf_failed"
        evil = client.post(
            "/logout", data={"csrf_token": token}, headers={"Origin": "http://evil.example"}
        )
        assert error_code(evil, 403) == "cross_site_request"
        port_off = web.url.rsplit(":", 1)[0] + ":1"
        other_port = client.post(
            "/logout", data={"csrf_token": token}, headers={"Origin": port_off}
        )
        assert error_code(other_port, 403) == "cross_site_request"
        fetch = client.post(
            "/logout", data={"csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert error_code(fetch, 403) == "cross_site_request"
        assert client.get("/").status_code == 200  # still logged in
        ok = client.post(
            "/logout",
            headers={"X-CSRF-Token": token, "Origin": web.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/login"
        assert client.get("/").status_code == 303


def test_api_writes_from_another_site_are_refused_bearer_clients_unaffected(
    web: ApiServer,
) -> None:
    with web.client() as api:
        evil = api.post("/api/v2/alerts/silences", json={}, headers={"Origin": "https://x.test"})
        assert error_code(evil, 403) == "cross_site_request"
        null = api.post("/api/v2/alerts/silences", json={}, headers={"Origin": "null"})
        assert error_code(null, 403) == "cross_site_request"
        plain = api.post("/api/v2/alerts/silences", json={})  # no Origin: a bearer client
        assert plain.status_code == 422
        assert COOKIE_NAME not in plain.headers.get("set-cookie", "")
        assert api.get("/api/v2/status", headers={"Origin": "https://x.test"}).status_code == 200


def test_without_a_token_or_npm_files_pages_open_csrf_and_host_still_checked(
    sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("service-web-open")
    settings = service_settings(home, sandbox, api_token=None, ui_vendor_dir=home)  # no npm files
    with (
        ServiceServer(settings) as server,
        httpx.Client(base_url=server.url, timeout=30.0) as client,
    ):
        page = client.get("/")
        assert page.status_code == 200 and "Log out" not in page.text
        # without uPlot and htmx the grid is still there, and nothing asks for them
        assert 'id="health-grid"' in page.text and "/static/vendor/" not in page.text
        assert client.get("/static/vendor/htmx.min.js").status_code == 404
        assert client.get("/login").status_code == 303
        assert error_code(client.post("/logout"), 403) == "csrf_failed"
        ok = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert ok.status_code == 303
        rebound = client.get("/", headers={"Host": "evil.example"})
        assert error_code(rebound, 403) == "forbidden_host"
        api = client.get("/api/v2/status", headers={"Host": f"evil.example:{server.url[-5:]}"})
        assert error_code(api, 403) == "forbidden_host"


# --- headers and static files --------------------------------------------------------------------


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[dict[str, str | None]] = []
        self.handlers: list[str] = []
        self.styles: int = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and "src" not in found and found.get("type") != "application/json":
            self.inline.append(found)
        self.handlers += [k for k in found if k.startswith("on")]
        self.styles += tag == "style" or "style" in found


def test_security_headers_and_no_inline_script(web: ApiServer) -> None:
    with browser(web) as client:
        login = client.get("/login")
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # http: a Secure cookie would never come back
    with logged_in(web) as client:
        for path in ("/", "/login"):
            resp = client.get(path, follow_redirects=True)
            csp = resp.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert resp.headers["x-frame-options"] == "DENY"
            assert resp.headers["x-content-type-options"] == "nosniff"
            assert resp.headers["referrer-policy"] == "same-origin"
            assert resp.headers["cache-control"] == "no-store"
            parsed = _Scripts()
            parsed.feed(resp.text)
            assert parsed.inline == [] and parsed.handlers == [] and parsed.styles == 0
        for path in ("/static/app.js", "/static/charts.js", "/static/app.css"):
            assert client.get(path).status_code == 200
        vendor = client.get("/static/vendor/uPlot.iife.min.js")
        assert vendor.status_code == 200 and vendor.headers["content-type"].startswith(
            "text/javascript"
        )
        assert error_code(client.get("/static/vendor/nope.js"), 404) == "not_found"
        api = client.get("/api/v2/status")
        assert api.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in api.headers


def test_vendor_files_found_in_either_layout_and_missing_ones_named(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "htmx.min.js").write_text("/* htmx */")
    settings = Settings(home=tmp_path, ui_vendor_dir=flat)
    assert find_vendor_files(settings) == {"htmx.min.js": flat / "htmx.min.js"}
    warning = vendor_warning(settings)
    assert warning is not None and "\n" not in warning
    assert "uPlot.iife.min.js" in warning and "npm ci" in warning and str(flat) in warning
    nested = tmp_path / "node_modules" / "uplot" / "dist"
    nested.mkdir(parents=True)
    (nested / "uPlot.iife.min.js").write_text("/* uPlot */")
    found = find_vendor_files(Settings(home=tmp_path, ui_vendor_dir=tmp_path / "node_modules"))
    assert set(found) == {"uPlot.iife.min.js"}
    assert vendor_warning(Settings(home=tmp_path)) is None  # the repository's node_modules


def test_session_cookie_is_secure_over_https() -> None:
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await HTMLResponse("<p>ok</p>")(scope, receive, send)

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    guard = WebSecurity(app, SessionManager(), token_configured=True)
    scope = {"type": "http", "method": "GET", "path": "/", "scheme": "https",
             "headers": [(b"host", b"junction.example")], "query_string": b""}  # fmt: skip
    asyncio.run(guard(scope, receive, send))
    cookie = dict(sent[0]["headers"])[b"set-cookie"].decode()
    assert cookie.startswith(f"{COOKIE_NAME}=") and "; Secure" in cookie and "HttpOnly" in cookie


# --- the health grid -----------------------------------------------------------------------------


def test_grid_escapes_hostile_alert_text(web: ApiServer) -> None:
    engine = AlertEngine(alert_state.db_path(web.settings), default_config(web.settings))
    engine.evaluate(failing(["okta"], at(0)), now=at(0))
    engine.close()
    path = alert_state.db_path(web.settings)
    assert isinstance(path, Path)  # the SQLite file (no JUNCTION_STATE_URL here)
    with sqlite3.connect(path) as conn:
        # hostile, and a megabyte long: the grid shows its start (the alerts page all of it)
        huge = HOSTILE + " " + "x" * 1_000_000
        conn.execute("UPDATE alerts SET message = ? WHERE service = 'okta'", (huge,))
    # a service the catalog does not know, named by whoever wrote to the store
    with MetricsStore(web.settings.metrics_dir) as store:
        store.append("calls", [call_row(HOSTILE, ok=True)])
        store.flush()
    with logged_in(web) as client:
        deadline = time.monotonic() + 10
        while True:  # the grid's rows are at most a second old
            html = client.get("/").text
            done = "alerts-count" in html and "&lt;img src=x" in html
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    row = re.search(r'<tr id="svc-okta".*?</tr>', html, re.S)
    assert row, html[:2000]
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in row.group(0)
    assert 'href="/services/okta"' in row.group(0)
    assert len(row.group(0)) < 5_000 and len(html) < 200_000
    hostile = re.search(r'<tr id="svc-&lt;script.*?</tr>', html, re.S)
    assert hostile, "the store-only service is not in the grid"
    # shown as text, never a link (it has no service page: the catalog does not know it)
    assert "href" not in hostile.group(0) and "javascript:alert(3)</span>" in hostile.group(0)


def sse_events(lines: Iterator[str], deadline: float) -> Iterator[dict[str, str]]:
    """Server-sent events parsed from a line iterator (until ``deadline``)."""
    event: dict[str, str] = {}
    for line in lines:
        if time.monotonic() > deadline:
            return
        if line == "":
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def test_event_stream_delivers_a_probe_within_seconds(web: ApiServer) -> None:
    with logged_in(web) as client:
        page = client.get("/").text
        version = re.search(r'data-version="([^"]+)"', page)
        assert version
        with client.stream(
            "GET", f"/events/health?after={version.group(1)}", timeout=httpx.Timeout(20.0)
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            with web.client() as api:  # a probe of jira, recorded in the store
                assert api.post("/api/v2/integrations/jira/check").json()["recorded"]
            deadline = time.monotonic() + 15
            seen = None
            for event in sse_events(stream.iter_lines(), deadline):
                if event.get("event") != "rows":
                    continue
                payload = json.loads(event["data"])
                assert payload["version"] == event["id"]
                if "jira" in payload["rows"]:
                    seen = payload["rows"]["jira"]
                    break
            assert seen is not None, "no rows event for jira"
            assert 'id="svc-jira"' in seen and 'data-status="unknown"' not in seen
        # a reconnect from the latest version gets nothing old again; an unknown one all
        with client.stream(
            "GET", "/events/health", headers={"Last-Event-ID": "0000-1"}, timeout=20.0
        ) as stream:
            first = next(e for e in sse_events(stream.iter_lines(), time.monotonic() + 10)
                         if e.get("event") == "rows")  # fmt: skip
            assert "jira" in json.loads(first["data"])["rows"]


def call_row(service: str, *, ok: bool) -> dict[str, object]:
    """A workflow's live call, as the engine records it."""
    return {
        "ts": datetime.now(UTC), "service": service, "action": "post_message",
        "method": "POST", "path": "/api/chat.postMessage", "status": 200 if ok else 503,
        "ok": ok, "latency_ms": 12.0, "attempts": 1, "breaker_state": "closed",
        "source": "workflow", "error_class": None if ok else "ServerError",
        "error": None if ok else "HTTP 503",
    }  # fmt: skip


def test_event_stream_delivers_a_failing_live_call(web: ApiServer) -> None:
    """A workflow's failing call, written to the store by another writer, reaches the
    stream (the live view follows the store; no probe involved)."""
    failing_call = call_row("slack", ok=False)
    with logged_in(web) as client:
        version = re.search(r'data-version="([^"]+)"', client.get("/").text)
        assert version
        with client.stream(
            "GET", f"/events/health?after={version.group(1)}", timeout=httpx.Timeout(20.0)
        ) as stream:
            with MetricsStore(web.settings.metrics_dir) as store:
                store.append("calls", [failing_call])
                store.flush()
            seen = None
            for event in sse_events(stream.iter_lines(), time.monotonic() + 15):
                rows = json.loads(event["data"])["rows"] if event.get("event") == "rows" else {}
                if "slack" in rows and "0.0%" in rows["slack"]:
                    seen = rows["slack"]
                    break
            assert seen is not None, "no rows event for slack's failing call"


# --- the feed on its own -------------------------------------------------------------------------


def row(service: str, status: str = "healthy", score: float = 100.0) -> GridRow:
    return GridRow(service, status, score, 10.0, 1.0, 1.0, False)


def test_feed_sends_only_changed_rows_and_everything_to_strangers() -> None:
    current = [row("a"), row("b")]

    async def rows() -> list[GridRow]:
        return list(current)

    async def scenario() -> None:
        feed = HealthFeed(rows, lambda r: f"<tr>{r.service}:{r.status}</tr>", lambda c: str(c))
        first = await feed.refresh()
        assert set(first.html) == {"a", "b"}
        assert feed.payload(first.version) is None
        current[1] = row("b", "critical", 10.0)
        second = await feed.refresh()
        delta = json.loads(feed.payload(first.version) or "")
        assert delta["rows"] == {"b": "<tr>b:critical</tr>"} and delta["version"] == second.version
        assert set(json.loads(feed.payload(None) or "")["rows"]) == {"a", "b"}
        assert set(json.loads(feed.payload("other-1") or "")["rows"]) == {"a", "b"}
        ahead = f"{feed.epoch}-99"
        assert set(json.loads(feed.payload(ahead) or "")["rows"]) == {"a", "b"}
        unchanged = await feed.refresh()
        assert unchanged.version == second.version
        current[0] = row("a", "healthy", 97.0)  # a number drifting: it may wait
        assert (await feed.refresh()).version == second.version
        current[0] = row("a", "warning", 70.0)  # a new status: at once
        third = await feed.refresh()
        assert json.loads(feed.payload(second.version) or "")["rows"] == {"a": "<tr>a:warning</tr>"}
        assert third.version != second.version
        # A new probe moving only numbers: at once too (the issue's "within 2 s of a probe").
        probed = dataclasses.replace(row("a", "warning", 71.0), seen=("probe at t+1",))
        current[0] = probed
        fourth = await feed.refresh()
        assert fourth.version != third.version
        assert set(json.loads(feed.payload(third.version) or "")["rows"]) == {"a"}
        feed.max_streams = 1
        async with feed.stream():
            with pytest.raises(TooManyStreams):
                async with feed.stream():
                    pass
        await feed.aclose()

    asyncio.run(scenario())
