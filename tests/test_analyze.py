"""`junction workflow analyze` and `POST .../intelligence/analyze`
(analytics.intelligence.analyze): per-step p50/p95 from a metrics store holding known call
latencies (the expected numbers computed here with numpy), the critical path, a pair
serialised by `needs` alone, steps without retries/timeout/fallback, a side effect without
an idempotency key, a step without history, and the what-if of the recommended changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from analytics.intelligence.analyze import Analysis, analyze_spec, analyze_text
from junction.cli import app
from junction.settings import Settings, get_settings
from junction.store import MetricsStore
from tests.service_helpers import ApiServer

SPEC = """\
name: analyze_test
description: A lookup, a slow group listing that waits for it for nothing, a ticket
parameters:
  worker_id: {type: string, required: true}
steps:
  - id: worker
    uses: workday.get_worker
    with: {worker_id: "{{ params.worker_id }}"}
    retries: 2
    timeout: 10s
  - id: groups  # waits for worker, reads none of its output
    uses: okta.list_groups
    needs: [worker]
    retries: 1
    timeout: 5s
  - id: ticket  # a side effect: no idempotency_key, no retries, no timeout
    uses: jira.create_issue
    with: {project_key: IT, summary: "Onboard {{ steps.worker.output.worker_id }}"}
  - id: lookup  # never called: no history; waits for two steps it reads nothing of
    uses: okta.get_user
    needs: [worker, groups]
    with: {login: "{{ params.worker_id }}"}
    retries: 1
    timeout: 5s
outputs:
  groups: "{{ steps.groups.output }}"
  user: "{{ steps.lookup.output }}"
