"""The monitor-continuous flow (one long run sweeping on a tick) on a real (ephemeral)
Prefect server: sweeps until its time is up, from its scheduled start, and publishes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows.monitor_loop import sweeps_for

pytestmark = pytest.mark.prefect


def test_a_run_ends_at_its_scheduled_end() -> None:
    now = datetime.now(UTC)
    assert sweeps_for(3600, 5, None) == 720
    assert sweeps_for(3600, 5, now - timedelta(seconds=17)) == 716  # started late: catch up
    assert sweeps_for(3600, 5, now - timedelta(hours=2)) == 1  # long overdue: one sweep


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_one_run_keeps_sweeping(
    prefect_harness: None, sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.artifacts import Artifact

    from flows.monitor_loop import monitor_continuous
    from junction.settings import get_settings
    from junction.store import MetricsStore

    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sb.url)
    monkeypatch.setenv("JUNCTION_SANDBOX_SMTP_PORT", str(sb.smtp_port))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        # 12 s from the run's scheduled start (its creation): what creating it took on a
        # loaded machine is not swept, the rest is, once a second.
        out = asyncio.run(monitor_continuous(every_seconds=1.0, run_seconds=12.0, names=["okta"]))
    finally:
        get_settings.cache_clear()
    assert isinstance(out, dict) and 2 <= out["sweeps"] <= 12, out
    assert out["counts"]["healthy"] == 1
    assert MetricsStore(tmp_path / "metrics").count("probes") == out["sweeps"]
    artifact: Any = Artifact.get("service-health")
    assert artifact is not None and "1/1 services healthy" in (artifact.description or "")
