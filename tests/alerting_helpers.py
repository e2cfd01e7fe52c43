"""Shared helpers of the alerting tests: snapshots, configurations and a test channel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from junction.alerting.channels import CHANNELS
from junction.alerting.config import parse_config
from junction.alerting.engine import AlertEngine, ServiceSnapshot
from junction.alerting.model import DeliveryOutcome, DeliveryResult, Notification
from junction.alerting.rules import AlertingConfig
from junction.cli import app
from junction.scoring import WindowStats, health_score
from junction.settings import Settings, get_settings

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SETTINGS = Settings()


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def snap(
    service: str,
    now: datetime,
    *,
    rate: float = 1.0,
    p95: float | None = 100.0,
    count: int = 100,
    down: bool | None = None,
    annotation: str | None = None,
) -> ServiceSnapshot:
    """A snapshot with the given success rate and p95, scored by the real formula."""
    successes = round(rate * count)
    stats = WindowStats(
        as_of=now,
        count=count,
        successes=successes,
        success_rate=successes / count,
        p50_latency_ms=p95 if successes else None,
        p95_latency_ms=p95 if successes else None,
        uptime=successes / count,
        seconds_since_last_error=None if successes == count else 5.0,
        last_error_at=None if successes == count else now - timedelta(seconds=5),
        last_error_class=None if successes == count else "APIConnectionError",
        last_breaker_state="closed",
    )
    return ServiceSnapshot(
        service,
        stats,
        health_score(stats, SETTINGS, now=now),
        down=down,
        consecutive_failures=5 if down else 0,
        annotation=annotation,
    )


def healthy(services: Iterable[str], now: datetime) -> list[ServiceSnapshot]:
    """Healthy snapshots of ``services``."""
    return [snap(s, now) for s in services]


def failing(services: Iterable[str], now: datetime, rate: float = 0.0) -> list[ServiceSnapshot]:
    """Snapshots of ``services`` failing at ``rate`` success (critical by default)."""
    return [snap(s, now, rate=rate) for s in services]


BASE_YAML = """
channels:
  chat: {type: webhook, url: "http://127.0.0.1:9/chat"}
  oncall: {type: webhook, url: "http://127.0.0.1:9/oncall"}
  boss: {type: webhook, url: "http://127.0.0.1:9/boss"}
routes:
  warning: [chat]
  critical: [chat, oncall]
"""


def config(extra: str = "", services: Iterable[str] = ()) -> AlertingConfig:
    """A configuration from ``BASE_YAML`` plus ``extra`` YAML."""
    known = {"okta", "gitlab", "jira", "db", *services, *(f"app{i}" for i in range(20))}
    return parse_config(BASE_YAML + extra, settings=SETTINGS, known_services=known)


def engine(tmp_path: Path, cfg: AlertingConfig | None = None, **kw: object) -> AlertEngine:
    """An engine on ``tmp_path/alerts.db``."""
    return AlertEngine(tmp_path / "alerts.db", cfg or config(), **kw)  # type: ignore[arg-type]


def queued(eng: AlertEngine) -> list[Notification]:
    """Every notification in the outbox, oldest first."""
    return [row.notification for row in eng.outbox.rows()]


class FakeChannel:
    """A test double of an external channel: records sends, answers from a script.

    ``outcomes`` is consumed one per send; when empty, every send is DELIVERED.
    """

    def __init__(
        self,
        name: str,
        kind: str = "webex",
        outcomes: list[DeliveryResult] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.name = name
        self.kind = kind
        # as the real channel of that type: the registry says whether its vendor dedupes
        self.dedupes = CHANNELS[kind].dedupes if kind in CHANNELS else False
        self.outcomes = list(outcomes or [])
        self.delay = delay
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> DeliveryResult:
        self.sent.append(notification)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.outcomes:
            return self.outcomes.pop(0)
        return DeliveryResult(DeliveryOutcome.DELIVERED)

    async def aclose(self) -> None:
        return None


def use_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``JUNCTION_HOME`` at ``tmp_path`` (no alerting file, default alert database)."""
    for key in ("JUNCTION_ALERTS_DB", "JUNCTION_ALERTING_FILE", "JUNCTION_STORE_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    return tmp_path


def alerts_cli(*args: str, columns: int = 200) -> Result:
    """Run ``junction alerts ARGS`` in-process (``COLUMNS`` set: output is not a terminal)."""
    return CliRunner().invoke(app, ["alerts", *args], env={"COLUMNS": str(columns)})
