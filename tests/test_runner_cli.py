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

from junction.cli.workflow import configured_prefect_api, parse_params, workflow_app
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


# --- where it runs, and what a user sees ------------------------------------------------------


@pytest.fixture
def no_prefect_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Prefect server configured: neither PREFECT_API_URL nor a profile naming one."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-profiles.toml"))


def test_configured_prefect_api_comes_from_env_or_the_active_profile(
    no_prefect_server: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert configured_prefect_api() is None
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://prefect:4200/api"\n'
        "[profiles.ephemeral]\n"
    )
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(profiles))
    assert configured_prefect_api() == "http://prefect:4200/api"
    monkeypatch.setenv("PREFECT_PROFILE", "ephemeral")
    assert configured_prefect_api() is None
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert configured_prefect_api() == "http://127.0.0.1:4200/api"


def test_by_default_it_runs_in_process_and_says_so(
    sb: Any, cli: typer.Typer, tmp_path: Path, no_prefect_server: None
) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = CliRunner().invoke(cli, ["run", spec, "-p", f"worker_id={WORKER_0}", "-p", "project=OPS"])
    assert out.exit_code == 0, out.output
    assert "in this process (no PREFECT_API_URL" in out.stderr
    assert "completed" in out.stdout


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["project=OPS"], "missing required parameter 'worker_id'"),
        ([f"worker_id={WORKER_0}", "project=OPS", "nope=1"], "unknown parameter 'nope'"),
        ([f"worker_id={WORKER_0}", "project=OPS", "count=abc"], "'abc' is not of type integer"),
        ([f"worker_id={WORKER_0}", "project=OPS", "count=NaN"], "not a finite number"),
        ([f"worker_id={WORKER_0}", "project=OPS", "count=5000"], "limit of 1000"),
    ],
)
def test_a_bad_parameter_is_one_line_before_anything_starts(
    sb: Any,
    cli: typer.Typer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    params: list[str],
    message: str,
) -> None:
    """Even with a Prefect server configured (here one that does not answer), a bad
    parameter is reported at once: nothing waits for Prefect, nothing is called."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    spec = {
        **SPEC,
        "parameters": {**SPEC["parameters"], "count": {"type": "integer", "default": 1}},
        "steps": [
            *SPEC["steps"],
            {
                "id": "fan",
                "uses": "okta.list_groups",
                "for_each": "[params.project] * params.count",
                "with": {"q": "{{ item }}"},
            },
        ],
    }
    args = ["run", write_spec(tmp_path, spec)]
    for pair in params:
        args += ["-p", pair]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 2, out.output
    assert message in out.stderr and "nothing was run" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.output
    assert requests_log(sb, "workday")["requests"] == 0


def test_one_line_per_failed_step(sb: Any, cli: typer.Typer, tmp_path: Path) -> None:
    set_faults(sb, "jira", outages=[{"start": 0, "mode": "503"}])
    spec = {
        **SPEC,
        "steps": [
            {**SPEC["steps"][0]},
            {
                "id": "optional_ticket",
                "uses": "jira.create_issue",
                "continue_on_error": True,
                "with": {"project_key": "OPS", "summary": "a\nmulti-line\nsummary"},
            },
            SPEC["steps"][1],
        ],
    }
    args = ["run", write_spec(tmp_path, spec), "--local", "-p", f"worker_id={WORKER_0}"]
    out = CliRunner().invoke(cli, [*args, "-p", "project=OPS"])
    assert out.exit_code == 1, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert lines[0].startswith("warning: step 'optional_ticket' failed (continue_on_error)")
    assert lines[1].startswith("workflow failed at step 'ticket': ")
    assert "Traceback" not in out.output


def test_help_says_where_a_worker_id_comes_from() -> None:
    out = CliRunner().invoke(workflow_app, ["run", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    text = " ".join(out.output.split())
    assert "junction sandbox records workday" in text
    assert "--prefect" in text and "--local" in text and "PREFECT_API_URL" in text


def test_list_never_truncates_action_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = CliRunner().invoke(workflow_app, ["list"])
    assert out.exit_code == 0, out.output
    for name in ("okta.add_user_to_group", "gitlab.add_project_member", "pagerduty.list_oncalls"):
        assert name in out.output
    assert "…" not in out.output
    rows = json.loads(CliRunner().invoke(workflow_app, ["list", "--json"]).output)
    assert {r["name"] for r in rows} >= {"employee_onboarding", "incident_response"}
