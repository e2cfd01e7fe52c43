"""Smoke tests of the test infrastructure in ``tests/servers.py``.

They prove that every vendor spec is served by Prism (a health check answers 2xx with the
headers each spec needs, and a malformed request is rejected with a 4xx), that Prism's
known quirks still hold (they are what the API clients must cope with), and that a real
Alertmanager starts, stores an alert and sends it to a webhook. Contract tests for the
clients themselves live elsewhere.

Needs the ``prism_servers`` and ``alertmanager`` fixtures, registered in tests/conftest.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import (
    DEFAULT_SPECS_DIRS,
    PRISM_SPECS,
    REPO_ROOT,
    AlertmanagerServer,
    PrismServer,
    ServerStartError,
    free_port,
    specs_dir,
)

JSON = {"Accept": "application/json"}


@dataclass(frozen=True)
class Call:
    """One HTTP request against a Prism server (path relative to the server root)."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: dict[str, str] | None = None

    def send(self, client: httpx.Client, base_url: str) -> httpx.Response:
        """Send this request to ``base_url``."""
        return client.request(
            self.method,
            base_url + self.path,
            headers=self.headers,
            json=self.json,
            data=self.data,
        )


@dataclass(frozen=True)
class SpecCase:
    """How to call one vendor spec on Prism: a health check and a malformed request."""

    health: Call
    malformed: Call
    malformed_status: int
    unauthenticated: Call | None = None
    """The health check without credentials, where Prism enforces the spec's security."""


OPENAI_AUTH = {**JSON, "Authorization": "Bearer sk-test"}
GITLAB_AUTH = {**JSON, "PRIVATE-TOKEN": "glpat-test"}
OKTA_AUTH = {**JSON, "Authorization": "SSWS 00test"}
WEBEX_AUTH = {**JSON, "Authorization": "Bearer webex-test"}
SLACK_AUTH = {**JSON, "Authorization": "Bearer xoxb-test", "token": "xoxb-test"}
GITHUB_AUTH = {
    "Accept": "application/vnd.github+json, application/json",
    "Authorization": "Bearer ghp_test",
    "X-GitHub-Api-Version": "2022-11-28",
}
PAGERDUTY_AUTH = {
    "Accept": "application/vnd.pagerduty+json;version=2, application/json",
    "Content-Type": "application/json",
    "Authorization": "Token token=pd-test",
}
JIRA_AUTH = {**JSON, "Authorization": "Basic dXNlckBleGFtcGxlLmNvbTp0b2tlbg=="}

SPEC_CASES: dict[str, SpecCase] = {
    "openai": SpecCase(
        health=Call("GET", "/models", OPENAI_AUTH),
        malformed=Call("POST", "/chat/completions", OPENAI_AUTH, json={"model": "gpt-4o"}),
        malformed_status=422,
        unauthenticated=Call("GET", "/models", JSON),
    ),
    "gitlab": SpecCase(
        # GET /api/v4/user (the real health check) is not in the trimmed spec.
        health=Call("GET", "/api/v4/projects/1", GITLAB_AUTH),
        malformed=Call("GET", "/api/v4/projects/1/pipelines/not-a-number", GITLAB_AUTH),
        malformed_status=422,
    ),
    "okta": SpecCase(
        health=Call("GET", "/api/v1/users/me", OKTA_AUTH),
        malformed=Call("GET", "/api/v1/users?limit=not-a-number", OKTA_AUTH),
        malformed_status=422,
        unauthenticated=Call("GET", "/api/v1/users/me", JSON),
    ),
    "webex": SpecCase(
        health=Call("GET", "/people/me", WEBEX_AUTH),
        malformed=Call("GET", "/messages", WEBEX_AUTH),  # roomId is required
        malformed_status=400,
    ),
    "slack": SpecCase(
        health=Call("GET", "/auth.test", SLACK_AUTH),
        malformed=Call("POST", "/chat.postMessage", SLACK_AUTH, data={"text": "no channel"}),
        malformed_status=422,
        unauthenticated=Call("GET", "/api.test", JSON),
    ),
    "github": SpecCase(
        health=Call("GET", "/user", GITHUB_AUTH),
        malformed=Call("GET", "/repos/octo/hello/actions/runs/not-a-number", GITHUB_AUTH),
        malformed_status=422,
    ),
    "pagerduty": SpecCase(
        health=Call("GET", "/abilities", PAGERDUTY_AUTH),
        malformed=Call("GET", "/incidents?limit=not-a-number", PAGERDUTY_AUTH),
        malformed_status=400,
        unauthenticated=Call(
            "GET", "/abilities", {k: v for k, v in PAGERDUTY_AUTH.items() if k != "Authorization"}
        ),
    ),
    "alertmanager": SpecCase(
        health=Call("GET", "/status", JSON),
        malformed=Call("POST", "/alerts", JSON, json=[{"labels": "not-an-object"}]),
        malformed_status=400,
    ),
    "jira": SpecCase(
        health=Call("GET", "/rest/api/3/myself", JIRA_AUTH),
        malformed=Call("POST", "/rest/api/3/issue", JIRA_AUTH, json={"fields": "not-an-object"}),
        malformed_status=422,
        unauthenticated=Call("GET", "/rest/api/3/myself", JSON),
    ),
}

