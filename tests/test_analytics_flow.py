"""The analytics-report flow on a real (ephemeral) Prefect server: report + artifacts, and
a critical validation failure stopping it with a clear message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.test_report import build_store

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from tests.prefect_harness import harness

    with harness():
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    monkeypatch.setenv("JUNCTION_ANALYTICS_UNCERTAINTY_SAMPLES", "60")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_flow_writes_report_and_publishes_artifacts(prefect_harness: None, home: Path) -> None:
    from prefect.artifacts import Artifact

    from flows.analytics_report import analytics_report
    from junction.store import MetricsStore

    build_store(home / "metrics", home / "specs", days=10)
    path = Path(analytics_report(days=10, spec_dir=str(home / "specs"), workers=1))
    assert path == home / "reports" / "report.html"
    html = path.read_text()
    assert '<section id="kpis">' in html and '<section id="validation">' in html
    assert '<section id="forecasts">' in html and "<svg" in html

    report = Artifact.get("analytics-report")
    assert report is not None and "## KPI scorecard" in str(report.data)
    kpis = Artifact.get("kpi-scorecard")
    assert kpis is not None and "Workflow success rate" in str(kpis.data)
    assert "KPI targets met" in (kpis.description or "")
    recs = Artifact.get("recommendations")
    assert recs is not None and "parallelize" in str(recs.data)
    preds = Artifact.get("failure-predictions")
    assert preds is not None and "okta" in str(preds.data)

    # One pipeline: the CLI's collect() gives the flow's KPIs and recommendations.
    from analytics.report.pipeline import collect
    from analytics.report.render import report_summary
    from junction.settings import get_settings

    flow_summary = json.loads((path.parent / "report.json").read_text())
    data = collect(
        MetricsStore(home / "metrics"), get_settings(), days=10, spec_dir=home / "specs", workers=1
    )
    cli_summary = json.loads(json.dumps(report_summary(data), default=str))
    for key in ("window", "kpis", "recommendations"):
        assert cli_summary[key] == flow_summary[key], key

    # A negative latency is a critical validation failure: the flow stops, says why,
    # and publishes nothing new.
    store = MetricsStore(home / "metrics")
    store.append(
        "calls",
        [
            {
                "ts": datetime.now(UTC) - timedelta(days=1),
                "service": "okta",
                "action": "get_user",
                "method": "GET",
                "path": "/u",
                "status": 200,
                "ok": True,
                "latency_ms": -5.0,
                "attempts": 1,
                "breaker_state": "closed",
                "source": "test",
            }
        ],
    )
    store.flush()
    path.unlink()
    with pytest.raises(Exception, match="latency_non_negative") as info:
        analytics_report(days=10, spec_dir=str(home / "specs"), workers=1)
    assert "data validation failed" in str(info.value)
    assert not path.exists()
