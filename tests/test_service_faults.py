"""Bad input and faults against the live service: clear errors in one JSON shape, no
traceback, and the server keeps serving.

Bad tokens, malformed and hostile JSON, the wrong content type, oversized bodies (declared,
chunked, exactly at the limit), unknown services, a store compacted while it is queried,
the monitor failing inside the service, clients that disconnect or send slowly.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

from junction.store import MetricsStore
from tests.service_helpers import ApiServer, ServiceServer, service_settings

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

MONITORING = "/api/v2/workflows/enhanced/monitoring"
VALIDATE = "/api/v2/workflows/validate"
ALERTS = "/api/v2/alerts"


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The ``error`` object of a response in the one error shape, checked."""
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and "\n" not in body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def serves(server: ApiServer) -> None:
    """The server still answers a read and an authenticated read."""
    with server.client() as client:
        assert client.get("/api/v2/status").status_code == 200
        assert client.get(ALERTS).status_code == 200


@pytest.fixture
def api(api_server: ApiServer) -> Iterator[httpx.Client]:
    with api_server.client() as client:
        yield client


# --- raw HTTP ---------------------------------------------------------------------------------


def _connect(server: ApiServer, timeout: float = 10.0) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def _head(server: ApiServer, method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {server.url.removeprefix('http://')}"]
    lines += [f"{k}: {v}" for k, v in {**server.headers, **headers}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response on ``sock`` (sent with ``Connection: close``)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer  wrong",
        "Bearer wrong",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer " + "x" * 20_000,
        "Bearer tok\u00e9n\u20ac".encode(),  # UTF-8 bytes on the wire
        "Bearer t\u00f6k".encode("latin-1"),
        b"Bearer \xff\xfe",
    ],
    ids=lambda a: "missing" if a is None else repr(a)[:24],
)
def test_a_bad_token_is_401_in_the_one_shape(
    api_server: ApiServer, authorization: str | bytes | None
) -> None:
    headers: dict[str, Any] = {} if authorization is None else {"Authorization": authorization}
    with api_server.client(auth=False) as anonymous:
        for method, path in (("GET", ALERTS), ("POST", f"{MONITORING}/start")):
            resp = anonymous.request(method, path, headers=headers)
            error_of(resp, 401, "unauthorized")
            assert resp.headers["www-authenticate"] == "Bearer"
            assert api_server.token not in resp.text
    serves(api_server)


def test_the_token_is_compared_whole_and_the_scheme_case_blind(api_server: ApiServer) -> None:
    with api_server.client(auth=False) as anonymous:
        token = api_server.token
        for wrong in (token[:-1], token + "x", token.upper(), f" {token}x"):
            resp = anonymous.get(ALERTS, headers={"Authorization": f"Bearer {wrong}"})
            error_of(resp, 401, "unauthorized")
        assert anonymous.get(ALERTS, headers={"Authorization": f"bearer {token}"}).is_success


# --- malformed bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"spec": "employee_onboarding"', 400, "malformed_json"),
        (b"{'spec': 'employee_onboarding'}", 400, "malformed_json"),
        (b'{"spec": "\xff\xfe"}', 400, "malformed_json"),  # not UTF-8
        (b"[" * 200_000 + b"]" * 200_000, 400, "malformed_json"),  # nested too deeply
        (b'{"spec": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001, 400, "malformed_json"),
        (b"[1, 2]", 422, "invalid_request"),
        (b'"employee_onboarding"', 422, "invalid_request"),
        (b"null", 422, "invalid_request"),
        (b'{"spec": NaN}', 422, "invalid_request"),
        (b'{"spec": 1e999}', 422, "invalid_request"),
        (b'{"spec": "employee_onboarding", "text": "x", "spec": 3}', 422, "invalid_request"),
    ],
    ids=lambda v: repr(v)[:20] if isinstance(v, bytes) else str(v),
)
def test_a_malformed_body_is_named(api: httpx.Client, body: bytes, status: int, code: str) -> None:
    resp = api.post(VALIDATE, content=body, headers={"content-type": "application/json"})
    error = error_of(resp, status, code)
    fields = error["details"] if isinstance(error["details"], list) else [error["details"]]
    assert all(str(f["field"]).startswith("body") for f in fields), error
    assert len(resp.content) < 5_000  # the input is never echoed back


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "", "multipart/mixed"],
)
def test_a_body_that_is_not_json_is_415(api: httpx.Client, content_type: str) -> None:
    resp = api.post(
        VALIDATE, content=b'{"spec": "employee_onboarding"}', headers={"content-type": content_type}
    )
    error = error_of(resp, 415, "unsupported_media_type")
    assert error["details"] == {"field": "body", "expected": "application/json"}
    # The same body declared JSON (a +json type too) is accepted.
    for good in ("application/json", "application/json; charset=utf-8", "application/vnd.x+json"):
        ok = api.post(
            VALIDATE, content=b'{"spec": "employee_onboarding"}', headers={"content-type": good}
        )
        assert ok.status_code == 200, (good, ok.text)


