"""The service's API over the wire: integrations, workflows, alerts, optimization and the
intelligence placeholders, against the real server (``api_server``) and the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from junction.alerting import state as alert_state
from junction.alerting.alerts import list_alerts
from junction.alerting.engine import AlertEngine
from junction.alerting.rules import default_config
from junction.store import MetricsStore
from junction.workflows.validate import validate_text
from tests.alerting_helpers import at, failing, healthy
from tests.helpers import run_junction, set_faults
from tests.service_helpers import ApiServer, ServiceServer, service_settings
from tests.test_recommend import SPEC, crafted

if TYPE_CHECKING:  # the sandbox takes over a second to import; the fixtures bring it
    from integrations.sandbox.app import SandboxServer

WORKER_0 = "2f5d8d236660d0591e487847bd050202"  # the sandbox's worker 0
OPTIMIZATION = "/api/v2/workflows/enhanced/optimization"
INTELLIGENCE = "/api/v2/workflows/enhanced/intelligence"

# Every route of this module's routers, with a body where it takes one.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v2/integrations", None),
    ("POST", "/api/v2/integrations/okta/check", None),
    ("GET", "/api/v2/workflows", None),
    ("POST", "/api/v2/workflows/validate", {"spec": "employee_onboarding"}),
    ("POST", "/api/v2/workflows/run", {"spec": "employee_onboarding"}),
    ("GET", "/api/v2/workflows/runs/nope", None),
    ("GET", "/api/v2/alerts", None),
    ("POST", "/api/v2/alerts/1/ack", {}),
    ("GET", "/api/v2/alerts/silences", None),
    ("POST", "/api/v2/alerts/silences", {"service": "okta", "duration": "1h"}),
    ("DELETE", "/api/v2/alerts/silences/s1", None),
    ("POST", f"{OPTIMIZATION}/analyze", {}),
    ("POST", f"{OPTIMIZATION}/apply", {"dry_run": True}),
    ("POST", f"{INTELLIGENCE}/analyze", {}),
    ("POST", f"{INTELLIGENCE}/generate", {}),
]


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The ``error`` object of a response in the one error shape, checked."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert "Traceback" not in resp.text
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture(scope="module")
def isolated(
    sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """A service of its own (alerts seeded, crafted history, a spec directory to edit), so
    the session service's alert and store state stay what its tests expect."""
    home = tmp_path_factory.mktemp("service-api-home")
    specs = home / "specs"
    specs.mkdir()
    settings = service_settings(home, sandbox, analytics_spec_dir=specs)
    with ServiceServer(settings) as server:
        yield server.info()


@pytest.fixture
def api(api_server: ApiServer) -> Iterator[httpx.Client]:
    with api_server.client() as client:
        yield client


# --- auth and the placeholders ----------------------------------------------------------------


def test_every_route_needs_the_token(api_server: ApiServer) -> None:
    with api_server.client(auth=False) as anonymous:
        for method, path, body in ROUTES:
            resp = anonymous.request(method, path, json=body)
            error_of(resp, 401, "unauthorized")
            resp = anonymous.request(
                method, path, json=body, headers={"Authorization": "Bearer wrong"}
            )
            error_of(resp, 401, "unauthorized")


