"""Secrets never reach logs, errors, the metrics store or CLI output.

The sandbox here plays vendors that echo the credential back in their error bodies (some
real ones do, partially), so the secret really flows through the client: a test that
only ever saw clean responses could not fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
        yield server


def test_echoed_credentials_never_reach_output_or_store(
    echoing_sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = echoing_sandbox.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUNCTION_")}
    env.update(
        COLUMNS="200",
        JUNCTION_HOME=str(tmp_path),
        JUNCTION_SANDBOX_URL=url,
        JUNCTION_GITHUB_BASE_URL=f"{url}/github",
        JUNCTION_GITHUB_TOKEN=SECRET,
        JUNCTION_DATADOG_BASE_URL=f"{url}/datadog",
        JUNCTION_DATADOG_TOKEN=API_KEY,
        JUNCTION_JIRA_BASE_URL=f"{url}/jira",
        JUNCTION_JIRA_USERNAME="me@example.com",
        JUNCTION_JIRA_PASSWORD=BASIC,
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "junction",
            "integrations",
            "check",
            "github",
            "datadog",
            "jira",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr
    assert out.stdout.count("AuthenticationError") >= 3
    assert "rejected credentials" in out.stdout  # the vendor's message is kept...
    everything = out.stdout + out.stderr
    files = [p for p in (tmp_path / "metrics").rglob("*") if p.is_file()]
    assert files
    for path in files:
        everything += path.read_bytes().decode("latin-1")
    for secret in (SECRET, API_KEY, BASIC):  # ...without the credentials it echoed
        assert secret not in everything
