"""prefect.yaml deployed to a REAL `prefect server start`, run by a real process worker.

One server for the module (own PREFECT_HOME in a temp dir, scheduler off so the active
schedules add no runs of their own); the worker runs the on-demand health sweep against
the sandbox. Every test runs twice: on SQLite (the embedded default) and on PostgreSQL
(the production backend, a throw-away cluster from tests/pg.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.local import (
    ROOT,
    WORK_POOL,
    PrefectServer,
    RetryOn503,
    Worker,
    deploy_all,
    ensure_work_pool,
)

# Fixture setup (server start, CLI calls) counts toward a test's timeout; the machine is shared.
pytestmark = [pytest.mark.prefect, pytest.mark.timeout(900)]

DEPLOYMENT = "health-sweep/health-sweep"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def prefect_server(request: pytest.FixtureRequest) -> Iterator[PrefectServer]:
    """The server on each database backend: SQLite in its home, or PostgreSQL."""
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("postgres_url")
    with PrefectServer(
        scheduler=False, ui=False, startup_timeout=300, database_url=database_url
    ) as server:
        yield server


@pytest.fixture(scope="module")
def postgres_prefect_server(postgres_url: str) -> Iterator[PrefectServer]:
    """One server on PostgreSQL (the production backend: no SQLite 503s under a worker's
    load), for the modules that test what runs on a server rather than the backend."""
    with PrefectServer(
        scheduler=False, ui=False, startup_timeout=300, database_url=postgres_url
    ) as server:
        yield server


@pytest.fixture(scope="module")
def api(prefect_server: PrefectServer) -> Iterator[httpx.Client]:
    # Generous timeout: SQLite under a shared machine's load answers slowly at times.
    with httpx.Client(
        base_url=prefect_server.api_url, timeout=60.0, transport=RetryOn503()
    ) as client:
        yield client


@pytest.fixture(scope="module")
def deployed(
    prefect_server: PrefectServer, api: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Work pool + `prefect deploy --all --no-prompt`, called with a PWD that is not the root."""
    env = prefect_server.env
    # What a program launched from elsewhere passes down: deploy_all must not use it.
    env["PWD"] = str(tmp_path_factory.mktemp("elsewhere"))
    created = ensure_work_pool(env=env)
    deploy_all(env=env)
    response = api.get(f"/deployments/name/{DEPLOYMENT}")
    assert response.status_code == 200, response.text
    return {"pool_created": created, "deployment": response.json(), "env": env}


def test_work_pool_is_created_once(deployed: dict[str, Any], api: httpx.Client) -> None:
    assert deployed["pool_created"] is True
    assert ensure_work_pool(env=deployed["env"]) is False  # exists now: nothing to do
    pool = api.get(f"/work_pools/{WORK_POOL}")
    assert pool.status_code == 200, pool.text
    assert pool.json()["type"] == "process"


def test_deploy_creates_health_sweep_from_prefect_yaml(
    deployed: dict[str, Any], api: httpx.Client
) -> None:
    deployment = deployed["deployment"]
    assert deployment["entrypoint"] == "flows/health_sweep.py:health_sweep"
    assert deployment["work_pool_name"] == WORK_POOL
    # On demand only: monitor-continuous (hourly runs, a sweep every 5 s) does the
    # scheduled probing; an active 5-minute sweep would probe everything twice.
    schedules = deployment["schedules"]
    assert len(schedules) == 1, schedules
    assert schedules[0]["active"] is False
    assert schedules[0]["schedule"]["interval"] == 300
    # `{{ $PWD }}` is baked in at deploy time: flow runs must start from the repo root.
    assert deployment["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
    ]
    found = {d["name"]: d for d in api.post("/deployments/filter", json={}).json()}
    assert {"health-sweep", "monitor-integrations"} <= set(found), sorted(found)
    monitor = found["monitor-integrations"]
    assert monitor["entrypoint"] == "flows/monitor.py:monitor_integrations"
    assert monitor["work_pool_name"] == WORK_POOL
    assert [s["schedule"]["interval"] for s in monitor["schedules"]] == [30]
    # Exactly one active schedule probes the integrations: monitor-continuous's.
    probing = {"health-sweep", "monitor-integrations", "monitor-continuous"}
    active = sorted(n for n in probing if any(s["active"] for s in found[n]["schedules"]))
    assert active == ["monitor-continuous"], active


def _run_logs(
    api: httpx.Client, run_id: str, *, expect: tuple[str, ...] = (), timeout: float = 60.0
) -> str:
    """The run's last 40 log lines; with `expect`, waits until each appears (or `timeout`).

    The flow's process ships its logs in batches and flushes the last one as it exits,
    after its state has turned Completed, so a reader right after the state waits.
    """
    deadline = time.monotonic() + timeout
    while True:
        response = api.post(
            "/logs/filter",
            json={
                "logs": {"flow_run_id": {"any_": [run_id]}},
                "sort": "TIMESTAMP_DESC",
                "limit": 40,
            },
        )
        if response.status_code != 200:
            text = response.text
        else:
            text = "\n".join(
                f"{log['level']} {log['message']}" for log in reversed(response.json())
            )
        if all(needle in text for needle in expect) or time.monotonic() >= deadline:
            return text
        time.sleep(0.5)


