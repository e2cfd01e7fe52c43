"""The sandbox's admin API under attack (cross-origin pages, DNS rebinding, a token), its
seeded records (``/_admin/records``, ``junction sandbox records``) and the per-service
data file (``services.yaml``)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from deployments.local import free_port
from integrations.catalog import load_catalog
from integrations.sandbox.admin import ADMIN_TOKEN_ENV, AdminGuard, exposure_warning
from integrations.sandbox.app import SandboxServer
from integrations.sandbox.process import start_sandbox_process
from integrations.sandbox.records import seeded_records
from integrations.sandbox.routing import discover_vendor_routes
from integrations.sandbox.services import SERVICES_FILE, SandboxServices, vendor_error_body
from integrations.urls import is_loopback
from integrations.yamlconfig import ConfigError, load_model
from junction.cli import app as cli_app
from junction.settings import get_settings

OKTA_ME = ("/okta/api/v1/users/me", {"Authorization": "SSWS sandbox-token"})
WORKER_0 = hashlib.md5(b"worker-0", usedforsecurity=False).hexdigest()


def http(sb: SandboxServer) -> httpx.Client:
    return httpx.Client(base_url=sb.url, timeout=10)


# --- cross-origin pages -------------------------------------------------------------------


def test_cross_origin_text_plain_post_cannot_take_a_service_down(sb: SandboxServer) -> None:
    """What a web page can send without a CORS preflight (``fetch(url, {method: "POST",
    mode: "no-cors", body})``): text/plain, with the page's Origin. Before the guard it took
    Okta down."""
    with http(sb) as c:
        r = c.post(
            "/_admin/outage/okta",
            content=b'{"seconds": 3600}',
            headers={"content-type": "text/plain", "origin": "http://evil.example"},
        )
        me = c.get(OKTA_ME[0], headers=OKTA_ME[1])
    assert r.status_code == 403 and "Origin" in r.json()["error"]
    assert sb.faults.outage_mode("okta") is None
    assert me.status_code == 200


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_admin_writes_need_a_json_body(sb: SandboxServer, ctype: str) -> None:
    """The bodies an HTML form or a "simple" request can carry are refused, Origin or not."""
    with http(sb) as c:
        r = c.post(
            "/_admin/faults/okta", content=b'{"error_rate": 1}', headers={"content-type": ctype}
        )
        unlabelled = c.post("/_admin/faults/okta", content=b'{"error_rate": 1}')
    assert r.status_code == 415
    assert unlabelled.status_code == 415
    assert sb.faults.entry("okta") is None


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},  # a sandboxed iframe or a file:// page
        {"origin": "http://127.0.0.1:1"},  # another local port is another origin
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ],
)
def test_foreign_pages_are_refused_on_every_admin_route(
    sb: SandboxServer, headers: dict[str, str]
) -> None:
    with http(sb) as c:
        reads = [c.get(p, headers=headers) for p in ("/_admin/state/okta", "/_admin/requests")]
        reset = c.post("/_admin/reset", headers=headers)
        delete = c.delete("/_admin/faults/*", headers=headers)
        json_post = c.post("/_admin/faults/okta", json={"error_rate": 1}, headers=headers)
    assert [r.status_code for r in (*reads, reset, delete, json_post)] == [403] * 5
    assert sb.faults.entry("okta") is None


def test_the_sandboxs_own_origin_and_plain_clients_pass(sb: SandboxServer) -> None:
    with http(sb) as c:
        own = c.post(
            "/_admin/faults/okta",
            json={"error_rate": 0.5},
            headers={"origin": sb.url, "sec-fetch-site": "same-origin"},
        )
        bare_reset = c.post("/_admin/reset")  # no body, no content type: curl -X POST
        yaml_profile = c.post(
            "/_admin/profile",
            content=b"services: {}\n",
            headers={"content-type": "application/yaml"},
        )
    assert own.status_code == 200
    assert bare_reset.status_code == 200
    assert yaml_profile.status_code == 200


def test_vendor_routes_are_not_guarded(sb: SandboxServer) -> None:
    """Vendors answer browsers as vendors do: the guard is on /_admin only."""
    with http(sb) as c:
        r = c.get(OKTA_ME[0], headers={**OKTA_ME[1], "origin": "http://evil.example"})
        synthetic = c.get("/_synthetic/0/health", headers={"host": "evil.example"})
    assert r.status_code == 200
    assert synthetic.status_code == 404  # no synthetic endpoints configured: not refused


# --- DNS rebinding -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "sandbox.attacker.io"])
def test_dns_rebinding_host_is_refused(sb: SandboxServer, host: str) -> None:
    """A page on evil.example whose name now resolves to 127.0.0.1 is same-origin with
    itself: the browser sends no foreign Origin, only its own name in Host."""
    with http(sb) as c:
        r = c.post(
            "/_admin/outage/okta",
            json={"seconds": 60},
            headers={"host": host.format(port=sb.port)},
        )
        state = c.get("/_admin/state/okta", headers={"host": host.format(port=sb.port)})
    assert r.status_code == 403 and "Host" in r.json()["error"]
    assert state.status_code == 403
    assert sb.faults.outage_mode("okta") is None


@pytest.mark.parametrize(
    "host", ["127.0.0.1:{port}", "localhost:{port}", "localhost", "[::1]:{port}"]
)
def test_addresses_and_localhost_are_accepted(sb: SandboxServer, host: str) -> None:
    with http(sb) as c:
        r = c.get("/_admin/health", headers={"host": host.format(port=sb.port)})
    assert r.status_code == 200


def test_guard_host_rules() -> None:
    loop = AdminGuard("127.0.0.1")
    named = AdminGuard("sandbox")
    scope: dict[str, Any] = {"method": "GET", "path": "/_admin/health"}

    def ok(guard: AdminGuard, host: str) -> bool:
        return guard.check({**scope, "headers": [(b"host", host.encode())]}) is None

    assert ok(loop, "10.1.2.3:8765") and ok(loop, "LOCALHOST:8765")
    assert not ok(loop, "sandbox:8765")
    assert ok(named, "sandbox:8765") and not ok(named, "evil.example")


# --- the admin token ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded() -> Iterator[SandboxServer]:
    with SandboxServer(smtp_port=None, admin_token="t0ken-for-tests") as server:
        yield server


def test_token_is_required_when_set(guarded: SandboxServer) -> None:
    with http(guarded) as c:
        none = c.post("/_admin/faults/okta", json={"error_rate": 1})
        wrong = c.post(
            "/_admin/faults/okta", json={"error_rate": 1}, headers={"authorization": "Bearer nope"}
        )
        basic = c.get("/_admin/health", headers={"authorization": "Basic dDBrZW4tZm9yLXRlc3Rz"})
        right = c.get("/_admin/health", headers={"authorization": "Bearer t0ken-for-tests"})
        any_name = c.get(
            "/_admin/health",
            headers={"authorization": "Bearer t0ken-for-tests", "host": "sandbox.internal"},
        )
        foreign = c.get(
            "/_admin/health",
            headers={"authorization": "Bearer t0ken-for-tests", "origin": "http://evil.example"},
        )
        vendor = c.get(OKTA_ME[0], headers=OKTA_ME[1])
    assert none.status_code == wrong.status_code == basic.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    assert "t0ken" not in none.text + wrong.text
    assert guarded.faults.entry("okta") is None
    assert right.status_code == any_name.status_code == 200
    assert foreign.status_code == 403
    assert vendor.status_code == 200  # vendors take their own credentials, not the token


@pytest.mark.parametrize("token", [None, "serve-t0ken"])
def test_serve_takes_the_token_from_its_environment(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    """``junction sandbox serve`` reads JUNCTION_SANDBOX_ADMIN_TOKEN; a benchmark's sandbox
    process gets exactly the token it asks for (none by default, whatever this process's
    environment says)."""
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "from-the-parent")
    port = free_port()
    proc = start_sandbox_process(port, admin_token=token)
    try:
        url = f"http://127.0.0.1:{port}/_admin/requests"
        bare = httpx.get(url, timeout=5)
        parent = httpx.get(url, headers={"Authorization": "Bearer from-the-parent"}, timeout=5)
        own = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    if token is None:
        assert bare.status_code == 200
    else:
        assert (bare.status_code, parent.status_code, own.status_code) == (401, 401, 200)


def test_exposure_warning_beyond_loopback() -> None:
    assert exposure_warning("127.0.0.1", False) is None
    assert exposure_warning("::1", False) is None and exposure_warning("localhost", False) is None
    open_warning = exposure_warning("0.0.0.0", False)
    assert open_warning is not None and "JUNCTION_SANDBOX_ADMIN_TOKEN" in open_warning
    assert "requires the admin token" in (exposure_warning("10.0.0.5", True) or "")
    assert is_loopback("127.0.0.2") and not is_loopback("192.168.1.10")


# --- numbers in admin bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_admin/outage/okta", b'{"seconds": NaN}'),
        ("/_admin/outage/okta", b'{"seconds": Infinity}'),
        ("/_admin/outage/okta", b'{"seconds": 1e400}'),
        ("/_admin/outage/okta", b'{"seconds": -1}'),
        ("/_admin/faults/okta", b'{"hang_seconds": 1e400}'),
        ("/_admin/faults/okta", b'{"latency_ms": {"min": 1, "max": 1e400}}'),
        ("/_admin/profile", b'{"seed": 1, "services": {"okta": {"error_rate": NaN}}}'),
    ],
)
def test_admin_bodies_take_only_finite_numbers(sb: SandboxServer, path: str, body: bytes) -> None:
    with http(sb) as c:
        r = c.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert sb.faults.outage_mode("okta") is None and sb.faults.entry("okta") is None


# --- records --------------------------------------------------------------------------------


def test_admin_records_lists_workday_workers_whose_ids_work(sb: SandboxServer) -> None:
    with http(sb) as c:
        got = c.get("/_admin/records", params={"service": "workday"}).json()
        workers = got["services"]["workday"]["workers"]["records"]
        worker = c.get(
            f"/workday/ccx/api/v1/tenant/workers/{workers[0]['id']}",
            headers={"Authorization": f"Bearer {_workday_token(c)}"},
        )
        unknown = c.get("/_admin/records", params={"service": "nosuch"})
    assert len(workers) == 130
    assert workers[0]["id"] == WORKER_0 and workers[0]["descriptor"] == "Ada Lovelace 0"
    assert worker.status_code == 200 and worker.json()["id"] == WORKER_0
    assert unknown.status_code == 404


def _workday_token(c: httpx.Client) -> str:
    r = c.post(
        "/workday/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=("sandbox-client", "sandbox-password"),
    )
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


def test_records_show_what_was_created_since(sb: SandboxServer) -> None:
    with http(sb) as c:
        c.post(
            "/okta/api/v1/users?activate=true",
            json={
                "profile": {
                    "firstName": "New",
                    "lastName": "Hire",
                    "email": "nh@example.com",
                    "login": "nh@example.com",
                }
            },
            headers=OKTA_ME[1],
        ).raise_for_status()
        users = c.get("/_admin/records", params={"service": "okta"}).json()["services"]["okta"]
    logins = [u["profile.login"] for u in users["users"]["records"]]
    assert "nh@example.com" in logins
    assert "Engineering" in [g["profile.name"] for g in users["groups"]["records"]]


def test_seed_without_a_server_matches_the_server(sb: SandboxServer) -> None:
    offline = seeded_records(discover_vendor_routes())
    with http(sb) as c:
        online = c.get("/_admin/records").json()["services"]
    assert set(offline) == set(online) >= {"workday", "okta", "gitlab", "pagerduty", "jira"}
    for service, collections in offline.items():
        for name, listing in collections.items():
            ids = [r[listing["fields"][0]] for r in listing["records"]]
            assert ids == [r[listing["fields"][0]] for r in online[service][name]["records"]]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JUNCTION_SANDBOX_ADMIN_TOKEN", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _records_cli(url: str, *args: str) -> Any:
    return CliRunner().invoke(
        cli_app,
        ["sandbox", "records", *args],
        env={"JUNCTION_SANDBOX_URL": url, "COLUMNS": "200"},
    )


def test_records_command_reads_the_running_sandbox(sb: SandboxServer, cli_env: None) -> None:
    assert "jira" not in sb.state.counts()  # untouched until now: the admin endpoint seeds it
    as_json = _records_cli(sb.url, "jira", "--json")
    table = _records_cli(sb.url, "workday")
    assert as_json.exit_code == 0, as_json.output
    keys = [p["key"] for p in json.loads(as_json.stdout)["services"]["jira"]["projects"]["records"]]
    assert keys == ["OPS", "JUN"]
    assert table.exit_code == 0 and WORKER_0 in table.stdout and "Ada Lovelace 0" in table.stdout
    assert "no sandbox answers" not in as_json.stderr + table.stderr


def test_records_command_without_a_sandbox_prints_the_seed(cli_env: None) -> None:
    result = _records_cli(f"http://127.0.0.1:{free_port()}", "workday", "--json")
    assert result.exit_code == 0, result.output
    assert "no sandbox answers" in result.stderr
    workers = json.loads(result.stdout)["services"]["workday"]["workers"]["records"]
    assert workers[0]["id"] == WORKER_0


@pytest.mark.parametrize(
    ("service", "message"),
    [("oktaa", "did you mean 'okta'"), ("zoom", "seeds no records of zoom")],
)
def test_records_command_names_a_bad_service(cli_env: None, service: str, message: str) -> None:
    result = _records_cli(f"http://127.0.0.1:{free_port()}", service)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


# --- services.yaml --------------------------------------------------------------------------


def test_every_catalog_only_service_has_a_sandbox_entry() -> None:
    """Adding an integration: a catalog entry plus its entry in services.yaml (health body,
    and the vendor's error shape) unless a vendor module plays it."""
    services = load_model(SandboxServices, SERVICES_FILE)
    played = {v.service for v in discover_vendor_routes()}
    http_names = {s.name for s in load_catalog() if s.transport == "http"}
    missing = sorted(n for n in http_names - played if services.entry(n).health is None)
    assert missing == []


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("services:\n  zoomm: {health: {}}\n", "did you mean 'zoom'"),
        ("services:\n  zoom:\n    health: {id: '{{nobody}}'}\n", "unknown placeholder {{nobody}}"),
        ("services:\n  zoom:\n    error: {m: '{{principal}}'}\n", "unknown placeholder"),
        ("services:\n  zoom:\n    error: {c: {$status: {4x: a}}}\n", "not a status key"),
        ("services:\n  zoom:\n    messages: {600: nope}\n", "not a status key"),
        ("services:\n  zoom:\n    rate_limit_headers: github2\n", "rate_limit_headers"),
        ("services:\n  zoom:\n    helth: {}\n", "did you mean 'health'"),
    ],
)
def test_services_file_errors_are_located(yaml_text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_model(SandboxServices, "services.yaml", text=yaml_text)
    assert str(info.value).startswith("services.yaml:")
    assert expected in str(info.value)


def test_error_templates() -> None:
    assert vendor_error_body("okta", 404)["errorCode"] == "E0000007"
    assert vendor_error_body("okta", 418)["errorCode"] == "E0000009"  # default
    assert vendor_error_body("slack", 502) == {"ok": False, "error": "internal_error"}  # 5xx
    assert vendor_error_body("github", 404)["status"] == "404"  # status_text
    assert vendor_error_body("twilio", 401)["status"] == 401  # a whole placeholder keeps its type
    assert vendor_error_body("airtable", 404)["error"]["type"] == "NOT_FOUND"
    assert vendor_error_body("box", 429)["code"] == "too_many_requests"
    assert vendor_error_body("openai", 503)["error"]["code"] is None  # no default: null
