"""``junction workflow generate`` (and ``intelligence/generate``): a spec from plain words,
previewed as YAML with a diff and its confidence; ``--save`` keeps revisions; the flag and
bad input give one line. Deterministic specs come from the sandbox LLM's scripted
``good`` completion; the offline planner is what runs without ``JUNCTION_LLM_MODEL``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from analytics.intelligence.generate import GenerateError, generate
from integrations.sandbox.app import SandboxServer
from junction.cli import app
from junction.settings import Settings, get_settings
from junction.workflows.builtins import builtin_specs
from junction.workflows.validate import validate_text
from tests.helpers import run_junction
from tests.service_helpers import ApiServer, ServiceServer, service_settings

REQUEST = (
    "when a GitLab pipeline fails, summarize the job log with OpenAI, post it to Webex and "
    "open a Jira issue"
)


def _llm(sb: SandboxServer, tmp_path: Path, **extra: Any) -> Settings:
    """Settings whose generator is the sandbox LLM's scripted good completion."""
    return Settings(
        sandbox_url=sb.url, home=tmp_path / "home", llm_model="junction-plan-good", **extra
    )


def cli(home: Path, *args: str, stdin: str | None = None, **env: str) -> Result:
    """``junction workflow generate ARGS`` in this process (settings read afresh)."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app,
            ["workflow", "generate", *args],
            input=stdin,
            env={"JUNCTION_HOME": str(home), "COLUMNS": "200", **env},
        )
    finally:
        get_settings.cache_clear()


# --- the command line ----------------------------------------------------------------------


def test_cli_piped_prints_the_spec_and_notes_apart(tmp_path: Path) -> None:
    done = run_junction(["workflow", "generate", REQUEST], home=tmp_path)
    lines = done.stderr.strip().splitlines()
    if done.returncode == 1:  # a refusal is one line, and nothing on stdout
        assert done.stdout == "" and len(lines) == 1 and lines[0].startswith("error: ")
        return
    assert done.returncode == 0, done.stderr
    assert validate_text(done.stdout).ok  # stdout is the spec itself: `> spec.yaml` works
    assert lines[0].startswith("# offline planner, confidence ")
    assert not (tmp_path / "specs").exists()  # a preview: nothing saved, nothing run


def test_cli_json_and_output_file(sb: SandboxServer, tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    env = {"JUNCTION_SANDBOX_URL": sb.url, "JUNCTION_LLM_MODEL": "junction-plan-good"}
    done = cli(tmp_path, REQUEST, "--json", "-o", str(out), **env)
    assert done.exit_code == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["ok"] and body["refusal"] is None and body["name"] == "ci_failure_summary"
    assert body["validation"]["ok"] and body["validation"]["errors"] == []
    assert body["spec"]["steps"][0]["uses"] == "gitlab.list_pipeline_jobs"
    assert out.read_text() == body["yaml"] and validate_text(body["yaml"]).ok
    assert body["saved"] is None and body["existing"] is None and body["diff"] is None


def test_cli_unwritable_output_saves_nothing(sb: SandboxServer, tmp_path: Path) -> None:
    env = {"JUNCTION_SANDBOX_URL": sb.url, "JUNCTION_LLM_MODEL": "junction-plan-good"}
    out = tmp_path / "missing" / "spec.yaml"
    done = cli(tmp_path, REQUEST, "--save", "-o", str(out), **env)
    assert done.exit_code == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: -o: cannot write {out}")
    assert not (tmp_path / "specs").exists()


def test_cli_refusal_is_one_line_and_exit_1(sb: SandboxServer, tmp_path: Path) -> None:
    env = {"JUNCTION_SANDBOX_URL": sb.url, "JUNCTION_LLM_MODEL": "junction-plan-refusal"}
    done = cli(tmp_path, REQUEST, "--save", **env)
    assert done.exit_code == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: the LLM refused: I can't help with creating that workflow."
    ]
    assert not (tmp_path / "specs").exists()


def test_cli_reads_standard_input_and_saves(sb: SandboxServer, tmp_path: Path) -> None:
    env = {"JUNCTION_SANDBOX_URL": sb.url, "JUNCTION_LLM_MODEL": "junction-plan-good"}
    done = cli(tmp_path, "-", "--save", stdin=REQUEST, **env)
    assert done.exit_code == 0, done.stderr
    saved = tmp_path / "specs" / "ci_failure_summary.yaml"
    assert saved.read_text() == done.stdout
    assert f"# saved {saved}" in done.stderr


def test_cli_never_writes_control_characters(tmp_path: Path) -> None:
    done = cli(tmp_path, "open a jira issue \x1b[31m\x07 <script>alert(1)</script>")
    assert done.exit_code in (0, 1), done.stderr
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "env", "stdin", "words"),
    [
        (["   "], {}, "", "text: the description is empty"),
        (["-"], {}, "x" * 5000, "at most 4,000 (JUNCTION_AI_WORKFLOW_MAX_CHARS)"),
        (["-"], {}, "é" * 600_000, "1 MB is the limit"),
        ([REQUEST, "--name", "../etc/passwd"], {}, "", "name: '../etc/passwd' is not a spec name"),
        ([REQUEST], {"AI_WORKFLOW_ENABLED": "false"}, "", "set AI_WORKFLOW_ENABLED=true"),
    ],
    ids=["empty", "too-long", "1mb", "bad-name", "flag-off"],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], stdin: str, words: str
) -> None:
    done = cli(tmp_path, *args, stdin=stdin, **env)
    assert done.exit_code == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not any(tmp_path.glob("**/*.yaml"))


# --- the generator -------------------------------------------------------------------------


def test_save_keeps_each_previous_text_as_a_revision(sb: SandboxServer, tmp_path: Path) -> None:
    settings = _llm(sb, tmp_path)
    specs = tmp_path / "specs"
    first = generate(REQUEST, settings, save=True, specs_dir=specs)
    assert first.ok and first.saved == specs / "ci_failure_summary.yaml" and first.revision is None
    hand_edit = first.saved.read_text().replace("acme/backend", "acme/frontend")
    first.saved.write_text(hand_edit)
    second = generate(REQUEST, settings, save=True, specs_dir=specs)
    assert second.revision == specs / ".history" / "ci_failure_summary.rev1.yaml"
    assert second.revision.read_text() == hand_edit  # the previous revision, kept whole
    assert "-    default: acme/frontend" in str(second.diff)
    assert "+    default: acme/backend" in str(second.diff)
    third = generate(REQUEST, settings, save=True, specs_dir=specs)
    assert third.revision == specs / ".history" / "ci_failure_summary.rev2.yaml"
    assert third.diff == ""  # the same spec again: an empty diff against the saved one


def test_diff_against_a_builtin_of_the_same_name(sb: SandboxServer, tmp_path: Path) -> None:
    settings = _llm(sb, tmp_path)
    result = generate(REQUEST, settings, name="ci_failure_triage", specs_dir=tmp_path / "s")
    assert result.ok and result.name == "ci_failure_triage"
    assert result.existing == builtin_specs()["ci_failure_triage"]
    diff = str(result.diff)
    assert diff.startswith("--- ci_failure_triage.yaml (built-in)\n")
    assert "+++ ci_failure_triage.yaml (generated)\n" in diff
    assert "+name: ci_failure_triage" not in diff  # same name, not a changed line
    assert "-  - id: pipeline" in diff and "+- id: jobs" in diff
    assert result.saved is None and not (tmp_path / "s").exists()


def test_the_flag_and_limits_are_checked_before_planning(tmp_path: Path) -> None:
    off = Settings(home=tmp_path, ai_workflow_enabled=False)
    with pytest.raises(GenerateError, match="AI_WORKFLOW_ENABLED") as caught:
        generate(REQUEST, off)
    assert caught.value.field == "flag"
    short = Settings(home=tmp_path, ai_workflow_max_chars=10)
    with pytest.raises(GenerateError, match="at most 10 ") as caught:
        generate(REQUEST, short)
    assert caught.value.field == "text"
    with pytest.raises(GenerateError, match="NUL"):
        generate("open a jira issue\x00", Settings(home=tmp_path))


def test_offline_refusal_names_the_words(tmp_path: Path) -> None:
    result = generate("frobnicate the quantum flux capacitor", Settings(home=tmp_path))
    assert not result.ok and result.plan.source == "offline"
    assert result.refusal and "\n" not in result.refusal
    assert result.as_dict()["spec"] is None


# --- the API -------------------------------------------------------------------------------

URL = "/api/v2/workflows/enhanced/intelligence/generate"


def test_api_generates_a_preview(api_server: ApiServer) -> None:
    with api_server.client() as http:
        resp = http.post(URL, json={"text": REQUEST})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["source"] == "offline" and (body["ok"] or body["refusal"])
        assert body["saved"] is None
        bad = http.post(URL, json={"text": "  "})
        assert bad.status_code == 422
        assert bad.json()["error"]["details"][0]["field"] == "body.text"
        long = http.post(URL, json={"text": "x" * 5000})
        assert long.status_code == 422 and "JUNCTION_AI_WORKFLOW_MAX_CHARS" in long.text
        assert http.post(URL, json={"text": REQUEST, "name": "A B"}).status_code == 422
        # A number is no yes/no: nothing is saved because 0.0 or 1 happens to coerce.
        for flag in (0.0, 1, "yes"):
            assert http.post(URL, json={"text": REQUEST, "save": flag}).status_code == 422
        unauth = api_server.client(auth=False).post(URL, json={"text": REQUEST})
        assert unauth.status_code == 401


def test_api_flag_off_is_403(sandbox: SandboxServer, tmp_path: Path) -> None:
    settings = service_settings(tmp_path, sandbox, ai_workflow_enabled=False)
    with ServiceServer(settings) as server, server.info().client() as http:
        resp = http.post(URL, json={"text": REQUEST})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "disabled"
    assert "AI_WORKFLOW_ENABLED" in resp.json()["error"]["message"]


# --- the Prefect flow and its deployment ---------------------------------------------------


def test_flow_tasks_and_deployment_entry(tmp_path: Path) -> None:
    import yaml

    from flows.generate import generate_spec, preview_markdown
    from tests.helpers import ROOT

    get_settings.cache_clear()
    refused = generate_spec.fn("  ", None, False)
    assert refused == {
        "ok": False,
        "refusal": "text: the description is empty; say what the workflow does",
    }
    assert preview_markdown(refused).startswith("# Workflow not generated\n")
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    entry = next(d for d in deployments if d["name"] == "generate-workflow")
    assert entry["entrypoint"] == "flows/generate.py:generate_workflow"
    assert not entry.get("schedules")
