"""The product plan's monitoring endpoints, under ``/api/v2/workflows/enhanced/monitoring``.

``POST .../start`` starts the monitor loop in this process (or reports the running one);
``GET .../health`` is the health table and ``GET .../metrics`` the windowed call and probe
metrics, both filterable by service (``?service=`` repeatable) and window (``?window=``
seconds or a duration: ``900``, ``15m``, ``1d``). All need the token.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from junction.durations import duration_seconds
from junction.monitor import ServiceHealth
from junction.service.aggregates import StoreUnreadable
from junction.service.deps import StateDep, require_token
from junction.service.live import result_ttl
from junction.service.lookups import invalid
from junction.service.state import MonitorInfo, ServiceState, store_unavailable
from junction.service.windowed import RELATIVE_ERROR

router = APIRouter(
    prefix="/api/v2/workflows/enhanced/monitoring",
    tags=["monitoring"],
    dependencies=[Depends(require_token)],
)

ServiceFilter = Annotated[
    list[str] | None,
    Query(
        alias="service",
        description="Only these services (repeat the parameter for several).",
        max_length=1000,
    ),
]
MAX_WINDOW_SECONDS = 90 * 86400
"""The longest window asked for (90 days)."""


def window_query(
    window: Annotated[
        str | None,
        Query(
            max_length=32,
            description="The window: seconds (900) or a duration (15m, 1h, 1d), 1 second "
            "to 90 days (default JUNCTION_MONITOR_WINDOW_SECONDS).",
        ),
    ] = None,
) -> float | None:
    """Seconds of ``?window=`` (the grammar ``/api/v2/services/{name}`` reads too).

    Raises:
        ApiError: 422 naming ``query.window``.
    """
    if window is None:
        return None
    seconds = duration_seconds(window)
    if seconds is None:
        raise invalid("query.window", f"{window!r} is not a duration (seconds, or 15m, 1h, 1d)")
    # At least a second: a tinier window rounds down to an empty timedelta.
    if not 1 <= seconds <= MAX_WINDOW_SECONDS:
        message = f"{seconds:g} s is outside 1 s to {MAX_WINDOW_SECONDS} s (90d)"
        raise invalid("query.window", message)
    return seconds


WindowFilter = Annotated[float | None, Depends(window_query)]


class MonitorStatus(BaseModel):
    """The in-process monitor."""

    running: bool = Field(description="Its loop is running.")
    started: bool = Field(description="This request started it.")
    started_at: datetime | None = Field(description="When it was last started.")
    interval_seconds: float | None = Field(description="Seconds between sweeps.")
    services: list[str] = Field(description="Services it monitors.")
    sweeps: int = Field(description="Sweeps completed since it started.")
    last_sweep_at: datetime | None = Field(description="When its latest sweep finished.")
    last_error: str | None = Field(description="Why it last failed, if it did.")
    restarts: int = Field(description="Times it was restarted after a failure.")

    @classmethod
    def of(cls, info: MonitorInfo, started: bool) -> MonitorStatus:
        """From the state's :class:`MonitorInfo`."""
        return cls(started=started, **info.__dict__)


class StartRequest(BaseModel):
    """Options of ``monitoring/start`` (the body may be omitted)."""

    # strict: JSON's true is not a number of seconds (lax mode would take it as 1).
    model_config = {"extra": "forbid", "strict": True}

    interval_seconds: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Seconds between sweeps (default JUNCTION_MONITOR_INTERVAL_SECONDS).",
    )


class ServiceHealthModel(BaseModel):
    """One row of the health table."""

    service: str
    status: str = Field(description="healthy, warning, critical or unknown.")
    score: float | None = Field(description="Health score 0-100.")
    ok: bool | None = Field(description="Whether the latest probe succeeded.")
    latency_ms: float | None = Field(description="The latest probe's latency.")
    http_status: int | None = Field(description="The latest probe's HTTP status.")
    error_class: str | None
    error: str | None
    success_rate: float | None = Field(description="Over the window (probes and live calls).")
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    uptime: float | None = Field(description="Time-weighted up fraction over the window.")
    breaker_state: str | None
    observations: int
    failures: int
    consecutive_failures: int
    down: bool
    checked_at: datetime | None
    as_of: datetime
    reasons: list[str]
    alerts: list[str] = Field(description="Active alerts: rule/severity/state.")

    @classmethod
    def of(cls, health: ServiceHealth) -> ServiceHealthModel:
        """From the monitor's :class:`ServiceHealth`."""
        return cls.model_validate(health.to_json())


