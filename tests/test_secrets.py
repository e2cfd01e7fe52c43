"""Secrets never reach logs, errors, the metrics store or CLI output.

The sandbox here plays vendors that echo the credential back in their error bodies (some
real ones do, partially), so the secret really flows through the client: a test that
only ever saw clean responses could not fail.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from starlette.responses import Response

from integrations.sandbox.api import SandboxRequest, VendorRoutes, json_response
from integrations.sandbox.app import SandboxServer

ROOT = Path(__file__).resolve().parents[1]
SECRET = "ghp_TopSecretValue0123456789"
API_KEY = "dd0123456789abcdefSECRET"
BASIC = "jira-api-token-Secret-42"


async def echo(req: SandboxRequest) -> Response:
    seen = {k: v for k, v in req.headers.items() if k in ("authorization", "dd-api-key")}
    return json_response({"message": f"rejected credentials {seen}", "errors": [str(seen)]}, 401)


async def echo_bare(req: SandboxRequest) -> Response:
    """What vendors do (Jira, ServiceNow): echo the credential alone, without the scheme
    word, and for basic auth also decoded and URL-encoded."""
    value = req.headers.get("authorization", "")
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "basic":
        user, _, password = base64.b64decode(rest).decode().partition(":")
        echoed = f"{rest} (user {user}, password {password}, as sent {quote(password, safe='')})"
    else:
        echoed = rest.removeprefix("token=")  # PagerDuty: "Token token=<key>"
    return json_response({"message": f"Invalid token provided: {echoed}"}, 401)


BARE_ECHO = {
    "jira": "/rest/api/3/myself",
    "servicenow": "/api/now/table/sys_user",
    "okta": "/api/v1/users/me",
    "pagerduty": "/abilities",
    "teams": "/organization",  # OAuth2: the access token is obtained at run time
}
JIRA_USER, JIRA_PASSWORD = "ops@example.com", "jira/api:token+Secret=42&x"
SNOW_USER, SNOW_PASSWORD = "svc.junction", "snow-Pa55 word/with+plus"
OKTA_TOKEN, PD_TOKEN = "00oktaSECRETtokenValue", "pdSECRETkey-0123456789"


@pytest.fixture(scope="module")
def echoing_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(port=0, smtp_port=None) as server:
        for service, path in (
            ("github", "/user"),
            ("datadog", "/api/v1/validate"),
            ("jira", "/rest/api/3/myself"),
        ):
            routes = VendorRoutes(service)
            routes.route("GET", path, public=True)(echo)
            server.app.add_routes(routes)
        for service, path in BARE_ECHO.items():
            routes = VendorRoutes(service)
            routes.route("GET", path, public=True)(echo_bare)
            server.app.add_routes(routes)
        yield server


def stored_text(home: Path) -> str:
    """Everything the metrics store holds, decoded (segments are zstd-compressed Parquet,
    so their raw bytes would hide a leaked secret)."""
    parts = []
    for path in (home / "metrics").rglob("*"):
        if path.suffix == ".parquet":
            parts.append(str(pq.read_table(path).to_pylist()))
        elif path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def check(home: Path, services: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``junction integrations check SERVICES --json`` in a fresh process with ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
    full.update(COLUMNS="200", JUNCTION_HOME=str(home), **env)
    return subprocess.run(
        [sys.executable, "-m", "junction", "integrations", "check", *services, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full,
        timeout=120,
    )


def test_echoed_credentials_never_reach_output_or_store(
    echoing_sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = echoing_sandbox.url
    out = check(
        tmp_path,
        ["github", "datadog", "jira"],
        JUNCTION_SANDBOX_URL=url,
        JUNCTION_GITHUB_BASE_URL=f"{url}/github",
        JUNCTION_GITHUB_TOKEN=SECRET,
        JUNCTION_DATADOG_BASE_URL=f"{url}/datadog",
        JUNCTION_DATADOG_TOKEN=API_KEY,
        JUNCTION_JIRA_BASE_URL=f"{url}/jira",
        JUNCTION_JIRA_USERNAME="me@example.com",
        JUNCTION_JIRA_PASSWORD=BASIC,
    )
    assert out.returncode == 1, out.stderr
    assert out.stdout.count("AuthenticationError") >= 3
    assert "rejected credentials" in out.stdout  # the vendor's message is kept...
    everything = out.stdout + out.stderr + stored_text(tmp_path)
    for secret in (SECRET, API_KEY, BASIC):  # ...without the credentials it echoed
        assert secret not in everything


def test_every_wire_form_of_a_credential_is_redacted(
    echoing_sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Issue 9 #4: the base64 of user:password, the header value without its scheme, the
    URL-encoded password and a run-time OAuth2 access token, echoed in error bodies, reach
    neither stdout nor the stored calls."""
    url = echoing_sandbox.url
    out = check(
        tmp_path,
        list(BARE_ECHO),
        JUNCTION_SANDBOX_URL=url,
        JUNCTION_JIRA_BASE_URL=f"{url}/jira",
        JUNCTION_JIRA_USERNAME=JIRA_USER,
        JUNCTION_JIRA_PASSWORD=JIRA_PASSWORD,
        JUNCTION_SERVICENOW_BASE_URL=f"{url}/servicenow",
        JUNCTION_SERVICENOW_USERNAME=SNOW_USER,
        JUNCTION_SERVICENOW_PASSWORD=SNOW_PASSWORD,
        JUNCTION_OKTA_BASE_URL=f"{url}/okta",
        JUNCTION_OKTA_TOKEN=OKTA_TOKEN,
        JUNCTION_PAGERDUTY_BASE_URL=f"{url}/pagerduty",
        JUNCTION_PAGERDUTY_TOKEN=PD_TOKEN,
    )
    assert out.returncode == 1, out.stderr
    assert out.stdout.count("Invalid token provided: ***") == len(BARE_ECHO), out.stdout
    forbidden = [OKTA_TOKEN, PD_TOKEN]
    for user, password in ((JIRA_USER, JIRA_PASSWORD), (SNOW_USER, SNOW_PASSWORD)):
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        forbidden += [password, pair, pair.rstrip("="), quote(password, safe="")]
    everything = out.stdout + out.stderr + stored_text(tmp_path)
    assert "Invalid token provided" in stored_text(tmp_path)  # the errors were stored...
    for secret in forbidden:  # ...without the credentials they echoed
        assert secret not in everything, secret
