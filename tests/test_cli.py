"""The command line, run as a newcomer runs it: a subprocess, reading what it prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from integrations.catalog import load_catalog
from tests.helpers import run_junction as run

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer


def test_list_json_has_every_integration() -> None:
    out = run(["integrations", "list", "--json"])
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)
    assert len(items) >= 33
    okta = next(i for i in items if i["name"] == "okta")
    assert okta["capabilities"] == ["identity"] and okta["auth"] == "api_key"
    assert okta["base_url"] == "http://127.0.0.1:8765/okta"
    assert okta["health"] == {"method": "GET", "path": "/api/v1/users/me"}
    notify = run(["integrations", "list", "--json", "--capability", "notify"])
    assert {"slack", "webex", "smtp", "pagerduty"} <= {i["name"] for i in json.loads(notify.stdout)}


def test_check_all_against_sandbox_records_probes(sb: SandboxServer, tmp_path: Path) -> None:
    env = {"JUNCTION_SANDBOX_URL": sb.url, "JUNCTION_SANDBOX_SMTP_PORT": str(sb.smtp_port)}
    out = run(["integrations", "check", "--json"], env=env, home=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads(out.stdout)
    total = len(load_catalog())
    assert len(results) == total and all(r["ok"] for r in results), [
        r for r in results if not r["ok"]
    ]
    from junction.store import MetricsStore

    store = MetricsStore(tmp_path / "metrics")
    assert store.count("probes") == total
    assert store.query("select count(*) n from calls where source = 'probe'")["n"][0] >= 42


def test_check_reports_outage_and_exits_1(sb: SandboxServer, tmp_path: Path) -> None:
    env = {"JUNCTION_SANDBOX_URL": sb.url}
    httpx.post(
        f"{sb.url}/_admin/outage/github", json={"seconds": 30, "mode": "503"}
    ).raise_for_status()
    try:
        out = run(["integrations", "check", "github", "okta"], env=env, home=tmp_path)
    finally:
        httpx.delete(f"{sb.url}/_admin/outage/github")
    assert out.returncode == 1
    assert "github" in out.stdout and "ServerError" in out.stdout and "1/2 healthy" in out.stdout


def test_unknown_integration_is_a_clear_error() -> None:
    out = run(["integrations", "check", "oktaa"])
    assert out.returncode == 2
    assert "unknown integration 'oktaa'" in out.stderr and "Did you mean: okta" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_missing_credentials_and_bad_url_are_reported_per_integration(tmp_path: Path) -> None:
    env = {
        "JUNCTION_OKTA_BASE_URL": "https://acme.okta.com",
        "JUNCTION_GITHUB_BASE_URL": "not a url",
        "JUNCTION_GITHUB_TOKEN": "ghp_secretsecretsecret",
    }
    out = run(
        ["integrations", "check", "okta", "github", "--json", "--no-record"], env=env, home=tmp_path
    )
    assert out.returncode == 1, out.stderr
    by = {r["integration"]: r for r in json.loads(out.stdout)}
    assert by["okta"]["error_class"] == "MissingCredentialsError"
    assert "JUNCTION_OKTA_TOKEN" in by["okta"]["error"]
    assert by["github"]["error_class"] == "InvalidBaseURLError"
    assert "ghp_secretsecretsecret" not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_invalid_settings_are_a_clear_error() -> None:
    out = run(["integrations", "check", "okta"], env={"RESPONSE_TIME_WARNING_MS": "9000"})
    assert out.returncode == 2
    assert "RESPONSE_TIME_WARNING_MS must be <= RESPONSE_TIME_CRITICAL_MS" in out.stderr
    assert "Traceback" not in out.stderr


def test_sandbox_serve_rejects_missing_profile() -> None:
    out = run(["sandbox", "serve", "--port", "0", "--faults", "/nonexistent.yaml"])
    assert out.returncode == 2 and "fault profile not found" in out.stderr


def test_check_without_a_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = run(["integrations", "check", "okta", "--no-record"], env={"JUNCTION_SANDBOX_URL": url})
    assert out.returncode == 1
    assert "APIConnectionError" in out.stdout
    assert f"nothing answers at the sandbox ({url})" in out.stderr
    assert "junction sandbox serve" in out.stderr
