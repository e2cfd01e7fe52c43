"""The monitoring flow: one sweep with sliding-window health scores and alerts.

Deployed as ``monitor-integrations`` (prefect.yaml, every 30 s). Each run is a new
process, so the windows are restored from the metrics store's recent probes and live
calls before the sweep. For sub-10-second detection run ``junction monitor --every 5s``
(a loop in one long-running process) instead of a shorter schedule.
"""

from __future__ import annotations

from uuid import uuid4

from prefect import flow

from junction.monitor import SweepResult  # light: no HTTP stack at import
from tasks.monitoring import monitor_sweep, publish_service_health


@flow(name="monitor-integrations", log_prints=False)
async def monitor_integrations(names: list[str] | None = None) -> SweepResult:
    """Probe the enabled integrations (or ``names``), score them, alert, publish a table."""
    sweep_id = uuid4().hex
    result = await monitor_sweep(names, sweep_id)
    _artifact = publish_service_health(result)
    return result
