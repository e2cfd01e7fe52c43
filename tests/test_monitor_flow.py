"""The monitor-integrations Prefect flow on a real (ephemeral) Prefect server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from tests.prefect_harness import harness

    with harness():
        yield


def test_monitor_flow_restores_windows_records_and_publishes(
    prefect_harness: None, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    from flows.monitor import monitor_integrations
    from junction.monitor import SweepResult
    from junction.settings import get_settings
    from junction.store import MetricsStore

    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sb.url)
    monkeypatch.setenv("JUNCTION_SANDBOX_SMTP_PORT", str(sb.smtp_port))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS", "0.05")
    get_settings.cache_clear()
    names = ["okta", "github", "smtp"]
    try:
        first = asyncio.run(monitor_integrations(names=names))
        httpx.post(f"{sb.url}/_admin/outage/github", json={"seconds": 60}).raise_for_status()
        second = asyncio.run(monitor_integrations(names=names))
    finally:
        get_settings.cache_clear()

    assert isinstance(first, SweepResult) and isinstance(second, SweepResult)
    assert [s.service for s in first.services] == names
    assert all(s.status == "healthy" for s in first.services)
    # Each run is its own monitor: the second one restored the first run's probes.
    assert second.service("okta").observations == 2
    github = second.service("github")
    assert github.observations == 3 and github.down and github.status == "critical"
    assert github.alerts  # the alert engine fired for it
    assert MetricsStore(tmp_path / "metrics").count("probes") == 3 + 4

    artifact: Any = Artifact.get("service-health")
    assert artifact is not None
    assert "2/3 services healthy" in (artifact.description or "")
    assert "1 critical" in (artifact.description or "")
    data = artifact.data
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    by_service = {row["service"]: row for row in rows}
    assert sorted(by_service) == sorted(names)
    assert by_service["github"]["status"] == "critical"
    assert by_service["github"]["success_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert "down: last 2 checks failed" in by_service["github"]["why"]
    assert by_service["okta"]["score"] == 100.0 and by_service["okta"]["observations"] == 2


def test_monitor_flow_with_a_corrupt_alert_database_fails_with_one_line(
    prefect_harness: None, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.states import State

    from flows.monitor import monitor_integrations
    from junction.settings import get_settings

    (tmp_path / "alerts.db").write_bytes(b"not a database\n" * 64)
    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sb.url)
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()

    async def run() -> State[Any]:
        return await monitor_integrations(names=["okta"], return_state=True)

    try:
        state = asyncio.run(run())
    finally:
        get_settings.cache_clear()
    assert state.is_failed()
    message = state.message or ""
    assert "\n" not in message and "Traceback" not in message
    assert str(tmp_path / "alerts.db") in message and "junction alerts reset" in message
    assert not (tmp_path / "metrics" / "probes").exists()  # refused before any probe
