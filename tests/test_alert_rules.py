"""Alerting configuration: defaults, overrides, and validation errors with file:line:field.

The file's limits, non-finite numbers and the CLI are in test_alert_config.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from junction.alerting.config import AlertConfigError, load_config
from junction.alerting.model import Severity
from junction.alerting.rules import default_config, parse_duration
from junction.settings import Settings

SERVICES = {"okta", "gitlab", "jira", "confluence", "svc"}
REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerting.yaml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str):
    return load_config(write(tmp_path, text), settings=Settings(), known_services=SERVICES)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(AlertConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_defaults_follow_the_settings() -> None:
    config = default_config(
        Settings(
            success_rate_warning=0.97,
            success_rate_critical=0.8,
            response_time_critical_ms=900,
            response_time_warning_ms=300,
        )
    )
    sr = config.thresholds("okta")["success_rate"]
    assert (sr.warning, sr.critical) == (0.97, 0.8)
    assert sr.judge(0.96) is Severity.WARNING
    assert sr.judge(0.79) is Severity.CRITICAL
    assert sr.judge(0.97) is None
    rt = config.thresholds("okta")["response_time"]
    assert rt.judge(301) is Severity.WARNING and rt.judge(901) is Severity.CRITICAL
    assert config.channels == {} and config.route(Severity.CRITICAL) == ()


def test_example_file_is_valid() -> None:
    config = load_config(REPO / "alerting.example.yaml", settings=Settings())
    assert config.route(Severity.CRITICAL) == ("chat", "oncall", "am")
    assert config.escalation.after == timedelta(minutes=15)
    assert config.upstream("gitlab") == ["okta"]
    assert config.sla.target_for("gitlab") == 0.995
    assert config.sla.target_for("okta") == 0.99
    assert config.dependency_wait == timedelta(seconds=5)
    assert config.route(Severity.CRITICAL, "gitlab") == ("chat", "oncall", "mail")


def test_overrides_inherit_the_other_bound(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
defaults:
  success_rate: {warning: 0.99, critical: 0.9}
services:
  gitlab:
    success_rate: {warning: 0.95}
    health_score: {enabled: false}
    labels: {team: dev}
dependencies:
  gitlab: [jira]
  jira: [okta]
""",
    )
    sr = config.thresholds("gitlab")["success_rate"]
    assert (sr.warning, sr.critical) == (0.95, 0.9)
    assert config.thresholds("okta")["success_rate"].warning == 0.99
    assert not config.thresholds("gitlab")["health_score"].enabled
    assert config.labels("gitlab") == {"team": "dev"}
    assert config.upstream("gitlab") == ["jira", "okta"]


def test_warning_looser_than_critical_names_line_and_field(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        """defaults:
  success_rate:
    warning: 0.8
    critical: 0.9
""",
    )
    assert message.startswith(f"{tmp_path / 'alerting.yaml'}:3: defaults.success_rate.warning:")
    assert "looser than critical" in message


def test_response_time_order_in_an_override(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        """services:
  gitlab:
    response_time: {warning: 6000}
""",
    )
    # inherits critical 5000 from the settings: 6000 > 5000 is looser
    assert ":3: services.gitlab.response_time.warning: warning (6000) is looser" in message


def test_negative_value(tmp_path: Path) -> None:
    message = error(tmp_path, "defaults:\n  response_time: {warning: -5, critical: 100}\n")
    assert ":2: defaults.response_time.warning: must not be negative, got -5" in message


def test_out_of_range_rate(tmp_path: Path) -> None:
    message = error(tmp_path, "defaults:\n  success_rate:\n    critical: 1.5\n")
    assert ":3: defaults.success_rate.critical: must be <= 1" in message


def test_unknown_channel_in_route(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        """channels:
  chat: {type: webhook, url: "http://127.0.0.1:9/x"}
routes:
  warning: [chat]
  critical:
    - chat
    - pager
""",
    )
    assert message.endswith(":7: routes.critical.1: unknown channel 'pager'")


def test_unknown_channel_type(tmp_path: Path) -> None:
    message = error(tmp_path, "channels:\n  chat:\n    type: telegram\n")
    assert ":3: channels.chat.type: unknown channel type 'telegram'" in message
    assert "expected one of: alertmanager, email, pagerduty, slack, webex, webhook" in message


def test_unknown_service(tmp_path: Path) -> None:
    message = error(tmp_path, "dependencies:\n  gitlab: [okta, gitlub]\n")
    assert ":2: dependencies.gitlab.1: unknown service 'gitlub' (did you mean 'gitlab'?)" in message


def test_unknown_key_and_several_problems_at_once(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        """defaults:
  success_rate: {warning: 0.9, critical: 0.8}
escalaton:
  after: 5m
services:
  nope: {}
""",
    )
    lines = message.splitlines()
    assert lines[0].endswith(":3: unknown field 'escalaton' (did you mean 'escalation'?)")
    assert lines[1].endswith(":6: services.nope: unknown service 'nope'")


def test_dependency_cycle(tmp_path: Path) -> None:
    message = error(tmp_path, "dependencies:\n  gitlab: [jira]\n  jira: [gitlab]\n")
    assert "dependency cycle: gitlab -> jira -> gitlab" in message


def test_maintenance_needs_an_end(tmp_path: Path) -> None:
    message = error(
        tmp_path, "maintenance:\n  - service: okta\n    starts_at: 2026-01-01T00:00:00Z\n"
    )
    assert ":2: maintenance.0: missing 'ends_at'" in message


def test_maintenance_parsed(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """maintenance:
  - id: up
    service: okta
    starts_at: 2026-01-01T00:00:00Z
    ends_at: 2026-01-01T02:00:00Z
""",
    )
    (window,) = config.maintenance
    assert window.active(datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert not window.active(datetime(2026, 1, 1, 2, tzinfo=UTC))


def test_bad_burn_rates(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        """sla:
  target: 1.0
  burn_rates:
    - {name: fast, long: 5m, short: 1h, factor: 14.4, severity: critical}
""",
    )
    assert ":2: sla.target: must be below 1" in message
    message = error(
        tmp_path,
        """sla:
  burn_rates:
    - {name: fast, long: 5m, short: 1h, factor: 14.4, severity: critical}
""",
    )
    assert ":3: sla.burn_rates.0.short: short window must not be longer" in message


def test_escalation_level_unknown_channel(tmp_path: Path) -> None:
    message = error(
        tmp_path,
        """channels:
  chat: {type: webhook, url: "http://127.0.0.1:9/x"}
escalation:
  after: 10m
  levels:
    - [chat]
    - [boss]
""",
    )
    assert ":7: escalation.levels.1.0: unknown channel 'boss'" in message


def test_invalid_yaml_has_a_line(tmp_path: Path) -> None:
    message = error(tmp_path, "defaults:\n  success_rate: {warning: 0.9\nroutes: []\n")
    assert "invalid YAML" in message and f"{tmp_path / 'alerting.yaml'}:" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AlertConfigError, match=r"absent\.yaml: no such file"):
        load_config(tmp_path / "absent.yaml", settings=Settings(), known_services=SERVICES)


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration(15) == timedelta(seconds=15)
    with pytest.raises(ValueError, match="negative"):
        parse_duration("-5m")
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
