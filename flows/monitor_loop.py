"""Continuous monitoring as a Prefect deployment: one flow run an hour, a sweep every 5 s.

A scheduled run per sweep costs a new Python process each time (~15 s on 2 cores; a
30 s schedule kept the machine at load ~2.5 and the server pre-scheduled ~100 runs). Here
one flow run keeps a :class:`~junction.monitor.Monitor` open and sweeps on its
drift-free tick (``every_seconds``) until ``run_seconds`` after its *scheduled* start, so
hourly runs do not drift; the deployment's concurrency limit of 1 makes the next
scheduled run wait for this one and take over (one process start per hour). The UI shows
one run per hour; its log has every status change and alert transition as it happens
and a summary at the end; the ``service-health`` artifact is the last sweep. A service
turning warning/critical or healthy again is a Prefect event
(``junction.integration.degraded`` / ``.recovered``, :mod:`junction.events`).

Several workers share the monitoring as shards: the run of shard ``i`` of ``n`` (parameters
``shard``/``shards``; default the settings ``JUNCTION_MONITOR_SHARD``/``_SHARDS``) probes
and alerts on only the integrations it owns (rendezvous hashing of the names,
:func:`integrations.sweep.owned_by`), and publishes ``service-health-shard-<i>-of-<n>``.
``make serve`` deploys one ``monitor-continuous-shard-<i>-of-<n>`` deployment per shard
(:mod:`deployments.shards`) when ``JUNCTION_MONITOR_SHARDS`` is above 1. All shards share
the one alert database, which serializes their evaluations.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Failed, State

from analytics.anomaly_monitor import anomaly_judges
from flows.runlog import emit, sweep_lines
from flows.variables import apply_prefect_variables
from integrations.sweep import check_shard
from junction.alerting.state import AlertDatabaseError
from junction.monitor import Monitor, MonitorEvent, SweepResult, check_alerting
from junction.settings import get_settings
from tasks.monitoring import ARTIFACT_KEY, publish_service_health


def sweeps_for(run_seconds: float, every_seconds: float, started: datetime | None) -> int:
    """Sweeps left for a run meant to last ``run_seconds`` from ``started`` (at least 1)."""
    elapsed = 0.0 if started is None else (datetime.now(UTC) - started).total_seconds()
    return max(1, int(max(0.0, run_seconds - max(0.0, elapsed)) // every_seconds))


@flow(name="monitor-continuous", log_prints=False)
async def monitor_continuous(
    every_seconds: float = 5.0,
    run_seconds: float = 3600.0,
    names: list[str] | None = None,
    shard: int | None = None,
    shards: int | None = None,
) -> dict[str, Any] | State[Any]:
    """Sweep every ``every_seconds`` for ``run_seconds`` from the scheduled start.

    Args:
        every_seconds: Seconds between sweep starts (drift-free).
        run_seconds: How long this run monitors (the schedule's interval).
        names: Integrations to monitor (default: every enabled one).
        shard: The shard of the integrations this run owns (default
            ``JUNCTION_MONITOR_SHARD``).
        shards: Monitor runs sharing the integrations (default
            ``JUNCTION_MONITOR_SHARDS``).

    Returns:
        Sweeps made, probes sent and the last sweep's status counts; ``Failed`` (one
        line) for a bad shard, alerting configuration or alert database.
    """
    logger = get_run_logger()
    await apply_prefect_variables()  # Prefect Variables fill unset settings
    settings = get_settings()
    shard = settings.monitor_shard if shard is None else shard
    shards = settings.monitor_shards if shards is None else shards
    try:
        check_shard(shard, shards)
    except ValueError as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc))
    try:
        await check_alerting(settings)
    except (ValueError, AlertDatabaseError) as exc:  # the alerting file, a channel, alerts.db
        logger.error("%s", exc)
        return Failed(message=str(exc))
    scheduled = flow_run.scheduled_start_time
    sweeps = sweeps_for(run_seconds, every_seconds, scheduled)
    last: list[SweepResult] = []
    probes = 0

    def on_event(event: MonitorEvent) -> None:
        level = logging.WARNING if event.kind in ("alert", "error", "clock_jump") else logging.INFO
        logger.log(level, "%s", event.message)

    def on_sweep(result: SweepResult) -> None:
        nonlocal probes
        last[:] = [result]
        probes += len(result.probes)

    async with Monitor(
        settings,
        names=names,
        on_event=on_event,
        shard=shard,
        shards=shards,
        judges=anomaly_judges(settings),
    ) as mon:
        restored = await mon.restore()
        logger.info(
            "monitoring %d integrations%s every %g s: %d sweeps (%d observations restored)",
            len(mon.names),
            f" (shard {shard} of {shards})" if shards > 1 else "",
            every_seconds,
            sweeps,
            restored,
        )
        started = await mon.run_forever(
            every_seconds, on_sweep=on_sweep, max_sweeps=sweeps, handle_signals=False
        )
    out: dict[str, Any] = {"sweeps": started, "probes": probes, "shard": shard, "shards": shards}
    if last:
        key = ARTIFACT_KEY if shards == 1 else f"{ARTIFACT_KEY}-shard-{shard}-of-{shards}"
        _artifact = publish_service_health(last[0], key=key)
        emit(logger, sweep_lines(last[0]))
        out["counts"] = last[0].counts()
    return out
