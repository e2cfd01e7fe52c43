"""The alerts and workflows pages over the wire, as a logged-in browser uses them: the forms
change the same alert database the CLI reads, CSRF is required, hostile text is escaped,
runs made through the API are listed."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from markupsafe import escape
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

from junction.alerting import state as alert_state
from junction.alerting.alerts import Alert, list_alerts, save_alert
from junction.alerting.config import load_settings_config
from junction.alerting.engine import AlertEngine
from junction.alerting.evaluation import Group
from junction.alerting.model import AlertState, Severity
from junction.alerting.rules import EscalationPolicy
from junction.alerting.silences import list_silences
from junction.service.pages.alerts import escalation_note
from junction.service.runs import failed_step, flow_run_url, is_flow_run_id, prefect_reachable
from junction.store import MetricsStore
from tests.alerting_helpers import at, failing, healthy
from tests.helpers import set_faults
from tests.servers import free_port
from tests.service_helpers import ApiServer, ServiceServer, service_settings
from tests.test_service_web import HOSTILE, csrf_of, logged_in

if TYPE_CHECKING:  # the sandbox takes over a second to import; the fixtures bring it
    from integrations.sandbox.app import SandboxServer

WORKER_0 = "2f5d8d236660d0591e487847bd050202"  # the sandbox's seeded Workday worker 0

ALERTING = """
channels:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
routes:
  critical: [hook]
escalation:
  after: 15m
  levels:
    - [hook]
"""


@pytest.fixture(scope="module")
def ops(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A service of its own with a token and an escalation policy; okta fired and resolved,
    gitlab firing (critical)."""
    home = tmp_path_factory.mktemp("service-ops-home")
    (home / "alerting.yaml").write_text(ALERTING)
    settings = service_settings(home, sandbox, alerting_file=home / "alerting.yaml")
    engine = AlertEngine(alert_state.db_path(settings), load_settings_config(settings))
    engine.evaluate(failing(["okta"], at(0)), now=at(0))
    engine.evaluate([*failing(["gitlab"], at(5)), *healthy(["okta"], at(5))], now=at(5))
    engine.close()
    with ServiceServer(settings) as server:
        yield server.info()


@pytest.fixture
def page(ops: ApiServer) -> Iterator[httpx.Client]:
    with logged_in(ops) as client:
        yield client


def alerts_db(server: ApiServer) -> list[Alert]:
    """What `junction alerts list --all` reads."""
    conn = alert_state.connect(alert_state.db_path(server.settings))
    try:
        return list_alerts(conn, include_resolved=True)
    finally:
        conn.close()


def seed_alert(
    server: ApiServer, alert_id: int, service: str, rule: str, message: str, **extra: Any
) -> Alert:
    """A firing alert written as the engine writes one (vendor text the tests choose)."""
    now = datetime.now(UTC)
    alert = Alert(
        id=alert_id,
        fingerprint=f"{service}:{rule}",
        service=service,
        rule=rule,
        severity=Severity.WARNING,
        state=AlertState.FIRING,
        group_key=f"g-{alert_id}",
        message=message,
        started_at=now,
        updated_at=now,
        **extra,
    )
    conn = alert_state.connect(alert_state.db_path(server.settings))
    try:
        with alert_state.transaction(conn):
            save_alert(conn, alert)
    finally:
        conn.close()
    return alert


def esc(text: str) -> str:
    """``text`` as the templates escape it (Jinja's autoescape)."""
    return str(escape(text))


