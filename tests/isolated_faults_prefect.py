"""Faults on a REAL Prefect server (PostgreSQL backend) with a real process worker.

One server, sandbox, work pool and worker for the module; the cases break one piece each
and check what the operator is promised (docs/runbook.md, "Faults"):

* the Prefect server killed and restarted mid-run: the runs finish, the metrics store
  holds each run's rows once, and alerts raised while it was away are in the alert DB;
* a flow run's process killed with SIGKILL between two side effects: the worker marks
  the run Crashed, a rerun with the same parameters completes, and the sandbox holds
  exactly one of each object the workflow creates;
* PostgreSQL restarted under load: every run reaches a terminal state, each is Completed
  after at most one rerun, and no run's rows are missing from the metrics store.

Objects created are counted at the sandbox (``/_admin/state``), never inferred from our
own records. The flow runs find the sandbox through the Prefect Variable
``junction_sandbox_url`` (the worker's environment does not name it), and the last tests
check the Variables' precedence and ``junction config`` on the same server.

Not collected by the session (no ``test_`` prefix): ``tests/test_faults_prefect.py`` runs
this file in a pytest process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.local import ROOT, WORK_POOL, PrefectServer, Worker, free_port
from tests.pg import PostgresCluster

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(900)]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WORKFLOW = "workflow/run-workflow"
MONITOR = "monitor-continuous/monitor-continuous"
# What one onboarding creates at the sandbox: (service, collection), one object each.
CREATED = (
    ("okta", "users"),
    ("gitlab", "users"),
    ("gitlab", "members"),
    ("jira", "issues"),
    ("webex", "messages"),
)


@dataclass
class Stack:
    """The module's running pieces."""

    server: PrefectServer
    api: httpx.Client
    env: dict[str, str]
    sandbox_url: str
    junction_home: Path
    deployments: dict[str, str]
    log_dir: Path
    runs: dict[str, str]  # flow runs a later test checks, by role


class _RetryWhileDown(httpx.HTTPTransport):
    """Retries what a restarting server answers (refused connections, 5xx) for a while."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + 90
        while True:
            try:
                response = super().handle_request(request)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            else:
                if response.status_code < 500 or time.monotonic() > deadline:
                    return response
                response.read()
                response.close()
            time.sleep(0.5)


def _deploy(api: httpx.Client, flow: str, name: str, entrypoint: str) -> str:
    """A deployment on the process pool (what `prefect deploy` creates from prefect.yaml,
    without paying a CLI process for it); returns its id."""
    flow_id = api.post("/flows/", json={"name": flow}).json()["id"]
    response = api.post(
        "/deployments/",
        json={
            "name": name,
            "flow_id": flow_id,
            "entrypoint": entrypoint,
            "work_pool_name": WORK_POOL,
            "enforce_parameter_schema": False,
            "pull_steps": [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ],
        },
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from prefect.workers.process import ProcessWorker

    from flows.variables import ensure_variables
    from integrations.sandbox.app import SandboxServer
    from junction.settings import Settings

    base = tmp_path_factory.mktemp("faults")
    with contextlib.ExitStack() as stop:
        server = stop.enter_context(
            PrefectServer(
                port=free_port(),
                home=base / "prefect",
                scheduler=False,
                ui=False,
                startup_timeout=300,
                database_url=postgres_url,
            )
        )
        sandbox = stop.enter_context(SandboxServer(port=0, smtp_port=0))
        api = stop.enter_context(
            httpx.Client(base_url=server.api_url, timeout=60.0, transport=_RetryWhileDown())
        )
        env = {k: v for k, v in server.env.items() if not k.startswith("JUNCTION_")}
        # The sandbox's URL reaches the flow runs as the Prefect Variable `make serve`
        # creates (flows/variables.py), not through the worker's environment.
        ensure_variables(server.api_url, Settings(sandbox_url=sandbox.url))
        env.update(
            JUNCTION_HOME=str(base / "junction"),
            JUNCTION_ENV_FILE=str(base / "no-env-file"),
            JUNCTION_SANDBOX_SMTP_PORT=str(sandbox.smtp_port),
            JUNCTION_MONITOR_CONFIRM_DELAY_SECONDS="0.05",
            PREFECT_WORKER_QUERY_SECONDS="1",  # default 10 s between polls
        )
        # The pool as `prefect work-pool create --type process` makes it, without a CLI
        # process; the worker starts while the rest is set up.
        template = ProcessWorker.get_default_base_job_template()
        pool = {"name": WORK_POOL, "type": "process", "base_job_template": template}
        assert api.post("/work_pools/", json=pool).status_code == 201
        stop.enter_context(Worker(env=env, log_path=base / "worker.log"))
        deployments = {
            WORKFLOW: _deploy(api, "workflow", "run-workflow", "flows/workflow.py:run_workflow"),
            MONITOR: _deploy(
                api,
                "monitor-continuous",
                "monitor-continuous",
                "flows/monitor_loop.py:monitor_continuous",
            ),
        }
        yield Stack(server, api, env, sandbox.url, base / "junction", deployments, base, {})


def _kill(server: PrefectServer) -> None:
    """Kill the server's process group at once (no grace: a crash, not a shutdown)."""
    grace, server.stop_timeout = server.stop_timeout, 0.0
    server.__exit__(None, None, None)
    server.stop_timeout = grace