QUIRKS: dict[str, tuple[str, Call, int]] = {
    # id: (service, request, status Prism answers) -- what API clients must work around.
    "swagger2-basepath-dropped-alertmanager": (
        "alertmanager",
        Call("GET", "/api/v2/status", JSON),
        404,
    ),
    "swagger2-basepath-dropped-slack": ("slack", Call("GET", "/api/auth.test", SLACK_AUTH), 404),
    "oas3-server-path-dropped-openai": ("openai", Call("GET", "/v1/models", OPENAI_AUTH), 404),
    "github-vendor-accept-alone-406": (
        "github",
        Call("GET", "/user", {**GITHUB_AUTH, "Accept": "application/vnd.github+json"}),
        406,
    ),
    "pagerduty-vendor-accept-alone-406": (
        "pagerduty",
        Call(
            "GET",
            "/abilities",
            {**PAGERDUTY_AUTH, "Accept": "application/vnd.pagerduty+json;version=2"},
        ),
        406,
    ),
    "pagerduty-get-needs-content-type": (
        "pagerduty",
        Call("GET", "/abilities", {k: v for k, v in PAGERDUTY_AUTH.items() if k != "Content-Type"}),
        422,
    ),
    "slack-needs-token-header-too": (
        "slack",
        Call("GET", "/auth.test", {k: v for k, v in SLACK_AUTH.items() if k != "token"}),
        422,
    ),
    "slack-post-must-be-form-encoded": (
        "slack",
        Call("POST", "/chat.postMessage", SLACK_AUTH, json={"channel": "C1", "text": "hi"}),
        415,
    ),
}


def test_every_prism_spec_has_a_case() -> None:
    """Each spec started by the ``prism_servers`` fixture is covered below."""
    assert set(SPEC_CASES) == set(PRISM_SPECS)


def test_specs_dir_defaults_next_to_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """JUNCTION_SPECS_DIR defaults to the first shared specs folder that exists."""
    monkeypatch.delenv("JUNCTION_SPECS_DIR", raising=False)
    existing = [d for d in DEFAULT_SPECS_DIRS if d.is_dir()]
    assert existing, "no vendor specs folder: set JUNCTION_SPECS_DIR"
    assert specs_dir() == existing[0].resolve()
    monkeypatch.setenv("JUNCTION_SPECS_DIR", "some/where")
    assert specs_dir() == (REPO_ROOT / "some" / "where").resolve()
    for relpath in PRISM_SPECS.values():
        monkeypatch.delenv("JUNCTION_SPECS_DIR", raising=False)
        assert (specs_dir() / relpath).is_file(), relpath


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """A plain HTTP client for loopback requests."""
    with httpx.Client(timeout=10.0) as c:
        yield c


@pytest.mark.prism
@pytest.mark.parametrize("service", sorted(SPEC_CASES))
def test_prism_health_check_answers(
    service: str, prism_servers: dict[str, str], client: httpx.Client
) -> None:
    """The health check, sent with the headers the spec needs, gets a 2xx JSON answer."""
    case = SPEC_CASES[service]
    resp = case.health.send(client, prism_servers[service])
    assert 200 <= resp.status_code < 300, (resp.status_code, resp.text[:500])
    assert isinstance(resp.json(), dict)


