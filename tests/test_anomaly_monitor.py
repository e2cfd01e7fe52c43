"""The monitor's anomaly alerts: a per-minute latency history in a real metrics store warms
the judge, live observations go through a real alert hook and engine, and a level shift
raises ``okta:anomaly`` only as the sensitivity and the alert threshold allow."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from analytics.anomaly_monitor import AnomalyJudge, anomaly_judges
from junction.alerting.engine import AlertEngine
from junction.monitor.alerts import EngineHook
from junction.monitor.state import ServiceState
from junction.scoring import Observation, ServiceWindow
from junction.settings import Settings, get_settings
from junction.store import MetricsStore
from tests.alerting_helpers import alerts_cli, use_home

HISTORY_MINUTES = 2 * 1440
LIVE_MINUTES = 40
# Minutes on a real-time base: the CLI's silence starts at the wall clock's now.
START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=HISTORY_MINUTES)
LIVE = START + timedelta(minutes=HISTORY_MINUTES)


def latencies(shift: float, minutes: int = LIVE_MINUTES) -> np.ndarray:
    """A daily rhythm with noise, shifted up by ``shift`` ms over the live minutes.

    A shift of 10 ms (2.5 noise sd) peaks at confidence ~0.96 within 40 minutes: an
    anomaly at medium sensitivity (0.95), not at low (0.98), not at alert_threshold 0.99.
    """
    rng = np.random.default_rng(7)
    n = HISTORY_MINUTES + minutes
    values = 100 + 20 * np.sin(np.arange(n) * 2 * np.pi / 1440) + rng.normal(0, 4, n)
    values[HISTORY_MINUTES:] += shift
    return values


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of one probe a minute of ``okta`` in a metrics store."""
    root = tmp_path_factory.mktemp("metrics")
    values = latencies(0.0)[:HISTORY_MINUTES]
    rows = [
        {
            "id": f"p{i}",
            "ts": START + timedelta(minutes=i, seconds=5),
            "sweep_id": f"s{i}",
            "service": "okta",
            "ok": True,
            "status": 200,
            "latency_ms": float(v),
            "breaker_state": "closed",
        }
        for i, v in enumerate(values)
    ]
    with MetricsStore(root) as store:
        store.append("probes", rows)
        store.flush()
    return root


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield use_home(tmp_path, monkeypatch)
    get_settings.cache_clear()


def run(home: Path, store_root: Path, judge: AnomalyJudge, values: np.ndarray) -> list[str]:
    """Warm ``judge`` from the store, then feed ``values`` (one probe a minute from
    ``LIVE``) through a real hook and engine, evaluating each minute.

    Returns:
        Every transition line of the hook's evaluations.
    """
    settings = Settings(home=home, enhanced_monitoring_enabled=False)

    async def feed() -> list[str]:
        hook = EngineHook(settings, channels={}, judges=[judge])
        with MetricsStore(store_root) as store:
            hook.restore(store, LIVE)
        state = ServiceState("okta", ServiceWindow(timedelta(minutes=5)))
        lines: list[str] = []
        for i, value in enumerate(values):
            obs = Observation(LIVE + timedelta(minutes=i, seconds=5), True, float(value))
            state.add(obs, obs.ts)
            hook.observe("okta", obs)
            now = LIVE + timedelta(minutes=i, seconds=30)
            health = state.health(now, settings, settings.monitor_down_after)
            lines += await hook.evaluate([health], now)
        await hook.aclose()
        return lines

    return asyncio.run(feed())


def live(shift: float, minutes: int = LIVE_MINUTES) -> np.ndarray:
    """The live minutes of :func:`latencies`."""
    return latencies(shift, minutes)[HISTORY_MINUTES:]


def fired(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("alert WARNING okta:anomaly firing")]


def test_a_level_shift_raises_okta_anomaly_at_medium(home: Path, store_root: Path) -> None:
    judge = AnomalyJudge("medium", 0.95)
    lines = run(home, store_root, judge, live(10.0))
    (line,) = fired(lines)
    assert "anomaly: latency p95 " in line and "usually ~" in line and "confidence 0.9" in line


def test_alert_threshold_099_gates_the_same_shift(home: Path, store_root: Path) -> None:
    assert fired(run(home, store_root, AnomalyJudge("medium", 0.99), live(10.0))) == []


def test_low_sensitivity_does_not_call_it_an_anomaly(home: Path, store_root: Path) -> None:
    assert fired(run(home, store_root, AnomalyJudge("low", 0.95), live(10.0))) == []