def _start(stack: Stack, deployment: str, parameters: dict[str, Any]) -> str:
    response = stack.api.post(
        f"/deployments/{stack.deployments[deployment]}/create_flow_run",
        json={"parameters": parameters},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _state(stack: Stack, run_id: str) -> dict[str, Any]:
    return stack.api.get(f"/flow_runs/{run_id}").json().get("state") or {}


def _wait(stack: Stack, run_ids: list[str], want: set[str], timeout: float = 240) -> list[str]:
    """Each run's state type once all are in ``want`` (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        types = [_state(stack, r).get("type", "") for r in run_ids]
        if all(t in want for t in types) or time.monotonic() > deadline:
            return types
        time.sleep(0.5)


def _diagnostics(stack: Stack) -> str:
    worker = (stack.log_dir / "worker.log").read_text(errors="replace").splitlines()[-60:]
    return "--- worker log ---\n" + "\n".join(worker)


@dataclass(frozen=True)
class Hire:
    """A Workday worker of the sandbox, onboarded by one test."""

    worker_id: str
    email: str
    descriptor: str

    @property
    def params(self) -> dict[str, Any]:
        """The run-workflow deployment's parameters onboarding this hire."""
        return {"spec": "employee_onboarding", "params": {"worker_id": self.worker_id}}


def _hires(stack: Stack, first: int, n: int) -> list[Hire]:
    """``n`` Workday workers of the sandbox from index ``first`` (each test its own)."""
    records = httpx.get(
        f"{stack.sandbox_url}/_admin/records", params={"service": "workday"}, timeout=30
    ).json()["services"]["workday"]["workers"]["records"]
    return [
        Hire(str(r["id"]), str(r["primaryWorkEmail"]), str(r["descriptor"]))
        for r in records[first : first + n]
    ]


def _objects(stack: Stack, hire: Hire) -> dict[tuple[str, str], int]:
    """Objects naming ``hire`` at the sandbox, per (service, collection) of ``CREATED``."""
    local = hire.email.split("@")[0]
    # The login (users, members, messages) or the name (the ticket's summary); not a
    # longer one (hopper1 is not hopper10).
    names = re.compile(f"({re.escape(local)}|{re.escape(hire.descriptor)})(?![0-9])")
    out: dict[tuple[str, str], int] = {}
    for service, collection in CREATED:
        found = httpx.get(f"{stack.sandbox_url}/_admin/state/{service}", timeout=30).json()
        items = found["collections"].get(collection) or {}
        values = items.values() if isinstance(items, dict) else items
        out[service, collection] = sum(1 for o in values if names.search(json.dumps(o)))
    return out


def _until(check: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{_diagnostics(stack)}"
        time.sleep(0.3)


def _requests(stack: Stack, service: str) -> int:
    """Requests the sandbox has answered for ``service`` so far."""
    summary = httpx.get(
        f"{stack.sandbox_url}/_admin/requests", params={"service": service}, timeout=30
    ).json()
    return int((summary["services"].get(service) or {}).get("requests", 0))


def _store_rows(stack: Stack, run_ids: list[str]) -> dict[str, int]:
    """``workflow_runs`` rows per run id in the metrics store."""
    from junction.store import MetricsStore

    frame = MetricsStore(stack.junction_home / "metrics").query(
        "SELECT run_id, count(*) AS n FROM workflow_runs GROUP BY run_id"
    )
    found = {
        str(k).replace("-", ""): int(v) for k, v in zip(frame["run_id"], frame["n"], strict=True)
    }
    return {r: found.get(r.replace("-", ""), 0) for r in run_ids}


def _faults(stack: Stack, service: str, fields: dict[str, Any]) -> None:
    response = httpx.post(f"{stack.sandbox_url}/_admin/faults/{service}", json=fields, timeout=30)
    assert response.status_code == 200, response.text


def _clear_faults(stack: Stack) -> None:
    httpx.delete(f"{stack.sandbox_url}/_admin/faults/*", timeout=30)
    httpx.delete(f"{stack.sandbox_url}/_admin/outage/*", timeout=30)


def _complete(stack: Stack, run_id: str, hire: Hire) -> list[tuple[str, str]]:
    """Waits for ``run_id`` to end; reruns it once (same parameters) unless Completed.

    Returns each attempt's (flow run id, state type).
    """
    [first] = _wait(stack, [run_id], TERMINAL)
    attempts = [(run_id, first)]
    if first != "COMPLETED":
        rerun = _start(stack, WORKFLOW, hire.params)
        attempts.append((rerun, _wait(stack, [rerun], TERMINAL)[0]))
    return attempts


def _firing(alerts_db: Path, service: str) -> list[str]:
    """Rules firing for ``service`` in the alert database (none while it does not exist)."""
    uri = f"file:{alerts_db}?mode=ro"
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(uri, uri=True)) as db,
    ):
        rows = db.execute(
            "SELECT rule FROM alerts WHERE service = ? AND state = 'firing'", (service,)
        ).fetchall()
        return [str(r[0]) for r in rows]
    return []


