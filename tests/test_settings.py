"""Settings: defaults, precedence, validation, and the README's table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from junction.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_product_plan_defaults() -> None:
    s = Settings()
    assert (s.ai_workflow_enabled, s.enhanced_monitoring_enabled) == (True, True)
    assert (s.cross_service_orchestration_enabled, s.workflow_optimization_enabled) == (True, True)
    assert (s.response_time_warning_ms, s.response_time_critical_ms) == (1000, 5000)
    assert (s.success_rate_warning, s.success_rate_critical) == (0.95, 0.90)
    assert (s.health_score_warning, s.health_score_critical) == (80, 60)


def test_argument_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPONSE_TIME_WARNING_MS", "1500")
    monkeypatch.setenv("JUNCTION_SWEEP_CONCURRENCY", "7")
    monkeypatch.setenv("AI_WORKFLOW_ENABLED", "false")
    s = Settings()
    assert s.response_time_warning_ms == 1500 and s.sweep_concurrency == 7
    assert s.ai_workflow_enabled is False
    assert Settings(response_time_warning_ms=900).response_time_warning_ms == 900
    monkeypatch.setenv("JUNCTION_RESPONSE_TIME_WARNING_MS", "1200")  # prefixed form works too
    monkeypatch.delenv("RESPONSE_TIME_WARNING_MS")
    assert Settings().response_time_warning_ms == 1200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"response_time_warning_ms": 6000}, "RESPONSE_TIME_WARNING_MS must be <="),
        ({"success_rate_warning": 0.8}, "SUCCESS_RATE_WARNING must be >="),
        ({"health_score_warning": 50}, "HEALTH_SCORE_WARNING must be >="),
        ({"success_rate_critical": -0.1}, "greater than or equal to 0"),
        ({"response_time_critical_ms": -5}, "greater than 0"),
    ],
)
def test_nonsense_thresholds_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**kwargs)


def test_enabled_integrations(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["a", "b", "c"]
    assert Settings().enabled_names(names) == names
    assert Settings(integrations="c, a").enabled_names(names) == ["a", "c"]
    with pytest.raises(ValueError, match="unknown integrations: zz"):
        Settings(integrations="a,zz").enabled_names(names)


def test_integration_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUNCTION_AZURE_DEVOPS_BASE_URL", "https://dev.azure.com/acme")
    monkeypatch.setenv("JUNCTION_AZURE_DEVOPS_PASSWORD", "pat-123456")
    cfg = Settings().integration("azure_devops")
    assert cfg.base_url == "https://dev.azure.com/acme"
    assert cfg.password is not None and cfg.password.get_secret_value() == "pat-123456"
    assert "pat-123456" not in repr(cfg)
    assert Settings().integration("azure_devops", base_url="https://x").base_url == "https://x"


def test_every_setting_has_a_description_and_is_in_the_readme() -> None:
    from junction.cli.config import config_rows

    readme = (ROOT / "README.md").read_text()
    for env, _default, description in config_rows():
        assert description, f"{env} has no description"
        assert f"`{env}`" in readme, f"{env} missing from README (run junction config --markdown)"
    table = subprocess.run(
        [sys.executable, "-m", "junction", "config", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    start = readme.index("<!-- config-table:start -->")
    end = readme.index("<!-- config-table:end -->")
    assert re.sub(r"\s+", " ", table.strip()) == re.sub(
        r"\s+", " ", readme[start:end].replace("<!-- config-table:start -->", "").strip()
    )