def test_worker_runs_the_deployment_against_the_sandbox(
    deployed: dict[str, Any], api: httpx.Client, tmp_path: Path
) -> None:
    from integrations.catalog import load_catalog
    from integrations.sandbox.app import SandboxServer
    from junction.markdown import md_escape
    from junction.store import MetricsStore

    junction_home = tmp_path / "junction"
    env = {k: v for k, v in deployed["env"].items() if not k.startswith("JUNCTION_")}
    with SandboxServer(port=0, smtp_port=0) as sandbox:
        env.update(
            JUNCTION_HOME=str(junction_home),
            JUNCTION_SANDBOX_URL=sandbox.url,
            JUNCTION_SANDBOX_SMTP_PORT=str(sandbox.smtp_port),
            PREFECT_WORKER_QUERY_SECONDS="2",  # default 10 s between polls
        )
        with Worker(env=env, log_path=tmp_path / "worker.log") as worker:
            deployment_id = deployed["deployment"]["id"]
            created = api.post(f"/deployments/{deployment_id}/create_flow_run", json={})
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]

            state: dict[str, Any] = {}
            deadline = time.monotonic() + 300  # generous: shared 2-core machine
            while time.monotonic() < deadline and worker.running:
                state = api.get(f"/flow_runs/{run_id}").json().get("state") or {}
                if state.get("type") in TERMINAL:
                    break
                time.sleep(1)
            diagnostics = (
                f"state: {state}\n--- worker log tail ---\n{worker.log_tail()}\n"
                f"--- flow run logs ---\n{_run_logs(api, run_id)}"
            )
            if state.get("type") != "COMPLETED":
                print(diagnostics)
            assert state.get("type") == "COMPLETED", diagnostics

    artifacts = api.post(
        "/artifacts/filter",
        json={"artifacts": {"key": {"any_": ["integration-health"]}}},
    ).json()
    assert [a["flow_run_id"] for a in artifacts] == [run_id], artifacts
    total = len(load_catalog())
    assert f"{total}/{total} integrations healthy" in (artifacts[0]["description"] or ""), (
        artifacts[0]
    )
    table = artifacts[0]["data"]  # the rows, JSON-encoded by create_table_artifact
    rows = json.loads(table) if isinstance(table, str) else table
    # Cells are Markdown-escaped (the UI renders them as Markdown): azure\_devops.
    assert sorted(row["integration"] for row in rows) == sorted(
        map(md_escape, load_catalog().names)
    )

    # Recorded by the flow run's own process, under the JUNCTION_HOME the worker passed on.
    assert MetricsStore(junction_home / "metrics").count("probes") == total