def _alert_events(stack: Stack, fingerprint: str) -> int:
    """``junction.alert.fired`` events of ``fingerprint`` stored by the server."""
    body = {"filter": {"event": {"name": ["junction.alert.fired"]}}, "limit": 50}
    events = stack.api.post("/events/filter", json=body).json()["events"]
    return sum(e["payload"].get("fingerprint") == fingerprint for e in events)


def test_server_away_mid_run_loses_no_metrics_or_alerts(stack: Stack) -> None:
    """The server's process group is killed while a monitor run sweeps and a workflow is
    between side effects, and started again on the same port and database once the
    monitor has alerted on an outage that began while the server was away."""
    [hire] = _hires(stack, 0, 1)
    _faults(stack, "gitlab", {"latency_ms": 2500})  # the workflow is mid-run for a while
    try:
        # Long enough to outlive the gap even when its process is slow to start; the last
        # test waits for its end (a run cannot be cancelled once its cancellation
        # observer gave up during the outage).
        monitor = _start(
            stack, MONITOR, {"every_seconds": 1.0, "run_seconds": 100.0, "names": ["github"]}
        )
        stack.runs["monitor"] = monitor
        workflow = _start(stack, WORKFLOW, hire.params)
        _until(lambda: _requests(stack, "github") > 0, 240, "the monitor's first probe", stack)
        _until(lambda: _objects(stack, hire)["okta", "users"] == 1, 240, "the okta user", stack)
        _kill(stack.server)
        httpx.post(f"{stack.sandbox_url}/_admin/outage/github", json={"seconds": 300}, timeout=30)
        alerts_db = stack.junction_home / "alerts.db"
        _until(lambda: "down" in _firing(alerts_db, "github"), 60, "the alert", stack)
        stack.server.__enter__()  # same port, home and database
        httpx.delete(f"{stack.sandbox_url}/_admin/outage/github", timeout=30)
        attempts = _complete(stack, workflow, hire)
        # The monitor outlived the gap (its end is checked by the last test).
        assert _state(stack, monitor).get("type") in {"RUNNING", "COMPLETED"}, _diagnostics(stack)
    finally:
        _clear_faults(stack)
    assert attempts[-1][1] == "COMPLETED", f"{attempts}\n{_diagnostics(stack)}"
    assert _objects(stack, hire) == dict.fromkeys(CREATED, 1)
    # The alert raised while the server was away reached it, once (the event spool).
    _until(lambda: _alert_events(stack, "github:down") > 0, 120, "the gap's alert event", stack)
    assert _alert_events(stack, "github:down") == 1
    # Each attempt that finished its work recorded it once; the last one did.
    rows = _store_rows(stack, [r for r, _ in attempts])
    assert rows[attempts[-1][0]] == 1 and all(n <= 1 for n in rows.values()), rows


