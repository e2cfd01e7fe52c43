"""One incident pages once: inhibition, the monitor's recovery rule, resolve_wait, and the
warning when alerts reach nobody."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from junction.alerting.config import AlertConfigError
from junction.alerting.engine import AlertEngine
from junction.alerting.inhibition import DEFAULT_INHIBIT_RULES
from junction.alerting.model import NotificationKind
from junction.alerting.rules import default_config, delivery_warning
from junction.monitor.alerts import check_alerting
from junction.monitor.state import ServiceState
from junction.recovery import judge_window
from junction.scoring import Observation, ServiceWindow
from junction.settings import get_settings
from tests.alerting_helpers import (
    SETTINGS,
    alerts_cli,
    at,
    config,
    engine,
    healthy,
    queued,
    snap,
    use_home,
)


def _outage(tmp_path: Path, cfg_extra: str = "") -> tuple[list, list]:
    eng = engine(tmp_path, config(cfg_extra))
    try:
        eng.evaluate(healthy(["okta"], at(0)), now=at(0))
        fired = eng.evaluate([snap("okta", at(5), rate=0.0, down=True)], now=at(5))
        first = queued(eng)
        # Recovered: every rule fine again.
        eng.evaluate([snap("okta", at(10), down=False)], now=at(10))
        return fired.fired, [first, queued(eng)]
    finally:
        eng.close()


def test_an_outage_pages_once_and_its_symptoms_are_recorded_as_inhibited(tmp_path: Path) -> None:
    fired, (first, everything) = _outage(tmp_path)
    rules = {a.rule: a for a in fired}
    assert {"down", "success_rate", "health_score"} <= set(rules)
    assert rules["down"].inhibited_by is None
    for rule in ("success_rate", "health_score"):
        assert rules[rule].inhibited_by == "okta:down"
    firing = [n for n in first if n.kind is NotificationKind.FIRING]
    assert sorted(n.channel for n in firing) == ["chat", "oncall"]  # one page, one chat line
    assert "inhibited by okta:down" in firing[0].text
    assert firing[0].title.startswith("CRITICAL okta: down")
    resolved = [n for n in everything if n.kind is NotificationKind.RESOLVED]
    assert sorted(n.channel for n in resolved) == ["chat", "oncall"]
    # Recorded and visible: the API/CLI JSON carries inhibited_by.
    assert rules["success_rate"].to_json()["inhibited_by"] == "okta:down"


def test_inhibition_off_is_data(tmp_path: Path) -> None:
    fired, (first, _) = _outage(tmp_path, "inhibit: []\n")
    assert all(a.inhibited_by is None for a in fired)
    assert "inhibited by" not in first[0].text
    assert config().inhibit == DEFAULT_INHIBIT_RULES == default_config(SETTINGS).inhibit


def test_custom_rules_and_their_validation() -> None:
    cfg = config(
        "inhibit:\n  - {name: db-down, source: [down], target: response_time, equal: [team]}\n"
    )
    (rule,) = cfg.inhibit
    assert (rule.name, rule.source, rule.target, rule.equal) == (
        "db-down",
        ("down",),
        ("response_time",),
        ("team",),
    )
    bad = (
        "inhibit:\n"
        "  - {source: down, target: [down, success_rate]}\n"
        "  - {source: down, target: health_score, equal: []}\n"
        "  - {source: down, target: latency}\n"
    )
    with pytest.raises(AlertConfigError) as err:
        config(bad)
    text = str(err.value)
    assert "unknown rule 'latency'" in text
    with pytest.raises(AlertConfigError) as err:
        config(bad.replace("  - {source: down, target: latency}\n", ""))
    text = str(err.value)
    assert "down is both source and target" in text
    assert "must name at least one label" in text


def _obs(seconds: float, ok: bool) -> Observation:
    return Observation(at(seconds), ok, 120.0 if ok else 5.0, None if ok else "ServerError")


def test_recovery_shows_within_one_probe_and_the_sla_keeps_the_minutes(tmp_path: Path) -> None:
    state = ServiceState("okta", ServiceWindow(timedelta(minutes=15)))
    eng = engine(tmp_path)
    history = [_obs(t, True) for t in range(0, 600, 30)]
    history += [_obs(600, False), _obs(600.5, False), _obs(630, False)]  # ~40 s outage
    for o in history:
        state.add(o, o.ts)
        eng.observe("okta", [o])
    down = state.health(at(630), SETTINGS, 2)
    assert down.down and down.status == "critical"
    state.add(_obs(660, True), at(660))
    eng.observe("okta", [_obs(660, True)])
    up = state.health(at(660), SETTINGS, 2)
    assert not up.down and up.status == "healthy", up.reasons
    assert up.reasons[0].startswith("recovered: 3 failures")
    assert up.success_rate is not None and up.success_rate < 0.9  # shown as measured
    old = state.health(at(660), SETTINGS, 2, recovery=False)
    assert old.status == "critical"  # the old rule: critical until the window clears
    sla = eng.sla_status("okta", at(660))
    assert sla.total == len(history) + 1 and sla.failed == 3
    eng.close()


def test_flapping_stays_down_until_quiet_and_noise_is_not_an_outage() -> None:
    flaps = [_obs(t, True) for t in range(0, 300, 30)]
    flaps += [_obs(300, False), _obs(300.5, False), _obs(330, True)]
    flaps += [_obs(360, False), _obs(360.5, False)] + [_obs(390 + 30 * i, True) for i in range(3)]
    verdict = judge_window(flaps, down_after=2)
    assert verdict.down and verdict.flapping and "flapping: 2 outages" in verdict.reason
    quiet = flaps + [_obs(480 + 30 * i, True) for i in range(10)]
    assert not judge_window(quiet, down_after=2).down
    # ~1 % noise: isolated failures, then two in a row are not yet an outage (4 needed).
    noisy = [_obs(t, t % 1500 != 0) for t in range(30, 3000, 30)]
    noisy += [_obs(3000, False), _obs(3000.5, False)]
    verdict = judge_window(noisy, down_after=2)
    assert verdict.needed == 4 and not verdict.down
    assert not judge_window([*noisy, _obs(3030, False)], down_after=2).down
    assert judge_window([*noisy, _obs(3030, False), _obs(3060, False)], down_after=2).down


def test_resolve_wait_keeps_a_flap_in_one_incident(tmp_path: Path) -> None:
    eng = engine(tmp_path, config("grouping: {resolve_wait: 5m}\n"))
    try:
        eng.evaluate([snap("okta", at(0), rate=0.0, down=True)], now=at(0))
        eng.evaluate([snap("okta", at(30), down=False)], now=at(30))
        eng.evaluate([snap("okta", at(60), rate=0.0, down=True)], now=at(60))
        pages = [n for n in queued(eng) if n.channel == "oncall"]
        assert [n.kind for n in pages] == [NotificationKind.FIRING]
        for t in range(90, 500, 30):
            eng.evaluate([snap("okta", at(t), down=False)], now=at(t))
        kinds = [n.kind for n in queued(eng) if n.channel == "oncall"]
        assert kinds == [NotificationKind.FIRING, NotificationKind.RESOLVED]
    finally:
        eng.close()


def test_an_older_alert_database_gains_the_new_columns(tmp_path: Path) -> None:
    engine(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "alerts.db")
    conn.execute("ALTER TABLE alerts DROP COLUMN inhibited_by")
    conn.execute("ALTER TABLE groups DROP COLUMN quiet_s")
    conn.commit()
    conn.close()
    fired, _ = _outage(tmp_path)
    assert any(a.inhibited_by == "okta:down" for a in fired)


def test_no_channel_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_home(tmp_path, monkeypatch)
    assert alerts_cli("list").output.strip() == "no active alerts"  # nothing to warn about
    with AlertEngine(tmp_path / "alerts.db", default_config(SETTINGS)) as eng:
        eng.evaluate([snap("okta", at(0), rate=0.0, down=True)], now=at(0))
    result = alerts_cli("list")
    assert result.exit_code == 0
    assert result.output.count("no alert channel configured: alerts are only recorded") == 1
    assert "JUNCTION_ALERTING_FILE" in result.output
    assert asyncio.run(check_alerting(get_settings())) == delivery_warning(default_config(SETTINGS))
    assert delivery_warning(config()) is None
    unrouted = replace(config(), routes={})
    assert "no route sends to them" in (delivery_warning(unrouted) or "")
    # Configured: nothing said.
    alerting = tmp_path / "alerting.yaml"
    alerting.write_text(
        'channels: {chat: {type: webhook, url: "http://127.0.0.1:9/x"}}\n'
        "routes: {critical: [chat]}\n"
    )
    monkeypatch.setenv("JUNCTION_ALERTING_FILE", str(alerting))
    get_settings.cache_clear()
    assert "no alert channel" not in alerts_cli("list").output


def test_a_noisy_service_remembers_its_noise_beyond_the_window() -> None:
    state = ServiceState("github", ServiceWindow(timedelta(minutes=15)))
    n = 0
    for i in range(2880):  # a day of probes, one isolated failure in 50 (2 %)
        state.add(_obs(i * 30, i % 50 != 25), at(i * 30))
        n = i
    for i in range(n + 1, n + 41):  # a clean window: no noise visible in it
        state.add(_obs(i * 30, True), at(i * 30))
    t = (n + 41) * 30
    for k in range(2):
        state.add(_obs(t + k, False), at(t + k))
    assert not state.health(at(t + 1), SETTINGS, 2).down  # two random failures in a row
    for k in range(2, 4):
        state.add(_obs(t + k, False), at(t + k))
    assert state.health(at(t + 3), SETTINGS, 2).down  # four: an outage
    assert state.health(at(t + 1), SETTINGS, 2, recovery=False).down  # the old rule: down


def test_usual_noise_is_not_judged_but_more_failures_are() -> None:
    items = [_obs(i * 30, i not in (3, 9, 17, 25)) for i in range(33)]  # 4 of 33 failed
    assert judge_window(items, down_after=2).judged == items  # no memory: judged as is
    usual = judge_window(items, down_after=2, noise_floor=0.02)
    assert len(usual.judged) == 29 and usual.reason.startswith("usual noise: 4")
    worse = [_obs(i * 30, i % 4 != 1) for i in range(33)]  # 8 of 33: more than 2 % explains
    assert judge_window(worse, down_after=2, noise_floor=0.02).judged == worse
