"""What the flows write to their Prefect run log (flows/runlog.py), from real results, and
the table artifacts' Markdown escaping.

The lines reaching a real server's run log are checked in tests/test_spec_deployments.py.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from analytics.report.model import Kpi, ReportData
from flows.runlog import (
    batch_lines,
    emit,
    probe_lines,
    report_lines,
    sweep_lines,
    workflow_lines,
)
from integrations.base import HealthResult
from junction.settings import Settings
from tests.test_service_api import WORKER_0

if TYPE_CHECKING:
    from integrations.sandbox.app import SandboxServer

TWO_STEPS = """\
name: lookup
description: Read a worker, list groups.
parameters:
  worker_id: {type: string, required: true}
steps:
  - id: worker
    uses: workday.get_worker
    with: {worker_id: "{{ params.worker_id }}"}
  - id: groups
    uses: okta.list_groups
    with: {q: Eng}
  - id: never
    uses: okta.list_groups
    when: "params.worker_id == 'nobody'"
    with: {q: x}
"""


def _settings(sb: SandboxServer, home: Path, **kw: Any) -> Settings:
    return Settings(home=home, sandbox_url=sb.url, sandbox_smtp_port=sb.smtp_port, **kw)


def test_a_workflow_run_says_what_it_did(sb: SandboxServer, tmp_path: Path) -> None:
    from junction.workflows.runner import run_workflow_once
    from junction.workflows.validate import load_workflow

    (tmp_path / "lookup.yaml").write_text(TWO_STEPS)
    spec = load_workflow(tmp_path / "lookup.yaml")
    result = asyncio.run(
        run_workflow_once(spec, {"worker_id": WORKER_0}, settings=_settings(sb, tmp_path))
    )
    lines = workflow_lines(result.to_dict())
    level, first = lines[0]
    assert level == logging.INFO
    assert first.startswith("workflow lookup completed in ")
    assert "3 steps (2 ok, 1 skipped)" in first and "0 fallbacks" in first
    assert lines[1][1].startswith("slowest steps: ") and "never" not in lines[1][1]
    assert WORKER_0 not in " ".join(m for _, m in lines)  # parameters stay out of logs

    failed = result.to_dict() | {"status": "failed", "failed_step": "groups"}
    failed["steps"] = [
        s | {"status": "failed", "error": "okta.list_groups: HTTP 503"}
        if s["step_id"] == "groups"
        else s
        for s in failed["steps"]
    ]
    lines = workflow_lines(failed)
    assert lines[0][0] == logging.ERROR
    assert (logging.ERROR, "step 'groups' failed: okta.list_groups: HTTP 503") in lines
    batch = batch_lines("lookup", [result.to_dict(), failed])
    assert batch[0] == (logging.ERROR, "batch of 2 lookup runs: 1 completed, 1 failed")
    assert batch[-1][1].endswith("failed at 'groups': None")


def test_probes_and_a_sweep_say_what_failed(
    sb: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from junction.monitor import run_once

    now = datetime.now(UTC)
    results = [
        HealthResult("okta", True, 200, 120.0, checked_at=now),
        HealthResult("jira", False, None, 5000.0, "ConnectError", "connection refused"),
    ]
    lines = probe_lines(results)
    assert lines[0] == (logging.WARNING, "probed 2 integrations: 1 ok, 1 failing")
    assert lines[1] == (logging.INFO, "slowest: jira 5,000 ms, okta 120 ms")
    assert lines[2] == (logging.WARNING, "jira failing: ConnectError: connection refused")

    monkeypatch.setenv("JUNCTION_OKTA_BASE_URL", "http://127.0.0.1:9")  # refused
    settings = _settings(sb, tmp_path, integrations="okta,workday", monitor_confirm_delay_seconds=0)
    sweep = asyncio.run(run_once(settings, sweep_id="s1"))
    lines = sweep_lines(sweep)
    assert lines[0][1].startswith("sweep s1: 2 services, ")
    assert any(
        level == logging.WARNING and message.startswith("okta ") for level, message in lines
    ), lines
    assert "alerts firing" in lines[-1][1]


def test_a_report_names_its_slow_stages() -> None:
    end = datetime(2026, 12, 1, tzinfo=UTC)
    data = ReportData(generated_at=end, start=end - timedelta(days=7), end=end)
    data.kpis = [
        Kpi("Workflow success rate", ">= 92%", "95%", "90%", "plan", True, ""),
        Kpi("p95", "<= 1 s", "n/a", "", "", None, "no data"),
    ]
    data.timings = {"forecasts": 12.5, "kpis": 0.2}
    data.notes = ["one note"]
    lines = report_lines(data, "/tmp/report.html")
    assert lines[0][1].startswith("report over 2026-11-24 00:00 .. 2026-12-01 00:00 UTC")
    assert "KPIs 1 met / 0 missed of 2" in lines[0][1]
    assert (logging.WARNING, "slow stage forecasts: 12.5 s") in lines
    assert (logging.INFO, "note: one note") in lines

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test-flow-logs")
    logger.setLevel(logging.INFO)
    keep = Keep()
    logger.addHandler(keep)
    try:
        emit(logger, lines)
    finally:
        logger.removeHandler(keep)
    assert [r.getMessage() for r in records] == [m for _, m in lines]


def test_table_artifacts_escape_markdown() -> None:
    from analytics.report.artifacts import kpi_rows
    from tasks.analytics import markdown_rows

    kpis = [Kpi("Success <b>rate</b>", ">= 92%", "[x](javascript:alert(1))", "", "", True, "")]
    (row,) = markdown_rows(kpi_rows(kpis))
    assert row["target"] == "&gt;= 92%"  # not a blockquote
    assert row["kpi"] == "Success &lt;b&gt;rate&lt;/b&gt;"
    assert row["measured"] == "\\[x\\]\\(javascript:alert\\(1\\)\\)"
    assert row["status"] == "met" and row["baseline"] == ""