def test_a_killed_flow_run_crashes_and_a_rerun_creates_nothing_twice(stack: Stack) -> None:
    """SIGKILL the flow run's process after its first side effects, while a later one is
    in flight: the worker marks the run Crashed; a rerun with the same parameters
    completes and the sandbox holds exactly one of each object."""
    [hire] = _hires(stack, 1, 1)
    # The kill lands in this window (the killed run pays it, not the test).
    _faults(stack, "gitlab", {"latency_ms": 5000})
    try:
        first = _start(stack, WORKFLOW, hire.params)
        _until(lambda: _objects(stack, hire)["okta", "users"] == 1, 240, "the okta user", stack)
        pid = stack.api.get(f"/flow_runs/{first}").json()["infrastructure_pid"]
        os.kill(int(str(pid).rsplit(":", 1)[-1]), signal.SIGKILL)
        assert _wait(stack, [first], TERMINAL) == ["CRASHED"], _diagnostics(stack)
        assert _objects(stack, hire)["webex", "messages"] == 0  # killed before the welcome
    finally:
        _clear_faults(stack)
    rerun = _start(stack, WORKFLOW, hire.params)
    assert _wait(stack, [rerun], TERMINAL) == ["COMPLETED"], _diagnostics(stack)
    assert _objects(stack, hire) == dict.fromkeys(CREATED, 1)
    assert _store_rows(stack, [first, rerun]) == {first: 0, rerun: 1}


def test_postgres_restart_under_load_loses_no_run(
    stack: Stack, postgres_cluster: PostgresCluster
) -> None:
    """Three onboardings between side effects when PostgreSQL restarts (fast shutdown):
    each ends Completed, or Completed after one rerun; each has its metrics row once and
    the sandbox one of each object per hire."""
    hires = _hires(stack, 2, 3)
    _faults(stack, "gitlab", {"latency_ms": 2000})
    try:
        runs = [_start(stack, WORKFLOW, h.params) for h in hires]
        _until(
            lambda: all(_objects(stack, h)["okta", "users"] == 1 for h in hires),
            240,
            "the okta users",
            stack,
        )
        postgres_cluster.restart()
        attempts = [_complete(stack, r, h) for r, h in zip(runs, hires, strict=True)]
    finally:
        _clear_faults(stack)
    assert [a[-1][1] for a in attempts] == ["COMPLETED"] * 3, f"{attempts}\n{_diagnostics(stack)}"
    for hire in hires:
        assert _objects(stack, hire) == dict.fromkeys(CREATED, 1), hire
    rows = _store_rows(stack, [r for a in attempts for r, _ in a])
    assert all(rows[a[-1][0]] == 1 for a in attempts) and max(rows.values()) == 1, rows


