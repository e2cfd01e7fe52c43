"""The maintenance schedule: the daily digest, the monthly security review, the quarterly
assessment, and their flows (in-process; one flow through Prefect)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest

from analytics.maintenance.assessment import assess
from analytics.maintenance.security import (
    installed_distributions,
    integration_frame,
    load_advisories,
    review_integrations,
    vulnerable_packages,
)
from analytics.synthetic import generate_history
from flows import maintenance
from integrations.catalog import load_catalog
from junction.alerting import state as alert_state
from junction.alerting.engine import AlertEngine
from junction.settings import Settings, get_settings
from junction.store import MetricsStore
from tests.alerting_helpers import at, config, failing

pytestmark = pytest.mark.timeout(60)

DAY = date(2026, 11, 27)  # tests.alerting_helpers.T0's day


def call(service: str, action: str, ts: datetime, latency: float, ok: bool = True) -> dict:
    return {
        "ts": ts,
        "service": service,
        "action": action,
        "method": "GET",
        "path": "/",
        "ok": ok,
        "latency_ms": latency,
        "attempts": 1,
        "breaker_state": "closed",
        "source": "workflow",
        "run_id": None,
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for key in list(os.environ):
        if key.startswith("JUNCTION_") and key not in ("JUNCTION_SANDBOX_URL",):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def seed(settings: Settings) -> None:
    """One okta incident at T0 and a slow gitlab action that day."""
    with AlertEngine(alert_state.db_path(settings), config("")) as eng:
        eng.evaluate(failing(["okta"], at(0)), now=at(0))
    store = MetricsStore(settings.metrics_dir)
    rows = [call("gitlab", "list_pipelines", at(60 * i), 4000.0 + i) for i in range(20)]
    rows += [call("okta", "get_user", at(60 * i), 50.0, ok=i % 2 == 0) for i in range(20)]
    store.append("calls", rows)
    store.flush()
    store.close()


def test_digest_names_the_incident_sla_and_slowest_action(home: Settings) -> None:
    seed(home)
    digest = maintenance.digest_for(DAY, home)
    assert list(digest.incidents["services"]) == ["okta"]
    assert digest.slowest.iloc[0][["service", "action"]].tolist() == ["gitlab", "list_pipelines"]
    assert digest.slowest.iloc[0]["p95_ms"] > 4000
    okta = digest.sla.set_index("service").loc["okta"]
    assert okta["uptime"] == pytest.approx(0.5) and not okta["met"]
    md = digest.markdown()
    assert "okta" in md and "list\\_pipelines" in md and "| NO |" in md
    assert "1 incident(s)" in digest.headline and "SLA missed by 1" in digest.headline
    # Nothing yesterday: an empty digest, not an error.
    empty = maintenance.digest_for(DAY - timedelta(days=3), home)
    assert empty.incidents.empty and empty.slowest.empty
    assert "No incidents." in empty.markdown()


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.got.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def test_digest_goes_to_the_chat_channel_once_or_says_there_is_none(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(home)
    digest = maintenance.digest_for(DAY, home)
    assert maintenance.send_digest(digest, home) == maintenance.NO_CHAT
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        alerting = tmp_path / "alerting.yaml"
        url = f"http://127.0.0.1:{server.server_port}"
        alerting.write_text(
            f'channels:\n  chat: {{type: webhook, url: "{url}"}}\nroutes:\n  warning: [chat]\n'
        )
        monkeypatch.setenv("JUNCTION_ALERTING_FILE", str(alerting))
        monkeypatch.setenv("JUNCTION_WEBHOOK_SECRET", "s3cret-for-tests")
        get_settings.cache_clear()
        settings = get_settings()
        _Receiver.got.clear()
        assert maintenance.send_digest(digest, settings) == "sent to chat"
        assert maintenance.send_digest(digest, settings) == "sent to chat"  # a rerun
        digests = [g for g in _Receiver.got if g.get("labels", {}).get("kind") == "digest"]
        assert len(digests) == 1
        assert digests[0]["title"] == digest.headline and "gitlab" in digests[0]["text"]
    finally:
        server.shutdown()


OSV = {
    "id": "GHSA-test-0001",
    "summary": "a <script>alert(1)</script> in [docs](javascript:x)",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "Pandas"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999"}]}],
        },
        {"package": {"ecosystem": "npm", "name": "httpx"}, "versions": ["0.28.1"]},
    ],
}
FIXED = {
    "id": "PYSEC-old",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "httpx"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "0.1"}]}],
        }
    ],
}


def test_security_review_flags_auth_http_unused_and_a_vulnerable_package(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUNCTION_INTEGRATIONS", "okta,jira,gitlab")
    monkeypatch.setenv("JUNCTION_JIRA_BASE_URL", "http://jira.internal/rest/api/3")
    monkeypatch.setenv("JUNCTION_JIRA_USERNAME", "me")
    monkeypatch.setenv("JUNCTION_JIRA_PASSWORD", "pw")
    monkeypatch.setenv("JUNCTION_GITLAB_BASE_URL", "https://gitlab.example/api/v3")
    monkeypatch.setenv("JUNCTION_OKTA_TOKEN", "t")
    monkeypatch.setenv("JUNCTION_OKTA_CREDENTIAL_EXPIRES", "2026-12-10")
    get_settings.cache_clear()
    settings = get_settings()
    frame = integration_frame(load_catalog(), settings, {"jira": 3})
    found = review_integrations(frame, date(2026, 12, 1))
    kinds = set(zip(found["kind"], found["subject"], strict=True))
    assert ("plain-http", "jira") in kinds and ("basic-auth", "jira") in kinds
    assert ("outdated-api", "gitlab") in kinds
    assert ("credential-unused", "okta") in kinds and ("credential-expiring", "okta") in kinds
    assert ("credential-unused", "jira") not in kinds  # it has calls
    assert ("credential-unused", "gitlab") not in kinds  # no credentials configured
    assert found["severity"].iloc[0] == "critical"
    assert "pw" not in frame.to_string()  # credentials only as a flag

    (tmp_path / "osv").mkdir()
    (tmp_path / "osv" / "a.json").write_text(json.dumps(OSV))
    (tmp_path / "osv" / "b.json").write_text(json.dumps({"vulns": [FIXED]}))
    vulns = vulnerable_packages(installed_distributions(), load_advisories(tmp_path / "osv"))
    assert vulns["package"].tolist() == ["pandas"] and vulns["fixed"].tolist() == ["999"]
    md = maintenance.security_markdown(found, vulns, "")
    assert "<script>" not in md and "](javascript" not in md and "GHSA-test-0001" in md


def test_security_flow_without_and_with_an_advisory_database(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime(2026, 12, 1, 5, tzinfo=UTC)
    monkeypatch.setenv("JUNCTION_INTEGRATIONS", "okta,jira")
    monkeypatch.setenv("JUNCTION_OKTA_TOKEN", "t")
    monkeypatch.setenv("JUNCTION_JIRA_TOKEN", "t")
    get_settings.cache_clear()
    store = MetricsStore(home.metrics_dir)
    probe = {**call("okta", "health", now - timedelta(days=1), 9.0), "source": "probe"}
    store.append("calls", [probe, call("jira", "get_issue", now - timedelta(days=2), 9.0)])
    store.flush()
    store.close()
    findings, vulns, note = maintenance.security_review_for(get_settings(), now)
    unused = set(findings[findings["kind"] == "credential-unused"]["subject"])
    assert unused == {"okta"}  # its only calls were health probes
    assert vulns is None and note == maintenance.NO_ADVISORIES
    monkeypatch.setenv("JUNCTION_ADVISORY_DB", str(tmp_path / "missing.json"))
    get_settings.cache_clear()
    _, vulns, note = maintenance.security_review_for(get_settings(), now)
    assert vulns is None and "missing.json: no such file" in note
    (tmp_path / "osv.json").write_text(json.dumps([OSV, FIXED]))
    monkeypatch.setenv("JUNCTION_ADVISORY_DB", str(tmp_path / "osv.json"))
    get_settings.cache_clear()
    _, vulns, note = maintenance.security_review_for(get_settings(), now)
    assert vulns is not None and vulns["advisory"].tolist() == ["GHSA-test-0001"]
    assert "against 2 advisories" in note


def test_quarterly_assessment_on_the_demo_history(home: Settings) -> None:
    until = datetime(2026, 12, 1, tzinfo=UTC)
    generate_history(
        home.metrics_dir,
        services=["okta", "gitlab"],
        start=until - timedelta(days=91),
        days=91,
        step=timedelta(hours=1),
        calls_per_step=2.0,
        growth_per_week=0.05,
        workflows=0,
        tables=("calls", "probes"),
    )
    result = maintenance.assessment_for(home, until)
    assert 13 <= len(result.trends) <= 14
    assert result.trends["calls"].iloc[-2] > result.trends["calls"].iloc[0]  # traffic grew
    assert set(result.sla["service"]) == {"okta", "gitlab"} and len(result.sla) >= 6
    assert result.capacity.forecast_per_day is not None and result.capacity.growth is not None
    assert result.capacity.growth > 0
    md = result.markdown()
    assert "Capacity forecast" in md and "SLA history" in md


def test_review_and_digest_flows_run_in_process(home: Settings) -> None:
    seed(home)
    assert maintenance.optimization_review_for(datetime(2026, 11, 1, tzinfo=UTC), home) == []
    assert "No recommendations" in maintenance.review_markdown([], datetime(2026, 11, 1))
    # The flow itself, once, through Prefect (ephemeral): artifact published, chat absent.
    headline = maintenance.health_digest(day=DAY)
    assert headline.startswith("Health digest 2026-11-27: 1 incident(s)")


def test_empty_frames_make_an_empty_assessment() -> None:
    empty = pd.DataFrame(columns=["bucket", "service", "calls", "ok_calls", "p95_ms"])
    probes = pd.DataFrame(columns=["bucket", "service", "probes", "ok_probes"])
    result = assess(empty, probes, 0.99)
    assert result.capacity.reason == "no calls recorded"
    assert "No calls recorded." in result.markdown()


def test_the_schedule_is_deployed_with_its_crons() -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    deployments = yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]
    crons = {
        d["name"]: (d["entrypoint"], d["schedules"][0].get("cron"))
        for d in deployments
        if d.get("schedules")
    }
    assert crons["health-digest"] == ("flows/maintenance.py:health_digest", "0 7 * * *")
    assert crons["optimization-review"][1] == "0 6 * * 1"
    assert crons["security-review"][1] == "0 5 1 * *"
    assert crons["health-assessment"][1] == "0 4 1 1,4,7,10 *"
    for name in ("health-digest", "optimization-review", "security-review", "health-assessment"):
        path, func = crons[name][0].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        assert callable(getattr(__import__(module, fromlist=[func]), func))