"""

START = datetime(2026, 11, 2, tzinfo=UTC)
RUNS = 40
AT = START + timedelta(minutes=10 * RUNS)


def latencies() -> dict[str, np.ndarray]:
    """Known latencies per action, one per run (``ticket`` fails in runs 0, 10, 20, 30)."""
    rng = np.random.default_rng(11)
    return {
        "worker": np.round(150 + 100 * rng.random(RUNS), 3),
        "groups": np.round(1500 + 1000 * rng.random(RUNS), 3),
        "ticket": np.round(900 + 400 * rng.random(RUNS), 3),
    }


TARGETS = {
    "worker": ("workday", "get_worker", "GET", "/workers/W1"),
    "groups": ("okta", "list_groups", "GET", "/api/v1/groups"),
    "ticket": ("jira", "create_issue", "POST", "/rest/api/3/issue"),
}


def ticket_failed(i: int) -> bool:
    return i % 10 == 0


def populate(root: Path) -> dict[str, np.ndarray]:
    """Runs of ``analyze_test`` with their calls, written through the store."""
    lat = latencies()
    calls: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for i in range(RUNS):
        t = START + timedelta(minutes=10 * i)
        rid = f"run{i:03d}"
        for step, (service, action, method, path) in TARGETS.items():
            failed = step == "ticket" and ticket_failed(i)
            calls.append(
                {
                    "ts": t + timedelta(seconds=1),
                    "service": service,
                    "action": action,
                    "method": method,
                    "path": path,
                    "status": 503 if failed else 200,
                    "ok": not failed,
                    "latency_ms": float(lat[step][i]),
                    "error_class": "ServerError" if failed else None,
                    "attempts": 1,
                    "breaker_state": "closed",
                    "source": "workflow",
                    "run_id": rid,
                }
            )
        runs.append(
            {
                "run_id": rid,
                "workflow": "analyze_test",
                "started_at": t,
                "ended_at": t + timedelta(seconds=5),
                "status": "failed" if ticket_failed(i) else "completed",
                "duration_ms": 5000.0,
                "steps": 4,
                "retries": 0,
                "fallbacks": 0,
            }
        )
    with MetricsStore(root) as store:
        store.append("calls", calls)
        store.append("workflow_runs", runs)
    return lat


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("analyze-home")
    settings = Settings(home=home)
    lat = populate(settings.metrics_dir)
    spec = home / "analyze_test.yaml"
    spec.write_text(SPEC)
    analysis = analyze_spec(spec, settings, at=AT)
    return {"home": home, "settings": settings, "lat": lat, "spec": spec, "analysis": analysis}


def p(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))  # linear interpolation, as quantile_cont


def test_steps_have_p50_p95_from_the_store(world: dict[str, Any]) -> None:
    a: Analysis = world["analysis"]
    lat = world["lat"]
    assert a.validation.ok and a.name == "analyze_test"
    assert a.window is not None and a.window.days == world["settings"].analytics_report_days
    steps = {s.step: s for s in a.steps}
    ok_ticket = lat["ticket"][[not ticket_failed(i) for i in range(RUNS)]]
    expected = {"worker": lat["worker"], "groups": lat["groups"], "ticket": ok_ticket}
    for step, values in expected.items():
        assert steps[step].calls == RUNS
        assert steps[step].p50_ms == pytest.approx(p(values, 50), abs=1e-3), step
        assert steps[step].p95_ms == pytest.approx(p(values, 95), abs=1e-3), step
    assert steps["ticket"].success_rate == pytest.approx(36 / 40)
    assert steps["worker"].measured == "workday.get_worker"


def test_a_step_without_history_says_so_and_the_path_is_partial(world: dict[str, Any]) -> None:
    a: Analysis = world["analysis"]
    lookup = next(s for s in a.steps if s.step == "lookup")
    assert lookup.calls == 0 and lookup.p50_ms is None and lookup.p95_ms is None
    assert lookup.note is not None and lookup.note.startswith("no history: no okta.get_user")
    assert a.critical_path is not None
    assert a.critical_path.partial and a.critical_path.without_history == ["lookup"]


def test_critical_path_and_the_parallelizable_pair(world: dict[str, Any]) -> None:
    a: Analysis = world["analysis"]
    lat = world["lat"]
    w, g = p(lat["worker"], 95), p(lat["groups"], 95)
    t = p(lat["ticket"][[not ticket_failed(i) for i in range(RUNS)]], 95)
    cp = a.critical_path
    assert cp is not None
    # worker -> groups (needs) beats worker -> ticket: groups is the slow one; lookup
    # (no history, 0 ms) ends the chain: of equal sums, the longer chain is shown
    assert cp.steps == ["worker", "groups", "lookup"]
    assert cp.p95_ms == pytest.approx(w + g, abs=1e-2)
    assert cp.p50_ms == pytest.approx(p(lat["worker"], 50) + p(lat["groups"], 50), abs=1e-2)
    assert [s.step for s in a.steps if s.critical] == ["worker", "groups", "lookup"]
    # lookup -> worker is not a finding: lookup still waits for groups, which needs worker
    pairs = {(x.step, x.waits_for): x for x in a.parallelizable}
    assert set(pairs) == {("groups", "worker"), ("lookup", "groups")}
    assert not pairs[("groups", "worker")].side_effect
    # without the `needs`, the longest chain is max(groups, worker -> ticket)
    assert pairs[("groups", "worker")].p95_saving_ms == pytest.approx(
        w + g - max(g, w + t), abs=1e-2
    )
    assert pairs[("lookup", "groups")].p95_saving_ms == 0.0


def test_unprotected_steps_and_unkeyed_side_effects(world: dict[str, Any]) -> None:
    a: Analysis = world["analysis"]
    unprotected = {u.step: u for u in a.unprotected}
    # jira.create_issue is idempotent (keyed): retries are allowed, so missing
    assert unprotected["ticket"].missing == ["retries", "timeout", "fallback"]
    assert "servicenow (ticket.create)" in unprotected["ticket"].note
    assert unprotected["worker"].missing == ["fallback"]
    [effect] = a.unkeyed_side_effects
    assert (effect.step, effect.action, effect.key_field) == (
        "ticket",
        "jira.create_issue",
        "idempotency_key",
    )
    assert "derives the key" in effect.note


def test_success_prediction_with_reasons(world: dict[str, Any]) -> None:
    s = world["analysis"].success
    assert s is not None and s.probability is not None and 0.0 <= s.probability <= 1.0
    assert s.reasons and s.method
    if s.method == "naive":
        assert not s.confident  # the naive estimate is never confident


def test_what_if_applies_the_recommendations_in_memory(world: dict[str, Any]) -> None:
    a: Analysis = world["analysis"]
    w = a.what_if
    assert w is not None and w.valid
    by_kind = {c.kind: c for c in w.changes}
    par = {(c.step, str(c.old), str(c.new)) for c in w.changes if c.kind == "parallelize"}
    # each of lookup's two was computed against the whole list: both apply, in turn
    assert par == {
        ("groups", "['worker']", "None"),
        ("lookup", "['worker', 'groups']", "['groups']"),
        ("lookup", "['worker', 'groups']", "['worker']"),
    }
    assert all(c.applied for c in w.changes), w.changes
    retry = by_kind["retry"]  # 4 of 40 ticket calls failed with a 503: retry it
    assert (retry.step, retry.field, retry.new, retry.applied) == ("ticket", "retries", 2, True)
    assert a.critical_path is not None
    assert w.critical_path_p95_ms.before == a.critical_path.p95_ms
    saving = a.parallelizable[0].p95_saving_ms
    assert w.critical_path_p95_ms.change == pytest.approx(-saving, abs=1e-2)
    assert w.success_probability.before == (a.success.probability if a.success else None)
    assert w.success_probability.after is not None
    # nothing was written
    assert world["spec"].read_text() == SPEC


def test_invalid_spec_and_unreadable_text_are_results(world: dict[str, Any]) -> None:
    settings = world["settings"]
    bad = analyze_text(SPEC.replace("okta.get_user", "okta.get_usr"), settings, at=AT)
    assert not bad.validation.ok and bad.success is None and bad.what_if is None
    assert any("get_usr" in e.message for e in bad.validation.errors)
    assert [s.step for s in bad.steps] == ["worker", "groups", "ticket", "lookup"]
    broken = analyze_text("name: [x\n", settings)
    assert not broken.validation.ok and broken.steps == [] and broken.name is None
    assert broken.validation.errors[0].line is not None


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_home(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in ("JUNCTION_STORE_DIR", "JUNCTION_ANALYTICS_REPORT_DAYS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUNCTION_HOME", str(world["home"]))
    get_settings.cache_clear()
    yield world["home"]
    get_settings.cache_clear()


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["workflow", "analyze", *args], env={"COLUMNS": "200"})


def test_cli_table_and_json(world: dict[str, Any], cli_home: Path) -> None:
    spec = str(world["spec"])
    out = cli(spec)
    assert out.exit_code == 0, out.output
    text = out.output
    assert (
        "critical path: worker -> groups -> lookup" in text
        and "(partial: no history for lookup" in text
    )
    assert "no history: no okta.get_user calls" in text
    assert "could run in parallel" in text and "reads none of its output" in text
    assert "side effects without an idempotency key" in text
    assert "success: " in text and "what-if critical path p95" in text
    # piped: one line per table row, never folded mid-word
    assert any(
        line.startswith("│ ticket") and "jira.create_issue" in line for line in text.splitlines()
    )
    data = json.loads(cli(spec, "--json").output)
    assert data["name"] == "analyze_test" and data["validation"]["ok"]
    assert data["critical_path"]["steps"] == ["worker", "groups", "lookup"]
    assert {s["step"]: s["p95_ms"] for s in data["steps"]}["lookup"] is None
    assert data["what_if"]["critical_path_p95_ms"]["change"] < 0


def test_cli_bad_input_is_one_line(tmp_path: Path, cli_home: Path) -> None:
    cases = {
        "nope_not_a_spec": "no spec file 'nope_not_a_spec' and no built-in spec",
        str(tmp_path / "missing.yaml"): "no spec file",
    }
    (tmp_path / "broken.yaml").write_text("name: [x\n")
    cases[str(tmp_path / "broken.yaml")] = "broken.yaml:2"
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    cases[str(tmp_path / "list.yaml")] = "not a workflow spec"
    for arg, expected in cases.items():
        out = cli(arg)
        assert out.exit_code == 2, (arg, out.output)
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(SPEC.replace("okta.get_user", "okta.get_usr"))
    out = cli(str(invalid))
    assert out.exit_code == 1 and "get_usr" in out.output and "Traceback" not in out.output
    # text from the spec is printed as it is, never read as rich markup
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(SPEC.replace("project_key: IT", 'project_key: IT, "[/bold][red]x": 1'))
    out = cli(str(hostile))
    assert out.exit_code == 1 and "[/bold][red]x" in out.output, out.output


# --- the API ------------------------------------------------------------------------------------

ANALYZE = "/api/v2/workflows/enhanced/intelligence/analyze"


def test_api_analyzes_a_builtin_and_a_posted_spec(api_server: ApiServer) -> None:
    with api_server.client() as api:
        got = api.post(ANALYZE, json={"spec": "ci_failure_triage"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["name"] == "ci_failure_triage" and body["validation"]["ok"]
        assert body["source"] == "ci_failure_triage.yaml"  # not the server's path
        assert [s["step"] for s in body["steps"]][:2] == ["pipeline", "failed_jobs"]
        assert body["critical_path"]["steps"] and body["success"]["reasons"]
        assert body["what_if"] is not None
        posted = api.post(ANALYZE, json={"text": SPEC}).json()
        assert posted["name"] == "analyze_test" and posted["parallelizable"][0]["step"] == "groups"
        broken = api.post(ANALYZE, json={"text": "name: [x\n"})
        assert broken.status_code == 200 and not broken.json()["validation"]["ok"]


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return dict(error)


def test_api_bad_input_in_the_one_error_shape(api_server: ApiServer) -> None:
    with api_server.client() as api:
        error = error_of(api.post(ANALYZE, json={"spec": "nope"}), 404, "unknown_spec")
        assert "nope" in error["message"]
        error_of(api.post(ANALYZE, json={}), 422, "invalid_request")
        error_of(
            api.post(ANALYZE, json={"spec": "ci_failure_triage", "text": SPEC}),
            422,
            "invalid_request",
        )
        big = "#" * 1_000_001
        assert api.post(ANALYZE, json={"text": big}).status_code in (413, 422)
        with api_server.client(auth=False) as anonymous:
            error_of(
                anonymous.post(ANALYZE, json={"spec": "ci_failure_triage"}), 401, "unauthorized"
            )
