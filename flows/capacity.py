"""The capacity-watch flow (deployment ``capacity-watch``, every 5 minutes): samples
Junction's own resources, judges their trend and raises the scale-out signal.

Each run takes one sample of every measure (:mod:`analytics.capacity`): per work pool of
the Prefect server, the work-queue depth (scheduled runs past their start time), the runs
in the Late state, the workers online and the age of the newest worker heartbeat; this
host's CPU and memory; the metrics store's size. It appends them to the sample log, judges
the window's trend against the ``JUNCTION_CAPACITY_*`` thresholds and, when a threshold
is crossed now or forecast to be within ``JUNCTION_CAPACITY_HORIZON_HOURS``:

* emits the Prefect event ``junction.capacity.scale-out`` (resource ``junction.capacity``,
  payload ``forecast_at``, ``reasons``, ``findings``) when the signal starts, for an
  automation (``deployments/automations.py``) or an operator to act on;
* raises the alert ``junction:capacity`` through the alert engine (label ``signal:
  capacity``, the message naming what crosses when), which resolves
  when the signal ends;
* says it in the run's log, and publishes the findings as the table artifact
  ``capacity-watch``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from analytics.capacity import (
    COLUMNS,
    HEARTBEAT_AGE,
    LATE_RUNS,
    QUEUE_DEPTH,
    WORKERS_ONLINE,
    Assessment,
    assess,
    capacity_alert,
    host_samples,
    limits_from_settings,
    sample_log,
    store_samples,
)
from flows.runlog import run_logger
from junction.events import CAPACITY_SCALE_OUT, emit
from junction.markdown import markdown_rows
from junction.settings import Settings, get_settings

EVENT_RESOURCE = {"prefect.resource.id": "junction.capacity", "prefect.resource.name": "junction"}


def prefect_samples(now: datetime) -> pd.DataFrame:
    """Per work pool: queue depth, Late runs, workers online, newest heartbeat's age."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType

    rows: list[tuple[datetime, str, str, float]] = []
    with get_client(sync_client=True) as client:
        for pool in client.read_work_pools():
            in_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[pool.name]))
            past_due = FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                expected_start_time=FlowRunFilterExpectedStartTime(before_=now),
            )
            late = FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))
            )
            depth = client.count_flow_runs(flow_run_filter=past_due, work_pool_filter=in_pool)
            n_late = client.count_flow_runs(flow_run_filter=late, work_pool_filter=in_pool)
            workers = client.read_workers_for_work_pool(pool.name)
            online = sum(1 for w in workers if str(w.status).upper().endswith("ONLINE"))
            beats = [w.last_heartbeat_time for w in workers if w.last_heartbeat_time]
            rows += [
                (now, QUEUE_DEPTH, pool.name, float(depth)),
                (now, LATE_RUNS, pool.name, float(n_late)),
                (now, WORKERS_ONLINE, pool.name, float(online)),
            ]
            if beats:
                age = (now - max(beats)).total_seconds()
                rows.append((now, HEARTBEAT_AGE, pool.name, max(age, 0.0)))
    return pd.DataFrame(rows, columns=COLUMNS)


@task(name="capacity-sample", cache_policy=NO_CACHE, persist_result=False)
def take_samples(settings: Settings, now: datetime) -> pd.DataFrame:
    """One sample of every measure (Prefect API, this host, the metrics store)."""
    parts = [prefect_samples(now), host_samples(now), store_samples(settings.metrics_dir, now)]
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def scale_out_event(assessment: Assessment) -> Any:
    """Emit ``junction.capacity.scale-out`` for a signalling assessment."""
    forecast_at = assessment.forecast_at
    return emit(
        CAPACITY_SCALE_OUT,
        {**EVENT_RESOURCE, "junction.signal": "scale-out"},
        payload={
            "forecast_at": forecast_at.isoformat() if forecast_at else None,
            "reasons": assessment.reasons,
            "findings": [
                {
                    "metric": f.metric,
                    "scope": f.scope,
                    "status": f.status,
                    "current": f.current,
                    "limit": f.limit,
                    "crossing_at": f.crossing_at.isoformat() if f.crossing_at else None,
                }
                for f in assessment.findings
                if f.signals
            ],
        },
    )


@flow(name="capacity-watch", log_prints=False)
def capacity_watch(now: datetime | None = None) -> dict[str, Any]:
    """Sample, judge the trend, signal scale-out (see the module docstring).

    Args:
        now: The sample's time (default: the wall clock; with a time zone).

    Returns:
        ``signal`` (bool), ``forecast_at`` (ISO or None), ``reasons``, ``samples`` (taken
        this run), ``event`` (whether this run emitted the scale-out event).
    """
    settings = get_settings()
    log = run_logger()
    now = now or datetime.now(UTC)
    samples = take_samples(settings, now)
    store = sample_log(settings)
    store.append(samples)
    window = timedelta(hours=settings.capacity_window_hours)
    assessment = assess(
        store.read(since=now - window),
        limits_from_settings(settings),
        now=now,
        horizon=timedelta(hours=settings.capacity_horizon_hours),
        window=window,
        min_samples=settings.capacity_min_samples,
    )
    for finding in assessment.findings:
        log.info("%s: %s", finding.status, finding.message)
    was = store.get("signal") == "on"
    emitted = False
    if assessment.signal:
        when = assessment.forecast_at
        log.warning(
            "scale out (first threshold crossed %s): %s",
            f"at {when:%Y-%m-%d %H:%M} UTC" if when else "now",
            "; ".join(assessment.reasons),
        )
        if not was:  # once per episode: an automation acts on the start of the signal
            emitted = scale_out_event(assessment) is not None
            log.info("event %s %s", CAPACITY_SCALE_OUT, "emitted" if emitted else "not sent")
    elif was:
        log.info("scale-out signal ended")
    store.set("signal", "on" if assessment.signal else "off")
    for line in capacity_alert(settings, assessment):
        log.warning("%s", line)
    rows = [
        {
            "metric": f.metric,
            "scope": f.scope,
            "status": f.status,
            "now": "" if f.current is None else round(f.current, 2),
            "limit": f.limit,
            "trend per day": "" if f.slope_per_day is None else round(f.slope_per_day, 2),
            "crossing (UTC)": f"{f.crossing_at:%Y-%m-%d %H:%M}" if f.crossing_at else "",
        }
        for f in assessment.findings
    ]
    if rows:
        create_table_artifact(
            key="capacity-watch",
            table=markdown_rows(rows),
            description="Capacity watch: each measure against its threshold",
        )
    forecast_at = assessment.forecast_at
    return {
        "signal": assessment.signal,
        "forecast_at": forecast_at.isoformat() if forecast_at else None,
        "reasons": assessment.reasons,
        "samples": len(samples),
        "event": emitted,
    }


__all__ = ["capacity_watch", "prefect_samples", "scale_out_event"]
