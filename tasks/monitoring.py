"""Thin Prefect tasks around :class:`junction.monitor.Monitor` (logic lives there)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from junction.markdown import markdown_rows
from junction.monitor import SweepResult, run_once

ARTIFACT_KEY = "service-health"
"""Key of the table artifact published by every monitoring run."""


@task(name="monitor-sweep", retries=0, cache_policy=NO_CACHE)
async def monitor_sweep(names: list[str] | None, sweep_id: str) -> SweepResult:
    """Restore the windows from the metrics store, sweep once, evaluate alerts, deliver.

    Each scheduled run is a new process: the restore is what makes success rates and
    percentiles cover the configured window rather than this run's single probe.
    """
    return await run_once(names=names, sweep_id=sweep_id)


def health_rows(result: SweepResult) -> list[dict[str, Any]]:
    """The artifact's rows: one per service."""

    def r(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    return [
        {
            "service": s.service,
            "status": s.status,
            "score": r(s.score),
            "success_rate": r(s.success_rate, 4),
            "p50_ms": r(s.p50_latency_ms),
            "p95_ms": r(s.p95_latency_ms),
            "uptime": r(s.uptime, 4),
            "breaker": s.breaker_state or "",
            "observations": s.observations,
            "alerts": ", ".join(s.alerts),
            "why": "; ".join(s.reasons) if s.status != "healthy" else "",
        }
        for s in result.services
    ]


# Retried: the artifact is the one call of a monitor run that needs the Prefect server,
# and a fresh client does not retry a refused connection (the server restarting).
@task(
    name="publish-service-health",
    cache_policy=NO_CACHE,
    retries=4,
    retry_delay_seconds=[2, 4, 8, 16],
)
def publish_service_health(result: SweepResult, key: str = ARTIFACT_KEY) -> Any:
    """Publish the services' health as a Prefect table artifact (``service-health``, or
    ``key``: a monitor shard publishes its own services under its own key)."""
    counts = result.counts()
    return create_table_artifact(
        key=key,
        table=markdown_rows(health_rows(result)),  # the UI renders cells as Markdown
        description=(
            f"Sweep {result.sweep_id}: {counts['healthy']}/{len(result.services)} services "
            f"healthy, {counts['warning']} warning, {counts['critical']} critical"
        ),
    )
