"""Contract: every Alertmanager action, sent to Prism serving Alertmanager's API v2
description (v0.25.0, the version Debian ships), is accepted; a request that breaks the
spec is rejected. Prism serves Swagger 2.0 without its ``/api/v2`` basePath, so the base
URL is Prism's root. The same actions run against a real Alertmanager in
tests/test_alertmanager.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from integrations.alertmanager import (
    AlertmanagerClient,
    CreateSilenceParams,
    GetStatusParams,
    ListAlertsParams,
    Matcher,
    PostableAlert,
    PostAlertsParams,
)
from integrations.base import RetryPolicy
from integrations.breaker import CircuitBreaker
from integrations.errors import BadRequestError
from junction.clients import get_client

pytestmark = pytest.mark.prism

ONCE = RetryPolicy(max_attempts=1, backoff_base=0.0, backoff_max=0.0, jitter=0.0)


def client(prism_servers: dict[str, str]) -> AlertmanagerClient:
    c = get_client(
        "alertmanager",
        base_url=prism_servers["alertmanager"],
        retry=ONCE,
        breaker=CircuitBreaker("alertmanager", failure_threshold=1000),
    )
    assert isinstance(c, AlertmanagerClient)
    return c


async def test_post_alerts_accepted(prism_servers: dict[str, str]) -> None:
    now = datetime.now(UTC)
    async with (c := client(prism_servers)):
        sent = await c.post_alerts(
            PostAlertsParams(
                alerts=[
                    PostableAlert(
                        labels={"alertname": "DiskFull", "host": "db1"},
                        annotations={"summary": "disk 95%"},
                        startsAt=now,
                        endsAt=now + timedelta(hours=1),
                        generatorURL="http://junction.local/graph",
                    ),
                    PostableAlert(labels={"alertname": "CpuHot"}),
                ]
            )
        )
    assert sent.accepted == 2


async def test_list_alerts_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        alerts = await c.list_alerts(
            ListAlertsParams(
                filter=['alertname="DiskFull"', 'severity=~"crit.*"'],
                silenced=False,
                receiver="team-.*",
            )
        )
    assert alerts and alerts[0].fingerprint


async def test_create_silence_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        # With a caller's key: GET /silences (lookup), then POST /silences.
        silence = await c.create_silence(
            CreateSilenceParams(
                matchers=[
                    Matcher(name="alertname", value="DiskFull"),
                    Matcher(name="host", value="db.*", is_regex=True, is_equal=False),
                ],
                comment="maintenance",
                created_by="ops",
                duration_minutes=30,
                idempotency_key="run-1:silence",
            )
        )
    assert silence.silence_id and not silence.existing


async def test_get_status_and_health_accepted(prism_servers: dict[str, str]) -> None:
    async with (c := client(prism_servers)):
        status = await c.get_status(GetStatusParams())
        health = await c.health_check()
    assert status.version_info.version and health.ok, health.error


async def test_malformed_request_rejected(prism_servers: dict[str, str]) -> None:
    """An alert without its required ``labels``: Prism answers 400 (the spec's own)."""
    async with (c := client(prism_servers)):
        with pytest.raises(BadRequestError):
            await c.request("POST", "/alerts", action="raw", json=[{"annotations": {}}])
