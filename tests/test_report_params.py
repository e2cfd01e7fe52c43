"""The report's window end (``until``) and service filter, through the pipeline and the
analytics-report flow, and the dashboard's ``/reports/latest`` page its link artifact
points to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics.report.pipeline import collect, open_window
from analytics.report.render import write_report
from junction.settings import Settings
from junction.store import MetricsStore
from tests.service_helpers import ApiServer
from tests.test_report import FAST, NOW, _call, _probe  # rows relative to its NOW
from tests.test_service_web import logged_in

HOSTILE = "<script>alert(1)</script> \"q' [x](javascript:alert(1))"


def _alert(service: str, minutes_ago: float, message: str) -> dict[str, Any]:
    return {
        "ts": NOW - timedelta(minutes=minutes_ago),
        "fingerprint": f"fp-{service}",
        "service": service,
        "rule": "down",
        "severity": "critical",
        "state": "firing",
        "message": message,
        "labels_json": "{}",
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MetricsStore:
    """Two days of okta, gitlab and jira every 20 minutes; jira's calls stop a day ago; an
    alert per service, jira's message hostile."""
    store = MetricsStore(tmp_path_factory.mktemp("params") / "metrics")
    minutes = range(0, 48 * 60, 20)
    store.append("calls", [_call(s, True, m) for m in minutes for s in ("okta", "gitlab")])
    store.append("calls", [_call("jira", False, m) for m in minutes if m >= 24 * 60])
    store.append("probes", [_probe(s, True, m) for m in minutes for s in ("okta", "gitlab")])
    store.append("alerts", [_alert("gitlab", 30, "gitlab down"), _alert("jira", 25 * 60, HOSTILE)])
    store.flush()
    return store


def test_until_ends_the_window_at_the_newest_row_before_it(store: MetricsStore) -> None:
    settings = Settings(**FAST)
    run = open_window(store, settings, days=1, workers=1)
    assert run.data.end == NOW  # default: the newest row
    until = NOW - timedelta(hours=30, minutes=5)
    run = open_window(store, settings, days=1, workers=1, until=until)
    assert run.data.end == NOW - timedelta(hours=30, minutes=20)  # the last 20-minute tick
    assert run.data.start == run.data.end - timedelta(days=1)
    # Nothing at or before `until`: the empty-window report.
    run = open_window(store, settings, days=1, workers=1, until=NOW - timedelta(days=30))
    assert run.data.empty
    with pytest.raises(ValueError, match=r"until: .* has no time zone"):
        open_window(store, settings, until=datetime(2026, 1, 1))


def test_services_keep_only_their_rows_in_every_section(store: MetricsStore) -> None:
    data = collect(store, Settings(**FAST), days=2, workers=1, services=["jira", "okta"])
    assert list(data.health["service"]) == ["okta"]  # 24 h: jira's calls stopped before
    assert sorted(data.performance["service"]) == ["jira", "okta"]
    assert set(data.alerts_recent["service"]) == {"jira"}  # gitlab's alert left out
    assert {service for service, _ in data.forecasts} <= {"jira", "okta"}
    assert "services: only jira, okta" in data.notes
    # The window ends at the chosen services' newest row (all of them: okta's is NOW).
    assert data.end == NOW
    only_jira = open_window(store, Settings(**FAST), days=1, workers=1, services=["jira"])
    assert only_jira.data.end == NOW - timedelta(hours=24)


def test_an_unknown_service_is_one_line_naming_it(store: MetricsStore) -> None:
    with pytest.raises(ValueError) as info:
        open_window(store, Settings(**FAST), services=["okta", "octa", "nope"])
    message = str(info.value)
    assert message.startswith("services: unknown 'octa', 'nope'; known: ")
    assert "\n" not in message and "okta" in message


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from tests.prefect_harness import harness

    with harness():
        yield


@pytest.mark.prefect
def test_flow_filters_links_the_page_and_fails_one_line_on_unknown_services(
    prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: MetricsStore
) -> None:
    from prefect.artifacts import Artifact

    from flows.analytics_report import analytics_report
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("JUNCTION_STORE_DIR", str(store.root))
    monkeypatch.setenv("JUNCTION_SERVICE_URL", "https://junction.example/")
    monkeypatch.setenv("JUNCTION_ANALYTICS_UNCERTAINTY_SAMPLES", "60")
    get_settings.cache_clear()
    try:
        state = analytics_report(services=["okta", "nope"], return_state=True)
        assert state.is_failed()
        assert state.message == (f"services: unknown 'nope'; known: {', '.join(_catalog_names())}")
        assert not (tmp_path / "reports").exists()  # nothing analysed or written

        until = NOW - timedelta(hours=1)
        result = analytics_report(
            days=1, services=["okta"], until=until, validate_data=False, workers=1
        )
        assert isinstance(result, str), result
        path = Path(result)
    finally:
        get_settings.cache_clear()
    summary = json.loads((path.parent / "report.json").read_text())
    assert summary["window"][1] == until.isoformat()  # okta's row at `until` ends it
    assert "services: only okta" in summary["notes"]
    link: Any = Artifact.get("analytics-report-page")
    assert link is not None  # Prefect stores a link artifact as Markdown: [text](url)
    assert "(https://junction.example/reports/latest)" in str(link.data)


def _catalog_names() -> list[str]:
    from integrations.catalog import load_catalog

    return load_catalog().names


def test_dashboard_serves_the_latest_report_to_a_session(
    api_server: ApiServer, store: MetricsStore
) -> None:
    import httpx

    report = api_server.settings.home / "reports" / "report.html"
    with httpx.Client(base_url=api_server.url, timeout=60) as anonymous:
        resp = anonymous.get("/reports/latest")
        assert resp.status_code in (303, 307), resp.text  # to /login, like every page
        assert "/login" in resp.headers["location"]
    with logged_in(api_server) as browser:
        if not report.exists():
            missing = browser.get("/reports/latest")
            assert missing.status_code == 404
            assert "junction analytics report" in missing.text
        data = collect(store, Settings(**FAST), days=2, workers=1)
        write_report(data, report.parent)
        resp = browser.get("/reports/latest")
    assert resp.status_code == 200, resp.text
    assert "<script" not in resp.text and "&lt;script&gt;" in resp.text  # escaped data
    policy = resp.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert resp.headers["x-frame-options"] == "DENY"


def test_cli_report_takes_until_and_services(
    store: MetricsStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from junction.cli import app
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_STORE_DIR", str(store.root))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("JUNCTION_ANALYTICS_UNCERTAINTY_SAMPLES", "60")
    get_settings.cache_clear()
    runner = CliRunner()
    base = ["analytics", "report", "--days", "1", "--workers", "1", "--no-validate", "--json"]
    try:
        until = (NOW - timedelta(hours=2)).isoformat()
        out = runner.invoke(app, [*base, "--until", until, "--service", "okta"])
        assert out.exit_code == 0, out.output
        summary = json.loads(out.stdout)
        assert summary["window"][1] == until and "services: only okta" in summary["notes"]
        bad = runner.invoke(app, [*base, "--service", "okta", "--service", "octa"])
        assert bad.exit_code != 0 and "services: unknown 'octa'" in bad.output
        assert "Traceback" not in bad.output
        bad = runner.invoke(app, [*base, "--until", "yesterday"])
        assert bad.exit_code != 0 and "--until: 'yesterday'" in bad.output
    finally:
        get_settings.cache_clear()
