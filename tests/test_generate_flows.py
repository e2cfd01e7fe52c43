"""The intelligence deployments' flows run under Prefect in process (on the session's
ephemeral server, as tests/test_maintenance.py runs its flows): ``retrain-success-model``
(artifact, log line, promotion) and ``generate-workflow`` (preview artifact, saved
revision, a refusal failing the run)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analytics.intelligence.models import registry_for
from analytics.synthetic_runs import generate_spec_history
from junction.settings import Settings, get_settings

pytestmark = pytest.mark.prefect


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    for key in list(os.environ):
        if key.startswith("JUNCTION_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _logs(flow_run_id: object, expect: str, timeout: float = 30.0) -> str:
    """The run's log lines once ``expect`` is among them (logs are shipped in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            text = "\n".join(log.message for log in logs)
            if expect in text or time.monotonic() >= deadline:
                return text
            time.sleep(0.3)


def _artifact(key: str) -> str:
    from prefect.artifacts import Artifact

    artifact: Any = Artifact.get(key)  # sync context: the stored artifact, not a coroutine
    assert artifact is not None
    return str(artifact.data)


def test_retrain_flow_says_too_little_then_promotes_v1(home: Settings) -> None:
    from flows.retrain import retrain_success_model

    state = retrain_success_model(return_state=True)
    assert state.is_completed()  # too little history is a completed run that says so
    result = state.result()
    assert not result["trained"] and not result["promoted"]
    assert "too little history" in result["message"]
    assert "too little history" in _artifact("success-model")
    assert registry_for(home).live() is None

    generate_spec_history(
        home.metrics_dir,
        days=7,
        seed=3,
        incidents_per_30_days=20,
        start=datetime(2026, 10, 1, tzinfo=UTC),
    )
    state = retrain_success_model(return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["promoted"] and result["version"] == "v1", result["message"]
    assert registry_for(home).live() == "v1"
    markdown = _artifact("success-model")
    assert "promoted" in markdown and "| candidate |" in markdown and "| naive |" in markdown
    assert result["message"] in _logs(state.state_details.flow_run_id, result["message"])


def test_generate_flow_publishes_saves_and_refuses(home: Settings) -> None:
    from flows.generate import generate_workflow

    text = "when a GitLab pipeline fails, open a Jira issue"
    state = generate_workflow(text=text, name="ci_to_jira", save=True, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["ok"] and result["name"] == "ci_to_jira"
    saved = Path(result["saved"])
    assert saved == home.home / "specs" / "ci_to_jira.yaml" and saved.is_file()
    assert "jira.create_issue" in saved.read_text()
    preview = _artifact("generated-workflow")
    assert "# Generated workflow `ci_to_jira`" in preview and "Saved as" in preview

    state = generate_workflow(text="create a salesforce lead", return_state=True)
    assert state.is_failed() and "Salesforce" in str(state.message)
    assert _artifact("generated-workflow").startswith("# Workflow not generated")
    assert sorted(p.name for p in (home.home / "specs").iterdir()) == ["ci_to_jira.yaml"]