# --- oversized bodies -------------------------------------------------------------------------


def test_bodies_over_the_limit_are_413_however_they_arrive(api_server: ApiServer) -> None:
    limit = api_server.settings.api_max_body_bytes
    exact = b'{"spec": "employee_onboarding"}'
    exact += b" " * (limit - len(exact))  # JSON allows the padding
    with api_server.client() as api:
        json_type = {"content-type": "application/json"}
        assert api.post(VALIDATE, content=exact, headers=json_type).status_code == 200
        over = exact + b" "
        error = error_of(
            api.post(VALIDATE, content=over, headers=json_type), 413, "payload_too_large"
        )
        assert error["details"] == {"limit_bytes": limit}

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            for i in range(0, len(over), 65536):
                yield over[i : i + 65536]

        error_of(api.post(VALIDATE, content=chunks(), headers=json_type), 413, "payload_too_large")
    # A declared length over the limit is refused before the body is read.
    with _connect(api_server) as sock:
        sock.sendall(
            _head(
                api_server,
                "POST",
                VALIDATE,
                {
                    "Content-Length": str(50 * limit),
                    "Content-Type": "application/json",
                    "Connection": "close",
                },
            )
        )
        sock.sendall(b"{" * 1000)
        status, body = _read_response(sock)
    assert status == 413 and b"payload_too_large" in body
    serves(api_server)


# --- unknown services -------------------------------------------------------------------------


def test_unknown_services_are_404_with_the_closest_name(api: httpx.Client) -> None:
    for path in (f"{MONITORING}/health", f"{MONITORING}/metrics"):
        error = error_of(api.get(path, params={"service": "oktaa"}), 404, "unknown_service")
        assert "did you mean 'okta'" in error["message"]
        # Several, one unknown: the unknown one is named.
        resp = api.get(path, params=[("service", "okta"), ("service", "jiraa")])
        assert "'jiraa'" in error_of(resp, 404, "unknown_service")["message"]
    error = error_of(api.post("/api/v2/integrations/oktaa/check"), 404, "unknown_integration")
    assert error["details"]["field"] == "path.name"
    error = error_of(api.get("/api/v2/services/oktaa"), 404, "unknown_service")
    assert "did you mean 'okta'" in error["message"]
    for hostile in ("../../etc/passwd", "<script>alert(1)</script>", "ok\u0000ta", "\u202eokta"):
        resp = api.get(f"{MONITORING}/health", params={"service": hostile})
        assert resp.status_code in (404, 422), resp.text
        error_of(resp, resp.status_code, resp.json()["error"]["code"])
    # A long name is refused in one line, not echoed at length.
    resp = api.get(f"{MONITORING}/health", params={"service": "x" * 20_000})
    assert resp.status_code in (404, 422)
    error_of(resp, resp.status_code, resp.json()["error"]["code"])


# --- a store compacted while it is queried ----------------------------------------------------


def _calls(n: int, service: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "ts": now,
            "service": service,
            "action": "users.get",
            "method": "GET",
            "path": "/users/1",
            "status": 200,
            "ok": True,
            "latency_ms": 10.0 + i,
            "attempts": 1,
            "breaker_state": "closed",
            "source": "workflow",
        }
        for i in range(n)
    ]