def test_settings_come_from_prefect_variables_below_the_environment(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Environment > env file > Prefect Variable > default; an empty Variable is unset, an
    invalid one skipped; `make serve`'s defaults never overwrite a Variable; `junction
    config` names the Variable as the source."""
    import asyncio

    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.variables import Variable
    from typer.testing import CliRunner

    from flows.variables import apply_prefect_variables, ensure_variables
    from junction.cli import app
    from junction.settings import Settings, get_settings

    env_file = tmp_path / "junction.env"
    env_file.write_text("JUNCTION_INTEGRATIONS=okta\n")
    monkeypatch.setenv("JUNCTION_ENV_FILE", str(env_file))
    with temporary_settings(updates={PREFECT_API_URL: stack.server.api_url}):
        # The module's fixture created them; the values in effect here differ: kept.
        assert ensure_variables(settings=Settings(sandbox_url="http://elsewhere:1")) == {}
        assert Variable.get("junction_sandbox_url") == stack.sandbox_url
        Variable.set("junction_analytics_report_days", 9, overwrite=True)
        Variable.set("junction_integrations", "github", overwrite=True)  # the file wins
        Variable.set("junction_analytics_forecast_horizon_days", 999, overwrite=True)  # > 90
        environ = {"JUNCTION_SANDBOX_URL": "http://from-env:1"}

        @flow(name="apply-variables")
        async def in_a_flow_run() -> dict[str, str]:
            return await apply_prefect_variables(environ)

        applied = asyncio.run(in_a_flow_run())
        assert applied == {"JUNCTION_ANALYTICS_REPORT_DAYS": "9"}
        assert environ == {"JUNCTION_SANDBOX_URL": "http://from-env:1", **applied}
        # Outside a flow run there is no server to ask (a flow's `.fn`, the CLI).
        assert asyncio.run(apply_prefect_variables({})) == {}

        monkeypatch.setenv("PREFECT_API_URL", stack.server.api_url)
        monkeypatch.setenv("JUNCTION_SANDBOX_URL", "http://from-env:1")
        monkeypatch.setenv("JUNCTION_HOME", str(tmp_path / "home"))
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["config", "--json"])
        finally:
            get_settings.cache_clear()
            Variable.set("junction_analytics_forecast_horizon_days", 7, overwrite=True)
    assert result.exit_code == 0, result.output
    rows = {r["variable"]: r for r in json.loads(result.output)}
    assert rows["JUNCTION_ANALYTICS_REPORT_DAYS"]["value"] == "9"
    assert rows["JUNCTION_ANALYTICS_REPORT_DAYS"]["source"] == (
        "prefect variable (junction_analytics_report_days)"
    )
    assert rows["JUNCTION_SANDBOX_URL"]["source"] == "environment (JUNCTION_SANDBOX_URL)"
    assert rows["JUNCTION_INTEGRATIONS"]["source"].startswith("env file")
    assert rows["JUNCTION_ANALYTICS_FORECAST_HORIZON_DAYS"]["source"] == "default"


def test_the_monitor_run_through_the_outage_completes_with_every_probe(stack: Stack) -> None:
    """The monitor run of the server-away case ends Completed on its own; the metrics
    store holds each probe once (a sweep's confirming re-probe is a row of its own), the
    failed probes of the outage that began while the server was away among them."""
    from junction.store import MetricsStore

    monitor = stack.runs.get("monitor")
    if monitor is None:
        pytest.skip("runs after test_server_away_mid_run_loses_no_metrics_or_alerts")
    assert _wait(stack, [monitor], TERMINAL) == ["COMPLETED"], _diagnostics(stack)
    probes = MetricsStore(stack.junction_home / "metrics").query(
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, "
        "count(*) FILTER (WHERE NOT ok) AS failed FROM probes WHERE service = 'github'"
    )
    n, ids, failed = (int(probes[c].iloc[0]) for c in ("n", "ids", "failed"))
    assert n == ids and failed >= 2, (n, ids, failed)
    answered = _requests(stack, "github")
    assert n == answered, (n, answered)  # one row per request the sandbox answered


def test_a_flow_run_whose_heartbeats_stop_is_marked_crashed(stack: Stack) -> None:
    """A run whose process died with its worker: nothing reports it, it stays Running;
    the zombie automation `make serve` applies (deployments/zombies.py) marks it Crashed
    once its heartbeats stop. Here with Prefect's shortest window (10 s) after the one
    heartbeat its process sent (real heartbeats come every 30 s at the least)."""
    from datetime import UTC, datetime
    from uuid import uuid4

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.automations import apply
    from deployments.zombies import zombie_automation

    with temporary_settings(updates={PREFECT_API_URL: stack.server.api_url}):
        automation_id, _ = apply(zombie_automation(within_seconds=10))
    try:
        flow_id = stack.api.post("/flows/", json={"name": "orphan"}).json()["id"]
        created = stack.api.post(
            "/flow_runs/", json={"flow_id": flow_id, "state": {"type": "RUNNING"}}
        )
        assert created.status_code == 201, created.text
        run = str(created.json()["id"])
        heartbeat = {
            "id": str(uuid4()),
            "occurred": datetime.now(UTC).isoformat(),
            "event": "prefect.flow-run.heartbeat",
            "resource": {"prefect.resource.id": f"prefect.flow-run.{run}"},
        }
        assert stack.api.post("/events", json=[heartbeat]).status_code == 204
        assert _wait(stack, [run], TERMINAL, timeout=120) == ["CRASHED"], _state(stack, run)
        assert "no heartbeat" in (_state(stack, run).get("message") or "")
    finally:  # the module's other runs keep the 540 s default window
        stack.api.delete(f"/automations/{automation_id}")
