"""``GET /metrics``: Junction's own state in the Prometheus exposition format.

Per service: health score, success rate, p95 latency, up (1) or down (0), open alerts;
and whether the in-process monitor runs. Needs the token (Prometheus sends it with
``authorization: {credentials: ...}`` in its scrape config).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from junction.monitor import ServiceHealth
from junction.service.deps import StateDep, require_token

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_token)])


class _Snapshot(Collector):
    """One scrape's metrics, from a health table already computed."""

    def __init__(self, rows: list[ServiceHealth], open_alerts: dict[str, int], monitoring: bool):
        self.rows = rows
        self.open_alerts = open_alerts
        self.monitoring = monitoring

    def collect(self) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "junction_service_health_score",
            "Health score 0-100 over the window.",
            labels=["service"],
        )
        success = GaugeMetricFamily(
            "junction_service_success_rate",
            "Success rate 0-1 over the window (probes and live calls).",
            labels=["service"],
        )
        p95 = GaugeMetricFamily(
            "junction_service_latency_p95_seconds",
            "95th percentile latency of successful calls over the window.",
            labels=["service"],
        )
        up = GaugeMetricFamily(
            "junction_service_up",
            "1 when the service is not down (its last checks did not all fail), else 0.",
            labels=["service"],
        )
        status = GaugeMetricFamily(
            "junction_service_status",
            "1 for the service's current status (healthy, warning, critical, unknown).",
            labels=["service", "status"],
        )
        alerts = GaugeMetricFamily(
            "junction_service_open_alerts", "Unresolved alerts of the service.", labels=["service"]
        )
        for r in self.rows:
            if r.score is not None:
                score.add_metric([r.service], r.score)
            if r.success_rate is not None:
                success.add_metric([r.service], r.success_rate)
            if r.p95_latency_ms is not None:
                p95.add_metric([r.service], r.p95_latency_ms / 1000.0)
            up.add_metric([r.service], 0.0 if r.down else 1.0)
            status.add_metric([r.service, r.status], 1.0)
            alerts.add_metric([r.service], float(self.open_alerts.get(r.service, 0)))
        yield from (score, success, p95, up, status, alerts)
        yield GaugeMetricFamily(
            "junction_monitor_running",
            "1 when the monitor loop runs inside this service.",
            value=1.0 if self.monitoring else 0.0,
        )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Exposition text."}},
)
async def prometheus_metrics(state: StateDep) -> Response:
    """Junction's health in the Prometheus text format."""
    rows, _ = await state.health()
    open_alerts: dict[str, int] = {}
    for a in state.open_alerts():
        open_alerts[a.service] = open_alerts.get(a.service, 0) + 1
    # The live view reuses a verdict while its service is unchanged: the same verdicts,
    # alerts and monitor state give the same text (rendering 1,000 services costs ~50 ms).
    # The verdicts are kept with the text, so their ids cannot be reused meanwhile.
    key = (tuple(map(id, rows)), tuple(sorted(open_alerts.items())), state.monitor_running)
    last = _LAST.get("exposition")
    if last is not None and last[0] == key:
        return Response(last[2], media_type=CONTENT_TYPE_LATEST)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(rows, open_alerts, state.monitor_running))
    text = generate_latest(registry)
    _LAST["exposition"] = (key, rows, text)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


_LAST: dict[str, tuple[Any, list[ServiceHealth], bytes]] = {}
"""The latest exposition: its key, the verdicts it shows, its text."""
