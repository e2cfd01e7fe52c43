"""SLA: uptime, error budget and multiwindow burn rates with exact numbers; bounded
memory; restore from the metrics store; the burn-rate alert in the engine."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from junction.alerting.model import Severity
from junction.alerting.rules import BurnRateWindow, SlaPolicy
from junction.alerting.sla import SlaTracker
from junction.store import MetricsStore
from tests.alerting_helpers import T0, at, config, engine, snap


def feed(tracker: SlaTracker, service: str, minutes: int, per_minute: int, bad_last: int) -> None:
    """``minutes`` minutes ending at T0 (the last one is T0's minute), ``per_minute``
    observations each; the last ``bad_last`` minutes fail entirely."""
    for m in range(minutes):
        minute_start = T0 - timedelta(minutes=minutes - 1 - m)
        bad = m >= minutes - bad_last
        for i in range(per_minute):
            tracker.observe(service, minute_start + timedelta(seconds=i), not bad)


def test_burn_rates_exact() -> None:
    tracker = SlaTracker(SlaPolicy(target=0.99))
    feed(tracker, "okta", minutes=60, per_minute=10, bad_last=5)
    status = tracker.status("okta", T0 + timedelta(seconds=30))
    fast, slow = status.burn_rates
    # 1 h: 50 failed of 600 -> error rate 1/12 -> burn (1/12)/0.01 = 8.333...
    assert fast.long_rate == pytest.approx(25 / 3)
    assert fast.short_rate == pytest.approx(100.0)  # 5 min: all 50 failed
    assert not fast.firing  # 8.33 < 14.4
    # 6 h holds the same 600; 30 min: 50 of 300 -> burn 16.67 >= 6
    assert slow.long_rate == pytest.approx(25 / 3)
    assert slow.short_rate == pytest.approx(50 / 3)
    assert slow.firing and status.burn_severity is Severity.WARNING
    assert status.total == 600 and status.failed == 50
    assert status.uptime == pytest.approx(550 / 600)
    assert status.error_budget_remaining == pytest.approx(1 - (50 / 600) / 0.01)


def test_fast_burn_is_critical() -> None:
    tracker = SlaTracker(SlaPolicy(target=0.99))
    feed(tracker, "okta", minutes=60, per_minute=10, bad_last=10)
    status = tracker.status("okta", T0)
    fast = status.burn_rates[0]
    assert fast.long_rate == pytest.approx(100 / 600 / 0.01)  # 16.67 >= 14.4
    assert fast.firing and status.burn_severity is Severity.CRITICAL
    assert "fast burn" in status.describe()


def test_short_window_resets_the_alert_quickly() -> None:
    tracker = SlaTracker(SlaPolicy(target=0.99))
    feed(tracker, "okta", minutes=60, per_minute=10, bad_last=10)
    # five good minutes later the 5-minute window is clean: no more fast burn
    for m in range(1, 6):
        for i in range(10):
            tracker.observe("okta", T0 + timedelta(minutes=m, seconds=i), True)
    status = tracker.status("okta", T0 + timedelta(minutes=5))
    assert status.burn_rates[0].short_rate == 0.0
    assert not status.burn_rates[0].firing


def test_windows_cover_whole_minutes_including_the_current_one() -> None:
    tracker = SlaTracker(SlaPolicy(target=0.9))
    tracker.observe("a", T0 - timedelta(minutes=5), False)  # 6th minute back: outside 5m
    tracker.observe("a", T0 - timedelta(minutes=4, seconds=59), False)  # in minute -5: outside
    tracker.observe("a", T0 - timedelta(minutes=4), True)
    tracker.observe("a", T0 + timedelta(seconds=59), False)
    assert tracker.burn_rate("a", timedelta(minutes=5), T0 + timedelta(seconds=59)) == (
        pytest.approx(0.5 / 0.1)
    )
    assert tracker.burn_rate("nobody", timedelta(minutes=5), T0) == 0.0


def test_memory_is_bounded() -> None:
    policy = SlaPolicy(target=0.99, window=timedelta(days=1))
    tracker = SlaTracker(policy)
    for m in range(3 * 24 * 60):  # three days, one observation per minute
        ts = T0 + timedelta(minutes=m)
        tracker.observe("okta", ts, m % 7 != 0)
        if m % 60 == 0:
            tracker.evict(ts)
    end = T0 + timedelta(minutes=3 * 24 * 60 - 1)
    status = tracker.status("okta", end)
    assert len(tracker._minutes["okta"].data) <= 6 * 60 + 2
    assert len(tracker._hours["okta"].data) <= 24 + 2
    assert status.total == 24 * 60  # exactly the last day's 24 hour buckets


def test_restore_from_store_matches_live_feed(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics")
    live = SlaTracker(SlaPolicy(target=0.99))
    probes, calls = [], []
    for m in range(60):
        ts = T0 - timedelta(minutes=59 - m)
        ok = m < 50
        probes.append(
            {
                "ts": ts,
                "sweep_id": f"s{m}",
                "service": "okta",
                "ok": ok,
                "latency_ms": 5.0,
                "breaker_state": "closed",
            }
        )
        # the probe's own call row (source=probe) must not be counted twice
        calls.append(
            {
                "ts": ts,
                "service": "okta",
                "action": "health",
                "method": "GET",
                "path": "/",
                "ok": ok,
                "latency_ms": 5.0,
                "attempts": 1,
                "breaker_state": "closed",
                "source": "probe",
            }
        )
        calls.append(
            {
                "ts": ts + timedelta(seconds=1),
                "service": "okta",
                "action": "x",
                "method": "GET",
                "path": "/",
                "ok": True,
                "latency_ms": 5.0,
                "attempts": 1,
                "breaker_state": "closed",
                "source": "workflow",
            }
        )
        live.observe("okta", ts, ok)
        live.observe("okta", ts + timedelta(seconds=1), True)
    store.append("probes", probes)
    store.append("calls", calls)
    store.flush()
    restored = SlaTracker(SlaPolicy(target=0.99))
    assert restored.restore(store, T0) == 120
    a, b = live.status("okta", T0), restored.status("okta", T0)
    assert (a.total, a.failed) == (b.total, b.failed) == (120, 10)
    assert [r.long_rate for r in a.burn_rates] == [r.long_rate for r in b.burn_rates]
    assert restored.restore(store, T0) == 120  # replaces, never doubles
    assert restored.status("okta", T0).total == 120
    store.close()


def test_burn_rate_alert_in_the_engine(tmp_path: Path) -> None:
    eng = engine(tmp_path, config("sla: {target: 0.99}\n"))
    feed(eng.sla, "okta", minutes=60, per_minute=10, bad_last=10)
    # the 15-minute window says 97 % success (no threshold breached) but the budget burns
    r = eng.evaluate([snap("okta", T0, rate=0.97)], now=T0)
    burn = [a for a in r.fired if a.rule == "burn_rate"]
    assert len(burn) == 1 and burn[0].severity is Severity.CRITICAL
    assert "fast burn" in burn[0].message
    # recovery: 5 good minutes reset the short windows -> resolved
    for m in range(1, 31):
        for i in range(10):
            eng.sla.observe("okta", T0 + timedelta(minutes=m, seconds=i), True)
    r = eng.evaluate([snap("okta", at(30 * 60))], now=at(30 * 60))
    assert [a.rule for a in r.resolved] == ["burn_rate"]


def test_custom_burn_windows() -> None:
    policy = SlaPolicy(
        target=0.999,
        burn_rates=(
            BurnRateWindow(
                "page", timedelta(minutes=10), timedelta(minutes=1), 100.0, Severity.CRITICAL
            ),
        ),
    )
    tracker = SlaTracker(policy)
    feed(tracker, "x", minutes=10, per_minute=10, bad_last=1)  # 10 of 100 failed
    (rate,) = tracker.status("x", T0).burn_rates
    assert rate.long_rate == pytest.approx(0.1 / 0.001)
    assert rate.short_rate == pytest.approx(1.0 / 0.001)
    assert rate.firing


def test_sla_report_for_every_service(tmp_path: Path) -> None:
    from junction.alerting.sla import sla_report

    with MetricsStore(tmp_path / "metrics") as store:
        store.append(
            "probes",
            [
                {
                    "ts": T0 - timedelta(hours=h),
                    "sweep_id": "s",
                    "service": name,
                    "ok": ok,
                    "latency_ms": 1.0,
                    "breaker_state": "closed",
                }
                for h in range(10)
                for name, ok in (("a", True), ("b", h % 2 == 0))
            ],
        )
        store.flush()
        report = {s.service: s for s in sla_report(store, T0)}
    assert report["a"].uptime == 1.0 and report["a"].error_budget_remaining == 1.0
    assert report["b"].uptime == 0.5
    assert report["b"].error_budget_remaining == pytest.approx(1 - 0.5 / 0.01)