def test_a_store_compacted_while_queried_answers_every_read_and_loses_no_row(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = service_settings(tmp_path, sandbox, integrations="okta")
    service, batch, batches = "okta", 20, 20
    writer = MetricsStore(settings.metrics_dir)
    for _ in range(batches):  # many small segments: the compactor's work
        writer.append("calls", _calls(batch, service))
        writer.flush()
    written = [batches * batch]
    done = threading.Event()
    failures: list[BaseException] = []

    def write_more() -> None:
        try:
            for _ in range(batches):
                writer.append("calls", _calls(batch, service))
                writer.flush()
                written[0] += batch
                time.sleep(0.02)
        except BaseException as exc:  # surfaced below
            failures.append(exc)
        finally:
            done.set()

    merged: list[int] = []
    stop = threading.Event()  # the compactor runs until the reads are done

    def compact() -> None:
        compactor = MetricsStore(settings.metrics_dir)
        try:
            while not stop.is_set():
                merged.append(compactor.compact("calls", min_files=2)["calls"])
        except BaseException as exc:
            failures.append(exc)
        finally:
            compactor.close()

    with ServiceServer(settings) as server, server.info().client() as api:
        threads = [threading.Thread(target=f) for f in (write_more, compact)]
        for t in threads:
            t.start()
        seen: list[int] = []
        statuses: set[int] = set()
        try:
            while not done.is_set() or len(seen) < 5:
                metrics = api.get(f"{MONITORING}/metrics", params={"service": service})
                health = api.get(f"{MONITORING}/health", params={"service": service})
                # Another window than the live view's: DuckDB over the segments.
                hour = api.get(f"{MONITORING}/health", params={"window": 3600})
                scrape = api.get("/metrics")
                statuses |= {r.status_code for r in (metrics, health, hour, scrape)}
                if metrics.status_code == 200:
                    rows = [r for r in metrics.json()["services"] if r["source"] == "calls"]
                    seen.append(rows[0]["requests"] if rows else 0)
        finally:
            stop.set()
        for t in threads:
            t.join(60)
        assert not failures, failures
        assert sum(merged) >= batches and len(seen) >= 5, (merged, seen)  # it did overlap
        assert statuses == {200}, statuses
        # Rows only ever appear: a count never goes down while segments are merged away.
        assert seen == sorted(seen), seen
        final = api.get(f"{MONITORING}/metrics", params={"service": service}).json()
        calls = next(r for r in final["services"] if r["source"] == "calls")
        assert calls["requests"] == written[0] == 2 * batches * batch
    writer.close()
    with MetricsStore(settings.metrics_dir) as store:
        assert store.count("calls") == written[0]
        assert len(list((settings.metrics_dir / "calls").rglob("*.parquet"))) < batches


# --- the monitor failing inside the service ---------------------------------------------------


def test_the_monitor_failing_inside_serve_is_reported_and_restarted(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = service_settings(tmp_path, sandbox, integrations="okta")
    with ServiceServer(settings) as server, server.info().client() as api:
        start = api.post(f"{MONITORING}/start", json={"interval_seconds": 1})
        assert start.status_code == 200 and start.json()["running"], start.text
        deadline = time.monotonic() + 20
        while api.post(f"{MONITORING}/start").json()["sweeps"] < 1:
            assert time.monotonic() < deadline, "the monitor never swept"
            time.sleep(0.1)
        # Damage the alert database under the running monitor: every alert evaluation now
        # fails until it is opened again (opening re-creates missing tables).
        with sqlite3.connect(tmp_path / "alerts.db") as db:
            db.execute("DROP TABLE alerts")
        states: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while True:
            status = api.get("/api/v2/status")
            health = api.get(f"{MONITORING}/health")
            assert status.status_code == 200 and health.status_code == 200, health.text
            states.append(api.post(f"{MONITORING}/start").json())
            if states[-1]["restarts"] >= 1 and states[-1]["running"]:
                break
            assert time.monotonic() < deadline, states[-3:]
            time.sleep(0.2)
        report = states[-1]
        assert "no such table: alerts" in (report["last_error"] or "")
        assert api.get("/api/v2/status").json()["monitor_restarts"] >= 1
        sweeps = report["sweeps"]
        deadline = time.monotonic() + 20
        while api.post(f"{MONITORING}/start").json()["sweeps"] <= sweeps:  # it sweeps again
            assert time.monotonic() < deadline, "the restarted monitor does not sweep"
            time.sleep(0.1)
        assert api.get(f"{MONITORING}/health").json()["source"] == "monitor"


# --- clients that go away or crawl ------------------------------------------------------------


def test_a_client_disconnecting_mid_request_leaves_the_server_serving(
    api_server: ApiServer,
) -> None:
    for _ in range(20):
        with _connect(api_server) as sock:  # half a body, then gone
            sock.sendall(
                _head(
                    api_server,
                    "POST",
                    VALIDATE,
                    {"Content-Length": "5000", "Content-Type": "application/json"},
                )
            )
            sock.sendall(b'{"spec": "employee_onb')
        with _connect(api_server) as sock:  # a whole request, gone before the answer
            sock.sendall(_head(api_server, "GET", "/metrics", {}))
        with _connect(api_server) as sock:  # half the headers
            sock.sendall(b"GET /api/v2/status HTTP/1.1\r\nHost: x\r\nAuthor")
    serves(api_server)


def test_slow_clients_do_not_hold_up_the_others(api_server: ApiServer) -> None:
    body = b'{"spec": "employee_onboarding"}'
    slow = [_connect(api_server) for _ in range(20)]
    try:
        heads = [
            _head(
                api_server,
                "POST",
                VALIDATE,
                {
                    "Content-Length": str(len(body)),
                    "Content-Type": "application/json",
                    "Connection": "close",
                },
            )
            for _ in slow
        ]
        for sock, head in zip(slow, heads, strict=True):
            sock.sendall(head[: len(head) // 2])  # half the headers now
        with api_server.client() as api:
            # The slow ones trickle the rest, a few bytes at a time, over ~2 s; others are
            # answered meanwhile.
            rest = [head[len(head) // 2 :] + body for head in heads]
            step = max(len(r) for r in rest) // 20 + 1
            for i in range(0, max(len(r) for r in rest), step):
                for sock, r in zip(slow, rest, strict=True):
                    sock.sendall(r[i : i + step])
                assert api.get("/api/v2/status").status_code == 200
                assert api.get(ALERTS).status_code == 200
                time.sleep(0.1)
        for sock in slow:  # each slow request was whole in the end, and answered
            status, answer = _read_response(sock)
            assert status == 200 and b'"ok":true' in answer
    finally:
        for sock in slow:
            sock.close()
    serves(api_server)


# --- the dashboard's pages under hostile query strings ----------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "\u202eokta\u0000",
    "../../etc/passwd",
    "-1",
    "1e309",
    "x" * 3000,
]


def _page_routes() -> list[tuple[str, list[str], list[str]]]:
    """(path, path parameters, query parameters) of every GET page (not the event stream)."""
    # Function-level: the page routers (FastAPI, Jinja) only for this test.
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute

    from junction.service.pages import PAGE_ROUTERS

    def queries(dep: Dependant) -> list[str]:
        names = [q.alias or q.name for q in dep.query_params]
        for sub in dep.dependencies:
            names += queries(sub)
        return names

    return [
        (
            r.path,
            [p.name for p in r.dependant.path_params],
            queries(r.dependant) + READ_FROM_THE_URL.get(r.path, []),
        )
        for router in PAGE_ROUTERS
        for r in router.routes
        if isinstance(r, APIRoute) and "GET" in (r.methods or ()) and r.path != "/events/health"
    ]


READ_FROM_THE_URL = {
    "/logs": ["q", "service", "since", "until", "status", "kind", "limit", "cursor"]
}
"""Query parameters a page reads from the request itself (not declared)."""


def test_pages_answer_hostile_query_strings_without_500_or_unescaped_markup(
    api_server: ApiServer,
) -> None:
    routes = _page_routes()
    assert any(path == "/" for path, _, _ in routes)
    with httpx.Client(base_url=api_server.url, timeout=60) as browser:
        login = browser.get("/login").text
        csrf = login.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        data = {"token": api_server.token, "next": "/", "csrf_token": csrf}
        assert browser.post("/login", data=data).status_code == 303
        for path, path_params, query in routes:
            for value in HOSTILE:
                url = path
                for name in path_params:
                    url = url.replace(f"{{{name}}}", quote(value, safe=""))
                resp = browser.get(url, params=dict.fromkeys(query, value))
                where = f"{path} with {value[:40]!r}"
                assert resp.status_code < 500, (where, resp.text[:300])
                assert "Traceback" not in resp.text, where
                if resp.headers.get("content-type", "").startswith("text/html"):
                    assert "<script>alert(1)" not in resp.text, where
                    assert "<img src=x" not in resp.text, where
    serves(api_server)