def test_every_route_is_documented_with_a_model_and_a_summary(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    for method, path, _ in ROUTES:
        template = path.replace("/okta/", "/{name}/").replace("/runs/nope", "/runs/{run_id}")
        template = template.replace("/alerts/1/", "/alerts/{ref}/")
        template = template.replace("/silences/s1", "/silences/{silence_id}")
        operation = schema["paths"][template][method.lower()]
        assert operation["summary"], template
        responses = operation["responses"]
        ok = next(code for code in responses if code.startswith("2") or code == "501")
        assert "$ref" in str(responses[ok]["content"]["application/json"]["schema"]), template
        # Errors are documented in the one shape, never FastAPI's default validation body.
        assert "ErrorBody" in str(responses["401"]), template
        assert "HTTPValidationError" not in str(responses), template


# --- integrations -------------------------------------------------------------------------------


def test_integrations_list_and_capability_filter(api: httpx.Client, api_server: ApiServer) -> None:
    listed = api.get("/api/v2/integrations").json()["integrations"]
    okta = next(i for i in listed if i["name"] == "okta")
    assert okta["base_url"].startswith(api_server.settings.sandbox_url) and okta["enabled"]
    assert okta["health"]["method"] == "GET"
    notify = api.get("/api/v2/integrations", params={"capability": "notify.send"}).json()
    assert {i["name"] for i in notify["integrations"]} >= {"slack", "webex"}
    assert len(notify["integrations"]) < len(listed)
    error = error_of(
        api.get("/api/v2/integrations", params={"capability": "notfy"}), 422, "invalid_request"
    )
    assert error["details"][0]["field"] == "query.capability"
    assert "did you mean" in error["message"]


def test_integration_check_is_recorded_and_unknown_names_404(
    api: httpx.Client, api_server: ApiServer, sb: SandboxServer
) -> None:
    result = api.post("/api/v2/integrations/okta/check").json()
    assert result["integration"] == "okta" and result["ok"] and result["recorded"]
    with MetricsStore(api_server.settings.metrics_dir) as store:
        probes = store.query("SELECT ok FROM probes WHERE service = 'okta'")
    assert len(probes) >= 1
    error = error_of(api.post("/api/v2/integrations/oktaa/check"), 404, "unknown_integration")
    assert error["message"] == "unknown integration 'oktaa' (did you mean 'okta'?)"
    assert error["details"]["field"] == "path.name"


# --- workflows ----------------------------------------------------------------------------------


def test_workflow_list_and_validate(api: httpx.Client) -> None:
    listed = {w["name"]: w for w in api.get("/api/v2/workflows").json()["workflows"]}
    onboarding = listed["employee_onboarding"]
    assert onboarding["valid"] and onboarding["parameters"]["worker_id"]["required"]
    assert onboarding["steps"]
    report = api.post("/api/v2/workflows/validate", json={"spec": "employee_onboarding"}).json()
    assert report["ok"] and report["errors"] == [] and report["name"] == "employee_onboarding"
    text = "name: broken\nsteps:\n  - id: a\n    uses: nosuch.action\n"
    report = api.post("/api/v2/workflows/validate", json={"text": text}).json()
    assert not report["ok"] and report["errors"][0]["line"] == 4
    assert report["errors"][0]["step"] == "a"
    error = error_of(api.post("/api/v2/workflows/validate", json={}), 422, "invalid_request")
    assert "exactly one of `spec`" in error["message"]
    error = error_of(
        api.post("/api/v2/workflows/validate", json={"spec": "../../etc/passwd"}),
        404,
        "unknown_spec",
    )
    assert error["details"]["field"] == "body.spec"


def test_workflow_run_is_recorded_in_the_store(
    api: httpx.Client, api_server: ApiServer, sb: SandboxServer
) -> None:
    resp = api.post(
        "/api/v2/workflows/run",
        json={"spec": "employee_onboarding", "params": {"worker_id": WORKER_0}},
    )
    summary = resp.json()
    assert resp.status_code == 200, summary
    assert summary["status"] == "completed", summary["error"]
    assert summary["steps"] and all(s["status"] in ("ok", "skipped") for s in summary["steps"])
    run_id = summary["run_id"]
    with MetricsStore(api_server.settings.metrics_dir) as store:
        rows = store.query("SELECT status FROM workflow_runs WHERE run_id = ?", [run_id])
    assert rows["status"].tolist() == ["completed"]
    record = api.get(f"/api/v2/workflows/runs/{run_id}").json()
    assert record["workflow"] == "employee_onboarding" and record["status"] == "completed"
    assert record["params"]["worker_id"] == WORKER_0 and record["calls"] > 0
    error = error_of(api.get("/api/v2/workflows/runs/no-such-run"), 404, "unknown_run")
    assert error["details"] == {"field": "path.run_id"}


def test_a_failed_run_is_a_result_naming_the_step(
    api: httpx.Client, api_server: ApiServer, sb: SandboxServer
) -> None:
    set_faults(sb, "workday", outages=[{"start": 0, "mode": "503"}])
    body = {"spec": "employee_onboarding", "params": {"worker_id": WORKER_0}}
    resp = api.post("/api/v2/workflows/run", json=body)
    summary = resp.json()
    assert resp.status_code == 200, summary
    assert summary["status"] == "failed" and summary["failed_step"] == "hire"
    assert "hire" in summary["error"]
    record = api.get(f"/api/v2/workflows/runs/{summary['run_id']}").json()
    assert record["status"] == "failed" and record["failed_calls"] >= 1


def test_workflow_run_bad_input_runs_nothing(api: httpx.Client, api_server: ApiServer) -> None:
    def runs() -> int:
        with MetricsStore(api_server.settings.metrics_dir) as store:
            return store.count("workflow_runs")

    before = runs()
    error = error_of(
        api.post("/api/v2/workflows/run", json={"spec": "employee_onboarding", "params": {}}),
        422,
        "invalid_request",
    )
    assert error["details"][0]["field"] == "body.params.worker_id"
    assert "missing required parameter 'worker_id'" in error["message"]
    body = {"spec": "employee_onboarding", "params": {"worker_id": WORKER_0, "nope": 1}}
    error = error_of(api.post("/api/v2/workflows/run", json=body), 422, "invalid_request")
    assert error["details"][0]["field"] == "body.params.nope"
    error = error_of(
        api.post("/api/v2/workflows/run", json={"spec": "onboarding", "params": {}}),
        404,
        "unknown_spec",
    )
    assert "did you mean 'employee_onboarding'?" in error["message"]
    error = error_of(
        api.post("/api/v2/workflows/run", json={"spec": "employee_onboarding", "params": []}),
        422,
        "invalid_request",
    )
    assert error["details"][0]["field"] == "body.params"
    assert runs() == before


# --- alerts -------------------------------------------------------------------------------------


def seed_alerts(server: ApiServer) -> None:
    """okta fired then resolved; gitlab firing (success_rate and health_score)."""
    engine = AlertEngine(alert_state.db_path(server.settings), default_config(server.settings))
    engine.evaluate(failing(["okta"], at(0)), now=at(0))
    engine.evaluate([*failing(["gitlab"], at(5)), *healthy(["okta"], at(5))], now=at(5))
    engine.close()


def test_alert_ack_through_the_api_is_in_the_alert_database(isolated: ApiServer) -> None:
    seed_alerts(isolated)
    with isolated.client() as api:
        active = api.get("/api/v2/alerts").json()["alerts"]
        assert {a["fingerprint"] for a in active} == {"gitlab:success_rate", "gitlab:health_score"}
        assert len(api.get("/api/v2/alerts", params={"all": True}).json()["alerts"]) == 4
        done = api.post("/api/v2/alerts/gitlab:success_rate/ack", json={"by": "alice"}).json()
        assert done["acknowledged"][0]["fingerprint"] == "gitlab:success_rate"
        assert {a["state"] for a in done["acknowledged"]} == {"acknowledged"}
        error = error_of(
            api.post("/api/v2/alerts/gitlab:sucess_rate/ack", json={}), 404, "unknown_alert"
        )
        assert "did you mean 'gitlab:success_rate'?" in error["message"]
        resolved = next(
            a
            for a in api.get("/api/v2/alerts", params={"all": True}).json()["alerts"]
            if a["state"] == "resolved"
        )
        error = error_of(
            api.post(f"/api/v2/alerts/{resolved['id']}/ack", json={}), 409, "alert_resolved"
        )
    # What the monitor and `junction alerts list` read: the alert database itself.
    conn = alert_state.connect(alert_state.db_path(isolated.settings))
    try:
        acked = {a.fingerprint: a for a in list_alerts(conn)}
    finally:
        conn.close()
    assert acked["gitlab:success_rate"].state.value == "acknowledged"
    assert acked["gitlab:success_rate"].acked_by == "alice"
    # and, as after the CLI's ack, in the metrics store's alert history
    with MetricsStore(isolated.settings.metrics_dir) as store:
        states = store.query("SELECT state FROM alerts WHERE fingerprint = 'gitlab:success_rate'")
    assert "acknowledged" in states["state"].tolist()


def test_silence_lifecycle_and_bad_input(isolated: ApiServer) -> None:
    with isolated.client() as api:
        resp = api.post(
            "/api/v2/alerts/silences",
            json={
                "service": "okta",
                "rule": "success_rate",
                "labels": {"team": "id"},
                "duration": "2h",
                "comment": "upgrade",
                "by": "alice",
            },
        )
        assert resp.status_code == 201, resp.text
        created = resp.json()
        assert created["service"] == "okta" and created["labels"] == {"team": "id"}
        listed = api.get("/api/v2/alerts/silences").json()["silences"]
        assert [s["id"] for s in listed] == [created["id"]]
        removed = api.delete(f"/api/v2/alerts/silences/{created['id']}").json()
        assert removed["removed_at"] is not None
        assert api.get("/api/v2/alerts/silences").json()["silences"] == []
        everything = api.get("/api/v2/alerts/silences", params={"all": True}).json()
        assert len(everything["silences"]) == 1
        error_of(api.delete("/api/v2/alerts/silences/s99"), 404, "unknown_silence")
        for body, field, text in [
            ({"service": "okta", "duration": "soon"}, "body.duration", "not a duration"),
            ({"service": "oktaa", "duration": "1h"}, "body.service", "did you mean 'okta'?"),
            ({"rule": "sucess_rate", "duration": "1h"}, "body.rule", "success_rate"),
            ({"duration": "1h"}, "body", "would silence everything"),
            ({"service": "okta"}, "body.duration", "Field required"),
        ]:
            error = error_of(api.post("/api/v2/alerts/silences", json=body), 422, "invalid_request")
            assert error["details"][0]["field"] == field and text in error["message"], error
        assert api.get("/api/v2/alerts/silences", params={"all": True}).json() == everything


# --- optimization -------------------------------------------------------------------------------


def seed_history(server: ApiServer) -> Path:
    """The crafted runs and calls of the recommendation tests, and their spec."""
    spec_dir = server.settings.analytics_spec_dir
    assert spec_dir is not None
    (spec_dir / "onboard_test.yaml").write_text(SPEC)
    calls, runs = crafted()
    calls = calls.assign(source=calls["source"].fillna("workflow"), breaker_state="closed")
    runs = runs.assign(steps=5, retries=0, fallbacks=0)
    with MetricsStore(server.settings.metrics_dir) as store:
        for table, frame in (("calls", calls), ("workflow_runs", runs)):
            # NaN is pandas' "missing"; the store wants None.
            rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
            store.append(table, rows)
    return spec_dir / "onboard_test.yaml"


def test_optimization_analyze_and_apply_validates(isolated: ApiServer) -> None:
    spec_path = seed_history(isolated)
    history = spec_path.parent / ".history"
    with isolated.client() as api:
        analysis = api.post(f"{OPTIMIZATION}/analyze", json={}).json()
        recs = analysis["recommendations"]
        assert analysis["window"] is not None and recs
        assert {r["kind"] for r in recs} >= {"cache", "parallelize"}
        auto = {r["id"] for r in recs if r["confidence"] >= 0.9 and r["change"]}

        # An unknown id: 422 naming it, nothing written.
        error = error_of(
            api.post(f"{OPTIMIZATION}/apply", json={"accept": [recs[0]["id"], "cache-nope"]}),
            422,
            "invalid_request",
        )
        assert error["details"][0]["field"] == "body.accept[1]"
        assert spec_path.read_text() == SPEC and not history.exists()

        # A spec that would be invalid after the edit: reported, nothing written.
        broken = SPEC + "  - id: extra\n    uses: nosuch.action\n"
        spec_path.write_text(broken)
        report = api.post(f"{OPTIMIZATION}/apply", json={}).json()
        assert report["specs"] == []
        reasons = {s["id"]: s["reason"] for s in report["skipped"]}
        assert auto and all("would be invalid" in reasons[i] for i in auto)
        assert spec_path.read_text() == broken and not history.exists()

        # A dry run shows the diff and writes nothing; then the real thing keeps a revision.
        spec_path.write_text(SPEC)
        dry = api.post(f"{OPTIMIZATION}/apply", json={"dry_run": True}).json()
        assert dry["dry_run"] and "+    cache: {ttl: 15m}" in dry["specs"][0]["diff"]
        assert spec_path.read_text() == SPEC and not history.exists()
        applied = api.post(f"{OPTIMIZATION}/apply", json={}).json()
    changed = applied["specs"][0]
    assert set(changed["applied"]) == auto
    assert changed["revision"] == str(history / "onboard_test.rev1.yaml")
    assert (history / "onboard_test.rev1.yaml").read_text() == SPEC
    assert validate_text(spec_path.read_text()).errors == []
    assert "cache: {ttl: 15m}" in spec_path.read_text()


def test_optimization_bad_input(api: httpx.Client) -> None:
    for body, field in [
        ({"days": 0}, "body.days"),
        ({"threshold": 2}, "body.threshold"),
        ({"accept": "cache-1"}, "body.accept"),
    ]:
        error = error_of(api.post(f"{OPTIMIZATION}/apply", json=body), 422, "invalid_request")
        assert error["details"][0]["field"] == field


def test_the_cli_reads_the_same_spec_directory_setting(tmp_path: Path) -> None:
    """`junction analytics recommend|apply` and the service edit the same specs."""
    missing = tmp_path / "no-specs"
    out = run_junction(
        ["analytics", "recommend"],
        env={"JUNCTION_ANALYTICS_SPEC_DIR": str(missing)},
        home=tmp_path / "home",
    )
    assert out.returncode == 2
    assert f"workflow spec directory {missing} does not exist" in out.stderr + out.stdout