def flashes(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash \w+"[^>]*>(.*?)</p>', text)]


def post(client: httpx.Client, path: str, **fields: str) -> str:
    """Post a page's form (with its CSRF token) and follow the redirect: the flash lines."""
    token = csrf_of(client.get("/alerts").text)
    resp = client.post(path, data={"csrf_token": token, **fields})
    assert resp.status_code == 303, resp.text
    back = client.get(resp.headers["location"])
    assert back.status_code == 200
    return " | ".join(flashes(back.text))


# --- alerts ------------------------------------------------------------------------------------


def test_ack_through_the_page_is_in_the_alert_database(ops: ApiServer, page: httpx.Client) -> None:
    text = page.get("/alerts").text
    firing = [a for a in alerts_db(ops) if a.state is AlertState.FIRING]
    assert {a.fingerprint for a in firing} == {"gitlab:success_rate", "gitlab:health_score"}
    target = next(a for a in firing if a.rule == "success_rate")
    assert f'action="/alerts/{target.id}/ack"' in text
    assert 'value="silenced from alert' in text  # each active alert can be silenced for 1h
    assert "escalation: level 0 of 1; next in 15m" in text
    said = post(page, f"/alerts/{target.id}/ack")
    assert said.startswith(f"acknowledged alert {target.id} (gitlab:success_rate)"), said
    acked = {a.fingerprint: a for a in alerts_db(ops) if a.state is not AlertState.RESOLVED}
    assert "escalation: level 0 of 1; stopped (acknowledged)" in page.get("/alerts").text
    assert acked["gitlab:success_rate"].state is AlertState.ACKNOWLEDGED
    assert acked["gitlab:success_rate"].acked_by == "dashboard"
    # as after the CLI's and the API's ack: in the metrics store's alert history
    with MetricsStore(ops.settings.metrics_dir) as store:
        states = store.query("SELECT state FROM alerts WHERE fingerprint = 'gitlab:success_rate'")
    assert "acknowledged" in states["state"].tolist()
    # errors: one line on the page, nothing changed
    assert post(page, "/alerts/999/ack") == "no alert with id or fingerprint '999'"
    resolved = next(a for a in alerts_db(ops) if a.state is AlertState.RESOLVED)
    said = post(page, f"/alerts/{resolved.id}/ack")
    assert (
        said == f"alert {resolved.id} (okta:down) is already resolved" or "already resolved" in said
    )
    assert "Traceback" not in page.get("/alerts").text


def test_silence_and_unsilence_through_the_page(ops: ApiServer, page: httpx.Client) -> None:
    said = post(
        page,
        "/alerts/silences",
        service="okta",
        rule="success_rate",
        duration="2h",
        comment="upgrade " + HOSTILE,
        public="on",
    )
    assert said.startswith("silence s") and "okta success_rate" in said and "(public)" in said
    conn = alert_state.connect(alert_state.db_path(ops.settings))
    try:
        (created,) = list_silences(conn, datetime.now(UTC))
    finally:
        conn.close()
    assert created.service == "okta" and created.rule == "success_rate" and created.public
    assert created.created_by == "dashboard" and created.comment.endswith(HOSTILE)
    assert created.ends_at - created.starts_at == timedelta(hours=2)
    text = page.get("/alerts").text
    assert HOSTILE not in text and esc(HOSTILE) in text  # the comment, escaped
    assert f'action="/alerts/silences/{created.id}/remove"' in text
    # bad input: one line naming the field, nothing created
    for fields, expected in [
        ({"service": "okta", "duration": "soon"}, "nothing silenced: duration: not a duration"),
        ({"service": "oktaa", "duration": "1h"}, "did you mean 'okta'?"),
        ({"duration": "1h"}, "would silence everything"),
        ({"service": "okta", "duration": "1h", "comment": "x" * 2001}, "comment: at most 2000"),
    ]:
        said = post(page, "/alerts/silences", **fields)
        assert expected in said, (fields, said)
    assert post(page, f"/alerts/silences/{created.id}/remove") == f"silence {created.id} removed"
    assert post(page, "/alerts/silences/s99/remove") == "no silence with id 's99'"
    conn = alert_state.connect(alert_state.db_path(ops.settings))
    try:
        assert list_silences(conn, datetime.now(UTC)) == []
        assert len(list_silences(conn, datetime.now(UTC), include_expired=True)) == 1
    finally:
        conn.close()


def test_forms_without_csrf_are_refused_and_change_nothing(
    ops: ApiServer, page: httpx.Client
) -> None:
    firing = seed_alert(ops, 9002, "okta", "burn_rate", "burning")
    before = [(a.id, a.state, a.acked_by) for a in alerts_db(ops)]
    for path, data in [
        (f"/alerts/{firing.id}/ack", {}),
        ("/alerts/silences", {"service": "okta", "duration": "1h"}),
        ("/alerts/silences/s1/remove", {}),
        ("/workflows/employee_onboarding/run", {"param.worker_id": WORKER_0}),
        (f"/alerts/{firing.id}/ack", {"csrf_token": "forged"}),
    ]:
        resp = page.post(path, data=data)
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["error"]["code"] == "csrf_failed"
    assert [(a.id, a.state, a.acked_by) for a in alerts_db(ops)] == before
    conn = alert_state.connect(alert_state.db_path(ops.settings))
    try:
        assert len(list_silences(conn, datetime.now(UTC), include_expired=True)) <= 1
    finally:
        conn.close()
    # not logged in: the pages send the browser to the login page
    with httpx.Client(base_url=ops.url, timeout=30.0) as anonymous:
        for path in ("/alerts", "/workflows"):
            resp = anonymous.get(path)
            assert resp.status_code == 303 and resp.headers["location"].startswith("/login")


def test_hostile_alert_text_is_escaped(ops: ApiServer, page: httpx.Client) -> None:
    seed_alert(
        ops,
        9001,
        "okta",
        "response_time",
        HOSTILE + " " + "A" * 1_000_000,
        suppressed_by=HOSTILE,
        annotation="vendor says " + HOSTILE,
    )
    resp = page.get("/alerts")
    assert resp.status_code == 200
    assert HOSTILE not in resp.text and "<script>alert(1)" not in resp.text
    assert f"suppressed by {esc(HOSTILE)}" in resp.text
    assert esc("vendor says " + HOSTILE) in resp.text


def test_escalation_state_in_words() -> None:
    policy = EscalationPolicy(after=timedelta(minutes=10), levels=(("pager",), ("boss",)))
    now = datetime.now(UTC)
    group = Group(key="g", root_service="okta", state="open", started_at=now, level=1, esc_s=720)
    alert = Alert(
        id=1,
        fingerprint="okta:down",
        service="okta",
        rule="down",
        severity=Severity.CRITICAL,
        state=AlertState.FIRING,
        group_key="g",
        message="down",
        started_at=now,
        updated_at=now,
    )
    assert escalation_note(alert, group, policy) == "level 1 of 2; next in 8m"
    alert.state = AlertState.ACKNOWLEDGED
    assert escalation_note(alert, group, policy) == "level 1 of 2; stopped (acknowledged)"
    assert escalation_note(alert, group, EscalationPolicy()) == "level 1"


# --- workflows ---------------------------------------------------------------------------------


def test_workflows_page_lists_runs_and_runs_through_the_api_path(
    ops: ApiServer, page: httpx.Client, sb: SandboxServer
) -> None:
    with ops.client() as api:
        resp = api.post(
            "/api/v2/workflows/run",
            json={"spec": "employee_onboarding", "params": {"worker_id": WORKER_0}},
        )
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["run_id"]
    text = page.get("/workflows").text
    assert f'data-run="{run_id}"' in text and "employee_onboarding" in text
    assert "flow run</a>" not in text  # no Prefect server configured: no UI link
    assert 'action="/workflows/employee_onboarding/run"' in text

    said = post(page, "/workflows/employee_onboarding/validate")
    assert said == "employee_onboarding.yaml: valid (5 steps)" or ": valid (" in said, said
    said = post(page, "/workflows/employee_onboarding/run")
    assert "missing required parameter 'worker_id'" in said and "nothing was run" in said
    said = post(page, "/workflows/onboarding/run")
    assert "did you mean 'employee_onboarding'?" in said

    set_faults(sb, "workday", outages=[{"start": 0, "mode": "503"}])
    said = post(page, "/workflows/employee_onboarding/run", **{"param.worker_id": WORKER_0})
    assert "failed at step 'hire'" in said, said
    failed_id = re.search(r"run (\w+) failed", said)
    assert failed_id is not None
    row = re.search(
        rf'<tr class="row-critical" data-run="{failed_id.group(1)}">(.*?)</tr>',
        page.get("/workflows").text,
        re.S,
    )
    assert row is not None and "<td>hire</td>" in row.group(1)


def test_run_helpers_failed_step_flow_run_ids_and_safe_links() -> None:
    assert failed_step("step 'hire' (workday.hire) failed: HTTP 503") == "hire"
    assert failed_step("step 'render': undefined variable") == "render"
    assert failed_step("outputs: undefined variable") is None and failed_step(None) is None
    flow_run = "0b7c5a52-3f0e-4d5a-9c1e-2f6a7d8e9f01"
    assert is_flow_run_id(flow_run) and not is_flow_run_id(flow_run.replace("-", ""))
    assert not is_flow_run_id("nope")
    with temporary_settings({PREFECT_API_URL: "http://prefect.internal:4200/api"}):
        assert flow_run_url(flow_run) == f"http://prefect.internal:4200/runs/flow-run/{flow_run}"
    with temporary_settings({PREFECT_UI_URL: "javascript:alert(1)//"}):
        assert flow_run_url(flow_run) is None  # never a script link on a page
    assert flow_run_url(flow_run) is None  # no Prefect server configured: no link


async def test_a_prefect_server_that_does_not_answer_means_in_process() -> None:
    assert await prefect_reachable() is None  # none configured
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        assert await prefect_reachable() is None  # configured, nothing listening
