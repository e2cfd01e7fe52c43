"""Capacity watch: samples in, the scale-out signal (or not) and its forecast time out;
the sample log; the alert through the alert engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from analytics.capacity import (
    CPU,
    QUEUE_DEPTH,
    STORE_BYTES,
    SampleLog,
    assess,
    limits_from_settings,
)
from junction.settings import Settings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
LIMITS = {QUEUE_DEPTH: 10.0, CPU: 85.0}


def series(metric: str, scope: str, values: list[float], end: datetime = NOW) -> pd.DataFrame:
    ts = [end - STEP * (len(values) - 1 - i) for i in range(len(values))]
    return pd.DataFrame({"ts": ts, "metric": metric, "scope": scope, "value": values})


def test_a_rising_queue_is_forecast_to_cross_with_the_time_it_does() -> None:
    # +0.25 runs per 5 min = 3 an hour, 4 now: reaches 10 in 2 hours.
    depth = series(QUEUE_DEPTH, "junction-process", [1 + 0.25 * i for i in range(13)])
    cpu = series(CPU, "host-a", [40.0, 42.0, 41.0, 39.0, 40.0, 41.0])
    result = assess(pd.concat([depth, cpu]), LIMITS, now=NOW)

    assert result.signal
    by_metric = {f.metric: f for f in result.findings}
    queue = by_metric[QUEUE_DEPTH]
    assert queue.status == "forecast" and queue.current == pytest.approx(3.75)
    assert queue.slope_per_day == pytest.approx(72.0)
    # median of the last three (3.5, 3.75, 4) = 3.75; (10 - 3.75) / 3 per hour = 2 h 05 min
    assert queue.crossing_at == NOW + timedelta(hours=2, minutes=5)
    assert result.forecast_at == queue.crossing_at
    assert "forecast to reach 10 at 2026-12-07 14:05 UTC" in queue.message
    assert by_metric[CPU].status == "ok" and not by_metric[CPU].signals
    assert result.reasons == [queue.message]
    table = result.frame()
    assert list(table["status"]) == ["ok", "forecast"]
    assert list(table["scope"]) == ["host-a", "junction-process"]


def test_a_breach_now_signals_at_now_and_one_spike_does_not() -> None:
    hot = series(CPU, "host-a", [60.0, 70.0, 80.0, 90.0, 95.0, 96.0])
    spike = series(CPU, "host-b", [30.0, 31.0, 30.0, 29.0, 99.0, 30.0])
    result = assess(pd.concat([hot, spike]), LIMITS, now=NOW, horizon=timedelta(minutes=1))
    status = {f.scope: f.status for f in result.findings}
    assert status == {"host-a": "breached", "host-b": "ok"}
    assert result.signal and result.forecast_at == NOW


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ([5.0, 5.0, 5.0, 5.0, 5.0, 5.0], "ok"),  # flat: never crosses
        ([9.0, 8.0, 7.0, 6.0, 5.0, 4.0], "ok"),  # falling
        ([1.0, 1.01, 1.02, 1.03, 1.04, 1.05], "ok"),  # rising, crosses in ~6 days
        ([50.0, 60.0, 70.0], "not enough data"),  # above the limit, but 3 samples
        ([], "not enough data"),
    ],
)
def test_no_signal_without_a_crossing_within_the_horizon_or_enough_samples(
    values: list[float], status: str
) -> None:
    frame = series(QUEUE_DEPTH, "pool", values)
    if not values:  # another measure's samples only: the queue has none in the window
        frame = series(QUEUE_DEPTH, "pool", [1.0], end=NOW - timedelta(days=3))
    result = assess(frame, LIMITS, now=NOW, min_samples=6)
    (finding,) = result.findings
    assert finding.status == status and not result.signal and result.forecast_at is None
    if status == "not enough data":
        assert finding.message.startswith("queue_depth of pool: not enough data (")
    if values and values[1] > values[0] and status == "ok":
        assert finding.crossing_at is not None and finding.crossing_at > NOW + timedelta(days=3)


def test_a_rise_too_slow_to_date_is_no_crossing_not_an_overflow() -> None:
    # Float noise on a flat measure: a slope so small the crossing would be past
    # datetime's range (a fresh-clone CI run of the capacity flow failed on this).
    values = [2.0, 2.0 + 1e-13, 2.0, 2.0 + 2e-13, 2.0, 2.0 + 3e-13]
    (finding,) = assess(series(QUEUE_DEPTH, "pool", values), LIMITS, now=NOW).findings
    assert finding.status == "ok" and finding.crossing_at is None


def test_store_growth_per_day_and_the_limits_from_settings() -> None:
    limits = limits_from_settings(Settings(capacity_store_gb=2.0, capacity_queue_threshold=3))
    assert limits[STORE_BYTES] == 2e9 and limits[QUEUE_DEPTH] == 3
    # 1 GB growing 0.1 GB an hour: 2.4 GB a day, reaches 2 GB in ~10 h.
    grow = series(STORE_BYTES, "metrics-store", [1e9 + i * 1e8 / 12 for i in range(12)])
    (finding,) = assess(grow, {STORE_BYTES: 2e9}, now=NOW).findings
    assert finding.status == "forecast"
    assert finding.slope_per_day == pytest.approx(2.4e9)
    assert "GB" in finding.message


def test_bad_samples_are_one_line_naming_the_column() -> None:
    with pytest.raises(ValueError, match=r"^capacity samples: missing column\(s\) scope$"):
        assess(pd.DataFrame({"ts": [NOW], "metric": [CPU], "value": [1.0]}), LIMITS)


def test_sample_log_keeps_samples_prunes_old_ones_and_the_signal_state(tmp_path: Path) -> None:
    log = SampleLog(tmp_path / "capacity.db")
    old = series(CPU, "h", [10.0], end=NOW - timedelta(days=40))
    assert log.append(old) == 1
    assert log.append(series(CPU, "h", [20.0, 30.0])) == 2
    back = log.read()
    assert list(back["value"]) == [20.0, 30.0]  # the 40-day-old sample pruned
    assert back["ts"].iloc[-1] == NOW
    assert list(log.read(since=NOW)["value"]) == [30.0]
    assert log.get("signal") is None
    log.set("signal", "on")
    assert SampleLog(tmp_path / "capacity.db").get("signal") == "on"


def test_the_signal_raises_and_resolves_a_junction_alert(tmp_path: Path) -> None:
    from analytics.capacity import capacity_alert

    settings = Settings(home=tmp_path)
    hot = series(CPU, "host-a", [90.0] * 6)
    fired = capacity_alert(settings, assess(hot, LIMITS, now=NOW))
    assert len(fired) == 1 and fired[0].startswith("alert junction:capacity firing: ")
    assert "scale out: cpu_percent of host-a is 90%, at or above 85%" in fired[0]

    from junction.alerting.engine import AlertEngine

    with AlertEngine.from_settings(settings) as engine:
        (alert,) = engine.active_alerts()
    assert alert.service == "junction" and alert.labels["signal"] == "capacity"
    assert alert.severity.value == "critical"

    cool = series(CPU, "host-a", [30.0] * 6, end=NOW + timedelta(minutes=30))
    later = NOW + timedelta(minutes=30)
    resolved = capacity_alert(settings, assess(cool, LIMITS, now=later))
    resolved += capacity_alert(settings, assess(cool, LIMITS, now=later + timedelta(minutes=10)))
    assert "alert junction:capacity resolved" in resolved


def test_the_example_automation_notifies_on_the_scale_out_event() -> None:
    from uuid import uuid4

    from deployments.automations import scale_out_automation
    from junction.events import CAPACITY_SCALE_OUT

    block = uuid4()
    automation = scale_out_automation(block)
    assert automation.trigger.expect == {CAPACITY_SCALE_OUT}  # type: ignore[union-attr]
    (action,) = automation.actions
    assert action.type == "send-notification" and action.block_document_id == block  # type: ignore[union-attr]
    assert "event.payload.forecast_at" in action.body  # type: ignore[union-attr]


def test_a_forecast_only_signal_is_a_warning_alert(tmp_path: Path) -> None:
    from analytics.capacity import capacity_alert
    from junction.alerting.engine import AlertEngine

    settings = Settings(home=tmp_path)
    rising = series(QUEUE_DEPTH, "pool", [1 + 0.25 * i for i in range(13)])
    (line,) = capacity_alert(settings, assess(rising, LIMITS, now=NOW))
    assert "forecast to reach 10 at 2026-12-07 14:05 UTC" in line
    with AlertEngine.from_settings(settings) as engine:
        (alert,) = engine.active_alerts()
    assert alert.severity.value == "warning"
