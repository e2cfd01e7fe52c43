"""The monitoring flow: one sweep with sliding-window health scores and alerts.

Deployed as ``monitor-integrations`` (prefect.yaml, every 30 s). Each run is a new
process, so the windows are restored from the metrics store's recent probes and live
calls before the sweep. For sub-10-second detection run ``junction monitor --every 5s``
(a loop in one long-running process) instead of a shorter schedule.

A bad alerting file or a corrupt alert database ends the run ``Failed`` with one line
naming the file and the fix (no traceback, nothing probed).
"""

from __future__ import annotations

from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.states import Failed, State

from flows.runlog import emit, sweep_lines
from flows.variables import apply_prefect_variables
from junction.alerting.state import AlertDatabaseError
from junction.monitor import SweepResult, check_alerting
from junction.settings import get_settings
from tasks.monitoring import monitor_sweep, publish_service_health


@flow(name="monitor-integrations", log_prints=False)
async def monitor_integrations(names: list[str] | None = None) -> SweepResult | State:
    """Probe the enabled integrations (or ``names``), score them, alert, publish a table."""
    await apply_prefect_variables()  # Prefect Variables fill unset settings
    try:
        unrouted = await check_alerting(get_settings())
    except (ValueError, AlertDatabaseError) as exc:  # the alerting file, a channel, alerts.db
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc))
    if unrouted:  # alerts only recorded: say so once per run
        get_run_logger().warning("%s", unrouted)
    sweep_id = uuid4().hex
    result = await monitor_sweep(names, sweep_id)
    _artifact = publish_service_health(result)
    emit(get_run_logger(), sweep_lines(result))
    return result
