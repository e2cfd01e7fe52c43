"""Thin Prefect tasks around the health sweep (logic lives in junction.health)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact

from integrations.base import HealthResult
from junction.health import run_sweep
from junction.markdown import markdown_rows


@task(name="probe-integrations", retries=0)
async def probe_integrations(names: list[str] | None, sweep_id: str) -> list[HealthResult]:
    """Probe every (or the named) integration once and record the results."""
    _, results = await run_sweep(names, sweep_id=sweep_id)
    return results


@task(name="publish-health-artifact")
def publish_health_artifact(results: list[HealthResult], sweep_id: str) -> Any:
    """Publish the sweep as a Prefect table artifact (visible in the Prefect UI)."""
    rows = [
        {
            "integration": r.service,
            "status": "healthy" if r.ok else "failing",
            "http": r.status,
            "latency_ms": round(r.latency_ms, 1),
            "breaker": r.breaker_state,
            "error": r.error or "",
        }
        for r in results
    ]
    healthy = sum(r.ok for r in results)
    return create_table_artifact(
        key="integration-health",
        table=markdown_rows(rows),  # the UI renders cells as Markdown
        description=f"Sweep {sweep_id}: {healthy}/{len(results)} integrations healthy",
    )
