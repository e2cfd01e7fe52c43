"""The health-sweep flow on a real (ephemeral) Prefect server, and `junction demo`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integrations.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.prefect


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from tests.prefect_harness import harness

    with harness():
        yield


def test_health_sweep_flow_records_and_publishes_artifact(
    prefect_harness: None, sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    from flows.health_sweep import health_sweep
    from junction.settings import get_settings
    from junction.store import MetricsStore

    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sandbox.url)
    monkeypatch.setenv("JUNCTION_SANDBOX_SMTP_PORT", str(sandbox.smtp_port))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        results = asyncio.run(health_sweep(names=["okta", "github", "smtp", "teams"]))
    finally:
        get_settings.cache_clear()
    assert [r.service for r in results] == ["okta", "github", "smtp", "teams"]
    assert all(r.ok for r in results), results
    store = MetricsStore(tmp_path / "metrics")
    assert store.count("probes") == 4
    artifact = Artifact.get("integration-health")
    assert artifact is not None and "4/4 integrations healthy" in (artifact.description or "")
    assert "okta" in str(artifact.data)


def test_make_demo_path_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUNCTION_", "PREFECT_"))}
    env.update(
        JUNCTION_HOME=str(tmp_path / "home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        COLUMNS="200",
    )
    out = subprocess.run(
        [sys.executable, "-m", "junction", "demo"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=400,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = " ".join(out.stdout.split())  # rich wraps long lines
    total = len(load_catalog())
    assert f"{total}/{total} integrations healthy; workflow completed." in text
    assert f"{total} probe rows" in text and "1 workflow run rows" in text
    assert "Traceback" not in out.stderr
    report = tmp_path / "home" / "reports" / "report.html"
    html = report.read_text()
    assert html.count("<svg") >= 3 and "KPI scorecard" in html


def test_credentials_from_a_prefect_secret_block(
    prefect_harness: None, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.blocks.system import Secret

    from integrations import auth
    from integrations.redaction import redact
    from junction.clients import get_client
    from junction.settings import Settings

    Secret(value="sandbox-token").save("junction-test-okta", overwrite=True)
    Secret(value={"username": "sandbox-user", "password": "sandbox-password"}).save(
        "junction-test-jira", overwrite=True
    )
    monkeypatch.setenv("JUNCTION_OKTA_SECRET_BLOCK", "junction-test-okta")
    monkeypatch.setenv("JUNCTION_JIRA_SECRET_BLOCK", "junction-test-jira")
    monkeypatch.setattr(auth, "_block_cache", {})
    settings = Settings(sandbox_url=sandbox.url)

    async def check() -> None:
        for name in ("okta", "jira"):
            client = get_client(name, settings=settings)
            assert client.credentials.source == f"block:junction-test-{name}"
            result = await client.health_check()
            assert result.ok, result
            await client.aclose()

    asyncio.run(check())
    assert redact("pw sandbox-password") == "pw ***"  # block secrets are registered

    monkeypatch.setenv("JUNCTION_OKTA_SECRET_BLOCK", "no-such-block")
    monkeypatch.setattr(auth, "_block_cache", {})
    from integrations.errors import MissingCredentialsError

    with pytest.raises(MissingCredentialsError, match=r"no-such-block.*does not exist.*Secret"):
        get_client("okta", settings=settings)