@pytest.mark.prism
@pytest.mark.parametrize("service", sorted(SPEC_CASES))
def test_prism_rejects_malformed_request(
    service: str, prism_servers: dict[str, str], client: httpx.Client
) -> None:
    """A request that breaks the vendor's schema is rejected, so contract tests bite."""
    case = SPEC_CASES[service]
    resp = case.malformed.send(client, prism_servers[service])
    assert resp.status_code == case.malformed_status, (resp.status_code, resp.text[:500])


@pytest.mark.prism
@pytest.mark.parametrize(
    "service", sorted(s for s, c in SPEC_CASES.items() if c.unauthenticated is not None)
)
def test_prism_enforces_security(
    service: str, prism_servers: dict[str, str], client: httpx.Client
) -> None:
    """Where the spec declares security, a request without credentials gets 401."""
    call = SPEC_CASES[service].unauthenticated
    assert call is not None
    resp = call.send(client, prism_servers[service])
    assert resp.status_code == 401, (resp.status_code, resp.text[:500])


@pytest.mark.prism
@pytest.mark.parametrize("quirk", sorted(QUIRKS))
def test_prism_quirks(quirk: str, prism_servers: dict[str, str], client: httpx.Client) -> None:
    """Prism's documented quirks (see specs/INDEX.md) still hold for this Prism version."""
    service, call, status = QUIRKS[quirk]
    resp = call.send(client, prism_servers[service])
    assert resp.status_code == status, (resp.status_code, resp.text[:500])


@pytest.mark.prism
def test_prism_start_failure_reports_output(tmp_path: Path) -> None:
    """A spec Prism cannot load fails fast with Prism's own output in the error."""
    bad = tmp_path / "broken.yaml"
    bad.write_text("openapi: 3.0.0\ninfo: [this is not a valid info object\n")
    with pytest.raises(ServerStartError) as excinfo, PrismServer(str(bad)):
        pass
    assert "broken.yaml" in str(excinfo.value)
    with pytest.raises(ServerStartError, match="not found"):
        PrismServer("no/such/spec.yaml").start()


@pytest.mark.prism
def test_prism_stop_frees_port() -> None:
    """Leaving the context manager kills Prism (its whole process group)."""
    port = free_port()
    with PrismServer(PRISM_SPECS["alertmanager"], port) as server:
        assert httpx.get(server.url + "/status", timeout=10).status_code == 200
        proc = server.proc
        assert proc is not None
    assert proc.returncode is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/status", timeout=2)


def _alert(name: str, **labels: str) -> dict[str, Any]:
    """An Alertmanager v2 postable alert that is firing for the next 5 minutes."""
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} smoke test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }


@pytest.mark.alertmanager
def test_alertmanager_stores_posted_alert(alertmanager: AlertmanagerServer) -> None:
    """POST /api/v2/alerts then GET /api/v2/alerts shows the alert."""
    name = f"JunctionSmoke{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=alertmanager.api_url, timeout=10.0) as c:
        status = c.get("/status")
        assert status.status_code == 200
        assert status.json()["versionInfo"]["version"]
        posted = c.post("/alerts", json=[_alert(name, service="smoke")])
        assert posted.status_code == 200, posted.text
        alerts = c.get("/alerts", params={"filter": f'alertname="{name}"'}).json()
    assert [a["labels"]["alertname"] for a in alerts] == [name]
    assert alerts[0]["status"]["state"] == "active"
    assert alerts[0]["receivers"] == [{"name": AlertmanagerServer.RECEIVER}]


class _WebhookSink:
    """A loopback HTTP server that records JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                sink.bodies.append(json.loads(self.rfile.read(length)))
                sink.received.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alertmanager"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _WebhookSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.alertmanager
def test_alertmanager_notifies_webhook() -> None:
    """With a webhook URL, a posted alert reaches the webhook within seconds."""
    name = f"JunctionWebhook{uuid.uuid4().hex[:8]}"
    with _WebhookSink() as sink, AlertmanagerServer(webhook_url=sink.url) as am:
        started = time.monotonic()
        resp = httpx.post(am.api_url + "/alerts", json=[_alert(name)], timeout=10)
        assert resp.status_code == 200, resp.text
        assert sink.received.wait(15), f"no webhook call; log:\n{am.log_tail()}"
        elapsed = time.monotonic() - started
    body = sink.bodies[0]
    assert body["receiver"] == AlertmanagerServer.RECEIVER
    assert body["status"] == "firing"
    assert [a["labels"]["alertname"] for a in body["alerts"]] == [name]
    assert elapsed < 15
