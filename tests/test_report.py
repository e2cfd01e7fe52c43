"""The HTML report: sections, not-enough-data paths, CLI, and a headless Chromium look."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from analytics.report.model import ReportData
from analytics.report.pipeline import collect
from analytics.report.render import render_markdown, write_report
from junction.settings import Settings
from junction.store import MetricsStore
from tests.test_recommend import SPEC, crafted

SERVICES = ["okta", "jira", "slack", "webex"]
SECTIONS = [
    "kpis",
    "health",
    "performance",
    "alerts",
    "trends",
    "forecasts",
    "predictions",
    "dependencies",
    "recommendations",
]
FAST: dict[str, Any] = {"analytics_uncertainty_samples": 60}


def build_store(root: Path, spec_dir: Path, *, days: int = 15) -> MetricsStore:
    """Synthetic history for 4 services plus crafted workflow runs of ``SPEC``."""
    from analytics.synthetic import generate_history

    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # The synthetic events follow the start date as well as the seed: enough incidents
    # that every date has alerts in the last week (~1 in 10^4 dates has none).
    truth = generate_history(
        root,
        services=SERVICES,
        days=days,
        seed=2,
        alerts=True,
        workflows=2,
        start=end - timedelta(days=days),
        incidents_per_30_days=10.0,
    )
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "onboard_test.yaml").write_text(SPEC)
    calls, runs = crafted(runs=100, start=end - timedelta(days=2))
    # No crafted call succeeds during a synthetic outage of its service (or in the half
    # hour before it, where the detection time looks for the onset).
    during = pd.Series(False, index=calls.index)
    ts = pd.to_datetime(calls["ts"], utc=True)
    for inc in truth.incidents:
        during |= (calls["service"] == inc.service) & ts.between(
            inc.start - timedelta(minutes=30), inc.end
        )
    calls = calls[~during]
    calls = calls.assign(
        status=200,
        breaker_state="closed",
        attempts=1,
        source=calls.get("source", pd.Series("workflow", index=calls.index)).fillna("workflow"),
    )
    calls["ts"] = calls["ts"].astype(object)
    rows = [
        {k: v for k, v in r.items() if not (isinstance(v, float) and pd.isna(v))}
        for r in calls.to_dict("records")
    ]
    store = MetricsStore(root)
    store.append("calls", rows)
    store.append(
        "workflow_runs",
        [{**r, "steps": 5, "retries": 0, "fallbacks": 0} for r in runs.to_dict("records")],
    )
    store.flush()
    return store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportData, Path, Path]:
    base = tmp_path_factory.mktemp("report")
    store = build_store(base / "metrics", base / "specs")
    data = collect(store, Settings(**FAST), days=15, spec_dir=base / "specs", workers=1)
    path = write_report(data, base / "out")
    return data, path, base


def test_report_has_every_section_charts_and_no_external_urls(
    built: tuple[ReportData, Path, Path],
) -> None:
    data, path, _ = built
    text = path.read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in text, key
    assert "Not enough data" not in text.split('id="recommendations"')[1].split("</section>")[0]
    # overall + per-service trends, up to 4 forecast charts, the dependency graph
    assert len(re.findall(r"<svg\b", text)) >= 2 + 1 + 1
    assert text.count('class="chart depmap"') == 1
    assert "onboard_test" in text  # the dependency graph shows the spec's workflow
    # Self-contained: no script, no external resource (SVG's xmlns is a name, not a fetch).
    assert "<script" not in text
    assert not re.search(r"""(src|href)=["']https?://""", text)
    assert "@import" not in text and "url(http" not in text
    # KPIs with targets and baselines
    names = [k.name for k in data.kpis]
    assert names == [
        "Workflow success rate",
        "Average response time",
        "Uptime",
        "Error detection time",
    ]
    assert data.kpis[0].baseline == "85%" and data.kpis[3].baseline == "5-10 min"
    assert all(k.met is not None for k in data.kpis[:3])
    assert data.kpis[3].met is not None  # synthetic alerts follow their incidents
    # forecasts for every service and metric, predictions for every service
    assert set(data.forecasts) >= {(s, m) for s in SERVICES for m in ("volume", "latency")}
    assert set(data.predictions) >= set(SERVICES)
    # the streaming detector watched volume, latency and error rate of every service
    assert {(s, m) for s in SERVICES for m in ("volume", "latency", "error_rate")} <= set(
        data.stream_scores
    )
    assert {r.kind for r in data.recommendations} >= {"cache", "parallelize"}
    summary = (path.parent / "report.json").read_text()
    assert "Workflow success rate" in summary
    md = render_markdown(data)
    assert "## KPI scorecard" in md and "## Recommendations" in md and "<svg" not in md


