"""`junction workflow run` (the in-process path; the Prefect path is the flow's test)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from junction.cli.workflow import parse_params, workflow_app
from tests.helpers import requests_log, set_faults

WORKER_0 = "2f5d8d236660d0591e487847bd050202"

SPEC: dict[str, Any] = {
    "name": "cli_test",
    "parameters": {"worker_id": {"type": "string"}, "project": {"type": "string"}},
    "steps": [
        {
            "id": "hire",
            "uses": "workday.get_worker",
            "with": {"worker_id": "{{ params.worker_id }}"},
        },
        {
            "id": "ticket",
            "uses": "jira.create_issue",
            "with": {
                "project_key": "{{ params.project }}",
                "summary": "{{ steps.hire.output.id }}",
            },
        },
    ],
}


@pytest.fixture
def cli(sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    from junction.settings import get_settings

    monkeypatch.setenv("JUNCTION_SANDBOX_URL", sb.url)
    monkeypatch.setenv("JUNCTION_SANDBOX_SMTP_PORT", str(sb.smtp_port))
    monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield workflow_app
    get_settings.cache_clear()


def write_spec(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_run_prints_steps_and_json(cli: typer.Typer, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC)
    args = ["run", spec, "--local", "-p", f"worker_id={WORKER_0}", "--param", "project=OPS"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "hire" in out.output and "ticket" in out.output and "completed" in out.output
    out = CliRunner().invoke(cli, [*args, "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["status"] == "completed"
    assert [s["step_id"] for s in summary["steps"]] == ["hire", "ticket"]
    assert {"duration_ms", "attempts", "fallback", "provider"} <= set(summary["steps"][0])


def test_failed_run_exits_1_naming_the_step(sb: Any, cli: typer.Typer, tmp_path: Path) -> None:
    set_faults(sb, "jira", outages=[{"start": 0, "mode": "503"}])
    spec = write_spec(tmp_path, SPEC)
    args = ["run", spec, "--local", "-p", f"worker_id={WORKER_0}", "-p", "project=OPS"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 1
    assert "workflow failed at step 'ticket'" in out.output
    assert "Traceback" not in out.output


def test_invalid_spec_or_params_exit_2_without_any_call(
    sb: Any, cli: typer.Typer, tmp_path: Path
) -> None:
    bad = {**SPEC, "steps": [{**SPEC["steps"][0], "uses": "workday.no_such_action"}]}
    out = CliRunner().invoke(cli, ["run", write_spec(tmp_path, bad), "--local"])
    assert out.exit_code == 2 and "nothing was run" in out.output
    spec = write_spec(tmp_path, SPEC)
    out = CliRunner().invoke(cli, ["run", spec, "--local", "-p", "project=OPS"])
    assert out.exit_code == 2 and "missing required parameter 'worker_id'" in out.output
    out = CliRunner().invoke(cli, ["run", spec, "--local", "-p", "oops"])
    assert out.exit_code == 2 and "NAME=VALUE" in out.output
    assert requests_log(sb, "workday")["requests"] == 0
    assert requests_log(sb, "jira")["requests"] == 0


def test_parse_params() -> None:
    assert parse_params(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_params(["=1"])