class HealthResponse(BaseModel):
    """The health table."""

    window_seconds: float
    source: str = Field(description="'monitor' (the running loop) or 'store'.")
    counts: dict[str, int] = Field(description="Services per status.")
    services: list[ServiceHealthModel]


_PCT = (
    "{} latency of successes (interpolated, as DuckDB's quantile_cont). Windows of an "
    f"hour or more merge cached hourly histograms: within {RELATIVE_ERROR:.0%} of the exact "
    "value; shorter windows are exact."
)


class MetricsRow(BaseModel):
    """One service's calls or probes over the window."""

    service: str
    source: str = Field(description="'probes' or 'calls'.")
    requests: int
    failures: int
    success_rate: float | None
    p50_latency_ms: float | None = Field(description=_PCT.format("p50"))
    p95_latency_ms: float | None = Field(description=_PCT.format("p95"))
    mean_latency_ms: float | None = Field(description="Mean latency of every row (exact).")
    last_at: datetime | None = Field(description="Newest row's time (exact).")


class MetricsResponse(BaseModel):
    """Windowed metrics from the metrics store."""

    window_seconds: float
    since: datetime
    services: list[MetricsRow]


@router.post("/start", summary="Start the monitor (or report it)", response_model=MonitorStatus)
async def start_monitoring(state: StateDep, body: StartRequest | None = None) -> MonitorStatus:
    """Start the monitor loop in this process unless it runs; report where it stands."""
    started = await state.start_monitor(body.interval_seconds if body is not None else None)
    return MonitorStatus.of(state.monitor_info(), started)


_MODELS: dict[int, tuple[ServiceHealth, ServiceHealthModel]] = {}
"""Rows already converted, by the identity of the verdict (the live view reuses verdicts
while a service's rows do not change: a table of 1,000 converts only what changed)."""
_MODELS_MAX = 20_000


def _model(health: ServiceHealth) -> ServiceHealthModel:
    hit = _MODELS.get(id(health))
    if hit is not None and hit[0] is health:
        return hit[1]
    if len(_MODELS) >= _MODELS_MAX:
        _MODELS.clear()
    model = ServiceHealthModel.of(health)
    _MODELS[id(health)] = (health, model)  # the verdict is kept: its id is not reused
    return model


@router.get("/health", summary="The health table", response_model=HealthResponse)
async def monitoring_health(
    state: StateDep,
    service: ServiceFilter = None,
    window: WindowFilter = None,
) -> Response:
    """Status, score, success rate, latency percentiles and uptime of each service."""
    rows, source = await state.health(service or (), window)
    counts = dict.fromkeys(("healthy", "warning", "critical", "unknown"), 0)
    for r in rows:
        counts[r.status] += 1
    body = HealthResponse(
        window_seconds=state.window_seconds(window),
        source=source,
        counts=counts,
        services=[_model(r) for r in rows],
    )
    # Serialised here, once, from the validated model (the schema stays HealthResponse):
    # FastAPI would validate the thousand rows a second time.
    return Response(body.model_dump_json(), media_type="application/json")


_METRICS_SQL = """
SELECT service, '{table}' AS source, count(*) AS requests,
       count(*) FILTER (WHERE NOT ok) AS failures,
       avg(CASE WHEN ok THEN 1.0 ELSE 0.0 END) AS success_rate,
       quantile_cont(latency_ms, 0.5) FILTER (WHERE ok) AS p50_latency_ms,
       quantile_cont(latency_ms, 0.95) FILTER (WHERE ok) AS p95_latency_ms,
       avg(latency_ms) AS mean_latency_ms,
       max(ts) AS last_at
FROM {table}
WHERE ts >= $since AND date >= $day AND service IN (SELECT service FROM wanted)
GROUP BY service
"""