def test_stream_detections_lists_flagged_points() -> None:
    from analytics.report.anomalies import stream_detections

    ts = pd.date_range("2026-11-01", periods=3, freq="h")
    scores = {
        ("okta", "error_rate"): pd.DataFrame(
            {
                "timestamp": ts,
                "value": [0.0, 0.5, 0.01],
                "score": [0.1, 0.99, 0.2],
                "is_anomaly": [False, True, False],
            }
        ),
        ("slack", "error_rate"): pd.DataFrame(  # a drop back to 0: not news
            {
                "timestamp": ts,
                "value": [0.2, 0.3, 0.0],
                "score": [0.1, 0.1, 0.99],
                "is_anomaly": [False, False, True],
            }
        ),
        ("jira", "latency"): pd.DataFrame(
            {"timestamp": ts, "value": 1.0, "score": 0.0, "is_anomaly": False}
        ),
    }
    found = stream_detections(scores)
    assert found.to_dict("records") == [
        {"service": "okta", "metric": "error_rate", "timestamp": ts[1], "value": 0.5, "score": 0.99}
    ]
    assert stream_detections(None).empty


def test_empty_store_says_not_enough_data(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics")
    data = collect(store, Settings(**FAST), days=7, spec_dir=tmp_path / "none", workers=1)
    path = write_report(data, tmp_path / "out")
    text = path.read_text()
    assert "Not enough data" in text
    assert "the metrics store is empty" in text
    assert all(k.met is None for k in data.kpis)
    assert "not enough data" in render_markdown(data).lower()


def test_short_and_constant_history_report_without_failing(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "metrics")
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    store.append(
        "calls",
        [
            {
                "ts": now - timedelta(minutes=5 * i),
                "service": "okta",
                "action": "get_user",
                "method": "GET",
                "path": "/u",
                "status": 200,
                "ok": True,
                "latency_ms": 120.0,
                "attempts": 1,
                "breaker_state": "closed",
                "source": "test",
            }
            for i in range(30)  # 2.5 hours, constant latency
        ],
    )
    store.flush()
    data = collect(store, Settings(**FAST), days=7, spec_dir=tmp_path / "none", workers=1)
    text = write_report(data, tmp_path / "out").read_text()
    assert "okta" in text
    fc = data.forecasts[("okta", "latency")]
    assert getattr(fc, "reason", "")  # NotEnoughData, not an exception
    assert "Not enough data" in text or "not enough data" in text


def test_cli_report_and_recommend_and_apply(
    built: tuple[ReportData, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from junction.cli import app
    from junction.settings import get_settings

    _, _, base = built
    specs = tmp_path / "specs"
    shutil.copytree(base / "specs", specs)
    monkeypatch.setenv("JUNCTION_STORE_DIR", str(base / "metrics"))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        out = runner.invoke(app, ["analytics", "recommend", "--specs", str(specs), "--days", "15"])
        assert out.exit_code == 0, out.output
        assert "cache" in out.output and "parallelize" in out.output
        listed = runner.invoke(
            app, ["analytics", "recommend", "--specs", str(specs), "--days", "15", "--json"]
        )
        ids = [r["id"] for r in json.loads(listed.stdout)]
        # Piped, the table keeps every id whole on one line: what `apply --accept` takes.
        table_lines = out.stdout.splitlines()
        assert ids and all(any(i in line for line in table_lines) for i in ids)
        assert "…" not in out.stdout
        dry = runner.invoke(
            app, ["analytics", "apply", "--dry-run", "--specs", str(specs), "--days", "15"]
        )
        assert dry.exit_code == 0, dry.output
        assert "+    cache: {ttl:" in dry.output and "would change" in dry.output
        assert (specs / "onboard_test.yaml").read_text() == SPEC
        applied = runner.invoke(app, ["analytics", "apply", "--specs", str(specs), "--days", "15"])
        assert applied.exit_code == 0, applied.output
        assert (specs / ".history" / "onboard_test.rev1.yaml").read_text() == SPEC
        bad = runner.invoke(
            app, ["analytics", "apply", "--accept", "nope-1", "--specs", str(specs)]
        )
        assert bad.exit_code == 2 and "unknown recommendation id" in bad.output
        as_json = runner.invoke(
            app, ["analytics", "apply", "--accept", "nope-1", "--specs", str(specs), "--json"]
        )
        assert as_json.exit_code == 2
        assert json.loads(as_json.stdout)["skipped"] == [
            {"id": "nope-1", "reason": "unknown recommendation id"}
        ]
        missing = runner.invoke(app, ["analytics", "recommend", "--specs", str(tmp_path / "x")])
        assert missing.exit_code == 2 and "does not exist" in missing.output
        assert "Traceback" not in missing.output
    finally:
        get_settings.cache_clear()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium binary not installed "
    "(scripts/install-system-deps.sh installs Debian's chromium)",
)
def test_chromium_renders_report_with_charts(
    built: tuple[ReportData, Path, Path], tmp_path: Path
) -> None:
    from PIL import Image

    _, path, _ = built
    shot = tmp_path / "report.png"
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1280,4000",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shot.exists(), proc.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 4000)
    pixels: Any = img.getdata()
    total = img.size[0] * img.size[1]
    colours: dict[tuple[int, int, int], int] = {}
    for px in pixels:
        colours[px] = colours.get(px, 0) + 1
    background = max(colours.values())
    assert background < 0.9 * total, "page is (nearly) uniform: nothing rendered"

    def near(rgb: tuple[int, int, int], tol: int = 12) -> int:
        return sum(
            n
            for c, n in colours.items()
            if all(abs(a - b) <= tol for a, b in zip(c, rgb, strict=True))
        )

    # Colours that only the charts use: the overall-volume fill, the forecast band,
    # the dependency graph's step boxes are further down the page.
    assert near((0x93, 0xC5, 0xFD)) > 5_000, "overall trend chart missing"
    assert near((0xBF, 0xDB, 0xFE)) > 5_000, "forecast band missing"
    # The header bar (dark slate) is at the top: the page is laid out, not blank.
    assert img.getpixel((20, 20)) == (0x1E, 0x29, 0x3B)


# ------------------------------------------------------------------ degenerate stores

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def _call(svc: str, ok: bool, minutes_ago: float, **kw: Any) -> dict[str, Any]:
    row = {
        "ts": NOW - timedelta(minutes=minutes_ago),
        "service": svc,
        "action": "get_user",
        "method": "GET",
        "path": "/u",
        "status": 200 if ok else 401,
        "ok": ok,
        "latency_ms": 120.0,
        "attempts": 1,
        "breaker_state": "closed",
        "source": "cli",
        "error_class": None if ok else "AuthenticationError",
        "error": None if ok else "Invalid token provided",
    }
    row.update(kw)
    return row


def _probe(svc: str, ok: bool, minutes_ago: float) -> dict[str, Any]:
    return {
        "ts": NOW - timedelta(minutes=minutes_ago),
        "sweep_id": "s",
        "service": svc,
        "ok": ok,
        "status": 200 if ok else 503,
        "latency_ms": 40.0,
        "breaker_state": "closed" if ok else "open",
        "error_class": None if ok else "ServerError",
    }


def _fill(store: MetricsStore, case: str) -> None:
    """The situations a report exists for: a service down, bad credentials, no data."""
    hours = range(0, 48 * 60, 20)  # two days, every 20 minutes
    if case == "always_failing":  # okta: bad token; gitlab fine
        store.append("calls", [_call("okta", False, m) for m in hours])
        store.append("calls", [_call("gitlab", True, m) for m in hours])
        store.append("probes", [_probe(s, s == "gitlab", m) for m in hours for s in SERVICES])
    elif case == "single_call":
        store.append("calls", [_call("okta", True, 1)])
    elif case == "single_failed_call":
        store.append("calls", [_call("okta", False, 1)])
    elif case == "no_probes":
        store.append("calls", [_call(s, True, m) for m in hours for s in ("okta", "jira")])
        store.append("probes", [_probe("slack", True, m) for m in hours])  # probes only
    elif case == "all_down":
        store.append("calls", [_call(s, False, m) for m in hours for s in SERVICES])
        store.append("probes", [_probe(s, False, m) for m in hours for s in SERVICES])
    store.flush()


CASES = ["empty", "always_failing", "single_call", "single_failed_call", "no_probes", "all_down"]


def _no_missing_value_leaks(text: str) -> None:
    assert "<NA>" not in text and "NaT" not in text
    assert not re.search(r">\s*nan\s*<|\bnan%", text)


@pytest.mark.parametrize("case", CASES)
def test_every_section_renders_on_a_degenerate_store(tmp_path: Path, case: str) -> None:
    """No section may fail when a service never succeeded (NULL percentiles arrive as
    pd.NA in pandas 3), has one call, has no probes, or everything is down."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "onboard_test.yaml").write_text(SPEC)
    store = MetricsStore(tmp_path / "metrics")
    _fill(store, case)
    data = collect(store, Settings(**FAST), days=7, spec_dir=specs, workers=1)
    path = write_report(data, tmp_path / "out")
    html_text = path.read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in html_text, key
    _no_missing_value_leaks(html_text)
    md = render_markdown(data)
    for title in ("KPI scorecard", "Service health", "Performance metrics", "Alerts", "Trends"):
        assert f"## {title}" in md
    _no_missing_value_leaks(md)
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [k["name"] for k in summary["kpis"]] == [k.name for k in data.kpis]
    if case in ("always_failing", "all_down", "single_failed_call"):
        failing = data.health[data.health["service"] == "okta"].iloc[0]
        assert failing["status"] == "critical" and pd.isna(failing["p95_ms"])
        perf = data.performance[data.performance["service"] == "okta"].iloc[0]
        assert perf["success_rate"] == 0.0 and pd.isna(perf["p95_ms"])
    if case == "all_down":
        assert data.kpis[1].met is None and "no successful calls" in data.kpis[1].note
        assert data.kpis[2].value == "0.00%" and data.kpis[2].met is False
    if case == "empty":
        assert "the metrics store is empty" in html_text


@pytest.mark.parametrize("case", CASES)
def test_cli_report_on_a_degenerate_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """`junction analytics report` exits 0 with one summary line (or JSON), no traceback;
    the all-down case also runs the data validation (the default)."""
    from typer.testing import CliRunner

    from junction.cli import app
    from junction.settings import get_settings

    _fill(MetricsStore(tmp_path / "metrics"), case)
    monkeypatch.setenv("JUNCTION_STORE_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JUNCTION_ANALYTICS_UNCERTAINTY_SAMPLES", "60")
    get_settings.cache_clear()
    try:
        validate = [] if case == "all_down" else ["--no-validate"]
        args = ["analytics", "report", "--workers", "1", "--days", "7", *validate]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        assert "Traceback" not in res.output and "report written to" in res.stdout
        res = CliRunner().invoke(app, [*args, "--json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        assert Path(doc["report"]).name == "report.html" and len(doc["kpis"]) == 4
    finally:
        get_settings.cache_clear()


HOSTILE_SERVICE = "<script>alert(1)</script>"
HOSTILE_MESSAGE = '<img src=x onerror="alert(2)"> [click](javascript:alert(3))'


def test_markdown_and_html_escape_service_names_and_alert_messages(tmp_path: Path) -> None:
    """Service names and alert messages come from vendors and configs: the Markdown
    artifact must not carry their HTML or links, any more than the HTML report does."""
    store = MetricsStore(tmp_path / "metrics")
    store.append("calls", [_call(HOSTILE_SERVICE, m % 40 != 0, m) for m in range(0, 600, 5)])
    store.append(
        "alerts",
        [
            {
                "ts": NOW - timedelta(minutes=5),
                "fingerprint": "f1",
                "service": HOSTILE_SERVICE,
                "rule": "down | <b>rule</b>",
                "severity": "critical",
                "state": "firing",
                "message": HOSTILE_MESSAGE,
                "labels_json": "{}",
            }
        ],
    )
    store.flush()
    data = collect(store, Settings(**FAST), days=7, spec_dir=tmp_path / "none", workers=1)
    data.notes.append(f"note about {HOSTILE_SERVICE}")
    md = render_markdown(data)
    for raw in ("<script", "<img", "<b>", "](javascript:"):
        assert raw not in md, raw
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in md  # still readable
    assert "onerror" in md and "&lt;img" in md
    html_text = write_report(data, tmp_path / "out").read_text()
    assert "<script" not in html_text and "<img" not in html_text and "<b>rule" not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text


def test_report_goes_on_past_a_truncated_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated Parquet segment is moved aside with a warning naming it; the report is
    written from the rest, and says so in its notes."""
    from typer.testing import CliRunner

    from junction.cli import app
    from junction.settings import get_settings

    store = MetricsStore(tmp_path / "metrics")
    _fill(store, "always_failing")
    store.append("calls", [_call("jira", True, 30)])
    store.flush()
    store.close()
    bad = sorted((tmp_path / "metrics" / "calls").glob("*/*.parquet"))[-1]
    bad.write_bytes(bad.read_bytes()[:200])
    monkeypatch.setenv("JUNCTION_STORE_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(
            app, ["analytics", "report", "--workers", "1", "--no-validate", "--days", "7"]
        )
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    moved = f"_quarantine/calls/{bad.parent.name}/{bad.name}"
    assert f"note: unreadable segment moved aside, its rows are left out: {moved}" in res.stdout
    assert f"segment calls/{bad.parent.name}/{bad.name} is unreadable" in caplog.text
    assert (tmp_path / "metrics" / "_quarantine" / "calls" / bad.parent.name / bad.name).exists()
    report = (tmp_path / "home" / "reports" / "report.html").read_text()
    assert bad.name in report
