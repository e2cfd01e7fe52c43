"""The health-sweep flow: probe every integration once, record, publish.

A plain probe of everything (no windows, scores or alerts): the monitor-integrations flow
(:mod:`flows.monitor`) is the one that judges health and alerts.
"""

from __future__ import annotations

from uuid import uuid4

from prefect import flow, get_run_logger

from flows.runlog import emit, probe_lines
from flows.variables import apply_prefect_variables
from integrations.base import HealthResult
from tasks.probes import probe_integrations, publish_health_artifact


@flow(name="health-sweep", log_prints=False)
async def health_sweep(names: list[str] | None = None) -> list[HealthResult]:
    """Probe the enabled integrations (or ``names``), record the sweep, publish a table."""
    await apply_prefect_variables()  # Prefect Variables fill unset settings
    sweep_id = uuid4().hex
    results = await probe_integrations(names, sweep_id)
    _artifact = publish_health_artifact(results, sweep_id)
    emit(get_run_logger(), probe_lines(results))
    return results