def test_the_service_runs_workflows_through_the_deployment(
    prefect_server: PrefectServer, deployed: dict[str, Any], api: httpx.Client, tmp_path: Path
) -> None:
    """`junction serve` with PREFECT_API_URL set: POST /workflows/run starts a flow run of
    workflow/run-workflow (202), a worker runs it, GET /runs/{id} follows it from Prefect's
    state to the metrics store's record; without the deployment it is a 409 saying how."""
    if prefect_server.database_url is not None:
        pytest.skip("SQLite arm only: the backend is covered by the worker run on both")
    import contextlib
    import subprocess
    import sys

    from deployments.local import free_port, stop_process_group
    from integrations.sandbox.app import SandboxServer
    from tests.test_service_api import WORKER_0
    from tests.test_service_web import csrf_of

    token = "deployment-test-token"
    env = {k: v for k, v in deployed["env"].items() if not k.startswith("JUNCTION_")}
    with SandboxServer(port=0, smtp_port=0) as sandbox:
        env.update(
            JUNCTION_HOME=str(tmp_path / "junction"),
            JUNCTION_SANDBOX_URL=sandbox.url,
            JUNCTION_SANDBOX_SMTP_PORT=str(sandbox.smtp_port),
            PREFECT_WORKER_QUERY_SECONDS="2",
        )
        port = free_port()
        serve_log = (tmp_path / "serve.log").open("wb")
        service = subprocess.Popen(
            [sys.executable, "-m", "junction", "serve", "--port", str(port)],
            cwd=ROOT,
            env={**env, "JUNCTION_API_TOKEN": token},
            stdin=subprocess.DEVNULL,
            stdout=serve_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with (
                Worker(env=env, log_path=tmp_path / "worker.log") as worker,
                httpx.Client(
                    base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60.0
                ) as junction,
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as browser,
            ):
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and service.poll() is None:
                    with contextlib.suppress(httpx.TransportError):
                        if junction.get("/api/v2/status").status_code == 200:
                            break
                    time.sleep(0.5)
                assert service.poll() is None, (tmp_path / "serve.log").read_text()

                body = {"spec": "employee_onboarding", "params": {"worker_id": WORKER_0}}
                resp = junction.post("/api/v2/workflows/run", json=body)
                assert resp.status_code == 202, resp.text
                started = resp.json()
                run_id = started["run_id"]
                assert started["deployment"] == "workflow/run-workflow"
                assert started["status"] == "scheduled" and started["flow_run"]["id"] == run_id
                assert started["flow_run"]["url"] == (
                    f"{deployed['env']['PREFECT_API_URL'].removesuffix('/api')}"
                    f"/runs/flow-run/{run_id}"
                )
                assert api.get(f"/flow_runs/{run_id}").json()["parameters"] == {
                    "spec": "employee_onboarding",
                    "params": {"worker_id": WORKER_0},
                }
                # The workflows page lists it (not finished, or recorded) with its UI link.
                login = browser.get("/login")
                browser.post(
                    "/login", data={"token": token, "next": "/", "csrf_token": csrf_of(login.text)}
                )
                text = browser.get("/workflows").text
                assert f'data-flow-run="{run_id}"' in text or f'data-run="{run_id}"' in text
                assert f'href="{started["flow_run"]["url"]}"' in text

                record: dict[str, Any] = {}
                deadline = time.monotonic() + 300  # a new Python process per flow run
                while time.monotonic() < deadline and worker.running:
                    record = junction.get(started["status_url"]).json()
                    state = (record.get("flow_run") or {}).get("state_type")
                    if record.get("recorded") and state in TERMINAL:
                        break
                    time.sleep(1)
                diagnostics = f"{record}\n--- worker log ---\n{worker.log_tail()}"
                assert record.get("recorded") is True, diagnostics
                assert record["status"] == "completed", diagnostics
                assert record["flow_run"]["state_type"] == "COMPLETED", diagnostics
                assert record["workflow"] == "employee_onboarding" and record["calls"] > 0
                text = browser.get("/workflows").text
                assert f'data-run="{run_id}"' in text and f'data-flow-run="{run_id}"' not in text
                assert f'href="{started["flow_run"]["url"]}"' in text

                # The deployment gone: a 409 naming how to deploy it, and no flow run.
                deployment = api.get("/deployments/name/workflow/run-workflow").json()
                assert api.delete(f"/deployments/{deployment['id']}").status_code == 204
                resp = junction.post("/api/v2/workflows/run", json=body)
                assert resp.status_code == 409, resp.text
                error = resp.json()["error"]
                assert error["code"] == "deployment_missing"
                assert "prefect deploy --name run-workflow" in error["message"]
        finally:
            stop_process_group(service)
            serve_log.close()


def test_concurrent_flow_runs_complete_without_503s(
    prefect_server: PrefectServer, api: httpx.Client
) -> None:
    """The load that made SQLite answer 503 ("database is locked"): flow runs in 4
    processes at once, 20 concurrent logging tasks each. PostgreSQL takes it without one
    503; both backends are measured side by side in bench/prefect_backends.py."""
    if prefect_server.database_url is None:
        pytest.skip("PostgreSQL arm only (bench/prefect_backends.py measures both)")
    from bench.prefect_backends import concurrent_flow_runs

    results = concurrent_flow_runs(prefect_server.env, runs=4, tasks=20, timeout=300)
    assert all(r["ok"] for r in results), results
    assert sum(r["retries_503"] for r in results) == 0, results
    runs = api.post(
        "/flow_runs/filter", json={"flows": {"name": {"any_": ["bench-backends"]}}}
    ).json()
    assert [(r["state"] or {}).get("type") for r in runs] == ["COMPLETED"] * 4, runs


def test_monitor_shards_get_a_deployment_each_and_one_restores_the_single_monitor(
    deployed: dict[str, Any], api: httpx.Client, prefect_server: PrefectServer
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.shards import deploy_shards

    if prefect_server.database_url:
        pytest.skip("the same API calls on either backend: checked once, on SQLite")
    unsharded = "monitor-continuous/monitor-continuous"
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        deploy_shards(2)
        found = {d["name"]: d for d in api.post("/deployments/filter", json={}).json()}
        shards = sorted(n for n in found if n.startswith("monitor-continuous-shard-"))
        assert shards == ["monitor-continuous-shard-0-of-2", "monitor-continuous-shard-1-of-2"]
        for i, name in enumerate(shards):
            assert found[name]["parameters"]["shard"] == i
            assert found[name]["parameters"]["shards"] == 2
            assert found[name]["global_concurrency_limit"]["limit"] == 1
            assert found[name]["entrypoint"] == "flows/monitor_loop.py:monitor_continuous"
        assert api.get(f"/deployments/name/{unsharded}").json()["paused"] is True
        # Back to one monitor: the shards go, the single deployment runs again.
        deploy_shards(1)
    names = {d["name"] for d in api.post("/deployments/filter", json={}).json()}
    assert not {n for n in names if n.startswith("monitor-continuous-shard-")}
    assert api.get(f"/deployments/name/{unsharded}").json()["paused"] is False