def _windowed_metrics(state: ServiceState, names: list[str], since: datetime) -> list[MetricsRow]:
    """Per service and source (probes, calls): counts, success rate, latency percentiles."""
    sql = "WITH wanted AS (SELECT unnest($names::VARCHAR[]) AS service) " + " UNION ALL ".join(
        _METRICS_SQL.format(table=t) for t in ("probes", "calls")
    )
    # `date` prunes partitions before any file is opened; `ts` is the exact bound.
    params = {"since": since, "day": since.date(), "names": names}
    # The reader's cursor holds the store's read lock: a compaction cannot swap files.
    with state.reader().cursor() as cur:
        records = cur.execute(sql + " ORDER BY service, source", params).fetchall()
        columns = [d[0] for d in cur.description or ()]
    return [MetricsRow.model_validate(dict(zip(columns, r, strict=True))) for r in records]


def _metrics_rows(
    state: ServiceState, names: list[str], since: datetime, now: datetime
) -> list[MetricsRow]:
    """From the cached hourly rollups when they cover the window, else the exact query."""
    rows = state.windowed.metrics(names, since, now)
    if rows is None:
        return _windowed_metrics(state, names, since)
    return [MetricsRow.model_validate(r) for r in rows]


def _render(row: dict[str, Any]) -> str:
    """One row of the answer as JSON (validated as :class:`MetricsRow`)."""
    return MetricsRow.model_validate(row).model_dump_json()


_RENDERED: dict[tuple[Any, ...], str] = {}
"""Rows of windows under an hour already rendered, by their values: between two reads
most services' rows are unchanged (only the services whose rows entered or left the
window differ), so only those are validated and serialised again."""
_RENDERED_MAX = 20_000


def _render_known(row: dict[str, Any]) -> str:
    key = tuple(row.values())
    text = _RENDERED.get(key)
    if text is None:
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.clear()
        text = _RENDERED[key] = _render(row)
    return text


def _metrics_body(state: ServiceState, names: list[str], seconds: float) -> str:
    """The JSON of :class:`MetricsResponse` over the last ``seconds``.

    From the windowed metrics' slide of this window length when it covers it (only rows
    that changed since the last read are rendered again), from the live view's rows
    (windows under an hour; unchanged rows not rendered again), else from
    :func:`_metrics_rows`.
    """
    now = datetime.now(UTC)
    since = now - timedelta(seconds=seconds)
    # Serialised once, from validated models (the schema stays MetricsResponse).
    rendered = state.windowed.rendered(names, since, now, _render)
    if rendered is None and not state.windowed.covers(since, now):
        rows = state.windowed.metrics(names, since, now)
        rendered = None if rows is None else [_render_known(r) for r in rows]
    if rendered is None:
        models = _metrics_rows(state, names, since, now)
        body = MetricsResponse(window_seconds=seconds, since=since, services=models)
        return body.model_dump_json()
    envelope = MetricsResponse(window_seconds=seconds, since=since, services=[]).model_dump_json()
    if not envelope.endswith('"services":[]}'):
        raise AssertionError("MetricsResponse must end with its services list")
    return envelope[: -len("[]}")] + "[" + ",".join(rendered) + "]}"


@router.get("/metrics", summary="Windowed call and probe metrics", response_model=MetricsResponse)
async def monitoring_metrics(
    state: StateDep,
    service: ServiceFilter = None,
    window: WindowFilter = None,
) -> Response:
    """Requests, failures, success rate and latency percentiles per service over the window,
    from the metrics store (probes and live calls apart)."""
    await state.live.refresh()  # rows written just before are counted
    names = state.service_names(service or ())
    seconds = state.window_seconds(window)

    async def compute() -> str:
        return await asyncio.to_thread(_metrics_body, state, names, seconds)

    try:
        # The store's files, looked at now: a late row in an old hour (which the live
        # view does not follow) changes the generation, so no stale answer is reused.
        generation = await asyncio.to_thread(state.windowed.check)
        # The same question over unchanged rows: the same answer (for a while, see result_ttl).
        body = await state.live.cached(
            ("metrics", tuple(names), seconds, generation), result_ttl(seconds), compute
        )
    except StoreUnreadable as exc:
        raise store_unavailable(exc) from None
    return Response(body, media_type="application/json")