def test_a_healthy_noisy_series_raises_nothing(home: Path, store_root: Path) -> None:
    lines = run(home, store_root, AnomalyJudge("high", 0.92), live(0.0))
    assert not any("anomaly" in line for line in lines)


def test_a_large_shift_fires_then_resolves_when_it_ends(home: Path, store_root: Path) -> None:
    values = live(0.0, minutes=60)
    values[:15] += 60.0  # a 15-minute slowdown, then back to normal
    lines = run(home, store_root, AnomalyJudge("medium", 0.95), values)
    assert len(fired(lines)) == 1
    assert "alert okta:anomaly resolved" in lines


def test_silencing_rule_anomaly_keeps_it_quiet(home: Path, store_root: Path) -> None:
    out = alerts_cli("silence", "--service", "okta", "--rule", "anomaly", "--for", "2h")
    assert out.exit_code == 0, out.output
    lines = run(home, store_root, AnomalyJudge("medium", 0.95), live(10.0))
    assert len(fired(lines)) == 1  # recorded, but not notified
    with AlertEngine.from_settings(Settings(home=home)) as engine:
        (alert,) = engine.active_alerts()
    assert alert.fingerprint == "okta:anomaly" and alert.silenced_by == "s1"


def test_the_setting_switches_the_judges_off(home: Path) -> None:
    assert anomaly_judges(Settings(home=home, anomaly_alerts_enabled=False)) == []
    (judge,) = anomaly_judges(Settings(home=home, anomaly_sensitivity="high"))
    assert judge.sensitivity == "high" and judge.alert_threshold == 0.95


def test_a_fresh_judge_without_history_stays_quiet(home: Path, tmp_path: Path) -> None:
    with MetricsStore(tmp_path / "empty") as store:
        lines = run(home, store.root, AnomalyJudge("high", 0.92), live(400.0, minutes=30))
    assert lines == []


def test_the_history_is_fed_a_share_per_evaluation(home: Path, store_root: Path) -> None:
    judge = AnomalyJudge("medium", 0.95, warm_rows=1000)
    with MetricsStore(store_root) as store:
        assert judge.restore_rows(judge.history(store, LIVE)) == HISTORY_MINUTES
    settings = Settings(home=home)
    state = ServiceState("okta", ServiceWindow(timedelta(minutes=5)))
    obs = Observation(LIVE + timedelta(seconds=5), True, 100.0)
    state.add(obs, obs.ts)
    judge.observe("okta", obs)
    health = state.health(LIVE + timedelta(seconds=30), settings, settings.monitor_down_after)
    # 2,880 history minutes and the live one at 1,000 a time: no verdict while warming.
    for i in range(2):
        assert judge([health], LIVE + timedelta(minutes=1 + i)) == {}
        assert judge.warming("okta")
    verdict = judge([health], LIVE + timedelta(minutes=3))
    assert verdict["okta"]["anomaly"].severity is None and not judge.warming("okta")
    assert judge([], LIVE) == {} and judge.warm(["gitlab"]) == 0


def test_errors_where_there_were_none_raise_the_error_rate_series(
    home: Path, store_root: Path
) -> None:
    judge = AnomalyJudge("medium", 0.95, warm_rows=10_000)
    with MetricsStore(store_root) as store:
        judge.restore(store, LIVE)
    settings = Settings(home=home)
    state = ServiceState("okta", ServiceWindow(timedelta(minutes=5)))
    verdicts = []
    for i, value in enumerate(live(0.0, minutes=20)):
        for ok in (True, i < 5):  # from minute 5 on, half the calls fail
            obs = Observation(LIVE + timedelta(minutes=i, seconds=5), ok, float(value))
            state.add(obs, obs.ts)
            judge.observe("okta", obs)
        now = LIVE + timedelta(minutes=i, seconds=30)
        health = state.health(now, settings, settings.monitor_down_after)
        verdicts.append(judge([health], now)["okta"]["anomaly"])
    assert all(v.severity is None for v in verdicts[:6])
    firing = [v for v in verdicts if v.severity is not None]
    assert firing and "error rate 50.0%, usually ~0.0%" in firing[0].message


def test_the_monitor_hands_its_judges_to_the_alert_hook(home: Path) -> None:
    from junction.monitor import Monitor

    judge = AnomalyJudge()

    async def main() -> list[object]:
        mon = Monitor(Settings(home=home), names=["okta"], record=False, judges=[judge])
        try:
            await mon.open()
            assert isinstance(mon.alerts, EngineHook)
            return list(mon.alerts.judges)
        finally:
            await mon.aclose()

    assert asyncio.run(main()) == [judge]
